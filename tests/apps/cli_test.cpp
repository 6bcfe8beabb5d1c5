#include "cli.h"
#include "run_cli.h"
#include "interrupt.h"

#include <attend/attention/additive.h>
#include <attend/datasets/idx.h>
#include <attend/datasets/parallel.h>
#include <attend/models/registry.h>

#include <ATen/Parallel.h>

#include <test_support.h>

#include <torch/torch.h>

#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>

#include <gtest/gtest.h>

#include <set>
#include <sstream>
#include <thread>

namespace ds = attend::datasets;
using attend::testing::contains;
using attend::testing::read_bytes;
using attend::testing::TempDir;
using attend::testing::run;

namespace {

/// A tiny MNIST-style source folder: 12 distinct 10x10 digits per split.
void write_source(const std::string& dir) {
  for (const char* prefix : {"train", "t10k"}) {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(prefix[0] == 't' && prefix[1] == 'r' ? 1 : 2);
    ds::write_idx(dir + "/" + prefix + "-images-idx3-ubyte", torch::randint(1, 256, {12, 10, 10}, gen, torch::kUInt8));
    ds::write_idx(dir + "/" + prefix + "-labels-idx1-ubyte", (torch::arange(12) % 10).to(torch::kUInt8));
  }
}

/// A learnable source: class k is a bright vertical bar in column k of a noisy 10x10
/// image, 20 training and 10 test items per class.
void write_bars(const std::string& dir) {
  for (const auto& [prefix, per_class] : std::vector<std::pair<std::string, int>>{{"train", 20}, {"t10k", 10}}) {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(prefix == "train" ? 3 : 4);
    const auto n = 10 * per_class;
    auto images = torch::randint(0, 60, {n, 10, 10}, gen, torch::kUInt8);
    const auto labels = torch::randperm(n, gen) % 10;
    for (std::int64_t i = 0; i < n; ++i) images[i].select(1, labels[i].item<std::int64_t>()).fill_(255);
    ds::write_idx(dir + "/" + prefix + "-images-idx3-ubyte", images);
    ds::write_idx(dir + "/" + prefix + "-labels-idx1-ubyte", labels.to(torch::kUInt8));
  }
}

/// 28x28 items (random strokes), 40 training and 20 test items, labels (i + i / 10) % 10
/// (so that the validation items, every tenth, still cover several classes).
void write_items(const std::string& dir) {
  for (const auto& [prefix, n] : std::vector<std::pair<std::string, int>>{{"train", 40}, {"t10k", 20}}) {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(prefix == "train" ? 5 : 6);
    auto images = torch::zeros({n, 28, 28}, torch::kUInt8);
    images.narrow(1, 6, 16).narrow(2, 8, 12).copy_(torch::randint(100, 256, {n, 16, 12}, gen, torch::kUInt8));
    ds::write_idx(dir + "/" + prefix + "-images-idx3-ubyte", images);
    const auto i = torch::arange(n);
    ds::write_idx(dir + "/" + prefix + "-labels-idx1-ubyte", ((i + i.div(10, "floor")) % 10).to(torch::kUInt8));
  }
}

}  // namespace

namespace fs = std::filesystem;

// attend data objects writes a caption data set: images, masks, instances, the JSON
// with the asked counts per split, a contact sheet and a manifest.
TEST(CliData, ObjectScenesWriteACaptionDataSet) {
  TempDir dir;
  write_items(dir.path().string());
  const auto out = dir.file("objects");
  const auto r = run({"data", "objects", "--source", dir.path().string(), "--level", "2", "--count", "12",
                      "--val-count", "3", "--test-count", "5", "--colour", "--background", "noise", "--sheet", "4",
                      "--out", out});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "wrote 12 train, 3 val and 5 test scenes (64x64, digits, colour, noise)")) << r.out;
  const auto j = nlohmann::json::parse(std::ifstream(out + "/dataset_objects.json"));
  ASSERT_EQ(j["images"].size(), 20u);
  std::map<std::string, int> splits;
  for (const auto& entry : j["images"]) {
    ++splits[entry["split"].get<std::string>()];
    EXPECT_EQ(entry["objects"].size(), 2u);
    EXPECT_EQ(entry["sentences"].size(), 2u);
    EXPECT_TRUE(fs::exists(out + "/images/" + entry["filename"].get<std::string>()));
    EXPECT_TRUE(fs::exists(out + "/" + entry["mask"].get<std::string>()));
  }
  EXPECT_EQ(splits, (std::map<std::string, int>{{"test", 5}, {"train", 12}, {"val", 3}}));
  const auto sheet = cv::imread(out + "/contact-sheet.png");
  EXPECT_EQ(sheet.cols, 4 + 4 * (64 * 3 + 4)) << "4 tiles of 64 px at scale 3";
  const auto manifest = nlohmann::json::parse(std::ifstream(out + "/manifest.json"));
  EXPECT_EQ(manifest["options"]["objects"], nlohmann::json({2, 2}));
  EXPECT_EQ(manifest["options"]["background"], "noise");
  // The same command with the same seed writes the same bytes.
  const auto again = run({"data", "objects", "--source", dir.path().string(), "--level", "2", "--count", "12",
                          "--val-count", "3", "--test-count", "5", "--colour", "--background", "noise", "--sheet",
                          "0", "--out", dir.file("again")});
  ASSERT_EQ(again.code, 0) << again.err;
  std::stringstream a, b;
  a << std::ifstream(out + "/dataset_objects.json").rdbuf();
  b << std::ifstream(dir.file("again/dataset_objects.json")).rdbuf();
  EXPECT_EQ(a.str(), b.str());
}

