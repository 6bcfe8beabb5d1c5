#include <attend/io_error.h>
#include <attend/models/trainer.h>
#include <attend/run_lock.h>

#include <test_support.h>

#include <torch/torch.h>

#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <thread>

namespace am = attend::models;
using attend::testing::TempDir;

namespace {

/// Linear regression whose batches depend only on (epoch, step) and whose loss adds
/// noise from the default generator and from a generator of its own, so an exact
/// resume needs all three restored.
struct Regression {
  torch::nn::Linear model{torch::nn::LinearOptions(3, 1)};
  torch::optim::SGD optimizer{model->parameters(), torch::optim::SGDOptions(0.05).momentum(0.5)};
  torch::Tensor true_w = torch::tensor({{1.5f}, {-2.0f}, {0.5f}});
  at::Generator own = at::make_generator<at::CPUGeneratorImpl>(11);

  am::StepLoss loss(const am::StepContext& c) {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(1000 * c.epoch + c.step_in_epoch);
    auto x = torch::randn({32, 3}, gen);
    auto y = x.mm(true_w) + 0.01 * torch::randn({32, 1}) + 0.01 * torch::randn({32, 1}, own);
    auto loss = torch::mse_loss(model(x), y);
    return {loss, 32, {{"abs_err", (model(x) - y).abs().mean().item<double>()}}};
  }
  am::LossFn fn() {
    return [this](const am::StepContext& c) { return loss(c); };
  }
  am::FitHooks hooks() {
    am::FitHooks h;
    h.generators = {{"own", own}};
    return h;
  }
};

am::CheckpointInfo description() {
  am::CheckpointInfo d;
  d.model = {"regression", {{"inputs", 3}}};
  d.training = {{"lr", 0.05}, {"epochs", 3}};
  d.data = {{"kind", "synthetic"}};
  return d;
}

/// Records callbacks; optionally raises the stop flag after some steps.
struct Recorder : am::TrainingObserver {
  std::vector<am::StepReport> steps;
  std::vector<am::EpochReport> epochs;
  std::vector<am::RunInfo> begins;
  std::vector<am::FitSummary> ends;
  std::atomic<bool>* stop = nullptr;
  std::int64_t stop_after = -1;
  void on_train_begin(const am::RunInfo& i) override { begins.push_back(i); }
  void on_step(const am::StepReport& r) override {
    steps.push_back(r);
    if (stop != nullptr && static_cast<std::int64_t>(steps.size()) == stop_after) stop->store(true);
  }
  void on_epoch_end(const am::EpochReport& r) override { epochs.push_back(r); }
  void on_train_end(const am::FitSummary& s) override { ends.push_back(s); }
};

}  // namespace

TEST(Fit, ReportsEveryStepAndEpochAndLearns) {
  torch::manual_seed(0);
  Regression r;
  Recorder rec;
  const auto summary = am::fit(*r.model, r.optimizer, description(), am::FitOptions().epochs(3).steps_per_epoch(20),
                               r.fn(), nullptr, &rec);
  EXPECT_EQ(summary.status, am::FitStatus::kCompleted);
  EXPECT_EQ(summary.global_step, 60);
  ASSERT_EQ(rec.steps.size(), 60u);
  ASSERT_EQ(rec.epochs.size(), 3u);
  EXPECT_EQ(rec.steps[25].epoch, 1);
  EXPECT_EQ(rec.steps[25].step_in_epoch, 5);
  EXPECT_EQ(rec.steps[25].global_step, 26);
  double first_epoch_loss = 0;
  for (int i = 0; i < 20; ++i) first_epoch_loss += rec.steps[static_cast<size_t>(i)].loss / 20;
  EXPECT_NEAR(rec.epochs[0].mean_loss, first_epoch_loss, 1e-9);
  EXPECT_LT(rec.epochs[2].mean_loss, 0.01 * rec.epochs[0].mean_loss);
  EXPECT_TRUE(rec.epochs[2].train_metrics.count("abs_err"));
  EXPECT_TRUE(torch::allclose(r.model->weight.t(), r.true_w, 0.0, 0.02));
}

