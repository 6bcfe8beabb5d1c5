#pragma once
/// Rendering where a hard-attention model looked: the glimpse path over the image
/// and a strip of what the retina saw at each step.

#include <attend/vision/glimpse.h>

#include <torch/types.h>

#include <opencv2/core/mat.hpp>

#include <string>

namespace attend::vision {

struct TraceOptions {
  /// Display magnification of the image (0 = choose so the image is ~360 px wide).
  TORCH_ARG(std::int64_t, scale) = 0;
  /// Display side of each retina patch in the strip.
  TORCH_ARG(std::int64_t, patch_side) = 48;
};

/// requires: image [C,H,W] float in [0,1] (C = 1 or 3, RGB); locations [T,2] in
///           [-1,1]; glimpses undefined or [T,k,C,g,g] (the retina output for those
///           locations); `retina` the options that produced them.
/// ensures:  an owning CV_8UC3 BGR picture: the magnified image with, for step t,
///           the k patch squares in step t's colour, the step number at the centre and
///           a line from each centre to the next; under it one row per step of the k
///           patches (each stretched to patch_side); `title` above when not empty.
///           `sides` [T] (optional) gives each step's square side in pixels for
///           glimpses whose size varies (soft glimpses); it replaces the retina's
///           k boxes with one box per step.
cv::Mat draw_glimpse_trace(const torch::Tensor& image, const torch::Tensor& locations, const RetinaOptions& retina,
                           const torch::Tensor& glimpses = {}, const std::string& title = "",
                           const TraceOptions& options = {}, const torch::Tensor& sides = {});

}  // namespace attend::vision
