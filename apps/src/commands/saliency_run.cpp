#include "saliency_run.h"

#include "../report.h"

#include <attend/io_error.h>
#include <attend/models/saliency_metrics.h>
#include <attend/vision/image_io.h>
#include <attend/vision/npy.h>
#include <attend/vision/video.h>

#include <torch/torch.h>

#include <ATen/CPUGeneratorImpl.h>

#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cmath>
#include <chrono>
#include <filesystem>
#include <iomanip>
#include <optional>
#include <sstream>

namespace attend::cli {

namespace am = attend::models;
namespace fs = std::filesystem;
namespace vi = attend::vision;

namespace {

using Clock = std::chrono::steady_clock;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const auto n = v.size();
  return n == 0 ? 0.0 : n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

std::string fixed(double v, int digits) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(digits) << v;
  return out.str();
}

/// A map [H,W] float tensor as a CV_32FC1 Mat resized to `size` (bilinear).
cv::Mat map_to_mat(const torch::Tensor& map, cv::Size size) {
  const auto m = map.to(torch::kFloat32).contiguous();
  cv::Mat small(static_cast<int>(m.size(0)), static_cast<int>(m.size(1)), CV_32FC1,
                const_cast<float*>(m.data_ptr<float>()));
  cv::Mat out;
  if (small.size() == size) return small.clone();
  cv::resize(small, out, size, 0, 0, cv::INTER_LINEAR);
  return out;
}

/// A file-name-safe version of a class name.
std::string safe(const std::string& text) {
  std::string out;
  for (const unsigned char c : text) out += std::isalnum(c) || c == '-' || c == '+' ? static_cast<char>(c) : '_';
  return out;
}

/// Small images are enlarged (by a whole factor, nearest neighbour) to be seen in grids.
cv::Mat grid_tile(const cv::Mat& image) {
  const int side = std::min(image.rows, image.cols);
  if (side >= 160 || side <= 0) return image;
  const int factor = (160 + side - 1) / side;
  cv::Mat out;
  cv::resize(image, out, cv::Size(image.cols * factor, image.rows * factor), 0, 0, cv::INTER_NEAREST);
  return out;
}

}  // namespace

torch::Tensor SaliencyRun::inputs(const std::vector<cv::Mat>& images) const {
  const auto H = input_height, W = input_width;
  auto batch = torch::empty({static_cast<std::int64_t>(images.size()), channels, H, W}, torch::kFloat32);
  for (size_t i = 0; i < images.size(); ++i) {
    cv::Mat m = images[i];
    if (channels == 1 && m.channels() == 3) cv::cvtColor(m, m, cv::COLOR_BGR2GRAY);
    if (channels == 3 && m.channels() == 1) cv::cvtColor(m, m, cv::COLOR_GRAY2BGR);
    if (channels == 3 && rgb) cv::cvtColor(m, m, cv::COLOR_BGR2RGB);
    if (m.rows != H || m.cols != W) {
      cv::Mat resized;
      const bool shrink = m.rows > H || m.cols > W;
      cv::resize(m, resized, cv::Size(static_cast<int>(W), static_cast<int>(H)), 0, 0,
                 shrink ? cv::INTER_AREA : cv::INTER_LINEAR);
      m = resized;
    }
    if (!m.isContinuous()) m = m.clone();
    const auto t = torch::from_blob(m.data, {H, W, channels}, torch::kUInt8);
    batch[static_cast<std::int64_t>(i)].copy_(t.permute({2, 0, 1}).to(torch::kFloat32).div_(255));
  }
  return model->prepare(batch);
}

am::SaliencyOptions SaliencyRun::options(am::SaliencyMethod method) const {
  return am::SaliencyOptions()
      .method(method)
      .layers(layers)
      .batch(score_batch)
      .aug_smooth(aug_smooth)
      .top_k(std::max<std::int64_t>(1, top_k));
}

torch::Tensor SaliencyRun::targets(std::int64_t batch) const {
  if (target_class < 0) return {};
  return torch::full({batch, 1}, target_class, torch::kInt64);
}

torch::Tensor SaliencyRun::probabilities(const torch::Tensor& logits) const {
  return multi_label ? torch::sigmoid(logits) : torch::softmax(logits, 1);
}

