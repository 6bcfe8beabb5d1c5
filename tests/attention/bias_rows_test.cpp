// Rows blocked only by a -inf float bias (additive_bias() of a mask, passed without
// the mask) give what rows blocked by the bool mask give: zero weights, zero context,
// finite gradients, in every entry point.

#include <attend/attention/dot_product.h>
#include <attend/attention/mask.h>
#include <attend/attention/multi_head.h>

#include <torch/torch.h>

#include <gtest/gtest.h>

#include <limits>
#include <vector>

namespace aa = attend::attention;

namespace {

class BiasBlockedRows : public ::testing::Test {
 protected:
  void SetUp() override { torch::manual_seed(0); }
};

// A [B,Tq,Tk] mask with one row of item 0 entirely blocked, one row of item 1
// blocked but for one key, and scattered blocks elsewhere.
torch::Tensor blocking_mask(std::int64_t b, std::int64_t tq, std::int64_t tk) {
  auto mask = torch::rand({b, tq, tk}) > 0.3;
  mask.select(2, 0).fill_(true);  // every row keeps a key ...
  mask[0][1].fill_(false);        // ... except this one
  mask[1][0].fill_(false);
  mask[1][0][tk - 1] = true;
  return mask;
}

bool all_finite(const torch::Tensor& t) { return torch::isfinite(t).all().item<bool>(); }

// The reference: LibTorch's softmax of the biased scores where a row has a finite
// score, zero where it has none.
aa::Attended plain_reference(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                             const torch::Tensor& mask) {
  const auto scores = torch::matmul(q, k.transpose(-2, -1)) / std::sqrt(static_cast<double>(q.size(-1)));
  const auto alive = mask.any(-1, /*keepdim=*/true);
  const auto w = torch::softmax(scores.masked_fill(mask.logical_not(), -1e30), -1) * alive;
  return {torch::matmul(w, v), w};
}

}  // namespace

TEST_F(BiasBlockedRows, MaskedSoftmaxOfMinusInfinityScoresIsZeroWithoutAMask) {
  const double inf = std::numeric_limits<double>::infinity();
  auto scores = torch::tensor({{-inf, -inf, -inf}, {0.5, -inf, 1.0}}, torch::kFloat64).requires_grad_(true);
  const auto w = aa::masked_softmax(scores, {});
  EXPECT_TRUE((w[0] == 0).all().item<bool>());
  EXPECT_NEAR(w[1][0].item<double>(), 1 / (1 + std::exp(0.5)), 1e-12);
  EXPECT_EQ(w[1][1].item<double>(), 0.0);
  (w * torch::randn({2, 3}, torch::kFloat64)).sum().backward();
  EXPECT_TRUE(all_finite(scores.grad()));
  EXPECT_TRUE((scores.grad()[0] == 0).all().item<bool>());
}

TEST_F(BiasBlockedRows, ScaledDotProductGivesWhatTheMaskGivesWithGradients) {
  const auto mask = blocking_mask(2, 3, 5);
  const auto bias = aa::additive_bias(mask);
  for (const bool grad : {false, true}) {
    SCOPED_TRACE(grad ? "with gradients" : "without gradients");
    auto q = torch::randn({2, 3, 4}).requires_grad_(grad), k = torch::randn({2, 5, 4}).requires_grad_(grad);
    auto v = torch::randn({2, 5, 6}).requires_grad_(grad);
    const auto by_bias = aa::scaled_dot_product_attention(q, k, v, {}, bias);
    const auto by_mask = aa::scaled_dot_product_attention(q, k, v, mask);
    const auto reference = plain_reference(q, k, v, mask);
    EXPECT_TRUE(all_finite(by_bias.weights) && all_finite(by_bias.context));
    EXPECT_TRUE((by_bias.weights[0][1] == 0).all().item<bool>());
    EXPECT_TRUE((by_bias.context[0][1] == 0).all().item<bool>());
    EXPECT_TRUE(torch::allclose(by_bias.weights, reference.weights, 1e-5, 1e-6));
    EXPECT_TRUE(torch::allclose(by_bias.context, reference.context, 1e-5, 1e-5));
    EXPECT_TRUE(torch::allclose(by_bias.weights, by_mask.weights, 1e-6, 1e-7));
    if (!grad) continue;
    const auto gc = torch::randn({2, 3, 6}), gw = torch::randn({2, 3, 5});
    auto grads = [&](const aa::Attended& a) {
      return torch::autograd::grad({a.context, a.weights}, {q, k, v}, {gc, gw}, /*retain_graph=*/true);
    };
    const auto from_bias = grads(by_bias), from_reference = grads(reference);
    for (std::size_t i = 0; i < 3; ++i) {
      EXPECT_TRUE(all_finite(from_bias[i])) << "input " << i;
      EXPECT_TRUE(torch::allclose(from_bias[i], from_reference[i], 1e-4, 1e-5)) << "input " << i;
    }
    EXPECT_TRUE((from_bias[0][0][1] == 0).all().item<bool>()) << "a blocked query gets no gradient";
  }
}

