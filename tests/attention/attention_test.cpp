#include <attend/attention/additive.h>
#include <attend/attention/dot_product.h>
#include <attend/attention/mask.h>
#include <attend/attention/multi_head.h>
#include <attend/attention/spatial.h>

#include <finite_differences.h>
#include <test_support.h>

#include <torch/torch.h>

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <vector>

namespace aa = attend::attention;
using torch::indexing::Slice;

class Attention : public ::testing::Test {
 protected:
  void SetUp() override { torch::manual_seed(0); }
};

TEST_F(Attention, ScaledDotProductMatchesANaiveLoop) {
  const auto q = torch::randn({2, 3, 4}), k = torch::randn({2, 5, 4}), v = torch::randn({2, 5, 6});
  const auto mask = torch::rand({2, 3, 5}) > 0.3;
  const auto out = aa::scaled_dot_product_attention(q, k, v, mask);
  for (std::int64_t b = 0; b < 2; ++b) {
    for (std::int64_t i = 0; i < 3; ++i) {
      std::vector<double> s;
      double z = 0, top = -1e300;
      for (std::int64_t j = 0; j < 5; ++j) {
        s.push_back((q[b][i] * k[b][j]).sum().item<double>() / 2.0);
        if (mask[b][i][j].item<bool>()) top = std::max(top, s.back());
      }
      for (std::int64_t j = 0; j < 5; ++j) z += mask[b][i][j].item<bool>() ? std::exp(s[j] - top) : 0.0;
      auto context = torch::zeros({6}, torch::kFloat64);
      for (std::int64_t j = 0; j < 5; ++j) {
        const double w = (mask[b][i][j].item<bool>() && z > 0) ? std::exp(s[j] - top) / z : 0.0;
        EXPECT_NEAR(out.weights[b][i][j].item<double>(), w, 1e-6);
        context += w * v[b][j].to(torch::kFloat64);
      }
      EXPECT_TRUE(torch::allclose(out.context[b][i].to(torch::kFloat64), context, 1e-5, 1e-6));
    }
  }
}

TEST_F(Attention, FullyMaskedQueriesGiveZeroContextAndFiniteGradients) {
  auto q = torch::randn({1, 2, 4}, torch::requires_grad(true));
  const auto k = torch::randn({1, 3, 4}), v = torch::randn({1, 3, 2});
  const auto mask = torch::tensor({{{false, false, false}, {true, false, true}}});
  const auto out = aa::scaled_dot_product_attention(q, k, v, mask);
  EXPECT_TRUE((out.context[0][0] == 0).all().item<bool>());
  EXPECT_TRUE((out.weights[0][0] == 0).all().item<bool>());
  EXPECT_EQ(out.weights[0][1][1].item<float>(), 0.0f);
  out.context.sum().backward();
  EXPECT_TRUE(torch::isfinite(q.grad()).all().item<bool>());
}

TEST_F(Attention, DropoutChangesTheContextButNotTheReturnedWeights) {
  const auto q = torch::randn({2, 4, 8}), k = torch::randn({2, 6, 8}), v = torch::randn({2, 6, 8});
  const auto plain = aa::scaled_dot_product_attention(q, k, v);
  const auto dropped = aa::scaled_dot_product_attention(q, k, v, {}, {}, 0.5, /*training=*/true);
  EXPECT_TRUE(torch::allclose(plain.weights, dropped.weights));
  EXPECT_FALSE(torch::allclose(plain.context, dropped.context));
  EXPECT_TRUE(torch::allclose(plain.weights.sum(-1), torch::ones({2, 4})));
  const auto eval = aa::scaled_dot_product_attention(q, k, v, {}, {}, 0.5, /*training=*/false);
  EXPECT_TRUE(torch::allclose(plain.context, eval.context));
}

TEST_F(Attention, ScaledDotProductGradientsMatchFiniteDifferences) {
  const auto k = torch::randn({2, 5, 3}, torch::kFloat64), v = torch::randn({2, 5, 4}, torch::kFloat64);
  const auto mask = aa::padding_mask(torch::tensor({3, 5}), 5).unsqueeze(1);
  const auto w = torch::randn({2, 2, 4}, torch::kFloat64);
  attend::testing::expect_gradient_matches_finite_differences(
      [&](const torch::Tensor& q) { return (aa::scaled_dot_product_attention(q, k, v, mask).context * w).sum(); },
      torch::randn({2, 2, 3}));
}

TEST_F(Attention, AdditiveMatchesItsDefinitionAndPrecomputedKeysGiveTheSameResult) {
  aa::AdditiveAttention att(5, 3, 7);
  const auto query = torch::randn({2, 5}), keys = torch::randn({2, 4, 3}), values = torch::randn({2, 4, 6});
  const auto mask = aa::padding_mask(torch::tensor({4, 2}), 4);
  const auto out = att->forward(query, keys, values, mask);
  const auto again = att->forward_projected(query, att->project_keys(keys), values, mask);
  EXPECT_TRUE(torch::equal(out.context, again.context));
  for (std::int64_t b = 0; b < 2; ++b) {
    auto scores = torch::zeros({4});
    for (std::int64_t n = 0; n < 4; ++n) {
      scores[n] = (att->v * torch::tanh(torch::mv(att->query_proj->weight, query[b]) +
                                        torch::mv(att->key_proj->weight, keys[b][n]) + att->key_proj->bias))
                      .sum();
    }
    const auto allowed = mask[b];
    const auto expected = torch::softmax(scores.masked_fill(allowed.logical_not(), -1e30), 0) * allowed;
    EXPECT_TRUE(torch::allclose(out.weights[b], expected, 1e-5, 1e-6));
  }
  EXPECT_EQ(out.weights[1][2].item<float>(), 0.0f);
  EXPECT_EQ(out.context.sizes(), (std::vector<std::int64_t>{2, 6}));
}

TEST_F(Attention, AdditiveGradientsMatchFiniteDifferences) {
  aa::AdditiveAttention att(3, 2, 4);
  att->to(torch::kFloat64);
  const auto keys = torch::randn({2, 3, 2}, torch::kFloat64), values = torch::randn({2, 3, 2}, torch::kFloat64);
  attend::testing::expect_gradient_matches_finite_differences(
      [&](const torch::Tensor& q) { return att->forward(q, keys, values).context.pow(2).sum(); },
      torch::randn({2, 3}));
}

