#include <attend/attention/mask.h>

#include <torch/torch.h>

#include <limits>

#include <gtest/gtest.h>

namespace aa = attend::attention;

class MaskedSoftmax : public ::testing::Test {
 protected:
  void SetUp() override { torch::manual_seed(0); }
};

TEST_F(MaskedSoftmax, EqualsSoftmaxOverTheAllowedEntriesWithTheSameGradients) {
  auto scores = torch::randn({3, 6}, torch::dtype(torch::kFloat64).requires_grad(true));
  const auto mask = torch::tensor({1, 1, 0, 1, 0, 1, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0}, torch::kBool).reshape({3, 6});
  const auto upstream = torch::randn({3, 6}, torch::kFloat64);
  auto w = aa::masked_softmax(scores, mask);
  EXPECT_EQ(w.scalar_type(), torch::kFloat64);
  EXPECT_EQ(aa::masked_softmax(scores.to(torch::kHalf), mask).scalar_type(), torch::kFloat32);
  (w * upstream).sum().backward();
  const auto grad = scores.grad().clone();
  for (std::int64_t r = 0; r < 3; ++r) {
    const auto keep = mask[r].nonzero().squeeze(1);
    auto s = scores.detach()[r].index_select(0, keep).clone().requires_grad_(true);
    auto ref = torch::softmax(s, 0);
    (ref * upstream[r].index_select(0, keep)).sum().backward();
    EXPECT_TRUE(torch::allclose(w[r].index_select(0, keep), ref, 1e-12, 1e-12));
    EXPECT_TRUE(torch::allclose(grad[r].index_select(0, keep), s.grad(), 1e-12, 1e-12));
    EXPECT_NEAR(w[r].sum().item<double>(), 1.0, 1e-12);
  }
  EXPECT_TRUE((w.masked_select(mask.logical_not()) == 0).all().item<bool>()) << "masked weights must be exactly 0";
  EXPECT_TRUE((grad.masked_select(mask.logical_not()) == 0).all().item<bool>());
}

TEST_F(MaskedSoftmax, FullyMaskedRowGivesZerosWithFiniteGradient) {
  auto scores = torch::randn({2, 4}, torch::requires_grad(true));
  const auto mask = torch::tensor({0, 0, 0, 0, 1, 0, 1, 0}, torch::kBool).reshape({2, 4});
  auto w = aa::masked_softmax(scores, mask);
  EXPECT_TRUE((w[0] == 0).all().item<bool>());
  EXPECT_NEAR(w[1].sum().item<float>(), 1.0f, 1e-6f);
  (w * torch::randn({2, 4})).sum().backward();
  EXPECT_TRUE(torch::isfinite(scores.grad()).all().item<bool>());
  EXPECT_TRUE((scores.grad()[0] == 0).all().item<bool>());
}

TEST_F(MaskedSoftmax, BroadcastsMasksAndMatchesSoftmaxWithoutOne) {
  const auto scores = torch::randn({2, 3, 5}) * 30;  // large scores: stability
  EXPECT_TRUE(torch::allclose(aa::masked_softmax(scores, {}), torch::softmax(scores, -1)));
  const auto key_mask = torch::tensor({1, 1, 1, 0, 0, 1, 1, 1, 1, 1}, torch::kBool).reshape({2, 1, 5});
  const auto w = aa::masked_softmax(scores, key_mask);
  EXPECT_TRUE((w.index({0, torch::indexing::Slice(), torch::indexing::Slice(3, 5)}) == 0).all().item<bool>());
  EXPECT_TRUE(torch::allclose(w.sum(-1), torch::ones({2, 3})));
  EXPECT_TRUE(torch::isfinite(w).all().item<bool>());
  EXPECT_THROW(aa::masked_softmax(scores, torch::ones({2, 1, 5})), c10::Error) << "float mask is not a bool mask";
}

// A NaN score spreads over its row as in softmax, with a mask too: the row is not
// taken for one with nothing allowed (which would silently hide the NaN as zeros).
TEST_F(MaskedSoftmax, NaNSpreadsOverItsRowWithOrWithoutAMask) {
  auto scores = torch::randn({3, 4});
  scores[0][1] = std::numeric_limits<float>::quiet_NaN();
  scores[1][0] = std::numeric_limits<float>::quiet_NaN();
  auto mask = torch::ones({3, 4}, torch::kBool);
  mask[1].fill_(false);
  mask[1][0] = true;
  mask[2].fill_(false);
  const auto w = aa::masked_softmax(scores, mask);
  EXPECT_TRUE(w[0].isnan().all().item<bool>());
  EXPECT_TRUE(w[1].isnan().all().item<bool>()) << "only allowed entry is NaN";
  EXPECT_TRUE((w[2] == 0).all().item<bool>()) << "nothing allowed";
  EXPECT_TRUE(aa::masked_softmax(scores, {})[0].isnan().all().item<bool>());
}

TEST(PaddingMask, AllowsExactlyTheFirstLengthPositions) {
  const auto m = aa::padding_mask(torch::tensor({0, 2, 4}), 4);
  const auto expected =
      torch::tensor({0, 0, 0, 0, 1, 1, 0, 0, 1, 1, 1, 1}, torch::kBool).reshape({3, 4});
  EXPECT_TRUE(torch::equal(m, expected));
  EXPECT_THROW(aa::padding_mask(torch::tensor({5}), 4), c10::Error);
  EXPECT_THROW(aa::padding_mask(torch::tensor({1.0f}), 4), c10::Error);
}

TEST(CausalMask, SeesOnlyThePastIncludingWhenQueriesAreTheLastPositions) {
  EXPECT_TRUE(torch::equal(aa::causal_mask(3, 3),
                           torch::tensor({1, 0, 0, 1, 1, 0, 1, 1, 1}, torch::kBool).reshape({3, 3})));
  // Two new queries after two cached keys: query 0 is position 2.
  EXPECT_TRUE(torch::equal(aa::causal_mask(2, 4),
                           torch::tensor({1, 1, 1, 0, 1, 1, 1, 1}, torch::kBool).reshape({2, 4})));
  EXPECT_THROW(aa::causal_mask(5, 4), c10::Error);
}
