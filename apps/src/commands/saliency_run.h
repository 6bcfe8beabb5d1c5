#pragma once
// The work behind `attend saliency`, once its options are parsed: overlays of image
// files, videos, the benchmark and the faithfulness metrics.

#include "../cli.h"
#include "../image_files.h"

#include <attend/datasets/data_spec.h>
#include <attend/models/saliency.h>
#include <attend/vision/saliency_render.h>

#include <opencv2/core/mat.hpp>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

namespace attend::cli {

enum class VideoNormalise { kFrame, kRunning, kGlobal };

struct SaliencyRun {
  std::unique_ptr<models::SaliencyModel> model;
  /// The object scenes a checkpoint was trained on (metrics without inputs), or null.
  std::shared_ptr<datasets::DataSpec> scenes;
  bool multi_label = false;  ///< class probabilities are sigmoids, not a softmax
  bool rgb = true;           ///< the model takes RGB (else BGR) channels
  bool captioner = false;    ///< the classes are a captioner's words (the first 4 are special tokens)
  std::int64_t channels = 3, input_height = 224, input_width = 224, classes = 0;

  std::vector<models::SaliencyMethod> methods;
  std::vector<std::string> layers;  ///< {} = the model's default
  std::int64_t target_class = -1;   ///< -1 = the top classes
  std::int64_t top_k = 0;           ///< 0 = the top class
  bool aug_smooth = false;
  std::int64_t score_batch = 8, batch = 8;

  vision::SaliencyRenderOptions render;
  bool npy = false;
  VideoNormalise normalise = VideoNormalise::kFrame;
  double smooth = 0.0;
  std::string video_extension = ".avi";
  double fps = 25.0;  ///< frames per second of image files taken as a video

  bool benchmark = false, metrics = false, json = false;
  std::int64_t repeats = 10, metric_count = 200;
  std::uint64_t seed = 1;
  std::string out;

  /// BGR (or grey) images of any size -> model inputs [B,C,H,W]: converted to the
  /// model's channels and colour order, resized to its input size, prepared.
  torch::Tensor inputs(const std::vector<cv::Mat>& images) const;
  /// The method's options (layers, batch, smoothing, top-k).
  models::SaliencyOptions options(models::SaliencyMethod method) const;
  /// Targets [B,T] for --class, or undefined (compute_saliency picks the top ones).
  torch::Tensor targets(std::int64_t batch) const;
  /// Class probabilities of logits [B,classes] (softmax, or sigmoids when multi-label).
  torch::Tensor probabilities(const torch::Tensor& logits) const;
  /// The class's name, or its index.
  std::string class_name(std::int64_t c) const;
};

/// Overlays (and .npy maps) of image files into run.out. An image that cannot be read
/// is reported to `bad` and the others are still processed.
void run_images(SaliencyRun& run, const std::vector<std::string>& images, Streams& io, BadInputs& bad);

/// One overlay video per method into run.out, named after `path`, from the video file
/// `path` or, when `frames_from_images` is not empty, from those image files as frames
/// at run.fps (a frame that cannot be read is reported to `bad` and left out; none
/// readable: no video); false when `stop` ended it early (the partial videos are
/// finalised).
/// throws attend::IoError for an unreadable video.
bool run_video(SaliencyRun& run, const std::string& path, Streams& io, const std::atomic<bool>& stop,
               BadInputs& bad, const std::vector<std::string>& frames_from_images = {});

/// ms per frame of the forward pass and of each method, on the first batch of the
/// readable `images` (unreadable ones are reported to `bad`), or a random batch of
/// the model's size when no images are given.
void run_benchmark(SaliencyRun& run, const std::vector<std::string>& images, Streams& io, BadInputs& bad);

/// Faithfulness (deletion/insertion AUC, confidence drop) of each method on the
/// readable `images` (unreadable ones are reported to `bad`; none readable: nothing is
/// measured), or on the checkpoint's test scenes, with the pointing game and mask IoU
/// there.
void run_metrics(SaliencyRun& run, const std::vector<std::string>& images, Streams& io, BadInputs& bad);

}  // namespace attend::cli
