#pragma once
/// Differentiable glimpses: where they look is trained by backpropagation.
///   Gaussian (DRAW read, Gregor et al. 2015): an N x N grid of Gaussian filters with
///   centre, stride, variance and intensity; separable, rows normalised.
///   Affine (spatial transformer, Jaderberg et al. 2015): affine_grid + grid_sample,
///   align_corners = false, so locations share the retina's [-1,1] convention.

#include <torch/arg.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

namespace attend::attention {

/// Filterbank along one axis. requires: centre, stride, variance [B] in pixels
/// (variance > 0); n filters over `size` pixels.
/// ensures: [B,n,size], filter i centred at centre + (i - n/2 + 0.5) * stride, each
/// row summing to 1 (rows entirely off the image are left at 0).
torch::Tensor gaussian_filterbank(const torch::Tensor& centre, const torch::Tensor& stride,
                                  const torch::Tensor& variance, std::int64_t n, std::int64_t size);

/// Parameters of a Gaussian glimpse, each [B], in pixels (centre x, y) or as stated.
struct GaussianGlimpseParams {
  torch::Tensor centre_x, centre_y, stride, variance, intensity;
};

/// images [B,C,H,W] -> [B,C,n,n] = intensity * F_Y image F_X^T.
torch::Tensor gaussian_glimpse(const torch::Tensor& images, const GaussianGlimpseParams& params, std::int64_t n);

/// DRAW's mapping from 5 unconstrained numbers [B,5] (gx~, gy~, log variance,
/// log stride~, log intensity) to parameters for an H x W image:
/// centre = (size + 1)/2 * (g~ + 1) - 1 (0-based pixels: g~ = 0 is the image centre), stride = (max(H,W) - 1)/(n - 1) * exp(log stride~).
GaussianGlimpseParams gaussian_glimpse_params(const torch::Tensor& raw, std::int64_t height, std::int64_t width,
                                              std::int64_t n);

/// images [B,C,H,W], theta [B,2,3] -> [B,C,out_h,out_w] by bilinear sampling of the
/// affine grid (align_corners=false, zeros outside). With supersample s > 1 the grid
/// is s times finer in each direction and every s x s block of samples is averaged:
/// an anti-aliased read (identity theta with H = s*out_h, W = s*out_w gives exact
/// area averaging), where plain bilinear sampling of a large region at few points
/// misses most thin strokes.
torch::Tensor affine_glimpse(const torch::Tensor& images, const torch::Tensor& theta, std::int64_t out_height,
                             std::int64_t out_width, std::int64_t supersample = 1);

struct GaussianGlimpseOptions {
  GaussianGlimpseOptions(std::int64_t state_size, std::int64_t glimpse_size)
      : state_size_(state_size), glimpse_size_(glimpse_size) {}
  TORCH_ARG(std::int64_t, state_size);    ///< size of the state the parameters come from
  TORCH_ARG(std::int64_t, glimpse_size);  ///< N
};

/// A small network (one linear layer) maps a state [B,S] to the 5 raw parameters.
class GaussianGlimpseImpl : public torch::nn::Cloneable<GaussianGlimpseImpl> {
 public:
  explicit GaussianGlimpseImpl(const GaussianGlimpseOptions& options);
  void reset() override;
  void pretty_print(std::ostream& stream) const override;
  /// images [B,C,H,W], state [B,S] -> glimpse [B,C,N,N].
  torch::Tensor forward(const torch::Tensor& images, const torch::Tensor& state);
  /// The parameters the state gives for images of H x W.
  GaussianGlimpseParams params(const torch::Tensor& state, std::int64_t height, std::int64_t width);

  GaussianGlimpseOptions options;
  torch::nn::Linear to_params{nullptr};
};
TORCH_MODULE(GaussianGlimpse);

struct AffineGlimpseOptions {
  AffineGlimpseOptions(std::int64_t state_size, std::int64_t glimpse_size)
      : state_size_(state_size), glimpse_size_(glimpse_size) {}
  TORCH_ARG(std::int64_t, state_size);
  TORCH_ARG(std::int64_t, glimpse_size);
  /// Samples per output pixel and direction (affine_glimpse's supersample).
  TORCH_ARG(std::int64_t, supersample) = 1;
};

/// A linear layer maps a state to theta [B,2,3]; initialised to the identity transform.
class AffineGlimpseImpl : public torch::nn::Cloneable<AffineGlimpseImpl> {
 public:
  explicit AffineGlimpseImpl(const AffineGlimpseOptions& options);
  void reset() override;
  void pretty_print(std::ostream& stream) const override;
  /// images [B,C,H,W], state [B,S] -> glimpse [B,C,N,N].
  torch::Tensor forward(const torch::Tensor& images, const torch::Tensor& state);
  torch::Tensor theta(const torch::Tensor& state);

  AffineGlimpseOptions options;
  torch::nn::Linear to_theta{nullptr};
};
TORCH_MODULE(AffineGlimpse);

}  // namespace attend::attention
