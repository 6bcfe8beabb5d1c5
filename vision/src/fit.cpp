#include "attend/vision/fit.h"

#include <attend/vision/convert.h>
#include <attend/vision/image_io.h>

#include <opencv2/imgproc.hpp>
#include <torch/torch.h>

#include <cmath>
#include <vector>

namespace attend::vision {

FittedImage fit_image(const cv::Mat& image, const FitImageOptions& options) {
  const auto c = options.channels(), h = options.height(), w = options.width();
  TORCH_CHECK(c == 1 || c == 3, "fit_image: channels must be 1 or 3, got ", c);
  TORCH_CHECK(h >= 1 && w >= 1 && h <= 65536 && w <= 65536, "fit_image: invalid target size ", w, "x", h);
  TORCH_CHECK(!image.empty(), "fit_image: the image is empty");
  TORCH_CHECK(image.depth() == CV_8U && (image.channels() == 1 || image.channels() == 3 || image.channels() == 4),
              "fit_image: expected a CV_8UC1, CV_8UC3 or CV_8UC4 image, got type ", image.type());
  std::vector<std::string> notes;
  cv::Mat m;
  if (c == 1 && image.channels() != 1) {
    cv::cvtColor(image, m, image.channels() == 3 ? cv::COLOR_BGR2GRAY : cv::COLOR_BGRA2GRAY);
    notes.push_back("converted to grey");
  } else if (c == 3 && image.channels() == 1) {
    cv::cvtColor(image, m, cv::COLOR_GRAY2BGR);
    notes.push_back("grey replicated to 3 channels");
  } else if (c == 3 && image.channels() == 4) {
    cv::cvtColor(image, m, cv::COLOR_BGRA2BGR);
    notes.push_back("alpha dropped");
  } else {
    m = image.clone();
  }
  if (options.invert()) {
    cv::bitwise_not(m, m);
    notes.push_back("inverted");
  }
  auto size_text = [](int cols, int rows) { return std::to_string(cols) + "x" + std::to_string(rows); };
  if (options.mode() == FitMode::kStretch) {
    if (m.cols != w || m.rows != h) {
      notes.push_back("resized " + size_text(m.cols, m.rows) + " -> " + size_text(static_cast<int>(w), static_cast<int>(h)));
      const bool shrinking = m.cols > w && m.rows > h;
      cv::resize(m, m, cv::Size(static_cast<int>(w), static_cast<int>(h)), 0, 0,
                 shrinking ? cv::INTER_AREA : cv::INTER_LINEAR);
    }
  } else {
    const double scale = std::min(static_cast<double>(w) / m.cols, static_cast<double>(h) / m.rows);
    if (scale < 1.0) {
      const int nw = std::max(1, static_cast<int>(std::lround(m.cols * scale)));
      const int nh = std::max(1, static_cast<int>(std::lround(m.rows * scale)));
      notes.push_back("resized " + size_text(m.cols, m.rows) + " -> " + size_text(nw, nh));
      cv::resize(m, m, cv::Size(nw, nh), 0, 0, cv::INTER_AREA);
    }
    if (m.cols != w || m.rows != h) {
      const int left = static_cast<int>((w - m.cols) / 2), top = static_cast<int>((h - m.rows) / 2);
      cv::copyMakeBorder(m, m, top, static_cast<int>(h) - m.rows - top, left, static_cast<int>(w) - m.cols - left,
                         cv::BORDER_CONSTANT, cv::Scalar::all(0));
      notes.push_back("padded to " + size_text(static_cast<int>(w), static_cast<int>(h)));
    }
  }
  std::string note;
  for (const auto& n : notes) note += (note.empty() ? "" : ", ") + n;
  return {mat_to_tensor(m), note.empty() ? "used as is" : note};
}

FittedImage read_fitted_image(const std::string& path, const FitImageOptions& options) {
  auto fitted = fit_image(read_image(path, /*grey=*/options.channels() == 1), options);
  if (options.channels() == 1) fitted.note = "read as grey" + (fitted.note == "used as is" ? "" : ", " + fitted.note);
  return fitted;
}

}  // namespace attend::vision
