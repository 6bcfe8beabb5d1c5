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

}  // namespace attend::vision
