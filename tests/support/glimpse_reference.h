#pragma once
/// Slow reference retina: per sample, per scale, per channel, a cv::Mat ROI of the
/// zero-padded image resized with cv::resize(INTER_AREA). Exact when every patch
/// corner and side is a whole number of pixels after nearest-neighbour upsampling
/// by `upsample` (which preserves area averages), so sub-pixel locations can be
/// checked too.

#include <attend/vision/glimpse.h>

#include <torch/torch.h>

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include <cmath>
#include <stdexcept>

namespace attend::testing {

inline torch::Tensor reference_glimpses(const torch::Tensor& images, const torch::Tensor& locations,
                                        const vision::RetinaOptions& o, int upsample = 1) {
  const auto b = images.size(0), c = images.size(1), h = images.size(2), w = images.size(3);
  const auto g = o.size(), k = o.scales();
  auto out = torch::zeros({b, k, c, g, g});
  const auto img = images.to(torch::kFloat32).contiguous();
  const double coarsest = g * std::pow(o.ratio(), k - 1);
  const int pad = static_cast<int>(std::ceil(coarsest * upsample)) + 2;
  for (std::int64_t i = 0; i < b; ++i) {
    for (std::int64_t ch = 0; ch < c; ++ch) {
      cv::Mat plane(static_cast<int>(h), static_cast<int>(w), CV_32F, img[i][ch].data_ptr<float>());
      cv::Mat big;
      cv::resize(plane, big, cv::Size(), upsample, upsample, cv::INTER_NEAREST);
      cv::Mat padded;
      cv::copyMakeBorder(big, padded, pad, pad, pad, pad, cv::BORDER_CONSTANT, cv::Scalar(0));
      for (std::int64_t j = 0; j < k; ++j) {
        const auto box = vision::patch_box(locations[i][0].item<double>(), locations[i][1].item<double>(), h, w, o, j);
        const double x0 = box.x0 * upsample, y0 = box.y0 * upsample, side = box.side * upsample;
        if (std::abs(x0 - std::round(x0)) > 1e-9 || std::abs(y0 - std::round(y0)) > 1e-9 ||
            std::abs(side - std::round(side)) > 1e-9) {
          throw std::invalid_argument("reference_glimpses: patch corners must be whole upsampled pixels");
        }
        const cv::Rect roi(static_cast<int>(std::lround(x0)) + pad, static_cast<int>(std::lround(y0)) + pad,
                           static_cast<int>(std::lround(side)), static_cast<int>(std::lround(side)));
        cv::Mat patch;
        cv::resize(padded(roi), patch, cv::Size(static_cast<int>(g), static_cast<int>(g)), 0, 0, cv::INTER_AREA);
        auto dst = out[i][j][ch];
        for (int y = 0; y < g; ++y) {
          for (int x = 0; x < g; ++x) dst[y][x] = patch.at<float>(y, x);
        }
      }
    }
  }
  return out;
}

}  // namespace attend::testing