// Bad object-scene options: one line naming the option, exit 2; a source of the wrong
// size: exit 1 naming the folder.
TEST(CliData, ObjectScenesRefuseBadOptionsByName) {
  TempDir dir;
  write_items(dir.path().string());
  const auto src = dir.path().string();
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases{
      {{"--objects", "0"}, "--objects must be a count or a range within 1..9"},
      {{"--objects", "3-2"}, "--objects must be a count or a range within 1..9"},
      {{"--objects", "two"}, "--objects must be a count or a range like 1-4"},
      {{"--level", "4"}, "--level must be between 1 and 3"},
      {{"--level", "2", "--objects", "2"}, "give --level or --objects, not both"},
      {{"--size", "2"}, "--size must be a fraction or a range A,B within 0.1..1"},
      {{"--size", "0.5,0.2"}, "--size must be"},
      {{"--items", "cats"}, "--items must be one of digits, fashion, both"},
      {{"--background", "white"}, "--background must be one of black, noise, clutter"},
      {{"--canvas", "16"}, "--canvas must be between 32 and 1024"},
      {{"--jitter", "nan"}, "--jitter"},
      {{"--hold-out", "3 near 7"}, "--hold-out: a held-out triple reads"},
      {{"--hold-out", "cat left of 7"}, "names 'cat', which is not a class word of digits"},
      {{"--gzip"}, "--gzip does not apply to object scenes"},
      {{"--fragment-size", "40"}, "--fragment-size must be between 2 and 28"},
      {{"--size", "0.3x"}, "--size must be"},
      {{"--size", "0.2,0.3,0.4"}, "--size must be"},
      {{"--objects", "2-"}, "--objects must be a count or a range like 1-4"},
      {{"--level", "1", "--hold-out", "3 left of 7"}, "--hold-out applies to two-object scenes, and these have 1-1"},
      {{"--level", "3", "--relation-margin", "4"}, "--relation-margin applies to two-object scenes"},
      {{"--background-level", "50"}, "--background-level applies to --background noise or clutter"},
      {{"--background", "noise", "--fragments", "3"}, "--fragments applies to --background clutter"},
  };
  for (const auto& [args, message] : cases) {
    std::vector<std::string> command{"data", "objects", "--source", src, "--count", "2", "--out", dir.file("o")};
    command.insert(command.end(), args.begin(), args.end());
    const auto r = run(command);
    EXPECT_EQ(r.code, 2) << args[0];
    EXPECT_TRUE(contains(r.err, message)) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
  const auto level_on_digits = run({"data", "cluttered", "--level", "2"});
  EXPECT_EQ(level_on_digits.code, 2);
  EXPECT_TRUE(contains(level_on_digits.err, "--level applies to 'attend data objects', not to cluttered scenes"))
      << level_on_digits.err;
  write_bars(dir.file("bars"));
  const auto small = run({"data", "objects", "--source", dir.file("bars"), "--out", dir.file("o")});
  EXPECT_EQ(small.code, 1);
  EXPECT_TRUE(contains(small.err, "object scenes are made of 28x28 grey items")) << small.err;
}

// attend score: the caption metrics of a candidates file against a Karpathy-layout
// data set; candidates identical to a reference score 1 (BLEU, ROUGE-L), a wrong word
// less; every image of the split needs exactly one candidate.
TEST(CliScore, ScoresCandidatesAgainstReferencesAndNamesMissingOnes) {
  TempDir dir;
  const nlohmann::json references = {
      {"dataset", "tiny"},
      {"images",
       {{{"filename", "a.png"}, {"imgid", 0}, {"split", "test"},
         {"sentences", {{{"tokens", {"a", "3", "to", "the", "left", "of", "a", "7"}}, {"raw", "A 3 to the left of a 7."}},
                        {{"tokens", {"a", "7", "to", "the", "right", "of", "a", "3"}}, {"raw", "a 7 to the right of a 3"}}}}},
        {{"filename", "b.png"}, {"imgid", 1}, {"split", "test"},
         {"sentences", {{{"tokens", {"a", "1", "above", "a", "2"}}, {"raw", "a 1 above a 2"}}}}},
        {{"filename", "c.png"}, {"imgid", 2}, {"split", "val"},
         {"sentences", {{{"tokens", {"a", "5", "below", "a", "6"}}, {"raw", "a 5 below a 6"}}}}}}}};
  std::ofstream(dir.file("refs.json")) << references.dump();
  auto score = [&](const nlohmann::json& candidates, std::vector<std::string> extra = {}) {
    std::ofstream(dir.file("cands.json")) << candidates.dump();
    std::vector<std::string> args{"score", "--references", dir.file("refs.json"), "--candidates",
                                  dir.file("cands.json")};
    args.insert(args.end(), extra.begin(), extra.end());
    return run(args);
  };
  const auto perfect = score({{{"image", "a.png"}, {"caption", "A 3 to the left of a 7"}},
                              {{"image", 1}, {"caption", "a 1 above a 2."}}},
                             {"--json"});
  ASSERT_EQ(perfect.code, 0) << perfect.err;
  const auto p = nlohmann::json::parse(perfect.out);
  EXPECT_EQ(p["images"], 2);
  for (int n = 0; n < 4; ++n) EXPECT_NEAR(p["bleu"][n].get<double>(), 1.0, 1e-6) << n;
  EXPECT_NEAR(p["rouge_l"].get<double>(), 1.0, 1e-9);
  const auto wrong = score({{{"image", "a.png"}, {"caption", "a 3 to the left of a 9"}},
                            {{"image", "b.png"}, {"caption", "a 1 above a 2"}}},
                           {"--json"});
  ASSERT_EQ(wrong.code, 0) << wrong.err;
  const auto w = nlohmann::json::parse(wrong.out);
  // 12 of 13 unigrams match: BLEU-1 = 12/13 (lengths equal the closest references).
  EXPECT_NEAR(w["bleu"][0].get<double>(), 12.0 / 13.0, 1e-9);
  EXPECT_LT(w["cider_d"].get<double>(), p["cider_d"].get<double>());
  const auto table = score({{{"image", "c.png"}, {"caption", "a 5 below a 6"}}}, {"--split", "val"});
  ASSERT_EQ(table.code, 0) << table.err;
  EXPECT_TRUE(contains(table.out, "1 images (val)")) << table.out;
  EXPECT_TRUE(contains(table.out, "BLEU-4  1.0000")) << table.out;

  const auto missing = score({{{"image", "a.png"}, {"caption", "a 3"}}});
  EXPECT_EQ(missing.code, 1);
  EXPECT_TRUE(contains(missing.err, "no caption for image 'b.png' (imgid 1)")) << missing.err;
  const auto extra = score({{{"image", "a.png"}, {"caption", "a"}}, {{"image", "b.png"}, {"caption", "a"}},
                            {{"image", "c.png"}, {"caption", "a"}}});
  EXPECT_EQ(extra.code, 1);
  EXPECT_TRUE(contains(extra.err, "[2]: image 'c.png' is not in the 'test' split")) << extra.err;
  const auto twice = score({{{"image", "a.png"}, {"caption", "a"}}, {{"image", 0}, {"caption", "b"}}});
  EXPECT_TRUE(contains(twice.err, "[1]: a second caption for image '0' (the first is [0])")) << twice.err;
  std::ofstream(dir.file("cands.json")) << "[{\"image\": ";
  const auto broken = run({"score", "--references", dir.file("refs.json"), "--candidates", dir.file("cands.json")});
  EXPECT_EQ(broken.code, 1);
  EXPECT_TRUE(contains(broken.err, "cands.json: not valid JSON")) << broken.err;
  EXPECT_EQ(run({"score", "--candidates", dir.file("cands.json")}).code, 2);
}

TEST(Cli, HelpListsCommandsGlobalOptionsAndExamples) {
  const auto r = run({"--help"});
  EXPECT_EQ(r.code, 0);
  EXPECT_TRUE(contains(r.out, "info")) << r.out;
  EXPECT_TRUE(contains(r.out, "data")) << r.out;
  EXPECT_TRUE(contains(r.out, "--threads")) << r.out;
  EXPECT_TRUE(contains(r.out, "Examples:")) << r.out;
  const auto c = run({"data", "--help"});
  EXPECT_EQ(c.code, 0);
  EXPECT_TRUE(contains(c.out, "--canvas S")) << c.out;
  EXPECT_TRUE(contains(c.out, "(default 60; objects 64)")) << c.out;
  EXPECT_TRUE(contains(c.out, "attend data cluttered")) << c.out;
  EXPECT_EQ(run({"help", "info"}).code, 0);
}

TEST(Cli, NoArgumentsIsAUsageError) {
  const auto r = run({});
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(contains(r.err, "usage: attend"));
}

TEST(Cli, UsageErrorsExitTwoWithOneLine) {
  for (const auto& args : std::vector<std::vector<std::string>>{{"info", "--bogus"},
                                                                {"nonsense"},
                                                                {"--threads", "-1", "info"},
                                                                {"info", "--size", "abc"},
                                                                {"info", "--size", "3"},
                                                                {"data"},
                                                                {"data", "spirals"},
                                                                {"data", "translated", "--fragments", "3"},
                                                                {"data", "cluttered", "--split", "validation"}}) {
    const auto r = run(args);
    EXPECT_EQ(r.code, 2) << args[0] << " " << (args.size() > 1 ? args[1] : "") << ": " << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_TRUE(r.err.rfind("attend: ", 0) == 0) << r.err;
  }
}

TEST(Cli, GlobalOptionsWorkOnEitherSideOfTheCommand) {
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"--threads", "1", "info", "--json", "--size", "64", "--repeats", "1"},
           {"info", "--threads", "1", "--json", "--size", "64", "--repeats", "1"}}) {
    const auto r = run(args);
    ASSERT_EQ(r.code, 0) << r.err;
    const auto j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j["intra_op_threads"], 1);
    EXPECT_EQ(j["libtorch"], "1.13.0");
    EXPECT_EQ(j["matmul_size"], 64);
    EXPECT_GT(j["matmul_gflops"].get<double>(), 0.0);
    EXPECT_FALSE(j["blas"].get<std::string>().empty());
    EXPECT_EQ(j["additive_decoding_isa"], attend::attention::additive_decoding_isa());
  }
}

