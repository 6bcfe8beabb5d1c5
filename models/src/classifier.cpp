#include "attend/models/classifier.h"

#include <torch/torch.h>

namespace attend::models {

torch::Tensor Classifier::features(const torch::Tensor& /*images*/) {
  TORCH_CHECK(false, "a '", kind(), "' model has no feature map");
}

torch::Tensor Classifier::head(const torch::Tensor& /*features*/) {
  TORCH_CHECK(false, "a '", kind(), "' model has no feature map");
}

std::vector<Stage> Classifier::stages() {
  return {{"features", [this](const torch::Tensor& x) { return features(x); }},
          {"head", [this](const torch::Tensor& x) { return head(x); }}};
}

}  // namespace attend::models
