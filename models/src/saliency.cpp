// CAM and the Grad-CAM family: the formulas are in saliency.h.
#include <attend/models/saliency.h>

#include <attend/models/classifier.h>

#include <torch/torch.h>

#include <algorithm>
#include <optional>

namespace attend::models {
namespace {

namespace F = torch::nn::functional;

/// The sum over the batch of each image's target score (images are independent, so
/// its gradient holds every image's own).
torch::Tensor target_scores(const torch::Tensor& logits, const torch::Tensor& targets_column) {
  return logits.gather(1, targets_column.unsqueeze(1)).sum();
}

/// Per image and target: softmax over channel scores, then the weighted sum of the
/// activations. scores [B,T,K], activations [B,K,h,w] -> [B,T,h,w].
torch::Tensor score_weighted(const torch::Tensor& scores, const torch::Tensor& activations) {
  const auto weights = torch::softmax(scores, 2);
  return torch::einsum("btk,bkhw->bthw", {weights, activations});
}

/// Score-CAM at one layer: activations [B,K,h,w] -> raw maps [B,T,h,w].
torch::Tensor score_cam(SaliencyModel& model, const torch::Tensor& inputs, const torch::Tensor& activations,
                        const torch::Tensor& targets, std::int64_t batch) {
  torch::NoGradGuard no_grad;
  const auto B = activations.size(0), K = activations.size(1);
  // Bilinear upsampling with aligned corners (torch.nn.UpsamplingBilinear2d), then
  // each channel scaled to [0,1].
  auto up = F::interpolate(activations, F::InterpolateFuncOptions()
                                            .size(std::vector<std::int64_t>{inputs.size(2), inputs.size(3)})
                                            .mode(torch::kBilinear)
                                            .align_corners(true));
  const auto flat = up.flatten(2);
  const auto maxs = std::get<0>(flat.max(2)).view({B, K, 1, 1});
  const auto mins = std::get<0>(flat.min(2)).view({B, K, 1, 1});
  up = (up - mins) / (maxs - mins + 1e-8);
  const auto T = targets.size(1);
  auto scores = torch::empty({B, T, K}, activations.options());
  for (std::int64_t b = 0; b < B; ++b) {
    const auto image = inputs[b];  // [C,H,W]
    for (std::int64_t k0 = 0; k0 < K; k0 += batch) {
      const auto k1 = std::min(K, k0 + batch);
      const auto masked = image.unsqueeze(0) * up[b].slice(0, k0, k1).unsqueeze(1);  // [n,C,H,W]
      const auto logits = model.logits(masked);                                      // [n,classes]
      const auto chosen = logits.index_select(1, targets[b]);                        // [n,T]
      scores[b].slice(1, k0, k1).copy_(chosen.t());
    }
  }
  return score_weighted(scores, activations);
}

void check_targets(const torch::Tensor& targets, std::int64_t batch, std::int64_t classes) {
  TORCH_CHECK(targets.dim() == 2 && targets.size(0) == batch && targets.scalar_type() == torch::kInt64,
              "saliency: expected targets [", batch, ",T] int64, got ", targets.sizes(), " ",
              targets.scalar_type());
  if (targets.numel() == 0) return;
  const auto lo = targets.min().item<std::int64_t>(), hi = targets.max().item<std::int64_t>();
  TORCH_CHECK(lo >= 0 && hi < classes, "saliency: class ", lo < 0 ? lo : hi, " is out of range (the model has ",
              classes, " classes: 0..", classes - 1, ")");
}

/// One unaugmented pass: raw maps per layer [B,T,h,w] and the logits.
std::pair<std::vector<torch::Tensor>, torch::Tensor> raw_maps(SaliencyModel& model, const torch::Tensor& inputs,
                                                              torch::Tensor& targets,
                                                              const std::vector<std::string>& layers,
                                                              const SaliencyOptions& options) {
  const auto method = options.method();
  std::vector<torch::Tensor> raw;
  if (needs_gradients(method)) {
    auto split = model.forward(inputs, layers, /*track=*/true);
    if (!targets.defined()) targets = top_classes(split.logits.detach(), options.top_k());
    check_targets(targets, inputs.size(0), split.logits.size(1));
    const auto T = targets.size(1);
    std::vector<std::vector<torch::Tensor>> per_layer(layers.size());
    for (std::int64_t t = 0; t < T; ++t) {
      const auto grads = torch::autograd::grad({target_scores(split.logits, targets.select(1, t))}, split.activations,
                                               {}, /*retain_graph=*/t + 1 < T);
      for (size_t l = 0; l < layers.size(); ++l) {
        per_layer[l].push_back(raw_map(method, split.activations[l].detach(), grads[l]));
      }
    }
    for (auto& maps : per_layer) raw.push_back(torch::stack(maps, 1));
    return {raw, split.logits.detach()};
  }
  auto split = model.forward(inputs, layers, /*track=*/false);
  if (!targets.defined()) targets = top_classes(split.logits, options.top_k());
  check_targets(targets, inputs.size(0), split.logits.size(1));
  const auto T = targets.size(1);
  for (size_t l = 0; l < layers.size(); ++l) {
    const auto& A = split.activations[l];
    TORCH_CHECK(A.dim() == 4, "saliency: layer '", layers[l], "' gives ", A.sizes(),
                ", expected a feature map [B,K,h,w]");
    if (method == SaliencyMethod::kCam) {
      const auto w = model.cam_weights(layers[l]);
      TORCH_CHECK(w.defined(), "saliency: cam needs a head that is global average pooling then a linear layer after '",
                  layers[l], "'; ", model.describe(), " has none there (use gradcam, its generalisation)");
      TORCH_CHECK(w.dim() == 2 && w.size(1) == A.size(1), "saliency: the head's weights ", w.sizes(),
                  " do not match the ", A.size(1), " channels of '", layers[l], "'");
      std::vector<torch::Tensor> maps;
      for (std::int64_t t = 0; t < T; ++t) {
        const auto wt = w.index_select(0, targets.select(1, t)).to(A.dtype());  // [B,K]
        maps.push_back(raw_map(method, A, wt.unsqueeze(2).unsqueeze(3)));
      }
      raw.push_back(torch::stack(maps, 1));
    } else if (method == SaliencyMethod::kEigenCam) {
      raw.push_back(eigen_projection(A).unsqueeze(1).expand({-1, T, -1, -1}).contiguous());
    } else {
      raw.push_back(score_cam(model, inputs, A, targets, options.batch()));
    }
  }
  return {raw, split.logits.detach()};
}

/// Raw maps per layer -> fused, post-processed maps [B,T,H,W].
torch::Tensor finish(const std::vector<torch::Tensor>& raw, std::int64_t height, std::int64_t width) {
  std::vector<torch::Tensor> scaled;
  for (const auto& r : raw) {
    const auto B = r.size(0), T = r.size(1);
    scaled.push_back(postprocess_maps(r.flatten(0, 1), height, width).view({B, T, height, width}));
  }
  if (scaled.size() == 1) return scaled[0];
  // pytorch-grad-cam's aggregate_multi_layers: ReLU, mean over layers, min-max.
  const auto fused = torch::relu(torch::stack(scaled, 0)).mean(0);
  const auto B = fused.size(0), T = fused.size(1);
  return postprocess_maps(fused.flatten(0, 1), 0, 0).view({B, T, height, width});
}

/// A classifier written as a chain of stages (Classifier::stages).
class ChainModel : public SaliencyModel {
 public:
  ChainModel(std::shared_ptr<Classifier> classifier, std::string description, std::vector<std::string> names)
      : classifier_(std::move(classifier)), description_(std::move(description)), names_(std::move(names)) {
    stages_ = classifier_->stages();
    TORCH_CHECK(stages_.size() >= 2, "saliency: a '", classifier_->kind(), "' model has no feature map to explain");
    was_training_ = classifier_->module().is_training();
    classifier_->module().eval();
    for (auto& p : classifier_->module().parameters()) {
      flags_.push_back(p.requires_grad());
      p.set_requires_grad(false);
    }
  }
  ~ChainModel() override {
    auto params = classifier_->module().parameters();
    for (size_t i = 0; i < params.size() && i < flags_.size(); ++i) params[i].set_requires_grad(flags_[i]);
    classifier_->module().train(was_training_);
  }
  std::string describe() const override { return description_; }
  std::vector<std::string> layers() const override {
    std::vector<std::string> out;
    for (size_t i = 0; i + 1 < stages_.size(); ++i) out.push_back(stages_[i].name);
    return out;
  }
  std::string default_layer() const override { return stages_[stages_.size() - 2].name; }
  std::int64_t channels() const override { return classifier_->channels(); }
  std::int64_t height() const override { return classifier_->height(); }
  std::int64_t width() const override { return classifier_->width(); }
  std::vector<std::string> class_names() const override { return names_; }
  torch::Tensor cam_weights(const std::string& layer) override { return classifier_->cam_weights(layer); }

