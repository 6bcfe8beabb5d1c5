#include <attend/models/beam_search.h>

#include <torch/torch.h>

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <map>

namespace am = attend::models;

namespace {

/// A decoder whose next-token log-probabilities depend only on the tokens a row has
/// produced so far (its prefix), given by a table; unknown prefixes put all mass on
/// `fallback`. It follows reorder() like a real decoder, so a wrong row bookkeeping in
/// the search shows up as wrong prefixes. Each step's alpha is [prefix length, image].
class ScriptedDecoder : public am::DecoderState {
 public:
  using Table = std::map<std::vector<std::int64_t>, std::map<std::int64_t, double>>;
  ScriptedDecoder(std::int64_t images, std::int64_t beams, std::int64_t vocab, Table table, std::int64_t fallback)
      : vocab_(vocab), table_(std::move(table)), fallback_(fallback),
        prefixes_(static_cast<size_t>(images * beams)), beams_(beams) {
    // Which image each row's state belongs to: follows reorder(), so a row that took
    // another image's state shows it.
    for (std::int64_t r = 0; r < images * beams; ++r) origin_.push_back(r / beams);
  }

  am::DecoderStep step(const torch::Tensor& tokens) override {
    const auto rows = tokens.size(0);
    auto log_probs = torch::full({rows, vocab_}, -1e9, torch::kFloat32);
    auto alpha = torch::zeros({rows, 2});
    for (std::int64_t r = 0; r < rows; ++r) {
      auto& prefix = prefixes_[static_cast<size_t>(r)];
      if (steps_ > 0) prefix.push_back(tokens[r].item<std::int64_t>());
      const auto it = table_.find(prefix);
      if (it == table_.end()) {
        log_probs[r][fallback_] = 0.0f;
      } else {
        for (const auto& [token, p] : it->second) log_probs[r][token] = static_cast<float>(std::log(p));
      }
      alpha[r][0] = static_cast<float>(prefix.size());
      alpha[r][1] = static_cast<float>(origin_[static_cast<size_t>(r)]);
    }
    ++steps_;
    return {log_probs, alpha, torch::full({rows}, 0.5f)};
  }
  void reorder(const torch::Tensor& rows) override {
    std::vector<std::vector<std::int64_t>> next;
    std::vector<std::int64_t> origin;
    for (std::int64_t r = 0; r < rows.size(0); ++r) {
      const auto from = static_cast<size_t>(rows[r].item<std::int64_t>());
      next.push_back(prefixes_[from]);
      origin.push_back(origin_[from]);
    }
    prefixes_ = next;
    origin_ = origin;
  }

 private:
  std::int64_t vocab_;
  Table table_;
  std::int64_t fallback_;
  std::vector<std::vector<std::int64_t>> prefixes_;
  std::int64_t beams_;
  std::vector<std::int64_t> origin_;
  std::int64_t steps_ = 0;
};

constexpr std::int64_t kEnd = 2;

}  // namespace

// The classic case: greedy takes the locally best first word (0.6) but the best
// sequence starts with the other (0.4 * 0.9 > 0.6 * 0.5); a beam of 2 finds it.
TEST(BeamSearch, FindsTheBestSequenceGreedyMisses) {
  const ScriptedDecoder::Table table{{{}, {{10, 0.6}, {11, 0.4}}},
                                     {{10}, {{12, 0.5}, {13, 0.5}}},
                                     {{11}, {{14, 0.9}, {15, 0.1}}},
                                     {{10, 12}, {{kEnd, 1.0}}},
                                     {{10, 13}, {{kEnd, 1.0}}},
                                     {{11, 14}, {{kEnd, 1.0}}},
                                     {{11, 15}, {{kEnd, 1.0}}}};
  ScriptedDecoder greedy_state(1, 1, 20, table, kEnd);
  const auto greedy = am::beam_search(greedy_state, 1, am::BeamSearchOptions().beam(1));
  EXPECT_EQ(greedy[0].tokens, (std::vector<std::int64_t>{10, 12}));
  ScriptedDecoder beam_state(1, 2, 20, table, kEnd);
  const auto beam = am::beam_search(beam_state, 1, am::BeamSearchOptions().beam(2));
  EXPECT_EQ(beam[0].tokens, (std::vector<std::int64_t>{11, 14}));
  EXPECT_TRUE(beam[0].finished);
  EXPECT_NEAR(beam[0].log_prob, std::log(0.4 * 0.9), 1e-6);
  // One alpha and beta per word (not for <end>), from the row that produced the word.
  ASSERT_EQ(beam[0].alphas.sizes(), (std::vector<std::int64_t>{2, 2}));
  EXPECT_EQ(beam[0].alphas[0][0].item<float>(), 0.0f) << "word 1 came from the empty prefix";
  EXPECT_EQ(beam[0].alphas[1][0].item<float>(), 1.0f) << "word 2 from the prefix {11}";
  EXPECT_EQ(beam[0].betas.size(0), 2);
}

