#pragma once
/// The CAM classifier (Zhou et al. 2016, "Learning Deep Features for Discriminative
/// Localization"): a small conv backbone, global average pooling and one linear
/// layer, so that the class activation map M_c = sum_k w^c_k A_k of its last feature
/// map A says where each class's evidence lies. Single-label (softmax cross-entropy)
/// or multi-label (one sigmoid per class: which classes are present).
///
/// Backbone: blocks of 3x3 conv (no bias) + batch norm + ReLU; a 2x2 max-pool after
/// each of the first `pools` blocks, so the last map has stride 2^pools (8 by default:
/// 64x64 images give an 8x8 map). Stages for saliency: "conv1".."convN" (each block's
/// output after its ReLU, the pooling belonging to the next stage), then "head".

#include <attend/models/classifier.h>

#include <torch/arg.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include <nlohmann/json.hpp>

#include <functional>
#include <vector>

namespace attend::models {

struct CamNetOptions {
  TORCH_ARG(std::int64_t, channels) = 1;
  TORCH_ARG(std::int64_t, height) = 64;
  TORCH_ARG(std::int64_t, width) = 64;
  TORCH_ARG(std::int64_t, classes) = 10;
  /// Output channels of each conv block.
  TORCH_ARG(std::vector<std::int64_t>, filters) = std::vector<std::int64_t>{16, 32, 64, 128};
  /// Blocks followed by a 2x2 max-pool (the first ones); fewer than the blocks.
  TORCH_ARG(std::int64_t, pools) = 3;
  /// Several classes per image (sigmoid per class) rather than one (softmax).
  TORCH_ARG(bool, multi_label) = false;

 public:
  /// throws c10::Error naming the first invalid value.
  void validate() const;
  nlohmann::json to_json() const;
  static CamNetOptions from_json(const nlohmann::json& j);
};

/// The CAM backbone's blocks, each a 3x3 conv (no bias, He-initialised) + batch norm +
/// ReLU, from `channels` input channels through `filters`.
torch::nn::ModuleList cam_backbone(std::int64_t channels, const std::vector<std::int64_t>& filters);
/// Block i of a backbone applied to x, after the 2x2 max-pooling that follows block
/// i-1 when i-1 < pools (the pooling belongs to the next stage).
torch::Tensor backbone_stage(torch::nn::ModuleList& blocks, std::size_t i, std::int64_t pools, const torch::Tensor& x);
/// Saliency stages "conv1".."convN" then "head" of a chain whose stage i is
/// `stage(i, x)` (i = N: the head).
std::vector<Stage> conv_stages(std::size_t blocks, std::function<torch::Tensor(std::size_t, const torch::Tensor&)> stage);

class CamNetImpl : public torch::nn::Cloneable<CamNetImpl> {
 public:
  explicit CamNetImpl(CamNetOptions options = {});
  void reset() override;
  void pretty_print(std::ostream& stream) const override;
  /// images [B,C,H,W] -> class scores [B,classes].
  torch::Tensor logits(const torch::Tensor& images);
  /// Stage i (0-based) of the chain: block i applied to stage i-1's output (pooled
  /// first when block i-1 pools); stage blocks() is the head (GAP + linear).
  torch::Tensor stage(std::size_t i, const torch::Tensor& x);
  std::size_t blocks() const { return options.filters().size(); }
  /// The last map's rows and columns for the model's input size.
  std::pair<std::int64_t, std::int64_t> grid() const;

  CamNetOptions options;
  torch::nn::ModuleList convs{nullptr};
  torch::nn::Linear fc{nullptr};
};
TORCH_MODULE(CamNet);

/// Model kind "cam" (registered): a CamNet behind the Classifier interface. Multi-label
/// models take targets [B,classes] float (1 = present) and are trained with the
/// multi-label soft-margin loss (mean over classes of the binary cross-entropy of
/// the logits); a class counts as predicted when its logit is > 0.
class CamClassifier : public Classifier {
 public:
  explicit CamClassifier(const nlohmann::json& options);
  std::string kind() const override { return "cam"; }
  nlohmann::json options() const override { return net->options.to_json(); }
  torch::nn::Module& module() override { return *net; }
  std::int64_t channels() const override { return net->options.channels(); }
  std::int64_t height() const override { return net->options.height(); }
  std::int64_t width() const override { return net->options.width(); }
  std::int64_t classes() const override { return net->options.classes(); }
  bool multi_label() const override { return net->options.multi_label(); }
  ClassifierLoss loss(const torch::Tensor& images, const torch::Tensor& targets) override;
  torch::Tensor logits(const torch::Tensor& images) override { return net->logits(images); }
  torch::Tensor features(const torch::Tensor& images) override;
  torch::Tensor head(const torch::Tensor& features) override;
  std::vector<Stage> stages() override;
  /// The linear layer's weights after the last block ("convN"); undefined elsewhere.
  torch::Tensor cam_weights(const std::string& name) override;

  CamNet net{nullptr};
};

}  // namespace attend::models
