#include "attend/attention/soft_glimpse.h"

#include <torch/torch.h>

namespace attend::attention {

namespace F = torch::nn::functional;

torch::Tensor gaussian_filterbank(const torch::Tensor& centre, const torch::Tensor& stride,
                                  const torch::Tensor& variance, std::int64_t n, std::int64_t size) {
  TORCH_CHECK(centre.dim() == 1 && stride.sizes() == centre.sizes() && variance.sizes() == centre.sizes(),
              "gaussian_filterbank: expected centre, stride and variance [B], got ", centre.sizes(), ", ",
              stride.sizes(), ", ", variance.sizes());
  TORCH_CHECK(n >= 1 && size >= 1, "gaussian_filterbank: n and size must be >= 1");
  const auto opts = centre.options();
  const auto i = torch::arange(n, opts) - static_cast<double>(n) / 2.0 + 0.5;                  // [n]
  const auto mu = centre.unsqueeze(1) + i.unsqueeze(0) * stride.unsqueeze(1);                  // [B,n]
  const auto a = torch::arange(size, opts).view({1, 1, size});                                 // [1,1,size]
  const auto f = torch::exp(-(a - mu.unsqueeze(2)).pow(2) / (2.0 * variance.view({-1, 1, 1})));  // [B,n,size]
  return f / f.sum(2, /*keepdim=*/true).clamp_min(1e-8);
}

namespace {

void check_params(const GaussianGlimpseParams& p, const char* who) {
  TORCH_CHECK(p.centre_x.defined() && p.centre_y.defined() && p.stride.defined() && p.variance.defined() &&
                  p.intensity.defined() && p.centre_x.dim() == 1 && p.centre_y.sizes() == p.centre_x.sizes() &&
                  p.intensity.sizes() == p.centre_x.sizes() &&
                  (!p.stride_y.defined() || p.stride_y.sizes() == p.centre_x.sizes()) &&
                  (!p.variance_y.defined() || p.variance_y.sizes() == p.centre_x.sizes()),
              who, ": expected centre_x, centre_y, stride, variance, intensity (and stride_y, variance_y if given) "
              "all [B], got centre_x ", p.centre_x.defined() ? c10::str(p.centre_x.sizes()) : "undefined",
              ", centre_y ", p.centre_y.defined() ? c10::str(p.centre_y.sizes()) : "undefined", ", intensity ",
              p.intensity.defined() ? c10::str(p.intensity.sizes()) : "undefined", ", stride_y ",
              p.stride_y.defined() ? c10::str(p.stride_y.sizes()) : "undefined", ", variance_y ",
              p.variance_y.defined() ? c10::str(p.variance_y.sizes()) : "undefined");
}

}  // namespace

GaussianFilterbanks gaussian_filterbanks(const GaussianGlimpseParams& p, std::int64_t n, std::int64_t height,
                                         std::int64_t width) {
  check_params(p, "gaussian_filterbanks");
  GaussianFilterbanks f;
  f.x = gaussian_filterbank(p.centre_x, p.stride, p.variance, n, width);  // [B,n,W]
  f.y = gaussian_filterbank(p.centre_y, p.stride_y.defined() ? p.stride_y : p.stride,
                            p.variance_y.defined() ? p.variance_y : p.variance, n, height);  // [B,n,H]
  return f;
}

torch::Tensor gaussian_glimpse(const torch::Tensor& images, const GaussianGlimpseParams& p, std::int64_t n) {
  TORCH_CHECK(images.dim() == 4 && images.is_floating_point(), "gaussian_glimpse: expected float images [B,C,H,W], got ",
              images.sizes());
  const auto f = gaussian_filterbanks(p, n, images.size(2), images.size(3));
  const auto read = torch::matmul(torch::matmul(f.y.unsqueeze(1), images), f.x.unsqueeze(1).transpose(-1, -2));
  return read * p.intensity.view({-1, 1, 1, 1});
}

torch::Tensor gaussian_write(const torch::Tensor& patch, const GaussianGlimpseParams& p, std::int64_t height,
                             std::int64_t width) {
  TORCH_CHECK(patch.dim() == 4 && patch.is_floating_point() && patch.size(2) == patch.size(3),
              "gaussian_write: expected a float patch [B,C,N,N], got ", patch.sizes());
  TORCH_CHECK(height >= 1 && width >= 1, "gaussian_write: expected a canvas size >= 1, got ", height, " x ", width);
  const auto f = gaussian_filterbanks(p, patch.size(2), height, width);
  TORCH_CHECK(f.x.size(0) == patch.size(0), "gaussian_write: ", patch.size(0), " patches but parameters for ",
              f.x.size(0));
  const auto canvas = torch::matmul(torch::matmul(f.y.unsqueeze(1).transpose(-1, -2), patch), f.x.unsqueeze(1));
  return canvas / p.intensity.view({-1, 1, 1, 1});
}

GaussianGlimpseParams gaussian_glimpse_params(const torch::Tensor& raw, std::int64_t height, std::int64_t width,
                                              std::int64_t n) {
  TORCH_CHECK(raw.dim() == 2 && (raw.size(1) == 5 || raw.size(1) == 7),
              "gaussian_glimpse_params: expected [B,5] (shared stride and variance) or [B,7] (per axis), got ",
              raw.sizes());
  TORCH_CHECK(n >= 2, "gaussian_glimpse_params: N must be >= 2 for a stride, got ", n);
  GaussianGlimpseParams p;
  p.centre_x = (static_cast<double>(width) + 1) / 2.0 * (raw.select(1, 0) + 1) - 1.0;  // 0-based pixels
  p.centre_y = (static_cast<double>(height) + 1) / 2.0 * (raw.select(1, 1) + 1) - 1.0;
  p.variance = torch::exp(raw.select(1, 2));
  p.intensity = torch::exp(raw.select(1, 4));
  if (raw.size(1) == 5) {
    p.stride =
        static_cast<double>(std::max(height, width) - 1) / static_cast<double>(n - 1) * torch::exp(raw.select(1, 3));
    return p;
  }
  p.stride = static_cast<double>(width - 1) / static_cast<double>(n - 1) * torch::exp(raw.select(1, 3));
  p.variance_y = torch::exp(raw.select(1, 5));
  p.stride_y = static_cast<double>(height - 1) / static_cast<double>(n - 1) * torch::exp(raw.select(1, 6));
  return p;
}

torch::Tensor affine_glimpse(const torch::Tensor& images, const torch::Tensor& theta, std::int64_t out_height,
                             std::int64_t out_width, std::int64_t supersample) {
  TORCH_CHECK(images.dim() == 4 && images.is_floating_point(), "affine_glimpse: expected float images [B,C,H,W], got ",
              images.sizes());
  TORCH_CHECK(theta.dim() == 3 && theta.size(0) == images.size(0) && theta.size(1) == 2 && theta.size(2) == 3,
              "affine_glimpse: expected theta [", images.size(0), ",2,3], got ", theta.sizes());
  TORCH_CHECK(out_height >= 1 && out_width >= 1, "affine_glimpse: output size must be >= 1");
  TORCH_CHECK(supersample >= 1 && supersample <= 64, "affine_glimpse: supersample must be in 1..64, got ",
              supersample);
  const auto s = supersample;
  // With align_corners=false the s x s fine samples of one output cell are centred
  // on it, so averaging them integrates the cell's region.
  const auto grid = F::affine_grid(theta, {images.size(0), images.size(1), out_height * s, out_width * s}, false);
  const auto read = F::grid_sample(
      images, grid, F::GridSampleFuncOptions().mode(torch::kBilinear).padding_mode(torch::kZeros).align_corners(false));
  return s == 1 ? read : torch::avg_pool2d(read, {s, s});
}

GaussianGlimpseImpl::GaussianGlimpseImpl(const GaussianGlimpseOptions& options_) : options(options_) { reset(); }

void GaussianGlimpseImpl::reset() {
  TORCH_CHECK(options.state_size() >= 1 && options.glimpse_size() >= 2,
              "GaussianGlimpse: expected state size >= 1 and N >= 2, got ", options.state_size(), " and ",
              options.glimpse_size());
  to_params = register_module("to_params", torch::nn::Linear(options.state_size(), options.per_axis() ? 7 : 5));
}

void GaussianGlimpseImpl::pretty_print(std::ostream& stream) const {
  stream << "attend::attention::GaussianGlimpse(state_size=" << options.state_size()
         << ", glimpse_size=" << options.glimpse_size() << (options.per_axis() ? ", per_axis=true" : "") << ")";
}

GaussianGlimpseParams GaussianGlimpseImpl::params(const torch::Tensor& state, std::int64_t height, std::int64_t width) {
  return gaussian_glimpse_params(to_params(state), height, width, options.glimpse_size());
}

torch::Tensor GaussianGlimpseImpl::forward(const torch::Tensor& images, const torch::Tensor& state) {
  TORCH_CHECK(images.dim() == 4, "GaussianGlimpse: expected images [B,C,H,W], got ", images.sizes());
  return gaussian_glimpse(images, params(state, images.size(2), images.size(3)), options.glimpse_size());
}

torch::Tensor GaussianGlimpseImpl::write(const torch::Tensor& patch, const torch::Tensor& state, std::int64_t height,
                                         std::int64_t width) {
  TORCH_CHECK(patch.dim() == 4 && patch.size(2) == options.glimpse_size() && patch.size(3) == options.glimpse_size(),
              "GaussianGlimpse::write: expected a patch [B,C,", options.glimpse_size(), ",", options.glimpse_size(),
              "], got ", patch.sizes());
  return gaussian_write(patch, params(state, height, width), height, width);
}

AffineGlimpseImpl::AffineGlimpseImpl(const AffineGlimpseOptions& options_) : options(options_) { reset(); }

void AffineGlimpseImpl::reset() {
  TORCH_CHECK(options.state_size() >= 1 && options.glimpse_size() >= 1, "AffineGlimpse: sizes must be >= 1");
  TORCH_CHECK(options.glimpse_height() >= 0 && options.glimpse_width() >= 0,
              "AffineGlimpse: expected glimpse_height and glimpse_width >= 0 (0 = glimpse_size), got ",
              options.glimpse_height(), " and ", options.glimpse_width());
  TORCH_CHECK(options.supersample() >= 1 && options.supersample() <= 64,
              "AffineGlimpse: supersample must be in 1..64, got ", options.supersample());
  to_theta = register_module("to_theta", torch::nn::Linear(options.state_size(), 6));
  torch::NoGradGuard no_grad;
  to_theta->weight.zero_();
  to_theta->bias.copy_(torch::tensor({1.0f, 0.0f, 0.0f, 0.0f, 1.0f, 0.0f}));
}

void AffineGlimpseImpl::pretty_print(std::ostream& stream) const {
  stream << "attend::attention::AffineGlimpse(state_size=" << options.state_size()
         << ", glimpse_size=" << options.glimpse_size();
  if (glimpse_height() != options.glimpse_size() || glimpse_width() != options.glimpse_size()) {
    stream << ", glimpse_height=" << glimpse_height() << ", glimpse_width=" << glimpse_width();
  }
  stream << ", supersample=" << options.supersample() << ")";
}

std::int64_t AffineGlimpseImpl::glimpse_height() const {
  return options.glimpse_height() > 0 ? options.glimpse_height() : options.glimpse_size();
}

std::int64_t AffineGlimpseImpl::glimpse_width() const {
  return options.glimpse_width() > 0 ? options.glimpse_width() : options.glimpse_size();
}

torch::Tensor AffineGlimpseImpl::theta(const torch::Tensor& state) { return to_theta(state).view({-1, 2, 3}); }

torch::Tensor AffineGlimpseImpl::forward(const torch::Tensor& images, const torch::Tensor& state) {
  return affine_glimpse(images, theta(state), glimpse_height(), glimpse_width(), options.supersample());
}

}  // namespace attend::attention
