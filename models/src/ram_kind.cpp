// Model kind "ram": the Recurrent Attention Model as a classifier.
#include "kinds.h"

#include <attend/models/ram.h>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <cmath>

namespace attend::models {
namespace {

class RamClassifier : public Classifier {
 public:
  explicit RamClassifier(const nlohmann::json& j)
      : model_(RamOptions::from_json(j)),
        height_(j.at("height").get<std::int64_t>()),
        width_(j.at("width").get<std::int64_t>()),
        reinforce_weight_(j.value("reinforce_weight", 1.0)),
        location_std_start_(j.value("location_std_start", 0.0)) {
    TORCH_CHECK(location_std_start_ >= 0 && std::isfinite(location_std_start_),
                "ram: location std start must be a number >= 0 (0 = no annealing), got ", location_std_start_);
    TORCH_CHECK(std::isfinite(reinforce_weight_) && reinforce_weight_ >= 0,
                "ram: reinforce weight must be a finite number >= 0, got ", reinforce_weight_);
    TORCH_CHECK(height_ >= 1 && width_ >= 1 && height_ <= 8192 && width_ <= 8192, "ram: input size ", height_, "x",
                width_, " is not a valid image size");
    vision::check_retina_options(model_->options.retina(), height_, width_);
    TORCH_CHECK(model_->options.glimpse_size() <= std::max(height_, width_), "ram: glimpse size ",
                model_->options.glimpse_size(), " is larger than the ", height_, "x", width_, " images");
  }
  std::string kind() const override { return "ram"; }
  nlohmann::json options() const override {
    auto j = model_->options.to_json();
    j["height"] = height_;
    j["width"] = width_;
    j["reinforce_weight"] = reinforce_weight_;
    // Only when set, so checkpoints from before annealing existed resume unchanged.
    if (location_std_start_ > 0) j["location_std_start"] = location_std_start_;
    return j;
  }
  torch::nn::Module& module() override { return *model_; }
  std::map<std::string, at::Generator> generators() override { return {{"locations", generator_}}; }
  std::int64_t channels() const override { return model_->options.channels(); }
  std::int64_t height() const override { return height_; }
  std::int64_t width() const override { return width_; }
  std::int64_t classes() const override { return model_->options.classes(); }

  ClassifierLoss loss(const torch::Tensor& images, const torch::Tensor& targets) override {
    check_size(images);
    const auto out = model_->forward(images, /*sample=*/true, generator_, /*keep_glimpses=*/false, training_std_);
    const auto l = ram_loss(out, targets, reinforce_weight_);
    Metrics metrics{{"accuracy", l.reward.mean().item<double>()},
                    {"nll", l.classification.item<double>()},
                    {"baseline_mse", l.baseline.item<double>()},
                    {"reinforce", l.reinforce.item<double>()}};
    if (location_std_start_ > 0) metrics["policy_std"] = training_std_;
    return {l.total, metrics};
  }
  void set_epoch(std::int64_t epoch, std::int64_t epochs) override {
    training_std_ = annealed_location_std(location_std_start_, model_->options.location_std(), epoch, epochs);
  }
  torch::Tensor logits(const torch::Tensor& images) override {
    check_size(images);
    return model_->forward(images, /*sample=*/false).logits;
  }
  torch::Tensor predict(const torch::Tensor& images, std::int64_t samples,
                        std::optional<at::Generator> generator) override {
    check_size(images);
    return ram_predict(model_, images, samples, generator ? *generator : generator_);
  }
  std::optional<GlimpseTrace> glimpse_trace(const torch::Tensor& images) override {
    check_size(images);
    const auto out = model_->forward(images, /*sample=*/false, std::nullopt, /*keep_glimpses=*/true);
    return GlimpseTrace{out.locations, out.glimpses, model_->options.retina(), torch::Tensor()};
  }

 private:
  // The retina works on any size, but locations are relative to the image: a model
  // trained on one size would look at other places on another.
  void check_size(const torch::Tensor& images) const {
    TORCH_CHECK(images.dim() == 4 && images.size(2) == height_ && images.size(3) == width_,
                "ram: expected images [B,", channels(), ",", height_, ",", width_, "], got ", images.sizes());
  }
  Ram model_;
  std::int64_t height_, width_;
  double reinforce_weight_;
  double location_std_start_;  // 0 = the policy std is constant
  double training_std_ = model_->options.location_std();
  // Draws the sampled glimpse locations; seeded by training, saved in checkpoints.
  at::Generator generator_ = at::make_generator<at::CPUGeneratorImpl>(0);
};

}  // namespace

ModelKind ram_kind() {
  ModelKind k;
  k.name = "ram";
  k.summary = "Recurrent Attention Model: hard glimpses through a multi-resolution retina, REINFORCE";
  k.capabilities.classify = true;
  k.capabilities.stochastic_eval = true;
  k.capabilities.glimpse_trace = true;
  k.options = {
      int_option("classes", "classes", 10, 2, 100000, "number of classes"),
      int_option("glimpses", "glimpses", 6, 1, 1000, "glimpses per image", "T"),
      int_option("glimpse_size", "glimpse-size", 8, 1, 1024, "side of the retina's first patch in pixels", "G"),
      int_option("scales", "scales", 1, 1, 16, "retina patches per glimpse", "K"),
      real_option("scale_ratio", "scale-ratio", 2.0, 0.0, 64.0, "side ratio of successive patches", true, "S"),
      int_option("hidden", "hidden", 256, 1, 65536, "core state size"),
      int_option("what_size", "what-size", 128, 1, 65536, "retina features h_g"),
      int_option("where_size", "where-size", 128, 1, 65536, "location features h_l"),
      int_option("glimpse_features", "glimpse-features", 256, 1, 65536, "combined glimpse features"),
      choice_option("core", "core", enum_names<RamCore>(), "recurrent core: rnn (ReLU, as in the paper) or lstm", "C"),
      real_option("location_std", "std", 0.15, 0.0, 10.0, "std of the Gaussian location policy", true, "S"),
      real_option("location_std_start", "std-start", 0.0, 0.0, 10.0,
                  "anneal the policy std by half a cosine from S in the first epoch to --std in the last (0 = "
                  "constant --std)",
                  false, "S"),
      real_option("reinforce_weight", "reinforce-weight", 1.0, 0.0, 1e6, "lambda of the REINFORCE term", false, "L"),
      choice_option("first_location", "first-location", {"random", "centre", "learned"},
                    "where the first glimpse looks: random (uniform over the image in training and sampled "
                    "evaluation, the centre when following the policy mean), centre (as in the paper), or learned",
                    "W"),
  };
  k.make = [](const nlohmann::json& options) -> std::unique_ptr<Model> {
    return std::make_unique<RamClassifier>(options);
  };
  return k;
}

}  // namespace attend::models