TEST_F(BiasBlockedRows, HeadAttentionInferenceGivesWhatTheMaskGives) {
  const auto q = torch::randn({2, 3, 4, 8}), k = torch::randn({2, 3, 6, 8}), v = torch::randn({2, 3, 6, 5});
  auto mask = torch::rand({2, 3, 4, 6}) > 0.3;
  mask.select(3, 0).fill_(true);
  mask[0][1][2].fill_(false);  // one row of one head of item 0
  mask[1].select(1, 3).fill_(false);  // the last query of every head of item 1
  const auto bias = aa::additive_bias(mask);
  torch::NoGradGuard no_grad;
  const auto reference = plain_reference(q, k, v, mask);
  // One block for everything, and blocks of one head's rows.
  for (const std::int64_t block_bytes : {std::int64_t{8} << 20, std::int64_t{1}}) {
    for (const auto weights : {aa::HeadWeights::kPerHead, aa::HeadWeights::kAverage}) {
      SCOPED_TRACE(testing::Message() << "block_bytes " << block_bytes << " per head "
                                      << (weights == aa::HeadWeights::kPerHead));
      const auto options = aa::HeadAttentionOptions().weights(weights).block_bytes(block_bytes);
      const auto out = aa::attend_heads(q, k, v, {}, bias, options);
      EXPECT_TRUE(all_finite(out.weights) && all_finite(out.context));
      EXPECT_TRUE(torch::allclose(out.context, reference.context, 1e-5, 1e-5));
      const auto expected = weights == aa::HeadWeights::kPerHead ? reference.weights : reference.weights.mean(1);
      EXPECT_TRUE(torch::allclose(out.weights, expected, 1e-5, 1e-6));
      EXPECT_TRUE((out.context[0][1][2] == 0).all().item<bool>());
      EXPECT_TRUE((out.context[1].select(1, 3) == 0).all().item<bool>());
    }
  }
}

// The blocked autograd function (BlockedHeadAttention) in float32 and float64, and the
// LibTorch-ops path taken when the bias itself needs gradients.
TEST_F(BiasBlockedRows, HeadAttentionGradientsAreFiniteAndEqualTheReference) {
  auto mask = torch::rand({2, 1, 4, 6}) > 0.3;
  mask.select(3, 0).fill_(true);
  mask[1][0][2].fill_(false);
  for (const auto dtype : {torch::kFloat32, torch::kFloat64}) {
    for (const bool bias_grad : {false, true}) {
      SCOPED_TRACE(testing::Message() << dtype << (bias_grad ? ", bias with gradient" : ""));
      const auto q = torch::randn({2, 3, 4, 8}, dtype).requires_grad_(true);
      const auto k = torch::randn({2, 3, 6, 8}, dtype).requires_grad_(true);
      const auto v = torch::randn({2, 3, 6, 5}, dtype).requires_grad_(true);
      const auto bias = aa::additive_bias(mask, dtype).requires_grad_(bias_grad);
      const auto out = aa::attend_heads(q, k, v, {}, bias, aa::HeadAttentionOptions().block_bytes(1));
      const auto reference = plain_reference(q, k, v, mask);
      const double tol = dtype == torch::kFloat64 ? 1e-10 : 1e-5;
      EXPECT_TRUE(torch::allclose(out.context, reference.context, tol, tol));
      EXPECT_TRUE(torch::allclose(out.weights, reference.weights.mean(1), tol, tol));
      const auto gc = torch::randn_like(out.context), gw = torch::randn_like(out.weights);
      const auto got = torch::autograd::grad({out.context, out.weights}, {q, k, v}, {gc, gw});
      const auto want = torch::autograd::grad({reference.context, reference.weights.mean(1)}, {q, k, v}, {gc, gw});
      for (std::size_t i = 0; i < 3; ++i) {
        EXPECT_TRUE(all_finite(got[i])) << "input " << i;
        EXPECT_TRUE(torch::allclose(got[i], want[i], 10 * tol, 10 * tol)) << "input " << i;
      }
      EXPECT_TRUE((got[0][1].select(1, 2) == 0).all().item<bool>()) << "the blocked query gets no gradient";
    }
  }
}

