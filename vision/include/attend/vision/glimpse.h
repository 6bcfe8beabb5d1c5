#pragma once
/// The multi-resolution retina of the Recurrent Attention Model (Mnih et al. 2014):
/// around a location, k square patches of side g, g*s, g*s^2, ... pixels, each
/// reduced to g x g by area averaging. Everything is one batched computation: no
/// loop over samples or scales.
///
/// Geometry (align_corners=false convention): a location (x, y) in [-1, 1]^2 maps to
/// the pixel coordinate ((x + 1) / 2 * W, (y + 1) / 2 * H), where pixel i covers
/// [i, i+1). Patch j covers the square of side p_j = g * s^j centred there; output
/// cell (u, v) is the mean of the image over its (p_j / g)^2 sub-square, the image
/// being taken as constant on each pixel and zero outside. For integer corners and
/// sides this is exactly cv::resize(INTER_AREA) of the corresponding ROI.

#include <torch/arg.h>
#include <torch/types.h>

namespace attend::vision {

struct RetinaOptions {
  /// Side g of every output patch, in pixels (also the side of the finest patch).
  TORCH_ARG(std::int64_t, size) = 8;
  /// Number k of patches (scales).
  TORCH_ARG(std::int64_t, scales) = 1;
  /// Ratio s between the sides of successive patches (> 0; may be non-integer).
  TORCH_ARG(double, ratio) = 2.0;
};

/// Checks options against an image size; throws c10::Error naming the bad value
/// (g < 1, k < 1, s <= 0, or a coarsest patch over 64 times the image side).
void check_retina_options(const RetinaOptions& options, std::int64_t height, std::int64_t width);

/// Area-averaging weights along one axis.
/// requires: starts [B,k] (patch start in pixels), sides [k] (patch side in pixels).
/// ensures:  [B,k,g,n] of `dtype` (default: that of starts) where entry (b,j,u,i) is the fraction of output cell u of
///           patch j that pixel i covers (rows sum to at most 1; less where the
///           patch leaves the image).
torch::Tensor area_weights(const torch::Tensor& starts, const torch::Tensor& sides, std::int64_t size,
                           std::int64_t n, c10::optional<torch::ScalarType> dtype = c10::nullopt);

/// Extracts glimpses.
/// requires: images [B,C,H,W] floating point (any H, W; any C, typically 1 or 3);
///           locations [B,2] (x, y) in [-1,1] (values outside are allowed: the
///           patch then covers zeros).
/// ensures:  [B,k,C,g,g] of the images' dtype; differentiable w.r.t. images (not
///           w.r.t. locations).
torch::Tensor extract_glimpses(const torch::Tensor& images, const torch::Tensor& locations,
                               const RetinaOptions& options);

/// Pixel-space square of patch `scale` around a location: x0, y0 (top-left corner)
/// and side, for drawing. Same geometry as extract_glimpses.
struct PatchBox {
  double x0, y0, side;
};
PatchBox patch_box(double x, double y, std::int64_t height, std::int64_t width, const RetinaOptions& options,
                   std::int64_t scale);

}  // namespace attend::vision
