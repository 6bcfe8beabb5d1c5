#pragma once
/// Contact sheets: a grid of small images with an optional caption under each.

#include <torch/arg.h>
#include <torch/types.h>

#include <opencv2/core/mat.hpp>

#include <string>
#include <vector>

namespace attend::vision {

struct ContactSheetOptions {
  /// Tiles per row (fewer when there are fewer images).
  TORCH_ARG(std::int64_t, columns) = 10;
  /// Integer magnification of each tile (nearest neighbour, so pixels stay crisp).
  TORCH_ARG(std::int64_t, scale) = 2;
  /// Pixels of background between tiles and around the sheet.
  TORCH_ARG(std::int64_t, padding) = 4;
  /// Background grey level 0..255.
  TORCH_ARG(int, background) = 48;
};

/// A rectangle to draw on a tile, in the image's pixels, with an optional label at its
/// top left corner.
struct SheetBox {
  std::int64_t x = 0, y = 0, width = 0, height = 0;
  std::string label;
};

/// Lays out `images` in a grid. Captions wider than a tile wrap at spaces onto
/// further lines. Each tile's boxes (none, or one list per image) are drawn in
/// distinct colours, in the order given.
/// requires: images [N,H,W] uint8 (grey, the IDX layout) or [N,C,H,W] (C = 1 or 3,
///           RGB) uint8 or float in [0,1]; N >= 1; captions empty or one per image.
/// ensures:  an owning CV_8UC3 BGR Mat.
/// throws c10::Error for other shapes, N = 0 or a caption count mismatch.
cv::Mat make_contact_sheet(const torch::Tensor& images, const std::vector<std::string>& captions = {},
                           const ContactSheetOptions& options = {},
                           const std::vector<std::vector<SheetBox>>& boxes = {});

}  // namespace attend::vision