TEST(Fit, InterruptedRunResumesToBitIdenticalWeights) {
  TempDir dir;
  const auto opts = am::FitOptions().epochs(3).steps_per_epoch(7).checkpoint_every(3);

  torch::manual_seed(42);
  Regression straight;
  am::fit(*straight.model, straight.optimizer, description(), am::FitOptions(opts).run_dir(dir.file("a")),
          straight.fn(), nullptr, nullptr, nullptr, straight.hooks());

  for (std::int64_t stop_after : {4, 7, 11}) {  // mid-epoch, at an epoch end, mid-epoch after a checkpoint
    SCOPED_TRACE(stop_after);
    const auto run_dir = dir.file("b" + std::to_string(stop_after));
    torch::manual_seed(42);
    Regression first;
    std::atomic<bool> stop{false};
    Recorder rec;
    rec.stop = &stop;
    rec.stop_after = stop_after;
    const auto s1 = am::fit(*first.model, first.optimizer, description(), am::FitOptions(opts).run_dir(run_dir),
                            first.fn(), nullptr, &rec, &stop, first.hooks());
    EXPECT_EQ(s1.status, am::FitStatus::kInterrupted);
    EXPECT_EQ(s1.global_step, stop_after);

    torch::manual_seed(7);  // a new process: different seed, fresh weights, own generator elsewhere
    Regression second;
    torch::randn({17}, second.own);
    Recorder rec2;
    const auto s2 = am::fit(*second.model, second.optimizer, description(), am::FitOptions(opts).run_dir(run_dir),
                            second.fn(), nullptr, &rec2, nullptr, second.hooks());
    EXPECT_EQ(s2.status, am::FitStatus::kCompleted);
    ASSERT_EQ(rec2.begins.size(), 1u);
    EXPECT_TRUE(rec2.begins[0].resumed);
    EXPECT_EQ(rec2.begins[0].start_step, stop_after);
    EXPECT_EQ(static_cast<std::int64_t>(rec2.steps.size()), 21 - stop_after);
    EXPECT_TRUE(torch::equal(second.model->weight, straight.model->weight));
    EXPECT_TRUE(torch::equal(second.model->bias, straight.model->bias));
  }
}

// The hooks' own state (a data-parallel run's measured speeds, say) goes into every
// checkpoint as it was when that checkpoint was written, and comes back to the start
// hook of the run that resumes from it; a fresh run's start hook gets null.
TEST(Fit, TheHooksStateIsKeptInCheckpointsAndGivenBackOnResume) {
  TempDir dir;
  const auto run_dir = dir.file("run");
  const auto opts = am::FitOptions().epochs(2).steps_per_epoch(5).checkpoint_every(2).run_dir(run_dir);
  std::int64_t steps = 0;
  std::vector<nlohmann::json> started;
  auto hooks_of = [&](Regression& r) {
    auto h = r.hooks();
    h.save_state = [&steps] { return nlohmann::json{{"steps_seen", steps}}; };
    h.start = [&started](const am::StartInfo& info) { started.push_back(info.hook_state); };
    return h;
  };
  torch::manual_seed(3);
  Regression first;
  std::atomic<bool> stop{false};
  Recorder rec;
  rec.stop = &stop;
  rec.stop_after = 3;
  auto counting = [&first, &steps](const am::StepContext& c) {
    ++steps;
    return first.loss(c);
  };
  auto h1 = hooks_of(first);
  const auto s1 = am::fit(*first.model, first.optimizer, description(), opts, counting, nullptr, &rec, &stop, h1);
  ASSERT_EQ(s1.status, am::FitStatus::kInterrupted);
  ASSERT_EQ(started.size(), 1u);
  EXPECT_TRUE(started[0].is_null()) << started[0];
  // Checkpoints after steps 2 and 3 (the interruption's): the last one holds 3.
  EXPECT_EQ(am::read_checkpoint_info(run_dir + "/last.pt").state.at("hooks"), (nlohmann::json{{"steps_seen", 3}}));

  steps = 100;
  Regression second;
  auto h2 = hooks_of(second);
  const auto s2 = am::fit(*second.model, second.optimizer, description(), opts, second.fn(), nullptr, nullptr,
                          nullptr, h2);
  EXPECT_EQ(s2.status, am::FitStatus::kCompleted);
  ASSERT_EQ(started.size(), 2u);
  EXPECT_EQ(started[1], (nlohmann::json{{"steps_seen", 3}}));
  EXPECT_EQ(am::read_checkpoint_info(run_dir + "/last.pt").state.at("hooks"), (nlohmann::json{{"steps_seen", 100}}));
}