TEST(Cli, MissingSourceExitsOneNamingThePath) {
  TempDir dir;
  const auto missing = dir.file("no-such-folder");
  const auto r = run({"data", "cluttered", "--source", missing, "--out", dir.file("out")});
  EXPECT_EQ(r.code, 1);
  EXPECT_TRUE(contains(r.err, missing)) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

TEST(Cli, CorruptSourceExitsOneNamingTheFile) {
  TempDir dir;
  write_source(dir.path().string());
  attend::testing::write_bytes(dir.file("train-images-idx3-ubyte"), {0, 0, 8, 3, 0, 0});
  const auto r = run({"data", "translated", "--source", dir.path().string(), "--out", dir.file("out")});
  EXPECT_EQ(r.code, 1);
  EXPECT_TRUE(contains(r.err, dir.file("train-images-idx3-ubyte") + ": truncated header")) << r.err;
}

TEST(Cli, DataWritesDeterministicScenesAndAContactSheet) {
  TempDir dir;
  write_source(dir.path().string());
  auto make = [&](const std::string& out, const std::string& seed) {
    return run({"--seed", seed, "data", "cluttered", "--source", dir.path().string(), "--canvas", "24",
                "--fragments", "3", "--fragment-size", "5", "--count", "30", "--png", "2", "--out", out});
  };
  const auto a = make(dir.file("a"), "5");
  ASSERT_EQ(a.code, 0) << a.err;
  EXPECT_TRUE(contains(a.out, "contact sheet")) << a.out;
  ASSERT_EQ(make(dir.file("b"), "5").code, 0);
  ASSERT_EQ(make(dir.file("c"), "6").code, 0);
  for (const char* f : {"train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                        "t10k-labels-idx1-ubyte", "contact-sheet.png"}) {
    EXPECT_EQ(read_bytes(dir.file(std::string("a/") + f)), read_bytes(dir.file(std::string("b/") + f))) << f;
  }
  EXPECT_NE(read_bytes(dir.file("a/train-images-idx3-ubyte")), read_bytes(dir.file("c/train-images-idx3-ubyte")));
  // --png writes the first test scenes as image files named by index and label.
  EXPECT_TRUE(std::filesystem::exists(dir.file("a/png/00001-label1.png")));
  EXPECT_FALSE(std::filesystem::exists(dir.file("a/png/00002-label2.png")));
  const auto images = ds::read_idx(dir.file("a/t10k-images-idx3-ubyte"));
  const auto labels = ds::read_idx(dir.file("a/t10k-labels-idx1-ubyte"));
  EXPECT_EQ(images.sizes(), (std::vector<std::int64_t>{30, 24, 24}));
  EXPECT_TRUE(torch::equal(labels, (torch::arange(30) % 12 % 10).to(torch::kUInt8)));
  const auto manifest_bytes = read_bytes(dir.file("a/manifest.json"));
  const auto manifest = nlohmann::json::parse(std::string(manifest_bytes.begin(), manifest_bytes.end()));
  EXPECT_EQ(manifest["seed"], 5);
  EXPECT_EQ(manifest["fragments"], 3);
}

TEST(Cli, TranslatedScenesHoldOnlyTheDigit) {
  TempDir dir;
  write_source(dir.path().string());
  const auto r = run({"data", "translated", "--source", dir.path().string(), "--canvas", "20", "--split", "train",
                      "--gzip", "--out", dir.file("t")});
  ASSERT_EQ(r.code, 0) << r.err;
  const auto images = ds::read_idx(dir.file("t/train-images-idx3-ubyte.gz"));
  const auto source = ds::read_idx(dir.path().string() + "/train-images-idx3-ubyte");
  ASSERT_EQ(images.sizes(), (std::vector<std::int64_t>{12, 20, 20}));
  // Each scene's non-zero pixel sum equals its source digit's (nothing added, nothing cut).
  EXPECT_TRUE(torch::equal(images.to(torch::kInt64).sum({1, 2}), source.to(torch::kInt64).sum({1, 2})));
  EXPECT_FALSE(std::filesystem::exists(dir.file("t/t10k-images-idx3-ubyte.gz")));
}

TEST(CliTrain, TrainsEvaluatesResumesAndClassifiesWithATrace) {
  TempDir dir;
  write_source(dir.path().string());
  const auto run_dir = dir.file("run");
  const std::vector<std::string> base{"train", "ram", "--data", dir.path().string(), "--glimpses", "3",
                                      "--glimpse-size", "4", "--scales", "2", "--hidden", "16", "--batch", "4",
                                      "--val-count", "4", "--run-dir", run_dir};
  auto args = base;
  args.insert(args.end(), {"--epochs", "1"});
  const auto first = run(args);
  ASSERT_EQ(first.code, 0) << first.err;
  EXPECT_TRUE(contains(first.out, "mean location")) << first.out;
  EXPECT_TRUE(contains(first.out, "M=10")) << first.out;
  for (const char* f : {"last.pt", "best.pt", "metrics.jsonl", "eval.json"}) {
    EXPECT_TRUE(std::filesystem::exists(run_dir + "/" + f)) << f;
  }
  const auto report = nlohmann::json::parse(std::ifstream(run_dir + "/eval.json"));
  EXPECT_EQ(report["count"], 12);
  ASSERT_EQ(report["results"].size(), 3u);
  for (const auto& result : report["results"]) {
    std::int64_t total = 0, correct = 0;
    for (size_t i = 0; i < result["confusion"].size(); ++i) {
      for (size_t j = 0; j < result["confusion"][i].size(); ++j) {
        total += result["confusion"][i][j].get<std::int64_t>();
        if (i == j) correct += result["confusion"][i][j].get<std::int64_t>();
      }
    }
    EXPECT_EQ(total, 12) << result["mode"];
    EXPECT_DOUBLE_EQ(result["accuracy"].get<double>(), correct / 12.0) << result["mode"];
  }
  // 8 training items in batches of 4: two steps an epoch.
  const auto last = attend::models::read_checkpoint_info(run_dir + "/last.pt");
  EXPECT_EQ(last.step, 2);
  EXPECT_EQ(last.epoch, 1);
  EXPECT_EQ(last.model.options["glimpses"], 3);
  EXPECT_EQ(last.data["kind"], "idx");
  EXPECT_EQ(last.training["batch_size"], 4);
  EXPECT_EQ(last.data["validation"], "stratified");
  EXPECT_EQ(last.model.options["first_location"], "random") << "the default for new runs";
  // The held-out items are written down: one of each of 4 labels (items i have label i % 10).
  const auto held = nlohmann::json::parse(std::ifstream(run_dir + "/validation.json"));
  EXPECT_EQ(held["split"], "stratified");
  EXPECT_EQ(held["count"], 4);
  std::set<std::int64_t> labels;
  for (const auto& i : held["indices"]) labels.insert(i.get<std::int64_t>() % 10);
  EXPECT_EQ(labels.size(), 4u);

  // A longer run in the same folder continues where the first stopped.
  args = base;
  args.insert(args.end(), {"--epochs", "2"});
  const auto second = run(args);
  ASSERT_EQ(second.code, 0) << second.err;
  EXPECT_TRUE(contains(second.err, "resumed at epoch 2 step 2")) << second.err;
  EXPECT_EQ(attend::models::read_checkpoint_info(run_dir + "/last.pt").step, 4);
  // The same folder with another model is another run: refused, naming the field.
  args = base;
  args[5] = "4";  // --glimpses 4
  args.insert(args.end(), {"--epochs", "3"});
  const auto other = run(args);
  EXPECT_EQ(other.code, 1);
  EXPECT_TRUE(contains(other.err, "model.options.glimpses is 3 there but 4 now")) << other.err;

  const auto eval = run({"eval", run_dir + "/best.pt", "--json"});
  ASSERT_EQ(eval.code, 0) << eval.err;
  const auto j = nlohmann::json::parse(eval.out);
  EXPECT_EQ(j["kind"], "ram");
  std::int64_t total = 0;
  for (const auto& row : j["results"][0]["confusion"]) {
    for (const auto& v : row) total += v.get<std::int64_t>();
  }
  EXPECT_EQ(total, 12);
  // Rows: the policy mean, then one per --samples entry; each row's figures do not
  // depend on the rows before it.
  std::vector<std::string> modes;
  for (const auto& row : j["results"]) modes.push_back(row["mode"]);
  EXPECT_EQ(modes, (std::vector<std::string>{"mean location", "M=1", "M=10"}));
  const auto chosen = run({"eval", run_dir + "/best.pt", "--json", "--modes", "sampled", "--samples", "3,1,25"});
  ASSERT_EQ(chosen.code, 0) << chosen.err;
  const auto rows = nlohmann::json::parse(chosen.out)["results"];
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0]["mode"], "M=3");
  EXPECT_EQ(rows[2]["samples"], 25);
  EXPECT_EQ(rows[1]["nll"], j["results"][1]["nll"]) << "M=1 is the same whichever rows come first";
  const auto mean_only = run({"eval", run_dir + "/best.pt", "--json", "--modes", "mean"});
  ASSERT_EQ(mean_only.code, 0) << mean_only.err;
  EXPECT_EQ(nlohmann::json::parse(mean_only.out)["results"].size(), 1u);
  for (const auto& bad : std::vector<std::vector<std::string>>{{"--samples", "0"},
                                                              {"--samples", "1,x"},
                                                              {"--modes", "median"},
                                                              {"--modes", "mean", "--samples", "5"}}) {
    std::vector<std::string> args{"eval", run_dir + "/best.pt"};
    args.insert(args.end(), bad.begin(), bad.end());
    const auto refused = run(args);
    EXPECT_EQ(refused.code, 2) << bad[1];
    EXPECT_TRUE(contains(refused.err, "--" + bad[0].substr(2))) << refused.err;
  }

  // A 20x25 photo is larger than the 10x10 input: resized to fit, then padded.
  cv::Mat big(25, 20, CV_8UC3, cv::Scalar(0, 0, 0));
  cv::circle(big, cv::Point(10, 12), 6, cv::Scalar(255, 255, 255), -1);
  cv::imwrite(dir.file("digit.png"), big);
  const auto c = run({"classify", run_dir + "/best.pt", dir.file("digit.png"), "--trace", dir.file("trace.png")});
  ASSERT_EQ(c.code, 0) << c.err;
  EXPECT_TRUE(contains(c.out, "read as grey, resized 20x25 -> 8x10, padded to 10x10")) << c.out;
  const cv::Mat trace = cv::imread(dir.file("trace.png"));
  ASSERT_FALSE(trace.empty());
  EXPECT_GT(trace.rows, 300);
  // A folder of images gives one trace per image.
  std::filesystem::create_directories(dir.file("imgs"));
  cv::imwrite(dir.file("imgs/a.png"), big);
  cv::imwrite(dir.file("imgs/b.jpg"), big);
  const auto folder = run({"classify", run_dir + "/best.pt", dir.file("imgs"), "--trace", dir.file("traces")});
  ASSERT_EQ(folder.code, 0) << folder.err;
  EXPECT_TRUE(std::filesystem::exists(dir.file("traces/a-trace.png")));
  EXPECT_TRUE(std::filesystem::exists(dir.file("traces/b-trace.png")));
}

