// The captioner's encoder opened as a saliency model: its classes are the vocabulary's
// words, scored along the model's own greedy caption (CaptionerImpl::greedy_word_scores).

#include <attend/models/caption_model.h>
#include <attend/models/saliency.h>

#include <torch/torch.h>

#include <limits>
#include <optional>

namespace attend::models {
namespace {

// Modules per built-in encoder block: conv, ReLU, conv, ReLU, max pooling.
constexpr size_t kBlockModules = 5;

class CaptionerSaliency : public SaliencyModel {
 public:
  CaptionerSaliency(std::shared_ptr<CaptionModel> model, std::string description)
      : model_(std::move(model)), description_(std::move(description)) {
    auto& net = *model_->net;
    was_training_ = net.is_training();
    net.eval();
    for (auto& p : net.parameters()) {
      flags_.push_back(p.requires_grad());
      p.set_requires_grad(false);
    }
    if (external()) {
      layers_.push_back("encoder");
    } else {
      const auto blocks = net.encoder->size() / kBlockModules;
      TORCH_CHECK(blocks * kBlockModules == net.encoder->size(), "saliency: unexpected captioner encoder layout");
      for (size_t i = 0; i < blocks; ++i) layers_.push_back("block" + std::to_string(i + 1));
    }
    names_ = model_->vocabulary().words();
  }
  ~CaptionerSaliency() override {
    auto params = model_->net->parameters();
    for (size_t i = 0; i < params.size() && i < flags_.size(); ++i) params[i].set_requires_grad(flags_[i]);
    model_->net->train(was_training_);
  }

  std::string describe() const override { return description_; }
  std::vector<std::string> layers() const override { return layers_; }
  std::string default_layer() const override { return layers_.back(); }
  std::int64_t channels() const override { return model_->channels(); }
  std::int64_t height() const override { return model_->height(); }
  std::int64_t width() const override { return model_->width(); }
  std::vector<std::string> class_names() const override { return names_; }

  SplitForward forward(const torch::Tensor& inputs, const std::vector<std::string>& layers, bool track) override {
    std::vector<size_t> where;
    for (const auto& name : layers) where.push_back(index_of(name));
    const size_t first = where.empty() ? layers_.size() : *std::min_element(where.begin(), where.end());
    std::optional<torch::NoGradGuard> no_grad;
    if (!track) no_grad.emplace();
    std::vector<torch::Tensor> outputs(layers_.size());
    auto x = inputs;
    for (size_t i = 0; i < layers_.size(); ++i) {
      {
        // Nothing before the earliest target needs a graph.
        std::optional<torch::NoGradGuard> before;
        if (track && i <= first) before.emplace();
        x = run_block(i, x);
      }
      if (track && i == first) x = x.detach().requires_grad_(true);
      outputs[i] = x;
    }
    SplitForward out;
    out.logits = scores(x);
    for (auto i : where) out.activations.push_back(outputs[i]);
    return out;
  }

  torch::Tensor logits(const torch::Tensor& inputs) override {
    torch::NoGradGuard no_grad;
    auto x = inputs;
    for (size_t i = 0; i < layers_.size(); ++i) x = run_block(i, x);
    return scores(x);
  }

 private:
  bool external() const { return model_->net->options.external_features() > 0; }

  torch::Tensor run_block(size_t i, const torch::Tensor& x) {
    auto& net = *model_->net;
    if (external()) {
      TORCH_CHECK(static_cast<bool>(net.external_encoder), "saliency: the captioner's external encoder is not set");
      return net.external_encoder(x).to(torch::kFloat32);
    }
    auto y = x;
    auto begin = net.encoder->begin() + static_cast<std::ptrdiff_t>(i * kBlockModules);
    for (auto it = begin; it != begin + kBlockModules; ++it) y = it->forward(y);
    return y;
  }

  torch::Tensor scores(const torch::Tensor& features) {
    auto& net = *model_->net;
    TORCH_CHECK(features.size(2) >= 1 && features.size(3) >= 1, "saliency: the captioner's grid is empty for inputs of ",
                features.sizes());
    const auto scores = net.greedy_word_scores(net.annotations_of(features), model_->max_length() - 1,
                                               datasets::Vocabulary::kStart, datasets::Vocabulary::kEnd);
    // The special tokens are not words to explain (every caption emits <end>, often
    // with the highest score): -infinity keeps them out of any top-k.
    const auto specials = torch::tensor({datasets::Vocabulary::kPad, datasets::Vocabulary::kStart,
                                         datasets::Vocabulary::kEnd, datasets::Vocabulary::kUnk});
    return scores.index_fill(1, specials, -std::numeric_limits<float>::infinity());
  }

  size_t index_of(const std::string& name) const {
    for (size_t i = 0; i < layers_.size(); ++i) {
      if (layers_[i] == name) return i;
    }
    std::string valid;
    for (const auto& n : layers_) valid += (valid.empty() ? "" : ", ") + n;
    TORCH_CHECK(false, "saliency: unknown layer '", name, "' (", describe(), " has ", valid, ")");
  }

  std::shared_ptr<CaptionModel> model_;
  std::string description_;
  std::vector<std::string> layers_, names_;
  std::vector<bool> flags_;
  bool was_training_ = false;
};

}  // namespace

std::unique_ptr<SaliencyModel> captioner_saliency_model(std::shared_ptr<CaptionModel> model, std::string description) {
  TORCH_CHECK(model != nullptr, "saliency: no captioner");
  return std::make_unique<CaptionerSaliency>(std::move(model), std::move(description));
}

}  // namespace attend::models
