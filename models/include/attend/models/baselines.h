#pragma once
/// The comparison rows of the RAM paper: a fully connected network and a small
/// convolutional network over the whole image.

#include <torch/nn/cloneable.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/pimpl.h>

#include <nlohmann/json.hpp>

#include <vector>

namespace attend::models {

struct FcNetOptions {
  TORCH_ARG(std::int64_t, channels) = 1;
  TORCH_ARG(std::int64_t, height) = 28;
  TORCH_ARG(std::int64_t, width) = 28;
  TORCH_ARG(std::int64_t, classes) = 10;
  /// Sizes of the ReLU hidden layers (the paper: two of 256).
  TORCH_ARG(std::vector<std::int64_t>, hidden) = std::vector<std::int64_t>{256, 256};


 public:
  void validate() const;
  nlohmann::json to_json() const;
  static FcNetOptions from_json(const nlohmann::json& j);
};

/// images [B,C,H,W] -> log-probabilities [B,classes].
class FcNetImpl : public torch::nn::Cloneable<FcNetImpl> {
 public:
  explicit FcNetImpl(FcNetOptions options = {});
  void reset() override;
  void pretty_print(std::ostream& stream) const override;
  torch::Tensor forward(const torch::Tensor& images);
  /// images [B,C,H,W] -> class scores [B,classes] (forward = their log-softmax).
  torch::Tensor logits(const torch::Tensor& images);

  FcNetOptions options;
  torch::nn::Sequential layers{nullptr};
};
TORCH_MODULE(FcNet);

struct ConvNetOptions {
  TORCH_ARG(std::int64_t, channels) = 1;
  TORCH_ARG(std::int64_t, height) = 28;
  TORCH_ARG(std::int64_t, width) = 28;
  TORCH_ARG(std::int64_t, classes) = 10;
  /// Output channels of each 5x5 conv + ReLU + 2x2 max-pool block.
  TORCH_ARG(std::vector<std::int64_t>, filters) = std::vector<std::int64_t>{32, 64};
  /// Size of the ReLU layer before the classifier.
  TORCH_ARG(std::int64_t, hidden) = 256;


 public:
  void validate() const;
  nlohmann::json to_json() const;
  static ConvNetOptions from_json(const nlohmann::json& j);
};

/// images [B,C,H,W] -> log-probabilities [B,classes].
class ConvNetImpl : public torch::nn::Cloneable<ConvNetImpl> {
 public:
  explicit ConvNetImpl(ConvNetOptions options = {});
  void reset() override;
  void pretty_print(std::ostream& stream) const override;
  torch::Tensor forward(const torch::Tensor& images);
  /// images [B,C,H,W] -> class scores [B,classes] (forward = their log-softmax).
  torch::Tensor logits(const torch::Tensor& images);
  /// images [B,C,H,W] -> the last conv block's output [B,filters.back(),h,w] (after
  /// ReLU and pooling): the feature map CAM and Grad-CAM weight.
  torch::Tensor feature_map(const torch::Tensor& images);
  /// feature map [B,K,h,w] -> class scores [B,classes]; head_logits(feature_map(x)) == logits(x).
  torch::Tensor head_logits(const torch::Tensor& features);

  ConvNetOptions options;
  torch::nn::Sequential features{nullptr}, head{nullptr};
};
TORCH_MODULE(ConvNet);

}  // namespace attend::models
