#include <attend/datasets/source.h>
#include <attend/io_error.h>
#include <attend/models/baselines.h>
#include <attend/models/ram.h>
#include <attend/models/registry.h>
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

/// Small options of every built-in kind for 1x12x12 images and 2 classes.
std::vector<std::pair<std::string, nlohmann::json>> small_kinds() {
  const am::InputShape input{1, 12, 12};
  auto complete = [&](const std::string& kind, const nlohmann::json& user) {
    return std::make_pair(kind, am::complete_options(am::model_registry().at(kind), user, input));
  };
  return {complete("fc", {{"classes", 2}, {"hidden", {8}}}),
          complete("cnn", {{"classes", 2}, {"filters", {4}}, {"hidden", 16}}),
          complete("ram", {{"classes", 2}, {"glimpse_size", 4}, {"scales", 2}, {"glimpses", 3}, {"hidden", 16}}),
          complete("soft", {{"classes", 2}, {"glimpse_size", 4}, {"glimpses", 2}, {"hidden", 8}, {"features", 8}}),
          complete("soft", {{"classes", 2}, {"glimpse", "affine"}, {"glimpse_size", 4}, {"glimpses", 2},
                            {"hidden", 8}, {"features", 8}})};
}

// Every kind, through the interface alone: predictions are the log-softmax of its
// logits, a short training on an easy task lowers its loss and raises its accuracy
// above chance, traces come exactly from the kinds that declare them, and rebuilding
// from options() gives the same options.
TEST(Classifiers, EveryKindLearnsAnEasyTaskThroughTheInterface) {
  const auto data = bars(64, 5);
  const auto images = ds::images_to_float(data.images);
  for (const auto& [kind, options] : small_kinds()) {
    SCOPED_TRACE(options.dump());
    std::unique_ptr<am::Classifier> c;
    {
      am::ScopedSeed seeded(3);
      c = am::make_classifier(kind, options);
    }
    EXPECT_EQ(c->kind(), kind);
    EXPECT_EQ(am::make_classifier(kind, c->options())->options(), c->options());
    const auto& caps = am::model_registry().at(kind).capabilities;
    {
      torch::NoGradGuard no_grad;
      am::ModeGuard evaluating(c->module(), false);
      const auto x = images.narrow(0, 0, 3);
      EXPECT_TRUE(torch::allclose(c->predict(x, 0), torch::log_softmax(c->logits(x), 1), 1e-5, 1e-6));
      const auto trace = c->glimpse_trace(x.narrow(0, 0, 1));
      EXPECT_EQ(trace.has_value(), caps.glimpse_trace);
      if (trace) {
        EXPECT_EQ(trace->locations.size(1), kind == "ram" ? 3 : 2);
        EXPECT_EQ(trace->glimpses.size(1), trace->locations.size(1));
        EXPECT_EQ(trace->sides.defined(), kind == "soft");
      }
      EXPECT_THROW(c->predict(torch::rand({3, 1, 10, 12}), 0), c10::Error) << kind << " accepts a wrong size";
    }
    torch::optim::Adam opt(c->module().parameters(), torch::optim::AdamOptions(kind == "ram" ? 1e-2 : 3e-3));
    double first = 0, last = 0;
    for (int step = 0; step < 60; ++step) {
      opt.zero_grad();
      auto l = c->loss(images, data.labels);
      l.total.backward();
      opt.step();
      (step == 0 ? first : last) = l.total.item<double>();
    }
    EXPECT_LT(last, first);
    const ds::DigitsSource source(data);
    EXPECT_GE(am::evaluate_classifier(*c, source, 0).accuracy, kind == "ram" ? 0.75 : 0.9) << "chance is 0.5";
  }
}