TEST(Fit, KeepsTheBestCheckpointAndStopsEarly) {
  TempDir dir;
  torch::manual_seed(0);
  Regression r;
  const std::vector<double> scores{0.5, 0.7, 0.6, 0.65, 0.9};
  Recorder rec;
  const auto summary = am::fit(
      *r.model, r.optimizer, description(),
      am::FitOptions().epochs(5).steps_per_epoch(2).run_dir(dir.path().string()).monitor("acc").patience(2),
      r.fn(),
      [&](std::int64_t epoch) { return am::Metrics{{"acc", scores[static_cast<size_t>(epoch)]}}; }, &rec);
  EXPECT_EQ(summary.status, am::FitStatus::kStoppedEarly);
  EXPECT_EQ(summary.epochs_done, 4);
  EXPECT_TRUE(summary.has_best);
  EXPECT_DOUBLE_EQ(summary.best, 0.7);
  ASSERT_EQ(rec.epochs.size(), 4u);
  // 0.5 is the first value, 0.7 beats it, 0.6 and 0.65 do not.
  EXPECT_TRUE(rec.epochs[0].improved);
  EXPECT_TRUE(rec.epochs[1].improved);
  EXPECT_FALSE(rec.epochs[2].improved);
  EXPECT_FALSE(rec.epochs[3].improved);
  const auto best = am::read_checkpoint_info(summary.best_checkpoint);
  EXPECT_EQ(best.epoch, 2);
  EXPECT_DOUBLE_EQ(best.state["eval_metrics"]["acc"].get<double>(), 0.7);
  EXPECT_EQ(am::read_checkpoint_info(summary.last_checkpoint).epoch, 4);
}

TEST(Fit, RefusesToResumeARunWithOtherOptions) {
  TempDir dir;
  Regression r;
  auto step = r.fn();
  am::fit(*r.model, r.optimizer, description(), am::FitOptions().run_dir(dir.path().string()), step);
  auto other = description();
  other.model.options["inputs"] = 4;
  try {
    am::fit(*r.model, r.optimizer, other, am::FitOptions().epochs(2).run_dir(dir.path().string()), step);
    ADD_FAILURE() << "resumed a run with other options";
  } catch (const attend::IoError& e) {
    EXPECT_NE(std::string(e.what()).find("model.options.inputs is 3 there but 4 now"), std::string::npos) << e.what();
  }
  other = description();
  other.data["kind"] = "other";
  try {
    am::fit(*r.model, r.optimizer, other, am::FitOptions().epochs(2).run_dir(dir.path().string()), step);
    ADD_FAILURE() << "resumed a run on other data";
  } catch (const attend::IoError& e) {
    EXPECT_NE(std::string(e.what()).find("data.kind is \"synthetic\" there but \"other\" now"), std::string::npos)
        << e.what();
  }
  // More epochs is a continuation, not another run.
  other = description();
  other.training["epochs"] = 5;
  EXPECT_EQ(am::fit(*r.model, r.optimizer, other, am::FitOptions().epochs(2).run_dir(dir.path().string()), step)
                .global_step,
            2);
  // Without resuming the folder is simply reused.
  other.model.options["inputs"] = 4;
  const auto s = am::fit(*r.model, r.optimizer, other,
                         am::FitOptions().epochs(1).run_dir(dir.path().string()).resume(false), step);
  EXPECT_EQ(s.global_step, 1);
}

TEST(Fit, RejectsNonsenseOptions) {
  Regression r;
  auto step = r.fn();
  EXPECT_THROW(am::fit(*r.model, r.optimizer, description(), am::FitOptions().epochs(0), step), c10::Error);
  EXPECT_THROW(am::fit(*r.model, r.optimizer, description(), am::FitOptions().steps_per_epoch(0), step), c10::Error);
  EXPECT_THROW(am::fit(*r.model, r.optimizer, description(), am::FitOptions().monitor("acc"), step), c10::Error);
}

