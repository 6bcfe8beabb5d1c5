// DRAW's Gaussian glimpse with a stride and variance per axis, its write operation,
// and non-square affine glimpses.

#include <attend/attention/soft_glimpse.h>

#include <torch/torch.h>

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace aa = attend::attention;
namespace F = torch::nn::functional;

namespace {

class DrawGlimpse : public ::testing::Test {
 protected:
  void SetUp() override { torch::manual_seed(0); }
};

// Parameters for B items of an H x W image, a stride and variance per axis, float64.
aa::GaussianGlimpseParams per_axis_params(std::int64_t b, std::int64_t h, std::int64_t w) {
  const auto opts = torch::TensorOptions().dtype(torch::kFloat64);
  aa::GaussianGlimpseParams p;
  p.centre_x = torch::rand({b}, opts) * static_cast<double>(w - 1);
  p.centre_y = torch::rand({b}, opts) * static_cast<double>(h - 1);
  p.stride = 0.5 + torch::rand({b}, opts) * 2;
  p.stride_y = 0.3 + torch::rand({b}, opts);
  p.variance = 0.4 + torch::rand({b}, opts) * 2;
  p.variance_y = 0.2 + torch::rand({b}, opts);
  p.intensity = 0.5 + torch::rand({b}, opts);
  return p;
}

// One axis's filterbank by a plain loop: filter i centred at centre + (i - n/2 + 0.5)
// * stride, exp(-(a - mu)^2 / (2 variance)) over pixels a, normalised over a.
torch::Tensor loop_filterbank(const torch::Tensor& centre, const torch::Tensor& stride, const torch::Tensor& variance,
                              std::int64_t n, std::int64_t size) {
  auto f = torch::zeros({centre.size(0), n, size}, torch::kFloat64);
  auto a = f.accessor<double, 3>();
  for (std::int64_t b = 0; b < centre.size(0); ++b) {
    for (std::int64_t i = 0; i < n; ++i) {
      const double mu = centre[b].item<double>() + (static_cast<double>(i) - static_cast<double>(n) / 2 + 0.5) *
                                                       stride[b].item<double>();
      double sum = 0;
      for (std::int64_t x = 0; x < size; ++x) {
        a[b][i][x] = std::exp(-(x - mu) * (x - mu) / (2 * variance[b].item<double>()));
        sum += a[b][i][x];
      }
      for (std::int64_t x = 0; x < size; ++x) a[b][i][x] /= std::max(sum, 1e-8);
    }
  }
  return f;
}

double summed_product(const torch::Tensor& a, const torch::Tensor& b) { return (a * b).sum().item<double>(); }

}  // namespace

TEST_F(DrawGlimpse, PerAxisFilterbanksAndReadEqualAPlainLoop) {
  const std::int64_t b = 2, c = 2, h = 7, w = 9, n = 4;
  const auto p = per_axis_params(b, h, w);
  const auto banks = aa::gaussian_filterbanks(p, n, h, w);
  const auto fx = loop_filterbank(p.centre_x, p.stride, p.variance, n, w);
  const auto fy = loop_filterbank(p.centre_y, p.stride_y, p.variance_y, n, h);
  EXPECT_TRUE(torch::allclose(banks.x, fx, 1e-12, 1e-12));
  EXPECT_TRUE(torch::allclose(banks.y, fy, 1e-12, 1e-12));
  const auto images = torch::rand({b, c, h, w}, torch::kFloat64);
  const auto read = aa::gaussian_glimpse(images, p, n);
  ASSERT_EQ(read.sizes(), (std::vector<std::int64_t>{b, c, n, n}));
  const auto ax = fx.accessor<double, 3>(), ay = fy.accessor<double, 3>();
  const auto img = images.accessor<double, 4>(), out = read.accessor<double, 4>();
  const auto gamma = p.intensity.accessor<double, 1>();
  for (std::int64_t i = 0; i < b; ++i) {
    for (std::int64_t ch = 0; ch < c; ++ch) {
      for (std::int64_t r = 0; r < n; ++r) {
        for (std::int64_t q = 0; q < n; ++q) {
          double sum = 0;
          for (std::int64_t y = 0; y < h; ++y) {
            for (std::int64_t x = 0; x < w; ++x) sum += ay[i][r][y] * img[i][ch][y][x] * ax[i][q][x];
          }
          EXPECT_NEAR(out[i][ch][r][q], gamma[i] * sum, 1e-12);
        }
      }
    }
  }
  // The y axis really has its own stride and variance.
  auto shared = p;
  shared.stride_y = shared.variance_y = torch::Tensor();
  EXPECT_FALSE(torch::allclose(aa::gaussian_glimpse(images, shared, n), read));
}