TEST(CliTrain, BadInputsGiveUsageOrFailureCodes) {
  TempDir dir;
  write_source(dir.path().string());
  const std::string src = dir.path().string();
  auto code = [&](std::vector<std::string> args) { return run(std::move(args)).code; };
  EXPECT_EQ(code({"train", "ram", "--data", src}), 2) << "no run folder";
  EXPECT_EQ(code({"train", "svm", "--data", src, "--run-dir", dir.file("r")}), 2);
  EXPECT_EQ(code({"train", "ram", "--run-dir", dir.file("r")}), 2) << "no data";
  EXPECT_EQ(code({"train", "ram", "--data", src, "--scenes", "cluttered", "--run-dir", dir.file("r")}), 2);
  EXPECT_EQ(code({"train", "ram", "--data", src, "--glimpse-size", "11", "--run-dir", dir.file("r")}), 2)
      << "glimpse larger than the 10x10 images";
  EXPECT_EQ(code({"train", "ram", "--data", src, "--std", "0", "--run-dir", dir.file("r")}), 2);
  const auto start =
      run({"train", "ram", "--data", src, "--val-count", "2", "--std-start", "-0.5", "--run-dir", dir.file("r")});
  EXPECT_EQ(start.code, 2);
  EXPECT_TRUE(contains(start.err, "--std-start must be between 0 and 10, got -0.5")) << start.err;
  const auto nan = run({"train", "ram", "--data", src, "--val-count", "2", "--reinforce-weight", "nan",
                        "--run-dir", dir.file("r")});
  EXPECT_EQ(nan.code, 2);
  EXPECT_TRUE(contains(nan.err, "--reinforce-weight must be a finite number, got nan")) << nan.err;
  const auto decay = run({"train", "fc", "--data", src, "--weight-decay", "inf", "--run-dir", dir.file("r")});
  EXPECT_EQ(decay.code, 2);
  EXPECT_TRUE(contains(decay.err, "--weight-decay must be a finite number, got inf")) << decay.err;
  const auto other_kind = run({"train", "cnn", "--data", src, "--scales", "2", "--run-dir", dir.file("r")});
  EXPECT_EQ(other_kind.code, 2);
  EXPECT_TRUE(contains(other_kind.err, "--scales does not apply to a 'cnn' model (it is an option of 'ram')"))
      << other_kind.err;
  const auto schedule = run({"train", "fc", "--data", src, "--schedule", "linear", "--run-dir", dir.file("r")});
  EXPECT_EQ(schedule.code, 2);
  EXPECT_TRUE(contains(schedule.err, "--schedule must be constant, step or cosine, got 'linear'")) << schedule.err;
  EXPECT_EQ(code({"train", "ram", "--data", src, "--scales", "0", "--run-dir", dir.file("r")}), 2);
  EXPECT_EQ(code({"train", "fc", "--data", src, "--fc-hidden", "8,x", "--run-dir", dir.file("r")}), 2);
  EXPECT_EQ(code({"train", "fc", "--data", src, "--val-count", "12", "--run-dir", dir.file("r")}), 2);
  const auto shift = run({"train", "fc", "--data", src, "--val-count", "2", "--shift", "10", "--run-dir", dir.file("r")});
  EXPECT_EQ(shift.code, 2);
  EXPECT_TRUE(contains(shift.err, "--shift must be smaller than the 10x10 images, got 10")) << shift.err;
  const auto rotate = run({"train", "fc", "--data", src, "--val-count", "2", "--rotate", "200", "--run-dir", dir.file("r")});
  EXPECT_EQ(rotate.code, 2);
  EXPECT_TRUE(contains(rotate.err, "--rotate must be between 0 and 180, got 200")) << rotate.err;
  EXPECT_EQ(code({"train", "fc", "--data", src, "--scale-jitter", "1", "--run-dir", dir.file("r")}), 2);
  // Augmented training runs, and its checkpoint evaluates on the unaugmented test split.
  ASSERT_EQ(run({"train", "fc", "--data", src, "--fc-hidden", "8", "--epochs", "1", "--val-count", "0", "--shift",
                 "2", "--rotate", "10", "--scale-jitter", "0.1", "--run-dir", dir.file("aug")}).code, 0);
  const auto eval = run({"eval", dir.file("aug/last.pt"), "--json"});
  EXPECT_EQ(eval.code, 0) << eval.err;
  // Without a test split the run stops before training, naming what is missing.
  std::filesystem::create_directories(dir.file("train-only"));
  for (const char* f : {"train-images-idx3-ubyte", "train-labels-idx1-ubyte"}) {
    std::filesystem::copy_file(src + "/" + f, dir.file(std::string("train-only/") + f));
  }
  const auto no_test =
      run({"train", "fc", "--data", dir.file("train-only"), "--val-count", "2", "--run-dir", dir.file("nt")});
  EXPECT_EQ(no_test.code, 1);
  EXPECT_TRUE(contains(no_test.err, "no t10k-images-idx3-ubyte")) << no_test.err;
  EXPECT_FALSE(std::filesystem::exists(dir.file("nt")));
  const auto missing = run({"eval", dir.file("nope.pt")});
  EXPECT_EQ(missing.code, 1);
  EXPECT_TRUE(contains(missing.err, dir.file("nope.pt") + ": no such checkpoint")) << missing.err;
  attend::testing::write_bytes(dir.file("junk.pt"), {1, 2, 3});
  EXPECT_EQ(run({"classify", dir.file("junk.pt"), dir.file("x.png")}).code, 1);
  // A soft-glimpse model trains by backpropagation and draws its glimpses too.
  ASSERT_EQ(run({"train", "soft", "--data", src, "--glimpses", "2", "--glimpse-size", "4", "--hidden", "8",
                 "--epochs", "1", "--val-count", "0", "--run-dir", dir.file("soft")}).code, 0);
  cv::imwrite(dir.file("digit.png"), cv::Mat(10, 10, CV_8UC1, cv::Scalar(128)));
  const auto soft = run({"classify", dir.file("soft/last.pt"), dir.file("digit.png"), "--trace", dir.file("s.png")});
  EXPECT_EQ(soft.code, 0) << soft.err;
  EXPECT_FALSE(cv::imread(dir.file("s.png")).empty());
  // An fc model has no glimpses to trace; an unreadable image is a failure naming it.
  ASSERT_EQ(run({"train", "fc", "--data", src, "--fc-hidden", "8", "--epochs", "1", "--val-count", "0",
                 "--run-dir", dir.file("fc")}).code, 0);
  EXPECT_EQ(run({"classify", dir.file("fc/last.pt"), dir.file("junk.pt"), "--trace", dir.file("t.png")}).code, 2);
  const auto unreadable = run({"classify", dir.file("fc/last.pt"), dir.file("junk.pt")});
  EXPECT_EQ(unreadable.code, 1);
  EXPECT_TRUE(contains(unreadable.err, dir.file("junk.pt") + ": not a readable image")) << unreadable.err;
}

