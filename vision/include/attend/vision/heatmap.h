#pragma once
/// Attention weights as pictures: an alignment matrix (output tokens x input tokens)
/// as a labelled heatmap, and spatial weights (a grid of cells over an image, a
/// saliency map) blended over the image.

#include <torch/arg.h>
#include <torch/types.h>

#include <opencv2/core/mat.hpp>

#include <string>
#include <vector>

namespace attend::vision {

struct AlignmentOptions {
  /// Side of one cell in pixels.
  TORCH_ARG(int, cell) = 32;
  /// OpenCV colormap (cv::COLORMAP_*); the default is viridis.
  TORCH_ARG(int, colormap) = 16;
  /// Scale each row to its own maximum (true) or show weights as they are in [0,1].
  TORCH_ARG(bool, normalise_rows) = false;
};

/// requires: weights [Tq,Tk] floating point in [0,1] (row = output step); row_labels
///           empty or Tq strings, column_labels empty or Tk strings.
/// ensures:  an owning CV_8UC3 BGR image: cell (i,j) coloured by weights[i][j] through
///           the colormap, row labels at the left, column labels above.
cv::Mat draw_alignment(const torch::Tensor& weights, const std::vector<std::string>& row_labels = {},
                       const std::vector<std::string>& column_labels = {}, const AlignmentOptions& options = {});

struct OverlayOptions {
  /// OpenCV colormap (cv::COLORMAP_*); the default is jet.
  TORCH_ARG(int, colormap) = 2;
  /// Weight of the heatmap in the blend, 0..1 (the image gets 1 - opacity).
  TORCH_ARG(double, opacity) = 0.5;
  /// Scale the map to its own maximum (true) or show values as they are in [0,1].
  TORCH_ARG(bool, normalise) = true;
  /// Upsample the map smoothly (bilinear) rather than as blocks (nearest).
  TORCH_ARG(bool, smooth) = true;
};

/// The image with `weights` coloured over it.
/// requires: image [C,H,W] (C = 1 or 3, RGB) uint8 or float in [0,1]; weights [h,w]
///           floating point >= 0 covering the image (each cell H/h x W/w pixels).
/// ensures:  an owning CV_8UC3 BGR image of H x W.
cv::Mat overlay_heatmap(const torch::Tensor& image, const torch::Tensor& weights, const OverlayOptions& options = {});

/// As overlay_heatmap, as an RGB uint8 tensor [3,H,W] (for contact sheets).
torch::Tensor overlay_heatmap_rgb(const torch::Tensor& image, const torch::Tensor& weights,
                                  const OverlayOptions& options = {});

}  // namespace attend::vision