  SplitForward forward(const torch::Tensor& inputs, const std::vector<std::string>& layers, bool track) override {
    std::vector<size_t> where;
    for (const auto& name : layers) where.push_back(index_of(name));
    const size_t first = where.empty() ? stages_.size() : *std::min_element(where.begin(), where.end());
    std::optional<torch::NoGradGuard> no_grad;
    if (!track) no_grad.emplace();
    SplitForward out;
    std::vector<torch::Tensor> outputs(stages_.size());
    auto x = inputs;
    for (size_t i = 0; i < stages_.size(); ++i) {
      if (track && i <= first) {
        // Nothing before the earliest target needs a graph.
        torch::NoGradGuard before;
        x = stages_[i].run(x);
      } else {
        x = stages_[i].run(x);
      }
      if (track && i == first) x = x.detach().requires_grad_(true);
      outputs[i] = x;
    }
    out.logits = x;
    for (auto i : where) out.activations.push_back(outputs[i]);
    return out;
  }
  torch::Tensor logits(const torch::Tensor& inputs) override {
    torch::NoGradGuard no_grad;
    return classifier_->logits(inputs);
  }

 private:
  size_t index_of(const std::string& name) const {
    for (size_t i = 0; i + 1 < stages_.size(); ++i) {
      if (stages_[i].name == name) return i;
    }
    std::string valid;
    for (const auto& n : layers()) valid += (valid.empty() ? "" : ", ") + n;
    TORCH_CHECK(false, "saliency: unknown layer '", name, "' (", describe(), " has ", valid, ")");
  }