// The model kinds, their options and their defaults come from the registry.
TEST(CliTrain, HelpListsEveryRegisteredKindWithItsOptions) {
  const auto help = run({"train", "--help"});
  ASSERT_EQ(help.code, 0);
  // Classifiers' options in 'train --help'; a captioner's in 'train captioner --help'.
  const auto caption_help = run({"train", "captioner", "--help"});
  ASSERT_EQ(caption_help.code, 0);
  EXPECT_TRUE(contains(caption_help.out, "--scenes")) << caption_help.out;
  EXPECT_FALSE(contains(caption_help.out, "Model options of 'ram'")) << caption_help.out;
  for (const auto& kind : attend::models::model_registry().kinds()) {
    EXPECT_TRUE(contains(help.out, "  " + kind.name + " ")) << kind.name;
    const auto& text = kind.capabilities.caption ? caption_help.out : help.out;
    EXPECT_TRUE(contains(text, "Model options of '" + kind.name + "'")) << kind.name;
    for (const auto& option : kind.options) EXPECT_TRUE(contains(text, "--" + option.flag)) << option.flag;
  }
  EXPECT_FALSE(contains(help.out, "--embed")) << help.out;
  EXPECT_TRUE(contains(help.out, "--std arg (=0.15)") || contains(help.out, "--std S (=0.15)")) << help.out;
  EXPECT_TRUE(contains(help.out, "--filters LIST (=32,64)")) << help.out;
}

