#include "attend/datasets/caption_source.h"

#include <attend/io_error.h>

#include <opencv2/imgproc.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <exception>
#include <mutex>
#include <thread>

namespace attend::datasets {

SceneCaptionSource::SceneCaptionSource(std::shared_ptr<const ObjectSceneGenerator> generator, ObjectSplit split,
                                       std::int64_t count)
    : generator_(std::move(generator)), split_(split), count_(count) {
  TORCH_CHECK(generator_ != nullptr, "SceneCaptionSource: no generator");
  TORCH_CHECK(count_ >= 1, "SceneCaptionSource: the ", to_string(split_), " split needs at least 1 scene, got ",
              count_);
}

CaptionItems SceneCaptionSource::get(const std::vector<std::int64_t>& indices, std::int64_t epoch) const {
  const auto b = static_cast<std::int64_t>(indices.size());
  const auto s = height(), c = channels();
  CaptionItems out;
  out.images = torch::empty({b, c, s, s}, torch::kFloat32);
  out.targets.resize(indices.size());
  // Validation and test scenes are fixed; training scenes change every epoch.
  const auto drawn_epoch = split_ == ObjectSplit::kTrain ? epoch : 0;
  for (std::int64_t i = 0; i < b; ++i) {
    const auto index = indices[static_cast<size_t>(i)];
    TORCH_CHECK(index >= 0 && index < count_, "SceneCaptionSource: index ", index, " out of range for ", count_,
                " scenes");
    const auto scene = generator_->generate(split_, index, drawn_epoch);
    auto image = scene.image.to(torch::kFloat32).div_(255);
    out.images[i].copy_(c == 3 ? image.permute({2, 0, 1}) : image.unsqueeze(0));
    auto& t = out.targets[static_cast<size_t>(i)];
    t.name = std::string(to_string(split_)) + "/" + std::to_string(index);
    t.references = scene.captions;
    for (const auto& ob : scene.objects) t.objects.push_back({ob.word, ob.bbox});
    if (scene.relation) t.relation = SceneRelation{scene.relation->subject, scene.relation->object,
                                                   scene.relation->predicate};
  }
  return out;
}

CaptionImageShape probe_caption_image(const CaptionImage& image) {
  const auto mat = read_caption_image(image, cv::IMREAD_UNCHANGED);
  CaptionImageShape shape;
  shape.channels = mat.channels() == 1 ? 1 : 3;
  shape.height = mat.rows;
  shape.width = mat.cols;
  return shape;
}

FileCaptionSource::FileCaptionSource(const CaptionSet& set, const std::string& split, CaptionImageShape shape,
                                     int threads)
    : shape_(shape) {
  TORCH_CHECK(shape.channels == 1 || shape.channels == 3, "FileCaptionSource: channels must be 1 or 3");
  TORCH_CHECK(shape.height >= 1 && shape.width >= 1, "FileCaptionSource: invalid image size");
  const auto images = set.split(split);
  TORCH_CHECK(!images.empty(), "the caption file ", set.json_path, " has no '", split, "' images");
  const auto n = static_cast<std::int64_t>(images.size());
  pixels_ = torch::empty({n, shape.channels, shape.height, shape.width}, torch::kUInt8);
  targets_.resize(images.size());
  std::atomic<std::int64_t> next{0}, converted{0}, resized{0};
  std::exception_ptr failure;
  std::mutex failure_mutex;
  auto work = [&] {
    for (std::int64_t i = next++; i < n; i = next++) {
      try {
        const auto& entry = *images[static_cast<size_t>(i)];
        auto mat = read_caption_image(entry, cv::IMREAD_UNCHANGED);
        if (mat.depth() != CV_8U) {
          // 16-bit PNGs and the like: scale to 8 bits.
          cv::Mat eight;
          double max_value = 0;
          cv::minMaxLoc(mat.reshape(1), nullptr, &max_value);
          mat.convertTo(eight, CV_8U, max_value > 255 ? 255.0 / 65535.0 : 1.0);
          mat = eight;
        }
        cv::Mat fitted;
        const int have = mat.channels();
        if (shape_.channels == 1) {
          if (have == 1) fitted = mat;
          else cv::cvtColor(mat, fitted, have == 4 ? cv::COLOR_BGRA2GRAY : cv::COLOR_BGR2GRAY);
        } else {
          if (have == 3) cv::cvtColor(mat, fitted, cv::COLOR_BGR2RGB);
          else if (have == 4) cv::cvtColor(mat, fitted, cv::COLOR_BGRA2RGB);
          else cv::cvtColor(mat, fitted, cv::COLOR_GRAY2RGB);
        }
        if ((have == 1) != (shape_.channels == 1)) ++converted;
        const double sx = static_cast<double>(shape_.width) / mat.cols;
        const double sy = static_cast<double>(shape_.height) / mat.rows;
        if (fitted.rows != shape_.height || fitted.cols != shape_.width) {
          cv::Mat small;
          cv::resize(fitted, small, cv::Size(static_cast<int>(shape_.width), static_cast<int>(shape_.height)), 0, 0,
                     cv::INTER_AREA);
          fitted = small;
          ++resized;
        }
        const auto hwc = torch::from_blob(fitted.data, {fitted.rows, fitted.cols, fitted.channels()},
                                          {static_cast<std::int64_t>(fitted.step[0]), fitted.channels(), 1},
                                          torch::kUInt8);
        pixels_[i].copy_(hwc.permute({2, 0, 1}));
        auto& t = targets_[static_cast<size_t>(i)];
        t.name = entry.filename;  // what 'attend score' matches candidates by
        for (const auto& s : entry.sentences) t.references.push_back(s.tokens);
        for (const auto& ob : entry.objects) {
          const auto x0 = static_cast<std::int64_t>(std::lround(ob.bbox[0] * sx));
          const auto y0 = static_cast<std::int64_t>(std::lround(ob.bbox[1] * sy));
          const auto x1 = static_cast<std::int64_t>(std::lround((ob.bbox[0] + ob.bbox[2]) * sx));
          const auto y1 = static_cast<std::int64_t>(std::lround((ob.bbox[1] + ob.bbox[3]) * sy));
          t.objects.push_back({ob.word, {x0, y0, std::max<std::int64_t>(1, x1 - x0), std::max<std::int64_t>(1, y1 - y0)}});
        }
        t.relation = entry.relation;
      } catch (...) {
        std::lock_guard<std::mutex> lock(failure_mutex);
        if (!failure) failure = std::current_exception();
        next = n;
      }
    }
  };
  const int count = std::max(1, std::min<int>(threads, static_cast<int>(n)));
  std::vector<std::thread> pool;
  for (int t = 1; t < count; ++t) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  if (failure) std::rethrow_exception(failure);
  converted_ = converted;
  resized_ = resized;
}

CaptionItems FileCaptionSource::get(const std::vector<std::int64_t>& indices, std::int64_t /*epoch*/) const {
  CaptionItems out;
  std::vector<std::int64_t> rows;
  for (auto i : indices) {
    TORCH_CHECK(i >= 0 && i < size(), "FileCaptionSource: index ", i, " out of range for ", size(), " images");
    out.targets.push_back(targets_[static_cast<size_t>(i)]);
  }
  out.images = pixels_.index_select(0, torch::tensor(indices, torch::kInt64)).to(torch::kFloat32).div_(255);
  return out;
}

}  // namespace attend::datasets
