// Queries with a time axis: one call for T queries per item (the steps of a
// teacher-forced sequence) equals T calls with one query each; Luong's attentional
// hidden state against its formula.

#include <attend/attention/additive.h>
#include <attend/attention/luong.h>
#include <attend/attention/pooling.h>

#include <torch/torch.h>

#include <gtest/gtest.h>

#include <vector>

namespace aa = attend::attention;

namespace {

class QueryTimeAxis : public ::testing::Test {
 protected:
  void SetUp() override { torch::manual_seed(0); }
};

// A [B,N] mask with item 1 entirely blocked after position 2 and item 2 entirely blocked.
torch::Tensor item_mask(std::int64_t b, std::int64_t n) {
  auto mask = torch::rand({b, n}) > 0.25;
  mask.select(1, 0).fill_(true);
  mask[1].narrow(0, 2, n - 2).fill_(false);
  mask[b - 1].fill_(false);
  return mask;
}

// T calls of `one` (query [B,D] -> Attended with [B,...] results), stacked on dim 1.
template <typename F>
aa::Attended step_by_step(std::int64_t t, F&& one) {
  std::vector<torch::Tensor> contexts, weights;
  for (std::int64_t i = 0; i < t; ++i) {
    const auto out = one(i);
    contexts.push_back(out.context);
    weights.push_back(out.weights);
  }
  return {torch::stack(contexts, 1), torch::stack(weights, 1)};
}

}  // namespace

TEST_F(QueryTimeAxis, AdditiveEqualsOneCallPerStep) {
  aa::AdditiveAttention att(5, 6, 7);
  const auto keys = torch::randn({3, 8, 6}), values = torch::randn({3, 8, 4});
  const auto query = torch::randn({3, 4, 5});
  const auto mask = item_mask(3, 8);
  auto step_mask = torch::rand({3, 4, 8}) > 0.4;
  step_mask[0][2].fill_(false);
  for (const bool grad : {true, false}) {  // LibTorch's ops, and the fused kernel
    SCOPED_TRACE(grad ? "with gradients" : "the decoding kernel");
    torch::AutoGradMode mode(grad);
    const auto projected = att->project_keys(keys);
    for (const auto& m : {torch::Tensor(), mask, step_mask}) {
      SCOPED_TRACE(m.defined() ? c10::str("mask ", m.sizes()) : "no mask");
      const auto all = att->forward(query, keys, values, m);
      const auto prepared = att->forward_projected(query, projected, values, m);
      const auto one = step_by_step(4, [&](std::int64_t i) {
        return att->forward(query.select(1, i), keys, values, m.defined() && m.dim() == 3 ? m.select(1, i) : m);
      });
      ASSERT_EQ(all.context.sizes(), (std::vector<std::int64_t>{3, 4, 4}));
      ASSERT_EQ(all.weights.sizes(), (std::vector<std::int64_t>{3, 4, 8}));
      EXPECT_EQ(all.context.requires_grad(), grad);
      EXPECT_TRUE(torch::allclose(all.weights, one.weights, 1e-6, 1e-7));
      EXPECT_TRUE(torch::allclose(all.context, one.context, 1e-5, 1e-6));
      if (!grad) {  // the kernel computes each (item, query) pair alone: bit for bit
        const auto qp = att->query_proj(query);
        const auto fused = aa::additive_attention(qp, projected, att->v, values, m);
        const auto fused_one = step_by_step(4, [&](std::int64_t i) {
          return aa::additive_attention(qp.select(1, i), projected, att->v, values,
                                        m.defined() && m.dim() == 3 ? m.select(1, i) : m);
        });
        EXPECT_TRUE(torch::equal(fused.weights, fused_one.weights));
        EXPECT_TRUE(torch::equal(fused.context, fused_one.context));
      }
      EXPECT_TRUE(torch::equal(prepared.weights, all.weights));
      EXPECT_TRUE(torch::equal(prepared.context, all.context));
      if (m.defined() && m.dim() == 2) {
        EXPECT_TRUE((all.context[2] == 0).all().item<bool>());
      }
    }
  }
}

