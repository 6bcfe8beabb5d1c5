#pragma once
/// Attention weights as pictures: an alignment matrix (output tokens x input tokens)
/// as a labelled heatmap.

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

}  // namespace attend::vision
