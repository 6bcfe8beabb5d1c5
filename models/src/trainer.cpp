#include "attend/models/trainer.h"

#include <attend/io_error.h>

#include <torch/torch.h>

#include <chrono>
#include <filesystem>

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

  nlohmann::json to_json() const {
    return {{"epoch", epoch},       {"step_in_epoch", step_in_epoch}, {"global_step", global_step},
            {"loss_sum", loss_sum}, {"examples", examples},           {"metric_sums", metric_sums},
            {"has_best", has_best}, {"best", best},                   {"bad_epochs", bad_epochs}};
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
      return s;
    } catch (const nlohmann::json::exception& e) {
      throw IoError(path, std::string("checkpoint holds no resumable loop state: ") + e.what());
    }
  }
};

}  // namespace

FitSummary fit(torch::nn::Module& model, torch::optim::Optimizer& optimizer, const CheckpointInfo& description,
               const FitOptions& options, const StepFn& step, const EvalFn& eval, TrainingObserver* observer,
               const std::atomic<bool>* stop) {
  TORCH_CHECK(options.epochs() >= 1, "fit: epochs must be >= 1, got ", options.epochs());
  TORCH_CHECK(options.steps_per_epoch() >= 1, "fit: steps_per_epoch must be >= 1, got ", options.steps_per_epoch());
  TORCH_CHECK(options.checkpoint_every() >= 0, "fit: checkpoint_every must be >= 0, got ", options.checkpoint_every());
  TORCH_CHECK(options.patience() >= 0, "fit: patience must be >= 0, got ", options.patience());
  TORCH_CHECK(options.monitor().empty() || eval, "fit: monitor '", options.monitor(),
              "' needs an evaluation function");
  TORCH_CHECK(step, "fit: a step function is required");
  TrainingObserver quiet;
  TrainingObserver& obs = observer != nullptr ? *observer : quiet;

  const bool has_dir = !options.run_dir().empty();
  const std::string last_path = has_dir ? (fs::path(options.run_dir()) / "last.pt").string() : "";
  const std::string best_path =
      has_dir && !options.monitor().empty() ? (fs::path(options.run_dir()) / "best.pt").string() : "";

  LoopState state;
  bool resumed = false;
  std::error_code ec;
  if (has_dir && options.resume() && fs::exists(last_path, ec)) {
    const auto stored = read_checkpoint_info(last_path);
    if (stored.kind != description.kind || stored.options != description.options) {
      throw IoError(last_path, "run folder holds a '" + stored.kind + "' run with options " + stored.options.dump() +
                                   ", which differ from this run's; use another run folder or turn resuming off");
    }
    auto loaded = load_checkpoint(last_path, model, &optimizer, LoadOptions{description.kind, /*restore_rng=*/true});
    state = LoopState::from_json(loaded.state, last_path);
    resumed = true;
  }

  auto save_last = [&]() {
    if (!has_dir) return;
    CheckpointInfo info = description;
    info.state = state.to_json();
    info.step = state.global_step;
    info.epoch = state.epoch;
    save_checkpoint(last_path, info, model, &optimizer);
    obs.on_checkpoint(last_path, state.global_step);
  };

  FitSummary summary;
  summary.last_checkpoint = last_path;
  summary.best_checkpoint = best_path;
  const auto t_start = Clock::now();
  auto finish = [&](FitStatus status) {
    summary.status = status;
    summary.epochs_done = state.epoch;
    summary.global_step = state.global_step;
    summary.best = state.best;
    summary.has_best = state.has_best;
    summary.seconds = since(t_start);
    obs.on_train_end(summary);
    return summary;
  };

  obs.on_train_begin(RunInfo{description.kind, options.run_dir(), options.epochs(), options.steps_per_epoch(),
                             state.epoch, state.global_step, resumed});
  if (state.epoch >= options.epochs()) return finish(FitStatus::kCompleted);
  if (options.patience() > 0 && state.bad_epochs >= options.patience()) return finish(FitStatus::kStoppedEarly);

  while (state.epoch < options.epochs()) {
    const auto t_epoch = Clock::now();
    std::int64_t epoch_examples = 0;  // this process only, for the rate
    model.train();
    for (; state.step_in_epoch < options.steps_per_epoch(); ++state.step_in_epoch) {
      if (stop != nullptr && stop->load()) {
        save_last();
        return finish(FitStatus::kInterrupted);
      }
      const auto t_step = Clock::now();
      const StepOutput out = step(StepContext{state.epoch, state.step_in_epoch, state.global_step});
      ++state.global_step;
      state.loss_sum += out.loss;
      state.examples += out.examples;
      epoch_examples += out.examples;
      for (const auto& [name, value] : out.metrics) state.metric_sums[name] += value;
      obs.on_step(StepReport{state.epoch, options.epochs(), state.step_in_epoch, options.steps_per_epoch(),
                             state.global_step, out.examples, out.loss, since(t_step), out.metrics});
      if (options.checkpoint_every() > 0 && state.global_step % options.checkpoint_every() == 0 &&
          state.step_in_epoch + 1 < options.steps_per_epoch()) {
        ++state.step_in_epoch;  // the resume point is the next step
        save_last();
        --state.step_in_epoch;
      }
    }

    EpochReport report;
    report.epoch = state.epoch;
    report.epochs = options.epochs();
    report.global_step = state.global_step;
    const auto steps = static_cast<double>(options.steps_per_epoch());
    report.mean_loss = state.loss_sum / steps;
    for (const auto& [name, sum] : state.metric_sums) report.train_metrics[name] = sum / steps;
    if (eval) {
      model.eval();
      report.eval_metrics = eval(state.epoch);
      model.train();
    }
    if (!options.monitor().empty()) {
      const auto it = report.eval_metrics.find(options.monitor());
      TORCH_CHECK(it != report.eval_metrics.end(), "fit: the evaluation returned no metric '", options.monitor(),
                  "' to monitor");
      const double value = it->second;
      const bool better = !state.has_best || (options.maximize() ? value > state.best : value < state.best);
      if (better) {
        state.has_best = true;
        state.best = value;
        state.bad_epochs = 0;
        report.improved = true;
      } else {
        ++state.bad_epochs;
      }
    }
    report.seconds = since(t_epoch);
    report.examples_per_second = report.seconds > 0 ? static_cast<double>(epoch_examples) / report.seconds : 0.0;

    ++state.epoch;
    state.step_in_epoch = 0;
    state.loss_sum = 0.0;
    state.examples = 0;
    state.metric_sums.clear();
    if (report.improved && !best_path.empty()) {
      CheckpointInfo info = description;
      info.state = state.to_json();
      info.state["monitor"] = options.monitor();
      info.state["eval_metrics"] = report.eval_metrics;
      info.step = state.global_step;
      info.epoch = state.epoch;
      save_checkpoint(best_path, info, model, &optimizer);
      obs.on_checkpoint(best_path, state.global_step);
    }
    save_last();
    obs.on_epoch_end(report);
    if (options.patience() > 0 && state.bad_epochs >= options.patience()) return finish(FitStatus::kStoppedEarly);
  }
  return finish(FitStatus::kCompleted);
}

}  // namespace attend::models