// The after-backward hook sees the gradients of this step before the optimizer uses
// them: what it does to them (here: zero the weight's gradient, as an all-reduce
// would replace them) decides the update.
TEST(Fit, AfterBackwardHookRunsBetweenBackwardAndTheStep) {
  torch::manual_seed(0);
  Regression r;
  std::vector<std::int64_t> seen;
  am::FitHooks hooks;
  hooks.after_backward = [&](const am::StepContext& c) {
    seen.push_back(c.global_step);
    ASSERT_TRUE(r.model->weight.grad().defined());
    EXPECT_GT(r.model->weight.grad().abs().sum().item<float>(), 0.0f) << "backward has run";
    r.model->weight.grad().zero_();
  };
  torch::optim::SGD plain(r.model->parameters(), torch::optim::SGDOptions(0.05));
  const auto w0 = r.model->weight.clone();
  const auto b0 = r.model->bias.clone();
  am::fit(*r.model, plain, description(), am::FitOptions().epochs(2).steps_per_epoch(3), r.fn(), nullptr, nullptr,
          nullptr, hooks);
  EXPECT_EQ(seen, (std::vector<std::int64_t>{0, 1, 2, 3, 4, 5}));
  EXPECT_TRUE(torch::equal(r.model->weight, w0)) << "the step used the gradients the hook left";
  EXPECT_FALSE(torch::equal(r.model->bias, b0));
}

// The step's values set off before backward (with the loss forward computed) and are
// finished after it, before the after-backward hook; what reduce_step returns is what
// the run reports.
TEST(Fit, TheStepsValuesStartBeforeBackwardAndFinishAfterIt) {
  torch::manual_seed(0);
  Regression r;
  std::vector<std::string> calls;
  std::vector<double> started;
  am::FitHooks hooks;
  hooks.before_backward = [&](const am::StepLoss&) { calls.push_back("before_backward"); };
  hooks.start_reduce_step = [&](double loss, const am::Metrics&, std::int64_t examples, bool stop) {
    calls.push_back("start");
    EXPECT_FALSE(r.model->weight.grad().defined() && r.model->weight.grad().abs().sum().item<float>() > 0)
        << "backward has not run yet";
    EXPECT_GT(examples, 0);
    EXPECT_FALSE(stop);
    started.push_back(loss);
  };
  hooks.reduce_step = [&](double& loss, am::Metrics&, std::int64_t&, bool&) {
    calls.push_back("finish");
    EXPECT_GT(r.model->weight.grad().abs().sum().item<float>(), 0.0f) << "backward has run";
    EXPECT_EQ(loss, started.back()) << "the same values as were started";
    loss = 2.0;  // what all processes agreed on
  };
  hooks.after_backward = [&](const am::StepContext&) { calls.push_back("after_backward"); };
  Recorder rec;
  am::fit(*r.model, r.optimizer, description(), am::FitOptions().steps_per_epoch(2), r.fn(), nullptr, &rec,
          nullptr, hooks);
  const std::vector<std::string> step{"before_backward", "start", "finish", "after_backward"};
  std::vector<std::string> two_steps = step;
  two_steps.insert(two_steps.end(), step.begin(), step.end());
  EXPECT_EQ(calls, two_steps);
  ASSERT_EQ(rec.steps.size(), 2u);
  EXPECT_EQ(rec.steps[1].loss, 2.0);
}

TEST(Fit, ClipsTheGradientNormAfterTheHook) {
  torch::manual_seed(0);
  Regression r;
  am::FitHooks hooks;
  hooks.after_backward = [&](const am::StepContext&) {
    for (auto& p : r.model->parameters()) p.grad().mul_(1000.0);  // huge gradients
  };
  torch::optim::SGD plain(r.model->parameters(), torch::optim::SGDOptions(1.0));
  const auto w0 = torch::cat({r.model->weight.flatten(), r.model->bias.flatten()});
  am::fit(*r.model, plain, description(), am::FitOptions().clip_norm(0.5), r.fn(), nullptr, nullptr, nullptr, hooks);
  const auto w1 = torch::cat({r.model->weight.flatten(), r.model->bias.flatten()});
  EXPECT_NEAR((w1 - w0).norm().item<double>(), 0.5, 1e-5) << "one SGD step of lr 1 moves by the clipped norm";
}

