#include <attend/io_error.h>
#include <attend/models/checkpoint.h>
#include <attend/models/registry.h>
#include <attend/models/seam.h>
#include <attend/models/train.h>
#include <attend/vision/fit.h>

#include <test_support.h>

#include <torch/torch.h>

#include <gtest/gtest.h>

#include <sys/resource.h>

#include <csignal>
#include <fstream>
#include <map>
#include <set>

namespace am = attend::models;
using attend::testing::TempDir;

namespace {

/// A model with parameters, buffers (batch norm) and nesting.
struct NetImpl : torch::nn::Module {
  explicit NetImpl(std::int64_t hidden = 8)
      : fc1(register_module("fc1", torch::nn::Linear(4, hidden))),
        bn(register_module("bn", torch::nn::BatchNorm1d(hidden))),
        fc2(register_module("fc2", torch::nn::Linear(hidden, 3))) {}
  torch::Tensor forward(const torch::Tensor& x) { return fc2(torch::relu(bn(fc1(x)))); }
  torch::nn::Linear fc1;
  torch::nn::BatchNorm1d bn;
  torch::nn::Linear fc2;
};
TORCH_MODULE(Net);

void train_steps(Net& net, torch::optim::Optimizer& opt, int steps) {
  for (int i = 0; i < steps; ++i) {
    opt.zero_grad();
    net->forward(torch::randn({16, 4})).pow(2).mean().backward();
    opt.step();
  }
}

bool same_state(const torch::nn::Module& a, const torch::nn::Module& b) {
  const auto pa = a.named_parameters(), pb = b.named_parameters();
  const auto ba = a.named_buffers(), bb = b.named_buffers();
  if (pa.size() != pb.size() || ba.size() != bb.size()) return false;
  for (const auto& p : pa) {
    if (!torch::equal(p.value(), pb[p.key()])) return false;
  }
  for (const auto& p : ba) {
    if (!torch::equal(p.value(), bb[p.key()])) return false;
  }
  return true;
}

am::LoadOptions load_options(const std::string& kind, bool restore_rng) {
  am::LoadOptions o;
  o.expected_kind = kind;
  o.restore_rng = restore_rng;
  return o;
}

am::CheckpointInfo describe(const std::string& kind = "test-net") {
  am::CheckpointInfo info;
  info.model = {kind, {{"hidden", 8}}};
  info.training = {{"lr", 0.01}};
  info.data = {{"kind", "idx"}, {"dir", "somewhere"}};
  info.state = {{"note", "hello"}};
  info.step = 12;
  info.epoch = 3;
  return info;
}

}  // namespace

class Checkpoint : public ::testing::Test {
 protected:
  void SetUp() override { torch::manual_seed(1); }
  TempDir dir;
};

TEST_F(Checkpoint, RestoresWeightsBuffersOptimizerAndDescription) {
  Net net;
  torch::optim::Adam opt(net->parameters(), torch::optim::AdamOptions(1e-2));
  train_steps(net, opt, 5);
  const auto path = dir.file("run/ckpt.pt");
  am::save_checkpoint(path, describe(), *net, &opt);
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.file("run")), {}), 1) << "no temporary file left";

  torch::manual_seed(99);
  Net other;
  torch::optim::Adam other_opt(other->parameters(), torch::optim::AdamOptions(1e-2));
  ASSERT_FALSE(same_state(*net, *other));
  const auto info = am::load_checkpoint(path, *other, &other_opt);
  EXPECT_TRUE(same_state(*net, *other));
  EXPECT_EQ(info.model.kind, "test-net");
  EXPECT_EQ(info.model.options["hidden"], 8);
  EXPECT_EQ(info.training["lr"], 0.01);
  EXPECT_EQ(info.data["dir"], "somewhere");
  EXPECT_EQ(info.format, am::kCheckpointFormat);
  EXPECT_EQ(info.state["note"], "hello");
  EXPECT_EQ(info.step, 12);
  EXPECT_EQ(info.epoch, 3);
  EXPECT_TRUE(info.has_optimizer);

  // Same optimizer state: the next steps agree exactly.
  torch::manual_seed(5);
  train_steps(net, opt, 3);
  torch::manual_seed(5);
  train_steps(other, other_opt, 3);
  EXPECT_TRUE(same_state(*net, *other));
}

