#pragma once
/// What a training loop tells the outside world. The engine calls a
/// TrainingObserver; the CLI's progress line and metrics.jsonl are implementations
/// of it in apps/, and a user's own program can supply its own.

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace attend::models {

using Metrics = std::map<std::string, double>;

struct RunInfo {
  std::string kind;                 ///< model kind being trained
  std::string run_dir;              ///< folder of checkpoints and logs ("" = none)
  std::int64_t epochs = 0;          ///< total epochs planned
  std::int64_t steps_per_epoch = 0;
  std::int64_t start_epoch = 0;     ///< > 0 or start_step > 0 when resumed
  std::int64_t start_step = 0;      ///< global step at start
  bool resumed = false;
};

struct StepReport {
  std::int64_t epoch = 0;           ///< 0-based
  std::int64_t epochs = 0;
  std::int64_t step_in_epoch = 0;   ///< 0-based index of the step just done
  std::int64_t steps_per_epoch = 0;
  std::int64_t global_step = 0;     ///< steps done so far, this one included
  std::int64_t examples = 0;        ///< examples in this step's batch
  double loss = 0.0;                ///< this step's loss
  double seconds = 0.0;             ///< wall time of this step
  Metrics metrics;                  ///< this step's other training metrics
};

struct EpochReport {
  std::int64_t epoch = 0;           ///< 0-based index of the epoch just finished
  std::int64_t epochs = 0;
  std::int64_t global_step = 0;
  double mean_loss = 0.0;           ///< mean step loss over the epoch
  Metrics train_metrics;            ///< means over the epoch's steps
  Metrics eval_metrics;             ///< from the evaluation callback, if any
  double seconds = 0.0;             ///< wall time of the epoch (this process only)
  double train_seconds = 0.0;       ///< of which the training steps
  double eval_seconds = 0.0;        ///< of which the evaluation
  double examples_per_second = 0.0; ///< training examples per second of training steps (no evaluation)
  bool improved = false;            ///< the monitored metric reached a new best
  std::int64_t skipped_steps = 0;   ///< steps skipped for a non-finite loss or gradient (not in the means)
};

enum class FitStatus { kCompleted, kStoppedEarly, kInterrupted };

const char* to_string(FitStatus status);

struct FitSummary {
  FitStatus status = FitStatus::kCompleted;
  std::int64_t epochs_done = 0;     ///< completed epochs, resumed ones included
  std::int64_t global_step = 0;
  double best = 0.0;                ///< best value of the monitored metric
  bool has_best = false;
  double seconds = 0.0;             ///< wall time in this process
  std::string last_checkpoint;      ///< "" when the run has no folder
  std::string best_checkpoint;      ///< "" when nothing is monitored
};

/// Callbacks of a training run; every method has an empty default.
class TrainingObserver {
 public:
  virtual ~TrainingObserver() = default;
  virtual void on_train_begin(const RunInfo& /*info*/) {}
  virtual void on_step(const StepReport& /*report*/) {}
  virtual void on_epoch_end(const EpochReport& /*report*/) {}
  virtual void on_checkpoint(const std::string& /*path*/, std::int64_t /*global_step*/) {}
  virtual void on_train_end(const FitSummary& /*summary*/) {}
};

/// Forwards every callback to several observers in order.
class ObserverList : public TrainingObserver {
 public:
  void add(std::shared_ptr<TrainingObserver> observer) { observers_.push_back(std::move(observer)); }
  void on_train_begin(const RunInfo& info) override;
  void on_step(const StepReport& report) override;
  void on_epoch_end(const EpochReport& report) override;
  void on_checkpoint(const std::string& path, std::int64_t global_step) override;
  void on_train_end(const FitSummary& summary) override;

 private:
  std::vector<std::shared_ptr<TrainingObserver>> observers_;
};

}  // namespace attend::models
