#include "attend/vision/saliency_render.h"

#include <c10/util/Exception.h>

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>

namespace attend::vision {

namespace {

// In cv::COLORMAP_* order: index == value.
const std::vector<std::string>& names() {
  static const std::vector<std::string> kNames = {
      "autumn", "bone",    "jet",     "winter",   "rainbow",  "ocean",           "summer", "spring",
      "cool",   "hsv",     "pink",    "hot",      "parula",   "magma",           "inferno", "plasma",
      "viridis", "cividis", "twilight", "twilight_shifted", "turbo", "deepgreen"};
  return kNames;
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string joined(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : ", ") + s;
  return out;
}

std::string size_str(const cv::Size& s) { return std::to_string(s.width) + "x" + std::to_string(s.height); }

void check_colormap(const char* who, int colormap) {
  TORCH_CHECK(colormap >= 0 && colormap < static_cast<int>(names().size()), who,
              ": expected a cv::COLORMAP_* value in 0..", names().size() - 1, ", got ", colormap);
}

constexpr int kBackground = 32;

// The image as an owning BGR CV_8UC3 copy.
cv::Mat to_bgr(const cv::Mat& image, ColourOrder order) {
  cv::Mat bgr;
  if (image.channels() == 1) {
    cv::cvtColor(image, bgr, cv::COLOR_GRAY2BGR);
  } else if (order == ColourOrder::kRgb) {
    cv::cvtColor(image, bgr, cv::COLOR_RGB2BGR);
  } else {
    bgr = image.clone();
  }
  return bgr;
}

// The colormap's colours (BGR) for levels 255 at the top down to 0 at the bottom,
// `height` rows of `width` pixels.
cv::Mat colour_bar_column(int height, int width, int colormap) {
  cv::Mat levels(height, 1, CV_8UC1);
  for (int y = 0; y < height; ++y) {
    levels.at<std::uint8_t>(y, 0) =
        height == 1 ? 255 : static_cast<std::uint8_t>(std::lround(255.0 * (height - 1 - y) / (height - 1)));
  }
  cv::Mat coloured, bar;
  cv::applyColorMap(levels, coloured, colormap);
  cv::repeat(coloured, 1, width, bar);
  return bar;
}

// `image` (BGR) with the colour bar strip appended at the right.
cv::Mat append_colour_bar(const cv::Mat& image, int colormap) {
  const int h = image.rows;
  const int bar_w = std::clamp(h / 12, 8, 40);
  const int font = cv::FONT_HERSHEY_SIMPLEX;
  const double scale = std::clamp(h / 480.0, 0.35, 1.0);
  int baseline = 0;
  const auto one = cv::getTextSize("1", font, scale, 1, &baseline);
  const auto zero = cv::getTextSize("0", font, scale, 1, &baseline);
  const int gap = 6, text_gap = 4;
  const int strip = gap + bar_w + text_gap + std::max(one.width, zero.width) + text_gap;
  cv::Mat out(h, image.cols + strip, CV_8UC3, cv::Scalar::all(kBackground));
  image.copyTo(out(cv::Rect(0, 0, image.cols, h)));
  const int bar_x = image.cols + gap;
  colour_bar_column(h, bar_w, colormap).copyTo(out(cv::Rect(bar_x, 0, bar_w, h)));
  const int text_x = bar_x + bar_w + text_gap;
  const cv::Scalar ink = cv::Scalar::all(230);
  cv::putText(out, "1", cv::Point(text_x, one.height + 1), font, scale, ink, 1, cv::LINE_AA);
  cv::putText(out, "0", cv::Point(text_x, h - 2), font, scale, ink, 1, cv::LINE_AA);
  return out;
}

// pytorch-grad-cam's blend on an image already in float32 [0,1] of the heatmap's
// order; `levels` are the truncated map levels. Float32 throughout, like numpy.
cv::Mat grad_cam_blend(const cv::Mat& image01, const cv::Mat& levels, bool use_rgb, int colormap,
                       double image_weight) {
  cv::Mat heat;
  cv::applyColorMap(levels, heat, colormap);
  if (use_rgb) cv::cvtColor(heat, heat, cv::COLOR_BGR2RGB);
  const float heat_weight = static_cast<float>(1.0 - image_weight);  // numpy casts the scalar to float32
  const float weight = static_cast<float>(image_weight);
  cv::Mat cam(image01.size(), CV_32FC3);
  float peak = 0.0f;
  for (int y = 0; y < cam.rows; ++y) {
    const auto* h = heat.ptr<std::uint8_t>(y);
    const auto* im = image01.ptr<float>(y);
    auto* c = cam.ptr<float>(y);
    for (int i = 0; i < cam.cols * 3; ++i) {
      const float heat01 = static_cast<float>(h[i]) / 255.0f;
      const float a = heat_weight * heat01;
      const float b = weight * im[i];
      c[i] = a + b;
      peak = std::max(peak, c[i]);
    }
  }
  cv::Mat out(cam.size(), CV_8UC3);
  for (int y = 0; y < cam.rows; ++y) {
    const auto* c = cam.ptr<float>(y);
    auto* o = out.ptr<std::uint8_t>(y);
    for (int i = 0; i < cam.cols * 3; ++i) {
      // peak == 0 only for a zero blend: the original divides 0 by 0; we give black.
      const float scaled = peak > 0.0f ? c[i] / peak : 0.0f;
      o[i] = static_cast<std::uint8_t>(255.0f * scaled);  // truncation, as np.uint8
    }
  }
  return out;
}

// Truncated levels uint8(255 * m) of a map in [0,1], as numpy computes them.
cv::Mat truncated_levels(const cv::Mat& map01) {
  cv::Mat levels(map01.size(), CV_8UC1);
  for (int y = 0; y < map01.rows; ++y) {
    const auto* m = map01.ptr<float>(y);
    auto* l = levels.ptr<std::uint8_t>(y);
    for (int x = 0; x < map01.cols; ++x) l[x] = static_cast<std::uint8_t>(255.0f * m[x]);
  }
  return levels;
}

}  // namespace

std::vector<std::string> colormap_names() { return names(); }

int colormap_by_name(const std::string& name) {
  const auto key = lower(name);
  const auto& all = names();
  const auto it = std::find(all.begin(), all.end(), key);
  TORCH_CHECK(it != all.end(), "unknown colormap '", name, "'; expected one of: ", joined(all));
  return static_cast<int>(it - all.begin());
}

std::string colormap_name(int colormap) {
  check_colormap("colormap_name", colormap);
  return names()[static_cast<size_t>(colormap)];
}

ColourOrder parse_colour_order(const std::string& name) {
  const auto key = lower(name);
  if (key == "rgb") return ColourOrder::kRgb;
  TORCH_CHECK(key == "bgr", "unknown colour order '", name, "'; expected rgb or bgr");
  return ColourOrder::kBgr;
}

cv::Mat render_saliency(const cv::Mat& image, const cv::Mat& map, const SaliencyRenderOptions& options) {
  TORCH_CHECK(!image.empty() && (image.type() == CV_8UC1 || image.type() == CV_8UC3),
              "render_saliency: expected a non-empty CV_8UC1 or CV_8UC3 image, got ",
              image.empty() ? std::string("an empty Mat") : cv::typeToString(image.type()));
  TORCH_CHECK(map.type() == CV_32FC1, "render_saliency: expected a CV_32FC1 map, got ",
              map.empty() ? std::string("an empty Mat") : cv::typeToString(map.type()));
  TORCH_CHECK(map.size() == image.size(), "render_saliency: expected a map of the image's size ",
              size_str(image.size()), ", got ", size_str(map.size()));
  TORCH_CHECK(options.image_weight() >= 0 && options.image_weight() <= 1,
              "render_saliency: expected image_weight in [0,1], got ", options.image_weight());
  TORCH_CHECK(options.threshold() >= 0 && options.threshold() <= 1,
              "render_saliency: expected threshold in [0,1], got ", options.threshold());
  check_colormap("render_saliency", options.colormap());

  cv::Mat bgr = to_bgr(image, options.input_order());
  cv::Mat map01 = map.clone();
  cv::patchNaNs(map01, 0.0);
  cv::min(cv::max(map01, 0.0), 1.0, map01);

  cv::Mat out;
  if (options.mode() == SaliencyMode::kContour) {
    cv::Mat inside;
    cv::compare(map01, options.threshold(), inside, cv::CMP_GE);
    std::vector<std::vector<cv::Point>> contours;
    cv::findContours(inside, contours, cv::RETR_LIST, cv::CHAIN_APPROX_NONE);
    out = bgr;
    const int thickness = std::max(1, static_cast<int>(std::lround(std::min(out.rows, out.cols) / 200.0)));
    cv::drawContours(out, contours, -1, cv::Scalar(0, 255, 0), thickness, cv::LINE_8);
  } else {
    cv::Mat blended;
    if (options.grad_cam_compatible()) {
      cv::Mat image01(bgr.size(), CV_32FC3);
      for (int y = 0; y < bgr.rows; ++y) {
        const auto* p = bgr.ptr<std::uint8_t>(y);
        auto* f = image01.ptr<float>(y);
        for (int i = 0; i < bgr.cols * 3; ++i) f[i] = static_cast<float>(p[i]) / 255.0f;  // np.float32(img) / 255
      }
      // The maximum is over all channels, so blending in BGR equals blending in RGB.
      blended = grad_cam_blend(image01, truncated_levels(map01), false, options.colormap(), options.image_weight());
    } else {
      cv::Mat levels, heat;
      map01.convertTo(levels, CV_8U, 255.0);  // rounds
      cv::applyColorMap(levels, heat, options.colormap());
      cv::addWeighted(heat, 1.0 - options.image_weight(), bgr, options.image_weight(), 0.0, blended);
    }
    if (options.mode() == SaliencyMode::kThreshold) {
      cv::Mat inside;
      cv::compare(map01, options.threshold(), inside, cv::CMP_GE);
      out = bgr;
      blended.copyTo(out, inside);
    } else {
      out = blended;
    }
  }

  if (!options.label().empty()) burn_label(out, options.label());
  if (options.colour_bar()) out = append_colour_bar(out, options.colormap());
  if (options.output_order() == ColourOrder::kRgb) cv::cvtColor(out, out, cv::COLOR_BGR2RGB);
  return out;
}

cv::Mat show_cam_on_image(const cv::Mat& rgb_float01, const cv::Mat& mask, bool use_rgb, int colormap,
                          double image_weight) {
  TORCH_CHECK(rgb_float01.type() == CV_32FC3 && !rgb_float01.empty(),
              "show_cam_on_image: the input image should be float32 (CV_32FC3) in the range [0, 1], got ",
              rgb_float01.empty() ? std::string("an empty Mat") : cv::typeToString(rgb_float01.type()));
  double lo = 0, hi = 0;
  cv::minMaxIdx(rgb_float01.reshape(1), &lo, &hi);
  TORCH_CHECK(lo >= 0 && hi <= 1, "show_cam_on_image: the input image should be float32 in the range [0, 1], got "
              "values in [", lo, ", ", hi, "]");
  TORCH_CHECK(mask.type() == CV_32FC1, "show_cam_on_image: expected a CV_32FC1 mask, got ",
              mask.empty() ? std::string("an empty Mat") : cv::typeToString(mask.type()));
  TORCH_CHECK(mask.size() == rgb_float01.size(), "show_cam_on_image: expected a mask of the image's size ",
              size_str(rgb_float01.size()), ", got ", size_str(mask.size()));
  cv::minMaxIdx(mask, &lo, &hi);
  TORCH_CHECK(lo >= 0 && hi <= 1, "show_cam_on_image: expected mask values in [0, 1], got values in [", lo, ", ",
              hi, "]");
  TORCH_CHECK(image_weight >= 0 && image_weight <= 1,
              "show_cam_on_image: image_weight should be in the range [0, 1], got ", image_weight);
  check_colormap("show_cam_on_image", colormap);
  return grad_cam_blend(rgb_float01, truncated_levels(mask), use_rgb, colormap, image_weight);
}

cv::Mat tile_grid(const std::vector<cv::Mat>& tiles, int columns, const std::vector<std::string>& captions) {
  TORCH_CHECK(!tiles.empty(), "tile_grid: expected at least one tile, got none");
  TORCH_CHECK(columns >= 1, "tile_grid: expected columns >= 1, got ", columns);
  TORCH_CHECK(captions.empty() || captions.size() == tiles.size(), "tile_grid: expected ", tiles.size(),
              " captions (one per tile) or none, got ", captions.size());
  int cell_w = 0, cell_h = 0;
  for (size_t i = 0; i < tiles.size(); ++i) {
    TORCH_CHECK(!tiles[i].empty() && tiles[i].type() == CV_8UC3, "tile_grid: expected tile ", i,
                " to be a non-empty CV_8UC3 image, got ",
                tiles[i].empty() ? std::string("an empty Mat") : cv::typeToString(tiles[i].type()));
    cell_w = std::max(cell_w, tiles[i].cols);
    cell_h = std::max(cell_h, tiles[i].rows);
  }
  constexpr int kPad = 4, kCaption = 20;
  const int n = static_cast<int>(tiles.size());
  const int cols = std::min(columns, n);
  const int rows = (n + cols - 1) / cols;
  const int caption_h = captions.empty() ? 0 : kCaption;
  const int row_h = cell_h + kPad + caption_h;
  cv::Mat out(kPad + rows * row_h, kPad + cols * (cell_w + kPad), CV_8UC3, cv::Scalar::all(kBackground));
  const int font = cv::FONT_HERSHEY_SIMPLEX;
  const double scale = 0.45;
  for (int i = 0; i < n; ++i) {
    const int x0 = kPad + (i % cols) * (cell_w + kPad), y0 = kPad + (i / cols) * row_h;
    const auto& t = tiles[static_cast<size_t>(i)];
    t.copyTo(out(cv::Rect(x0 + (cell_w - t.cols) / 2, y0, t.cols, t.rows)));
    if (caption_h > 0 && !captions[static_cast<size_t>(i)].empty()) {
      const auto& text = captions[static_cast<size_t>(i)];
      cv::Mat strip = out(cv::Rect(x0, y0 + cell_h, cell_w, caption_h));  // drawing clips to the cell
      int baseline = 0;
      const auto size = cv::getTextSize(text, font, scale, 1, &baseline);
      const int tx = std::max(0, (cell_w - size.width) / 2);
      cv::putText(strip, text, cv::Point(tx, (caption_h + size.height) / 2), font, scale, cv::Scalar::all(230), 1,
                  cv::LINE_AA);
    }
  }
  return out;
}

void burn_label(cv::Mat& image, const std::string& text) {
  TORCH_CHECK(image.type() == CV_8UC1 || image.type() == CV_8UC3,
              "burn_label: expected a CV_8UC1 or CV_8UC3 image, got ", cv::typeToString(image.type()));
  if (text.empty() || image.empty()) return;
  const int font = cv::FONT_HERSHEY_SIMPLEX;
  const double scale = std::clamp(image.cols / 640.0, 0.35, 1.5);
  const int thickness = scale >= 0.9 ? 2 : 1;
  const int pad = std::max(2, static_cast<int>(std::lround(4 * scale)));
  int baseline = 0;
  const auto size = cv::getTextSize(text, font, scale, thickness, &baseline);
  cv::rectangle(image, cv::Rect(0, 0, size.width + 2 * pad, size.height + baseline + 2 * pad), cv::Scalar::all(16),
                cv::FILLED);
  cv::putText(image, text, cv::Point(pad, pad + size.height), font, scale, cv::Scalar::all(255), thickness,
              cv::LINE_AA);
}

}  // namespace attend::vision
