#include "progress.h"

#include <test_support.h>

#include <nlohmann/json.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <sstream>

namespace am = attend::models;
using attend::cli::format_duration;
using attend::testing::TempDir;

TEST(FormatDuration, MinutesSecondsAndHours) {
  EXPECT_EQ(format_duration(9.4), "0:09");
  EXPECT_EQ(format_duration(247), "4:07");
  EXPECT_EQ(format_duration(3903), "1:05:03");
  EXPECT_EQ(format_duration(-1), "--:--");
  EXPECT_EQ(format_duration(std::numeric_limits<double>::infinity()), "--:--");
}

namespace {

am::StepReport step(std::int64_t global, double loss) {
  am::StepReport r;
  r.epoch = (global - 1) / 10;
  r.epochs = 2;
  r.step_in_epoch = (global - 1) % 10;
  r.steps_per_epoch = 10;
  r.global_step = global;
  r.examples = 100;
  r.loss = loss;
  return r;
}

}  // namespace

TEST(ProgressObserver, PlainModePrintsAtIntervalsWithRateAndEta) {
  std::ostringstream out;
  double now = 0.0;
  attend::cli::ProgressObserver progress(out, /*terminal=*/false, /*plain_seconds=*/5.0, [&] { return now; });
  progress.on_train_begin({"ram", "", 2, 10, 0, 0, false});
  for (std::int64_t s = 1; s <= 10; ++s) {
    now = static_cast<double>(s);  // one second per step
    progress.on_step(step(s, 1.0));
  }
  const auto text = out.str();
  EXPECT_NE(text.find("training ram: 2 epochs of 10 steps"), std::string::npos) << text;
  // Printed at t=1 (first) and t=6: two step lines.
  EXPECT_NE(text.find("epoch 1/2  step 1/10  100 ex/s  ETA 0:19  loss 1.0000"), std::string::npos) << text;
  EXPECT_NE(text.find("epoch 1/2  step 6/10  100 ex/s  ETA 0:14"), std::string::npos) << text;
  EXPECT_EQ(text.find("step 2/10"), std::string::npos) << text;
  EXPECT_EQ(text.find('\r'), std::string::npos) << "no carriage returns in logs";
}

TEST(ProgressObserver, TerminalModeRedrawsOneLine) {
  std::ostringstream out;
  double now = 0.0;
  attend::cli::ProgressObserver progress(out, /*terminal=*/true, 5.0, [&] { return now; });
  progress.on_train_begin({"ram", "", 2, 10, 0, 0, false});
  for (std::int64_t s = 1; s <= 3; ++s) {
    now = static_cast<double>(s);
    progress.on_step(step(s, 2.0));
  }
  am::EpochReport e;
  e.epoch = 0;
  e.epochs = 2;
  e.mean_loss = 0.5;
  e.eval_metrics = {{"accuracy", 0.75}};
  e.improved = true;
  progress.on_epoch_end(e);
  const auto text = out.str();
  EXPECT_EQ(std::count(text.begin(), text.end(), '\r'), 4) << "3 redraws and one clear";
  EXPECT_NE(text.find("val_accuracy 0.7500  (best)\n"), std::string::npos) << text;
}

TEST(ProgressObserver, SaysValidationTimeApartAndCountsInGoodEnglish) {
  std::ostringstream out;
  attend::cli::ProgressObserver progress(out, /*terminal=*/false, 5.0, [] { return 0.0; });
  progress.on_train_begin({"fc", "", 1, 1, 0, 0, false});
  am::EpochReport e;
  e.epoch = 0;
  e.epochs = 1;
  e.seconds = 12;
  e.train_seconds = 10;
  e.eval_seconds = 2;
  e.examples_per_second = 5000;
  progress.on_epoch_end(e);
  am::FitSummary summary;
  summary.epochs_done = 1;
  summary.global_step = 1;
  progress.on_train_end(summary);
  const auto text = out.str();
  EXPECT_NE(text.find("training fc: 1 epoch of 1 step\n"), std::string::npos) << text;
  EXPECT_NE(text.find("done in 0:12 (validation 0:02)  5000 ex/s training"), std::string::npos) << text;
  EXPECT_NE(text.find("after 1 epoch, 1 step,"), std::string::npos) << text;
}

TEST(MetricsJsonl, AppendsOneParsableLinePerEvent) {
  TempDir dir;
  const auto path = dir.file("metrics.jsonl");
  for (int run = 0; run < 2; ++run) {
    attend::cli::MetricsJsonl metrics(path, /*every_steps=*/5);
    metrics.on_train_begin({"ram", dir.path().string(), 2, 10, 0, 0, run == 1});
    for (std::int64_t s = 1; s <= 10; ++s) metrics.on_step(step(s, 0.1 * static_cast<double>(s)));
    am::EpochReport e;
    e.eval_metrics = {{"accuracy", 0.5}};
    metrics.on_epoch_end(e);
    am::FitSummary summary;
    summary.status = am::FitStatus::kInterrupted;
    metrics.on_train_end(summary);
  }
  std::ifstream in(path);
  std::vector<nlohmann::json> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(lines.size(), 10u) << "2 runs x (begin, 2 steps, epoch, end)";
  EXPECT_EQ(lines[0]["event"], "begin");
  EXPECT_EQ(lines[1]["event"], "step");
  EXPECT_EQ(lines[1]["step"], 5);
  EXPECT_DOUBLE_EQ(lines[2]["loss"].get<double>(), 1.0);
  EXPECT_EQ(lines[3]["eval"]["accuracy"], 0.5);
  EXPECT_EQ(lines[4]["status"], "interrupted");
  EXPECT_EQ(lines[5]["resumed"], true);
  EXPECT_GT(lines[5]["time"].get<double>(), 1.7e9);
}

// Training accuracy far above validation accuracy for several epochs in a row gives
// one warning naming the cure; a gap that closes again, or a small one, gives none.
TEST(OverfittingWarning, WarnsOnceAfterSeveralEpochsOfAWideGap) {
  auto epoch = [](double train, double validation) {
    am::EpochReport e;
    e.train_metrics = {{"accuracy", train}};
    e.eval_metrics = {{"accuracy", validation}};
    return e;
  };
  std::ostringstream out;
  attend::cli::OverfittingWarning warning(out, "try --shift", /*margin=*/0.15, /*epochs=*/3);
  warning.on_epoch_end(epoch(0.9, 0.5));
  warning.on_epoch_end(epoch(0.9, 0.5));
  warning.on_epoch_end(epoch(0.6, 0.5));  // the run of wide gaps is broken
  warning.on_epoch_end(epoch(0.9, 0.5));
  warning.on_epoch_end(epoch(0.9, 0.5));
  EXPECT_EQ(out.str(), "");
  EXPECT_FALSE(warning.warned());
  warning.on_epoch_end(epoch(0.92, 0.27));
  EXPECT_EQ(out.str(),
            "attend: warning: training accuracy 92.0% but validation accuracy 27.0% for 3 epochs in a row: the model "
            "is memorising its training images; try --shift\n");
  warning.on_epoch_end(epoch(0.95, 0.2));
  const auto text = out.str();
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 1) << "once per run";

  std::ostringstream quiet;
  attend::cli::OverfittingWarning healthy(quiet, "try --shift");
  for (int i = 0; i < 20; ++i) healthy.on_epoch_end(epoch(0.99, 0.97));
  am::EpochReport no_validation;
  no_validation.train_metrics = {{"accuracy", 1.0}};
  for (int i = 0; i < 5; ++i) healthy.on_epoch_end(no_validation);
  EXPECT_EQ(quiet.str(), "");
}