// A Sequential's parameterless layers (Functional, ReLU) are not in the archive: the
// layers around them still load, in place.
TEST_F(Checkpoint, LayersWithoutTensorsAreNoObstacleToLoading) {
  auto make = [] {
    return torch::nn::Sequential(torch::nn::Linear(3, 4), torch::nn::Functional(torch::relu), torch::nn::ReLU(),
                                 torch::nn::Linear(4, 2));
  };
  auto net = make();
  const auto path = dir.file("seq.pt");
  am::save_checkpoint(path, describe(), *net);
  torch::manual_seed(99);
  auto other = make();
  ASSERT_FALSE(torch::equal(net[0]->as<torch::nn::Linear>()->weight, other[0]->as<torch::nn::Linear>()->weight));
  am::load_checkpoint(path, *other);
  EXPECT_TRUE(torch::equal(net[0]->as<torch::nn::Linear>()->weight, other[0]->as<torch::nn::Linear>()->weight));
  EXPECT_TRUE(torch::equal(net[3]->as<torch::nn::Linear>()->bias, other[3]->as<torch::nn::Linear>()->bias));
}

TEST_F(Checkpoint, DescriptionIsReadableWithoutTheModel) {
  Net net;
  am::save_checkpoint(dir.file("c.pt"), describe("ram"), *net);
  const auto info = am::read_checkpoint_info(dir.file("c.pt"));
  EXPECT_EQ(info.model.kind, "ram");
  EXPECT_FALSE(info.has_optimizer);
}

TEST_F(Checkpoint, RestoresTheDefaultGeneratorForExactResume) {
  Net net;
  am::save_checkpoint(dir.file("c.pt"), describe(), *net);
  const auto expected = torch::randn({5});
  torch::randn({100});
  am::load_checkpoint(dir.file("c.pt"), *net, nullptr, load_options("", /*restore_rng=*/true));
  EXPECT_TRUE(torch::equal(torch::randn({5}), expected));
}

TEST_F(Checkpoint, RestoresNamedGeneratorsAndRefusesAFileWithoutThem) {
  Net net;
  auto g = at::make_generator<at::CPUGeneratorImpl>(7);
  torch::randn({3}, g);
  am::save_checkpoint(dir.file("c.pt"), describe(), *net, nullptr, {{"sampler", g}});
  const auto expected = torch::randn({5}, g);
  torch::randn({100}, g);
  am::LoadOptions load;
  load.restore_rng = true;
  load.generators = {{"sampler", g}};
  am::load_checkpoint(dir.file("c.pt"), *net, nullptr, load);
  EXPECT_TRUE(torch::equal(torch::randn({5}, g), expected));

  // A generator the file does not hold: an error, and nothing restored.
  auto other = at::make_generator<at::CPUGeneratorImpl>(9);
  load.generators = {{"sampler", g}, {"another", other}};
  torch::randn({10}, g);
  // A copy through its state: Generator::clone() leaks its implementation in
  // LibTorch 1.13 (LeakSanitizer in the sanitizer lane).
  auto probe = at::make_generator<at::CPUGeneratorImpl>();
  probe.set_state(g.get_state());
  EXPECT_THROW(am::load_checkpoint(dir.file("c.pt"), *net, nullptr, load), attend::IoError);
  EXPECT_TRUE(torch::equal(torch::randn({5}, g), torch::randn({5}, probe))) << "sampler restored despite the error";
}