std::string SaliencyRun::class_name(std::int64_t c) const {
  const auto names = model->class_names();
  if (c >= 0 && c < static_cast<std::int64_t>(names.size()) && !names[static_cast<size_t>(c)].empty()) {
    return names[static_cast<size_t>(c)];
  }
  return std::to_string(c);
}

void run_images(SaliencyRun& run, const std::vector<std::string>& images, Streams& io, BadInputs& bad) {
  for (size_t begin = 0; begin < images.size(); begin += static_cast<size_t>(run.batch)) {
    std::vector<cv::Mat> mats;
    std::vector<std::string> paths;
    for (size_t i = begin; i < std::min(images.size(), begin + static_cast<size_t>(run.batch)); ++i) {
      try {
        mats.push_back(vi::read_image(images[i]));
        paths.push_back(images[i]);
      } catch (const IoError& e) {
        bad.report(e);
      }
    }
    if (mats.empty()) continue;
    const auto x = run.inputs(mats);
    // Per image: its tiles for the grid.
    std::vector<std::vector<cv::Mat>> tiles(mats.size());
    std::vector<std::vector<std::string>> captions(mats.size());
    std::vector<std::string> lines(mats.size());
    for (const auto method : run.methods) {
      const auto r = am::compute_saliency(*run.model, x, run.targets(x.size(0)), run.options(method));
      const auto probs = run.probabilities(r.logits);
      const auto method_name = std::string(am::enum_name(method));
      for (size_t b = 0; b < mats.size(); ++b) {
        const auto bi = static_cast<std::int64_t>(b);
        const auto stem = fs::path(paths[b]).stem().string();
        for (std::int64_t t = 0; t < r.targets.size(1); ++t) {
          const auto c = r.targets[bi][t].item<std::int64_t>();
          const auto p = probs[bi][c].item<double>();
          const auto label = method_name + ": " + run.class_name(c) + " (p=" + fixed(p, 2) + ")";
          const auto map = map_to_mat(r.maps[bi][t], mats[b].size());
          const auto overlay = vi::render_saliency(mats[b], map, vi::SaliencyRenderOptions(run.render).label(label));
          const auto base = (fs::path(run.out) / (stem + "_" + safe(method_name) + "_" + safe(run.class_name(c))))
                                .string();
          vi::write_image(base + ".png", overlay);
          if (run.npy) {
            vi::write_npy(base + ".npy", r.maps[bi][t]);
            for (size_t l = 0; l < r.raw.size(); ++l) {
              const auto layer = run.layers.empty() ? run.model->default_layer() : run.layers[l];
              vi::write_npy(base + (r.raw.size() == 1 ? "_raw" : "_raw_" + safe(layer)) + ".npy", r.raw[l][bi][t]);
            }
          }
          tiles[b].push_back(grid_tile(vi::render_saliency(mats[b], map, run.render)));
          captions[b].push_back(method_name + " " + run.class_name(c));
          if (method == run.methods.front()) {
            lines[b] += (t == 0 ? "" : ", ") + run.class_name(c) + " (p=" + fixed(p, 3) + ")";
          }
        }
      }
    }
    for (size_t b = 0; b < mats.size(); ++b) {
      const auto stem = fs::path(paths[b]).stem().string();
      io.out << paths[b] << ": " << lines[b];
      if (tiles[b].size() > 1) {
        const auto columns = static_cast<int>(std::min<size_t>(tiles[b].size(), 4));
        const auto grid = (fs::path(run.out) / (stem + "_grid.png")).string();
        vi::write_image(grid, vi::tile_grid(tiles[b], columns, captions[b]));
        io.out << " -> " << grid;
      } else {
        io.out << " -> " << run.out;
      }
      io.out << "\n";
    }
  }
}

