#pragma once
/// Differentiable glimpses: where they look is trained by backpropagation.
///   Gaussian (DRAW read and write, Gregor et al. 2015): an N x N grid of Gaussian
///   filters with centre, stride, variance and intensity, one stride and variance for
///   both axes or one per axis; separable (F_Y and F_X), rows normalised.
///   Affine (spatial transformer, Jaderberg et al. 2015): affine_grid + grid_sample,
///   align_corners = false, so locations share the retina's [-1,1] convention; any
///   output height and width.

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
/// `stride` and `variance` serve both axes, unless `stride_y` / `variance_y` are
/// defined: then `stride` / `variance` are the x axis's (F_X) and these the y axis's
/// (F_Y), each falling back to the shared one when undefined.
struct GaussianGlimpseParams {
  torch::Tensor centre_x, centre_y, stride, variance, intensity;
  torch::Tensor stride_y, variance_y;  ///< [B], or undefined (shared with x)
};

/// The two filterbanks of a glimpse of n x n over an H x W image.
struct GaussianFilterbanks {
  torch::Tensor x;  ///< F_X [B,n,W]
  torch::Tensor y;  ///< F_Y [B,n,H]
};
/// requires: params as above, n >= 1, height, width >= 1.
GaussianFilterbanks gaussian_filterbanks(const GaussianGlimpseParams& params, std::int64_t n, std::int64_t height,
                                         std::int64_t width);

/// DRAW read. images [B,C,H,W] -> [B,C,n,n] = intensity * F_Y image F_X^T.
torch::Tensor gaussian_glimpse(const torch::Tensor& images, const GaussianGlimpseParams& params, std::int64_t n);

/// DRAW write (Gregor et al. 2015, eq. 29): patch [B,C,N,N] -> canvas contribution
/// [B,C,H,W] = (1 / intensity) * F_Y^T patch F_X, the filterbanks of `params` for
/// n = N. It is the adjoint of the read up to the intensities: for one item,
/// <gaussian_glimpse(x), w> = intensity^2 <x, gaussian_write(w)>.
torch::Tensor gaussian_write(const torch::Tensor& patch, const GaussianGlimpseParams& params, std::int64_t height,
                             std::int64_t width);

/// DRAW's mapping from 5 unconstrained numbers [B,5] (gx~, gy~, log variance,
/// log stride~, log intensity) to parameters for an H x W image:
/// centre = (size + 1)/2 * (g~ + 1) - 1 (0-based pixels: g~ = 0 is the image centre), stride = (max(H,W) - 1)/(n - 1) * exp(log stride~).
/// Per axis, from 7 numbers [B,7] (gx~, gy~, log variance x, log stride~ x,
/// log intensity, log variance y, log stride~ y): stride_x = (W - 1)/(n - 1) *
/// exp(log stride~ x) and stride_y = (H - 1)/(n - 1) * exp(log stride~ y), so that
/// stride~ = 1 spans the image along each axis; stride_y and variance_y are then defined.
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
  /// A stride and a variance per axis (7 raw parameters) instead of one shared (5).
  TORCH_ARG(bool, per_axis) = false;
};

/// A small network (one linear layer) maps a state [B,S] to the 5 raw parameters (7
/// per axis). Used as DRAW's read head (forward) or its write head (write), one module
/// for each, as in DRAW, where read and write place their filters independently.
class GaussianGlimpseImpl : public torch::nn::Cloneable<GaussianGlimpseImpl> {
 public:
  explicit GaussianGlimpseImpl(const GaussianGlimpseOptions& options);
  void reset() override;
  void pretty_print(std::ostream& stream) const override;
  /// images [B,C,H,W], state [B,S] -> glimpse [B,C,N,N].
  torch::Tensor forward(const torch::Tensor& images, const torch::Tensor& state);
  /// DRAW write: patch [B,C,N,N], state [B,S] -> [B,C,height,width] (gaussian_write
  /// with the parameters the state gives), to be added to the canvas.
  torch::Tensor write(const torch::Tensor& patch, const torch::Tensor& state, std::int64_t height,
                      std::int64_t width);
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
  /// Output height and width of a non-square glimpse (0 = glimpse_size).
  TORCH_ARG(std::int64_t, glimpse_height) = 0;
  TORCH_ARG(std::int64_t, glimpse_width) = 0;
  /// Samples per output pixel and direction (affine_glimpse's supersample).
  TORCH_ARG(std::int64_t, supersample) = 1;
};

/// A linear layer maps a state to theta [B,2,3]; initialised to the identity transform.
class AffineGlimpseImpl : public torch::nn::Cloneable<AffineGlimpseImpl> {
 public:
  explicit AffineGlimpseImpl(const AffineGlimpseOptions& options);
  void reset() override;
  void pretty_print(std::ostream& stream) const override;
  /// images [B,C,H,W], state [B,S] -> glimpse [B,C,Nh,Nw] (glimpse_height() x glimpse_width()).
  torch::Tensor forward(const torch::Tensor& images, const torch::Tensor& state);
  /// state [B,S] -> theta [B,2,3].
  torch::Tensor theta(const torch::Tensor& state);
  /// The output size: the options' glimpse_height / glimpse_width, else glimpse_size.
  std::int64_t glimpse_height() const;
  std::int64_t glimpse_width() const;

  AffineGlimpseOptions options;
  torch::nn::Linear to_theta{nullptr};
};
TORCH_MODULE(AffineGlimpse);

}  // namespace attend::attention
