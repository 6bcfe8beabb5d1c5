#pragma once
/// Caption metrics as the COCO caption evaluation (coco-caption / pycocoevalcap)
/// computes them: BLEU-1..4, ROUGE-L and CIDEr-D, per image and over a corpus.
///
/// The formulas follow the Python scorers line by line (bleu_scorer.py with
/// option "closest", rouge.py, cider_scorer.py = CIDEr-D); score_captions()
/// documents the details that change numbers. METEOR and
/// SPICE (Java programs in coco-caption) are not provided.

#include <array>
#include <string>
#include <vector>

namespace attend::models {

/// Lower-cases and tokenises one caption the way coco-caption prepares text
/// before scoring, approximately: Stanford PTBTokenizer (`-preserveLines
/// -lowerCase`) followed by removal of the tokens
/// '' ' `` ` -LRB- -RRB- -LCB- -RCB- . ? ! , : - -- ... ;
///
/// What this function does (all ASCII; bytes >= 0x80 are kept as word characters):
///   - lower-cases A-Z and splits on whitespace;
///   - splits punctuation off words and drops . , ? ! : ; " ` ( ) [ ] { }, lone or
///     repeated hyphens, and quotes that do not sit between letters;
///   - keeps a hyphen between two word characters inside the word
///     ("black-and-white"), a '.' between two word characters ("3.5", "u.s") and a
///     ',' between two digits ("1,000");
///   - splits the clitics 's 're 've 'll 'd 'm and n't as PTB does
///     ("man's" -> man 's, "don't" -> do n't, "can't" -> ca n't); other
///     apostrophes between letters stay inside the word ("o'clock");
///   - any other ASCII symbol ($ % & # * + / = @ < > ^ | ~ \ _) becomes a
///     one-character token and is kept.
/// Known deviations from PTBTokenizer 3.4.1 (only text with such features is
/// affected; lower-case words separated by spaces tokenise identically):
///   - abbreviations: PTB keeps "mr." / "st." / "u.s." with their period, this
///     function drops a final period ("mr", "u.s");
///   - PTB's other special cases are not reproduced: "cannot" -> can not,
///     "gonna" -> gon na, "'tis", "y'all" and similar;
///   - symbols: PTB keeps "AT&T"-like words and some emoticons together and
///     may escape '/' and '*'; here every such symbol is its own token;
///   - square brackets: PTB emits -LSB- / -RSB-, which coco's list does not drop;
///     here they are dropped like the other brackets (not checked against the
///     jar: whether -lowerCase also turns -LRB- into an undropped "-lrb-");
///   - Unicode punctuation (curly quotes, dashes, ellipsis) and Unicode letter
///     case are left as they are.
/// ensures: no returned token is empty or contains whitespace.
std::vector<std::string> coco_tokenize(const std::string& text);

/// Scores of one image.
struct ImageCaptionScores {
  std::array<double, 4> bleu{};  ///< BLEU-1..4 of this image alone (its own brevity penalty)
  double rouge_l = 0.0;          ///< ROUGE-L, beta = 1.2
  double cider_d = 0.0;          ///< CIDEr-D (idf from the whole evaluated set), 0..10 scale
};

/// Scores of an evaluated set, as coco-caption reports them.
struct CaptionScores {
  std::array<double, 4> bleu{};  ///< corpus BLEU-1..4 (NOT the mean of per-image BLEU)
  double rouge_l = 0.0;          ///< mean of per-image ROUGE-L
  double cider_d = 0.0;          ///< mean of per-image CIDEr-D
  std::vector<ImageCaptionScores> per_image;  ///< one entry per image, in input order
};

/// Scores one candidate caption per image against that image's references.
///
/// candidates [N] token lists, references [N][R_i] token lists (R_i >= 1). Tokens are
/// taken as given (use coco_tokenize() for raw text); the caller's word ids or
/// special tokens (<end>) must be removed beforehand.
///
/// BLEU (bleu_scorer.py, compute_score(option="closest")): for image i,
///   correct_i[n] = sum over n-grams g of the candidate of min(count_c(g), max_r count_r(g)),
///   guess_i[n] = max(0, len(c) - n + 1), r_i = the reference length closest to len(c)
///   (ties -> the shorter). Corpus: P_n = (sum correct[n] + 1e-15) / (sum guess[n] + 1e-9),
///   BLEU_N = (P_1 ... P_N)^(1/N) * BP with ratio = (sum len(c) + 1e-15) / (sum r_i + 1e-9)
///   and BP = exp(1 - 1/ratio) if ratio < 1, else 1. Per-image BLEU uses the same formula
///   on the image's own statistics. Because of the epsilons, a candidate identical to its
///   reference scores 1 - O(1e-10), and a zero precision gives a tiny positive BLEU-N.
/// ROUGE-L (rouge.py): P = max_r LCS(c, r)/len(c), R = max_r LCS(c, r)/len(r), each
///   maximised separately; score = (1 + b^2) P R / (R + b^2 P), b = 1.2, or 0 when P or R
///   is 0. Corpus = mean over images.
/// CIDEr-D (cider_scorer.py, n = 1..4, sigma = 6): df(g) = number of images whose
///   references (as a set) contain g; an n-gram's weight in sentence s is
///   count_s(g) * (ln N - ln max(1, df(g))) (raw counts, not term frequencies);
///   sim_n(c, r) = sum_g min(v_c(g), v_r(g)) v_r(g) / (|v_c| |v_r|) (the division is
///   skipped when a norm is 0) * exp(-(l(c) - l(r))^2 / (2 sigma^2)), l = number of
///   bigrams; score_i = 10 * mean over n of the mean over references of sim_n.
///   Corpus = mean over images. The idf comes from the evaluated set only, so a
///   one-image set scores 0 and adding images changes every image's score.
///
/// Degenerate input: an empty candidate scores 0 on every metric; candidates shorter
/// than n, single references and empty references are allowed; no result is NaN or
/// infinite. An empty set (N = 0) returns all zeros and no per-image entries.
/// Deviation from coco: rouge.py splits an empty caption into one empty token, so an
/// empty candidate against an empty reference scores ROUGE-L 1 there; here it scores 0.
///
/// requires: candidates.size() == references.size(); every image has >= 1 reference;
///   every token is non-empty and contains no whitespace (coco re-splits sentences on
///   spaces, so such a token would be counted differently there).
/// Throws c10::Error (TORCH_CHECK) naming the image otherwise. Deterministic.
CaptionScores score_captions(const std::vector<std::vector<std::string>>& candidates,
                             const std::vector<std::vector<std::vector<std::string>>>& references);

}  // namespace attend::models
