#pragma once
/// Fitting a user's image to a model's input: channel conversion, optional
/// inversion, scaling (letterbox: keep the aspect ratio and pad with black; or
/// stretch), and a note saying what was done, for the user to read.

#include <torch/arg.h>
#include <torch/types.h>

#include <opencv2/core/mat.hpp>

#include <string>

namespace attend::vision {

enum class FitMode {
  kLetterbox,  ///< shrink (never enlarge) to fit, keep the aspect ratio, pad with zeros, centred
  kStretch,    ///< resize to exactly height x width
};

struct FitImageOptions {
  TORCH_ARG(std::int64_t, channels) = 1;  ///< 1 (grey) or 3 (RGB tensor)
  TORCH_ARG(std::int64_t, height) = 28;
  TORCH_ARG(std::int64_t, width) = 28;
  TORCH_ARG(FitMode, mode) = FitMode::kLetterbox;
  /// Invert grey levels first (dark strokes on light paper -> light on dark, as in MNIST).
  TORCH_ARG(bool, invert) = false;
};

struct FittedImage {
  torch::Tensor image;  ///< [C,H,W] float in [0,1], RGB when C = 3; owns its memory
  std::string note;     ///< e.g. "read as grey, resized 300x200 -> 28x19, padded to 28x28"; "used as is"
};

/// image: CV_8UC1, CV_8UC3 (BGR) or CV_8UC4 (BGRA, alpha dropped); not modified.
/// throws c10::Error for an empty image, another type, or channels not 1 or 3.
FittedImage fit_image(const cv::Mat& image, const FitImageOptions& options);

/// Reads an image file (grey when options.channels() == 1) and fits it.
/// throws attend::IoError naming the path for a missing or unreadable file.
FittedImage read_fitted_image(const std::string& path, const FitImageOptions& options);

}  // namespace attend::vision
