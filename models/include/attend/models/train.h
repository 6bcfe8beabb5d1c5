#pragma once
/// Training and evaluation of image classifiers on the shared engine (fit):
/// Adam or SGD with momentum, a learning-rate schedule, gradient clipping,
/// seeded shuffling, best-on-validation checkpoint, early stop, resume.

#include <attend/datasets/source.h>
#include <attend/models/classifier.h>
#include <attend/models/enum_names.h>
#include <attend/models/trainer.h>

#include <torch/arg.h>

#include <atomic>
#include <memory>
#include <optional>
#include <string>

namespace attend::models {

enum class OptimizerKind { kAdam, kSgd };
enum class Schedule { kConstant, kStep, kCosine };

template <>
struct EnumNames<OptimizerKind> {
  static constexpr const char* what = "optimizer";
  static constexpr std::pair<OptimizerKind, const char*> names[] = {{OptimizerKind::kAdam, "adam"},
                                                                    {OptimizerKind::kSgd, "sgd"}};
};
template <>
struct EnumNames<Schedule> {
  static constexpr const char* what = "schedule";
  static constexpr std::pair<Schedule, const char*> names[] = {
      {Schedule::kConstant, "constant"}, {Schedule::kStep, "step"}, {Schedule::kCosine, "cosine"}};
};

struct TrainOptions {
  TORCH_ARG(std::int64_t, epochs) = 10;
  TORCH_ARG(std::int64_t, batch_size) = 128;
  TORCH_ARG(OptimizerKind, optimizer) = OptimizerKind::kAdam;  ///< SGD has momentum
  TORCH_ARG(double, lr) = 1e-3;
  TORCH_ARG(double, momentum) = 0.9;                ///< SGD only
  TORCH_ARG(double, weight_decay) = 0.0;
  TORCH_ARG(Schedule, schedule) = Schedule::kConstant;
  TORCH_ARG(std::int64_t, step_epochs) = 10;        ///< kStep: decay every this many epochs
  TORCH_ARG(double, gamma) = 0.1;                   ///< kStep: decay factor
  TORCH_ARG(double, clip_norm) = 0.0;               ///< max gradient norm; 0 = no clipping
  TORCH_ARG(std::int64_t, patience) = 0;            ///< early stop; 0 = never
  TORCH_ARG(std::int64_t, eval_samples) = 0;        ///< MC trajectories in validation (RAM)
  TORCH_ARG(std::uint64_t, seed) = 1;               ///< shuffling and model generators
  TORCH_ARG(std::string, run_dir) = "";
  TORCH_ARG(bool, resume) = true;
  TORCH_ARG(std::int64_t, checkpoint_every) = 0;
  /// Skip steps whose loss or gradient is not finite instead of stopping (see
  /// FitOptions::skip_nonfinite).
  TORCH_ARG(bool, skip_nonfinite) = false;

 public:
  /// throws c10::Error naming the first value out of range or not finite.
  void validate() const;
  /// The checkpoint's training part (run_dir, resume, checkpoint_every and
  /// skip_nonfinite are where and how, not what, and are left out).
  nlohmann::json to_json() const;
};

/// Learning rate of `epoch` (0-based) under the options' schedule.
double scheduled_lr(const TrainOptions& options, std::int64_t epoch);

/// The options' optimizer (Adam, or SGD with momentum) over `parameters`.
std::unique_ptr<torch::optim::Optimizer> make_optimizer(const std::vector<torch::Tensor>& parameters,
                                                        const TrainOptions& options);

/// Seeds the model's own generators from the training seed (a fresh start; resuming
/// restores their state) and adds them to `hooks` so checkpoints carry them.
void seed_model_generators(Model& model, std::uint64_t seed, FitHooks& hooks);

/// Trains `classifier` on `train`; when `validation` is given, evaluates on it after
/// every epoch ("accuracy", "nll"), keeps run_dir/best.pt on it and applies
/// patience. `data` (a DataSpec's JSON, or {} when the data has no description) is
/// the checkpoints' data part. On a fresh start the model's own generators are
/// seeded from options.seed. `hooks` join the engine (its generators are added to
/// the model's).
FitSummary train_classifier(Classifier& classifier, const datasets::ImageSource& train,
                            const datasets::ImageSource* validation, const TrainOptions& options,
                            const nlohmann::json& data = nlohmann::json::object(),
                            TrainingObserver* observer = nullptr, const std::atomic<bool>* stop = nullptr,
                            FitHooks hooks = {});

struct EvalResult {
  std::int64_t count = 0;
  /// Single-label: fraction of images whose top class is right. Multi-label: fraction
  /// of images whose predicted set of classes (logit > 0) is exactly the true set.
  double accuracy = 0.0;
  /// Mean negative log-likelihood per image (multi-label: summed over the classes'
  /// binary decisions).
  double nll = 0.0;
  /// Single-label: [classes,classes] int64, row = true class, column = predicted.
  /// Multi-label: [classes,3] int64 per class: true positives, false positives, false
  /// negatives.
  torch::Tensor confusion;
  bool multi_label = false;
};

/// Accuracy and confusion counts over all of `source` (epoch 0), in batches, without
/// gradients, in evaluation mode (the previous mode is restored). samples and
/// generator: see Classifier::predict.
/// throws c10::Error when the source's images or labels do not fit the classifier.
EvalResult evaluate_classifier(Classifier& classifier, const datasets::ImageSource& source, std::int64_t samples,
                               std::int64_t batch_size = 256,
                               std::optional<at::Generator> generator = std::nullopt);

}  // namespace attend::models