// Each mismatch is found after the weights were read: the model, the optimizer and
// the default generator must all be as they were.
TEST_F(Checkpoint, AMismatchFoundLateLeavesModelOptimizerAndGeneratorUntouched) {
  Net net;
  torch::optim::Adam opt(net->parameters(), torch::optim::AdamOptions(1e-2));
  train_steps(net, opt, 2);
  am::save_checkpoint(dir.file("c.pt"), describe(), *net, &opt);

  auto serialised = [](const torch::optim::Optimizer& o) {
    torch::serialize::OutputArchive archive;
    o.save(archive);
    std::ostringstream bytes;
    archive.save_to(bytes);
    return bytes.str();
  };
  torch::manual_seed(2);
  Net other;
  // Two optimizers whose stored state does not fit, each with a state of its own that
  // a failed load must leave as it was:
  //  - one over part of the parameters (LibTorch's loader refuses its groups);
  //  - one over a wider network's parameters: LibTorch loads it without complaint,
  //    and only the state's shapes give it away, so the state must be put back;
  //  - the same, fresh: the entries the failed load added must go again.
  std::vector<torch::Tensor> some{other->fc1->weight, other->fc1->bias};
  torch::optim::Adam partial(some, torch::optim::AdamOptions(1e-2));
  train_steps(other, partial, 1);
  Net wide(16);
  torch::optim::Adam wide_opt(wide->parameters(), torch::optim::AdamOptions(1e-2));
  train_steps(wide, wide_opt, 1);
  torch::optim::Adam fresh(wide->parameters(), torch::optim::AdamOptions(1e-2));
  const auto weights_before = other->fc1->weight.clone();
  const auto generator_before = at::detail::getDefaultCPUGenerator().get_state();
  for (torch::optim::Optimizer* o : std::vector<torch::optim::Optimizer*>{&partial, &wide_opt, &fresh}) {
    const auto before = serialised(*o);
    try {
      am::load_checkpoint(dir.file("c.pt"), *other, o, load_options("", /*restore_rng=*/true));
      ADD_FAILURE() << "optimizer mismatch accepted";
    } catch (const attend::IoError& e) {
      EXPECT_NE(std::string(e.what()).find("optimizer state does not fit"), std::string::npos) << e.what();
    }
    EXPECT_EQ(serialised(*o), before) << "optimizer state changed by a failed load";
  }
  EXPECT_TRUE(fresh.state().empty());
  EXPECT_TRUE(torch::equal(other->fc1->weight, weights_before));
  EXPECT_TRUE(torch::equal(at::detail::getDefaultCPUGenerator().get_state(), generator_before));

  // Same names and shapes, another dtype.
  Net doubled;
  doubled->to(torch::kFloat64);
  const auto original = doubled->fc2->weight.clone();
  try {
    am::load_checkpoint(dir.file("c.pt"), *doubled);
    ADD_FAILURE() << "dtype mismatch accepted";
  } catch (const attend::IoError& e) {
    EXPECT_NE(std::string(e.what()).find("fc1.weight is Float in the checkpoint but Double in the model"),
              std::string::npos)
        << e.what();
  }
  EXPECT_TRUE(torch::equal(doubled->fc2->weight, original));
}

TEST_F(Checkpoint, RejectsAnotherKindNamingBoth) {
  Net net;
  am::save_checkpoint(dir.file("c.pt"), describe("cnn"), *net);
  try {
    am::load_checkpoint(dir.file("c.pt"), *net, nullptr, load_options("ram", false));
    ADD_FAILURE() << "kind mismatch accepted";
  } catch (const attend::IoError& e) {
    EXPECT_NE(std::string(e.what()).find("'cnn' model, expected 'ram'"), std::string::npos) << e.what();
  }
}

TEST(FirstDifference, NamesTheDottedPathAndBothValues) {
  const nlohmann::json a = {{"model", {{"kind", "ram"}, {"options", {{"glimpses", 6}, {"core", "rnn"}}}}}};
  auto b = a;
  EXPECT_TRUE(am::first_difference(a, b).path.empty());
  b["model"]["options"]["glimpses"] = 8;
  const auto d = am::first_difference(a, b);
  EXPECT_EQ(d.path, "model.options.glimpses");
  EXPECT_EQ(d.left, "6");
  EXPECT_EQ(d.right, "8");
  b = a;
  b["model"]["options"]["hidden"] = 16;
  const auto absent = am::first_difference(a, b);
  EXPECT_EQ(absent.path, "model.options.hidden");
  EXPECT_EQ(absent.left, "(absent)");
  EXPECT_EQ(am::first_difference(nlohmann::json(1), nlohmann::json(1.0)).path, "") << "numbers compare by value";
}

TEST_F(Checkpoint, NamesTheParameterWhoseShapeDiffers) {
  Net small(8), large(16);
  am::save_checkpoint(dir.file("c.pt"), describe(), *small);
  const auto original = large->fc2->weight.clone();
  try {
    am::load_checkpoint(dir.file("c.pt"), *large);
    ADD_FAILURE() << "shape mismatch accepted";
  } catch (const attend::IoError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("fc1.weight has shape [8, 4] in the checkpoint but [16, 4] in the model"),
              std::string::npos)
        << what;
  }
  EXPECT_TRUE(torch::equal(large->fc2->weight, original)) << "no partial load";
}