// A process that is not the writer trains the same but writes nothing (its observer,
// a rank's own log, still hears it); the stop decision and the metrics pass through
// their hooks.
TEST(Fit, WriterStopAndMetricHooksDecideWhatEveryProcessDoes) {
  TempDir dir;
  torch::manual_seed(0);
  Regression r;
  Recorder rec;
  am::FitHooks quiet;
  quiet.writer = false;
  const auto s = am::fit(*r.model, r.optimizer, description(),
                         am::FitOptions().epochs(2).steps_per_epoch(2).run_dir(dir.file("w")).monitor("acc"), r.fn(),
                         [](std::int64_t) { return am::Metrics{{"acc", 0.5}}; }, &rec, nullptr, quiet);
  EXPECT_EQ(s.global_step, 4);
  EXPECT_EQ(rec.steps.size(), 4u);
  EXPECT_EQ(rec.epochs.size(), 2u);
  EXPECT_FALSE(std::filesystem::exists(dir.file("w/last.pt")));
  EXPECT_FALSE(std::filesystem::exists(dir.file("w/best.pt")));

  // Another process asked to stop after step 3: this one stops there too, though its own flag is down.
  Regression q;
  Recorder seen;
  am::FitHooks agree;
  agree.agree_stop = [&](bool local) {
    EXPECT_FALSE(local);
    return seen.steps.size() >= 3;
  };
  agree.reduce_metrics = [](const am::Metrics& m) {
    auto out = m;
    out["acc"] = 1.0 - m.at("acc");  // what all processes agreed on
    return out;
  };
  const auto stopped = am::fit(*q.model, q.optimizer, description(),
                               am::FitOptions().epochs(3).steps_per_epoch(2).run_dir(dir.file("s")).monitor("acc"),
                               q.fn(), [](std::int64_t) { return am::Metrics{{"acc", 0.25}}; }, &seen, nullptr, agree);
  EXPECT_EQ(stopped.status, am::FitStatus::kInterrupted);
  EXPECT_EQ(stopped.global_step, 3);
  ASSERT_EQ(seen.epochs.size(), 1u);
  EXPECT_DOUBLE_EQ(seen.epochs[0].eval_metrics.at("acc"), 0.75);
  EXPECT_DOUBLE_EQ(stopped.best, 0.75);
  EXPECT_EQ(am::read_checkpoint_info(dir.file("s/last.pt")).step, 3);
}

// Throughput counts the training steps only; validation time is reported apart.
TEST(Fit, ThroughputLeavesTheValidationTimeOut) {
  torch::manual_seed(0);
  Regression r;
  Recorder rec;
  am::fit(*r.model, r.optimizer, description(), am::FitOptions().epochs(1).steps_per_epoch(5), r.fn(),
          [](std::int64_t) {
            std::this_thread::sleep_for(std::chrono::milliseconds(300));
            return am::Metrics{};
          },
          &rec);
  ASSERT_EQ(rec.epochs.size(), 1u);
  const auto& e = rec.epochs[0];
  EXPECT_GE(e.eval_seconds, 0.3);
  EXPECT_LT(e.train_seconds, 0.3);
  EXPECT_NEAR(e.seconds, e.train_seconds + e.eval_seconds, 0.05);  // room for a descheduled thread
  EXPECT_NEAR(e.examples_per_second, 5 * 32 / e.train_seconds, 1e-6 * e.examples_per_second);
}

namespace {

/// Regression whose loss becomes nan (or whose gradient becomes inf) at chosen steps.
struct Poisoned : Regression {
  std::set<std::int64_t> nan_loss_at, nan_grad_at;
  am::LossFn fn() {
    return [this](const am::StepContext& c) {
      auto out = loss(c);
      if (nan_loss_at.count(c.global_step)) out.loss = out.loss * std::numeric_limits<float>::quiet_NaN();
      // sqrt at 0 has an infinite slope: the loss stays finite (0), the gradient is not.
      if (nan_grad_at.count(c.global_step)) out.loss = out.loss + (model->weight.sum() - model->weight.sum().detach()).sqrt();
      return out;
    };
  }
};

std::vector<torch::Tensor> parameter_copies(torch::nn::Module& m) {
  std::vector<torch::Tensor> out;
  for (const auto& p : m.parameters()) out.push_back(p.detach().clone());
  return out;
}

bool same_tensors(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  for (size_t i = 0; i < a.size(); ++i) {
    if (!torch::equal(a[i], b[i])) return false;
  }
  return a.size() == b.size();
}

}  // namespace