TEST_F(Attention, MultiHeadEqualsLibTorchWithTheSameWeights) {
  for (const bool separate_kv : {false, true}) {
    SCOPED_TRACE(separate_kv);
    // LibTorch 1.13 asserts key.sizes() == value.sizes(), so its kdim must equal vdim;
    // ours allows them to differ (checked by the shape tests below).
    auto options = torch::nn::MultiheadAttentionOptions(16, 4);
    if (separate_kv) options.kdim(10).vdim(10);
    torch::nn::MultiheadAttention theirs(options);
    aa::MultiHeadAttention ours(aa::MultiHeadAttentionOptions(16, 4).kdim(separate_kv ? 10 : 0).vdim(separate_kv ? 10 : 0));
    ours->load_from(theirs);
    const auto q = torch::randn({3, 5, 16});
    const auto k = torch::randn({3, 7, separate_kv ? 10 : 16}), v = torch::randn({3, 7, separate_kv ? 10 : 16});
    const auto bias = torch::randn({5, 7});
    const auto [ref_out, ref_w] =
        theirs->forward(q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1), {}, true, bias);
    const auto out = ours->forward(q, k, v, {}, {}, bias);
    EXPECT_TRUE(torch::allclose(out.context, ref_out.transpose(0, 1), 1e-5, 1e-6));
    EXPECT_TRUE(torch::allclose(out.weights, ref_w, 1e-5, 1e-6));
    const auto [plain_out, plain_w] = theirs->forward(q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1));
    EXPECT_TRUE(torch::allclose(ours->forward(q, k, v).context, plain_out.transpose(0, 1), 1e-5, 1e-6));
    if (!separate_kv) {  // self-attention takes the fused projection path
      const auto [self_out, self_w] = theirs->forward(q.transpose(0, 1), q.transpose(0, 1), q.transpose(0, 1));
      const auto self = ours->forward(q, q, q);
      EXPECT_TRUE(torch::allclose(self.context, self_out.transpose(0, 1), 1e-5, 1e-6));
      EXPECT_TRUE(torch::allclose(self.weights, self_w, 1e-5, 1e-6));
      // Keys and values from one memory take the packed key/value product.
      const auto [memory_out, memory_w] = theirs->forward(q.transpose(0, 1), k.transpose(0, 1), k.transpose(0, 1));
      const auto memory = ours->forward(q, k, k);
      EXPECT_TRUE(torch::allclose(memory.context, memory_out.transpose(0, 1), 1e-5, 1e-6));
      EXPECT_TRUE(torch::allclose(memory.weights, memory_w, 1e-5, 1e-6));
    }
    // Per-head weights average to LibTorch's.
    const auto per_head = ours->forward(q, k, v, {}, {}, bias, aa::HeadWeights::kPerHead).weights;
    EXPECT_EQ(per_head.sizes(), (std::vector<std::int64_t>{3, 4, 5, 7}));
    EXPECT_TRUE(torch::allclose(per_head.mean(1), ref_w, 1e-5, 1e-6));
  }
}

