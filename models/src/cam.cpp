// The CAM classifier and model kind "cam" (cam.h).
#include "kinds.h"

#include <attend/models/cam.h>

#include <torch/torch.h>

namespace attend::models {

void CamNetOptions::validate() const {
  TORCH_CHECK(channels_ >= 1 && channels_ <= 64 && height_ >= 1 && width_ >= 1 && height_ <= 8192 && width_ <= 8192,
              "CamNet: input must be 1..64 channels of 1..8192 pixels a side, got ", channels_, "x", height_, "x",
              width_);
  TORCH_CHECK(classes_ >= 2, "CamNet: classes must be >= 2, got ", classes_);
  TORCH_CHECK(!filters_.empty(), "CamNet: at least one conv block is needed");
  for (auto n : filters_) TORCH_CHECK(n >= 1 && n <= 4096, "CamNet: filter counts must be 1..4096, got ", n);
  TORCH_CHECK(pools_ >= 0 && pools_ < static_cast<std::int64_t>(filters_.size()),
              "CamNet: pools must be between 0 and the number of blocks - 1 (", filters_.size() - 1, "), got ", pools_);
  TORCH_CHECK((height_ >> pools_) >= 1 && (width_ >> pools_) >= 1, "CamNet: ", height_, "x", width_,
              " images are too small for ", pools_, " poolings");
}

nlohmann::json CamNetOptions::to_json() const {
  return {{"channels", channels_}, {"height", height_},   {"width", width_},
          {"classes", classes_},   {"filters", filters_}, {"pools", pools_},
          {"labels", multi_label_ ? "multi" : "single"}};
}

CamNetOptions CamNetOptions::from_json(const nlohmann::json& j) {
  const auto labels = j.at("labels").get<std::string>();
  TORCH_CHECK(labels == "single" || labels == "multi", "CamNet: labels must be single or multi, got '", labels, "'");
  return CamNetOptions()
      .channels(j.at("channels").get<std::int64_t>())
      .height(j.at("height").get<std::int64_t>())
      .width(j.at("width").get<std::int64_t>())
      .classes(j.at("classes").get<std::int64_t>())
      .filters(j.at("filters").get<std::vector<std::int64_t>>())
      .pools(j.at("pools").get<std::int64_t>())
      .multi_label(labels == "multi");
}

torch::nn::ModuleList cam_backbone(std::int64_t channels, const std::vector<std::int64_t>& filters) {
  torch::nn::ModuleList blocks;
  std::int64_t in = channels;
  for (auto n : filters) {
    torch::nn::Sequential block(torch::nn::Conv2d(torch::nn::Conv2dOptions(in, n, 3).padding(1).bias(false)),
                                torch::nn::BatchNorm2d(n), torch::nn::ReLU());
    // He initialisation for the ReLU stack.
    for (auto& p : block->named_parameters()) {
      if (p.key().find("0.weight") != std::string::npos) torch::nn::init::kaiming_normal_(p.value(), 0.0, torch::kFanOut);
    }
    blocks->push_back(block);
    in = n;
  }
  return blocks;
}

torch::Tensor backbone_stage(torch::nn::ModuleList& blocks, std::size_t i, std::int64_t pools, const torch::Tensor& x) {
  const auto y = i >= 1 && static_cast<std::int64_t>(i) <= pools ? torch::max_pool2d(x, 2) : x;
  return blocks[i]->as<torch::nn::Sequential>()->forward(y);
}

std::vector<Stage> conv_stages(std::size_t blocks,
                               std::function<torch::Tensor(std::size_t, const torch::Tensor&)> stage) {
  std::vector<Stage> out;
  for (std::size_t i = 0; i <= blocks; ++i) {
    out.push_back({i == blocks ? std::string("head") : "conv" + std::to_string(i + 1),
                   [stage, i](const torch::Tensor& x) { return stage(i, x); }});
  }
  return out;
}

CamNetImpl::CamNetImpl(CamNetOptions options_) : options(std::move(options_)) { reset(); }

void CamNetImpl::reset() {
  options.validate();
  convs = register_module("convs", cam_backbone(options.channels(), options.filters()));
  fc = register_module("fc", torch::nn::Linear(options.filters().back(), options.classes()));
}

void CamNetImpl::pretty_print(std::ostream& stream) const {
  stream << "attend::models::CamNet(input=" << options.channels() << "x" << options.height() << "x"
         << options.width() << ", filters=" << c10::IntArrayRef(options.filters()) << ", pools=" << options.pools()
         << ", classes=" << options.classes() << (options.multi_label() ? ", multi-label" : "") << ")";
}

std::pair<std::int64_t, std::int64_t> CamNetImpl::grid() const {
  std::int64_t h = options.height(), w = options.width();
  for (std::int64_t i = 0; i < options.pools(); ++i) {
    h /= 2;
    w /= 2;
  }
  return {h, w};
}

torch::Tensor CamNetImpl::stage(std::size_t i, const torch::Tensor& x) {
  TORCH_CHECK(i <= blocks(), "CamNet: no stage ", i);
  if (i == 0) {
    TORCH_CHECK(x.dim() == 4 && x.size(1) == options.channels() && x.size(2) == options.height() &&
                    x.size(3) == options.width(),
                "CamNet: expected images [B,", options.channels(), ",", options.height(), ",", options.width(),
                "], got ", x.sizes());
  }
  // pools < blocks: the head is never preceded by pooling.
  if (i == blocks()) return fc->forward(x.mean({2, 3}));
  return backbone_stage(convs, i, options.pools(), x);
}

torch::Tensor CamNetImpl::logits(const torch::Tensor& images) {
  auto x = images;
  for (std::size_t i = 0; i <= blocks(); ++i) x = stage(i, x);
  return x;
}

CamClassifier::CamClassifier(const nlohmann::json& options) : net(CamNetOptions::from_json(options)) {}

ClassifierLoss CamClassifier::loss(const torch::Tensor& images, const torch::Tensor& targets) {
  const auto scores = net->logits(images);
  if (!multi_label()) {
    return {torch::cross_entropy_loss(scores, targets), {{"accuracy", accuracy(scores.detach(), targets)}}};
  }
  TORCH_CHECK(targets.dim() == 2 && targets.size(1) == classes(), "cam: a multi-label model needs targets [B,",
              classes(), "], got ", targets.sizes());
  const auto t = targets.to(scores.dtype());
  const auto total = torch::binary_cross_entropy_with_logits(scores, t);  // mean over images and classes
  const auto predicted = (scores.detach() > 0).to(t.dtype());
  const auto exact = (predicted == t).all(1).to(torch::kFloat64).mean().item<double>();
  return {total, {{"accuracy", exact}}};
}

torch::Tensor CamClassifier::features(const torch::Tensor& images) {
  auto x = images;
  for (std::size_t i = 0; i < net->blocks(); ++i) x = net->stage(i, x);
  return x;
}

torch::Tensor CamClassifier::head(const torch::Tensor& features) { return net->stage(net->blocks(), features); }

std::vector<Stage> CamClassifier::stages() {
  return conv_stages(net->blocks(), [this](std::size_t i, const torch::Tensor& x) { return net->stage(i, x); });
}

torch::Tensor CamClassifier::cam_weights(const std::string& name) {
  if (name != "conv" + std::to_string(net->blocks())) return {};
  return net->fc->weight.detach();
}

ModelKind cam_kind() {
  ModelKind k;
  k.name = "cam";
  k.summary = "CAM classifier: conv blocks, global average pooling, one linear layer (saliency maps)";
  k.capabilities.classify = true;
  k.capabilities.feature_map = true;
  k.options = {
      int_option("classes", "classes", 10, 2, 100000, "number of classes"),
      int_list_option("filters", "cam-filters", {16, 32, 64, 128}, 1, 4096,
                      "output channels of each 3x3 conv + batch norm + ReLU block"),
      int_option("pools", "cam-pools", 3, 0, 12, "blocks followed by 2x2 max-pooling (the map's stride is 2^N)"),
      choice_option("labels", "labels", {"single", "multi"},
                    "one class per image (softmax) or any classes present (a sigmoid each; object scenes)", "L"),
  };
  k.make = [](const nlohmann::json& options) -> std::unique_ptr<Model> {
    return std::make_unique<CamClassifier>(options);
  };
  return k;
}

}  // namespace attend::models