TEST(Fit, ANonFiniteLossStopsBeforeTheUpdateAndKeepsTheCheckpoints) {
  TempDir dir;
  Poisoned r;
  r.nan_loss_at = {7};  // step 8, in epoch 2 of 5-step epochs
  const auto options = am::FitOptions().epochs(3).steps_per_epoch(5).run_dir(dir.path().string());
  std::vector<torch::Tensor> before;
  Recorder rec;
  try {
    am::fit(*r.model, r.optimizer, description(), options,
            [&](const am::StepContext& c) {
              if (c.global_step == 7) before = parameter_copies(*r.model);
              return r.fn()(c);
            },
            nullptr, &rec, nullptr, r.hooks());
    FAIL() << "expected NonFiniteError";
  } catch (const am::NonFiniteError& e) {
    EXPECT_EQ(e.step(), 7);
    const std::string what = e.what();
    EXPECT_NE(what.find("the loss is nan at step 8 (epoch 2)"), std::string::npos) << what;
    EXPECT_NE(what.find("last.pt keeps step 5"), std::string::npos) << what;
  }
  EXPECT_TRUE(same_tensors(before, parameter_copies(*r.model))) << "the poisoned step must not update the parameters";
  EXPECT_EQ(rec.steps.size(), 7u) << "the poisoned step is not reported";
  EXPECT_EQ(am::read_checkpoint_info(dir.path().string() + "/last.pt").step, 5);
}

TEST(Fit, ANonFiniteGradientIsCaughtByName) {
  Poisoned r;
  r.nan_grad_at = {2};
  try {
    am::fit(*r.model, r.optimizer, description(), am::FitOptions().epochs(1).steps_per_epoch(5), r.fn());
    FAIL() << "expected NonFiniteError";
  } catch (const am::NonFiniteError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("the gradient of weight is not finite at step 3 (epoch 1)"), std::string::npos) << what;
    EXPECT_NE(what.find("no checkpoints are kept"), std::string::npos) << what;
  }
}

TEST(Fit, SkippingNonFiniteStepsLeavesThemOutOfTheMeansAndGoesOn) {
  TempDir dir;
  Poisoned r;
  r.nan_loss_at = {1, 3};
  r.nan_grad_at = {6};
  Recorder rec;
  const auto summary =
      am::fit(*r.model, r.optimizer, description(),
              am::FitOptions().epochs(2).steps_per_epoch(5).run_dir(dir.path().string()).skip_nonfinite(true), r.fn(), nullptr,
              &rec, nullptr, r.hooks());
  EXPECT_EQ(summary.status, am::FitStatus::kCompleted);
  EXPECT_EQ(summary.global_step, 10) << "a skipped step still consumes its batch";
  ASSERT_EQ(rec.epochs.size(), 2u);
  EXPECT_EQ(rec.epochs[0].skipped_steps, 2);
  EXPECT_EQ(rec.epochs[1].skipped_steps, 1);
  ASSERT_EQ(rec.steps.size(), 7u);
  double sum = 0;
  for (int i = 0; i < 3; ++i) sum += rec.steps[static_cast<size_t>(i)].loss;  // steps 0, 2, 4 of epoch 1
  EXPECT_NEAR(rec.epochs[0].mean_loss, sum / 3, 1e-9);
  for (const auto& p : r.model->parameters()) EXPECT_TRUE(torch::isfinite(p).all().item<bool>());
  EXPECT_EQ(am::read_checkpoint_info(dir.path().string() + "/last.pt").step, 10);
}