TEST_F(Checkpoint, FailedWriteLeavesThePreviousCheckpointIntactAndNoTemporaryFile) {
  Net net;
  const auto path = dir.file("c.pt");
  am::save_checkpoint(path, describe(), *net);
  const auto before = attend::testing::read_bytes(path);
  // A full disk, as the process sees it: writes past 1 KiB fail with EFBIG.
  rlimit old_limit{};
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old_limit), 0);
  const auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
  rlimit small = old_limit;
  small.rlim_cur = 1024;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
  Net changed;
  std::string error;
  try {
    am::save_checkpoint(path, describe("other"), *changed);
  } catch (const attend::IoError& e) {
    error = e.what();
  }
  setrlimit(RLIMIT_FSIZE, &old_limit);
  std::signal(SIGXFSZ, old_handler);
  EXPECT_NE(error.find(path + ": write failed: File too large"), std::string::npos) << error;
  EXPECT_EQ(attend::testing::read_bytes(path), before);
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.path()), {}), 1) << "a temporary file was left";
  Net loaded;
  EXPECT_EQ(am::load_checkpoint(path, *loaded).model.kind, "test-net");
  EXPECT_TRUE(same_state(*net, *loaded));
}

TEST_F(Checkpoint, ForeignOrMissingFilesGiveOneLineErrorsNamingThePath) {
  Net net;
  attend::testing::write_bytes(dir.file("junk.pt"), {'n', 'o', 'p', 'e'});
  for (const auto& [path, needle] : std::vector<std::pair<std::string, std::string>>{
           {dir.file("junk.pt"), "not a readable checkpoint"}, {dir.file("none.pt"), "no such checkpoint"}}) {
    try {
      am::load_checkpoint(path, *net);
      ADD_FAILURE() << path;
    } catch (const attend::IoError& e) {
      EXPECT_EQ(e.path(), path);
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
      EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << e.what();
    }
  }
  // A LibTorch archive that is not ours.
  torch::serialize::OutputArchive archive;
  archive.write("x", torch::ones({2}));
  archive.save_to(dir.file("torch.pt"));
  try {
    am::read_checkpoint_info(dir.file("torch.pt"));
    ADD_FAILURE() << "foreign archive accepted";
  } catch (const attend::IoError& e) {
    EXPECT_NE(std::string(e.what()).find("not an attend checkpoint"), std::string::npos) << e.what();
  }
}

// tests/data/checkpoint-v1-ram.pt was written by attend before the three-part
// description (format 1: training options and data inside the model options) by
//   attend --threads 1 --seed 5 train ram --data data/mnist --glimpses 2 --glimpse-size 4 --hidden 8
//     --what-size 8 --where-size 8 --glimpse-features 8 --epochs 1 --batch 500 --val-count 9000 --run-dir R
// and tests/data/digit-28.png classified by that same build:
//   attend classify R/last.pt digit-28.png --json
// It must still describe itself, predict exactly as it did, and resume.
TEST(CheckpointFormat1, LoadsPredictsAsBeforeAndResumes) {
  const std::string path = std::string(ATTEND_TEST_DATA) + "/checkpoint-v1-ram.pt";
  const auto info = am::read_checkpoint_info(path);
  EXPECT_EQ(info.format, 1);
  EXPECT_EQ(info.model.kind, "ram");
  EXPECT_FALSE(info.model.options.contains("training"));
  EXPECT_FALSE(info.model.options.contains("data"));
  EXPECT_EQ(info.model.options["glimpses"], 2);
  EXPECT_EQ(info.data, (nlohmann::json{{"kind", "idx"}, {"dir", "data/mnist"}}));
  EXPECT_EQ(info.training["batch_size"], 500);
  EXPECT_EQ(info.training["seed"], 5);
  EXPECT_EQ(info.epoch, 1);

  auto ram = am::load_classifier(path);
  EXPECT_EQ(ram->options(), info.model.options) << "the stored options are canonical";
  const auto image = attend::vision::read_fitted_image(std::string(ATTEND_TEST_DATA) + "/digit-28.png",
                                                       attend::vision::FitImageOptions().height(28).width(28));
  torch::NoGradGuard no_grad;
  const auto probs = ram->predict(image.image.unsqueeze(0), 0).exp()[0];
  const auto expected = torch::tensor({0.11833669990301132, 0.07646738737821579, 0.0770171657204628,
                                       0.13161708414554596, 0.11627892404794693, 0.06857560575008392,
                                       0.09216021001338959, 0.09077796339988708, 0.10097503662109375,
                                       0.12779395282268524},
                                      torch::kFloat32);
  EXPECT_TRUE(torch::allclose(probs, expected, 0, 1e-6)) << probs << expected;
}

