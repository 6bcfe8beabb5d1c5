#pragma once
/// Image classifiers behind one interface, so the training engine, evaluation and
/// the CLI treat the RAM and its comparison networks alike. Kinds: "ram", "soft"
/// (soft-glimpse recurrent classifier), "fc", "cnn".

#include <attend/models/baselines.h>
#include <attend/models/checkpoint.h>
#include <attend/models/observer.h>
#include <attend/models/ram.h>
#include <attend/models/soft_glimpse_net.h>

#include <torch/nn/module.h>
#include <torch/types.h>

#include <nlohmann/json.hpp>

#include <memory>
#include <optional>
#include <string>

namespace attend::models {

/// What a training step optimises, plus metrics for the progress display.
struct ClassifierLoss {
  torch::Tensor total;  ///< scalar to differentiate
  Metrics metrics;      ///< e.g. accuracy, and for the RAM each loss term
};

/// Where a glimpse-based model looked, for drawing.
struct GlimpseTrace {
  torch::Tensor locations;      ///< [B,T,2] in [-1,1]
  torch::Tensor glimpses;       ///< [B,T,k,C,g,g] what the glimpses saw
  vision::RetinaOptions retina; ///< the retina that produced them (k = 1, g = N for soft glimpses)
  torch::Tensor sides;          ///< [B,T] region side in pixels when it varies (soft glimpses), else undefined
};

class Classifier {
 public:
  virtual ~Classifier() = default;
  virtual std::string kind() const = 0;
  /// Options that rebuild this classifier with make_classifier (input size included).
  virtual nlohmann::json options() const = 0;
  virtual torch::nn::Module& module() = 0;
  virtual std::int64_t channels() const = 0;
  virtual std::int64_t height() const = 0;
  virtual std::int64_t width() const = 0;
  virtual std::int64_t classes() const = 0;
  /// Training loss on a batch: images [B,C,H,W] float, targets [B] int64.
  virtual ClassifierLoss loss(const torch::Tensor& images, const torch::Tensor& targets) = 0;
  /// Tells the model which training epoch (0-based, of `epochs`) the following loss
  /// calls belong to, for schedules of its own (the RAM's annealed policy std).
  /// Training calls it before every step; a pure function of its arguments, so
  /// resumed runs follow the same schedule. Like the learning-rate schedule, a run
  /// continued with a larger --epochs stretches it to the new length.
  virtual void set_epoch(std::int64_t /*epoch*/, std::int64_t /*epochs*/) {}
  /// Class log-probabilities [B,classes]. `samples` is the number of Monte-Carlo
  /// trajectories for stochastic models (0 = deterministic); others ignore it.
  virtual torch::Tensor predict(const torch::Tensor& images, std::int64_t samples) = 0;
  /// The glimpse path of a deterministic pass (policy mean), for models that look
  /// through glimpses; std::nullopt for the others.
  virtual std::optional<GlimpseTrace> glimpse_trace(const torch::Tensor& /*images*/) { return std::nullopt; }
};

/// Builds a classifier of `kind` from its options JSON (as stored in checkpoints).
/// For "ram", extra JSON keys "height" and "width" give the input size and
/// "reinforce_weight" the lambda of the hybrid loss.
/// throws c10::Error for an unknown kind or bad options.
std::unique_ptr<Classifier> make_classifier(const std::string& kind, const nlohmann::json& options);

/// Rebuilds the classifier stored in a checkpoint and loads its weights.
/// throws attend::IoError naming the path for unreadable files or unknown kinds.
std::unique_ptr<Classifier> load_classifier(const std::string& path, CheckpointInfo* info = nullptr);

}  // namespace attend::models