// Rows are image-major and images never mix: three images searched together give
// what one gives alone, and each caption's alphas come from its own image's rows.
TEST(BeamSearch, BatchedImagesEqualImagesSearchedAlone) {
  ScriptedDecoder::Table table{{{}, {{20, 0.3}, {21, 0.2}, {22, 0.5}}},
                               {{20}, {{kEnd, 0.3}, {30, 0.7}}},
                               {{21}, {{kEnd, 0.9}, {31, 0.1}}},
                               {{22}, {{32, 1.0}}},
                               {{20, 30}, {{kEnd, 0.5}, {33, 0.5}}},
                               {{22, 32}, {{kEnd, 1.0}}}};
  ScriptedDecoder together(3, 3, 40, table, kEnd);
  const auto all = am::beam_search(together, 3, am::BeamSearchOptions().beam(3));
  ScriptedDecoder alone(1, 3, 40, table, kEnd);
  const auto one = am::beam_search(alone, 1, am::BeamSearchOptions().beam(3));
  for (const auto& caption : all) {
    EXPECT_EQ(caption.tokens, one[0].tokens);
    EXPECT_DOUBLE_EQ(caption.log_prob, one[0].log_prob);
  }
  // Each image's alphas come from states of its own rows at every word (alpha[1] is
  // the image a row's state started from).
  for (std::int64_t b = 0; b < 3; ++b) {
    const auto& alphas = all[static_cast<size_t>(b)].alphas;
    for (std::int64_t t = 0; t < alphas.size(0); ++t) EXPECT_EQ(alphas[t][1].item<float>(), static_cast<float>(b));
  }
  // 22 32 <end>: 0.5 beats 21 <end>: 0.18, 20 30 <end>: 0.105, 20 <end>: 0.09; two
  // words, so the second word's alpha comes from a state the search reordered.
  EXPECT_EQ(one[0].tokens, (std::vector<std::int64_t>{22, 32}));
}

// A vocabulary of 100,000 words: the chosen beam and token are split correctly from
// indices into the k*V candidates (token 99,999 from the second beam).
TEST(BeamSearch, IndexArithmeticHoldsForLargeVocabularies) {
  const std::int64_t v = 100000;
  const ScriptedDecoder::Table table{{{}, {{5, 0.55}, {99998, 0.45}}},
                                     {{5}, {{7, 0.5}, {kEnd, 0.5}}},
                                     {{99998}, {{99999, 0.99}, {kEnd, 0.01}}},
                                     {{99998, 99999}, {{kEnd, 1.0}}},
                                     {{5, 7}, {{kEnd, 1.0}}}};
  ScriptedDecoder state(2, 2, v, table, kEnd);
  const auto out = am::beam_search(state, 2, am::BeamSearchOptions().beam(2));
  for (const auto& caption : out) EXPECT_EQ(caption.tokens, (std::vector<std::int64_t>{99998, 99999}));
}

// No <end> within max_length: the best unfinished caption is returned, max_length
// words long, never empty; a short finished caption wins when there is one.
TEST(BeamSearch, ReturnsTheBestUnfinishedBeamAtTheLengthLimit) {
  const ScriptedDecoder::Table table{};  // every prefix: all mass on token 9, forever
  ScriptedDecoder state(2, 3, 12, table, 9);
  const auto out = am::beam_search(state, 2, am::BeamSearchOptions().beam(3).max_length(5));
  for (const auto& caption : out) {
    EXPECT_FALSE(caption.finished);
    EXPECT_EQ(caption.tokens, (std::vector<std::int64_t>(5, 9)));
    EXPECT_EQ(caption.alphas.size(0), 5);
  }
}

// Length normalisation: "10 <end>" has p = 0.3, "11 12 13 <end>" p = 0.7 * 0.6^3 =
// 0.151. Raw log-probability prefers the short one; per word (penalty 1) the long one:
// log(0.3) / 2 = -0.60 against log(0.151) / 4 = -0.47.
TEST(BeamSearch, LengthPenaltyRanksFinishedCaptionsPerWord) {
  const ScriptedDecoder::Table table{{{}, {{10, 0.3}, {11, 0.7}}},
                                     {{10}, {{kEnd, 1.0}}},
                                     {{11}, {{12, 0.6}}},
                                     {{11, 12}, {{13, 0.6}}},
                                     {{11, 12, 13}, {{kEnd, 0.6}}}};
  ScriptedDecoder raw_state(1, 2, 20, table, kEnd);
  const auto raw = am::beam_search(raw_state, 1, am::BeamSearchOptions().beam(2).length_penalty(0.0));
  EXPECT_EQ(raw[0].tokens, (std::vector<std::int64_t>{10}));
  ScriptedDecoder norm_state(1, 2, 20, table, kEnd);
  const auto norm = am::beam_search(norm_state, 1, am::BeamSearchOptions().beam(2).length_penalty(1.0));
  EXPECT_EQ(norm[0].tokens, (std::vector<std::int64_t>{11, 12, 13}));
  EXPECT_NEAR(norm[0].score, std::log(0.7 * 0.6 * 0.6 * 0.6) / 4, 1e-5);
}

TEST(BeamSearch, RefusesBadOptions) {
  ScriptedDecoder state(1, 1, 5, {}, kEnd);
  EXPECT_THROW(am::beam_search(state, 0, {}), c10::Error);
  EXPECT_THROW(am::beam_search(state, 1, am::BeamSearchOptions().beam(0)), c10::Error);
  EXPECT_THROW(am::beam_search(state, 1, am::BeamSearchOptions().max_length(0)), c10::Error);
  EXPECT_THROW(am::beam_search(state, 1, am::BeamSearchOptions().length_penalty(-1)), c10::Error);
  ScriptedDecoder narrow(1, 6, 5, {}, kEnd);
  EXPECT_THROW(am::beam_search(narrow, 1, am::BeamSearchOptions().beam(6)), c10::Error) << "6 beams, 5 words";
}