  std::shared_ptr<Classifier> classifier_;
  std::string description_;
  std::vector<std::string> names_;
  std::vector<Stage> stages_;
  std::vector<bool> flags_;
  bool was_training_ = false;
};

}  // namespace

std::unique_ptr<SaliencyModel> classifier_saliency_model(std::shared_ptr<Classifier> classifier,
                                                         std::string description,
                                                         std::vector<std::string> class_names) {
  TORCH_CHECK(classifier != nullptr, "saliency: no classifier");
  return std::make_unique<ChainModel>(std::move(classifier), std::move(description), std::move(class_names));
}

bool needs_gradients(SaliencyMethod method) {
  switch (method) {
    case SaliencyMethod::kCam:
    case SaliencyMethod::kScoreCam:
    case SaliencyMethod::kEigenCam:
      return false;
    default:
      return true;
  }
}

torch::Tensor raw_map(SaliencyMethod method, const torch::Tensor& A, const torch::Tensor& G) {
  TORCH_CHECK(A.dim() == 4, "raw_map: expected activations [B,K,h,w], got ", A.sizes());
  if (method == SaliencyMethod::kEigenCam) return eigen_projection(A);
  TORCH_CHECK(method != SaliencyMethod::kScoreCam, "raw_map: scorecam scores masked inputs; use compute_saliency");
  TORCH_CHECK(G.defined(), "raw_map: ", enum_name(method), " needs gradients");
  switch (method) {
    case SaliencyMethod::kCam:
      return (A * G).sum(1);
    case SaliencyMethod::kGradCam: {
      const auto alpha = G.mean({2, 3}, /*keepdim=*/true);
      return (alpha * A).sum(1);
    }
    case SaliencyMethod::kGradCamPlusPlus: {
      const auto g2 = G * G;
      const auto g3 = g2 * G;
      const auto sum_a = A.sum({2, 3}, /*keepdim=*/true);
      auto r = g2 / (2 * g2 + sum_a * g3 + 1e-6);
      r = torch::where(G != 0, r, torch::zeros_like(r));
      const auto alpha = (torch::relu(G) * r).sum({2, 3}, /*keepdim=*/true);
      return (alpha * A).sum(1);
    }
    case SaliencyMethod::kXGradCam: {
      const auto sum_a = A.sum({2, 3}, /*keepdim=*/true);
      const auto alpha = (G * A / (sum_a + 1e-7)).sum({2, 3}, /*keepdim=*/true);
      return (alpha * A).sum(1);
    }
    case SaliencyMethod::kHiResCam:
      return (G * A).sum(1);
    case SaliencyMethod::kLayerCam:
      return (torch::relu(G) * A).sum(1);
    default:
      TORCH_CHECK(false, "raw_map: unhandled method");
  }
}

torch::Tensor eigen_projection(const torch::Tensor& activations) {
  TORCH_CHECK(activations.dim() == 4, "eigen_projection: expected activations [B,K,h,w], got ", activations.sizes());
  torch::NoGradGuard no_grad;
  const auto B = activations.size(0), K = activations.size(1), h = activations.size(2), w = activations.size(3);
  const auto A = torch::nan_to_num(activations.to(torch::kFloat64), 0.0, 0.0, 0.0);
  auto out = torch::empty({B, h * w}, A.options());
  for (std::int64_t b = 0; b < B; ++b) {
    auto X = A[b].reshape({K, h * w}).t();  // [HW,K]
    X = X - X.mean(0, /*keepdim=*/true);
    const auto svd = torch::linalg_svd(X, /*full_matrices=*/false);
    const auto v = std::get<2>(svd)[0];  // first right singular vector [K]
    auto p = X.matmul(v);
    // The SVD's sign is arbitrary: make the largest magnitude positive.
    if (p.max().item<double>() < -p.min().item<double>()) p = -p;
    out[b].copy_(p);
  }
  return out.view({B, h, w}).to(activations.scalar_type());
}

torch::Tensor postprocess_maps(const torch::Tensor& maps, std::int64_t height, std::int64_t width) {
  TORCH_CHECK(maps.dim() == 3, "postprocess_maps: expected maps [N,h,w], got ", maps.sizes());
  auto x = torch::relu(maps.to(torch::kFloat32));
  const auto N = x.size(0);
  const auto flat = x.reshape({N, -1});
  const auto mins = std::get<0>(flat.min(1)).view({N, 1, 1});
  x = x - mins;
  const auto maxs = std::get<0>(x.reshape({N, -1}).max(1)).view({N, 1, 1});
  x = x / (maxs + 1e-7);
  if (height > 0 && width > 0 && (height != x.size(1) || width != x.size(2))) {
    x = F::interpolate(x.unsqueeze(1), F::InterpolateFuncOptions()
                                           .size(std::vector<std::int64_t>{height, width})
                                           .mode(torch::kBilinear)
                                           .align_corners(false))
            .squeeze(1);
  }
  return x.contiguous();
}

torch::Tensor top_classes(const torch::Tensor& logits, std::int64_t k) {
  TORCH_CHECK(logits.dim() == 2, "top_classes: expected logits [B,classes], got ", logits.sizes());
  TORCH_CHECK(k >= 1 && k <= logits.size(1), "top_classes: k must be between 1 and ", logits.size(1), ", got ", k);
  return std::get<1>(logits.topk(k, 1));
}

SaliencyMaps compute_saliency(SaliencyModel& model, const torch::Tensor& inputs, const torch::Tensor& targets_in,
                              const SaliencyOptions& options) {
  TORCH_CHECK(inputs.dim() == 4, "saliency: expected inputs [B,C,H,W], got ", inputs.sizes());
  TORCH_CHECK(options.batch() >= 1, "saliency: the Score-CAM batch must be at least 1, got ", options.batch());
  auto targets = !targets_in.defined() ? torch::Tensor() : targets_in.dim() == 1 ? targets_in.unsqueeze(1) : targets_in;
  auto layers = options.layers();
  if (layers.empty()) layers.push_back(model.default_layer());
  const auto H = inputs.size(2), W = inputs.size(3);

  auto [raw, logits] = raw_maps(model, inputs, targets, layers, options);
  SaliencyMaps out;
  out.logits = logits;
  out.targets = targets;
  if (!options.aug_smooth()) {
    out.maps = finish(raw, H, W);
    out.raw = std::move(raw);
    return out;
  }
  // pytorch-grad-cam's aug_smooth: {identity, hflip} x {0.9, 1, 1.1}, mean of the
  // final maps, not rescaled.
  auto sum = torch::zeros({inputs.size(0), targets.size(1), H, W}, torch::kFloat32);
  for (const bool flip : {false, true}) {
    for (const double factor : {0.9, 1.0, 1.1}) {
      auto x = inputs * factor;
      if (flip) x = x.flip({3});
      auto maps = (flip || factor != 1.0) ? finish(raw_maps(model, x, targets, layers, options).first, H, W)
                                          : finish(raw, H, W);
      if (flip) maps = maps.flip({3});
      sum += maps;
    }
  }
  out.maps = sum / 6.0;
  out.raw = std::move(raw);
  return out;
}

}  // namespace attend::models