namespace {

/// Frames of a video file, or image files taken as frames (resized to the first
/// readable one's size; those that cannot be read are reported to `bad` and left out).
class FrameSource {
 public:
  FrameSource(const std::string& video, std::vector<std::string> images, double fps, BadInputs& bad)
      : images_(std::move(images)), fps_(fps), bad_(bad) {
    if (images_.empty()) {
      reader_ = std::make_unique<vi::VideoReader>(video);
      const auto info = reader_->info();
      size_ = cv::Size(info.width, info.height);
      if (info.fps > 0) fps_ = info.fps;
    } else {
      for (const auto& path : images_) {
        if (const auto m = read_frame(path); !m.empty()) {
          size_ = m.size();
          break;
        }
      }
    }
  }
  cv::Size size() const { return size_; }
  double fps() const { return fps_; }
  std::vector<cv::Mat> next(int n) {
    if (reader_) return reader_->read_batch(n);
    std::vector<cv::Mat> out;
    while (static_cast<int>(out.size()) < n && next_ < images_.size()) {
      auto m = read_frame(images_[next_++]);
      if (m.empty()) continue;
      if (m.size() != size_) cv::resize(m, m, size_, 0, 0, cv::INTER_AREA);
      out.push_back(m);
    }
    return out;
  }

 private:
  cv::Mat read_frame(const std::string& path) {
    try {
      return vi::read_image(path);
    } catch (const IoError& e) {
      bad_.report(e);  // once per file, however many passes read it
      return {};
    }
  }

  std::unique_ptr<vi::VideoReader> reader_;
  std::vector<std::string> images_;
  size_t next_ = 0;
  cv::Size size_;
  double fps_;
  BadInputs& bad_;
};

}  // namespace

bool run_video(SaliencyRun& run, const std::string& path, Streams& io, const std::atomic<bool>& stop,
               BadInputs& bad, const std::vector<std::string>& frames_from_images) {
  if ((run.normalise != VideoNormalise::kFrame || run.smooth > 0) && run.layers.size() > 1) {
    throw UsageError("--normalise running/global and --smooth take one target layer, not " +
                     std::to_string(run.layers.size()));
  }
  const auto started = Clock::now();
  const auto stem = fs::path(path).stem().string();
  const bool custom = run.normalise != VideoNormalise::kFrame || run.smooth > 0;
  const auto M = run.methods.size();
  // Global normalisation: a first pass finds each method's largest value.
  std::vector<double> global_max(M, 0.0);
  auto low_res = [&](size_t m, const am::SaliencyMaps& r, std::vector<torch::Tensor>& previous) {
    // The first layer's raw map after ReLU, smoothed in time: [B,h,w].
    auto raw = torch::relu(r.raw[0].select(1, 0));
    if (run.smooth > 0) {
      for (std::int64_t b = 0; b < raw.size(0); ++b) {
        if (previous[m].defined()) raw[b] = run.smooth * previous[m] + (1 - run.smooth) * raw[b];
        previous[m] = raw[b].clone();
      }
    }
    return raw;
  };
  if (run.normalise == VideoNormalise::kGlobal) {
    FrameSource reader(path, frames_from_images, run.fps, bad);
    std::vector<torch::Tensor> previous(M);
    for (auto frames = reader.next(static_cast<int>(run.batch)); !frames.empty();
         frames = reader.next(static_cast<int>(run.batch))) {
      if (stop.load()) return false;
      const auto x = run.inputs(frames);
      for (size_t m = 0; m < M; ++m) {
        const auto r = am::compute_saliency(*run.model, x, run.targets(x.size(0)), run.options(run.methods[m]));
        global_max[m] = std::max(global_max[m], low_res(m, r, previous).max().item<double>());
      }
    }
  }
  FrameSource reader(path, frames_from_images, run.fps, bad);
  const auto size = reader.size();
  if (size.empty()) return true;  // no frame could be read (each was reported)
  const double fps = reader.fps();
  std::vector<std::unique_ptr<vi::VideoWriter>> writers;
  for (const auto method : run.methods) {
    const auto target = (fs::path(run.out) / (stem + "_" + safe(am::enum_name(method)) + run.video_extension)).string();
    writers.push_back(std::make_unique<vi::VideoWriter>(target, fps, size));
  }
  std::vector<double> running_max(M, 0.0);
  std::vector<torch::Tensor> previous(M);
  std::int64_t frames_done = 0;
  bool complete = true;
  for (auto frames = reader.next(static_cast<int>(run.batch)); !frames.empty();
       frames = reader.next(static_cast<int>(run.batch))) {
    if (stop.load()) {
      complete = false;
      break;
    }
    const auto x = run.inputs(frames);
    for (size_t m = 0; m < M; ++m) {
      const auto r = am::compute_saliency(*run.model, x, run.targets(x.size(0)), run.options(run.methods[m]));
      const auto probs = run.probabilities(r.logits);
      torch::Tensor maps;  // [B,h,w] or [B,H,W] in [0,1]
      if (!custom) {
        maps = r.maps.select(1, 0);
      } else {
        auto raw = low_res(m, r, previous);
        if (run.normalise == VideoNormalise::kFrame) {
          maps = am::postprocess_maps(raw, 0, 0);
        } else {
          for (std::int64_t b = 0; b < raw.size(0); ++b) {
            double scale = global_max[m];
            if (run.normalise == VideoNormalise::kRunning) {
              running_max[m] = std::max(running_max[m], raw[b].max().item<double>());
              scale = running_max[m];
            }
            raw[b] = raw[b] / (scale + 1e-7);
          }
          maps = raw.clamp(0, 1);
        }
      }
      for (size_t b = 0; b < frames.size(); ++b) {
        const auto bi = static_cast<std::int64_t>(b);
        const auto c = r.targets[bi][0].item<std::int64_t>();
        const auto label = std::string(am::enum_name(run.methods[m])) + ": " + run.class_name(c) +
                           " (p=" + fixed(probs[bi][c].item<double>(), 2) + ")";
        writers[m]->write(vi::render_saliency(frames[b], map_to_mat(maps[bi], frames[b].size()),
                                              vi::SaliencyRenderOptions(run.render).label(label).colour_bar(false)));
      }
    }
    frames_done += static_cast<std::int64_t>(frames.size());
  }
  for (auto& w : writers) w->close();
  const double seconds = std::chrono::duration<double>(Clock::now() - started).count();
  io.out << path << ": " << frames_done << " frames " << size.width << "x" << size.height << " at " << fixed(fps, 2)
         << " fps, " << fixed(frames_done / std::max(seconds, 1e-9), 1) << " frames/s"
         << (complete ? "" : " (interrupted)") << " ->";
  for (const auto& w : writers) io.out << " " << w->path();
  io.out << "\n";
  return complete;
}

