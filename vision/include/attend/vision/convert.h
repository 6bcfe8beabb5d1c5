#pragma once
/// cv::Mat <-> torch::Tensor. OpenCV images are HWC with BGR colour order unless
/// said otherwise; tensors are CHW (NCHW for batches) with RGB order and float
/// values in [0,1] unless said otherwise. Every function here returns memory it
/// owns: the result stays valid after the source is gone.

#include <torch/arg.h>
#include <torch/types.h>

#include <opencv2/core/mat.hpp>

#include <vector>

namespace attend::vision {

enum class ColorOrder { kBGR, kRGB };

struct MatToTensorOptions {
  /// Colour order of 3-channel Mats (OpenCV's own functions produce BGR).
  TORCH_ARG(ColorOrder, mat_order) = ColorOrder::kBGR;
  /// Colour order wanted in the tensor.
  TORCH_ARG(ColorOrder, tensor_order) = ColorOrder::kRGB;
  /// true: float32 in [0,1] (8-bit input divided by 255); false: keep uint8
  /// (only for 8-bit input).
  TORCH_ARG(bool, to_float) = true;
};

/// requires: `image` of type CV_8UC1, CV_8UC3, CV_32FC1 or CV_32FC3 (float values
///           taken as already in [0,1]); continuous or not (an ROI is fine).
/// ensures:  an owning contiguous tensor [C,H,W], C = 1 or 3.
/// throws c10::Error for an empty Mat or another type.
torch::Tensor mat_to_tensor(const cv::Mat& image, const MatToTensorOptions& options = {});

/// Stacks same-sized, same-typed images into [B,C,H,W].
/// throws c10::Error for an empty list or when sizes or types differ (naming the index).
torch::Tensor mats_to_tensor(const std::vector<cv::Mat>& images, const MatToTensorOptions& options = {});

struct TensorToMatOptions {
  /// Colour order of 3-channel tensors.
  TORCH_ARG(ColorOrder, tensor_order) = ColorOrder::kRGB;
  /// Colour order wanted in the Mat.
  TORCH_ARG(ColorOrder, mat_order) = ColorOrder::kBGR;
};

/// requires: `image` [C,H,W] (C = 1 or 3) or [H,W]; uint8, or floating point in
///           [0,1] (clamped, then scaled by 255 and rounded).
/// ensures:  an owning CV_8UC1 or CV_8UC3 Mat of H rows and W columns.
cv::Mat tensor_to_mat(const torch::Tensor& image, const TensorToMatOptions& options = {});

/// [B,C,H,W] -> B Mats, as tensor_to_mat.
std::vector<cv::Mat> tensor_to_mats(const torch::Tensor& batch, const TensorToMatOptions& options = {});

}  // namespace attend::vision