// The CNN's feature map and head compose to its logits, and Grad-CAM can differentiate
// the score down to the feature map; the other kinds say they have no feature map.
TEST(Classifiers, FeatureMapAndHeadComposeToTheLogits) {
  for (const auto& [kind, options] : small_kinds()) {
    auto c = am::make_classifier(kind, options);
    const auto x = torch::rand({2, 1, 12, 12});
    if (!am::model_registry().at(kind).capabilities.feature_map) {
      EXPECT_THROW(c->features(x), c10::Error) << kind;
      continue;
    }
    auto f = c->features(x);
    EXPECT_EQ(f.sizes(), (std::vector<std::int64_t>{2, 4, 6, 6}));
    EXPECT_TRUE(torch::allclose(c->head(f), c->logits(x), 1e-6, 1e-6));
    f = f.detach().requires_grad_(true);
    c->head(f).select(1, 1).sum().backward();
    EXPECT_GT(f.grad().abs().sum().item<float>(), 0.0f);
  }
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
  const auto before = at::detail::getDefaultCPUGenerator().get_state();
  const auto summary = am::train_classifier(
      *cnn, *train, &val,
      am::TrainOptions().epochs(3).batch_size(32).lr(3e-3).clip_norm(5.0).run_dir(dir.path().string()),
      {{"kind", "test"}});
  EXPECT_EQ(summary.status, am::FitStatus::kCompleted);
  EXPECT_GE(summary.best, 0.95);
  EXPECT_TRUE(torch::equal(at::detail::getDefaultCPUGenerator().get_state(), before))
      << "training reseeded the process's generator";
  am::CheckpointInfo info;
  auto best = am::load_classifier(summary.best_checkpoint, &info);
  EXPECT_EQ(info.model.kind, "cnn");
  EXPECT_EQ(info.model.options, cnn->options());
  EXPECT_EQ(info.data["kind"], "test");
  EXPECT_EQ(info.training["batch_size"], 32);
  EXPECT_EQ(info.training["optimizer"], "adam");
  const auto r = am::evaluate_classifier(*best, val, 0, 10);
  EXPECT_DOUBLE_EQ(r.accuracy, summary.best);
  EXPECT_EQ(r.count, 64);
  EXPECT_EQ(r.confusion.sum().item<std::int64_t>(), 64);
  EXPECT_NEAR(r.confusion.diagonal().sum().item<double>() / 64.0, r.accuracy, 1e-12);
}

// Evaluation runs in evaluation mode and leaves the mode as it found it, also when
// it throws.
TEST(EvaluateClassifier, RestoresTheModuleModeItFound) {
  auto cnn = am::make_classifier("cnn", cnn_options());
  const ds::DigitsSource data(bars(8, 4));
  for (const bool training : {true, false}) {
    cnn->module().train(training);
    am::evaluate_classifier(*cnn, data, 0);
    EXPECT_EQ(cnn->module().is_training(), training);
  }
  cnn->module().train(true);
  const ds::DigitsSource bad_labels({torch::zeros({2, 12, 12}, torch::kUInt8), torch::tensor({0, 7})});
  EXPECT_THROW(am::evaluate_classifier(*cnn, bad_labels, 0), c10::Error);
  EXPECT_TRUE(cnn->module().is_training());
}

TEST(TrainClassifier, RejectsMismatchedDataAndNonsenseOptions) {
  auto cnn = am::make_classifier("cnn", cnn_options());
  const ds::DigitsSource wrong({torch::zeros({4, 10, 10}, torch::kUInt8), torch::zeros({4}, torch::kInt64)});
  EXPECT_THROW(am::train_classifier(*cnn, wrong, nullptr, am::TrainOptions()), c10::Error);
  const ds::DigitsSource right(bars(8, 3));
  EXPECT_THROW(am::train_classifier(*cnn, right, nullptr, am::TrainOptions().lr(0)), c10::Error);
  EXPECT_THROW(am::train_classifier(*cnn, right, nullptr, am::TrainOptions().weight_decay(INFINITY)), c10::Error);
  EXPECT_THROW(am::train_classifier(*cnn, right, &wrong, am::TrainOptions()), c10::Error) << "validation size";
}

TEST(Enums, ParseOnceWithTheValidNamesInTheError) {
  EXPECT_EQ(am::parse_enum<am::Schedule>("cosine"), am::Schedule::kCosine);
  EXPECT_STREQ(am::enum_name(am::OptimizerKind::kSgd), "sgd");
  EXPECT_EQ(am::enum_names<am::RamCore>(), (std::vector<std::string>{"rnn", "lstm"}));
  try {
    am::parse_enum<am::OptimizerKind>("rmsprop");
    ADD_FAILURE() << "accepted";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what_without_backtrace()).find("unknown optimizer 'rmsprop' (expected adam or sgd)"),
              std::string::npos)
        << e.what_without_backtrace();
  }
  EXPECT_EQ(am::TrainOptions().schedule(am::Schedule::kStep).to_json()["schedule"], "step");
}

TEST(Schedule, StepAndCosineFollowTheirFormulas) {
  const auto step = am::TrainOptions().lr(1.0).schedule(am::Schedule::kStep).step_epochs(3).gamma(0.5).epochs(10);
  EXPECT_DOUBLE_EQ(am::scheduled_lr(step, 2), 1.0);
  EXPECT_DOUBLE_EQ(am::scheduled_lr(step, 3), 0.5);
  EXPECT_DOUBLE_EQ(am::scheduled_lr(step, 7), 0.25);
  const auto cosine = am::TrainOptions().lr(2.0).schedule(am::Schedule::kCosine).epochs(4);
  EXPECT_DOUBLE_EQ(am::scheduled_lr(cosine, 0), 2.0);
  EXPECT_NEAR(am::scheduled_lr(cosine, 2), 1.0, 1e-12);
  EXPECT_DOUBLE_EQ(am::scheduled_lr(am::TrainOptions().lr(0.1), 50), 0.1);
}

