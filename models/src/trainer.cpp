#include "attend/models/trainer.h"

#include <attend/io_error.h>
#include <attend/run_lock.h>

#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <memory>
#include <optional>

namespace attend::models {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

/// Loop position and running sums, stored in the checkpoint's `state`.
struct LoopState {
  std::int64_t epoch = 0;
  std::int64_t step_in_epoch = 0;
  std::int64_t global_step = 0;
  double loss_sum = 0.0;
  std::int64_t examples = 0;
  Metrics metric_sums;
  bool has_best = false;
  double best = 0.0;
  std::int64_t bad_epochs = 0;
  std::int64_t skipped_in_epoch = 0;  // non-finite steps skipped (skip_nonfinite)
  std::int64_t skipped_in_a_row = 0;

  nlohmann::json to_json() const {
    return {{"epoch", epoch},       {"step_in_epoch", step_in_epoch}, {"global_step", global_step},
            {"loss_sum", loss_sum}, {"examples", examples},           {"metric_sums", metric_sums},
            {"has_best", has_best}, {"best", best},                   {"bad_epochs", bad_epochs},
            {"skipped_in_epoch", skipped_in_epoch}, {"skipped_in_a_row", skipped_in_a_row}};
  }
  static LoopState from_json(const nlohmann::json& j, const std::string& path) {
    try {
      LoopState s;
      s.epoch = j.at("epoch").get<std::int64_t>();
      s.step_in_epoch = j.at("step_in_epoch").get<std::int64_t>();
      s.global_step = j.at("global_step").get<std::int64_t>();
      s.loss_sum = j.at("loss_sum").get<double>();
      s.examples = j.at("examples").get<std::int64_t>();
      s.metric_sums = j.at("metric_sums").get<Metrics>();
      s.has_best = j.at("has_best").get<bool>();
      s.best = j.at("best").get<double>();
      s.bad_epochs = j.at("bad_epochs").get<std::int64_t>();
      // Absent from checkpoints written before non-finite steps could be skipped.
      s.skipped_in_epoch = j.value("skipped_in_epoch", std::int64_t{0});
      s.skipped_in_a_row = j.value("skipped_in_a_row", std::int64_t{0});
      return s;
    } catch (const nlohmann::json::exception& e) {
      throw IoError(path, std::string("checkpoint holds no resumable loop state: ") + e.what());
    }
  }
};

/// What must match for a run folder to be continued: the model and data parts, and
/// the training part without the fields a continuation may change.
nlohmann::json identity(const CheckpointInfo& info) {
  auto training = info.training;
  training.erase("epochs");
  training.erase("patience");
  return {{"model", {{"kind", info.model.kind}, {"options", info.model.options}}},
          {"data", info.data},
          {"training", training}};
}

void check_options(const FitOptions& o, const LossFn& loss, const EvalFn& eval) {
  TORCH_CHECK(o.epochs() >= 1, "fit: epochs must be >= 1, got ", o.epochs());
  TORCH_CHECK(o.steps_per_epoch() >= 1, "fit: steps_per_epoch must be >= 1, got ", o.steps_per_epoch());
  TORCH_CHECK(o.checkpoint_every() >= 0, "fit: checkpoint_every must be >= 0, got ", o.checkpoint_every());
  TORCH_CHECK(o.patience() >= 0, "fit: patience must be >= 0, got ", o.patience());
  TORCH_CHECK(o.clip_norm() >= 0 && std::isfinite(o.clip_norm()), "fit: clip_norm must be a finite number >= 0, got ",
              o.clip_norm());
  TORCH_CHECK(o.monitor().empty() || eval, "fit: monitor '", o.monitor(), "' needs an evaluation function");
  TORCH_CHECK(loss, "fit: a loss function is required");
}

/// One run of the loop; fit() is its only user.
class Engine {
 public:
  Engine(torch::nn::Module& model, torch::optim::Optimizer& optimizer, const CheckpointInfo& description,
         const FitOptions& options, const LossFn& loss, const EvalFn& eval, TrainingObserver* observer,
         const std::atomic<bool>* stop, const FitHooks& hooks)
      : model_(model),
        optimizer_(optimizer),
        description_(description),
        options_(options),
        loss_(loss),
        eval_(eval),
        obs_(observer != nullptr ? *observer : quiet_),
        stop_(stop),
        hooks_(hooks) {
    const bool has_dir = !options.run_dir().empty();
    if (has_dir) last_path_ = (fs::path(options.run_dir()) / "last.pt").string();
    if (has_dir && !options.monitor().empty()) best_path_ = (fs::path(options.run_dir()) / "best.pt").string();
  }

