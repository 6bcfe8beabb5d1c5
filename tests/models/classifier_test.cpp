#include <attend/datasets/source.h>
#include <attend/io_error.h>
#include <attend/models/soft_glimpse_net.h>
#include <attend/models/train.h>

#include <test_support.h>

#include <torch/torch.h>

#include <gtest/gtest.h>

#include <limits>

namespace am = attend::models;
namespace ds = attend::datasets;
using attend::testing::TempDir;

namespace {

/// Two classes anyone can tell apart: a bright bar on the left or on the right.
ds::Digits bars(std::int64_t n, std::uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  auto images = torch::randint(0, 40, {n, 12, 12}, gen, torch::kUInt8);
  auto labels = torch::randint(0, 2, {n}, gen, torch::kInt64);
  for (std::int64_t i = 0; i < n; ++i) {
    const auto col = labels[i].item<std::int64_t>() == 0 ? 2 : 9;
    images[i].select(1, col).fill_(255);
  }
  return {images, labels};
}

nlohmann::json cnn_options() {
  return am::ConvNetOptions().height(12).width(12).classes(2).filters({4}).hidden(16).to_json();
}

}  // namespace

TEST(Classifiers, EveryKindGivesNormalisedLogProbabilitiesOfTheRightShape) {
  torch::manual_seed(0);
  auto ram = am::RamOptions().glimpse_size(4).scales(2).glimpses(3).hidden(16).classes(2).to_json();
  ram["height"] = 12;
  ram["width"] = 12;
  for (const auto& [kind, options] : std::vector<std::pair<std::string, nlohmann::json>>{
           {"fc", am::FcNetOptions().height(12).width(12).classes(2).hidden({8}).to_json()},
           {"cnn", cnn_options()},
           {"ram", ram},
           {"soft", am::SoftGlimpseNetOptions().height(12).width(12).classes(2).glimpse_size(4).glimpses(2)
                        .hidden(8).features(8).to_json()},
           {"soft", am::SoftGlimpseNetOptions().height(12).width(12).classes(2).glimpse("affine").glimpse_size(4)
                        .glimpses(2).hidden(8).features(8).to_json()}}) {
    auto c = am::make_classifier(kind, options);
    EXPECT_EQ(c->kind(), kind);
    const auto lp = c->predict(torch::rand({3, 1, 12, 12}), 2);
    EXPECT_EQ(lp.sizes(), (std::vector<std::int64_t>{3, 2})) << kind;
    EXPECT_TRUE(torch::allclose(lp.exp().sum(1), torch::ones({3}), 1e-5, 1e-6)) << kind;
    const auto trace = c->glimpse_trace(torch::rand({1, 1, 12, 12}));
    EXPECT_EQ(trace.has_value(), kind == "ram" || kind == "soft");
    if (trace) {
      EXPECT_EQ(trace->locations.size(1), kind == "ram" ? 3 : 2);
      EXPECT_EQ(trace->glimpses.size(1), trace->locations.size(1));
      EXPECT_EQ(trace->sides.defined(), kind == "soft");
    }
    EXPECT_THROW(c->predict(torch::rand({3, 1, 10, 12}), 0), c10::Error) << kind << " accepts a wrong size";
  }
  EXPECT_THROW(am::make_classifier("transformer", {}), c10::Error);
  EXPECT_THROW(am::make_classifier("fc", {{"channels", 1}}), c10::Error);
}

// Training tells the RAM its epoch; with location_std_start the policy std it trains
// with (reported as policy_std) anneals from there to location_std, and evaluation
// samples with location_std. The option survives the round trip through options().
TEST(Classifiers, RamTrainsWithTheAnnealedStdOfTheEpoch) {
  torch::manual_seed(0);
  auto options = am::RamOptions().glimpse_size(4).scales(2).glimpses(3).hidden(16).classes(2).location_std(0.1)
                     .to_json();
  options["height"] = 12;
  options["width"] = 12;
  options["location_std_start"] = 0.3;
  auto ram = am::make_classifier("ram", options);
  EXPECT_EQ(ram->options().at("location_std_start").get<double>(), 0.3);
  const auto images = torch::rand({4, 1, 12, 12});
  const auto labels = torch::tensor({0, 1, 0, 1}, torch::kInt64);
  for (const auto& [epoch, expected] : std::vector<std::pair<std::int64_t, double>>{{0, 0.3}, {2, 0.2}, {4, 0.1}}) {
    ram->set_epoch(epoch, 5);
    EXPECT_DOUBLE_EQ(ram->loss(images, labels).metrics.at("policy_std"), expected) << epoch;
  }
  options.erase("location_std_start");
  auto constant = am::make_classifier("ram", options);
  EXPECT_FALSE(constant->options().contains("location_std_start")) << "old checkpoints must still match";
  constant->set_epoch(0, 5);
  EXPECT_FALSE(constant->loss(images, labels).metrics.count("policy_std"));
  options["location_std_start"] = -1;
  EXPECT_THROW(am::make_classifier("ram", options), c10::Error);
  options["location_std_start"] = std::numeric_limits<double>::infinity();
  EXPECT_THROW(am::make_classifier("ram", options), c10::Error);
}

