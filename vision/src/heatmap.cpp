#include "attend/vision/heatmap.h"

#include <torch/torch.h>

#include <opencv2/imgproc.hpp>

#include <algorithm>

namespace attend::vision {

cv::Mat draw_alignment(const torch::Tensor& weights, const std::vector<std::string>& row_labels,
                       const std::vector<std::string>& column_labels, const AlignmentOptions& options) {
  TORCH_CHECK(weights.defined() && weights.dim() == 2 && weights.is_floating_point() && weights.numel() > 0,
              "draw_alignment: expected floating point weights [Tq,Tk], got ",
              weights.defined() ? c10::str(weights.sizes()) : std::string("an undefined tensor"));
  const auto rows = weights.size(0), cols = weights.size(1);
  TORCH_CHECK(row_labels.empty() || static_cast<std::int64_t>(row_labels.size()) == rows,
              "draw_alignment: expected ", rows, " row labels, got ", row_labels.size());
  TORCH_CHECK(column_labels.empty() || static_cast<std::int64_t>(column_labels.size()) == cols,
              "draw_alignment: expected ", cols, " column labels, got ", column_labels.size());
  TORCH_CHECK(options.cell() >= 4 && options.cell() <= 512 && rows * cols <= 1'000'000,
              "draw_alignment: cell must be in 4..512 px and the matrix at most a million cells");
  auto w = weights.detach().to(torch::kFloat32).cpu();
  if (options.normalise_rows()) w = w / w.amax(1, true).clamp_min(1e-12);
  const auto levels = w.clamp(0, 1).mul(255).round().to(torch::kUInt8).contiguous();
  cv::Mat grey(static_cast<int>(rows), static_cast<int>(cols), CV_8UC1, levels.data_ptr<std::uint8_t>());
  cv::Mat coloured;
  cv::applyColorMap(grey, coloured, options.colormap());  // copies: no aliasing of `levels`

  const int font = cv::FONT_HERSHEY_SIMPLEX;
  const double scale = 0.4;
  int baseline = 0;
  int left = 0, top = 0;
  for (const auto& l : row_labels) left = std::max(left, cv::getTextSize(l, font, scale, 1, &baseline).width + 8);
  for (const auto& l : column_labels) top = std::max(top, cv::getTextSize(l, font, scale, 1, &baseline).height + 10);
  const int cell = options.cell();
  cv::Mat out(top + static_cast<int>(rows) * cell, left + static_cast<int>(cols) * cell, CV_8UC3,
              cv::Scalar(255, 255, 255));
  cv::resize(coloured, out(cv::Rect(left, top, static_cast<int>(cols) * cell, static_cast<int>(rows) * cell)),
             cv::Size(static_cast<int>(cols) * cell, static_cast<int>(rows) * cell), 0, 0, cv::INTER_NEAREST);
  for (size_t i = 0; i < row_labels.size(); ++i) {
    cv::putText(out, row_labels[i], cv::Point(2, top + static_cast<int>(i) * cell + cell / 2 + 4), font, scale,
                cv::Scalar(0, 0, 0), 1, cv::LINE_AA);
  }
  for (size_t j = 0; j < column_labels.size(); ++j) {
    const auto size = cv::getTextSize(column_labels[j], font, scale, 1, &baseline);
    cv::putText(out, column_labels[j],
                cv::Point(left + static_cast<int>(j) * cell + (cell - size.width) / 2, top - 5), font, scale,
                cv::Scalar(0, 0, 0), 1, cv::LINE_AA);
  }
  return out;
}

cv::Mat overlay_heatmap(const torch::Tensor& image, const torch::Tensor& weights, const OverlayOptions& options) {
  TORCH_CHECK(image.defined() && image.dim() == 3 && (image.size(0) == 1 || image.size(0) == 3) && image.numel() > 0,
              "overlay_heatmap: expected an image [C,H,W] with C = 1 or 3, got ",
              image.defined() ? c10::str(image.sizes()) : std::string("an undefined tensor"));
  TORCH_CHECK(weights.defined() && weights.dim() == 2 && weights.is_floating_point() && weights.numel() > 0,
              "overlay_heatmap: expected floating point weights [h,w], got ",
              weights.defined() ? c10::str(weights.sizes()) : std::string("an undefined tensor"));
  TORCH_CHECK(options.opacity() >= 0 && options.opacity() <= 1, "overlay_heatmap: opacity must be in [0,1]");
  const int h = static_cast<int>(image.size(1)), w = static_cast<int>(image.size(2));
  auto pixels = image.detach().cpu();
  if (pixels.is_floating_point()) pixels = pixels.clamp(0, 1).mul(255).round();
  pixels = pixels.to(torch::kUInt8);
  if (pixels.size(0) == 1) pixels = pixels.expand({3, h, w});
  const auto hwc = pixels.permute({1, 2, 0}).contiguous();
  cv::Mat rgb(h, w, CV_8UC3, hwc.data_ptr<std::uint8_t>());
  cv::Mat bgr;
  cv::cvtColor(rgb, bgr, cv::COLOR_RGB2BGR);

  auto map = weights.detach().to(torch::kFloat32).cpu().clamp_min(0);
  if (options.normalise()) map = map / map.max().clamp_min(1e-12);
  const auto levels = map.clamp(0, 1).mul(255).round().to(torch::kUInt8).contiguous();
  cv::Mat small(static_cast<int>(levels.size(0)), static_cast<int>(levels.size(1)), CV_8UC1,
                levels.data_ptr<std::uint8_t>());
  cv::Mat large;
  cv::resize(small, large, cv::Size(w, h), 0, 0, options.smooth() ? cv::INTER_LINEAR : cv::INTER_NEAREST);
  cv::Mat coloured;
  cv::applyColorMap(large, coloured, options.colormap());
  cv::Mat out;
  cv::addWeighted(coloured, options.opacity(), bgr, 1.0 - options.opacity(), 0.0, out);
  return out;
}

torch::Tensor overlay_heatmap_rgb(const torch::Tensor& image, const torch::Tensor& weights,
                                  const OverlayOptions& options) {
  const auto bgr = overlay_heatmap(image, weights, options);
  cv::Mat rgb;
  cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
  return torch::from_blob(rgb.data, {rgb.rows, rgb.cols, 3}, torch::kUInt8).permute({2, 0, 1}).clone();
}

}  // namespace attend::vision