  FitSummary run() {
    // Before anything in the folder is read or written; in the writing process only.
    if (!options_.run_dir().empty() && hooks_.writer) lock_ = std::make_unique<RunFolderLock>(options_.run_dir());
    const bool resumed = resume();
    if (hooks_.start) {
      hooks_.start(StartInfo{identity(description_), resumed, state_.global_step, hooks_.generators, hook_state_});
    }
    obs_.on_train_begin(RunInfo{description_.model.kind, options_.run_dir(), options_.epochs(),
                                options_.steps_per_epoch(), state_.epoch, state_.global_step, resumed});
    if (state_.epoch >= options_.epochs()) return finish(FitStatus::kCompleted);
    if (patience_exhausted()) return finish(FitStatus::kStoppedEarly);
    while (state_.epoch < options_.epochs()) {
      if (!run_epoch()) {
        save(last_path_, state_.to_json());
        return finish(FitStatus::kInterrupted);
      }
      end_epoch();
      if (patience_exhausted()) return finish(FitStatus::kStoppedEarly);
    }
    return finish(FitStatus::kCompleted);
  }

 private:
  /// Continues from last.pt when there is one to continue from.
  bool resume() {
    if (!will_resume(options_.run_dir(), options_.resume())) return false;
    const auto stored = read_checkpoint_info(last_path_);
    const auto diff = first_difference(identity(stored), identity(description_));
    if (!diff.path.empty()) {
      throw IoError(last_path_, "run folder holds another run: " + diff.path + " is " + diff.left +
                                    " there but " + diff.right + " now; use another run folder or turn resuming off");
    }
    LoadOptions load;
    load.expected_kind = description_.model.kind;
    load.restore_rng = true;
    load.generators = hooks_.generators;
    const auto loaded = load_checkpoint(last_path_, model_, &optimizer_, load);
    state_ = LoopState::from_json(loaded.state, last_path_);
    hook_state_ = loaded.state.value("hooks", nlohmann::json());
    last_saved_step_ = loaded.step;
    return true;
  }

  bool stop_requested() {
    const bool local = stop_ != nullptr && stop_->load();
    // The decision that came with the last step's reduction (one collective a step
    // fewer); a request after it is part of the next one.
    if (agreed_stop_) {
      const bool agreed = *agreed_stop_;
      agreed_stop_.reset();
      return agreed;
    }
    return hooks_.agree_stop ? hooks_.agree_stop(local) : local;
  }

  /// The steps left in this epoch; false when a stop was requested before one.
  bool run_epoch() {
    epoch_start_ = Clock::now();
    epoch_examples_ = 0;
    ModeGuard training(model_, true);
    for (; state_.step_in_epoch < options_.steps_per_epoch(); ++state_.step_in_epoch) {
      if (stop_requested()) return false;
      run_step();
      if (options_.checkpoint_every() > 0 && state_.global_step % options_.checkpoint_every() == 0 &&
          state_.step_in_epoch + 1 < options_.steps_per_epoch()) {
        auto resume_point = state_;
        ++resume_point.step_in_epoch;  // the resume point is the next step
        save(last_path_, resume_point.to_json());
      }
    }
    return true;
  }

  void run_step() {
    const auto t_step = Clock::now();
    const StepContext context{state_.epoch, state_.step_in_epoch, state_.global_step};
    optimizer_.zero_grad();
    const StepLoss out = loss_(context);
    TORCH_CHECK(out.loss.defined() && out.loss.numel() == 1, "fit: the loss function must return a scalar loss");
    TORCH_CHECK(out.terms >= 0, "fit: the loss function returned ", out.terms, " terms");
    if (hooks_.before_backward) hooks_.before_backward(out);
    double loss = out.loss.item<double>();
    Metrics metrics = out.metrics;
    std::int64_t examples = out.examples;
    bool stop = stop_ != nullptr && stop_->load();
    // In data-parallel training the step's values set off before backward and the
    // gradient buckets during it; both are waited for after it.
    if (hooks_.reduce_step && hooks_.start_reduce_step) hooks_.start_reduce_step(loss, metrics, examples, stop);
    out.loss.backward();
    if (hooks_.reduce_step) {
      hooks_.reduce_step(loss, metrics, examples, stop);
      agreed_stop_ = stop;
    }
    if (hooks_.after_backward) hooks_.after_backward(context);
    if (const auto problem = nonfinite(loss); !problem.empty()) {
      handle_nonfinite(problem);
      return;
    }
    state_.skipped_in_a_row = 0;
    if (options_.clip_norm() > 0) {
      std::vector<torch::Tensor> params;
      for (const auto& group : optimizer_.param_groups()) {
        params.insert(params.end(), group.params().begin(), group.params().end());
      }
      torch::nn::utils::clip_grad_norm_(params, options_.clip_norm());
    }
    optimizer_.step();
    ++state_.global_step;
    state_.loss_sum += loss;
    state_.examples += examples;
    epoch_examples_ += examples;
    for (const auto& [name, value] : metrics) state_.metric_sums[name] += value;
    obs_.on_step(StepReport{state_.epoch, options_.epochs(), state_.step_in_epoch, options_.steps_per_epoch(),
                            state_.global_step, examples, loss, since(t_step), metrics});
  }

