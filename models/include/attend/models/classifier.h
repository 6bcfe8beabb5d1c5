#pragma once
/// Models behind one interface, so the training engine, evaluation and the CLI treat
/// every kind alike. `Model` is what every registered kind builds; `Classifier` is
/// the interface of the image classifiers ("ram", "soft", "fc", "cnn"). Kinds are
/// listed, built and loaded through the registry (registry.h).

#include <attend/datasets/source.h>
#include <attend/models/checkpoint.h>
#include <attend/models/observer.h>
#include <attend/vision/glimpse.h>

#include <ATen/core/Generator.h>
#include <torch/nn/module.h>
#include <torch/types.h>

#include <nlohmann/json.hpp>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace attend::models {

class Model {
 public:
  virtual ~Model() = default;
  /// The registered kind that builds this model.
  virtual std::string kind() const = 0;
  /// Complete options that rebuild this model through the registry (input size
  /// included), in a canonical form: rebuilding gives the same JSON.
  virtual nlohmann::json options() const = 0;
  virtual torch::nn::Module& module() = 0;
  /// Generators the model draws from in training besides LibTorch's default one
  /// (e.g. the RAM's location sampler). Training seeds them, and checkpoints save
  /// and restore them by name, so resumed runs draw the same numbers.
  virtual std::map<std::string, at::Generator> generators() { return {}; }
  /// Tells the model which training epoch (0-based, of `epochs`) the following loss
  /// calls belong to, for schedules of its own (the RAM's annealed policy std).
  /// Training calls it before every step; a pure function of its arguments, so
  /// resumed runs follow the same schedule. Like the learning-rate schedule, a run
  /// continued with a larger --epochs stretches it to the new length.
  virtual void set_epoch(std::int64_t /*epoch*/, std::int64_t /*epochs*/) {}
};

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

/// One named step of a network written as a chain (Classifier::stages).
struct Stage {
  std::string name;
  std::function<torch::Tensor(const torch::Tensor&)> run;
};

class Classifier : public Model {
 public:
  virtual std::int64_t channels() const = 0;
  virtual std::int64_t height() const = 0;
  virtual std::int64_t width() const = 0;
  virtual std::int64_t classes() const = 0;
  /// Several classes per image: targets are [B,classes] float (1 = present) and a
  /// class is predicted when its logit is > 0. Otherwise targets are [B] int64.
  virtual bool multi_label() const { return false; }
  /// Training loss on a batch: images [B,C,H,W] float, targets as multi_label() says.
  virtual ClassifierLoss loss(const torch::Tensor& images, const torch::Tensor& targets) = 0;
  /// The training loss of a whole batch; the trainer calls this one. By default
  /// loss(images, labels); models that learn from more than labels (the pixel masks
  /// of object scenes) override it.
  virtual ClassifierLoss loss(const datasets::LabelledBatch& batch) { return loss(batch.images, batch.labels); }
  /// Raw class scores (before softmax) [B,classes] of a deterministic pass (the
  /// policy mean for models that sample where they look).
  virtual torch::Tensor logits(const torch::Tensor& images) = 0;
  /// Class log-probabilities [B,classes]. `samples` is the number of Monte-Carlo
  /// trajectories for stochastic models (0 = deterministic), drawn from `generator`
  /// (default: the model's own); other models ignore both.
  virtual torch::Tensor predict(const torch::Tensor& images, std::int64_t /*samples*/,
                                std::optional<at::Generator> /*generator*/ = std::nullopt) {
    return torch::log_softmax(logits(images), 1);
  }
  /// The glimpse path of a deterministic pass (policy mean), for models that look
  /// through glimpses; std::nullopt for the others.
  virtual std::optional<GlimpseTrace> glimpse_trace(const torch::Tensor& /*images*/) { return std::nullopt; }
  /// For kinds with Capabilities::feature_map: the last feature map [B,K,h,w] before
  /// the head, and the head that turns it into logits: head(features(x)) == logits(x).
  /// throws c10::Error for kinds without one.
  virtual torch::Tensor features(const torch::Tensor& images);
  virtual torch::Tensor head(const torch::Tensor& features);
  /// For kinds with Capabilities::feature_map: the network as a chain of named stages
  /// whose composition is logits(): the first takes the images, each next one the
  /// previous one's output, the last gives the class scores. Every stage but the last
  /// gives a feature map [B,K,h,w] that saliency methods can target (saliency.h).
  /// Default: {"features", features}, {"head", head}.
  virtual std::vector<Stage> stages();
  /// The weights [classes,K] of the head after stage `name` when that head is global
  /// average pooling then one linear layer (what CAM needs); undefined otherwise.
  virtual torch::Tensor cam_weights(const std::string& /*name*/) { return {}; }
};

}  // namespace attend::models