TEST_F(BiasBlockedRows, HeadAttentionSecondOrderGradientsAreFinite) {
  auto mask = torch::ones({1, 1, 3, 4}, torch::kBool);
  mask[0][0][1].fill_(false);
  const auto q = torch::randn({1, 2, 3, 4}, torch::kFloat64).requires_grad_(true);
  const auto k = torch::randn({1, 2, 4, 4}, torch::kFloat64).requires_grad_(true);
  const auto v = torch::randn({1, 2, 4, 3}, torch::kFloat64).requires_grad_(true);
  const auto out = aa::attend_heads(q, k, v, {}, aa::additive_bias(mask, torch::kFloat64));
  const auto first = torch::autograd::grad({out.context.pow(2).sum()}, {q, k}, {}, true, /*create_graph=*/true);
  const auto second = torch::autograd::grad({first[0].sum() + first[1].sum()}, {q, k, v});
  for (const auto& g : second) EXPECT_TRUE(all_finite(g));
}

TEST_F(BiasBlockedRows, MultiHeadGivesWhatTheMaskGivesWithGradients) {
  aa::MultiHeadAttention mha(aa::MultiHeadAttentionOptions(8, 2));
  {
    torch::NoGradGuard no_grad;
    mha->out_proj->bias.uniform_(-1, 1);  // so that a zero context shows as exactly the bias
  }
  const auto x = torch::randn({2, 4, 8}), memory = torch::randn({2, 5, 8});
  const auto mask = blocking_mask(2, 4, 5);
  for (const bool grad : {false, true}) {
    SCOPED_TRACE(grad ? "with gradients" : "without gradients");
    torch::AutoGradMode mode(grad);
    const auto by_bias = mha->forward(x, memory, memory, {}, {}, aa::additive_bias(mask));
    const auto by_mask = mha->forward(x, memory, memory, {}, mask);
    ASSERT_EQ(by_bias.context.requires_grad(), grad);
    EXPECT_TRUE(all_finite(by_bias.context) && all_finite(by_bias.weights));
    EXPECT_TRUE(torch::allclose(by_bias.context, by_mask.context, 1e-5, 1e-6));
    EXPECT_TRUE(torch::allclose(by_bias.weights, by_mask.weights, 1e-6, 1e-7));
    EXPECT_TRUE((by_bias.weights[0][1] == 0).all().item<bool>());
    EXPECT_TRUE(torch::equal(by_bias.context[0][1], mha->out_proj->bias.detach())) << "zero context, then out_proj";
    if (!grad) continue;
    const auto params = mha->parameters();
    const auto gc = torch::randn_like(by_bias.context);
    const auto got = torch::autograd::grad({by_bias.context}, params, {gc});
    const auto want = torch::autograd::grad({by_mask.context}, params, {gc});
    for (std::size_t i = 0; i < params.size(); ++i) {
      EXPECT_TRUE(all_finite(got[i])) << "parameter " << i;
      EXPECT_TRUE(torch::allclose(got[i], want[i], 1e-4, 1e-5)) << "parameter " << i;
    }
  }
}