TEST_F(Attention, MultiHeadBoolMasksBlockWhereLibTorchWouldAddOneInstead) {
  torch::nn::MultiheadAttention theirs(8, 2);
  aa::MultiHeadAttention ours(8, 2);
  ours->load_from(theirs);
  const auto x = torch::randn({2, 4, 8});
  const auto causal = aa::causal_mask(4, 4);
  const auto lengths = aa::padding_mask(torch::tensor({4, 3}), 4);
  const auto out = ours->forward(x, x, x, lengths, causal);
  // Blocking: exactly zero weight on the future and on padding.
  EXPECT_TRUE((out.weights.masked_select(causal.logical_not().unsqueeze(0).expand({2, 4, 4})) == 0).all().item<bool>());
  EXPECT_TRUE((out.weights[1].index({Slice(), 3}) == 0).all().item<bool>());
  // The same as LibTorch given the equivalent additive -inf mask.
  const auto neg_inf = torch::zeros({4, 4}).masked_fill(causal.logical_not(), -INFINITY);
  const auto [ref_out, ref_w] = theirs->forward(x.transpose(0, 1), x.transpose(0, 1), x.transpose(0, 1),
                                                lengths.logical_not(), true, neg_inf);
  EXPECT_TRUE(torch::allclose(out.context, ref_out.transpose(0, 1), 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(out.weights, ref_w, 1e-5, 1e-6));
  // LibTorch 1.13 given the bool mask itself adds it as 0/1 and does not block.
  const auto [bool_out, bool_w] =
      theirs->forward(x.transpose(0, 1), x.transpose(0, 1), x.transpose(0, 1), {}, true, causal.logical_not());
  EXPECT_GT(bool_w.masked_select(causal.logical_not().unsqueeze(0).expand({2, 4, 4})).abs().sum().item<float>(), 0.0f);
}

TEST_F(Attention, MultiHeadGradientsMatchFiniteDifferences) {
  aa::MultiHeadAttention mha(4, 2);
  mha->to(torch::kFloat64);
  const auto kv = torch::randn({1, 3, 4}, torch::kFloat64);
  const auto mask = aa::padding_mask(torch::tensor({2}), 3);
  attend::testing::expect_gradient_matches_finite_differences(
      [&](const torch::Tensor& q) { return mha->forward(q, kv, kv, mask).context.pow(2).sum(); },
      torch::randn({1, 2, 4}));
}

TEST_F(Attention, MultiHeadRejectsInconsistentShapesAndFloatBoolConfusion) {
  aa::MultiHeadAttention mha(8, 2);
  const auto x = torch::randn({2, 3, 8});
  EXPECT_THROW(aa::MultiHeadAttention(10, 3), c10::Error);
  EXPECT_THROW(mha->forward(torch::randn({2, 3, 6}), x, x), c10::Error);
  EXPECT_THROW(mha->forward(x, x, torch::randn({2, 4, 8})), c10::Error);
  EXPECT_THROW(mha->forward(x, x, x, torch::ones({2, 3})), c10::Error) << "float key mask";
  EXPECT_THROW(mha->forward(x, x, x, {}, torch::ones({3, 3})), c10::Error) << "float attn mask";
  torch::nn::MultiheadAttention other(16, 2);
  EXPECT_THROW(mha->load_from(other), c10::Error);
  // Keys and values of different widths (which LibTorch's module cannot take).
  aa::MultiHeadAttention kv(aa::MultiHeadAttentionOptions(8, 2).kdim(5).vdim(3));
  const auto out = kv->forward(x, torch::randn({2, 4, 5}), torch::randn({2, 4, 3}));
  EXPECT_EQ(out.context.sizes(), (std::vector<std::int64_t>{2, 3, 8}));
  EXPECT_TRUE(torch::allclose(out.weights.sum(-1), torch::ones({2, 3})));
}

TEST_F(Attention, IncrementalDecodingWithACacheEqualsTheCausalFullSequence) {
  aa::MultiHeadAttention mha(aa::MultiHeadAttentionOptions(12, 3));
  const auto x = torch::randn({2, 6, 12});
  const auto full = mha->forward(x, x, x, {}, aa::causal_mask(6, 6));
  aa::KvCache cache;
  // Two tokens at once, then one at a time.
  auto first = mha->forward_step(x.narrow(1, 0, 2), x.narrow(1, 0, 2), x.narrow(1, 0, 2), cache);
  EXPECT_TRUE(torch::allclose(first.context, full.context.narrow(1, 0, 2), 1e-5, 1e-6));
  for (std::int64_t t = 2; t < 6; ++t) {
    const auto step = mha->forward_step(x.narrow(1, t, 1), x.narrow(1, t, 1), x.narrow(1, t, 1), cache);
    EXPECT_EQ(cache.length(), t + 1);
    EXPECT_TRUE(torch::allclose(step.context, full.context.narrow(1, t, 1), 1e-5, 1e-6)) << "step " << t;
    EXPECT_TRUE(torch::allclose(step.weights.squeeze(1), full.weights.select(1, t).narrow(1, 0, t + 1), 1e-5, 1e-6));
  }
}

// attend_heads computes block by block; every blocking, with and without gradients,
// must give what scaled_dot_product_attention gives on the whole tensors at once.
TEST_F(Attention, HeadBlocksEqualOneScaledDotProductOverAllHeads) {
  const std::int64_t b = 3, h = 4, tq = 5, tk = 7;
  // Strided inputs (head views of [B,T,H,d] projections), as MultiHeadAttention passes them.
  const auto q = torch::randn({b, tq, h, 6}).transpose(1, 2), k = torch::randn({b, tk, h, 6}).transpose(1, 2);
  const auto v = torch::randn({b, tk, h, 5}).transpose(1, 2);
  auto mask = torch::rand({b, 1, tq, tk}) > 0.3;
  mask.index_put_({1, 0, 2}, false);  // a row with nothing allowed
  const auto bias = torch::randn({1, h, tq, tk});
  const auto ref = aa::scaled_dot_product_attention(q, k, v, mask, bias);
  // block_bytes: one row of one head at a time, two heads, whole items, everything.
  for (const std::int64_t block : {1, 2 * 232, 2 * 4 * 232, 1 << 20}) {
    for (const bool grad : {false, true}) {
      SCOPED_TRACE(testing::Message() << "block " << block << " grad " << grad);
      torch::AutoGradMode mode(grad);
      const auto qg = q.detach().requires_grad_(grad);
      const auto per_head = aa::attend_heads(
          qg, k, v, mask, bias, aa::HeadAttentionOptions().block_bytes(block).weights(aa::HeadWeights::kPerHead));
      EXPECT_TRUE(torch::allclose(per_head.context, ref.context, 1e-5, 1e-6));
      EXPECT_TRUE(torch::allclose(per_head.weights, ref.weights, 1e-5, 1e-6));
      const auto averaged = aa::attend_heads(qg, k, v, mask, bias, aa::HeadAttentionOptions().block_bytes(block));
      EXPECT_TRUE(torch::allclose(averaged.context, ref.context, 1e-5, 1e-6));
      EXPECT_TRUE(torch::allclose(averaged.weights, ref.weights.mean(1), 1e-5, 1e-6));
      EXPECT_TRUE((averaged.weights[1][2] == 0).all().item<bool>()) << "fully masked row";
      EXPECT_TRUE(per_head.context.requires_grad() == grad && averaged.weights.requires_grad() == grad);
    }
  }
}

TEST_F(Attention, HeadBlockGradientsEqualTheReferenceAndFiniteDifferences) {
  const auto k = torch::randn({2, 2, 4, 3}, torch::kFloat64), v = torch::randn({2, 2, 4, 3}, torch::kFloat64);
  const auto mask = aa::causal_mask(3, 4).view({1, 1, 3, 4});
  const auto upstream = torch::randn({2, 3, 4}, torch::kFloat64);
  auto loss = [&](const aa::Attended& a) { return a.context.pow(2).sum() + (a.weights * upstream).sum(); };
  attend::testing::expect_gradient_matches_finite_differences(
      [&](const torch::Tensor& q) { return loss(aa::attend_heads(q, k, v, mask)); },
      torch::randn({2, 2, 3, 3}));
  // The same gradient as the reference formulation.
  auto q1 = torch::randn({2, 2, 3, 3}, torch::dtype(torch::kFloat64).requires_grad(true));
  auto q2 = q1.detach().clone().requires_grad_(true);
  loss(aa::attend_heads(q1, k, v, mask)).backward();
  const auto ref = aa::scaled_dot_product_attention(q2, k, v, mask);
  (ref.context.pow(2).sum() + (ref.weights.mean(1) * upstream).sum()).backward();
  EXPECT_TRUE(torch::allclose(q1.grad(), q2.grad(), 1e-10, 1e-12));
}

// With gradients (no dropout) attend_heads keeps only q, k and v and recomputes each
// block's weights in backward; every gradient must equal autograd's through the
// plain formulation, for both kinds of returned weights and every blocking.
TEST_F(Attention, HeadBlockGradientsOfQKVEqualAutogradThroughTheReference) {
  const std::int64_t b = 3, h = 4, tq = 5, tk = 6, d = 3, dv = 2;
  auto opts = torch::dtype(torch::kFloat64);
  // Strided q, k, v: head views of [B,T,H,d] tensors.
  const auto q0 = torch::randn({b, tq, h, d}, opts), k0 = torch::randn({b, tk, h, d}, opts);
  const auto v0 = torch::randn({b, tk, h, dv}, opts);
  auto mask = torch::rand({b, 1, tq, tk}) > 0.3;
  mask.index_put_({2, 0, 1}, false);  // a row with nothing allowed
  const auto bias = torch::randn({1, h, tq, tk}, opts);
  const auto upstream_context = torch::randn({b, h, tq, dv}, opts);
  for (const bool per_head : {false, true}) {
    const auto upstream_weights = torch::randn(per_head ? std::vector<std::int64_t>{b, h, tq, tk}
                                                        : std::vector<std::int64_t>{b, tq, tk}, opts);
    auto loss = [&](const aa::Attended& a) {
      return (a.context * upstream_context).sum() + (a.weights * upstream_weights).sum();
    };
    auto leaves = [&] {
      return std::vector<torch::Tensor>{q0.clone().requires_grad_(true), k0.clone().requires_grad_(true),
                                        v0.clone().requires_grad_(true)};
    };
    auto ref_in = leaves();
    const auto ref = aa::scaled_dot_product_attention(ref_in[0].transpose(1, 2), ref_in[1].transpose(1, 2),
                                                      ref_in[2].transpose(1, 2), mask, bias);
    loss({ref.context, per_head ? ref.weights : ref.weights.mean(1)}).backward();
    // One head per block, two heads (backward; forward 2), one whole item (backward;
    // forward 1 item), everything. A head's share: forward 680 bytes, backward 920.
    for (const std::int64_t block : {1, 2 * 920, 4 * 920, 1 << 20}) {
      SCOPED_TRACE(testing::Message() << "per_head " << per_head << " block " << block);
      auto in = leaves();
      const auto out = aa::attend_heads(
          in[0].transpose(1, 2), in[1].transpose(1, 2), in[2].transpose(1, 2), mask, bias,
          aa::HeadAttentionOptions().block_bytes(block).weights(per_head ? aa::HeadWeights::kPerHead
                                                                         : aa::HeadWeights::kAverage));
      loss(out).backward();
      for (int i = 0; i < 3; ++i) {
        EXPECT_TRUE(torch::allclose(in[i].grad(), ref_in[i].grad(), 1e-10, 1e-12))
            << "input " << i << ": " << (in[i].grad() - ref_in[i].grad()).abs().max().item<double>();
        EXPECT_TRUE(in[i].grad().isfinite().all().item<bool>());
      }
    }
  }
  // Only the weights used, or only the context: the other gradient is zero.
  for (const bool use_context : {false, true}) {
    auto k = k0.clone().requires_grad_(true), v = v0.clone().requires_grad_(true);
    const auto out = aa::attend_heads(q0.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), mask);
    (use_context ? out.context.sum() : out.weights.pow(2).sum()).backward();
    EXPECT_EQ(v.grad().abs().sum().item<double>() == 0, !use_context);
    EXPECT_GT(k.grad().abs().sum().item<double>(), 0);
  }
  // Finite differences through k and v as well (q is checked above).
  const auto q = q0.transpose(1, 2);
  attend::testing::expect_gradient_matches_finite_differences(
      [&](const torch::Tensor& k) {
        const auto a = aa::attend_heads(q, k, v0.transpose(1, 2), mask, bias);
        return (a.context * upstream_context).sum() + a.weights.pow(2).sum();
      },
      k0.transpose(1, 2).contiguous());
  attend::testing::expect_gradient_matches_finite_differences(
      [&](const torch::Tensor& v) { return (aa::attend_heads(q, k0.transpose(1, 2), v, mask).context * upstream_context).sum(); },
      v0.transpose(1, 2).contiguous());
}

