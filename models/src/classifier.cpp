#include "attend/models/classifier.h"

#include <attend/io_error.h>

#include <torch/torch.h>

#include <cmath>

namespace attend::models {
namespace {

double accuracy(const torch::Tensor& log_probs, const torch::Tensor& targets) {
  return (log_probs.argmax(1) == targets).to(torch::kFloat64).mean().item<double>();
}

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
    TORCH_CHECK(height_ >= 1 && width_ >= 1 && height_ <= 8192 && width_ <= 8192, "ram: input size ", height_, "x",
                width_, " is not a valid image size");
    vision::check_retina_options(model_->options.retina(), height_, width_);
    TORCH_CHECK(model_->options.glimpse_size() <= std::max(height_, width_), "ram: glimpse size ",
                model_->options.glimpse_size(), " is larger than the ", height_, "x", width_, " image");
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
  std::int64_t channels() const override { return model_->options.channels(); }
  std::int64_t height() const override { return height_; }
  std::int64_t width() const override { return width_; }
  std::int64_t classes() const override { return model_->options.classes(); }
  ClassifierLoss loss(const torch::Tensor& images, const torch::Tensor& targets) override {
    check_size(images);
    const auto out = model_->forward(images, /*sample=*/true, std::nullopt, /*keep_glimpses=*/false, training_std_);
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
  torch::Tensor predict(const torch::Tensor& images, std::int64_t samples) override {
    check_size(images);
    return ram_predict(model_, images, samples);
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
};

// Log-probabilities of the deterministic classifiers, whatever else forward returns.
torch::Tensor log_probs_of(FcNet& net, const torch::Tensor& images) { return net->forward(images); }
torch::Tensor log_probs_of(ConvNet& net, const torch::Tensor& images) { return net->forward(images); }
torch::Tensor log_probs_of(SoftGlimpseNet& net, const torch::Tensor& images) {
  return net->forward(images).log_probs;
}

/// Classifiers trained by backpropagation alone on the NLL of their prediction.
template <typename Net, typename Options>
class PlainClassifier : public Classifier {
 public:
  PlainClassifier(std::string kind, const nlohmann::json& j) : kind_(std::move(kind)), model_(Options::from_json(j)) {}
  std::string kind() const override { return kind_; }
  nlohmann::json options() const override { return model_->options.to_json(); }
  torch::nn::Module& module() override { return *model_; }
  std::int64_t channels() const override { return model_->options.channels(); }
  std::int64_t height() const override { return model_->options.height(); }
  std::int64_t width() const override { return model_->options.width(); }
  std::int64_t classes() const override { return model_->options.classes(); }
  ClassifierLoss loss(const torch::Tensor& images, const torch::Tensor& targets) override {
    const auto log_probs = log_probs_of(model_, images);
    return {torch::nll_loss(log_probs, targets), {{"accuracy", accuracy(log_probs.detach(), targets)}}};
  }
  torch::Tensor predict(const torch::Tensor& images, std::int64_t /*samples*/) override {
    return log_probs_of(model_, images);
  }

 protected:
  std::string kind_;
  Net model_;
};

class SoftClassifier : public PlainClassifier<SoftGlimpseNet, SoftGlimpseNetOptions> {
 public:
  explicit SoftClassifier(const nlohmann::json& j) : PlainClassifier("soft", j) {}
  std::optional<GlimpseTrace> glimpse_trace(const torch::Tensor& images) override {
    const auto out = model_->forward(images);
    const auto n = model_->options.glimpse_size();
    return GlimpseTrace{out.centres, out.glimpses.unsqueeze(2), vision::RetinaOptions().size(n).scales(1), out.sides};
  }
};

}  // namespace

std::unique_ptr<Classifier> make_classifier(const std::string& kind, const nlohmann::json& options) {
  try {
    if (kind == "ram") return std::make_unique<RamClassifier>(options);
    if (kind == "soft") return std::make_unique<SoftClassifier>(options);
    if (kind == "fc") return std::make_unique<PlainClassifier<FcNet, FcNetOptions>>("fc", options);
    if (kind == "cnn") return std::make_unique<PlainClassifier<ConvNet, ConvNetOptions>>("cnn", options);
  } catch (const nlohmann::json::exception& e) {
    TORCH_CHECK(false, "make_classifier: options of a '", kind, "' model are incomplete: ", e.what());
  }
  TORCH_CHECK(false, "make_classifier: unknown model kind '", kind, "' (expected ram, soft, fc or cnn)");
}

std::unique_ptr<Classifier> load_classifier(const std::string& path, CheckpointInfo* info_out) {
  const auto info = read_checkpoint_info(path);
  if (info.kind != "ram" && info.kind != "soft" && info.kind != "fc" && info.kind != "cnn") {
    throw IoError(path, "holds a '" + info.kind + "' model, not an image classifier (ram, soft, fc or cnn)");
  }
  std::unique_ptr<Classifier> classifier;
  try {
    classifier = make_classifier(info.kind, info.options);
  } catch (const c10::Error& e) {
    throw IoError(path, std::string("stored options are invalid: ") + e.what_without_backtrace());
  }
  auto loaded = load_checkpoint(path, classifier->module(), nullptr, LoadOptions{info.kind});
  if (info_out != nullptr) *info_out = loaded;
  return classifier;
}

}  // namespace attend::models