  /// "" when the loss and every gradient are finite, else which is not.
  std::string nonfinite(double loss) const {
    if (!std::isfinite(loss)) return "the loss is " + describe(loss);
    // One reduction over all gradients: the sum of their norms is finite exactly when
    // every gradient is (a norm overflowing to inf is as useless for a step).
    std::vector<torch::Tensor> norms;
    for (const auto& group : optimizer_.param_groups()) {
      for (const auto& p : group.params()) {
        if (p.grad().defined()) norms.push_back(p.grad().detach().norm().to(torch::kFloat64));
      }
    }
    if (norms.empty()) return "";
    const double total = torch::stack(norms).sum().item<double>();
    if (std::isfinite(total)) return "";
    for (const auto& item : model_.named_parameters(/*recurse=*/true)) {
      const auto& grad = item.value().grad();
      if (grad.defined() && !torch::isfinite(grad).all().item<bool>()) {
        return "the gradient of " + item.key() + " is not finite";
      }
    }
    return "a gradient is not finite";
  }

  static std::string describe(double value) {
    return std::isnan(value) ? "nan" : (value > 0 ? "inf" : "-inf");
  }

  /// Stops the run, or skips the step (no optimizer update) when asked to.
  void handle_nonfinite(const std::string& problem) {
    const auto where = "step " + std::to_string(state_.global_step + 1) + " (epoch " +
                       std::to_string(state_.epoch + 1) + ")";
    if (options_.skip_nonfinite() && state_.skipped_in_a_row + 1 < kMaxSkippedInARow) {
      optimizer_.zero_grad();
      ++state_.global_step;
      ++state_.skipped_in_epoch;
      ++state_.skipped_in_a_row;
      return;
    }
    std::string kept;
    if (last_path_.empty()) {
      kept = "no checkpoints are kept";
    } else if (last_saved_step_ < 0) {
      kept = "no checkpoint was written yet";
    } else {
      kept = last_path_ + " keeps step " + std::to_string(last_saved_step_);
    }
    const auto why = options_.skip_nonfinite()
                         ? std::to_string(kMaxSkippedInARow) + " steps in a row were not finite, the last at " + where
                         : problem + " at " + where;
    throw NonFiniteError("training stopped: " + why + "; the update was not applied and " + kept,
                         state_.global_step);
  }

  /// Evaluation, best.pt, last.pt and the epoch report.
  void end_epoch() {
    EpochReport report;
    report.epoch = state_.epoch;
    report.epochs = options_.epochs();
    report.global_step = state_.global_step;
    // Skipped steps are not in the sums.
    const auto steps = static_cast<double>(std::max<std::int64_t>(1, options_.steps_per_epoch() - state_.skipped_in_epoch));
    report.skipped_steps = state_.skipped_in_epoch;
    report.mean_loss = state_.loss_sum / steps;
    for (const auto& [name, sum] : state_.metric_sums) report.train_metrics[name] = sum / steps;
    report.train_seconds = since(epoch_start_);
    const auto t_eval = Clock::now();
    if (eval_) {
      ModeGuard evaluating(model_, false);
      report.eval_metrics = eval_(state_.epoch);
      if (hooks_.reduce_metrics) report.eval_metrics = hooks_.reduce_metrics(report.eval_metrics);
    }
    report.eval_seconds = since(t_eval);
    report.improved = monitor(report.eval_metrics);
    report.seconds = since(epoch_start_);
    report.examples_per_second =
        report.train_seconds > 0 ? static_cast<double>(epoch_examples_) / report.train_seconds : 0.0;

    ++state_.epoch;
    state_.step_in_epoch = 0;
    state_.loss_sum = 0.0;
    state_.examples = 0;
    state_.metric_sums.clear();
    state_.skipped_in_epoch = 0;
    if (report.improved && !best_path_.empty()) {
      auto best = state_.to_json();
      best["monitor"] = options_.monitor();
      Metrics finite;  // a diverged side metric must not make the checkpoint unwritable
      for (const auto& [name, value] : report.eval_metrics) {
        if (std::isfinite(value)) finite[name] = value;
      }
      best["eval_metrics"] = finite;
      save(best_path_, best);
    }
    save(last_path_, state_.to_json());
    obs_.on_epoch_end(report);
  }

