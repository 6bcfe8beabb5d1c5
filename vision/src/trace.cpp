#include "attend/vision/trace.h"

#include <attend/vision/convert.h>

#include <torch/torch.h>

#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cmath>

namespace attend::vision {
namespace {

/// Step colour: hue from blue (first) to red (last), BGR.
cv::Scalar step_colour(std::int64_t t, std::int64_t steps) {
  cv::Mat hsv(1, 1, CV_8UC3,
              cv::Scalar(static_cast<double>(120 - 120 * t / std::max<std::int64_t>(1, steps - 1)), 230, 255));
  cv::Mat bgr;
  cv::cvtColor(hsv, bgr, cv::COLOR_HSV2BGR);
  const auto c = bgr.at<cv::Vec3b>(0, 0);
  return {static_cast<double>(c[0]), static_cast<double>(c[1]), static_cast<double>(c[2])};
}

cv::Mat to_bgr(const torch::Tensor& chw) {
  cv::Mat m = tensor_to_mat(chw);
  if (m.channels() == 1) cv::cvtColor(m, m, cv::COLOR_GRAY2BGR);
  return m;
}

}  // namespace

cv::Mat draw_glimpse_trace(const torch::Tensor& image, const torch::Tensor& locations, const RetinaOptions& retina,
                           const torch::Tensor& glimpses, const std::string& title, const TraceOptions& options,
                           const torch::Tensor& sides) {
  TORCH_CHECK(image.defined() && image.dim() == 3 && (image.size(0) == 1 || image.size(0) == 3),
              "draw_glimpse_trace: expected an image [C,H,W] with C = 1 or 3");
  TORCH_CHECK(locations.defined() && locations.dim() == 2 && locations.size(1) == 2 && locations.size(0) >= 1,
              "draw_glimpse_trace: expected locations [T,2]");
  const auto steps = locations.size(0);
  const auto k = retina.scales();
  TORCH_CHECK(!sides.defined() || (sides.dim() == 1 && sides.size(0) == steps),
              "draw_glimpse_trace: expected sides [", steps, "]");
  const auto side_values = sides.defined() ? sides.detach().to(torch::kFloat64).contiguous() : torch::Tensor();
  TORCH_CHECK(!glimpses.defined() || (glimpses.dim() == 5 && glimpses.size(0) == steps && glimpses.size(1) == k),
              "draw_glimpse_trace: expected glimpses [", steps, ",", k, ",C,g,g], got ",
              glimpses.defined() ? c10::str(glimpses.sizes()) : std::string());
  TORCH_CHECK(options.scale() >= 0 && options.scale() <= 64 && options.patch_side() >= 4 &&
                  options.patch_side() <= 512,
              "draw_glimpse_trace: scale must be in 0..64 and patch_side in 4..512");
  const auto h = image.size(1), w = image.size(2);
  const std::int64_t scale = options.scale() > 0 ? options.scale() : std::max<std::int64_t>(1, 360 / std::max(h, w));
  const int iw = static_cast<int>(w * scale), ih = static_cast<int>(h * scale);
  const int side = static_cast<int>(options.patch_side());
  const int gap = 6;
  const int strip_w = glimpses.defined() ? static_cast<int>(k) * (side + gap) + 40 : 0;
  const int strip_h = glimpses.defined() ? static_cast<int>(steps) * (side + gap) : 0;
  const int title_h = title.empty() ? 0 : 28;
  const int width = std::max(iw, strip_w) + 2 * gap;
  const int height = title_h + ih + (glimpses.defined() ? gap + strip_h : 0) + 2 * gap;
  cv::Mat canvas(height, width, CV_8UC3, cv::Scalar(32, 32, 32));
  if (!title.empty()) {
    cv::putText(canvas, title, cv::Point(gap, 20), cv::FONT_HERSHEY_SIMPLEX, 0.55, cv::Scalar(240, 240, 240), 1,
                cv::LINE_AA);
  }
  const cv::Rect image_rect(gap, title_h + gap, iw, ih);
  cv::Mat shown;
  cv::resize(to_bgr(image), shown, cv::Size(iw, ih), 0, 0, cv::INTER_NEAREST);
  shown.copyTo(canvas(image_rect));

  const auto loc = locations.detach().to(torch::kFloat64).contiguous();
  const auto* l = loc.data_ptr<double>();
  // Everything is drawn into the image's own region, so boxes of patches that
  // reach past the image are clipped at its border.
  cv::Mat view = canvas(image_rect);
  auto to_canvas = [&](double px, double py) {
    return cv::Point2d(px * static_cast<double>(scale), py * static_cast<double>(scale));
  };
  cv::Mat overlay = view.clone();
  std::vector<cv::Point> centres;
  for (std::int64_t t = 0; t < steps; ++t) {
    const auto colour = step_colour(t, steps);
    for (std::int64_t j = 0; j < (sides.defined() ? 1 : k); ++j) {
      auto box = patch_box(l[2 * t], l[2 * t + 1], h, w, retina, j);
      if (sides.defined()) {
        const double side = side_values.data_ptr<double>()[t];
        box = {box.x0 + box.side / 2 - side / 2, box.y0 + box.side / 2 - side / 2, side};
      }
      const auto a = to_canvas(box.x0, box.y0), b = to_canvas(box.x0 + box.side, box.y0 + box.side);
      cv::rectangle(overlay, cv::Point(static_cast<int>(std::lround(a.x)), static_cast<int>(std::lround(a.y))),
                    cv::Point(static_cast<int>(std::lround(b.x)), static_cast<int>(std::lround(b.y))), colour, 1,
                    cv::LINE_AA);
    }
    const auto c = patch_box(l[2 * t], l[2 * t + 1], h, w, retina, 0);
    const auto centre = to_canvas(c.x0 + c.side / 2, c.y0 + c.side / 2);
    centres.emplace_back(static_cast<int>(std::lround(centre.x)), static_cast<int>(std::lround(centre.y)));
  }
  cv::addWeighted(overlay, 0.8, view, 0.2, 0, view);
  for (size_t t = 0; t + 1 < centres.size(); ++t) {
    cv::line(view, centres[t], centres[t + 1], cv::Scalar(255, 255, 255), 1, cv::LINE_AA);
  }
  for (std::int64_t t = 0; t < steps; ++t) {
    const auto& p = centres[static_cast<size_t>(t)];
    cv::circle(view, p, 9, step_colour(t, steps), cv::FILLED, cv::LINE_AA);
    const auto label = std::to_string(t + 1);
    int base = 0;
    const auto ts = cv::getTextSize(label, cv::FONT_HERSHEY_SIMPLEX, 0.4, 1, &base);
    cv::putText(view, label, cv::Point(p.x - ts.width / 2, p.y + ts.height / 2), cv::FONT_HERSHEY_SIMPLEX, 0.4,
                cv::Scalar(0, 0, 0), 1, cv::LINE_AA);
  }

  if (glimpses.defined()) {
    const int top = image_rect.y + ih + gap;
    for (std::int64_t t = 0; t < steps; ++t) {
      const int y = top + static_cast<int>(t) * (side + gap);
      cv::putText(canvas, std::to_string(t + 1), cv::Point(gap, y + side / 2 + 5), cv::FONT_HERSHEY_SIMPLEX, 0.45,
                  step_colour(t, steps), 1, cv::LINE_AA);
      for (std::int64_t j = 0; j < k; ++j) {
        cv::Mat patch;
        cv::resize(to_bgr(glimpses[t][j]), patch, cv::Size(side, side), 0, 0, cv::INTER_NEAREST);
        patch.copyTo(canvas(cv::Rect(gap + 28 + static_cast<int>(j) * (side + gap), y, side, side)));
      }
    }
  }
  return canvas;
}

}  // namespace attend::vision
