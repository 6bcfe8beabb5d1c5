#include <attend/attention/co_attention.h>
#include <attend/attention/hard.h>
#include <attend/attention/luong.h>
#include <attend/attention/mask.h>
#include <attend/attention/pixel_correlation.h>
#include <attend/attention/pooling.h>
#include <attend/attention/soft_glimpse.h>
#include <attend/attention/spatial.h>

#include <finite_differences.h>

#include <torch/torch.h>

#include <gtest/gtest.h>

#include <cmath>
#include <functional>

namespace aa = attend::attention;

class MoreAttention : public ::testing::Test {
 protected:
  void SetUp() override { torch::manual_seed(0); }
};

TEST_F(MoreAttention, LuongScoresFollowTheirDefinitions) {
  const auto q = torch::randn({2, 4}), k = torch::randn({2, 3, 4}), v = torch::randn({2, 3, 5});
  aa::LuongAttention dot(aa::LuongAttentionOptions(4, 4).score(aa::LuongScore::kDot));
  aa::LuongAttention general(aa::LuongAttentionOptions(4, 4).score(aa::LuongScore::kGeneral));
  aa::LuongAttention concat(aa::LuongAttentionOptions(4, 4).score(aa::LuongScore::kConcat).hidden_size(6));
  for (std::int64_t b = 0; b < 2; ++b) {
    for (std::int64_t n = 0; n < 3; ++n) {
      EXPECT_NEAR(dot->score(q, k)[b][n].item<float>(), (q[b] * k[b][n]).sum().item<float>(), 1e-5);
      EXPECT_NEAR(general->score(q, k)[b][n].item<float>(),
                  (q[b] * torch::mv(general->key_proj->weight, k[b][n])).sum().item<float>(), 1e-5);
      const auto both = torch::cat({q[b], k[b][n]});
      EXPECT_NEAR(concat->score(q, k)[b][n].item<float>(),
                  (concat->v * torch::tanh(torch::mv(concat->concat_proj->weight, both))).sum().item<float>(), 1e-5);
    }
  }
  const auto mask = aa::padding_mask(torch::tensor({3, 1}), 3);
  const auto out = general->forward(q, k, v, mask);
  EXPECT_TRUE(torch::allclose(out.weights[1], torch::tensor({1.0f, 0.0f, 0.0f})));
  EXPECT_TRUE(torch::allclose(out.context[1], v[1][0]));
  EXPECT_THROW(aa::LuongAttention(aa::LuongAttentionOptions(4, 5).score(aa::LuongScore::kDot)), c10::Error);
}

TEST_F(MoreAttention, PoolingFormsMatchTheirFormulasAndIgnorePadding) {
  const auto h = torch::randn({2, 5, 3});
  const auto mask = aa::padding_mask(torch::tensor({5, 2}), 5);
  aa::AttentionPooling han(aa::AttentionPoolingOptions(3).attention_size(4));
  aa::AttentionPooling ff(aa::AttentionPoolingOptions(3).kind(aa::PoolingKind::kFeedForward));
  const auto a = han->forward(h, mask), f = ff->forward(h, mask);
  for (std::int64_t b = 0; b < 2; ++b) {
    const auto len = b == 0 ? 5 : 2;
    const auto hb = h[b].narrow(0, 0, len);
    const auto u = torch::tanh(han->proj(hb));
    const auto alpha = torch::softmax(torch::mv(u, han->context_vector), 0);
    EXPECT_TRUE(torch::allclose(a.weights[b].narrow(0, 0, len), alpha, 1e-5, 1e-6));
    EXPECT_TRUE(torch::allclose(a.context[b], torch::mv(hb.t(), alpha), 1e-5, 1e-6));
    const auto e = torch::tanh(ff->proj(hb)).squeeze(1);
    EXPECT_TRUE(torch::allclose(f.weights[b].narrow(0, 0, len), torch::softmax(e, 0), 1e-5, 1e-6));
  }
  EXPECT_TRUE((a.weights[1].narrow(0, 2, 3) == 0).all().item<bool>());
  EXPECT_TRUE((f.weights[1].narrow(0, 2, 3) == 0).all().item<bool>());
}

