#pragma once
/// The training engine shared by every model: an epoch/step loop that reports to a
/// TrainingObserver, writes checkpoints atomically, resumes where it stopped, keeps
/// the best checkpoint on a monitored evaluation metric, stops early, and stops
/// cleanly on request (e.g. Ctrl-C).
///
/// Resuming is bit-exact when the step function is a pure function of its
/// StepContext, the model, the optimizer and LibTorch's default generator (e.g. a
/// batch chosen from (seed, epoch, step)): the checkpoint restores all of these.

#include <attend/models/checkpoint.h>
#include <attend/models/observer.h>

#include <torch/arg.h>
#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>

#include <atomic>
#include <functional>
#include <string>

namespace attend::models {

struct FitOptions {
  TORCH_ARG(std::int64_t, epochs) = 1;
  TORCH_ARG(std::int64_t, steps_per_epoch) = 1;
  /// Folder for last.pt (resume point) and best.pt; "" keeps no checkpoints.
  TORCH_ARG(std::string, run_dir) = "";
  /// Also write last.pt every this many steps inside an epoch; 0 = epoch ends only.
  TORCH_ARG(std::int64_t, checkpoint_every) = 0;
  /// Continue from run_dir/last.pt when it exists.
  TORCH_ARG(bool, resume) = true;
  /// Evaluation metric that selects best.pt and drives early stopping ("" = none).
  TORCH_ARG(std::string, monitor) = "";
  /// Whether a larger monitored value is better.
  TORCH_ARG(bool, maximize) = true;
  /// Stop after this many epochs without a new best; 0 = never stop early.
  TORCH_ARG(std::int64_t, patience) = 0;
};

struct StepContext {
  std::int64_t epoch = 0;          ///< 0-based
  std::int64_t step_in_epoch = 0;  ///< 0-based
  std::int64_t global_step = 0;    ///< steps done before this one
};

struct StepOutput {
  double loss = 0.0;
  std::int64_t examples = 0;
  Metrics metrics;
};

/// One optimisation step: forward, backward, optimizer.step().
using StepFn = std::function<StepOutput(const StepContext&)>;
/// Evaluation after an epoch; returns named metrics (may be empty).
using EvalFn = std::function<Metrics(std::int64_t epoch)>;

/// Runs the loop. `description` gives the kind and options stored in checkpoints;
/// a resumed run must have the same kind and options.
/// requires: epochs >= 1, steps_per_epoch >= 1, checkpoint_every >= 0, patience >= 0;
///           monitor set only with an eval function.
/// throws c10::Error for bad options; attend::IoError for checkpoint problems;
///        whatever the step or eval function throws.
FitSummary fit(torch::nn::Module& model, torch::optim::Optimizer& optimizer, const CheckpointInfo& description,
               const FitOptions& options, const StepFn& step, const EvalFn& eval = nullptr,
               TrainingObserver* observer = nullptr, const std::atomic<bool>* stop = nullptr);

}  // namespace attend::models
