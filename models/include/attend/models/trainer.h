#pragma once
/// The training engine shared by every model: an epoch/step loop that reports to a
/// TrainingObserver, writes checkpoints atomically, resumes where it stopped, keeps
/// the best checkpoint on a monitored evaluation metric, stops early, and stops
/// cleanly on request (e.g. Ctrl-C).
///
/// One step: optimizer.zero_grad(); loss = loss_fn(context);
/// hooks.before_backward(loss); hooks.start_reduce_step(...); loss.backward();
/// hooks.reduce_step(...); hooks.after_backward(context); the non-finite check of
/// the loss and the gradients; gradient clipping; optimizer.step().
///
/// A run folder is locked for the run's life (attend::RunFolderLock): a second run on
/// it, in this process or another, fails at once.
///
/// Resuming is bit-exact when the loss function is a pure function of its
/// StepContext, the model, LibTorch's default generator and the generators handed
/// over in FitHooks (e.g. a batch chosen from (seed, epoch, step)): the checkpoint
/// restores all of these and the optimizer.
///
/// Hooks make the loop ready for several processes (data-parallel training): one
/// after backward (all-reduce the gradients), one deciding whether this process
/// writes checkpoints and reports (rank 0), and two through which the stop decision
/// and the evaluation metrics pass (so every process agrees on them).

#include <attend/models/checkpoint.h>
#include <attend/models/observer.h>

#include <torch/arg.h>
#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>

#include <atomic>
#include <functional>
#include <stdexcept>
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
  /// Clip the global gradient norm to this after the after-backward hook; 0 = off.
  TORCH_ARG(double, clip_norm) = 0.0;
  /// A step whose loss or gradient is not finite (nan, inf): false stops the run with
  /// NonFiniteError before the optimizer step, so the parameters and the checkpoints
  /// on disk stay as they were; true skips the step (no optimizer step, the batch
  /// counts as seen) and stops only after kMaxSkippedInARow such steps in a row.
  TORCH_ARG(bool, skip_nonfinite) = false;
};

/// Non-finite steps in a row after which even skip_nonfinite stops the run.
constexpr std::int64_t kMaxSkippedInARow = 100;

/// The loss or a gradient stopped being finite: the run stopped before the step's
/// optimizer update. what() names the step and epoch and what the run folder keeps.
class NonFiniteError : public std::runtime_error {
 public:
  NonFiniteError(const std::string& what, std::int64_t step) : std::runtime_error(what), step_(step) {}
  /// The global step (0-based) that was not finite.
  std::int64_t step() const noexcept { return step_; }

 private:
  std::int64_t step_;
};

struct StepContext {
  std::int64_t epoch = 0;          ///< 0-based
  std::int64_t step_in_epoch = 0;  ///< 0-based
  std::int64_t global_step = 0;    ///< steps done before this one
};

/// What the forward half of a step computed.
struct StepLoss {
  torch::Tensor loss;          ///< scalar to differentiate
  std::int64_t examples = 0;   ///< batch size of this process
  Metrics metrics;             ///< other training metrics of the step
  /// What the loss and the metrics are means over, when that is not the examples:
  /// e.g. the words of a batch of captions. 0 = the examples. Data-parallel training
  /// weights each process's gradients, loss and metrics by it, so that a mean over
  /// words stays the global batch's mean however the words fall on the processes.
  std::int64_t terms = 0;
};

/// The forward half of one step (choose the batch, compute the loss); the engine
/// runs backward, the after-backward hook, clipping and the optimizer step.
using LossFn = std::function<StepLoss(const StepContext&)>;
/// Evaluation after an epoch; returns named metrics (may be empty).
using EvalFn = std::function<Metrics(std::int64_t epoch)>;

/// What the start hook learns once the run folder has been read.
struct StartInfo {
  /// The run's identity: the model, data and training parts that must agree
  /// between processes and with a run folder being continued.
  nlohmann::json identity;
  bool resumed = false;
  std::int64_t global_step = 0;  ///< steps already done
  /// Generators the loss draws from: LibTorch's default one is not among them.
  Generators generators;
  /// What FitHooks::save_state returned when the checkpoint resumed from was written
  /// (null when not resumed, or when that run's hooks kept no state).
  nlohmann::json hook_state;
};

