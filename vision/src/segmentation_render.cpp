#include "attend/vision/segmentation_render.h"

#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace attend::vision {

Letterbox letterbox_geometry(cv::Size source, cv::Size target) {
  if (source.width <= 0 || source.height <= 0 || target.width <= 0 || target.height <= 0) {
    throw std::invalid_argument("letterbox: empty size");
  }
  const double s = std::min(static_cast<double>(target.width) / source.width,
                            static_cast<double>(target.height) / source.height);
  const int w = std::clamp(static_cast<int>(std::lround(source.width * s)), 1, target.width);
  const int h = std::clamp(static_cast<int>(std::lround(source.height * s)), 1, target.height);
  return {source, target, cv::Rect((target.width - w) / 2, (target.height - h) / 2, w, h)};
}

cv::Mat letterbox(const cv::Mat& image, const Letterbox& box) {
  if (image.size() != box.source) throw std::invalid_argument("letterbox: the image is not of the source size");
  cv::Mat canvas(box.target, image.type(), cv::Scalar::all(0));
  cv::Mat resized;
  const bool shrink = box.inner.width < image.cols;
  cv::resize(image, resized, box.inner.size(), 0, 0, shrink ? cv::INTER_AREA : cv::INTER_LINEAR);
  resized.copyTo(canvas(box.inner));
  return canvas;
}

cv::Mat unletterbox(const cv::Mat& map, const Letterbox& box, int interpolation) {
  if (map.size() != box.target) throw std::invalid_argument("unletterbox: the map is not of the canvas size");
  cv::Mat out;
  cv::resize(map(box.inner), out, box.source, 0, 0, interpolation);
  return out;
}

cv::Vec3b label_colour(int label) {
  if (label == 255) return {255, 255, 255};
  int r = 0, g = 0, b = 0;
  for (int i = 0, c = label; c > 0 && i < 8; ++i, c >>= 3) {
    r |= ((c >> 0) & 1) << (7 - i);
    g |= ((c >> 1) & 1) << (7 - i);
    b |= ((c >> 2) & 1) << (7 - i);
  }
  return {static_cast<uchar>(b), static_cast<uchar>(g), static_cast<uchar>(r)};
}

cv::Mat colour_labels(const cv::Mat& labels) {
  if (labels.type() != CV_8UC1) throw std::invalid_argument("colour_labels: labels must be CV_8UC1");
  cv::Mat lut(1, 256, CV_8UC3);
  for (int l = 0; l < 256; ++l) lut.at<cv::Vec3b>(0, l) = label_colour(l);
  cv::Mat bgr;
  cv::cvtColor(labels, bgr, cv::COLOR_GRAY2BGR);
  cv::Mat out;
  cv::LUT(bgr, lut, out);
  return out;
}

cv::Mat overlay_labels(const cv::Mat& image, const cv::Mat& labels, const std::vector<std::string>& names,
                       const LabelOverlayOptions& options) {
  if (labels.type() != CV_8UC1) throw std::invalid_argument("overlay_labels: labels must be CV_8UC1");
  if (image.size() != labels.size()) throw std::invalid_argument("overlay_labels: image and labels differ in size");
  cv::Mat base;
  if (image.channels() == 1) {
    cv::cvtColor(image, base, cv::COLOR_GRAY2BGR);
  } else {
    base = image.clone();
  }
  if (base.depth() != CV_8U) base.convertTo(base, CV_8U, base.depth() == CV_32F || base.depth() == CV_64F ? 255 : 1);
  const auto colours = colour_labels(labels);
  cv::Mat blended;
  cv::addWeighted(base, options.image_weight, colours, 1 - options.image_weight, 0, blended);
  const cv::Mat drawn = (labels > 0) & (labels != 255);
  blended.copyTo(base, drawn);
  std::vector<int> present;
  for (int l = 1; l < 255; ++l) {
    if (cv::countNonZero(labels == l) == 0) continue;
    if (static_cast<size_t>(l - 1) >= names.size()) {
      throw std::invalid_argument("overlay_labels: label " + std::to_string(l) + " has no class name (" +
                                  std::to_string(names.size()) + " names)");
    }
    present.push_back(l);
    if (options.contours) {
      std::vector<std::vector<cv::Point>> outline;
      cv::findContours(labels == l, outline, cv::RETR_EXTERNAL, cv::CHAIN_APPROX_NONE);
      const auto c = label_colour(l);
      cv::drawContours(base, outline, -1, cv::Scalar(c[0], c[1], c[2]), 1, cv::LINE_8);
    }
  }
  if (!options.legend || present.empty()) return base;
  const int row = 14;
  cv::Mat legend(row * static_cast<int>(present.size()) + 4, std::max(base.cols, 96), CV_8UC3, cv::Scalar::all(0));
  for (size_t i = 0; i < present.size(); ++i) {
    const int y = 2 + row * static_cast<int>(i);
    const auto c = label_colour(present[i]);
    cv::rectangle(legend, cv::Rect(2, y + 1, 10, 10), cv::Scalar(c[0], c[1], c[2]), cv::FILLED);
    cv::putText(legend, names[static_cast<size_t>(present[i] - 1)], cv::Point(16, y + 10), cv::FONT_HERSHEY_SIMPLEX,
                0.35, cv::Scalar::all(255), 1, cv::LINE_AA);
  }
  if (legend.cols > base.cols) {
    cv::Mat wider(base.rows, legend.cols, CV_8UC3, cv::Scalar::all(0));
    base.copyTo(wider(cv::Rect(0, 0, base.cols, base.rows)));
    base = wider;
  }
  cv::Mat out;
  cv::vconcat(base, legend, out);
  return out;
}

}  // namespace attend::vision
