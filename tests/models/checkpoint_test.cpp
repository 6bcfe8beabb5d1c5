#include <attend/io_error.h>
#include <attend/models/checkpoint.h>

#include <test_support.h>

#include <torch/torch.h>

#include <gtest/gtest.h>

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

am::CheckpointInfo describe(const std::string& kind = "test-net") {
  am::CheckpointInfo info;
  info.kind = kind;
  info.options = {{"hidden", 8}};
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
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));

  torch::manual_seed(99);
  Net other;
  torch::optim::Adam other_opt(other->parameters(), torch::optim::AdamOptions(1e-2));
  ASSERT_FALSE(same_state(*net, *other));
  const auto info = am::load_checkpoint(path, *other, &other_opt);
  EXPECT_TRUE(same_state(*net, *other));
  EXPECT_EQ(info.kind, "test-net");
  EXPECT_EQ(info.options["hidden"], 8);
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

TEST_F(Checkpoint, DescriptionIsReadableWithoutTheModel) {
  Net net;
  am::save_checkpoint(dir.file("c.pt"), describe("ram"), *net);
  const auto info = am::read_checkpoint_info(dir.file("c.pt"));
  EXPECT_EQ(info.kind, "ram");
  EXPECT_FALSE(info.has_optimizer);
}

TEST_F(Checkpoint, RestoresTheDefaultGeneratorForExactResume) {
  Net net;
  am::save_checkpoint(dir.file("c.pt"), describe(), *net);
  const auto expected = torch::randn({5});
  torch::randn({100});
  am::load_checkpoint(dir.file("c.pt"), *net, nullptr, am::LoadOptions{"", /*restore_rng=*/true});
  EXPECT_TRUE(torch::equal(torch::randn({5}), expected));
}

TEST_F(Checkpoint, RejectsAnotherKindAndLeavesTheModelUntouched) {
  Net net;
  am::save_checkpoint(dir.file("c.pt"), describe("cnn"), *net);
  torch::manual_seed(2);
  Net other;
  Net before;
  torch::NoGradGuard g;
  for (auto& p : before->named_parameters()) p.value().copy_(other->named_parameters()[p.key()]);
  try {
    am::load_checkpoint(dir.file("c.pt"), *other, nullptr, am::LoadOptions{"ram"});
    ADD_FAILURE() << "kind mismatch accepted";
  } catch (const attend::IoError& e) {
    EXPECT_NE(std::string(e.what()).find("'cnn' model, expected 'ram'"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(torch::equal(other->fc1->weight, before->fc1->weight));
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

TEST_F(Checkpoint, FailedWriteLeavesThePreviousCheckpointIntact) {
  Net net;
  const auto path = dir.file("c.pt");
  am::save_checkpoint(path, describe(), *net);
  const auto before = attend::testing::read_bytes(path);
  // Make the temporary file impossible to create: a folder already has its name.
  std::filesystem::create_directories(path + ".tmp");
  Net changed;
  EXPECT_THROW(am::save_checkpoint(path, describe("other"), *changed), attend::IoError);
  EXPECT_EQ(attend::testing::read_bytes(path), before);
  Net loaded;
  EXPECT_EQ(am::load_checkpoint(path, *loaded).kind, "test-net");
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
