#pragma once
/// Segmentation over OpenCV images: fitting any image to a model's input and back
/// (letterboxing), class colours, label overlays with contours and a legend.
/// Images are BGR cv::Mat (OpenCV's order) unless said otherwise.

#include <opencv2/core.hpp>

#include <string>
#include <vector>

namespace attend::vision {

/// Where an image of `source` size sits inside a `target` canvas after a resize that
/// keeps its aspect ratio (the larger side fills the canvas) and centred padding.
struct Letterbox {
  cv::Size source, target;
  cv::Rect inner;  ///< the resized image inside the canvas
};
/// throws cv::Exception-free c10-style std::invalid_argument for empty sizes.
Letterbox letterbox_geometry(cv::Size source, cv::Size target);
/// The image resized into the canvas (bilinear; area when shrinking), padding black.
cv::Mat letterbox(const cv::Mat& image, const Letterbox& box);
/// The inverse for maps: the inner rectangle of `map` (canvas-sized, any type and
/// channel count) resized back to the source size (`interpolation`: cv::INTER_LINEAR
/// for scores, cv::INTER_NEAREST for labels).
cv::Mat unletterbox(const cv::Mat& map, const Letterbox& box, int interpolation);

/// The colour (BGR) of label l: 0 black, 255 white (ignore), others the PASCAL VOC
/// palette (bit-interleaved), so label images look like VOC's.
cv::Vec3b label_colour(int label);
/// A label image (CV_8U) painted in label_colour.
cv::Mat colour_labels(const cv::Mat& labels);

struct LabelOverlayOptions {
  double image_weight = 0.5;  ///< weight of the image where a class is drawn
  bool contours = true;       ///< outline each class region in its colour
  bool legend = true;         ///< a row per label present (swatch + name) below the image
};
/// image BGR (or grey) and labels CV_8U of the same size (0 background, c+1 class c,
/// 255 ignore) -> BGR overlay; names[c] names class c (label c+1).
/// throws std::invalid_argument for mismatched sizes or a label without a name.
cv::Mat overlay_labels(const cv::Mat& image, const cv::Mat& labels, const std::vector<std::string>& names,
                       const LabelOverlayOptions& options = {});

}  // namespace attend::vision