namespace {
struct BeginRecorder : am::TrainingObserver {
  std::vector<am::RunInfo> begins;
  void on_train_begin(const am::RunInfo& i) override { begins.push_back(i); }
};
}  // namespace

// A run folder whose last.pt is in format 1 continues with the same command.
TEST(CheckpointFormat1, ARunFolderOfTheOldFormatResumes) {
  TempDir dir;
  std::filesystem::copy_file(std::string(ATTEND_TEST_DATA) + "/checkpoint-v1-ram.pt", dir.file("last.pt"));
  const auto info = am::read_checkpoint_info(dir.file("last.pt"));
  // The model as today's CLI builds it from the same flags. The first glimpse of
  // runs from before the option was at the centre: continuing one says so.
  nlohmann::json flags = {{"glimpses", 2},  {"glimpse_size", 4}, {"hidden", 8},
                          {"what_size", 8}, {"where_size", 8},   {"glimpse_features", 8}};
  const auto& kind = am::model_registry().at("ram");
  auto today = am::make_classifier("ram", am::complete_options(kind, flags, am::InputShape{1, 28, 28}));
  try {
    am::train_classifier(*today, attend::datasets::DigitsSource({torch::zeros({4, 28, 28}, torch::kUInt8),
                                                                  torch::zeros({4}, torch::kInt64)}),
                         nullptr, am::TrainOptions().epochs(2).batch_size(500).seed(5).run_dir(dir.path().string()),
                         info.data);
    ADD_FAILURE() << "continued a centre-start run with random starts";
  } catch (const attend::IoError& e) {
    EXPECT_NE(std::string(e.what()).find("model.options.first_location is (absent) there but \"random\" now"),
              std::string::npos)
        << e.what();
  }
  flags["first_location"] = "centre";
  const auto options = am::complete_options(kind, flags, am::InputShape{1, 28, 28});
  auto ram = am::make_classifier("ram", options);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(1);
  const attend::datasets::DigitsSource train(
      {torch::randint(0, 256, {1000, 28, 28}, gen, torch::kUInt8), torch::randint(0, 10, {1000}, gen)});
  BeginRecorder rec;
  const auto training = am::TrainOptions().epochs(2).batch_size(500).seed(5).run_dir(dir.path().string());
  const auto summary = am::train_classifier(*ram, train, nullptr, training, info.data, &rec);
  ASSERT_EQ(rec.begins.size(), 1u);
  EXPECT_TRUE(rec.begins[0].resumed);
  EXPECT_EQ(rec.begins[0].start_epoch, 1);
  EXPECT_EQ(rec.begins[0].start_step, 2);
  EXPECT_EQ(summary.global_step, 4);
  const auto now = am::read_checkpoint_info(dir.file("last.pt"));
  EXPECT_EQ(now.format, am::kCheckpointFormat) << "rewritten in the current format";
  EXPECT_EQ(now.data, info.data);
  // Other training options are another run.
  auto ram2 = am::make_classifier("ram", options);
  EXPECT_THROW(am::train_classifier(*ram2, train, nullptr, am::TrainOptions(training).lr(0.5).epochs(3), info.data),
               attend::IoError);
}

namespace {

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_all(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
}

std::string load_error(const std::string& path, torch::nn::Module& model) {
  try {
    am::load_checkpoint(path, model);
  } catch (const attend::IoError& e) {
    return e.what();
  }
  return "(loaded)";
}

/// Where the bytes of `tensor` (stored uncompressed) lie in a checkpoint's `bytes`.
std::size_t stored_at(const std::string& bytes, const torch::Tensor& tensor) {
  const auto t = tensor.contiguous();
  return bytes.find(std::string(static_cast<const char*>(t.data_ptr()), static_cast<std::size_t>(t.nbytes())));
}

}  // namespace

TEST_F(Checkpoint, AFlippedBitInsideAWeightIsAChecksumMismatch) {
  Net net;
  const auto path = dir.file("c.pt");
  am::save_checkpoint(path, describe(), *net);
  auto bytes = read_all(path);
  // The stored bytes of fc2.weight (float32, uncompressed in the archive).
  const auto at = stored_at(bytes, net->fc2->weight);
  ASSERT_NE(at, std::string::npos);
  const auto middle = at + static_cast<std::size_t>(net->fc2->weight.nbytes()) / 2;
  bytes[middle] = static_cast<char>(bytes[middle] ^ 0x10);
  write_all(path, bytes);
  Net other;
  const auto before = other->fc2->weight.clone();
  const auto what = load_error(path, *other);
  EXPECT_EQ(what.rfind(path + ": corrupt: checksum mismatch in record ", 0), 0u) << what;
  EXPECT_TRUE(torch::equal(before, other->fc2->weight)) << "nothing loaded";
  EXPECT_EQ(what.find('\n'), std::string::npos);
  // The description alone is refused too: the whole file is checked.
  EXPECT_THROW(am::read_checkpoint_info(path), attend::IoError);
}