// Dropout on the weights used for the context: each kept with probability 1 - p and
// scaled by 1 / (1 - p); the returned weights are those before dropout.
TEST_F(Attention, HeadAttentionDropoutKeepsWeightsWithProbabilityOneMinusPScaled) {
  const std::int64_t b = 3, h = 4, tq = 50, tk = 40;
  const double p = 0.3;
  const auto q = torch::randn({b, h, tq, 8}), k = torch::randn({b, h, tk, 8});
  // One-hot values: the context is exactly the weights used.
  const auto v = torch::eye(tk).expand({b, h, tk, tk});
  const auto plain = aa::attend_heads(q, k, v, {}, {}, aa::HeadAttentionOptions().weights(aa::HeadWeights::kPerHead));
  for (const bool grad : {false, true}) {
    SCOPED_TRACE(grad ? "with gradients" : "without gradients");
    const auto qg = q.clone().requires_grad_(grad);
    const auto out = aa::attend_heads(
        qg, k, v, {}, {},
        aa::HeadAttentionOptions().dropout(p).training(true).weights(aa::HeadWeights::kPerHead).block_bytes(64 << 10));
    EXPECT_TRUE(torch::allclose(out.weights, plain.weights, 1e-6, 1e-7)) << "weights before dropout";
    const auto used = out.context.detach();
    const auto dropped = used == 0;
    EXPECT_TRUE(torch::allclose(used.masked_select(~dropped), (plain.weights / (1 - p)).masked_select(~dropped), 1e-5,
                                1e-7));
    EXPECT_NEAR(dropped.to(torch::kFloat64).mean().item<double>(), p, 0.02);
  }
  // Without training, no dropout.
  const auto eval = aa::attend_heads(q, k, v, {}, {}, aa::HeadAttentionOptions().dropout(p));
  EXPECT_TRUE(torch::allclose(eval.context, plain.context, 1e-6, 1e-7));
}

