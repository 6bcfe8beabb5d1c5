// The CLI's guarantees against bad input that reach into the library: labels and
// split shapes checked before training, library preconditions reported as usage
// errors naming the option, non-finite options and steps, and metrics.jsonl's
// record of a resume. (Cross-process cases, such as two runs on one folder and
// signals, run the real binary: tests/apps/bad_inputs.cmake.)

#include "run_cli.h"

#include <attend/datasets/idx.h>

#include <test_support.h>

#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace ds = attend::datasets;
namespace fs = std::filesystem;
using attend::testing::run;
using attend::testing::TempDir;

namespace {

/// 30 training and 10 test 10x10 items, labels i % 10; `bad_label` replaces the
/// training label at index 17 when >= 0; `test_side` sets the test images' side.
void write_labelled_set(const std::string& dir, int bad_label = -1, std::int64_t test_side = 10) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(7);
  auto labels = (torch::arange(30) % 10).to(torch::kUInt8);
  if (bad_label >= 0) labels[17] = bad_label;
  ds::write_idx(dir + "/train-images-idx3-ubyte", torch::randint(0, 256, {30, 10, 10}, gen, torch::kUInt8));
  ds::write_idx(dir + "/train-labels-idx1-ubyte", labels);
  ds::write_idx(dir + "/t10k-images-idx3-ubyte", torch::randint(0, 256, {10, test_side, test_side}, gen, torch::kUInt8));
  ds::write_idx(dir + "/t10k-labels-idx1-ubyte", (torch::arange(10) % 10).to(torch::kUInt8));
}

/// A 28x28 source for scenes, 12 items per split.
void write_scene_source(const std::string& dir, int bad_label = -1) {
  for (const char* prefix : {"train", "t10k"}) {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(3);
    auto labels = (torch::arange(12) % 10).to(torch::kUInt8);
    if (bad_label >= 0 && prefix[1] == 'r') labels[5] = bad_label;
    ds::write_idx(dir + "/" + prefix + "-images-idx3-ubyte", torch::randint(0, 256, {12, 28, 28}, gen, torch::kUInt8));
    ds::write_idx(dir + "/" + prefix + "-labels-idx1-ubyte", labels);
  }
}

std::vector<std::string> reliability_train_args(const std::string& data, const std::string& run_dir, int epochs = 1) {
  return {"train", "fc",      "--data",       data, "--run-dir", run_dir, "--epochs", std::to_string(epochs),
          "--batch", "8", "--val-count", "5"};
}

