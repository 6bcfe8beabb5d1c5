#include <attend/models/caption_metrics.h>

#include <test_support.h>

#include <gtest/gtest.h>

#include <cmath>
#include <sstream>
#include <string>
#include <vector>

namespace am = attend::models;
using attend::testing::contains;
using attend::testing::error_message;

namespace {

using Tokens = std::vector<std::string>;
using References = std::vector<std::vector<Tokens>>;

/// "a b c" -> {a, b, c}.
Tokens toks(const std::string& sentence) {
  std::istringstream in(sentence);
  Tokens out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

/// The per-order precision of bleu_scorer.py, epsilons included.
double precision(double correct, double guess) { return (correct + 1e-15) / (guess + 1e-9); }

/// BLEU-N from precisions p[0..N-1] and lengths, as bleu_scorer.py combines them.
double bleu_n(const std::vector<double>& p, double test_len, double ref_len) {
  double product = 1.0;
  for (double v : p) product *= v;
  const double ratio = (test_len + 1e-15) / (ref_len + 1e-9);
  const double bp = ratio < 1.0 ? std::exp(1.0 - 1.0 / ratio) : 1.0;
  return std::pow(product, 1.0 / static_cast<double>(p.size())) * bp;
}

void expect_all_finite(const am::CaptionScores& s) {
  for (double v : s.bleu) EXPECT_TRUE(std::isfinite(v));
  EXPECT_TRUE(std::isfinite(s.rouge_l));
  EXPECT_TRUE(std::isfinite(s.cider_d));
  for (const auto& im : s.per_image) {
    for (double v : im.bleu) EXPECT_TRUE(std::isfinite(v));
    EXPECT_TRUE(std::isfinite(im.rouge_l));
    EXPECT_TRUE(std::isfinite(im.cider_d));
  }
}

// The BLEU corpus used by several tests.
//
// Image 0: candidate "the cat the cat sat" (c = 5)
//   refs A "the cat sat down" (4), B "the cat sat on a mat" (6)
//   1-grams: the:2 cat:2 sat:1; max ref counts the:1 cat:1 sat:1 -> clipped 1+1+1 = 3, guess 5
//   2-grams: "the cat":2 "cat the":1 "cat sat":1; max ref "the cat":1 "cat the":0 "cat sat":1
//            -> clipped 1+0+1 = 2, guess 4
//   3-grams: "the cat the" "cat the cat" "the cat sat"; only "the cat sat" in a ref -> 1, guess 3
//   4-grams: "the cat the cat" "cat the cat sat" -> 0, guess 2
//   closest ref length: |4-5| = |6-5| = 1, tie -> the shorter, r = 4; ratio 5/4 >= 1 -> BP 1
// Image 1: candidate "a dog runs" (c = 3)
//   refs "a dog runs on the grass" (6), "the dog is running" (4)
//   1-grams a dog runs all in ref 1 -> 3/3; 2-grams "a dog" "dog runs" -> 2/2;
//   3-gram "a dog runs" -> 1/1; 4-grams: none -> 0/0
//   closest: |6-3| = 3, |4-3| = 1 -> r = 4; ratio 3/4 < 1 -> BP = exp(1 - 4/3) = 0.7165
// Corpus: correct 6,4,2,0; guess 8,6,4,2; C = 8, R = 8 -> ratio (8+1e-15)/(8+1e-9), BP ~ 1
std::vector<Tokens> bleu_candidates() { return {toks("the cat the cat sat"), toks("a dog runs")}; }
References bleu_references() {
  return {{toks("the cat sat down"), toks("the cat sat on a mat")},
          {toks("a dog runs on the grass"), toks("the dog is running")}};
}

}  // namespace

TEST(CaptionMetrics, TokenizeLowerCasesAndDropsPunctuation) {
  const auto t = am::coco_tokenize("A Man's black-and-white Dog, isn't it? (It weighs 3.5 kg!) \"Yes\"... -- OK; $5.");
  const Tokens expected = {"a",  "man", "'s", "black-and-white", "dog", "is",  "n't", "it", "it",
                           "weighs", "3.5", "kg", "yes", "ok", "$", "5"};
  EXPECT_EQ(t, expected);
}

TEST(CaptionMetrics, TokenizeSplitsCliticsLikePtb) {
  EXPECT_EQ(am::coco_tokenize("Can't won't they're we'll I'd I'm o'clock dogs' bone"),
            (Tokens{"ca", "n't", "wo", "n't", "they", "'re", "we", "'ll", "i", "'d", "i", "'m", "o'clock", "dogs",
                    "bone"}));
}

TEST(CaptionMetrics, TokenizeKeepsPlainCaptionsAsWords) {
  EXPECT_EQ(am::coco_tokenize("  a man riding\ta horse \n"), toks("a man riding a horse"));
  EXPECT_EQ(am::coco_tokenize("1,000 people, 2 dogs"), (Tokens{"1,000", "people", "2", "dogs"}));
  EXPECT_TRUE(am::coco_tokenize(" ... , ! ").empty());
  EXPECT_TRUE(am::coco_tokenize("").empty());
}

TEST(CaptionMetrics, BleuPerImageMatchesHandComputation) {
  const auto s = am::score_captions(bleu_candidates(), bleu_references());
  ASSERT_EQ(s.per_image.size(), 2u);
  // Image 0: P = 3/5, 2/4, 1/3, 0/2; BP 1.
  const std::vector<double> p0 = {precision(3, 5), precision(2, 4), precision(1, 3), precision(0, 2)};
  EXPECT_NEAR(s.per_image[0].bleu[0], 0.6, 1e-9);
  EXPECT_NEAR(s.per_image[0].bleu[1], std::sqrt(0.6 * 0.5), 1e-9);                   // 0.547723
  EXPECT_NEAR(s.per_image[0].bleu[2], std::cbrt(0.6 * 0.5 / 3.0), 1e-9);             // 0.464159
  EXPECT_NEAR(s.per_image[0].bleu[3], bleu_n(p0, 5, 4), 1e-16);                      // (0.1 * 5e-16)^(1/4)
  EXPECT_NEAR(s.per_image[0].bleu[3], 8.408964e-05, 1e-11);
  // Image 1: P = 3/3, 2/2, 1/1, 0/0 (= 1e-15 / 1e-9 = 1e-6); BP = exp(1 - 4/3).
  const double bp1 = std::exp(1.0 - (4 + 1e-9) / (3 + 1e-15));
  EXPECT_NEAR(bp1, 0.716531, 1e-6);
  EXPECT_NEAR(s.per_image[1].bleu[0], bp1, 1e-9);
  EXPECT_NEAR(s.per_image[1].bleu[1], bp1, 1e-9);
  EXPECT_NEAR(s.per_image[1].bleu[2], bp1, 1e-9);
  const std::vector<double> p1 = {precision(3, 3), precision(2, 2), precision(1, 1), precision(0, 0)};
  EXPECT_NEAR(s.per_image[1].bleu[3], bleu_n(p1, 3, 4), 1e-16);
  EXPECT_NEAR(s.per_image[1].bleu[3], std::pow(1e-6, 0.25) * bp1, 1e-10);             // 0.0226587
}

TEST(CaptionMetrics, CorpusBleuPoolsCountsInsteadOfAveragingImages) {
  const auto s = am::score_captions(bleu_candidates(), bleu_references());
  // Pooled: P = 6/8, 4/6, 2/4, 0/2; C = R = 8 -> BP = exp(1 - (8+1e-9)/(8+1e-15)) = 1 - 1.25e-10.
  const std::vector<double> p = {precision(6, 8), precision(4, 6), precision(2, 4), precision(0, 2)};
  EXPECT_NEAR(s.bleu[0], 0.75, 1e-9);
  EXPECT_NEAR(s.bleu[1], std::sqrt(0.5), 1e-9);   // sqrt(3/4 * 2/3)
  EXPECT_NEAR(s.bleu[2], std::cbrt(0.25), 1e-9);  // (3/4 * 2/3 * 1/2)^(1/3) = 0.629961
  EXPECT_NEAR(s.bleu[3], bleu_n(p, 8, 8), 1e-16);
  EXPECT_NEAR(s.bleu[3], 1.0573713e-04, 1e-11);
  // The mean of per-image BLEU-1 is (0.6 + 0.7165) / 2 = 0.658: image 1's brevity penalty
  // disappears in the corpus, where image 0's surplus length balances it.
  const double mean1 = (s.per_image[0].bleu[0] + s.per_image[1].bleu[0]) / 2.0;
  EXPECT_NEAR(mean1, 0.658266, 1e-6);
  EXPECT_GT(s.bleu[0] - mean1, 0.09);
}

TEST(CaptionMetrics, BleuClosestReferenceTieTakesTheShorter) {
  // c = 5, references of 4 and 6 words: both 1 away, r = 4 -> ratio 5/4, no penalty.
  // All five candidate words appear in the longer reference -> BLEU-1 = 5/5.
  // Taking the longer (r = 6) would give exp(1 - 6/5) = 0.8187.
  const auto s = am::score_captions({toks("a b c d e")}, {{toks("a b c d"), toks("a b c d e f")}});
  EXPECT_NEAR(s.bleu[0], 1.0, 1e-9);
  EXPECT_NEAR(s.per_image[0].bleu[0], 1.0, 1e-9);
}

TEST(CaptionMetrics, IdenticalCaptionScoresOneOnBleuAndRouge) {
  const auto s = am::score_captions({toks("a man rides a horse on the beach")},
                                    {{toks("a man rides a horse on the beach")}});
  for (int n = 0; n < 4; ++n) {
    // Exactly 1 but for the epsilons: ratio = (8+1e-15)/(8+1e-9) < 1 gives BP = 1 - 1.25e-10.
    EXPECT_NEAR(s.bleu[n], 1.0, 1e-9) << "BLEU-" << n + 1;
    EXPECT_LT(s.bleu[n], 1.0);
    EXPECT_NEAR(s.per_image[0].bleu[n], 1.0, 1e-9);
  }
  EXPECT_DOUBLE_EQ(s.rouge_l, 1.0);
  // CIDEr-D of a one-image set: every reference n-gram has df = N = 1 -> idf ln 1 - ln 1 = 0.
  EXPECT_DOUBLE_EQ(s.cider_d, 0.0);
}

TEST(CaptionMetrics, RougeLMatchesHandComputation) {
  // Image 0: candidate "a man riding a horse" (5)
  //   ref 1 "a man rides a brown horse" (6): LCS "a man a horse" = 4 -> P 4/5, R 4/6
  //   ref 2 "man riding" (2):                LCS "man riding"    = 2 -> P 2/5, R 2/2
  //   P = max = 0.8 (ref 1), R = max = 1.0 (ref 2), beta^2 = 1.44
  //   F = 2.44 * 0.8 * 1.0 / (1.0 + 1.44 * 0.8) = 1.952 / 2.152 = 0.907063
  //   (best F of a single reference would be ref 1's 0.715543)
  // Image 1: candidate "dog" (1), ref "a dog barks" (3): LCS 1 -> P 1, R 1/3
  //   F = 2.44 * (1/3) / (1/3 + 1.44) = 0.458647
  // Image 2: candidate "a b c d", ref "d c b a": LCS 1 -> P = R = 1/4 -> F = 1/4
  // Corpus = mean = (0.907063 + 0.458647 + 0.25) / 3
  const auto s = am::score_captions({toks("a man riding a horse"), toks("dog"), toks("a b c d")},
                                    {{toks("a man rides a brown horse"), toks("man riding")},
                                     {toks("a dog barks")},
                                     {toks("d c b a")}});
  const double f0 = 1.952 / 2.152, f1 = 2.44 / 3.0 / (1.0 / 3.0 + 1.44);
  EXPECT_NEAR(f0, 0.907063, 1e-6);
  EXPECT_NEAR(f1, 0.458647, 1e-6);
  EXPECT_NEAR(s.per_image[0].rouge_l, f0, 1e-12);
  EXPECT_NEAR(s.per_image[1].rouge_l, f1, 1e-12);
  EXPECT_NEAR(s.per_image[2].rouge_l, 0.25, 1e-12);
  EXPECT_NEAR(s.rouge_l, (f0 + f1 + 0.25) / 3.0, 1e-12);
}

TEST(CaptionMetrics, CiderDMatchesHandComputation) {
  // N = 2 images -> idf = ln 2 - ln max(1, df) = w (= ln 2) for df <= 1, 0 for df = 2.
  // df counts images, each image's references taken as a set: "a" is in both references of
  // image 0 and in image 1 -> df 2 -> weight 0 (counting references would give df 3 and a
  // negative weight). Every other n-gram here has df <= 1 -> weight w; w cancels in the cosines.
  //
  // Image 0: candidate "cat cat sits" (bigrams l = 2)
  //   1: cat 2w, sits w; |v| = w sqrt5     2: "cat cat" w (df 0), "cat sits" w; |v| = w sqrt2
  //   3: "cat cat sits" w; |v| = w         4: none; |v| = 0
  //  ref A "a cat sits" (l = 2): 1: a 0, cat w, sits w (|v| = w sqrt2); 2: "a cat" w, "cat sits" w
  //   (w sqrt2); 3: "a cat sits" w
  //   sim1 = [min(2w, w) w + min(w, w) w] / (w sqrt5 * w sqrt2) = 2 / sqrt10 = 0.632456
  //          (clipping: without min() it would be 3 / sqrt10)
  //   sim2 = ["cat sits" w * w] / (w sqrt2 * w sqrt2) = 0.5;  sim3 = 0 ("a cat sits" not in c);
  //   sim4 = 0; delta l = 0 -> penalty 1
  //  ref B "a cat sleeps here" (l = 3): 1: a 0, cat w, sleeps w, here w (w sqrt3); no shared
  //   2-, 3-, 4-grams
  //   sim1 = [min(2w, w) w] / (w sqrt5 * w sqrt3) = 1 / sqrt15 = 0.258199, others 0
  //   delta l = -1 -> penalty exp(-1 / 72)
  //  score0 = 10 * (1/2 refs) * (1/4 orders) * (2/sqrt10 + 0.5 + exp(-1/72)/sqrt15) = 1.733866
  // Image 1: candidate "a dog" (l = 1): 1: a 0, dog w (|v| = w); 2: "a dog" w (w)
  //  ref "a dog runs" (l = 2): 1: dog w, runs w (w sqrt2); 2: "a dog" w, "dog runs" w (w sqrt2)
  //   sim1 = 1/sqrt2, sim2 = 1/sqrt2, sim3 = sim4 = 0 (candidate has no 3-grams); penalty exp(-1/72)
  //  ref "the dog runs fast" (l = 3): 1: the, dog, runs, fast all w (2w); "a dog" not in it
  //   sim1 = 1 / 2, others 0; penalty exp(-4/72)
  //  score1 = 10 * (1/2) * (1/4) * (sqrt2 exp(-1/72) + 0.5 exp(-1/18)) = 2.334609
  // Corpus = (1.733866 + 2.334609) / 2 = 2.034238
  const auto s = am::score_captions({toks("cat cat sits"), toks("a dog")},
                                    {{toks("a cat sits"), toks("a cat sleeps here")},
                                     {toks("a dog runs"), toks("the dog runs fast")}});
  const double e72 = std::exp(-1.0 / 72.0), e18 = std::exp(-1.0 / 18.0);
  const double score0 = 1.25 * (2.0 / std::sqrt(10.0) + 0.5 + e72 / std::sqrt(15.0));
  const double score1 = 1.25 * (std::sqrt(2.0) * e72 + 0.5 * e18);
  EXPECT_NEAR(score0, 1.733866, 1e-6);
  EXPECT_NEAR(score1, 2.334609, 1e-6);
  EXPECT_NEAR(s.per_image[0].cider_d, score0, 1e-12);
  EXPECT_NEAR(s.per_image[1].cider_d, score1, 1e-12);
  EXPECT_NEAR(s.cider_d, (score0 + score1) / 2.0, 1e-12);
}

TEST(CaptionMetrics, CiderDClipsRepeatedWords) {
  // N = 2; "red", "ball", "red ball", "blue", "box", "blue box" all have df 1 -> weight w.
  // Image 0: candidate "ball ball": 1: ball 2w (|v| = 2w); 2: "ball ball" w (df 0).
  //  ref "red ball": 1: red w, ball w (w sqrt2); 2: "red ball" w. l: 1 vs 1 -> penalty 1.
  //  sim1 = min(2w, w) * w / (2w * w sqrt2) = 1 / (2 sqrt2) = 0.353553; sim2 = 0
  //  (unclipped: 2w * w / (2w * w sqrt2) = 0.707107, i.e. twice the score)
  //  score0 = 10 / 4 * 0.353553 = 0.883883
  // Image 1: candidate = its reference "blue box": sim1 = sim2 = 1, sim3 = sim4 = 0 (no 3-grams,
  //  norms 0) -> 10 / 4 * 2 = 5: a perfect caption scores well below 10.
  const auto s = am::score_captions({toks("ball ball"), toks("blue box")}, {{toks("red ball")}, {toks("blue box")}});
  EXPECT_NEAR(s.per_image[0].cider_d, 2.5 / (2.0 * std::sqrt(2.0)), 1e-12);
  EXPECT_NEAR(s.per_image[0].cider_d, 0.883883, 1e-6);
  EXPECT_NEAR(s.per_image[1].cider_d, 5.0, 1e-12);
  EXPECT_NEAR(s.cider_d, (0.883883476 + 5.0) / 2.0, 1e-8);
}

TEST(CaptionMetrics, CiderDPenalisesLengthDifference) {
  // Image 0: candidate "red ball on green grass in the park" (8 words, l = 7), ref "red ball"
  //  (l = 1) -> delta 6 -> penalty exp(-36 / 72) = exp(-0.5) = 0.606531.
  //  1: 8 distinct words, all weight w (|v| = w sqrt8); ref red, ball (w sqrt2); shared red, ball:
  //     sim1 = 2 / (sqrt8 sqrt2) = 0.5
  //  2: 7 distinct bigrams (w sqrt7); ref "red ball" (w); shared "red ball": sim2 = 1 / sqrt7
  //  3, 4: the reference has none -> 0
  //  score0 = 10 / 4 * (0.5 + 1/sqrt7) * exp(-0.5) = 1.331281 (2.194911 without the penalty)
  // Image 1: candidate = reference "blue box" -> 5.
  const auto s = am::score_captions({toks("red ball on green grass in the park"), toks("blue box")},
                                    {{toks("red ball")}, {toks("blue box")}});
  const double unpenalised = 2.5 * (0.5 + 1.0 / std::sqrt(7.0));
  EXPECT_NEAR(unpenalised, 2.194911, 1e-6);
  EXPECT_NEAR(s.per_image[0].cider_d, unpenalised * std::exp(-0.5), 1e-12);
  EXPECT_NEAR(s.per_image[0].cider_d, 1.331281, 1e-6);
  EXPECT_NEAR(s.per_image[1].cider_d, 5.0, 1e-12);
}

TEST(CaptionMetrics, CiderDIdfComesFromTheEvaluatedSet) {
  // Alone, image 0 scores 0 (every reference n-gram has df = N = 1). With a second image
  // whose references share nothing, its n-grams get weight ln 2 and the same caption scores
  // 10 / 4 * (1 + 1 + 0 + 0) = 5 (identical 2-word caption: sim1 = sim2 = 1, no 3-grams).
  const auto alone = am::score_captions({toks("red ball")}, {{toks("red ball")}});
  EXPECT_DOUBLE_EQ(alone.cider_d, 0.0);
  const auto pair = am::score_captions({toks("red ball"), toks("blue box")}, {{toks("red ball")}, {toks("blue box")}});
  EXPECT_NEAR(pair.per_image[0].cider_d, 5.0, 1e-12);
  // An n-gram in every image's references weighs 0: "a" adds nothing to image 0's score.
  const auto shared = am::score_captions({toks("a"), toks("b")}, {{toks("a")}, {toks("a b")}});
  EXPECT_DOUBLE_EQ(shared.per_image[0].cider_d, 0.0);
}

TEST(CaptionMetrics, EmptyCandidateScoresZero) {
  auto cands = bleu_candidates();
  cands[0].clear();
  const auto s = am::score_captions(cands, bleu_references());
  expect_all_finite(s);
  for (int n = 0; n < 4; ++n) EXPECT_EQ(s.per_image[0].bleu[n], 0.0);
  EXPECT_EQ(s.per_image[0].rouge_l, 0.0);
  EXPECT_EQ(s.per_image[0].cider_d, 0.0);
  // Image 1 keeps its score; the corpus counts image 0's reference length (4) with a 0-word
  // candidate: C = 3, R = 8, correct 3,2,1,0 over guess 3,2,1,0.
  EXPECT_NEAR(s.per_image[1].bleu[0], std::exp(1.0 - (4 + 1e-9) / (3 + 1e-15)), 1e-9);
  EXPECT_NEAR(s.bleu[0], std::exp(1.0 - (8 + 1e-9) / (3 + 1e-15)), 1e-9);  // 0.188876
  EXPECT_NEAR(s.bleu[0], 0.188876, 1e-6);
}

TEST(CaptionMetrics, DegenerateInputsStayFinite) {
  // All candidates empty; a single-word candidate (shorter than every n > 1); an empty reference.
  const auto empty = am::score_captions({Tokens{}, Tokens{}}, {{toks("a b")}, {toks("c")}});
  expect_all_finite(empty);
  for (int n = 0; n < 4; ++n) EXPECT_EQ(empty.bleu[n], 0.0);
  EXPECT_EQ(empty.rouge_l, 0.0);
  EXPECT_EQ(empty.cider_d, 0.0);

  // "dog" vs "dog": P1 = 1, P2..4 = 1e-15 / 1e-9 = 1e-6 (no n-grams to guess), c = r = 1.
  const auto short_cand = am::score_captions({toks("dog"), Tokens{}}, {{toks("dog"), Tokens{}}, {Tokens{}}});
  expect_all_finite(short_cand);
  EXPECT_NEAR(short_cand.per_image[0].bleu[0], 1.0, 1e-8);
  EXPECT_NEAR(short_cand.per_image[0].bleu[1], std::sqrt(1e-6), 1e-10);
  EXPECT_NEAR(short_cand.per_image[0].rouge_l, 1.0, 1e-12);
  EXPECT_EQ(short_cand.per_image[1].rouge_l, 0.0);
  EXPECT_EQ(short_cand.per_image[1].cider_d, 0.0);
}

TEST(CaptionMetrics, EmptySetScoresZero) {
  const auto s = am::score_captions({}, {});
  EXPECT_TRUE(s.per_image.empty());
  EXPECT_EQ(s.bleu[0], 0.0);
  EXPECT_EQ(s.rouge_l, 0.0);
  EXPECT_EQ(s.cider_d, 0.0);
}

TEST(CaptionMetrics, RejectsMismatchedSizes) {
  const auto msg = error_message([] { am::score_captions({toks("a")}, {}); });
  EXPECT_TRUE(contains(msg, "1 candidates and 0 reference lists")) << msg;
}

TEST(CaptionMetrics, RejectsImageWithoutReferences) {
  const auto msg = error_message([] { am::score_captions({toks("a"), toks("b")}, {{toks("a")}, {}}); });
  EXPECT_TRUE(contains(msg, "found none for image 1")) << msg;
}

TEST(CaptionMetrics, RejectsTokensWithWhitespace) {
  const auto msg = error_message([] { am::score_captions({Tokens{"a dog"}}, {{toks("a dog")}}); });
  EXPECT_TRUE(contains(msg, "found 'a dog' in the candidate of image 0")) << msg;
  const auto empty_tok = error_message([] { am::score_captions({toks("a")}, {{Tokens{"a", ""}}}); });
  EXPECT_TRUE(contains(empty_tok, "references of image 0")) << empty_tok;
}

TEST(CaptionMetrics, IsDeterministic) {
  const auto a = am::score_captions(bleu_candidates(), bleu_references());
  const auto b = am::score_captions(bleu_candidates(), bleu_references());
  EXPECT_EQ(a.bleu, b.bleu);
  EXPECT_EQ(a.rouge_l, b.rouge_l);
  EXPECT_EQ(a.cider_d, b.cider_d);
}