// With the generator seeded alike, the same weights are dropped on every call, so the
// gradients through dropout can be checked against finite differences.
TEST_F(Attention, HeadAttentionDropoutGradientsMatchFiniteDifferences) {
  auto opts = torch::dtype(torch::kFloat64);
  const auto q0 = torch::randn({2, 2, 4, 3}, opts), k0 = torch::randn({2, 2, 5, 3}, opts);
  const auto v0 = torch::randn({2, 2, 5, 2}, opts), up = torch::randn({2, 2, 4, 2}, opts);
  const auto mask = torch::rand({2, 1, 4, 5}) > 0.2;
  const auto options = aa::HeadAttentionOptions().dropout(0.4).training(true);
  auto f = [&](const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
    torch::manual_seed(11);
    const auto a = aa::attend_heads(q, k, v, mask, {}, options);
    return (a.context * up).sum() + a.weights.pow(2).sum();
  };
  attend::testing::expect_gradient_matches_finite_differences([&](const torch::Tensor& q) { return f(q, k0, v0); }, q0);
  attend::testing::expect_gradient_matches_finite_differences([&](const torch::Tensor& k) { return f(q0, k, v0); }, k0);
  attend::testing::expect_gradient_matches_finite_differences([&](const torch::Tensor& v) { return f(q0, k0, v); }, v0);
}

// Float32, as models train: the same gradients as autograd through the reference.
TEST_F(Attention, HeadBlockGradientsInFloat32EqualTheReference) {
  const auto q0 = torch::randn({4, 20, 8, 16}), k0 = torch::randn({4, 30, 8, 16}), v0 = torch::randn({4, 30, 8, 16});
  const auto mask = torch::rand({4, 1, 1, 30}) > 0.2;
  const auto up = torch::randn({4, 8, 20, 16});
  std::vector<torch::Tensor> ours, ref;
  for (int which = 0; which < 2; ++which) {
    auto q = q0.clone().requires_grad_(true), k = k0.clone().requires_grad_(true), v = v0.clone().requires_grad_(true);
    const auto a = which == 0 ? aa::attend_heads(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), mask, {},
                                                 aa::HeadAttentionOptions().block_bytes(64 << 10))
                              : aa::scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2),
                                                                 v.transpose(1, 2), mask);
    (a.context * up).sum().backward();
    (which == 0 ? ours : ref) = {q.grad(), k.grad(), v.grad()};
  }
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(torch::allclose(ours[i], ref[i], 1e-4, 1e-5)) << "input " << i;
}

// Backward recomputes the weights from the saved inputs, mask and bias: changing any
// of them in place before backward must be an error, not silently wrong gradients.
TEST_F(Attention, HeadAttentionRejectsInputsChangedBeforeBackward) {
  const auto k = torch::randn({2, 2, 5, 3}), v = torch::randn({2, 2, 5, 3});
  for (int changed = 0; changed < 3; ++changed) {
    SCOPED_TRACE(changed);
    auto q = torch::randn({2, 2, 4, 3}).requires_grad_(true);
    auto mask = torch::rand({2, 1, 4, 5}) > 0.3;
    auto bias = torch::randn({1, 2, 4, 5});
    auto qv = q * 1.0;  // a non-leaf that may be changed in place
    const auto out = aa::attend_heads(qv, k, v, mask, bias);
    if (changed == 0) mask.logical_not_();
    if (changed == 1) bias.add_(1.0);
    if (changed == 2) qv.add_(1.0);
    EXPECT_THROW(out.context.sum().backward(), c10::Error);
  }
}

// Second-order gradients (a gradient penalty): backward with create_graph goes
// through LibTorch's ops and must match the reference's double backward.
TEST_F(Attention, HeadAttentionSecondOrderGradientsEqualTheReference) {
  auto opts = torch::dtype(torch::kFloat64);
  const auto q0 = torch::randn({2, 2, 4, 3}, opts), k = torch::randn({2, 2, 5, 3}, opts);
  const auto v = torch::randn({2, 2, 5, 2}, opts);
  const auto mask = torch::rand({2, 1, 4, 5}) > 0.3;
  std::vector<torch::Tensor> grads;
  for (int which = 0; which < 2; ++which) {
    auto q = q0.clone().requires_grad_(true);
    const auto a = which == 0 ? aa::attend_heads(q, k, v, mask) : aa::scaled_dot_product_attention(q, k, v, mask);
    const auto weights = which == 0 ? a.weights : a.weights.mean(1);
    const auto loss = a.context.pow(2).sum() + weights.pow(2).sum();
    const auto g = torch::autograd::grad({loss}, {q}, {}, /*retain_graph=*/true, /*create_graph=*/true)[0];
    g.pow(2).sum().backward();
    grads.push_back(q.grad());
  }
  EXPECT_GT(grads[1].abs().sum().item<double>(), 0);
  EXPECT_TRUE(torch::allclose(grads[0], grads[1], 1e-10, 1e-12));
}

// A bias that needs gradients takes the LibTorch-ops path: same results.
TEST_F(Attention, HeadAttentionWithABiasThatNeedsGradientsEqualsTheReference) {
  auto opts = torch::dtype(torch::kFloat64);
  const auto q = torch::randn({2, 3, 4, 5}, opts), k = torch::randn({2, 3, 6, 5}, opts), v = torch::randn({2, 3, 6, 2}, opts);
  auto bias1 = torch::randn({2, 1, 4, 6}, opts).requires_grad_(true);
  auto bias2 = bias1.detach().clone().requires_grad_(true);
  const auto ours = aa::attend_heads(q, k, v, {}, bias1);
  const auto ref = aa::scaled_dot_product_attention(q, k, v, {}, bias2);
  EXPECT_TRUE(torch::allclose(ours.context, ref.context, 1e-12, 1e-12));
  EXPECT_TRUE(torch::allclose(ours.weights, ref.weights.mean(1), 1e-12, 1e-12));
  (ours.context.sum() + ours.weights.pow(2).sum()).backward();
  (ref.context.sum() + ref.weights.mean(1).pow(2).sum()).backward();
  EXPECT_TRUE(torch::allclose(bias1.grad(), bias2.grad(), 1e-10, 1e-12));
}