TEST_F(QueryTimeAxis, AdditiveGradientsEqualThoseOfOneCallPerStep) {
  aa::AdditiveAttention att(5, 6, 7);
  const auto keys = torch::randn({2, 6, 6}).requires_grad_(true), values = torch::randn({2, 6, 3});
  const auto query = torch::randn({2, 3, 5}).requires_grad_(true);
  const auto mask = item_mask(2, 6);
  const auto all = att->forward(query, keys, values, mask);
  const auto one = step_by_step(3, [&](std::int64_t i) { return att->forward(query.select(1, i), keys, values, mask); });
  const auto gc = torch::randn_like(all.context), gw = torch::randn_like(all.weights);
  const std::vector<torch::Tensor> inputs{query, keys, att->v, att->key_proj->weight, att->query_proj->weight};
  const auto a = torch::autograd::grad({all.context, all.weights}, inputs, {gc, gw});
  const auto b = torch::autograd::grad({one.context, one.weights}, inputs, {gc, gw});
  for (std::size_t i = 0; i < inputs.size(); ++i) EXPECT_TRUE(torch::allclose(a[i], b[i], 1e-5, 1e-6)) << i;
}

TEST_F(QueryTimeAxis, AdditiveRejectsAMaskOfTheWrongShape) {
  aa::AdditiveAttention att(5, 6, 7);
  const auto keys = torch::randn({2, 6, 6}), query = torch::randn({2, 3, 5});
  EXPECT_THROW(att->forward(query, keys, keys, torch::ones({2, 4, 6}, torch::kBool)), c10::Error);
  EXPECT_THROW(att->forward(query.select(1, 0), keys, keys, torch::ones({2, 3, 6}, torch::kBool)), c10::Error);
  EXPECT_THROW(att->forward(torch::randn({2, 3, 1, 5}), keys, keys), c10::Error);
}

TEST_F(QueryTimeAxis, LuongEqualsOneCallPerStepForEveryScore) {
  const auto keys = torch::randn({3, 7, 4}), values = torch::randn({3, 7, 5});
  const auto query = torch::randn({3, 4, 4}, torch::requires_grad(true));
  const auto mask = item_mask(3, 7);
  auto step_mask = torch::rand({3, 4, 7}) > 0.4;
  step_mask[1][3].fill_(false);
  for (const auto score : {aa::LuongScore::kDot, aa::LuongScore::kGeneral, aa::LuongScore::kConcat}) {
    SCOPED_TRACE(static_cast<int>(score));
    aa::LuongAttention att(aa::LuongAttentionOptions(4, 4).score(score).hidden_size(6));
    for (const auto& m : {torch::Tensor(), mask, step_mask}) {
      SCOPED_TRACE(m.defined() ? c10::str("mask ", m.sizes()) : "no mask");
      const auto all = att->forward(query, keys, values, m);
      const auto one = step_by_step(4, [&](std::int64_t i) {
        return att->forward(query.select(1, i), keys, values, m.defined() && m.dim() == 3 ? m.select(1, i) : m);
      });
      ASSERT_EQ(all.weights.sizes(), (std::vector<std::int64_t>{3, 4, 7}));
      EXPECT_TRUE(torch::allclose(all.weights, one.weights, 1e-5, 1e-6));
      EXPECT_TRUE(torch::allclose(all.context, one.context, 1e-5, 1e-6));
      const auto g = torch::randn_like(all.context);
      const auto a = torch::autograd::grad({all.context}, {query}, {g});
      const auto b = torch::autograd::grad({one.context}, {query}, {g});
      EXPECT_TRUE(torch::allclose(a[0], b[0], 1e-5, 1e-6));
    }
  }
}

