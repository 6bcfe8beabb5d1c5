#include "attend/models/caption_metrics.h"

#include <c10/util/Exception.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <set>
#include <utility>

namespace attend::models {
namespace {

// ---------------------------------------------------------------------------
// Tokenisation

bool is_space(char ch) {
  return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\f' || ch == '\v';
}
bool is_digit(char ch) { return ch >= '0' && ch <= '9'; }
bool is_letter(char ch) { return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z'); }
/// Letters, digits and every byte of a UTF-8 multi-byte sequence.
bool is_word_char(char ch) {
  return is_letter(ch) || is_digit(ch) || static_cast<unsigned char>(ch) >= 0x80;
}
char to_lower(char ch) { return (ch >= 'A' && ch <= 'Z') ? static_cast<char>(ch - 'A' + 'a') : ch; }

/// Punctuation that PTBTokenizer turns into one of coco's dropped tokens.
bool is_dropped_punctuation(char ch) {
  switch (ch) {
    case '.': case ',': case '?': case '!': case ':': case ';': case '-':
    case '\'': case '"': case '`': case '(': case ')': case '[': case ']':
    case '{': case '}':
      return true;
    default:
      return false;
  }
}

bool is_clitic(const std::string& letters) {
  return letters == "s" || letters == "re" || letters == "ve" || letters == "ll" || letters == "d" ||
         letters == "m";
}

// ---------------------------------------------------------------------------
// N-grams

constexpr int kOrders = 4;              // n = 1..4 for BLEU and CIDEr-D
constexpr double kBleuTiny = 1e-15;     // bleu_scorer.py: "tiny", added to numerators
constexpr double kBleuSmall = 1e-9;     // bleu_scorer.py: "small", added to denominators
constexpr double kRougeBeta = 1.2;      // rouge.py
constexpr double kCiderSigma = 6.0;     // cider_scorer.py
constexpr double kCiderScale = 10.0;    // cider_scorer.py

/// counts[n-1] maps an n-gram (tokens joined by ' ') to its count. Tokens hold no
/// whitespace (checked), so the joined key is unambiguous.
using NgramCounts = std::array<std::map<std::string, std::int64_t>, kOrders>;

NgramCounts count_ngrams(const std::vector<std::string>& words) {
  NgramCounts counts;
  const std::size_t len = words.size();
  for (std::size_t n = 1; n <= static_cast<std::size_t>(kOrders); ++n) {
    for (std::size_t i = 0; i + n <= len; ++i) {
      std::string key = words[i];
      for (std::size_t k = 1; k < n; ++k) {
        key += ' ';
        key += words[i + k];
      }
      ++counts[n - 1][key];
    }
  }
  return counts;
}

// ---------------------------------------------------------------------------
// BLEU

struct BleuStats {
  double test_len = 0.0;
  double ref_len = 0.0;
  std::array<double, kOrders> guess{};
  std::array<double, kOrders> correct{};
};

/// cook_refs + cook_test of bleu_scorer.py with eff = "closest".
BleuStats bleu_stats(const std::vector<std::string>& candidate, const NgramCounts& cand_counts,
                     const std::vector<std::vector<std::string>>& refs,
                     const std::vector<NgramCounts>& ref_counts) {
  BleuStats s;
  const auto c = static_cast<std::int64_t>(candidate.size());
  s.test_len = static_cast<double>(c);
  // Closest reference length; ties -> the shorter (min over (|len - c|, len)).
  std::int64_t best_len = static_cast<std::int64_t>(refs.front().size());
  for (const auto& r : refs) {
    const auto len = static_cast<std::int64_t>(r.size());
    const auto d = std::llabs(len - c), best_d = std::llabs(best_len - c);
    if (d < best_d || (d == best_d && len < best_len)) best_len = len;
  }
  s.ref_len = static_cast<double>(best_len);
  for (int n = 0; n < kOrders; ++n) {
    s.guess[n] = static_cast<double>(std::max<std::int64_t>(0, c - n));
    for (const auto& [gram, count] : cand_counts[n]) {
      std::int64_t max_ref = 0;
      for (const auto& rc : ref_counts) {
        const auto it = rc[n].find(gram);
        if (it != rc[n].end()) max_ref = std::max(max_ref, it->second);
      }
      s.correct[n] += static_cast<double>(std::min(count, max_ref));
    }
  }
  return s;
}

/// The score formula of BleuScorer.compute_score, for one image or the corpus totals.
std::array<double, kOrders> bleu_from_stats(const BleuStats& s) {
  std::array<double, kOrders> out{};
  double product = 1.0;
  for (int n = 0; n < kOrders; ++n) {
    product *= (s.correct[n] + kBleuTiny) / (s.guess[n] + kBleuSmall);
    out[n] = std::pow(product, 1.0 / (n + 1));
  }
  const double ratio = (s.test_len + kBleuTiny) / (s.ref_len + kBleuSmall);
  if (ratio < 1.0) {
    const double bp = std::exp(1.0 - 1.0 / ratio);  // underflows to 0 for an empty candidate
    for (auto& v : out) v *= bp;
  }
  return out;
}

// ---------------------------------------------------------------------------
// ROUGE-L

std::size_t lcs_length(const std::vector<std::string>& a, const std::vector<std::string>& b) {
  const auto& longer = a.size() >= b.size() ? a : b;
  const auto& shorter = a.size() >= b.size() ? b : a;
  std::vector<std::size_t> prev(shorter.size() + 1, 0), cur(shorter.size() + 1, 0);
  for (std::size_t i = 1; i <= longer.size(); ++i) {
    for (std::size_t j = 1; j <= shorter.size(); ++j) {
      cur[j] = longer[i - 1] == shorter[j - 1] ? prev[j - 1] + 1 : std::max(prev[j], cur[j - 1]);
    }
    std::swap(prev, cur);
  }
  return prev[shorter.size()];
}

/// Rouge.calc_score of rouge.py.
double rouge_l(const std::vector<std::string>& candidate, const std::vector<std::vector<std::string>>& refs) {
  if (candidate.empty()) return 0.0;
  double prec_max = 0.0, rec_max = 0.0;
  for (const auto& r : refs) {
    if (r.empty()) continue;  // LCS 0: adds nothing to either maximum
    const auto lcs = static_cast<double>(lcs_length(r, candidate));
    prec_max = std::max(prec_max, lcs / static_cast<double>(candidate.size()));
    rec_max = std::max(rec_max, lcs / static_cast<double>(r.size()));
  }
  if (prec_max == 0.0 || rec_max == 0.0) return 0.0;
  const double b2 = kRougeBeta * kRougeBeta;
  return ((1.0 + b2) * prec_max * rec_max) / (rec_max + b2 * prec_max);
}

// ---------------------------------------------------------------------------
// CIDEr-D

struct TfIdf {
  std::array<std::map<std::string, double>, kOrders> vec;
  std::array<double, kOrders> norm{};
  double length = 0.0;  // number of bigrams, as counts2vec counts it
};

using DocFrequency = std::array<std::map<std::string, std::int64_t>, kOrders>;

/// counts2vec of cider_scorer.py.
TfIdf tf_idf(const NgramCounts& counts, const DocFrequency& df, double log_images) {
  TfIdf t;
  for (int n = 0; n < kOrders; ++n) {
    double sq = 0.0;
    for (const auto& [gram, tf] : counts[n]) {
      const auto it = df[n].find(gram);
      const double d = it == df[n].end() ? 0.0 : static_cast<double>(it->second);
      const double v = static_cast<double>(tf) * (log_images - std::log(std::max(1.0, d)));
      t.vec[n].emplace(gram, v);
      sq += v * v;
      if (n == 1) t.length += static_cast<double>(tf);
    }
    t.norm[n] = std::sqrt(sq);
  }
  return t;
}

/// sim of cider_scorer.py, summed over n.
double cider_sim_sum(const TfIdf& hyp, const TfIdf& ref) {
  const double delta = hyp.length - ref.length;
  const double penalty = std::exp(-(delta * delta) / (2.0 * kCiderSigma * kCiderSigma));
  double sum = 0.0;
  for (int n = 0; n < kOrders; ++n) {
    double val = 0.0;
    for (const auto& [gram, vh] : hyp.vec[n]) {
      const auto it = ref.vec[n].find(gram);
      if (it == ref.vec[n].end()) continue;  // min(vh, 0) * 0
      val += std::min(vh, it->second) * it->second;
    }
    if (hyp.norm[n] != 0.0 && ref.norm[n] != 0.0) val /= hyp.norm[n] * ref.norm[n];
    sum += val * penalty;
  }
  return sum;
}

void check_tokens(const std::vector<std::string>& tokens, std::size_t image, const char* what) {
  for (const auto& tok : tokens) {
    const bool ok = !tok.empty() && std::none_of(tok.begin(), tok.end(), is_space);
    TORCH_CHECK(ok, "score_captions: expected non-empty tokens without whitespace, found '", tok, "' in the ",
                what, " of image ", image);
  }
}

}  // namespace

std::vector<std::string> coco_tokenize(const std::string& text) {
  std::vector<std::string> tokens;
  std::string word;
  auto flush = [&] {
    if (!word.empty()) tokens.push_back(std::move(word));
    word.clear();
  };
  const std::size_t len = text.size();
  auto at = [&](std::size_t i) -> char { return i < len ? to_lower(text[i]) : ' '; };
  for (std::size_t i = 0; i < len; ++i) {
    const char ch = at(i);
    const char prev = i > 0 ? at(i - 1) : ' ';
    const char next = at(i + 1);
    if (is_word_char(ch)) {
      word += ch;
    } else if (is_space(ch)) {
      flush();
    } else if (ch == '-' && !word.empty() && is_word_char(prev) && is_word_char(next)) {
      word += ch;  // black-and-white
    } else if (ch == '.' && !word.empty() && is_word_char(prev) && is_word_char(next)) {
      word += ch;  // 3.5, u.s
    } else if (ch == ',' && !word.empty() && is_digit(prev) && is_digit(next)) {
      word += ch;  // 1,000
    } else if (ch == '\'' && !word.empty() && is_word_char(prev) && is_letter(next)) {
      std::size_t end = i + 1;
      while (end < len && is_letter(at(end))) ++end;
      const bool at_word_end = end >= len || !is_word_char(at(end));
      const std::string rest = [&] {
        std::string s;
        for (std::size_t k = i + 1; k < end; ++k) s += at(k);
        return s;
      }();
      if (at_word_end && rest == "t" && word.size() >= 2 && word.back() == 'n') {
        word.pop_back();  // don't -> do n't, can't -> ca n't
        flush();
        tokens.push_back("n't");
        i = end - 1;
      } else if (at_word_end && is_clitic(rest)) {
        flush();  // man's -> man 's
        tokens.push_back("'" + rest);
        i = end - 1;
      } else {
        word += ch;  // o'clock
      }
    } else if (is_dropped_punctuation(ch)) {
      flush();
    } else {
      flush();  // $ % & # * + / = @ < > ^ | ~ \ _ and other ASCII symbols
      tokens.emplace_back(1, ch);
    }
  }
  flush();
  return tokens;
}

CaptionScores score_captions(const std::vector<std::vector<std::string>>& candidates,
                             const std::vector<std::vector<std::vector<std::string>>>& references) {
  TORCH_CHECK(candidates.size() == references.size(),
              "score_captions: expected one list of references per candidate, found ", candidates.size(),
              " candidates and ", references.size(), " reference lists");
  const std::size_t images = candidates.size();
  for (std::size_t i = 0; i < images; ++i) {
    TORCH_CHECK(!references[i].empty(), "score_captions: expected at least one reference per image, found none for image ",
                i);
    check_tokens(candidates[i], i, "candidate");
    for (const auto& r : references[i]) check_tokens(r, i, "references");
  }

  CaptionScores out;
  if (images == 0) return out;
  out.per_image.resize(images);

  std::vector<NgramCounts> cand_counts(images);
  std::vector<std::vector<NgramCounts>> ref_counts(images);
  for (std::size_t i = 0; i < images; ++i) {
    cand_counts[i] = count_ngrams(candidates[i]);
    ref_counts[i].reserve(references[i].size());
    for (const auto& r : references[i]) ref_counts[i].push_back(count_ngrams(r));
  }

  // BLEU: per image, and from the summed statistics.
  BleuStats total;
  for (std::size_t i = 0; i < images; ++i) {
    const BleuStats s = bleu_stats(candidates[i], cand_counts[i], references[i], ref_counts[i]);
    out.per_image[i].bleu = bleu_from_stats(s);
    total.test_len += s.test_len;
    total.ref_len += s.ref_len;
    for (int n = 0; n < kOrders; ++n) {
      total.guess[n] += s.guess[n];
      total.correct[n] += s.correct[n];
    }
  }
  out.bleu = bleu_from_stats(total);

  // ROUGE-L.
  double rouge_sum = 0.0;
  for (std::size_t i = 0; i < images; ++i) {
    out.per_image[i].rouge_l = rouge_l(candidates[i], references[i]);
    rouge_sum += out.per_image[i].rouge_l;
  }
  out.rouge_l = rouge_sum / static_cast<double>(images);

  // CIDEr-D: document frequencies over each image's set of reference n-grams.
  DocFrequency df;
  for (std::size_t i = 0; i < images; ++i) {
    for (int n = 0; n < kOrders; ++n) {
      std::set<std::string> seen;
      for (const auto& rc : ref_counts[i]) {
        for (const auto& entry : rc[n]) seen.insert(entry.first);
      }
      for (const auto& gram : seen) ++df[n][gram];
    }
  }
  const double log_images = std::log(static_cast<double>(images));
  double cider_sum = 0.0;
  for (std::size_t i = 0; i < images; ++i) {
    const TfIdf hyp = tf_idf(cand_counts[i], df, log_images);
    double sum = 0.0;
    for (const auto& rc : ref_counts[i]) sum += cider_sim_sum(hyp, tf_idf(rc, df, log_images));
    double score = sum / kOrders;                           // mean over n
    score /= static_cast<double>(references[i].size());     // mean over references
    score *= kCiderScale;
    out.per_image[i].cider_d = score;
    cider_sum += score;
  }
  out.cider_d = cider_sum / static_cast<double>(images);
  return out;
}

}  // namespace attend::models