void expect_one_error_line(const attend::testing::CliRun& r, int code, const std::string& needle) {
  EXPECT_EQ(r.code, code) << r.err;
  EXPECT_NE(r.err.find(needle), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

}  // namespace

TEST(CliReliability, LabelsOutsideTheModelsClassesStopTrainingBeforeItStarts) {
  TempDir dir;
  const auto data = dir.file("data");
  fs::create_directories(data);
  write_labelled_set(data, 200);
  const auto r = run(reliability_train_args(data, dir.file("run")));
  expect_one_error_line(r, 1, data + "/train-labels-idx1-ubyte: label 200 at index 17 is outside 0..9");
  EXPECT_FALSE(fs::exists(dir.file("run"))) << "nothing written";
  // A model with enough classes takes them.
  auto args = reliability_train_args(data, dir.file("run201"));
  args.insert(args.end(), {"--classes", "201"});
  EXPECT_EQ(run(args).code, 0);
}

TEST(CliReliability, SplitsOfDifferentImageSizesStopTrainingBeforeItStarts) {
  TempDir dir;
  const auto data = dir.file("data");
  fs::create_directories(data);
  write_labelled_set(data, -1, 12);
  const auto r = run(reliability_train_args(data, dir.file("run")));
  expect_one_error_line(r, 1, data + ": the test split holds 1x12x12 images but the training split 1x10x10");
  EXPECT_FALSE(fs::exists(dir.file("run")));
}

TEST(CliReliability, DataRefusesASourceWhoseLabelsAreNotItsClasses) {
  TempDir dir;
  const auto source = dir.file("source");
  fs::create_directories(source);
  write_scene_source(source, 200);
  const auto out = dir.file("out");
  expect_one_error_line(run({"data", "cluttered", "--source", source, "--out", out}), 1,
                  source + "/train-labels-idx1-ubyte: label 200 at index 5 is outside 0..9");
  EXPECT_FALSE(fs::exists(out + "/train-labels-idx1-ubyte"));
  // --classes says how many there are.
  EXPECT_EQ(run({"data", "cluttered", "--source", source, "--out", out, "--classes", "201", "--sheet", "0"}).code, 0);
  EXPECT_EQ(ds::read_idx(out + "/train-labels-idx1-ubyte")[5].item<int>(), 200);
}

TEST(CliReliability, SceneSizesTheDigitsCannotFitAreUsageErrorsNamingTheOption) {
  TempDir dir;
  const auto source = dir.file("source");
  fs::create_directories(source);
  write_scene_source(source);
  for (const auto& command : {std::vector<std::string>{"data", "cluttered", "--source", source, "--out", dir.file("o")},
                              std::vector<std::string>{"train", "cnn", "--scenes", "cluttered", "--source", source,
                                                       "--run-dir", dir.file("r")}}) {
    auto canvas = command;
    canvas.insert(canvas.end(), {"--canvas", "5"});
    expect_one_error_line(run(canvas), 2, "--canvas must be between 28 (the side of the digits in " + source + ") and 4096, got 5");
    auto fragment = command;
    fragment.insert(fragment.end(), {"--fragment-size", "100"});
    expect_one_error_line(run(fragment), 2, "--fragment-size must be between 1 and 28");
  }
  EXPECT_FALSE(fs::exists(dir.file("o")));
  EXPECT_FALSE(fs::exists(dir.file("r")));
}

TEST(CliReliability, NegativeSeedsAndNonFiniteNumbersAreUsageErrors) {
  TempDir dir;
  const auto source = dir.file("source");
  fs::create_directories(source);
  write_scene_source(source);
  const std::vector<std::string> data = {"data", "cluttered", "--source", source, "--out", dir.file("o")};
  for (const auto& seed : {std::vector<std::string>{"--seed", "-1"}, std::vector<std::string>{"--seed=-7"}}) {
    auto args = data;
    args.insert(args.end(), seed.begin(), seed.end());
    expect_one_error_line(run(args), 2, "--seed must be a whole number from 0 to 18446744073709551615, got -");
    // Before the command word too.
    args = seed;
    args.insert(args.end(), data.begin(), data.end());
    EXPECT_EQ(run(args).code, 2);
  }
  // Every floating option, whichever command reads it.
  const auto set = dir.file("set");
  fs::create_directories(set);
  write_labelled_set(set);
  for (const auto& [flag, value] : std::vector<std::pair<std::string, std::string>>{
           {"--rotate", "nan"}, {"--lr", "inf"}, {"--weight-decay", "-inf"}, {"--scale-jitter", "nan"}}) {
    auto args = reliability_train_args(set, dir.file("r"));
    args.insert(args.end(), {flag, value});
    expect_one_error_line(run(args), 2, flag + " must be a finite number, got ");
  }
  EXPECT_FALSE(fs::exists(dir.file("o")));
  EXPECT_FALSE(fs::exists(dir.file("r")));
}

TEST(CliReliability, ADivergingRunStopsNamingTheStepOrSkipsOnRequest) {
  TempDir dir;
  const auto set = dir.file("set");
  fs::create_directories(set);
  write_labelled_set(set);
  // SGD with a learning rate of 1e30: the first step's update makes the next loss nan.
  auto args = reliability_train_args(set, dir.file("r"), 2);
  args.insert(args.end(), {"--optimizer", "sgd", "--momentum", "0", "--lr", "1e30"});
  const auto stopped = run(args);
  EXPECT_EQ(stopped.code, 1) << stopped.err;
  EXPECT_NE(stopped.err.find("attend: error: training stopped: the loss is nan at step 2 (epoch 1); the update was not "
                             "applied and no checkpoint was written yet"),
            std::string::npos)
      << stopped.err;
  EXPECT_FALSE(fs::exists(dir.file("r/last.pt")));

  args = reliability_train_args(set, dir.file("s"), 2);
  args.insert(args.end(), {"--optimizer", "sgd", "--momentum", "0", "--lr", "1e30", "--on-nonfinite", "skip"});
  const auto skipped = run(args);
  EXPECT_EQ(skipped.code, 0) << skipped.err;
  EXPECT_NE(skipped.err.find("non-finite step"), std::string::npos) << skipped.err;
  std::ifstream metrics(dir.file("s/metrics.jsonl"));
  std::int64_t total = 0, steps = 0;
  for (std::string line; std::getline(metrics, line);) {
    const auto j = nlohmann::json::parse(line);
    if (j["event"] == "begin") steps = j["steps_per_epoch"].get<std::int64_t>();
    if (j["event"] == "epoch") total += j["skipped_steps"].get<std::int64_t>();
  }
  EXPECT_EQ(total, 2 * steps - 1) << "every step but the first";

  args.back() = "maybe";
  expect_one_error_line(run(args), 2, "--on-nonfinite must be one of stop, skip, got 'maybe'");
}

TEST(CliReliability, MetricsJsonlMarksAResumeWithTheStepItResumedFrom) {
  TempDir dir;
  const auto set = dir.file("set");
  fs::create_directories(set);
  write_labelled_set(set);
  auto args = reliability_train_args(set, dir.file("r"), 1);
  ASSERT_EQ(run(args).code, 0);
  args = reliability_train_args(set, dir.file("r"), 2);
  ASSERT_EQ(run(args).code, 0);
  std::ifstream metrics(dir.file("r/metrics.jsonl"));
  std::vector<nlohmann::json> begins;
  for (std::string line; std::getline(metrics, line);) {
    const auto j = nlohmann::json::parse(line);
    if (j["event"] == "begin") begins.push_back(j);
  }
  ASSERT_EQ(begins.size(), 2u);
  EXPECT_EQ(begins[0]["resumed"], false);
  EXPECT_EQ(begins[0]["start_step"], 0);
  EXPECT_EQ(begins[1]["resumed"], true);
  EXPECT_EQ(begins[1]["start_step"], begins[0]["steps_per_epoch"]) << "it resumed after epoch 1";
}