TEST_F(MoreAttention, CoAttentionMatchesANaiveComputation) {
  const auto x1 = torch::randn({1, 3, 4}), x2 = torch::randn({1, 5, 4});
  const auto mask2 = aa::padding_mask(torch::tensor({4}), 5);
  const auto out = aa::co_attention(x1, x2, {}, mask2);
  auto d = torch::zeros({3, 5});
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 4; ++j) d[i][j] = (x1[0][i] * x2[0][j]).sum();  // j = 4 is padding
  }
  EXPECT_TRUE(torch::allclose(out.first_weights[0], torch::softmax(d.sum(1), 0), 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(out.second_weights[0].narrow(0, 0, 4), torch::softmax(d.sum(0).narrow(0, 0, 4), 0),
                              1e-5, 1e-6));
  EXPECT_EQ(out.second_weights[0][4].item<float>(), 0.0f);
  EXPECT_TRUE(torch::allclose(out.first[0], x1[0] * out.first_weights[0].unsqueeze(1)));

  const auto w = torch::randn({4, 4});
  const auto aff = aa::affinity_co_attention(x1, x2, w, {}, mask2);
  const auto a = torch::matmul(torch::matmul(x1[0], w), x2[0].t());
  EXPECT_TRUE(torch::allclose(aff.affinity[0], a, 1e-5, 1e-5));
  const auto w1 = torch::softmax(a.narrow(1, 0, 4), 1);
  EXPECT_TRUE(torch::allclose(aff.first_weights[0].narrow(1, 0, 4), w1, 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(aff.first_context[0], torch::matmul(w1, x2[0].narrow(0, 0, 4)), 1e-5, 1e-5));
  EXPECT_TRUE(torch::allclose(aff.second_weights[0], torch::softmax(a.t(), 1), 1e-5, 1e-6));
  EXPECT_EQ(aff.second_context.sizes(), (std::vector<std::int64_t>{1, 5, 4}));
}

TEST_F(MoreAttention, SpatialAttentionIsAdditiveAttentionOverLocations) {
  aa::SpatialAttention att(aa::SpatialAttentionOptions(6, 3, 5));
  const auto features = torch::randn({2, 6, 3, 4}), query = torch::randn({2, 3});
  auto mask = torch::ones({2, 3, 4}, torch::kBool);
  mask[1][2][3] = false;
  const auto out = att->forward(features, query, mask);
  EXPECT_EQ(out.weights.sizes(), (std::vector<std::int64_t>{2, 3, 4}));
  EXPECT_EQ(out.context.sizes(), (std::vector<std::int64_t>{2, 6}));
  const auto flat = features.flatten(2).transpose(1, 2);
  const auto ref = att->attention->forward(query, flat, flat, mask.view({2, 12}));
  EXPECT_TRUE(torch::allclose(out.weights.view({2, 12}), ref.weights));
  EXPECT_TRUE(torch::allclose(out.context, ref.context));
  EXPECT_EQ(out.weights[1][2][3].item<float>(), 0.0f);
  // The context is the weights' average of the feature vectors.
  EXPECT_TRUE(torch::allclose(out.context[0], (features[0] * out.weights[0].unsqueeze(0)).sum({1, 2}), 1e-5, 1e-6));
}

TEST_F(MoreAttention, CategoricalPolicyNeverPicksMaskedRegionsAndReportsItsEntropy) {
  auto logits = torch::randn({4, 6}, torch::requires_grad(true));
  auto mask = torch::ones({4, 6}, torch::kBool);
  mask.index_put_({torch::indexing::Slice(), torch::indexing::Slice(3, 6)}, false);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(2);
  for (int i = 0; i < 20; ++i) {
    const auto s = aa::categorical_policy(logits, mask, true, gen);
    EXPECT_TRUE((s.index < 3).all().item<bool>());
  }
  const auto s = aa::categorical_policy(logits, mask, false);
  const auto p = torch::softmax(logits.detach().narrow(1, 0, 3), 1);
  EXPECT_TRUE(torch::equal(s.index, p.argmax(1)));
  EXPECT_TRUE(torch::allclose(s.entropy, -(p * p.log()).sum(1), 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(s.log_prob, p.log().gather(1, s.index.unsqueeze(1)).squeeze(1), 1e-5, 1e-6));
  s.log_prob.sum().backward();
  EXPECT_TRUE(torch::isfinite(logits.grad()).all().item<bool>());
  EXPECT_TRUE((logits.grad().narrow(1, 3, 3) == 0).all().item<bool>());
  EXPECT_THROW(aa::categorical_policy(logits, torch::zeros({4, 6}, torch::kBool), true), c10::Error);
}

TEST_F(MoreAttention, GaussianGlimpseWithTinyVarianceIsACrop) {
  const auto images = torch::rand({2, 3, 12, 10}, torch::kFloat64);
  aa::GaussianGlimpseParams p;
  p.centre_x = torch::tensor({4.5, 6.0}, torch::kFloat64);  // N=4: filters at centre + {-1.5,-0.5,0.5,1.5}
  p.centre_y = torch::tensor({5.5, 3.0}, torch::kFloat64);
  p.stride = torch::tensor({1.0, 2.0}, torch::kFloat64);
  p.variance = torch::full({2}, 1e-3, torch::kFloat64);
  p.intensity = torch::tensor({1.0, 0.5}, torch::kFloat64);
  const auto g = aa::gaussian_glimpse(images, p, 4);
  using torch::indexing::Slice;
  // Sample 0: rows 4..7, columns 3..6. Sample 1: rows 0,2,4,6 and columns 3,5,7,9, half intensity.
  EXPECT_TRUE(torch::allclose(g[0], images[0].index({Slice(), Slice(4, 8), Slice(3, 7)}), 1e-9, 1e-9));
  EXPECT_TRUE(torch::allclose(g[1], 0.5 * images[1].index({Slice(), Slice(0, 8, 2), Slice(3, 10, 2)}), 1e-9, 1e-9));
  const auto fb = aa::gaussian_filterbank(p.centre_x, p.stride, torch::full({2}, 2.0, torch::kFloat64), 4, 10);
  EXPECT_TRUE(torch::allclose(fb.sum(2), torch::ones({2, 4}, torch::kFloat64)));
}

TEST_F(MoreAttention, GaussianGlimpseIsDifferentiableInWhereItLooks) {
  aa::GaussianGlimpse glimpse(aa::GaussianGlimpseOptions(3, 5));
  auto state = torch::randn({2, 3}, torch::requires_grad(true));
  glimpse->forward(torch::rand({2, 1, 16, 16}), state).sum().backward();
  EXPECT_GT(state.grad().abs().sum().item<float>(), 0.0f);
  EXPECT_GT(glimpse->to_params->weight.grad().abs().sum().item<float>(), 0.0f);
}

TEST_F(MoreAttention, AffineGlimpseWithIdentityIsABilinearResize) {
  namespace F = torch::nn::functional;
  const auto images = torch::rand({2, 3, 16, 12});
  const auto identity = torch::tensor({1.0f, 0.0f, 0.0f, 0.0f, 1.0f, 0.0f}).view({1, 2, 3}).expand({2, 2, 3});
  EXPECT_TRUE(torch::allclose(aa::affine_glimpse(images, identity, 16, 12), images, 1e-5, 1e-6));
  const auto resized = F::interpolate(images, F::InterpolateFuncOptions()
                                                  .size(std::vector<std::int64_t>{8, 6})
                                                  .mode(torch::kBilinear)
                                                  .align_corners(false));
  EXPECT_TRUE(torch::allclose(aa::affine_glimpse(images, identity, 8, 6), resized, 1e-5, 1e-6));
  aa::AffineGlimpse module(aa::AffineGlimpseOptions(4, 8));
  auto state = torch::randn({2, 4}, torch::requires_grad(true));
  const auto out = module->forward(images, state);
  EXPECT_TRUE(torch::allclose(out, aa::affine_glimpse(images, identity, 8, 8), 1e-5, 1e-6)) << "starts at identity";
  out.sum().backward();
  EXPECT_GT(module->to_theta->weight.grad().abs().sum().item<float>(), 0.0f);
}

TEST_F(MoreAttention, SupersampledAffineGlimpseIsAnAreaAverageAndStillDifferentiable) {
  using torch::indexing::Slice;
  const auto images = torch::rand({2, 3, 16, 12});
  const auto identity = torch::tensor({1.0f, 0.0f, 0.0f, 0.0f, 1.0f, 0.0f}).view({1, 2, 3}).expand({2, 2, 3});
  // 4 x 3 output from 16 x 12 with 4 samples per pixel and direction: each output
  // pixel is the mean of its 4 x 4 block of input pixels (a naive loop).
  const auto read = aa::affine_glimpse(images, identity, 4, 3, 4);
  for (std::int64_t y = 0; y < 4; ++y) {
    for (std::int64_t x = 0; x < 3; ++x) {
      const auto block = images.index({Slice(), Slice(), Slice(4 * y, 4 * y + 4), Slice(4 * x, 4 * x + 4)});
      EXPECT_TRUE(torch::allclose(read.index({Slice(), Slice(), y, x}), block.mean({2, 3}), 1e-5, 1e-6));
    }
  }
  // A one-pixel line that a plain 4 x 3 bilinear read misses entirely still shows.
  auto line = torch::zeros({1, 1, 16, 12});
  line.index_put_({0, 0, Slice(), 3}, 1.0f);
  const auto id1 = identity.narrow(0, 0, 1);
  EXPECT_EQ(aa::affine_glimpse(line, id1, 4, 3).sum().item<float>(), 0.0f);
  EXPECT_NEAR(aa::affine_glimpse(line, id1, 4, 3, 4).sum().item<float>(), 4 * 0.25f, 1e-5f);
  const auto smooth = torch::rand({1, 1, 8, 8}, torch::kFloat64);
  attend::testing::expect_gradient_matches_finite_differences(
      [&](const torch::Tensor& theta) { return aa::affine_glimpse(smooth, theta, 3, 3, 3).pow(2).sum(); },
      torch::tensor({0.63, 0.11, 0.07, -0.05, 0.71, -0.13}).view({1, 2, 3}));
  EXPECT_THROW(aa::affine_glimpse(images, identity, 4, 3, 0), c10::Error);
}

TEST_F(MoreAttention, DrawParametersPutZeroAtTheImageCentreWithTheFullStride) {
  const auto p = aa::gaussian_glimpse_params(torch::zeros({1, 5}), 12, 10, 4);
  EXPECT_DOUBLE_EQ(p.centre_x.item<float>(), 4.5);   // (10 - 1) / 2
  EXPECT_DOUBLE_EQ(p.centre_y.item<float>(), 5.5);   // (12 - 1) / 2
  EXPECT_NEAR(p.stride.item<float>(), 11.0 / 3.0, 1e-6);  // N filters span the larger side
  EXPECT_FLOAT_EQ(p.variance.item<float>(), 1.0f);
  EXPECT_FLOAT_EQ(p.intensity.item<float>(), 1.0f);
}

using attend::testing::expect_gradient_matches_finite_differences;

TEST_F(MoreAttention, EveryModuleMatchesFiniteDifferencesInDouble) {
  const auto mask = aa::padding_mask(torch::tensor({3, 2}), 3);
  const auto keys = torch::randn({2, 3, 4}, torch::kFloat64);
  for (auto score : {aa::LuongScore::kDot, aa::LuongScore::kGeneral, aa::LuongScore::kConcat}) {
    aa::LuongAttention luong(aa::LuongAttentionOptions(4, 4).score(score));
    luong->to(torch::kFloat64);
    expect_gradient_matches_finite_differences([&](const torch::Tensor& q) { return luong->forward(q, keys, keys, mask).context.pow(2).sum(); },
              torch::randn({2, 4}));
  }
  for (auto kind : {aa::PoolingKind::kWordContext, aa::PoolingKind::kFeedForward}) {
    aa::AttentionPooling pool(aa::AttentionPoolingOptions(4).kind(kind));
    pool->to(torch::kFloat64);
    expect_gradient_matches_finite_differences([&](const torch::Tensor& h) { return pool->forward(h, mask).context.pow(2).sum(); },
              torch::randn({2, 3, 4}));
  }
  const auto other = torch::randn({2, 2, 4}, torch::kFloat64);
  expect_gradient_matches_finite_differences([&](const torch::Tensor& x) { return aa::co_attention(x, other, mask).first.pow(2).sum(); },
            torch::randn({2, 3, 4}));
  expect_gradient_matches_finite_differences([&](const torch::Tensor& x) {
              return aa::affinity_co_attention(x, other, {}, mask).second_context.pow(2).sum();
            },
            torch::randn({2, 3, 4}));
  aa::SpatialAttention spatial(aa::SpatialAttentionOptions(3, 2, 4));
  spatial->to(torch::kFloat64);
  const auto query = torch::randn({1, 2}, torch::kFloat64);
  expect_gradient_matches_finite_differences([&](const torch::Tensor& f) { return spatial->forward(f, query).context.pow(2).sum(); },
            torch::randn({1, 3, 2, 2}));
  // Soft glimpses: differentiable in where they look.
  const auto image = torch::rand({1, 1, 8, 8}, torch::kFloat64);
  expect_gradient_matches_finite_differences([&](const torch::Tensor& raw) {
              return aa::gaussian_glimpse(image, aa::gaussian_glimpse_params(raw, 8, 8, 3), 3).pow(2).sum();
            },
            torch::randn({1, 5}) * 0.3);
  expect_gradient_matches_finite_differences([&](const torch::Tensor& theta) { return aa::affine_glimpse(image, theta, 3, 3).pow(2).sum(); },
            torch::tensor({0.63, 0.11, 0.07, -0.05, 0.71, -0.13}).view({1, 2, 3}));
}

TEST(AdditiveBias, IsZeroWhereAllowedAndMinusInfinityElsewhere) {
  const auto bias = aa::additive_bias(aa::causal_mask(2, 2));
  EXPECT_EQ(bias[0][0].item<float>(), 0.0f);
  EXPECT_TRUE(std::isinf(bias[0][1].item<float>()) && bias[0][1].item<float>() < 0);
  const auto scores = torch::randn({2, 2});
  EXPECT_TRUE(torch::allclose(aa::masked_softmax(scores, aa::causal_mask(2, 2)), torch::softmax(scores + bias, -1)));
}

// SEAM's pixel correlation against a direct loop over every pair of pixels.
TEST_F(MoreAttention, PixelCorrelationMatchesALoopOverPixelPairs) {
  const std::int64_t B = 2, D = 3, E = 4, C = 3, h = 3, w = 2, N = h * w;
  aa::PixelCorrelation pcm(aa::PixelCorrelationOptions(D, E));
  const auto features = torch::randn({B, D, h, w}, torch::kFloat64);
  const auto maps = torch::rand({B, C, h, w}, torch::kFloat64);
  pcm->to(torch::kFloat64);
  const auto W = pcm->projection->weight.view({E, D});
  auto expected = torch::zeros({B, C, N}, torch::kFloat64);
  auto expected_weights = torch::zeros({B, N, N}, torch::kFloat64);
  for (std::int64_t b = 0; b < B; ++b) {
    std::vector<torch::Tensor> e;
    for (std::int64_t i = 0; i < N; ++i) {
      const auto f = W.matmul(features[b].flatten(1).select(1, i));
      e.push_back(f / (f.norm().item<double>() + 1e-5));
    }
    for (std::int64_t j = 0; j < N; ++j) {
      double column = 0;
      std::vector<double> a(static_cast<size_t>(N));
      for (std::int64_t i = 0; i < N; ++i) {
        a[static_cast<size_t>(i)] = std::max(0.0, e[static_cast<size_t>(i)].dot(e[static_cast<size_t>(j)]).item<double>());
        column += a[static_cast<size_t>(i)];
      }
      for (std::int64_t i = 0; i < N; ++i) {
        const double weight = a[static_cast<size_t>(i)] / (column + 1e-5);
        expected_weights[b][i][j] = weight;
        for (std::int64_t c = 0; c < C; ++c) {
          expected[b][c][j] += maps[b][c].flatten()[i].item<double>() * weight;
        }
      }
    }
  }
  auto out = pcm->forward(features, maps);  // autograd on: the weights are a copy
  EXPECT_TRUE(torch::allclose(out.context, expected.view({B, C, h, w}), 1e-10, 1e-12));
  EXPECT_TRUE(torch::allclose(out.weights, expected_weights, 1e-10, 1e-12));
  EXPECT_FALSE(out.weights.requires_grad());
  {
    torch::NoGradGuard no_grad;  // in place in the one buffer
    const auto again = pcm->forward(features, maps);
    EXPECT_TRUE(torch::allclose(again.context, out.context, 1e-12, 1e-14));
    EXPECT_TRUE(torch::allclose(again.weights, expected_weights, 1e-10, 1e-12));
  }
  // Gradients reach the projection through the affinity (in place ReLU included)
  // and match finite differences; the maps' gradient is the affinity's transpose.
  const auto maps_grad = maps.clone().requires_grad_(true);
  pcm->forward(features, maps_grad).context.sum().backward();
  EXPECT_TRUE(torch::allclose(maps_grad.grad().flatten(2), expected_weights.sum(2).unsqueeze(1).expand({B, C, N}),
                              1e-10, 1e-12));
  attend::testing::expect_gradient_matches_finite_differences(
      [&](const torch::Tensor& weight) {
        const auto e = torch::einsum("ed,bdn->ben", {weight.view({E, D}), features.flatten(2)});
        return (aa::PixelCorrelationImpl::correlate(e, maps.flatten(2), false).context * maps.flatten(2)).sum();
      },
      pcm->projection->weight);
  EXPECT_THROW(pcm->forward(features, torch::rand({B, C, h + 1, w}, torch::kFloat64)), c10::Error);
  EXPECT_THROW(pcm->forward(torch::randn({B, D + 1, h, w}, torch::kFloat64), maps), c10::Error);
}
