#pragma once
/// The CLI's implementations of attend::models::TrainingObserver: a progress line
/// on stderr and an append-only metrics.jsonl file.

#include <attend/models/observer.h>

#include <chrono>
#include <fstream>
#include <functional>
#include <iosfwd>
#include <string>

namespace attend::cli {

/// "1:05:03", "4:07" or "0:09" for a number of seconds; "--:--" when unknown.
std::string format_duration(double seconds);

/// Progress on a stream. On a terminal one line is redrawn in place at most every
/// `redraw_seconds`; otherwise a plain line is printed every `plain_seconds` and at
/// every epoch end, so logs stay readable.
class ProgressObserver : public models::TrainingObserver {
 public:
  using Clock = std::function<double()>;  ///< seconds, monotonic (injectable for tests)

  ProgressObserver(std::ostream& out, bool terminal, double plain_seconds = 10.0, Clock clock = {});

  void on_train_begin(const models::RunInfo& info) override;
  void on_step(const models::StepReport& report) override;
  void on_epoch_end(const models::EpochReport& report) override;
  void on_train_end(const models::FitSummary& summary) override;

 private:
  std::string step_line(const models::StepReport& r) const;
  void finish_line();

  std::ostream& out_;
  bool terminal_;
  double plain_seconds_;
  Clock clock_;
  double start_ = 0.0;
  double last_print_ = -1e300;
  std::int64_t first_step_ = 0;
  std::int64_t examples_ = 0;
  double running_loss_ = 0.0;
  bool have_loss_ = false;
  bool line_open_ = false;
};

/// Warns once when the training accuracy exceeds the validation accuracy by more than
/// `margin` at `epochs` epoch ends in a row: the model is memorising its training
/// images. The line names `advice` (the augmentation options). Needs both metrics
/// named "accuracy"; silent otherwise.
class OverfittingWarning : public models::TrainingObserver {
 public:
  OverfittingWarning(std::ostream& out, std::string advice, double margin = 0.15, std::int64_t epochs = 3);

  void on_epoch_end(const models::EpochReport& report) override;
  bool warned() const { return warned_; }

 private:
  std::ostream& out_;
  std::string advice_;
  double margin_;
  std::int64_t epochs_;
  std::int64_t run_ = 0;  ///< consecutive epochs over the margin
  bool warned_ = false;
};

/// Appends one JSON object per line to `path`: {"event":"begin"|"step"|"epoch"|"end",
/// "time": unix seconds, ...}. Steps are logged every `every_steps`; each line is
/// flushed so the file is complete up to the last event after a crash.
class MetricsJsonl : public models::TrainingObserver {
 public:
  MetricsJsonl(const std::string& path, std::int64_t every_steps = 50);

  void on_train_begin(const models::RunInfo& info) override;
  void on_step(const models::StepReport& report) override;
  void on_epoch_end(const models::EpochReport& report) override;
  void on_checkpoint(const std::string& path, std::int64_t global_step) override;
  void on_train_end(const models::FitSummary& summary) override;

 private:
  void write(const std::string& line);

  std::string path_;
  std::ofstream file_;
  std::int64_t every_;
};

}  // namespace attend::cli