// Undefined per-axis fields keep the shared form, computed exactly as before they existed.
TEST_F(DrawGlimpse, SharedStrideAndVarianceGiveTheSameBitsAsBefore) {
  const auto images = torch::rand({2, 3, 8, 10});
  aa::GaussianGlimpseParams p;
  p.centre_x = torch::tensor({3.0f, 6.5f});
  p.centre_y = torch::tensor({4.0f, 2.0f});
  p.stride = torch::tensor({1.5f, 0.7f});
  p.variance = torch::tensor({0.9f, 2.0f});
  p.intensity = torch::tensor({1.0f, 0.6f});
  const auto fx = aa::gaussian_filterbank(p.centre_x, p.stride, p.variance, 5, 10);
  const auto fy = aa::gaussian_filterbank(p.centre_y, p.stride, p.variance, 5, 8);
  const auto formula = torch::matmul(torch::matmul(fy.unsqueeze(1), images), fx.unsqueeze(1).transpose(-1, -2)) *
                       p.intensity.view({-1, 1, 1, 1});
  const auto shared = aa::gaussian_glimpse(images, p, 5);
  EXPECT_TRUE(torch::equal(shared, formula));
  auto both = p;
  both.stride_y = p.stride;
  both.variance_y = p.variance;
  EXPECT_TRUE(torch::equal(aa::gaussian_glimpse(images, both, 5), shared));
  // The 5-number parametrisation does not set the per-axis fields.
  const auto raw = torch::randn({2, 5});
  const auto five = aa::gaussian_glimpse_params(raw, 8, 10, 5);
  EXPECT_FALSE(five.stride_y.defined() || five.variance_y.defined());
  EXPECT_TRUE(torch::allclose(five.stride, 9.0 / 4.0 * torch::exp(raw.select(1, 3))));
}

TEST_F(DrawGlimpse, WriteIsTheAdjointOfReadUpToTheIntensity) {
  const std::int64_t b = 3, c = 2, h = 10, w = 12, n = 5;
  const auto p = per_axis_params(b, h, w);
  const auto x = torch::randn({b, c, h, w}, torch::kFloat64), patch = torch::randn({b, c, n, n}, torch::kFloat64);
  const auto read = aa::gaussian_glimpse(x, p, n);
  const auto written = aa::gaussian_write(patch, p, h, w);
  ASSERT_EQ(written.sizes(), x.sizes());
  for (std::int64_t i = 0; i < b; ++i) {
    const double gamma = p.intensity[i].item<double>();
    EXPECT_NEAR(summed_product(read[i], patch[i]), gamma * gamma * summed_product(x[i], written[i]), 1e-10) << "item " << i;
  }
  // And eq. 29 itself: (1 / gamma) F_Y^T w F_X.
  const auto banks = aa::gaussian_filterbanks(p, n, h, w);
  const auto expected =
      torch::einsum("biy,bcij,bjx->bcyx", {banks.y, patch, banks.x}) / p.intensity.view({-1, 1, 1, 1});
  EXPECT_TRUE(torch::allclose(written, expected, 1e-12, 1e-12));
  EXPECT_THROW(aa::gaussian_write(torch::randn({b, c, n, n + 1}, torch::kFloat64), p, h, w), c10::Error);
  EXPECT_THROW(aa::gaussian_write(torch::randn({b + 1, c, n, n}, torch::kFloat64), p, h, w), c10::Error);
}