TEST(LoadClassifier, RefusesCheckpointsThatAreNotClassifiers) {
  TempDir dir;
  torch::nn::Linear lin(2, 2);
  am::CheckpointInfo info;
  info.model.kind = "captioner";
  am::save_checkpoint(dir.file("c.pt"), info, *lin);
  try {
    am::load_classifier(dir.file("c.pt"));
    ADD_FAILURE() << "accepted";
  } catch (const attend::IoError& e) {
    EXPECT_NE(std::string(e.what()).find("'captioner' model, not an image classifier"), std::string::npos);
  }
}

TEST(SoftGlimpseNet, WhereItLooksIsTrainedByBackpropagation) {
  for (const auto glimpse : {am::SoftGlimpse::kGaussian, am::SoftGlimpse::kAffine}) {
    SCOPED_TRACE(am::enum_name(glimpse));
    torch::manual_seed(3);
    am::SoftGlimpseNet net(am::SoftGlimpseNetOptions().height(16).width(16).glimpse(glimpse).glimpse_size(4)
                               .glimpses(3).hidden(8).features(8));
    torch::nll_loss(net->forward(torch::rand({4, 1, 16, 16})).log_probs, torch::randint(0, 10, {4})).backward();
    const auto& where = glimpse == am::SoftGlimpse::kGaussian ? net->gaussian->to_params->weight
                                                              : net->affine->to_theta->weight;
    ASSERT_TRUE(where.grad().defined());
    EXPECT_GT(where.grad().abs().sum().item<float>(), 0.0f) << "the glimpse placement gets gradient";
  }
  auto retina = am::SoftGlimpseNetOptions().to_json();
  retina["glimpse"] = "retina";
  EXPECT_THROW(am::SoftGlimpseNetOptions::from_json(retina), c10::Error);
  am::SoftGlimpseNet net(am::SoftGlimpseNetOptions().height(16).width(16));
  EXPECT_THROW(net->forward(torch::rand({1, 1, 20, 16})), c10::Error);
}

namespace {
/// Raises a stop flag after a number of steps.
struct StopAfter : am::TrainingObserver {
  std::atomic<bool>* flag;
  std::int64_t steps;
  std::int64_t seen = 0;
  StopAfter(std::atomic<bool>* f, std::int64_t n) : flag(f), steps(n) {}
  void on_step(const am::StepReport&) override {
    if (++seen == steps) flag->store(true);
  }
};
}  // namespace

// A RAM samples where it looks from its own generator: an interrupted run resumed in
// a fresh model (other initial weights, other generator state) ends with the same
// weights as a run that was never interrupted.
TEST(TrainClassifier, AnInterruptedRamRunResumesBitExactly) {
  TempDir dir;
  const ds::DigitsSource train(bars(48, 7));
  const auto options = am::complete_options(am::model_registry().at("ram"),
                                            {{"classes", 2}, {"glimpse_size", 4}, {"glimpses", 3}, {"hidden", 8},
                                             {"what_size", 8}, {"where_size", 8}, {"glimpse_features", 8}},
                                            am::InputShape{1, 12, 12});
  auto build = [&](std::uint64_t seed) {
    am::ScopedSeed seeded(seed);
    return am::make_classifier("ram", options);
  };
  const auto training = am::TrainOptions().epochs(3).batch_size(8).checkpoint_every(4);
  auto straight = build(1);
  am::train_classifier(*straight, train, nullptr, am::TrainOptions(training).run_dir(dir.file("a")));

  auto first = build(1);
  std::atomic<bool> stop{false};
  StopAfter observer(&stop, 9);  // mid-epoch, after the checkpoint at step 8
  const auto s1 = am::train_classifier(*first, train, nullptr, am::TrainOptions(training).run_dir(dir.file("b")), {},
                                       &observer, &stop);
  ASSERT_EQ(s1.status, am::FitStatus::kInterrupted);
  auto second = build(99);
  torch::randn({5}, second->generators().at("locations"));
  const auto s2 = am::train_classifier(*second, train, nullptr, am::TrainOptions(training).run_dir(dir.file("b")));
  EXPECT_EQ(s2.global_step, 18);
  const auto a = straight->module().named_parameters(), b = second->module().named_parameters();
  for (const auto& p : a) EXPECT_TRUE(torch::equal(p.value(), b[p.key()])) << p.key();
}