TEST(TrainClassifier, LearnsAnEasyTaskAndItsBestCheckpointReproducesThePredictions) {
  TempDir dir;
  torch::manual_seed(1);
  auto train = std::make_shared<const ds::DigitsSource>(bars(256, 1));
  const ds::DigitsSource val(bars(64, 2));
  auto cnn = am::make_classifier("cnn", cnn_options());
  const auto summary = am::train_classifier(
      *cnn, *train, &val,
      am::TrainOptions().epochs(3).batch_size(32).lr(3e-3).clip_norm(5.0).run_dir(dir.path().string()),
      {{"kind", "test"}});
  EXPECT_EQ(summary.status, am::FitStatus::kCompleted);
  EXPECT_GE(summary.best, 0.95);
  am::CheckpointInfo info;
  auto best = am::load_classifier(summary.best_checkpoint, &info);
  EXPECT_EQ(info.kind, "cnn");
  EXPECT_EQ(info.options["data"]["kind"], "test");
  const auto r = am::evaluate_classifier(*best, val, 0, 10);
  EXPECT_DOUBLE_EQ(r.accuracy, summary.best);
  EXPECT_EQ(r.count, 64);
  EXPECT_EQ(r.confusion.sum().item<std::int64_t>(), 64);
  EXPECT_NEAR(r.confusion.diagonal().sum().item<double>() / 64.0, r.accuracy, 1e-12);
}

TEST(TrainClassifier, RejectsMismatchedDataAndNonsenseOptions) {
  auto cnn = am::make_classifier("cnn", cnn_options());
  const ds::DigitsSource wrong({torch::zeros({4, 10, 10}, torch::kUInt8), torch::zeros({4}, torch::kInt64)});
  EXPECT_THROW(am::train_classifier(*cnn, wrong, nullptr, am::TrainOptions()), c10::Error);
  const ds::DigitsSource right(bars(8, 3));
  EXPECT_THROW(am::train_classifier(*cnn, right, nullptr, am::TrainOptions().lr(0)), c10::Error);
  EXPECT_THROW(am::train_classifier(*cnn, right, nullptr, am::TrainOptions().optimizer("rmsprop")), c10::Error);
}

TEST(Schedule, StepAndCosineFollowTheirFormulas) {
  const auto step = am::TrainOptions().lr(1.0).schedule("step").step_epochs(3).gamma(0.5).epochs(10);
  EXPECT_DOUBLE_EQ(am::scheduled_lr(step, 2), 1.0);
  EXPECT_DOUBLE_EQ(am::scheduled_lr(step, 3), 0.5);
  EXPECT_DOUBLE_EQ(am::scheduled_lr(step, 7), 0.25);
  const auto cosine = am::TrainOptions().lr(2.0).schedule("cosine").epochs(4);
  EXPECT_DOUBLE_EQ(am::scheduled_lr(cosine, 0), 2.0);
  EXPECT_NEAR(am::scheduled_lr(cosine, 2), 1.0, 1e-12);
  EXPECT_DOUBLE_EQ(am::scheduled_lr(am::TrainOptions().lr(0.1), 50), 0.1);
}

TEST(LoadClassifier, RefusesCheckpointsThatAreNotClassifiers) {
  TempDir dir;
  torch::nn::Linear lin(2, 2);
  am::CheckpointInfo info;
  info.kind = "captioner";
  am::save_checkpoint(dir.file("c.pt"), info, *lin);
  try {
    am::load_classifier(dir.file("c.pt"));
    ADD_FAILURE() << "accepted";
  } catch (const attend::IoError& e) {
    EXPECT_NE(std::string(e.what()).find("'captioner' model, not an image classifier"), std::string::npos);
  }
}

TEST(SoftGlimpseNet, WhereItLooksIsTrainedByBackpropagation) {
  for (const char* glimpse : {"gaussian", "affine"}) {
    SCOPED_TRACE(glimpse);
    torch::manual_seed(3);
    am::SoftGlimpseNet net(am::SoftGlimpseNetOptions().height(16).width(16).glimpse(glimpse).glimpse_size(4)
                               .glimpses(3).hidden(8).features(8));
    torch::nll_loss(net->forward(torch::rand({4, 1, 16, 16})).log_probs, torch::randint(0, 10, {4})).backward();
    const auto& where = std::string(glimpse) == "gaussian" ? net->gaussian->to_params->weight
                                                           : net->affine->to_theta->weight;
    ASSERT_TRUE(where.grad().defined());
    EXPECT_GT(where.grad().abs().sum().item<float>(), 0.0f) << "the glimpse placement gets gradient";
  }
  EXPECT_THROW(am::SoftGlimpseNet(am::SoftGlimpseNetOptions().glimpse("retina")), c10::Error);
  am::SoftGlimpseNet net(am::SoftGlimpseNetOptions().height(16).width(16));
  EXPECT_THROW(net->forward(torch::rand({1, 1, 20, 16})), c10::Error);
}
