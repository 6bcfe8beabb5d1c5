#pragma once
// Classifiers trained by backpropagation alone on the NLL of their prediction: the
// network's `logits(images)` gives raw class scores.

#include "kinds.h"

#include <torch/torch.h>

namespace attend::models {

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
    const auto scores = model_->logits(images);
    return {torch::cross_entropy_loss(scores, targets), {{"accuracy", accuracy(scores.detach(), targets)}}};
  }
  torch::Tensor logits(const torch::Tensor& images) override { return model_->logits(images); }

 protected:
  std::string kind_;
  Net model_;
};

}  // namespace attend::models