TEST_F(Attention, HeadAttentionRejectsMisshapenInputs) {
  const auto x = torch::randn({2, 3, 4, 5});
  EXPECT_THROW(aa::attend_heads(x, x, x.narrow(2, 0, 2)), c10::Error) << "key and value lengths differ";
  EXPECT_THROW(aa::attend_heads(x, torch::randn({2, 2, 4, 5}), x), c10::Error) << "head counts differ";
  EXPECT_THROW(aa::attend_heads(x, x, x, torch::ones({2, 1, 4, 4})), c10::Error) << "float mask";
  EXPECT_THROW(aa::attend_heads(x, x, x, torch::ones({2, 2, 4, 4}, torch::kBool)), c10::Error) << "2 heads of 3";
  EXPECT_THROW(aa::attend_heads(x, x, x, {}, {}, aa::HeadAttentionOptions().block_bytes(0)), c10::Error);
}

// Decoding runs without gradients through a fused kernel (its own vectorised tanh, an
// online softmax); it must give what the differentiable path gives.
TEST_F(Attention, AdditiveDecodingPathEqualsTheDifferentiablePath) {
  // h: whole vectors of 8 and 16, and a tail; dv: narrower than a vector, and wider
  // with a tail (the value rows added during the next score a few vectors per step).
  for (const auto& [h, dv] : std::vector<std::pair<std::int64_t, std::int64_t>>{{32, 6}, {13, 6}, {32, 37}, {13, 37}}) {
    SCOPED_TRACE(testing::Message() << "h " << h << " dv " << dv);
    const auto qp = torch::randn({9, h}), kp = torch::randn({9, 700, h}) * 2, v = torch::randn({h});
    const auto values = torch::randn({9, 700, dv});
    const auto mask = torch::rand({9, 700}) > 0.2;
    const auto reference = aa::additive_attention(qp.requires_grad_(true), kp, v, values, mask);
    ASSERT_TRUE(reference.context.requires_grad());
    torch::NoGradGuard no_grad;
    const auto fast = aa::additive_attention(qp.detach(), kp, v, values, mask);
    EXPECT_TRUE(torch::allclose(fast.weights, reference.weights.detach(), 1e-5, 1e-6));
    EXPECT_TRUE(torch::allclose(fast.context, reference.context.detach(), 1e-5, 1e-5));
    EXPECT_TRUE((fast.weights.masked_select(mask.logical_not()) == 0).all().item<bool>());
    // Items are split across threads and each is computed alone: the count must not show.
    for (const int threads : {1, 2}) {
      const auto split = attend::testing::with_threads(
          threads, [&] { return aa::additive_attention(qp.detach(), kp, v, values, mask); });
      EXPECT_TRUE(torch::equal(split.weights, fast.weights)) << threads << " threads";
      EXPECT_TRUE(torch::equal(split.context, fast.context)) << threads << " threads";
    }
  }
}

// CMakeLists.txt also runs the AdditiveDecoding tests with ATEN_CPU_CAPABILITY=default
// and =avx2, so every build of the kernel the CPU can run is tested.
TEST_F(Attention, AdditiveDecodingKernelFollowsTheCpuAndAtenCpuCapability) {
  const char* env = std::getenv("ATEN_CPU_CAPABILITY");
  const std::string capability = env != nullptr ? env : "";
#if defined(__x86_64__) || defined(__i386__)
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  const bool avx512 = avx2 && __builtin_cpu_supports("avx512f");
#else
  const bool avx2 = false, avx512 = false;
#endif
  std::string expected = avx512 ? "avx512" : avx2 ? "avx2" : "baseline";
  if (capability == "default") expected = "baseline";
  if (capability == "avx2" && expected == "avx512") expected = "avx2";
  EXPECT_EQ(aa::additive_decoding_isa(), expected) << "ATEN_CPU_CAPABILITY=" << capability;
}

// The kernel's own tanh against double-precision tanh rounded to float, in units in
// the last place, over its whole range and the special values.
TEST_F(Attention, AdditiveDecodingTanhIsWithinTwoUlp) {
  std::vector<float> x;
  for (int i = -120000; i <= 120000; ++i) x.push_back(static_cast<float>(i) * 1e-4f);  // [-12, 12]
  for (int e = -45; e <= 0; ++e) {  // small, down to subnormals: relative precision
    for (const float m : {1.0f, 2.5f, 7.0f}) {
      x.push_back(m * std::pow(10.0f, static_cast<float>(e)));
      x.push_back(-x.back());
    }
  }
  for (const float v : {0.17328679f, 0.34657359f, 9.0f, 9.0109f, 9.02f, 10.0f, 30.0f, 1e30f}) {
    x.push_back(v);
    x.push_back(-v);
  }
  const float inf = std::numeric_limits<float>::infinity();
  x.insert(x.end(), {0.0f, -0.0f, inf, -inf, std::numeric_limits<float>::quiet_NaN(), 1e-45f, -1e-45f});
  std::vector<float> out(x.size());
  aa::detail::decoding_tanh(x.data(), out.data(), static_cast<std::int64_t>(x.size()));
  auto bits = [](float f) {
    std::int32_t i;
    std::memcpy(&i, &f, sizeof i);
    return i;
  };
  std::int64_t worst = 0;
  float worst_x = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    if (std::isnan(x[i])) {
      EXPECT_TRUE(std::isnan(out[i]));
      continue;
    }
    const auto expected = static_cast<float>(std::tanh(static_cast<double>(x[i])));
    ASSERT_EQ(std::signbit(out[i]), std::signbit(expected)) << "x = " << x[i];
    const std::int64_t ulps = std::abs(static_cast<std::int64_t>(bits(out[i])) - bits(expected));
    if (ulps > worst) {
      worst = ulps;
      worst_x = x[i];
    }
  }
  EXPECT_LE(worst, 2) << "worst at x = " << worst_x;
  std::vector<float> ends{9.02f, 1e30f, inf, -inf};
  std::vector<float> ones(4);
  aa::detail::decoding_tanh(ends.data(), ones.data(), 4);
  EXPECT_EQ(ones, (std::vector<float>{1, 1, 1, -1}));
}

