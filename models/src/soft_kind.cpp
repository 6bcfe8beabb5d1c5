// Model kind "soft": a recurrent classifier looking through a differentiable glimpse.
#include "plain_classifier.h"

#include <attend/models/soft_glimpse_net.h>

namespace attend::models {
namespace {

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

ModelKind soft_kind() {
  ModelKind k;
  k.name = "soft";
  k.summary = "soft-glimpse recurrent classifier: a Gaussian (DRAW) or affine (spatial transformer) glimpse";
  k.capabilities.classify = true;
  k.capabilities.glimpse_trace = true;
  k.options = {
      int_option("classes", "classes", 10, 2, 100000, "number of classes"),
      choice_option("glimpse", "soft-glimpse", enum_names<SoftGlimpse>(),
                    "gaussian (DRAW filterbank) or affine (spatial transformer)", "G"),
      int_option("glimpse_size", "glimpse-size", 8, 2, 256, "filters per side N of the glimpse", "N"),
      int_option("glimpses", "glimpses", 6, 1, 1000, "glimpses per image", "T"),
      int_option("supersample", "supersample", 0, 0, 64,
                 "affine: samples per glimpse pixel and direction, averaged (0 = enough for full resolution)", "S"),
      int_option("features", "features", 256, 1, 65536, "glimpse features fed to the core"),
      int_option("hidden", "hidden", 256, 1, 65536, "core state size"),
  };
  k.make = [](const nlohmann::json& options) -> std::unique_ptr<Model> {
    return std::make_unique<SoftClassifier>(options);
  };
  return k;
}

}  // namespace attend::models