TEST_F(QueryTimeAxis, PoolingOfSeveralSequencesPerItemEqualsOneCallPerSequence) {
  for (const auto kind : {aa::PoolingKind::kWordContext, aa::PoolingKind::kFeedForward}) {
    aa::AttentionPooling pool(aa::AttentionPoolingOptions(6).kind(kind).attention_size(5));
    const auto sentences = torch::randn({2, 3, 5, 6});  // 2 documents of 3 sentences of 5 words
    auto mask = torch::rand({2, 3, 5}) > 0.3;
    mask.select(2, 0).fill_(true);
    mask[1][2].fill_(false);
    const auto all = pool->forward(sentences, mask);
    ASSERT_EQ(all.context.sizes(), (std::vector<std::int64_t>{2, 3, 6}));
    ASSERT_EQ(all.weights.sizes(), (std::vector<std::int64_t>{2, 3, 5}));
    const auto one = step_by_step(3, [&](std::int64_t s) { return pool->forward(sentences.select(1, s), mask.select(1, s)); });
    EXPECT_TRUE(torch::allclose(all.context, one.context, 1e-6, 1e-7));
    EXPECT_TRUE(torch::allclose(all.weights, one.weights, 1e-6, 1e-7));
    EXPECT_TRUE((all.context[1][2] == 0).all().item<bool>());
    EXPECT_THROW(pool->forward(sentences, mask.select(1, 0)), c10::Error);
  }
}

TEST(LuongAttentional, HiddenStateIsTanhOfWcTimesContextAndQuery) {
  torch::manual_seed(0);
  aa::LuongAttention att(aa::LuongAttentionOptions(4, 3).value_size(5).attentional_hidden(true));
  ASSERT_FALSE(att->attentional_proj.is_empty());
  const auto& wc = att->attentional_proj->weight;
  EXPECT_EQ(wc.sizes(), (std::vector<std::int64_t>{4, 5 + 4})) << "W_c [H, Dv + H]";
  EXPECT_FALSE(att->attentional_proj->bias.defined()) << "eq. 5 has no bias";
  EXPECT_EQ(att->named_parameters().size(), 2u) << "the general score's W and W_c";
  const auto keys = torch::randn({2, 6, 3}), values = torch::randn({2, 6, 5});
  for (const auto& query : {torch::randn({2, 4}), torch::randn({2, 3, 4})}) {
    SCOPED_TRACE(c10::str("query ", query.sizes()));
    const auto out = att->forward(query, keys, values);
    const auto h = att->attentional_hidden(out.context, query);
    EXPECT_EQ(h.sizes(), query.sizes());
    // tanh(W_c [c; h]) with W_c split by columns: W_c[:, :Dv] c + W_c[:, Dv:] h.
    const auto expected = torch::tanh(torch::matmul(out.context, wc.narrow(1, 0, 5).t()) +
                                      torch::matmul(query, wc.narrow(1, 5, 4).t()));
    EXPECT_TRUE(torch::allclose(h, expected, 1e-6, 1e-6));
    // One element by hand.
    double sum = 0;
    const auto c0 = out.context.reshape({-1, 5})[0], q0 = query.reshape({-1, 4})[0];
    for (int j = 0; j < 5; ++j) sum += wc[1][j].item<double>() * c0[j].item<double>();
    for (int j = 0; j < 4; ++j) sum += wc[1][5 + j].item<double>() * q0[j].item<double>();
    EXPECT_NEAR(h.reshape({-1, 4})[0][1].item<double>(), std::tanh(sum), 1e-6);
  }
  EXPECT_THROW(att->attentional_hidden(torch::randn({2, 3}), torch::randn({2, 4})), c10::Error) << "Dv is 5";
  aa::LuongAttention plain(aa::LuongAttentionOptions(4, 3));
  EXPECT_TRUE(plain->attentional_proj.is_empty());
  EXPECT_THROW(plain->attentional_hidden(torch::randn({2, 3}), torch::randn({2, 4})), c10::Error);
}