  /// Updates best and patience from the monitored metric; true on a new best.
  bool monitor(const Metrics& metrics) {
    if (options_.monitor().empty()) return false;
    const auto it = metrics.find(options_.monitor());
    TORCH_CHECK(it != metrics.end(), "fit: the evaluation returned no metric '", options_.monitor(), "' to monitor");
    const double value = it->second;
    // A non-finite metric is never a new best (and would not survive JSON).
    if (!std::isfinite(value)) {
      ++state_.bad_epochs;
      return false;
    }
    if (state_.has_best && !(options_.maximize() ? value > state_.best : value < state_.best)) {
      ++state_.bad_epochs;
      return false;
    }
    state_.has_best = true;
    state_.best = value;
    state_.bad_epochs = 0;
    return true;
  }

  bool patience_exhausted() const { return options_.patience() > 0 && state_.bad_epochs >= options_.patience(); }

  /// Writes a checkpoint with loop state `state` (only in the writing process).
  void save(const std::string& path, const nlohmann::json& state) {
    if (path.empty() || !hooks_.writer) return;
    CheckpointInfo info = description_;
    info.state = state;
    if (hooks_.save_state) info.state["hooks"] = hooks_.save_state();
    info.step = state.at("global_step").get<std::int64_t>();
    info.epoch = state.at("epoch").get<std::int64_t>();
    save_checkpoint(path, info, model_, &optimizer_, hooks_.generators);
    if (path == last_path_) last_saved_step_ = info.step;
    obs_.on_checkpoint(path, info.step);
  }

  FitSummary finish(FitStatus status) {
    FitSummary summary;
    summary.status = status;
    summary.epochs_done = state_.epoch;
    summary.global_step = state_.global_step;
    summary.best = state_.best;
    summary.has_best = state_.has_best;
    summary.seconds = since(start_);
    summary.last_checkpoint = last_path_;
    summary.best_checkpoint = best_path_;
    obs_.on_train_end(summary);
    return summary;
  }

  torch::nn::Module& model_;
  torch::optim::Optimizer& optimizer_;
  const CheckpointInfo& description_;
  const FitOptions& options_;
  const LossFn& loss_;
  const EvalFn& eval_;
  TrainingObserver quiet_;
  TrainingObserver& obs_;
  const std::atomic<bool>* stop_;
  const FitHooks& hooks_;
  std::string last_path_, best_path_;
  std::unique_ptr<RunFolderLock> lock_;
  std::int64_t last_saved_step_ = -1;  // step of the newest last.pt (-1: none)
  LoopState state_;
  nlohmann::json hook_state_;  // the hooks' state in the checkpoint resumed from
  Clock::time_point start_ = Clock::now();
  Clock::time_point epoch_start_ = Clock::now();
  std::optional<bool> agreed_stop_;  // from the last reduce_step, for the next step
  std::int64_t epoch_examples_ = 0;  // for the rate (all processes' after reduce_step)
};

}  // namespace

bool will_resume(const std::string& run_dir, bool resume) {
  std::error_code ec;
  return resume && !run_dir.empty() && fs::exists(fs::path(run_dir) / "last.pt", ec);
}

FitSummary fit(torch::nn::Module& model, torch::optim::Optimizer& optimizer, const CheckpointInfo& description,
               const FitOptions& options, const LossFn& loss, const EvalFn& eval, TrainingObserver* observer,
               const std::atomic<bool>* stop, const FitHooks& hooks) {
  check_options(options, loss, eval);
  return Engine(model, optimizer, description, options, loss, eval, observer, stop, hooks).run();
}

ScopedSeed::ScopedSeed(std::uint64_t seed) {
  auto generator = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(generator.mutex());
  saved_ = generator.get_state();
  generator.set_current_seed(seed);
}

ScopedSeed::~ScopedSeed() {
  auto generator = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(generator.mutex());
  generator.set_state(saved_);
}

}  // namespace attend::models