// LibTorch writes a zip64 directory record and locator before the zip's end record, and
// its reader takes the 64-bit figures whenever the locator is there. An end record whose
// 32-bit figures say "no entries" once let a damaged archive past the record checks into
// LibTorch's TorchScript parser, which crashed on it (a fuzzing finding); the two
// records must now agree, or the 32-bit one hold the zip64 marks.
TEST_F(Checkpoint, TheZipEndRecordMustAgreeWithTheZip64RecordLibTorchReads) {
  Net net;
  const auto path = dir.file("c.pt");
  am::save_checkpoint(path, describe(), *net);
  const auto bytes = read_all(path);
  const auto eocd = bytes.rfind(std::string("PK\x05\x06", 4));
  ASSERT_NE(eocd, std::string::npos);
  ASSERT_EQ(bytes.compare(eocd - 20, 4, std::string("PK\x06\x07", 4)), 0) << "LibTorch wrote no zip64 locator";
  const auto with_figures = [&](char fill) {  // entries (twice), directory size and offset
    auto changed = bytes;
    for (std::size_t i = eocd + 8; i < eocd + 20; ++i) changed[i] = fill;
    return changed;
  };
  write_all(path, with_figures('\0'));
  Net other;
  const auto before = other->fc2->weight.clone();
  EXPECT_EQ(load_error(path, *other), path + ": corrupt: zip directory and zip64 directory record disagree");
  EXPECT_TRUE(torch::equal(before, other->fc2->weight)) << "nothing loaded";
  EXPECT_THROW(am::read_checkpoint_info(path), attend::IoError);
  // All 32-bit figures marked as "see the zip64 record": the checkpoint as written.
  write_all(path, with_figures('\xff'));
  EXPECT_EQ(load_error(path, *other), "(loaded)");
  EXPECT_TRUE(torch::equal(net->fc2->weight, other->fc2->weight));
  // A zip64 record that is not where the locator points.
  auto moved = bytes;
  moved[eocd - 20 + 8] = static_cast<char>(moved[eocd - 20 + 8] + 1);
  write_all(path, moved);
  EXPECT_EQ(load_error(path, *other), path + ": corrupt: zip64 directory record missing");
}

namespace {

/// CRC-32 as zip computes it (reflected, polynomial 0xEDB88320).
std::uint32_t zip_crc(const std::string& bytes) {
  std::uint32_t crc = 0xffffffffu;
  for (const char c : bytes) {
    crc ^= static_cast<unsigned char>(c);
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1u)));
  }
  return ~crc;
}

void put_le32(std::string& bytes, std::size_t at, std::uint32_t v) {
  for (int k = 0; k < 4; ++k) bytes[at + static_cast<std::size_t>(k)] = static_cast<char>((v >> (8 * k)) & 0xff);
}

/// Offset of the central directory entry of the record holding byte `data` of `bytes`:
/// the entry whose local header precedes `data` most closely.
std::size_t directory_entry_of(const std::string& bytes, std::size_t data) {
  std::size_t best = std::string::npos, best_local = 0;
  for (auto at = bytes.find(std::string("PK\x01\x02", 4)); at != std::string::npos;
       at = bytes.find(std::string("PK\x01\x02", 4), at + 4)) {
    std::uint32_t local = 0;
    for (int k = 3; k >= 0; --k) local = (local << 8) | static_cast<unsigned char>(bytes[at + 42 + static_cast<std::size_t>(k)]);
    if (local < data && (best == std::string::npos || local > best_local)) {
      best = at;
      best_local = local;
    }
  }
  return best;
}

}  // namespace