// A short run on a task anyone can learn (10 classes, chance 10%) must reach 80% on
// the held-out test split, and eval of its best checkpoint must say the same.
TEST(CliTrain, AShortRunLearnsAndEvalAgreesWithItsReport) {
  TempDir dir;
  write_bars(dir.path().string());
  const auto run_dir = dir.file("run");
  const auto r = run({"--seed", "3", "train", "fc", "--data", dir.path().string(), "--fc-hidden", "32", "--epochs",
                      "15", "--batch", "20", "--lr", "3e-3", "--val-count", "40", "--run-dir", run_dir});
  ASSERT_EQ(r.code, 0) << r.err;
  const auto report = nlohmann::json::parse(std::ifstream(run_dir + "/eval.json"));
  EXPECT_EQ(report["count"], 100);
  const double accuracy = report["results"][0]["accuracy"].get<double>();
  EXPECT_GE(accuracy, 0.8) << "chance is 0.1";
  const auto eval = run({"eval", run_dir + "/best.pt", "--json"});
  ASSERT_EQ(eval.code, 0) << eval.err;
  EXPECT_DOUBLE_EQ(nlohmann::json::parse(eval.out)["results"][0]["accuracy"].get<double>(), accuracy);
  // A deterministic model has one row; sampling options are refused, not ignored.
  EXPECT_EQ(nlohmann::json::parse(eval.out)["results"].size(), 1u);
  const auto sampled = run({"eval", run_dir + "/best.pt", "--samples", "10"});
  EXPECT_EQ(sampled.code, 2);
  EXPECT_TRUE(contains(sampled.err, "--samples does not apply to a 'fc' model")) << sampled.err;
}

// eval's help lists what evaluation uses: where the images come from, not how
// training augments them.
TEST(Cli, EvalHelpListsOnlyEvaluationOptions) {
  const auto help = run({"eval", "--help"});
  ASSERT_EQ(help.code, 0);
  for (const char* flag : {"--data", "--scenes", "--canvas", "--split", "--samples", "--modes", "--json"}) {
    EXPECT_TRUE(contains(help.out, flag)) << flag;
  }
  for (const char* flag : {"--shift", "--rotate", "--scale-jitter", "--val-split", "--epochs", "--glimpses"}) {
    EXPECT_FALSE(contains(help.out, flag)) << flag;
  }
  const auto train = run({"train", "--help"});
  for (const char* flag : {"--shift", "--rotate", "--scale-jitter", "--val-split"}) {
    EXPECT_TRUE(contains(train.out, flag)) << flag;
  }
  const auto refused = run({"eval", "x.pt", "--shift", "4"});
  EXPECT_EQ(refused.code, 2);
  EXPECT_TRUE(contains(refused.err, "unknown option --shift")) << refused.err;
}

// One command's --threads does not outlive it, and --seed is not applied process-wide:
// training, sampled classification and info leave the default generator alone.
TEST(Cli, CommandsLeaveTheProcessSettingsAsTheyFoundThem) {
  TempDir dir;
  write_source(dir.path().string());
  const int threads = at::get_num_threads();
  const auto generator = at::detail::getDefaultCPUGenerator().get_state();
  const auto r = run({"--threads", "2", "--seed", "99", "info", "--size", "16", "--repeats", "1"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "2 intra-op")) << r.out;
  ASSERT_EQ(run({"--seed", "99", "train", "ram", "--data", dir.path().string(), "--glimpses", "2", "--glimpse-size",
                 "4", "--hidden", "8", "--epochs", "1", "--val-count", "2", "--run-dir", dir.file("r")})
                .code,
            0);
  cv::imwrite(dir.file("d.png"), cv::Mat(10, 10, CV_8UC1, cv::Scalar(90)));
  const auto c1 = run({"--seed", "4", "classify", dir.file("r/last.pt"), dir.file("d.png"), "--samples", "5", "--json"});
  const auto c2 = run({"--seed", "4", "classify", dir.file("r/last.pt"), dir.file("d.png"), "--samples", "5", "--json"});
  ASSERT_EQ(c1.code, 0) << c1.err;
  EXPECT_EQ(c1.out, c2.out) << "sampled predictions follow --seed";
  EXPECT_EQ(at::get_num_threads(), threads);
  EXPECT_TRUE(torch::equal(at::detail::getDefaultCPUGenerator().get_state(), generator));
}

// OpenBLAS keeps a thread pool of its own: an explicit --threads sizes it as well (so
// `--threads 1` is one core), a count from the environment is kept when --threads is
// not given, and the process's setting is put back after the command.
TEST(Cli, ThreadsSizeOpenBlasAsWell) {
  if (ds::blas_threads() == 0) GTEST_SKIP() << "the BLAS in use is not OpenBLAS";
  const int before = ds::blas_threads();
  // The environment variables OpenBLAS reads its count from, cleared for the test.
  const std::vector<std::string> names{"OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS"};
  std::map<std::string, std::string> saved;
  for (const auto& n : names) {
    if (const char* v = std::getenv(n.c_str())) saved[n] = v;
    ::unsetenv(n.c_str());
  }
  auto info = [](std::vector<std::string> global) {
    for (const auto& a : {"info", "--json", "--size", "16", "--repeats", "1"}) global.emplace_back(a);
    const auto r = run(global);
    EXPECT_EQ(r.code, 0) << r.err;
    return nlohmann::json::parse(r.out);
  };
  for (const int n : {1, 2}) {
    const auto j = info({"--threads", std::to_string(n)});
    EXPECT_EQ(j["blas_threads"], n);
    EXPECT_EQ(j["intra_op_threads"], n);
    EXPECT_EQ(ds::blas_threads(), before) << "put back after the command";
  }
  // Without --threads: one per core for both, unless the environment sized OpenBLAS.
  const auto j = info({});
  EXPECT_EQ(j["blas_threads"], j["intra_op_threads"]);
  EXPECT_EQ(j["intra_op_threads"], ds::available_cores()) << "the cores this process may use";
  const int odd = static_cast<int>(std::thread::hardware_concurrency()) + 1;
  ds::set_blas_threads(odd);
  ::setenv("OPENBLAS_NUM_THREADS", std::to_string(odd).c_str(), 1);
  EXPECT_EQ(info({})["blas_threads"], odd);
  EXPECT_EQ(info({"--threads", "1"})["blas_threads"], 1) << "an explicit --threads wins";
  for (const auto& n : names) ::unsetenv(n.c_str());
  for (const auto& [n, v] : saved) ::setenv(n.c_str(), v.c_str(), 1);
  ds::set_blas_threads(before);
}

// attend info lists every registered model kind in registration order, one per row, with
// the capabilities starting at one column past the longest name (a name longer than the
// column once ran into them: "captionercaption").
TEST(Cli, InfoListsEachModelKindApartFromItsCapabilities) {
  const auto r = run({"info", "--size", "16", "--repeats", "1"});
  ASSERT_EQ(r.code, 0) << r.err;
  const auto& kinds = attend::models::model_registry().kinds();
  std::size_t longest = 0;
  for (const auto& kind : kinds) longest = std::max(longest, kind.name.size());
  const std::size_t prefix = std::string("model kinds   ").size();
  std::istringstream lines(r.out);
  std::string line;
  while (std::getline(lines, line) && line.rfind("model kinds", 0) != 0) {
  }
  for (const auto& kind : kinds) {
    ASSERT_GT(line.size(), prefix + longest + 2) << "no row for '" << kind.name << "' in:\n" << r.out;
    EXPECT_EQ(line.substr(prefix, kind.name.size()), kind.name) << line;
    EXPECT_EQ(line.find_first_not_of(' ', prefix + kind.name.size()), prefix + longest + 2) << line;
    std::getline(lines, line);
  }
}