// Rows with nothing to attend give zeros and NaN scores give NaN rows, in the fused
// kernel as in the differentiable path; a row whose only allowed key is NaN is not
// mistaken for an empty one.
TEST_F(Attention, AdditiveDecodingEmptyAndNaNRows) {
  auto kp = torch::randn({4, 4, 8});
  kp[1][2][5] = std::numeric_limits<float>::quiet_NaN();
  kp[2][0][0] = std::numeric_limits<float>::quiet_NaN();
  const auto qp = torch::randn({4, 8}), v = torch::randn({8}), values = torch::randn({4, 4, 5});
  auto mask = torch::ones({4, 4}, torch::kBool);
  mask[0].fill_(false);
  mask[2].fill_(false);
  mask[2][0] = true;
  for (const auto& m : {mask, torch::Tensor()}) {
    const auto reference = aa::additive_attention(qp.clone().requires_grad_(true), kp, v, values, m);
    torch::NoGradGuard no_grad;
    const auto out = aa::additive_attention(qp, kp, v, values, m);
    for (const auto& [fast, slow] : {std::pair{out.weights, reference.weights.detach()},
                                     std::pair{out.context, reference.context.detach()}}) {
      EXPECT_TRUE(torch::equal(fast.isnan(), slow.isnan())) << fast << slow;
      EXPECT_TRUE(torch::allclose(fast.nan_to_num(0), slow.nan_to_num(0), 1e-5, 1e-6));
    }
    EXPECT_TRUE(out.weights[1].isnan().all().item<bool>());
    EXPECT_TRUE(out.weights[2].isnan().all().item<bool>());
    EXPECT_TRUE(out.context[3].isfinite().all().item<bool>());
    if (m.defined()) {
      EXPECT_TRUE((out.weights[0] == 0).all().item<bool>());
      EXPECT_TRUE((out.context[0] == 0).all().item<bool>());
    }
  }
}

// The decoding kernel reads rows in place whatever the other strides: keys and values
// narrowed out of wider tensors, queries sliced, a batch expanded with stride 0. Only an
// input whose rows are not contiguous is copied (and counted).
TEST_F(Attention, AdditiveDecodingReadsStridedRowsInPlace) {
  torch::NoGradGuard no_grad;
  const std::int64_t b = 3, n = 50, h = 24, dv = 20;
  const auto wide_keys = torch::randn({b, n + 2, h + 5}), wide_values = torch::randn({b, n + 2, dv + 3});
  const auto kp = wide_keys.narrow(1, 1, n).narrow(2, 2, h), values = wide_values.narrow(1, 2, n).narrow(2, 1, dv);
  const auto qp = torch::randn({b, 2 * h}).narrow(1, h, h);
  const auto v = torch::randn({h});
  auto mask = (torch::rand({n, b}) > 0.2).t();  // strided too
  mask[1].fill_(false);
  ASSERT_FALSE(kp.is_contiguous() || values.is_contiguous() || qp.is_contiguous() || mask.is_contiguous());
  const auto reference = aa::additive_attention(qp.contiguous(), kp.contiguous(), v, values.contiguous(),
                                                mask.contiguous());
  const auto copies = aa::detail::decoding_input_copies();
  const auto strided = aa::additive_attention(qp, kp, v, values, mask);
  EXPECT_EQ(aa::detail::decoding_input_copies(), copies) << "rows are contiguous: nothing to copy";
  EXPECT_TRUE(torch::equal(strided.weights, reference.weights));
  EXPECT_TRUE(torch::equal(strided.context, reference.context));
  EXPECT_TRUE((strided.context[1] == 0).all().item<bool>());
  // One image's keys and values expanded over a batch (stride 0): read, not copied.
  const auto one_kp = kp.narrow(0, 0, 1).expand({b, n, h}), one_values = values.narrow(0, 0, 1).expand({b, n, dv});
  const auto expanded = aa::additive_attention(qp, one_kp, v, one_values);
  EXPECT_EQ(aa::detail::decoding_input_copies(), copies);
  const auto materialised = aa::additive_attention(qp, one_kp.contiguous(), v, one_values.contiguous());
  EXPECT_TRUE(torch::equal(expanded.context, materialised.context));
  EXPECT_TRUE(torch::equal(expanded.weights, materialised.weights));
  // Values with channels innermost strided ([B,C,N] transposed) must be copied: counted.
  const auto transposed = values.contiguous().transpose(1, 2).contiguous().transpose(1, 2);
  ASSERT_NE(transposed.stride(2), 1);
  const auto copied = aa::additive_attention(qp, kp, v, transposed, mask);
  EXPECT_EQ(aa::detail::decoding_input_copies(), copies + 1);
  EXPECT_TRUE(torch::equal(copied.context, reference.context));
}

// Beams: k queries per image [B,k,H] against the image's keys and values [B,N,*]
// equal the batch expanded to B*k items, in the kernel and with gradients.
TEST_F(Attention, AdditiveDecodingOfBeamsEqualsTheExpandedBatch) {
  const std::int64_t b = 3, k = 4, n = 30, h = 16, dv = 12;
  const auto kp = torch::randn({b, n, h}), values = torch::randn({b, n, dv}), v = torch::randn({h});
  const auto qp = torch::randn({b, k, h});
  auto mask = torch::rand({b, n}) > 0.3;
  mask[2].fill_(false);
  auto expand = [&](const torch::Tensor& x) { return x.repeat_interleave(k, 0); };
  for (const bool grad : {false, true}) {
    SCOPED_TRACE(grad ? "with gradients" : "the decoding kernel");
    const auto q = qp.clone().requires_grad_(grad);
    const auto beams = aa::additive_attention(q, kp, v, values, mask);
    const auto flat = aa::additive_attention(q.reshape({b * k, h}), expand(kp), v, expand(values), expand(mask));
    ASSERT_EQ(beams.context.sizes(), (std::vector<std::int64_t>{b, k, dv}));
    ASSERT_EQ(beams.weights.sizes(), (std::vector<std::int64_t>{b, k, n}));
    EXPECT_EQ(beams.context.requires_grad(), grad);
    if (grad) {
      EXPECT_TRUE(torch::allclose(beams.weights, flat.weights.view({b, k, n}), 1e-6, 1e-7));
      EXPECT_TRUE(torch::allclose(beams.context, flat.context.view({b, k, dv}), 1e-5, 1e-6));
    } else {
      EXPECT_TRUE(torch::equal(beams.weights, flat.weights.view({b, k, n})));
      EXPECT_TRUE(torch::equal(beams.context, flat.context.view({b, k, dv})));
    }
    EXPECT_TRUE((beams.context[2] == 0).all().item<bool>());
  }
  // Items split across threads by (item, beam) pairs: the count must not show.
  torch::NoGradGuard no_grad;
  const auto one = attend::testing::with_threads(1, [&] { return aa::additive_attention(qp, kp, v, values, mask); });
  const auto two = attend::testing::with_threads(2, [&] { return aa::additive_attention(qp, kp, v, values, mask); });
  EXPECT_TRUE(torch::equal(one.context, two.context));
  EXPECT_TRUE(torch::equal(one.weights, two.weights));
}

