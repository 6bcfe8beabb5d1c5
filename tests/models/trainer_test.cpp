#include <attend/io_error.h>
#include <attend/models/trainer.h>

#include <test_support.h>

#include <torch/torch.h>

#include <gtest/gtest.h>

namespace am = attend::models;
using attend::testing::TempDir;

namespace {

/// Linear regression whose batches depend only on (epoch, step) and whose step adds
/// noise from the default generator, so an exact resume needs both restored.
struct Regression {
  torch::nn::Linear model{torch::nn::LinearOptions(3, 1)};
  torch::optim::SGD optimizer{model->parameters(), torch::optim::SGDOptions(0.05).momentum(0.5)};
  torch::Tensor true_w = torch::tensor({{1.5f}, {-2.0f}, {0.5f}});

  am::StepOutput step(const am::StepContext& c) {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(1000 * c.epoch + c.step_in_epoch);
    auto x = torch::randn({32, 3}, gen);
    auto y = x.mm(true_w) + 0.01 * torch::randn({32, 1});
    optimizer.zero_grad();
    auto loss = torch::mse_loss(model(x), y);
    loss.backward();
    optimizer.step();
    return {loss.item<double>(), 32, {{"abs_err", (model(x) - y).abs().mean().item<double>()}}};
  }
};

am::CheckpointInfo description() {
  am::CheckpointInfo d;
  d.kind = "regression";
  d.options = {{"inputs", 3}};
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
                               [&](const am::StepContext& c) { return r.step(c); }, nullptr, &rec);
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
          [&](const am::StepContext& c) { return straight.step(c); });

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
                            [&](const am::StepContext& c) { return first.step(c); }, nullptr, &rec, &stop);
    EXPECT_EQ(s1.status, am::FitStatus::kInterrupted);
    EXPECT_EQ(s1.global_step, stop_after);

    torch::manual_seed(7);  // a new process: different seed, fresh weights
    Regression second;
    Recorder rec2;
    const auto s2 = am::fit(*second.model, second.optimizer, description(), am::FitOptions(opts).run_dir(run_dir),
                            [&](const am::StepContext& c) { return second.step(c); }, nullptr, &rec2);
    EXPECT_EQ(s2.status, am::FitStatus::kCompleted);
    ASSERT_EQ(rec2.begins.size(), 1u);
    EXPECT_TRUE(rec2.begins[0].resumed);
    EXPECT_EQ(rec2.begins[0].start_step, stop_after);
    EXPECT_EQ(static_cast<std::int64_t>(rec2.steps.size()), 21 - stop_after);
    EXPECT_TRUE(torch::equal(second.model->weight, straight.model->weight));
    EXPECT_TRUE(torch::equal(second.model->bias, straight.model->bias));
  }
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
      [&](const am::StepContext& c) { return r.step(c); },
      [&](std::int64_t epoch) { return am::Metrics{{"acc", scores[static_cast<size_t>(epoch)]}}; }, &rec);
  EXPECT_EQ(summary.status, am::FitStatus::kStoppedEarly);
  EXPECT_EQ(summary.epochs_done, 4);
  EXPECT_TRUE(summary.has_best);
  EXPECT_DOUBLE_EQ(summary.best, 0.7);
  ASSERT_EQ(rec.epochs.size(), 4u);
  EXPECT_FALSE(rec.epochs[0].improved && rec.epochs[2].improved);
  EXPECT_TRUE(rec.epochs[1].improved);
  const auto best = am::read_checkpoint_info(summary.best_checkpoint);
  EXPECT_EQ(best.epoch, 2);
  EXPECT_DOUBLE_EQ(best.state["eval_metrics"]["acc"].get<double>(), 0.7);
  EXPECT_EQ(am::read_checkpoint_info(summary.last_checkpoint).epoch, 4);
}

TEST(Fit, RefusesToResumeARunWithOtherOptions) {
  TempDir dir;
  Regression r;
  auto step = [&](const am::StepContext& c) { return r.step(c); };
  am::fit(*r.model, r.optimizer, description(), am::FitOptions().run_dir(dir.path().string()), step);
  auto other = description();
  other.options["inputs"] = 4;
  try {
    am::fit(*r.model, r.optimizer, other, am::FitOptions().epochs(2).run_dir(dir.path().string()), step);
    ADD_FAILURE() << "resumed a run with other options";
  } catch (const attend::IoError& e) {
    EXPECT_NE(std::string(e.what()).find("differ from this run's"), std::string::npos) << e.what();
  }
  // Without resuming the folder is simply reused.
  const auto s = am::fit(*r.model, r.optimizer, other,
                         am::FitOptions().epochs(1).run_dir(dir.path().string()).resume(false), step);
  EXPECT_EQ(s.global_step, 1);
}

TEST(Fit, RejectsNonsenseOptions) {
  Regression r;
  auto step = [&](const am::StepContext& c) { return r.step(c); };
  EXPECT_THROW(am::fit(*r.model, r.optimizer, description(), am::FitOptions().epochs(0), step), c10::Error);
  EXPECT_THROW(am::fit(*r.model, r.optimizer, description(), am::FitOptions().steps_per_epoch(0), step), c10::Error);
  EXPECT_THROW(am::fit(*r.model, r.optimizer, description(), am::FitOptions().monitor("acc"), step), c10::Error);
}