// attend info's warning says what a slow matrix product means for the BLAS in use.
TEST(Cli, InfoWarnsOfSlowMatrixProductsByTheBlasInUse) {
  using attend::cli::blas_speed_warning;
  const auto reference = blas_speed_warning(3.2, 1024, "reference BLAS", 0);
  EXPECT_TRUE(contains(reference, "run at 3 GFLOP/s, which means the reference BLAS is in use")) << reference;
  EXPECT_TRUE(contains(reference, "libopenblas0-pthread")) << reference;
  EXPECT_EQ(blas_speed_warning(3.2, 256, "reference BLAS", 0), "") << "too small a product to tell";
  EXPECT_EQ(blas_speed_warning(60, 1024, "unknown", 0), "");
  EXPECT_TRUE(contains(blas_speed_warning(3, 1024, "unknown", 0), "reference BLAS is in use (unknown)"));
  // OpenBLAS is judged per thread: 30 GFLOP/s is right for one thread, slow for two.
  EXPECT_EQ(blas_speed_warning(30, 1024, "OpenBLAS", 1), "");
  const auto busy = blas_speed_warning(30, 1024, "OpenBLAS", 2);
  EXPECT_TRUE(contains(busy, "although OpenBLAS is in use on 2 threads: other processes are busy")) << busy;
  EXPECT_FALSE(contains(busy, "reference")) << busy;
  EXPECT_TRUE(contains(blas_speed_warning(10, 1024, "OpenBLAS", 1), "on 1 thread:"));
  const auto mkl = blas_speed_warning(10, 1024, "MKL", 0);
  EXPECT_TRUE(contains(mkl, "with MKL;")) << mkl;
  EXPECT_FALSE(contains(mkl, "reference BLAS")) << mkl;
}

// A stop requested in one run does not stop the next one in the same process.
TEST(Cli, AnInterruptBelongsToOneRun) {
  struct sigaction before {};
  sigaction(SIGINT, nullptr, &before);
  {
    attend::cli::InterruptScope first;
    EXPECT_THROW(attend::cli::InterruptScope(), std::logic_error) << "two runs may not share the handlers";
    EXPECT_FALSE(first.flag().load());
    std::raise(SIGINT);  // handled by the scope: sets the flag, does not kill
    EXPECT_TRUE(first.flag().load());
  }
  struct sigaction after {};
  sigaction(SIGINT, nullptr, &after);
  EXPECT_EQ(after.sa_handler, before.sa_handler) << "the previous handler is back";
  attend::cli::InterruptScope second;
  EXPECT_FALSE(second.flag().load()) << "the earlier Ctrl-C leaked into this run";
}

// A near miss gets a suggestion, a far one none, and the error points to the help of
// the command it was given to.
TEST(Cli, UnknownOptionsSuggestTheClosestOneAndPointToTheCommandsHelp) {
  const std::vector<std::string> names{"batch", "epochs", "lr", "glimpse-size", "glimpses", "data"};
  EXPECT_EQ(attend::cli::closest_option("--batch-size", names), "batch");
  EXPECT_EQ(attend::cli::closest_option("--epoch", names), "epochs");
  EXPECT_EQ(attend::cli::closest_option("--glimpse-szie", names), "glimpse-size");
  EXPECT_EQ(attend::cli::closest_option("--lt", names), "lr");
  EXPECT_EQ(attend::cli::closest_option("--colour", names), "");
  EXPECT_EQ(attend::cli::closest_option("--learning-rate", names), "");
  TempDir dir;
  const auto r = run({"train", "fc", "--data", dir.path().string(), "--batch-size", "4", "--run-dir", dir.file("r")});
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(r.err, "attend: unknown option --batch-size; did you mean --batch? (see 'attend train --help')\n");
  const auto far = run({"eval", "x.pt", "--colour", "red"});
  EXPECT_EQ(far.code, 2);
  EXPECT_EQ(far.err, "attend: unknown option --colour (see 'attend eval --help')\n");
  const auto missing = run({"train", "fc", "--data", dir.path().string()});
  EXPECT_TRUE(contains(missing.err, "(see 'attend train --help')")) << missing.err;
}

// A captioner end to end on generated scenes: train (with validation and a test
// report), eval agrees with the report, caption prints the same words as --json and
// draws each word's map; files written by 'attend data objects' train too.
TEST(CliCaption, TrainsEvaluatesAndCaptionsWithAttentionGrids) {
  TempDir dir;
  const auto source = dir.file("items");
  fs::create_directories(source);
  write_items(source);
  const auto run_dir = dir.file("run");
  const std::vector<std::string> small{"--filters", "4,8", "--embed", "8", "--hidden", "16", "--attention-size", "8"};
  std::vector<std::string> train{"train", "captioner", "--scenes", "objects", "--source", source, "--canvas", "32",
                                 "--level", "2", "--count", "32", "--val-count", "8", "--test-count", "8",
                                 "--epochs", "2", "--batch", "16", "--run-dir", run_dir};
  train.insert(train.end(), small.begin(), small.end());
  const auto trained = run(train);
  ASSERT_EQ(trained.code, 0) << trained.err;
  EXPECT_TRUE(contains(trained.out, "BLEU-4")) << trained.out;
  EXPECT_TRUE(contains(trained.err, "8x8 attention grid")) << trained.err;
  std::ifstream report_file(run_dir + "/eval.json");
  const auto report = nlohmann::json::parse(report_file);
  EXPECT_EQ(report["count"], 8);
  EXPECT_EQ(report["captions"].size(), 8u);
  std::ifstream metrics(run_dir + "/metrics.jsonl");
  std::string line, all;
  while (std::getline(metrics, line)) all += line;
  EXPECT_TRUE(contains(all, "\"cider\"")) << all;

  // eval of best.pt on the same test scenes says what the report said.
  const auto evaluated = run({"eval", run_dir + "/best.pt", "--json", "--captions", dir.file("captions.json")});
  ASSERT_EQ(evaluated.code, 0) << evaluated.err;
  const auto j = nlohmann::json::parse(evaluated.out);
  EXPECT_DOUBLE_EQ(j["bleu4"].get<double>(), report["bleu4"].get<double>());
  EXPECT_DOUBLE_EQ(j["cider_d"].get<double>(), report["cider_d"].get<double>());
  EXPECT_TRUE(j.contains("grounding"));
  std::ifstream captions_file(dir.file("captions.json"));
  const auto captions = nlohmann::json::parse(captions_file);
  ASSERT_EQ(captions.size(), 8u);
  EXPECT_EQ(captions[0]["caption"], report["captions"][0]["caption"]);

  // caption: an image written by 'attend data objects' with the same scenes.
  const auto data = run({"data", "objects", "--source", source, "--canvas", "32", "--level", "2", "--count", "16",
                         "--out", dir.file("objects")});
  ASSERT_EQ(data.code, 0) << data.err;
  const auto image = dir.file("objects/images/000016.png");
  const auto plain = run({"caption", run_dir + "/best.pt", image, "--attention", dir.file("maps")});
  ASSERT_EQ(plain.code, 0) << plain.err;
  const auto as_json = run({"caption", run_dir + "/best.pt", image, "--json"});
  ASSERT_EQ(as_json.code, 0) << as_json.err;
  const auto c = nlohmann::json::parse(as_json.out);
  ASSERT_EQ(c.size(), 1u);
  EXPECT_TRUE(contains(plain.out, image + ": " + c[0]["caption"].get<std::string>())) << plain.out;
  EXPECT_EQ(c[0]["grid"], nlohmann::json({8, 8}));
  for (const auto& w : c[0]["words"]) {
    ASSERT_EQ(w["attention"].size(), 64u);
    double sum = 0;
    for (const auto& a : w["attention"]) sum += a.get<double>();
    EXPECT_NEAR(sum, 1.0, 1e-4);
  }
  if (!c[0]["words"].empty()) {
    const auto sheet = cv::imread(dir.file("maps/000016.attention.png"));
    ASSERT_FALSE(sheet.empty());
    EXPECT_GE(sheet.cols, 32 * 3);  // panels of the 32x32 image, magnified
  }

  // The caption file trains too (grey images; --channels 3 converts them, said once).
  std::vector<std::string> files{"train", "captioner", "--data", dir.file("objects/dataset_objects.json"),
                                 "--channels", "3", "--epochs", "1", "--batch", "8", "--run-dir", dir.file("run2")};
  files.insert(files.end(), small.begin(), small.end());
  const auto from_files = run(files);
  ASSERT_EQ(from_files.code, 0) << from_files.err;
  EXPECT_TRUE(contains(from_files.err, "converted to colour for a colour model")) << from_files.err;
  // Its test captions, written by eval, score the same through 'attend score'.
  const auto file_eval = run({"eval", dir.file("run2/last.pt"), "--json", "--captions", dir.file("c2.json")});
  ASSERT_EQ(file_eval.code, 0) << file_eval.err;
  const auto scored = run({"score", "--references", dir.file("objects/dataset_objects.json"), "--candidates",
                           dir.file("c2.json"), "--split", "test", "--json"});
  ASSERT_EQ(scored.code, 0) << scored.err;
  const auto e2 = nlohmann::json::parse(file_eval.out), s2 = nlohmann::json::parse(scored.out);
  EXPECT_NEAR(e2["bleu4"].get<double>(), s2["bleu"][3].get<double>(), 1e-12);
  EXPECT_NEAR(e2["cider_d"].get<double>(), s2["cider_d"].get<double>(), 1e-12);
}

