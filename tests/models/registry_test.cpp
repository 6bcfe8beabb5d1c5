#include <attend/io_error.h>
#include <attend/models/baselines.h>
#include <attend/models/ram.h>
#include <attend/models/registry.h>
#include <attend/models/train.h>

#include <test_support.h>

#include <torch/torch.h>

#include <gtest/gtest.h>

namespace am = attend::models;
using attend::testing::contains;
using attend::testing::error_message;
using attend::testing::TempDir;

namespace {

/// A user's own kind: a linear classifier, registered from outside the library.
class LinearClassifier : public am::Classifier {
 public:
  explicit LinearClassifier(const nlohmann::json& j)
      : c_(j.at("channels")), h_(j.at("height")), w_(j.at("width")), k_(j.at("classes")), net_(c_ * h_ * w_, k_) {}
  std::string kind() const override { return "linear"; }
  nlohmann::json options() const override {
    return {{"channels", c_}, {"height", h_}, {"width", w_}, {"classes", k_}};
  }
  torch::nn::Module& module() override { return *net_; }
  std::int64_t channels() const override { return c_; }
  std::int64_t height() const override { return h_; }
  std::int64_t width() const override { return w_; }
  std::int64_t classes() const override { return k_; }
  am::ClassifierLoss loss(const torch::Tensor& x, const torch::Tensor& y) override {
    return {torch::cross_entropy_loss(logits(x), y), {}};
  }
  torch::Tensor logits(const torch::Tensor& x) override { return net_(x.flatten(1)); }

 private:
  std::int64_t c_, h_, w_, k_;
  torch::nn::Linear net_;
};

}  // namespace

TEST(Registry, ListsTheBuiltInKindsWithTheirCapabilities) {
  const auto& r = am::model_registry();
  std::vector<std::string> names;
  for (const auto& k : r.kinds()) names.push_back(k.name);
  EXPECT_EQ((std::vector<std::string>(names.begin(), names.begin() + 5)),
            (std::vector<std::string>{"ram", "soft", "cnn", "fc", "captioner"}));
  EXPECT_TRUE(r.at("ram").capabilities.stochastic_eval);
  EXPECT_TRUE(r.at("ram").capabilities.glimpse_trace);
  EXPECT_FALSE(r.at("soft").capabilities.stochastic_eval);
  EXPECT_TRUE(r.at("soft").capabilities.glimpse_trace);
  EXPECT_TRUE(r.at("cnn").capabilities.feature_map);
  EXPECT_FALSE(r.at("fc").capabilities.glimpse_trace || r.at("fc").capabilities.feature_map);
  // Each kind classifies or captions, never both.
  for (const auto& k : r.kinds()) EXPECT_NE(k.capabilities.classify, k.capabilities.caption) << k.name;
  EXPECT_TRUE(r.at("captioner").capabilities.caption);
  EXPECT_TRUE(contains(error_message([&] { r.at("transformer"); }),
                       "unknown model kind 'transformer' (expected ram, soft, cnn"));
  EXPECT_EQ(r.find("transformer"), nullptr);
}

TEST(Registry, CompletesOptionsWithDefaultsAndRejectsUnknownOrOutOfRangeOnes) {
  const auto& ram = am::model_registry().at("ram");
  const auto j = am::complete_options(ram, {{"glimpses", 8}}, am::InputShape{1, 60, 60});
  EXPECT_EQ(j["glimpses"], 8);
  EXPECT_EQ(j["glimpse_size"], 8) << "default";
  EXPECT_EQ(j["core"], "rnn");
  EXPECT_EQ(j["height"], 60);
  EXPECT_DOUBLE_EQ(j["location_std"].get<double>(), 0.15);
  // The defaults build exactly the model RamOptions' defaults describe.
  auto built = am::make_classifier("ram", j);
  auto expected = am::RamOptions().glimpses(8).to_json();
  for (const auto& [key, value] : expected.items()) EXPECT_EQ(built->options()[key], value) << key;

  EXPECT_TRUE(contains(error_message([&] { am::complete_options(ram, {{"glimpzes", 8}}, {}); }),
                       "ram: unknown option 'glimpzes'"));
  EXPECT_TRUE(contains(error_message([&] { am::complete_options(ram, {{"glimpses", 0}}, {}); }),
                       "ram: option 'glimpses' must be between 1 and 1000, got 0"));
  EXPECT_TRUE(contains(error_message([&] { am::complete_options(ram, {{"location_std", 0.0}}, {}); }),
                       "option 'location_std' must be greater than 0"));
  EXPECT_TRUE(contains(error_message([&] { am::complete_options(ram, {{"core", "gru"}}, {}); }),
                       "option 'core' must be rnn or lstm, got \"gru\""));
  EXPECT_TRUE(contains(error_message([&] { am::complete_options(ram, {{"reinforce_weight", NAN}}, {}); }),
                       "option 'reinforce_weight' must be between"));
  const auto& cnn = am::model_registry().at("cnn");
  EXPECT_TRUE(contains(error_message([&] { am::complete_options(cnn, {{"filters", {8, 0}}}, {}); }),
                       "option 'filters' holds a value that must be between 1 and 4096, got 0"));
  EXPECT_TRUE(contains(error_message([&] { am::complete_options(cnn, {{"filters", nlohmann::json::array()}}, {}); }),
                       "must be a non-empty list"));
  // The model's own checks still run behind the registry's.
  EXPECT_TRUE(contains(error_message([&] { am::make_classifier("ram", am::complete_options(ram, {{"glimpse_size", 61}},
                                                                                      {1, 60, 60})); }),
                       "glimpse size 61 is larger than the 60x60 images"));
}

TEST(Registry, AKindAddedFromOutsideTrainsSavesAndLoadsLikeABuiltInOne) {
  am::ModelRegistry& r = am::model_registry();
  if (r.find("linear") == nullptr) {
    am::ModelKind k;
    k.name = "linear";
    k.summary = "a linear classifier";
    k.capabilities.classify = true;
    k.options = {am::int_option("classes", "classes", 2, 2, 100, "classes")};
    k.make = [](const nlohmann::json& j) -> std::unique_ptr<am::Model> { return std::make_unique<LinearClassifier>(j); };
    r.add(k);
    EXPECT_TRUE(contains(error_message([&] { r.add(k); }), "kind 'linear' is registered already"));
  }
  auto clash = am::ModelKind();
  clash.name = "clash";
  clash.make = [](const nlohmann::json&) -> std::unique_ptr<am::Model> { return nullptr; };
  clash.options = {am::real_option("glimpses", "glimpses", 1.0, 0.0, 2.0, "a real where ram has a whole number")};
  EXPECT_TRUE(contains(error_message([&] { r.add(clash); }), "option --glimpses of 'clash' has another type in 'ram'"));

  TempDir dir;
  auto model = am::make_classifier("linear", am::complete_options(r.at("linear"), {}, {1, 2, 2}));
  const attend::datasets::DigitsSource data(
      {torch::tensor({0, 255, 0, 255, 255, 0, 255, 0}, torch::kUInt8).view({2, 2, 2}), torch::tensor({0, 1})});
  am::train_classifier(*model, data, &data, am::TrainOptions().epochs(30).batch_size(2).lr(0.1).run_dir(dir.path()));
  am::CheckpointInfo info;
  auto loaded = am::load_classifier(dir.file("best.pt"), &info);
  EXPECT_EQ(info.model.kind, "linear");
  EXPECT_EQ(am::evaluate_classifier(*loaded, data, 0).accuracy, 1.0);
}