/// Where other code joins the loop. Every member's default suits one process.
struct FitHooks {
  /// After the loss function and before backward, with what it returned (e.g. to
  /// learn the step's weight before gradients arrive).
  std::function<void(const StepLoss&)> before_backward;
  /// Between backward and clipping/optimizer step, e.g. to all-reduce gradients.
  std::function<void(const StepContext&)> after_backward;
  /// Whether this process writes checkpoints (false on every rank but 0 in
  /// data-parallel training). The observer hears every process that has one: give
  /// the other ranks none, or one of their own (a log file).
  bool writer = true;
  /// Takes this process's stop request and returns the decision all processes
  /// follow (default: this process's request).
  std::function<bool(bool)> agree_stop;
  /// Takes this process's evaluation metrics and returns the ones every process
  /// uses for best.pt and early stopping (default: unchanged).
  std::function<Metrics(const Metrics&)> reduce_metrics;
  /// Generators the loss draws from besides LibTorch's default one (a model's
  /// own); saved in every checkpoint and restored on resume.
  Generators generators;
  /// Once, after resuming (or not) and before the first step: e.g. check that every
  /// process runs the same thing and copy rank 0's parameters to the others.
  std::function<void(const StartInfo&)> start;
  /// State of the hooks that a resumed run needs to carry on as the interrupted one
  /// would have (e.g. the ranks' measured speeds): called in the writing process for
  /// every checkpoint, stored in its loop state (`state.hooks`), and handed back to
  /// the start hook in StartInfo::hook_state.
  std::function<nlohmann::json()> save_state;
  /// After backward and before the after-backward hook (its collective and the
  /// gradient buckets launched during backward then share one wait): takes this
  /// process's loss, training metrics, example count and stop request and makes
  /// them the run's (so the non-finite check, the progress line, the epoch means and
  /// the stop decision agree across processes). The stop decision it returns is used
  /// before the next step instead of calling agree_stop.
  std::function<void(double& loss, Metrics& metrics, std::int64_t& examples, bool& stop)> reduce_step;
  /// Optional, with reduce_step: called after before_backward and before backward
  /// with this process's loss, metrics, examples and stop request, to start their
  /// reduction early (it then travels during backward instead of queueing behind the
  /// gradients); reduce_step, called with the same values after backward, finishes it.
  std::function<void(double loss, const Metrics& metrics, std::int64_t examples, bool stop)> start_reduce_step;
  /// Not called by fit: loss functions that choose batches call it on the global
  /// batch's indices and train on what it returns (this process's part).
  std::function<std::vector<std::int64_t>(const std::vector<std::int64_t>&)> shard;
};

/// `batch` through hooks.shard, or unchanged when it is not set.
inline std::vector<std::int64_t> shard_batch(const FitHooks& hooks, std::vector<std::int64_t> batch) {
  return hooks.shard ? hooks.shard(batch) : batch;
}

/// Whether fit, given this run folder and resume flag, continues from the folder's
/// last.pt instead of starting afresh (an empty folder name never resumes).
bool will_resume(const std::string& run_dir, bool resume);

/// Runs the loop. `description` gives the model, training and data parts stored in
/// checkpoints; a resumed run must have the same model and data parts and the same
/// training part except "epochs" and "patience" (which may grow on continuation);
/// the error names the first field that differs.
/// requires: epochs >= 1, steps_per_epoch >= 1, checkpoint_every >= 0, patience >= 0,
///           clip_norm >= 0; monitor set only with an eval function.
/// throws c10::Error for bad options; attend::IoError for checkpoint problems and a
///        run folder in use by another run; NonFiniteError (see skip_nonfinite);
///        whatever the loss or eval function throws.
FitSummary fit(torch::nn::Module& model, torch::optim::Optimizer& optimizer, const CheckpointInfo& description,
               const FitOptions& options, const LossFn& loss, const EvalFn& eval = nullptr,
               TrainingObserver* observer = nullptr, const std::atomic<bool>* stop = nullptr,
               const FitHooks& hooks = {});

/// Sets a module to training or evaluation mode for a scope and puts its previous
/// mode back at the end, also when an exception leaves the scope.
class ModeGuard {
 public:
  ModeGuard(torch::nn::Module& module, bool training) : module_(module), was_training_(module.is_training()) {
    module_.train(training);
  }
  ~ModeGuard() { module_.train(was_training_); }
  ModeGuard(const ModeGuard&) = delete;
  ModeGuard& operator=(const ModeGuard&) = delete;

 private:
  torch::nn::Module& module_;
  bool was_training_;
};

/// Seeds LibTorch's default CPU generator for a scope (e.g. around building a model,
/// whose parameter initialisation draws from it) and puts its previous state back
/// at the end, so library code never leaves the process's generator reseeded.
class ScopedSeed {
 public:
  explicit ScopedSeed(std::uint64_t seed);
  ~ScopedSeed();
  ScopedSeed(const ScopedSeed&) = delete;
  ScopedSeed& operator=(const ScopedSeed&) = delete;

 private:
  torch::Tensor saved_;
};

}  // namespace attend::models