// A generator state of the right size that the generator itself refuses (an unseeded
// Mersenne twister, as a zeroed record gives): one error line naming it, found before
// the model, the optimizer or the generator changed. Fuzz.checkpoint met LibTorch's own
// c10::Error here, thrown after the weights had been copied.
TEST_F(Checkpoint, AGeneratorStateTheGeneratorRefusesIsFoundBeforeAnythingChanges) {
  Net net;
  const auto path = dir.file("c.pt");
  const auto state = at::detail::getDefaultCPUGenerator().get_state();
  am::save_checkpoint(path, describe(), *net);
  auto bytes = read_all(path);
  const auto at = stored_at(bytes, state);
  ASSERT_NE(at, std::string::npos);
  const std::string zeros(static_cast<std::size_t>(state.numel()), '\0');
  bytes.replace(at, zeros.size(), zeros);
  const auto entry = directory_entry_of(bytes, at);
  ASSERT_NE(entry, std::string::npos);
  std::uint32_t local = 0;
  for (int k = 3; k >= 0; --k) local = (local << 8) | static_cast<unsigned char>(bytes[entry + 42 + static_cast<std::size_t>(k)]);
  put_le32(bytes, entry + 16, zip_crc(zeros));  // the checksums agree: only the state is wrong
  put_le32(bytes, local + 14, zip_crc(zeros));
  write_all(path, bytes);

  torch::manual_seed(5);
  Net other;
  const auto weights_before = other->fc1->weight.clone();
  ASSERT_FALSE(torch::equal(weights_before, net->fc1->weight));
  const auto generator_before = at::detail::getDefaultCPUGenerator().get_state();
  try {
    am::load_checkpoint(path, *other, nullptr, load_options("", /*restore_rng=*/true));
    ADD_FAILURE() << "an unusable generator state was accepted";
  } catch (const attend::IoError& e) {
    EXPECT_EQ(std::string(e.what()), path + ": corrupt state of the default generator: Invalid mt19937 state");
  }
  EXPECT_TRUE(torch::equal(other->fc1->weight, weights_before)) << "weights changed by a failed load";
  EXPECT_TRUE(torch::equal(at::detail::getDefaultCPUGenerator().get_state(), generator_before));
  // Weights alone (evaluation) do not need the generator.
  EXPECT_EQ(load_error(path, *other), "(loaded)");
  EXPECT_TRUE(torch::equal(other->fc1->weight, net->fc1->weight));
}

// LibTorch's reader takes a record carrying the DOS folder attribute for a folder and
// reads it as empty, whatever its checksum covers; such a record is refused by name.
// (Fuzz.checkpoint: one flipped attribute byte emptied the stored generator state.)
TEST_F(Checkpoint, ARecordMarkedAsAFolderIsRefused) {
  Net net;
  const auto path = dir.file("c.pt");
  am::save_checkpoint(path, describe(), *net);
  auto bytes = read_all(path);
  const auto at = stored_at(bytes, net->fc2->weight);
  ASSERT_NE(at, std::string::npos);
  const auto entry = directory_entry_of(bytes, at);
  ASSERT_NE(entry, std::string::npos);
  bytes[entry + 38] = static_cast<char>(bytes[entry + 38] | 0x10);
  const std::string name = bytes.substr(entry + 46, static_cast<unsigned char>(bytes[entry + 28]));
  write_all(path, bytes);
  Net other;
  const auto before = other->fc2->weight.clone();
  EXPECT_EQ(load_error(path, *other), path + ": corrupt: record " + name + " is marked as a folder");
  EXPECT_TRUE(torch::equal(before, other->fc2->weight));
}

TEST_F(Checkpoint, EveryTruncationIsRefusedNamingTheFile) {
  Net net;
  const auto path = dir.file("c.pt");
  am::save_checkpoint(path, describe(), *net);
  const auto bytes = read_all(path);
  const auto cut_path = dir.file("cut.pt");
  for (const double fraction : {0.0, 0.1, 0.5, 0.9, 0.99}) {
    write_all(cut_path, bytes.substr(0, static_cast<size_t>(fraction * static_cast<double>(bytes.size()))));
    Net other;
    const auto what = load_error(cut_path, *other);
    EXPECT_EQ(what.rfind(cut_path + ": ", 0), 0u) << fraction << ": " << what;
    EXPECT_TRUE(what.find("corrupt") != std::string::npos || what.find("not a readable checkpoint") != std::string::npos)
        << what;
  }
}