void run_benchmark(SaliencyRun& run, const std::vector<std::string>& images, Streams& io, BadInputs& bad) {
  torch::Tensor x;
  if (!images.empty()) {
    std::vector<cv::Mat> mats;
    for (size_t i = 0; i < images.size() && static_cast<std::int64_t>(mats.size()) < run.batch; ++i) {
      try {
        mats.push_back(vi::read_image(images[i]));
      } catch (const IoError& e) {
        bad.report(e);
      }
    }
    if (mats.empty()) return;  // none could be read (each was reported)
    x = run.inputs(mats);
  } else {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(run.seed);
    x = run.model->prepare(torch::rand({run.batch, run.channels, run.input_height, run.input_width}, gen));
  }
  const auto B = static_cast<double>(x.size(0));
  auto time_ms = [&](const std::function<void()>& f) {
    f();  // warm-up
    std::vector<double> ms;
    for (std::int64_t i = 0; i < run.repeats; ++i) {
      const auto t0 = Clock::now();
      f();
      ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count() / B);
    }
    return median(ms);
  };
  const double forward = time_ms([&] { run.model->logits(x); });
  nlohmann::json report = {{"model", run.model->describe()},
                           {"batch", x.size(0)},
                           {"input", {x.size(1), x.size(2), x.size(3)}},
                           {"threads", at::get_num_threads()},
                           {"repeats", run.repeats},
                           {"forward_ms_per_frame", forward}};
  io.out << run.model->describe() << ": batches of " << x.size(0) << " inputs " << x.size(1) << "x" << x.size(2)
         << "x" << x.size(3) << ", median of " << run.repeats << ", " << at::get_num_threads() << " threads\n";
  io.out << "  " << std::left << std::setw(10) << "forward" << std::right << std::setw(10) << fixed(forward, 2)
         << " ms/frame\n";
  nlohmann::json methods = nlohmann::json::object();
  for (const auto method : run.methods) {
    const double ms = time_ms([&] { am::compute_saliency(*run.model, x, run.targets(x.size(0)), run.options(method)); });
    methods[am::enum_name(method)] = {{"ms_per_frame", ms}, {"forward_ratio", ms / forward}};
    io.out << "  " << std::left << std::setw(10) << am::enum_name(method) << std::right << std::setw(10)
           << fixed(ms, 2) << " ms/frame  " << fixed(ms / forward, 2) << "x forward\n";
  }
  report["methods"] = methods;
  if (run.json) io.out << report.dump(2) << "\n";
}

}  // namespace attend::cli