// SpatialAttention prepares [B,HW,C] values once per image (a view, no copy at all, for
// channels_last features); the steps then copy nothing, beams included.
TEST_F(Attention, AdditiveDecodingOfPreparedFeaturesCopiesNothing) {
  torch::NoGradGuard no_grad;
  aa::SpatialAttention att(aa::SpatialAttentionOptions(20, 8, 16));
  const std::int64_t b = 2, k = 3;
  const auto features = torch::randn({b, 20, 5, 6});
  const auto prepared = att->prepare(features);
  EXPECT_TRUE(prepared.values.is_contiguous());
  const auto channels_last = features.contiguous(torch::MemoryFormat::ChannelsLast);
  const auto view = att->prepare(channels_last);
  EXPECT_EQ(view.values.data_ptr(), channels_last.data_ptr()) << "channels_last features are read where they are";
  EXPECT_TRUE(torch::equal(view.values, prepared.values));
  const auto copies = aa::detail::decoding_input_copies();
  const auto query = torch::randn({b, k, 8});
  auto mask = torch::ones({b, 5, 6}, torch::kBool);
  mask[1][4].fill_(false);
  for (int step = 0; step < 3; ++step) {
    const auto beams = att->forward_prepared(view, query, mask);
    ASSERT_EQ(beams.weights.sizes(), (std::vector<std::int64_t>{b, k, 5, 6}));
    ASSERT_EQ(beams.context.sizes(), (std::vector<std::int64_t>{b, k, 20}));
    for (std::int64_t j = 0; j < k; ++j) {
      const auto single = att->forward_prepared(prepared, query.select(1, j), mask);
      EXPECT_TRUE(torch::allclose(beams.weights.select(1, j), single.weights, 1e-6, 1e-7));
      EXPECT_TRUE(torch::allclose(beams.context.select(1, j), single.context, 1e-5, 1e-6));
    }
    // The expanded batch: every beam its own copy of its image.
    const auto flat = att->forward(features.repeat_interleave(k, 0), query.reshape({b * k, 8}),
                                   mask.repeat_interleave(k, 0));
    EXPECT_TRUE(torch::allclose(beams.weights.reshape({b * k, 5, 6}), flat.weights, 1e-6, 1e-7));
    EXPECT_TRUE(torch::allclose(beams.context.reshape({b * k, 20}), flat.context, 1e-5, 1e-6));
  }
  EXPECT_EQ(aa::detail::decoding_input_copies(), copies);
}

// Beam search reorders the cache: index_select of keys and values, after which the
// next step equals decoding the reordered sequences from scratch.
TEST_F(Attention, KvCacheReorderEqualsIndexSelectAndDecodingContinues) {
  aa::MultiHeadAttention mha(aa::MultiHeadAttentionOptions(12, 3));
  mha->eval();
  const std::int64_t b = 3, t = 4;
  const auto x = torch::randn({b, t, 12});
  aa::KvCache cache;
  mha->forward_step(x, x, x, cache);
  const auto keys = cache.keys.clone(), values = cache.values.clone();
  const auto index = torch::tensor({2, 0, 0, 1, 2}, torch::kLong);  // 3 sequences -> 5 beams
  cache.reorder(index);
  EXPECT_TRUE(torch::equal(cache.keys, keys.index_select(0, index)));
  EXPECT_TRUE(torch::equal(cache.values, values.index_select(0, index)));
  EXPECT_EQ(cache.length(), t);
  const auto next = torch::randn({5, 1, 12});
  const auto step = mha->forward_step(next, next, next, cache);
  const auto whole = torch::cat({x.index_select(0, index), next}, 1);
  const auto scratch = mha->forward(whole, whole, whole, {}, aa::causal_mask(t + 1, t + 1));
  EXPECT_TRUE(torch::allclose(step.context, scratch.context.narrow(1, t, 1), 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(step.weights.squeeze(1), scratch.weights.select(1, t), 1e-5, 1e-6));
  EXPECT_EQ(cache.length(), t + 1);
}

TEST_F(Attention, KvCacheReorderRejectsBadIndices) {
  aa::KvCache cache;
  cache.reorder(torch::tensor({0, 0}, torch::kLong));  // empty: nothing to reorder
  EXPECT_EQ(cache.length(), 0);
  cache.keys = torch::randn({2, 1, 3, 4});
  cache.values = torch::randn({2, 1, 3, 4});
  EXPECT_THROW(cache.reorder(torch::tensor({0, 2}, torch::kLong)), c10::Error);
  EXPECT_THROW(cache.reorder(torch::tensor({-1}, torch::kLong)), c10::Error);
  EXPECT_THROW(cache.reorder(torch::tensor({0, 1}, torch::kInt)), c10::Error);
  EXPECT_THROW(cache.reorder(torch::tensor({{0, 1}}, torch::kLong)), c10::Error);
  cache.reorder(torch::tensor(std::vector<std::int64_t>{}, torch::kLong));
  EXPECT_EQ(cache.keys.size(0), 0);
}