TEST_F(Checkpoint, ANonFiniteNumberInTheDescriptionIsRefusedBeforeWriting) {
  Net net;
  auto info = describe();
  info.training["schedule"] = {{"lr", 0.1}, {"gamma", std::nan("")}};
  const auto path = dir.file("c.pt");
  try {
    am::save_checkpoint(path, info, *net);
    ADD_FAILURE() << "written";
  } catch (const attend::IoError& e) {
    EXPECT_EQ(std::string(e.what()),
              path + ": cannot write a checkpoint whose description holds a non-finite number at training.schedule.gamma");
  }
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST_F(Checkpoint, AWarmStartCopiesTheLayersThatFitAndLeavesTheRest) {
  const auto& registry = am::model_registry();
  const am::InputShape shape{3, 32, 32};
  const auto cam_options = am::complete_options(
      registry.at("cam"), {{"filters", {4, 6, 8}}, {"pools", 1}, {"labels", "multi"}, {"classes", 5}}, shape);
  torch::manual_seed(2);
  auto cam = am::make_classifier("cam", cam_options);
  // Batch-norm statistics away from their defaults, so copied buffers are visible.
  cam->module().train();
  cam->logits(torch::rand({4, 3, 32, 32}) * 3 + 1);
  am::CheckpointInfo info;
  info.model = {"cam", cam_options};
  const auto path = dir.file("cam.pt");
  am::save_checkpoint(path, info, cam->module());

  auto seam_options = am::complete_options(registry.at("seam"), {{"classes", 5}}, shape);
  seam_options["filters"] = {4, 6, 10};  // the last block does not fit the cam's
  seam_options["pools"] = 1;
  torch::manual_seed(3);
  auto seam = am::make_classifier("seam", seam_options);
  std::map<std::string, torch::Tensor> before;
  for (const auto& p : seam->module().named_parameters()) before[p.key()] = p.value().clone();
  for (const auto& b : seam->module().named_buffers()) before[b.key()] = b.value().clone();

  const auto result = am::warm_start(path, seam->module());
  EXPECT_EQ(result.kind, "cam");
  EXPECT_EQ(result.copied.size() + result.kept.size(), before.size());
  std::map<std::string, torch::Tensor> source;
  for (const auto& p : cam->module().named_parameters()) source[p.key()] = p.value();
  for (const auto& b : cam->module().named_buffers()) source[b.key()] = b.value();
  const std::set<std::string> copied(result.copied.begin(), result.copied.end());
  std::map<std::string, torch::Tensor> now;
  for (const auto& p : seam->module().named_parameters()) now[p.key()] = p.value();
  for (const auto& b : seam->module().named_buffers()) now[b.key()] = b.value();
  std::size_t expected_copies = 0;
  for (const auto& [name, value] : before) {
    // Blocks 1 and 2 fit; block 3 does not, not even its batch-norm step counter (a
    // scalar of the same shape): a layer is taken whole or not at all.
    const bool fits = name.rfind("convs.0.", 0) == 0 || name.rfind("convs.1.", 0) == 0;
    expected_copies += fits ? 1 : 0;
    EXPECT_EQ(copied.count(name), fits ? 1u : 0u) << name;
    EXPECT_TRUE(torch::equal(now.at(name), fits ? source.at(name) : value)) << name;
  }
  EXPECT_EQ(expected_copies, 12u);  // two blocks: conv weight; bn weight, bias, mean, var, count
  EXPECT_EQ(copied.size(), expected_copies);

  // Nothing in common: refused, the model untouched.
  Net net;
  am::save_checkpoint(dir.file("net.pt"), describe(), *net);
  auto other = am::make_classifier("seam", seam_options);
  const auto head = dynamic_cast<am::SeamClassifier&>(*other).net->classifier->weight.clone();
  try {
    am::warm_start(dir.file("net.pt"), other->module());
    ADD_FAILURE() << "a checkpoint with nothing in common was accepted";
  } catch (const attend::IoError& e) {
    EXPECT_NE(std::string(e.what()).find("no parameter or buffer of this 'test-net' checkpoint fits"),
              std::string::npos)
        << e.what();
  }
  EXPECT_TRUE(torch::equal(dynamic_cast<am::SeamClassifier&>(*other).net->classifier->weight, head));
  EXPECT_THROW(am::warm_start(dir.file("missing.pt"), other->module()), attend::IoError);

  EXPECT_EQ(am::summarise_tensor_names({"convs.0.0.weight", "classifier.weight", "convs.1.0.weight"}),
            "convs (2 tensors), classifier (1 tensor)");
  EXPECT_EQ(am::summarise_tensor_names({}), "none");
}