namespace attend::cli {

namespace {

/// Inputs, targets and (for scenes) masks of the metrics' examples.
struct MetricSet {
  torch::Tensor inputs;   ///< [N,C,H,W] model inputs
  torch::Tensor targets;  ///< [N] int64
  torch::Tensor masks;    ///< [N,H,W] bool, or undefined
  std::string what;
};

MetricSet scene_examples(SaliencyRun& run) {
  const auto generator = run.scenes->object_generator();
  const auto S = generator->options().canvas();
  if (S != run.input_height || S != run.input_width) {
    throw UsageError("--metrics: the checkpoint's scenes are " + std::to_string(S) + "x" + std::to_string(S) +
                     " but the model takes " + std::to_string(run.input_height) + "x" + std::to_string(run.input_width));
  }
  std::vector<torch::Tensor> images, masks;
  std::vector<std::int64_t> targets;
  // One example per object: the scene, the object's class, and where that class is.
  for (std::int64_t i = 0; i < run.metric_count; ++i) {
    const auto scene = generator->generate(datasets::ObjectSplit::kTest, i, 0);
    auto image = scene.image.to(torch::kFloat32).div(255);
    image = image.dim() == 3 ? image.permute({2, 0, 1}) : image.unsqueeze(0);
    std::vector<std::int64_t> seen;
    for (const auto& ob : scene.objects) {
      if (std::find(seen.begin(), seen.end(), ob.label) != seen.end()) continue;
      seen.push_back(ob.label);
      images.push_back(image);
      masks.push_back(scene.labels == static_cast<std::uint8_t>(ob.label + 1));
      targets.push_back(ob.label);
    }
  }
  MetricSet set;
  set.inputs = run.model->prepare(torch::stack(images));
  set.masks = torch::stack(masks);
  set.targets = torch::tensor(targets, torch::kInt64);
  set.what = std::to_string(run.metric_count) + " test scenes of the checkpoint's data (" +
             std::to_string(targets.size()) + " objects, each explained for its class)";
  return set;
}

/// The readable images' examples; none (an undefined inputs tensor) when no image
/// could be read.
MetricSet image_examples(SaliencyRun& run, const std::vector<std::string>& images, BadInputs& bad) {
  std::vector<cv::Mat> mats;
  for (const auto& path : images) {
    try {
      mats.push_back(vi::read_image(path));
    } catch (const IoError& e) {
      bad.report(e);
    }
  }
  MetricSet set;
  if (mats.empty()) return set;
  set.inputs = run.inputs(mats);
  if (run.target_class >= 0) {
    set.targets = torch::full({set.inputs.size(0)}, run.target_class, torch::kInt64);
  } else {
    set.targets = run.model->logits(set.inputs).argmax(1);
  }
  set.what = std::to_string(mats.size()) + " images, each explained for " +
             (run.target_class >= 0 ? "class " + run.class_name(run.target_class) : std::string("its top class"));
  return set;
}

}  // namespace

void run_metrics(SaliencyRun& run, const std::vector<std::string>& images, Streams& io, BadInputs& bad) {
  if (images.empty() && !run.scenes) {
    throw UsageError("--metrics needs images, or a checkpoint trained on object scenes (then its test scenes are used)");
  }
  const auto set = images.empty() ? scene_examples(run) : image_examples(run, images, bad);
  if (!set.inputs.defined()) return;  // no image could be read (each was reported)
  const auto N = set.inputs.size(0);
  // The pointing game's tolerance: Zhang et al.'s 15 pixels on 224-pixel images, scaled.
  const double tolerance =
      15.0 / 224.0 * static_cast<double>(std::min(set.inputs.size(2), set.inputs.size(3)));
  const auto perturb = am::PerturbationOptions().multi_label(run.multi_label).batch(std::max<std::int64_t>(run.batch, 64));
  io.out << "saliency metrics on " << set.what << "\n";
  io.out << "  " << std::left << std::setw(10) << "method" << std::right << std::setw(11) << "deletion" << std::setw(11)
         << "insertion" << std::setw(9) << "drop %" << std::setw(12) << "increase %";
  if (set.masks.defined()) io.out << std::setw(11) << "pointing %" << std::setw(14) << "IoU (thresh)";
  io.out << "\n";
  nlohmann::json report = {{"model", run.model->describe()}, {"examples", N}, {"what", set.what}};
  nlohmann::json rows = nlohmann::json::object();
  for (const auto method : run.methods) {
    std::vector<torch::Tensor> maps;
    for (std::int64_t b = 0; b < N; b += run.batch) {
      const auto e = std::min(N, b + run.batch);
      const auto r = am::compute_saliency(*run.model, set.inputs.slice(0, b, e), set.targets.slice(0, b, e).unsqueeze(1),
                                          run.options(method));
      maps.push_back(r.maps.select(1, 0));
    }
    const auto m = torch::cat(maps);
    const auto deletion = am::deletion_curves(*run.model, set.inputs, m, set.targets, perturb);
    const auto insertion = am::insertion_curves(*run.model, set.inputs, m, set.targets, perturb);
    const auto change = am::confidence_change(*run.model, set.inputs, m, set.targets, run.multi_label, perturb.batch());
    nlohmann::json row = {{"deletion_auc", deletion.auc.mean().item<double>()},
                          {"insertion_auc", insertion.auc.mean().item<double>()},
                          {"average_drop_percent", am::average_drop(change)},
                          {"increase_percent", am::increase_in_confidence(change)}};
    io.out << "  " << std::left << std::setw(10) << am::enum_name(method) << std::right << std::setw(11)
           << fixed(row["deletion_auc"].get<double>(), 3) << std::setw(11)
           << fixed(row["insertion_auc"].get<double>(), 3) << std::setw(9)
           << fixed(row["average_drop_percent"].get<double>(), 1) << std::setw(12)
           << fixed(row["increase_percent"].get<double>(), 1);
    if (set.masks.defined()) {
      const auto hits = am::pointing_game(m, set.masks, tolerance);
      const auto sweep = am::best_threshold_iou(m, set.masks);
      row["pointing_percent"] = 100.0 * hits.to(torch::kFloat64).mean().item<double>();
      row["iou"] = sweep.mean_iou;
      row["iou_threshold"] = sweep.threshold;
      io.out << std::setw(11) << fixed(row["pointing_percent"].get<double>(), 1) << std::setw(8)
             << fixed(sweep.mean_iou, 3) << " (" << fixed(sweep.threshold, 2) << ")";
    }
    io.out << "\n";
    rows[am::enum_name(method)] = row;
  }
  report["methods"] = rows;
  if (set.masks.defined()) {
    // Chance for the pointing game: the share of the image within the tolerance of a
    // target's mask (a uniformly random point's hit rate).
    const auto r = static_cast<std::int64_t>(std::floor(tolerance));
    auto disk = torch::zeros({1, 1, 2 * r + 1, 2 * r + 1}, torch::kFloat32);
    for (std::int64_t dy = -r; dy <= r; ++dy) {
      for (std::int64_t dx = -r; dx <= r; ++dx) {
        if (static_cast<double>(dx * dx + dy * dy) <= tolerance * tolerance) disk[0][0][dy + r][dx + r] = 1;
      }
    }
    const auto near = torch::conv2d(set.masks.unsqueeze(1).to(torch::kFloat32), disk, {}, 1, r) > 0;
    const auto covered = near.to(torch::kFloat64).mean({1, 2, 3}).mean().item<double>();
    report["pointing_tolerance_pixels"] = tolerance;
    report["pointing_chance_percent"] = 100.0 * covered;
    io.out << "  (deletion: lower is better; pointing: the map's peak within " << fixed(tolerance, 1)
           << " px of the class's pixels, by chance " << fixed(100.0 * covered, 1) << "%)\n";
  } else {
    io.out << "  (deletion: lower is better; the others higher, drop lower)\n";
  }
  if (!run.out.empty()) {
    write_json_file((fs::path(run.out) / "saliency-metrics.json").string(), report);
  }
  if (run.json) io.out << report.dump(2) << "\n";
}

}  // namespace attend::cli