TEST_F(DrawGlimpse, SevenNumbersGiveAStrideAndVariancePerAxis) {
  const std::int64_t h = 9, w = 13, n = 4;
  const auto raw = torch::randn({3, 7});
  const auto p = aa::gaussian_glimpse_params(raw, h, w, n);
  ASSERT_TRUE(p.stride_y.defined() && p.variance_y.defined());
  EXPECT_TRUE(torch::allclose(p.stride, 12.0 / 3.0 * torch::exp(raw.select(1, 3))));
  EXPECT_TRUE(torch::allclose(p.stride_y, 8.0 / 3.0 * torch::exp(raw.select(1, 6))));
  EXPECT_TRUE(torch::allclose(p.variance, torch::exp(raw.select(1, 2))));
  EXPECT_TRUE(torch::allclose(p.variance_y, torch::exp(raw.select(1, 5))));
  EXPECT_TRUE(torch::allclose(p.centre_x, 7.0 * (raw.select(1, 0) + 1) - 1));
  EXPECT_TRUE(torch::allclose(p.intensity, torch::exp(raw.select(1, 4))));
  EXPECT_THROW(aa::gaussian_glimpse_params(torch::randn({3, 6}), h, w, n), c10::Error);

  // The module: 7 outputs per state with per_axis, a read and a write head.
  aa::GaussianGlimpse glimpse(aa::GaussianGlimpseOptions(6, n).per_axis(true));
  EXPECT_EQ(glimpse->to_params->options.out_features(), 7);
  EXPECT_EQ(aa::GaussianGlimpse(aa::GaussianGlimpseOptions(6, n))->to_params->options.out_features(), 5);
  const auto state = torch::randn({3, 6}), images = torch::rand({3, 1, h, w});
  const auto params = glimpse->params(state, h, w);
  EXPECT_TRUE(torch::equal(glimpse->forward(images, state), aa::gaussian_glimpse(images, params, n)));
  const auto patch = torch::randn({3, 1, n, n});
  const auto canvas = glimpse->write(patch, state, h, w);
  EXPECT_TRUE(torch::equal(canvas, aa::gaussian_write(patch, params, h, w)));
  EXPECT_THROW(glimpse->write(torch::randn({3, 1, n + 1, n + 1}), state, h, w), c10::Error);
  // Gradients reach the state through the write, as DRAW trains it.
  const auto s = state.clone().requires_grad_(true);
  glimpse->write(patch, s, h, w).pow(2).sum().backward();
  EXPECT_TRUE(s.grad().abs().sum().item<double>() > 0);
}

TEST(NonSquareAffineGlimpse, EqualsGridSampleOfAnExplicitAffineGrid) {
  torch::manual_seed(0);
  const auto images = torch::rand({2, 3, 11, 14});
  for (const std::int64_t s : {1, 2}) {
    SCOPED_TRACE(testing::Message() << "supersample " << s);
    aa::AffineGlimpse glimpse(aa::AffineGlimpseOptions(4, 5).glimpse_height(3).glimpse_width(6).supersample(s));
    EXPECT_EQ(glimpse->glimpse_height(), 3);
    EXPECT_EQ(glimpse->glimpse_width(), 6);
    {
      torch::NoGradGuard no_grad;
      glimpse->to_theta->weight.normal_(0, 0.2);
      glimpse->to_theta->bias.copy_(torch::tensor({0.6f, 0.1f, -0.2f, -0.15f, 0.4f, 0.3f}));
    }
    const auto state = torch::randn({2, 4});
    const auto theta = glimpse->theta(state);
    const auto out = glimpse->forward(images, state);
    ASSERT_EQ(out.sizes(), (std::vector<std::int64_t>{2, 3, 3, 6}));
    const auto grid = F::affine_grid(theta, {2, 3, 3 * s, 6 * s}, /*align_corners=*/false);
    auto expected = F::grid_sample(images, grid,
                                   F::GridSampleFuncOptions().mode(torch::kBilinear).padding_mode(torch::kZeros)
                                       .align_corners(false));
    if (s > 1) expected = torch::avg_pool2d(expected, {s, s});
    EXPECT_TRUE(torch::allclose(out, expected, 1e-6, 1e-6));
  }
  // Unset, height and width are the glimpse size: the square glimpse as before.
  aa::AffineGlimpse square(aa::AffineGlimpseOptions(4, 5));
  EXPECT_EQ(square->glimpse_height(), 5);
  EXPECT_EQ(square->glimpse_width(), 5);
  EXPECT_EQ(square->forward(images, torch::randn({2, 4})).sizes(), (std::vector<std::int64_t>{2, 3, 5, 5}));
  EXPECT_THROW(aa::AffineGlimpse(aa::AffineGlimpseOptions(4, 5).glimpse_width(-1)), c10::Error);
}
