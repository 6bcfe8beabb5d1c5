// Model kinds "cnn" and "fc": the comparison networks of the RAM paper.
#include "plain_classifier.h"

#include <attend/models/baselines.h>

namespace attend::models {
namespace {

/// The CNN splits into a feature map and a head, for CAM and Grad-CAM.
class CnnClassifier : public PlainClassifier<ConvNet, ConvNetOptions> {
 public:
  explicit CnnClassifier(const nlohmann::json& j) : PlainClassifier("cnn", j) {}
  torch::Tensor features(const torch::Tensor& images) override { return model_->feature_map(images); }
  torch::Tensor head(const torch::Tensor& features) override { return model_->head_logits(features); }
};

}  // namespace

ModelKind cnn_kind() {
  ModelKind k;
  k.name = "cnn";
  k.summary = "convolutional network over the whole image (5x5 conv + ReLU + 2x2 max-pool blocks, dense head)";
  k.capabilities.classify = true;
  k.capabilities.feature_map = true;
  k.options = {
      int_option("classes", "classes", 10, 2, 100000, "number of classes"),
      int_list_option("filters", "filters", {32, 64}, 1, 4096, "output channels of each conv block"),
      int_option("hidden", "cnn-hidden", 256, 1, 65536, "dense layer size"),
  };
  k.make = [](const nlohmann::json& options) -> std::unique_ptr<Model> {
    return std::make_unique<CnnClassifier>(options);
  };
  return k;
}

ModelKind fc_kind() {
  ModelKind k;
  k.name = "fc";
  k.summary = "fully connected network over the whole image";
  k.capabilities.classify = true;
  k.options = {
      int_option("classes", "classes", 10, 2, 100000, "number of classes"),
      int_list_option("hidden", "fc-hidden", {256, 256}, 1, 65536, "sizes of the ReLU hidden layers"),
  };
  k.make = [](const nlohmann::json& options) -> std::unique_ptr<Model> {
    return std::make_unique<PlainClassifier<FcNet, FcNetOptions>>("fc", options);
  };
  return k;
}

}  // namespace attend::models
