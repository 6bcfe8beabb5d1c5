#include "attend/vision/contact_sheet.h"

#include <attend/vision/convert.h>

#include <torch/torch.h>

#include <opencv2/imgproc.hpp>

#include <algorithm>

namespace attend::vision {

cv::Mat make_contact_sheet(const torch::Tensor& images, const std::vector<std::string>& captions,
                           const ContactSheetOptions& options) {
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
  const int text_h = captions.empty() ? 0 : cv::getTextSize("Ag", font, font_scale, 1, &baseline).height + baseline + 4;
  const int cell_w = tw + pad;
  const int cell_h = th + text_h + pad;
  cv::Mat sheet(rows * cell_h + pad, cols * cell_w + pad, CV_8UC3, cv::Scalar::all(options.background()));
  for (std::int64_t i = 0; i < n; ++i) {
    cv::Mat tile = tensor_to_mat(batch[i]);
    if (tile.channels() == 1) cv::cvtColor(tile, tile, cv::COLOR_GRAY2BGR);
    cv::resize(tile, tile, cv::Size(tw, th), 0, 0, cv::INTER_NEAREST);
    const int x = pad + static_cast<int>(i % cols) * cell_w;
    const int y = pad + static_cast<int>(i / cols) * cell_h;
    tile.copyTo(sheet(cv::Rect(x, y, tw, th)));
    if (!captions.empty()) {
      const auto& text = captions[static_cast<size_t>(i)];
      const auto size = cv::getTextSize(text, font, font_scale, 1, &baseline);
      const int tx = x + std::max(0, (tw - size.width) / 2);
      cv::putText(sheet, text, cv::Point(tx, y + th + size.height + 2), font, font_scale,
                  cv::Scalar(230, 230, 230), 1, cv::LINE_AA);
    }
  }
  return sheet;
}

}  // namespace attend::vision
