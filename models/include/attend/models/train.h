#pragma once
/// Training and evaluation of image classifiers on the shared engine (fit):
/// Adam or SGD with momentum, a learning-rate schedule, gradient clipping,
/// seeded shuffling, best-on-validation checkpoint, early stop, resume.

#include <attend/datasets/source.h>
#include <attend/models/classifier.h>
#include <attend/models/trainer.h>

#include <torch/arg.h>

#include <atomic>
#include <string>

namespace attend::models {

struct TrainOptions {
  TORCH_ARG(std::int64_t, epochs) = 10;
  TORCH_ARG(std::int64_t, batch_size) = 128;
  TORCH_ARG(std::string, optimizer) = "adam";      ///< "adam" or "sgd" (with momentum)
  TORCH_ARG(double, lr) = 1e-3;
  TORCH_ARG(double, momentum) = 0.9;                ///< SGD only
  TORCH_ARG(double, weight_decay) = 0.0;
  TORCH_ARG(std::string, schedule) = "constant";    ///< "constant", "step" or "cosine"
  TORCH_ARG(std::int64_t, step_epochs) = 10;        ///< "step": decay every this many epochs
  TORCH_ARG(double, gamma) = 0.1;                   ///< "step": decay factor
  TORCH_ARG(double, clip_norm) = 0.0;               ///< max gradient norm; 0 = no clipping
  TORCH_ARG(std::int64_t, patience) = 0;            ///< early stop; 0 = never
  TORCH_ARG(std::int64_t, eval_samples) = 0;        ///< MC trajectories in validation (RAM)
  TORCH_ARG(std::uint64_t, seed) = 1;               ///< shuffling seed
  TORCH_ARG(std::string, run_dir) = "";
  TORCH_ARG(bool, resume) = true;
  TORCH_ARG(std::int64_t, checkpoint_every) = 0;


 public:
  void validate() const;
  nlohmann::json to_json() const;
};

/// Learning rate of `epoch` (0-based) under the options' schedule.
double scheduled_lr(const TrainOptions& options, std::int64_t epoch);

/// Trains `classifier` on `train`; when `validation` is given, evaluates on it after
/// every epoch ("accuracy"), keeps run_dir/best.pt on it and applies patience.
/// `data` (free JSON describing the data) is stored in the checkpoints' state.
FitSummary train_classifier(Classifier& classifier, const datasets::ImageSource& train,
                            const datasets::ImageSource* validation, const TrainOptions& options,
                            const nlohmann::json& data = nlohmann::json::object(),
                            TrainingObserver* observer = nullptr, const std::atomic<bool>* stop = nullptr);

struct EvalResult {
  std::int64_t count = 0;
  double accuracy = 0.0;
  double nll = 0.0;          ///< mean negative log-likelihood
  torch::Tensor confusion;   ///< [classes,classes] int64: row = true class, column = predicted
};

/// Accuracy and confusion matrix over all of `source` (epoch 0), in batches, without
/// gradients. samples: see Classifier::predict.
EvalResult evaluate_classifier(Classifier& classifier, const datasets::ImageSource& source, std::int64_t samples,
                               std::int64_t batch_size = 256);

}  // namespace attend::models