TEST(CliCaption, BadInputsGiveOneLineAndTheRightCode) {
  TempDir dir;
  const auto source = dir.file("items");
  fs::create_directories(source);
  write_items(source);
  const auto run_dir = dir.file("run");
  const auto trained = run({"train", "captioner", "--scenes", "objects", "--source", source, "--canvas", "32",
                            "--level", "1", "--count", "8", "--val-count", "0", "--test-count", "4", "--epochs", "1",
                            "--filters", "4", "--embed", "4", "--hidden", "8", "--attention-size", "4", "--run-dir",
                            run_dir});
  ASSERT_EQ(trained.code, 0) << trained.err;
  std::ofstream(dir.file("not-an-image.png")) << "hello";
  const std::string script = std::string(ATTEND_TEST_DATA) + "/torchscript/backbone.pt";
  std::ofstream(dir.file("bad.json")) << R"({"images": [{"filename": "a.png"}]})";
  const std::vector<std::tuple<std::vector<std::string>, int, std::string>> cases{
      {{"train", "captioner", "--scenes", "objects"}, 2, "--run-dir is required"},
      {{"train", "captioner", "--run-dir", run_dir}, 2, "give exactly one of --data FILE"},
      {{"train", "captioner", "--scenes", "objects", "--data", "x.json", "--run-dir", run_dir}, 2, "exactly one of"},
      {{"train", "captioner", "--scenes", "clutter", "--run-dir", run_dir}, 2, "--scenes"},
      {{"train", "captioner", "--scenes", "objects", "--attention", "sharp", "--run-dir", run_dir}, 2, "--attention"},
      {{"train", "captioner", "--scenes", "objects", "--hidden", "0", "--run-dir", run_dir}, 2, "--hidden"},
      {{"train", "captioner", "--scenes", "objects", "--references", "last", "--run-dir", run_dir}, 2, "--references"},
      {{"train", "captioner", "--data", dir.file("none.json"), "--run-dir", run_dir}, 1, "none.json"},
      {{"train", "captioner", "--data", dir.file("bad.json"), "--run-dir", run_dir}, 1, "split"},
      {{"train", "captioner", "--data", dir.file("bad.json"), "--level", "2", "--run-dir", run_dir}, 2,
       "--level applies to --scenes objects"},
      {{"train", "ram", "--embed", "8", "--scenes", "cluttered", "--run-dir", run_dir}, 2, "unknown option --embed"},
      {{"caption", run_dir + "/last.pt", dir.file("missing.png")}, 1, "missing.png"},
      {{"caption", run_dir + "/last.pt", dir.file("not-an-image.png")}, 1, "not-an-image.png"},
      {{"caption", run_dir + "/last.pt", dir.file("not-an-image.png"), "--beam", "0"}, 2, "--beam"},
      {{"caption", dir.file("nothing.pt"), dir.file("not-an-image.png")}, 1, "nothing.pt"},
      {{"caption", run_dir + "/last.pt"}, 2, "no image files"},
      {{"classify", run_dir + "/last.pt", dir.file("not-an-image.png")}, 1, "not an image classifier"},
      {{"eval", run_dir + "/last.pt", "--split", "train"}, 2, "--split"},
      {{"eval", run_dir + "/last.pt", "--split", "val"}, 2, "no 'val' split"},
      {{"eval", run_dir + "/last.pt", "--intervene", "--beam", "1"}, 0, ""},
      {{"train", "captioner", "--scenes", "objects", "--encoder", script, "--filters", "4", "--run-dir", run_dir}, 2,
       "--filters shapes the built-in encoder"},
      {{"train", "captioner", "--scenes", "objects", "--encoder-output", "features", "--run-dir", run_dir}, 2,
       "--encoder-output needs --encoder FILE"},
      {{"train", "captioner", "--scenes", "objects", "--source", source, "--canvas", "32", "--level", "1", "--encoder",
        std::string(ATTEND_TEST_DATA) + "/torchscript/flat.pt", "--run-dir", dir.file("flat")}, 1, "2-D output"},
  };
  for (const auto& [args, code, message] : cases) {
    const auto r = run(args);
    std::string joined;
    for (const auto& a : args) joined += a + " ";
    EXPECT_EQ(r.code, code) << joined << "\n" << r.err;
    if (code == 0) continue;
    EXPECT_TRUE(contains(r.err, message)) << joined << "\n" << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << joined << "\n" << r.err;
  }
  // A TorchScript backbone trains and is copied into the run folder, whose checkpoint
  // then captions on its own.
  const auto scripted = run({"train", "captioner", "--scenes", "objects", "--source", source, "--canvas", "32", "--level",
                             "1", "--count", "8", "--val-count", "0", "--test-count", "4", "--epochs", "1", "--embed",
                             "4", "--hidden", "8", "--attention-size", "4", "--encoder", script, "--encoder-output",
                             "features", "--fine-tune-encoder", "--run-dir", dir.file("scripted")});
  ASSERT_EQ(scripted.code, 0) << scripted.err;
  EXPECT_TRUE(contains(scripted.err, "8x8 attention grid")) << scripted.err;
  EXPECT_TRUE(fs::exists(dir.file("scripted/encoder.pt")));
  EXPECT_EQ(run({"eval", dir.file("scripted/last.pt"), "--beam", "1"}).code, 0);
}
