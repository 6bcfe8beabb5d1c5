#include "attend/vision/contact_sheet.h"

#include <attend/vision/convert.h>

#include <torch/torch.h>

#include <opencv2/imgproc.hpp>

#include <algorithm>

namespace attend::vision {

cv::Mat make_contact_sheet(const torch::Tensor& images, const std::vector<std::string>& captions,
                           const ContactSheetOptions& options, const std::vector<std::vector<SheetBox>>& boxes) {
  TORCH_CHECK(images.defined() && (images.dim() == 3 || (images.dim() == 4 && (images.size(1) == 1 ||
                                                                                 images.size(1) == 3))),
              "make_contact_sheet: expected images [N,H,W] or [N,C,H,W] with C = 1 or 3, got ",
              images.defined() ? c10::str(images.sizes()) : std::string("an undefined tensor"));
  TORCH_CHECK(images.size(0) >= 1, "make_contact_sheet: expected at least one image");
  TORCH_CHECK(captions.empty() || static_cast<std::int64_t>(captions.size()) == images.size(0),
              "make_contact_sheet: expected no captions or one per image, got ", captions.size(), " for ",
              images.size(0), " images");
  TORCH_CHECK(options.columns() >= 1 && options.scale() >= 1 && options.scale() <= 64 && options.padding() >= 0,
              "make_contact_sheet: columns and scale must be >= 1 (scale <= 64) and padding >= 0");
  TORCH_CHECK(boxes.empty() || static_cast<std::int64_t>(boxes.size()) == images.size(0),
              "make_contact_sheet: expected no boxes or one list per image, got ", boxes.size(), " for ",
              images.size(0), " images");
  const auto batch = images.dim() == 3 ? images.unsqueeze(1) : images;
  const auto n = batch.size(0);
  const int th = static_cast<int>(batch.size(2) * options.scale());
  const int tw = static_cast<int>(batch.size(3) * options.scale());
  const int cols = static_cast<int>(std::min<std::int64_t>(options.columns(), n));
  const int rows = static_cast<int>((n + cols - 1) / cols);
  const int pad = static_cast<int>(options.padding());
  const int font = cv::FONT_HERSHEY_PLAIN;
  const double font_scale = 1.0;
  int baseline = 0;
  const int line_h = cv::getTextSize("Ag", font, font_scale, 1, &baseline).height + baseline + 2;
  // Captions wrapped at spaces to the tile width (a word wider than a tile stays whole).
  std::vector<std::vector<std::string>> lines(captions.size());
  size_t most_lines = 0;
  for (size_t i = 0; i < captions.size(); ++i) {
    std::string line;
    size_t start = 0;
    const auto& text = captions[i];
    while (start <= text.size()) {
      auto end = text.find(' ', start);
      if (end == std::string::npos) end = text.size();
      const auto word = text.substr(start, end - start);
      const auto candidate = line.empty() ? word : line + " " + word;
      if (!line.empty() && cv::getTextSize(candidate, font, font_scale, 1, &baseline).width > tw) {
        lines[i].push_back(line);
        line = word;
      } else {
        line = candidate;
      }
      start = end + 1;
    }
    lines[i].push_back(line);
    most_lines = std::max(most_lines, lines[i].size());
  }
  const int text_h = captions.empty() ? 0 : static_cast<int>(most_lines) * line_h + 2;
  const int cell_w = tw + pad;
  const int cell_h = th + text_h + pad;
  cv::Mat sheet(rows * cell_h + pad, cols * cell_w + pad, CV_8UC3, cv::Scalar::all(options.background()));
  for (std::int64_t i = 0; i < n; ++i) {
    cv::Mat tile = tensor_to_mat(batch[i]);
    if (tile.channels() == 1) cv::cvtColor(tile, tile, cv::COLOR_GRAY2BGR);
    cv::resize(tile, tile, cv::Size(tw, th), 0, 0, cv::INTER_NEAREST);
    const int x = pad + static_cast<int>(i % cols) * cell_w;
    const int y = pad + static_cast<int>(i / cols) * cell_h;
    if (!boxes.empty()) {
      static const cv::Scalar kColours[] = {{0, 220, 255}, {255, 160, 0}, {80, 255, 80}, {255, 80, 255},
                                            {80, 80, 255}, {255, 255, 80}};
      const auto sc = static_cast<int>(options.scale());
      int k = 0;
      for (const auto& b : boxes[static_cast<size_t>(i)]) {
        const auto& colour = kColours[k++ % 6];
        const cv::Rect r(static_cast<int>(b.x) * sc, static_cast<int>(b.y) * sc, static_cast<int>(b.width) * sc,
                         static_cast<int>(b.height) * sc);
        cv::rectangle(tile, r, colour, 1);
        if (!b.label.empty()) {
          cv::putText(tile, b.label, cv::Point(r.x + 2, std::max(r.y + line_h - 4, line_h - 4)), font, 0.8, colour,
                      1, cv::LINE_AA);
        }
      }
    }
    tile.copyTo(sheet(cv::Rect(x, y, tw, th)));
    if (!captions.empty()) {
      int ty = y + th;
      for (const auto& text : lines[static_cast<size_t>(i)]) {
        const auto size = cv::getTextSize(text, font, font_scale, 1, &baseline);
        const int tx = x + std::max(0, (tw - size.width) / 2);
        ty += line_h;
        cv::putText(sheet, text, cv::Point(tx, ty - baseline), font, font_scale, cv::Scalar(230, 230, 230), 1,
                    cv::LINE_AA);
      }
    }
  }
  return sheet;
}

}  // namespace attend::vision