TEST(Fit, SkippingStopsAfterTooManyNonFiniteStepsInARow) {
  Poisoned r;
  for (std::int64_t s = 3; s < 3 + am::kMaxSkippedInARow + 5; ++s) r.nan_loss_at.insert(s);
  try {
    am::fit(*r.model, r.optimizer, description(),
            am::FitOptions().epochs(1).steps_per_epoch(200).skip_nonfinite(true), r.fn());
    FAIL() << "expected NonFiniteError";
  } catch (const am::NonFiniteError& e) {
    EXPECT_EQ(e.step(), 3 + am::kMaxSkippedInARow - 1);
    EXPECT_NE(std::string(e.what()).find(std::to_string(am::kMaxSkippedInARow) + " steps in a row"), std::string::npos)
        << e.what();
  }
}

TEST(Fit, ANonFiniteMetricIsNeverTheBest) {
  TempDir dir;
  Regression r;
  int calls = 0;
  const auto summary = am::fit(*r.model, r.optimizer, description(),
                               am::FitOptions().epochs(3).steps_per_epoch(2).run_dir(dir.path().string()).monitor("score"),
                               r.fn(),
                               [&](std::int64_t) {
                                 ++calls;
                                 return am::Metrics{{"score", calls == 2 ? std::nan("") : calls * 1.0},
                                                    {"side", std::numeric_limits<double>::infinity()}};
                               },
                               nullptr, nullptr, r.hooks());
  EXPECT_TRUE(summary.has_best);
  EXPECT_EQ(summary.best, 3.0);
  // Both checkpoints load: no non-finite number reached their descriptions.
  EXPECT_EQ(am::read_checkpoint_info(dir.path().string() + "/best.pt").step, 6);
  EXPECT_EQ(am::read_checkpoint_info(dir.path().string() + "/last.pt").step, 6);
}

TEST(RunFolderLock, ASecondRunOnTheFolderFailsNamingTheHolderUntilItEnds) {
  TempDir dir;
  const auto folder = dir.path().string() + "/run";
  std::filesystem::create_directories(folder);
  // The holder: another process taking the lock the way attend does (open, flock,
  // its pid in the file). Only system calls after fork.
  int to_child[2], to_parent[2];
  ASSERT_EQ(::pipe(to_child), 0);
  ASSERT_EQ(::pipe(to_parent), 0);
  const auto lock_path = folder + "/" + attend::RunFolderLock::kFileName;
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    const int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0 || ::flock(fd, LOCK_EX | LOCK_NB) != 0) ::_exit(3);
    char pid[24];
    const int n = std::snprintf(pid, sizeof pid, "%d\n", static_cast<int>(::getpid()));
    if (::pwrite(fd, pid, static_cast<size_t>(n), 0) != n) ::_exit(4);
    char c = 'x';
    if (::write(to_parent[1], &c, 1) != 1) ::_exit(5);
    if (::read(to_child[0], &c, 1) < 0) ::_exit(6);  // hold until told (or killed)
    ::_exit(0);
  }
  char c;
  ASSERT_EQ(::read(to_parent[0], &c, 1), 1);
  try {
    attend::RunFolderLock lock(folder);
    FAIL() << "expected the folder to be in use";
  } catch (const attend::IoError& e) {
    EXPECT_EQ(std::string(e.what()), folder + ": in use by another run (process " + std::to_string(child) +
                                         "); wait for it to end or use another run folder");
  }
  // The engine refuses too, before it reads or writes anything.
  Regression r;
  EXPECT_THROW(am::fit(*r.model, r.optimizer, description(), am::FitOptions().run_dir(folder), r.fn()),
               attend::IoError);
  EXPECT_FALSE(std::filesystem::exists(folder + "/last.pt"));
  // Killed: its lock file stays behind but no longer blocks.
  ::kill(child, SIGKILL);
  int status = 0;
  ::waitpid(child, &status, 0);
  EXPECT_TRUE(std::filesystem::exists(lock_path));
  {
    attend::RunFolderLock first(folder);
    attend::RunFolderLock again(folder);  // the same process may take it twice (CLI, then engine)
    std::ifstream in(lock_path);
    std::string holder;
    in >> holder;
    EXPECT_EQ(holder, std::to_string(::getpid()));
    // What a fit() inside the CLI's lock does.
    EXPECT_NO_THROW(am::fit(*r.model, r.optimizer, description(), am::FitOptions().run_dir(folder), r.fn()));
  }
  for (int fd : {to_child[0], to_child[1], to_parent[0], to_parent[1]}) ::close(fd);
}
