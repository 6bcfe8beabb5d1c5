// SEAM: the network, its Siamese losses, multi-scale inference and model kind "seam"
// (seam.h).
#include "kinds.h"

#include <attend/models/cam.h>
#include <attend/models/seam.h>

#include <torch/torch.h>

#include <algorithm>
#include <cmath>

namespace attend::models {

namespace F = torch::nn::functional;

namespace {

constexpr double kEps = 1e-5;

torch::Tensor resize(const torch::Tensor& x, std::int64_t height, std::int64_t width, bool corners) {
  if (x.size(2) == height && x.size(3) == width) return x;
  return F::interpolate(x, F::InterpolateFuncOptions()
                               .size(std::vector<std::int64_t>{height, width})
                               .mode(torch::kBilinear)
                               .align_corners(corners));
}

const char* on_off(bool on) { return on ? "on" : "off"; }

bool parse_on_off(const nlohmann::json& j, const char* key) {
  const auto v = j.at(key).get<std::string>();
  TORCH_CHECK(v == "on" || v == "off", "seam: ", key, " must be on or off, got '", v, "'");
  return v == "on";
}

/// Whether a two-way option added after the first checkpoints holds its second value;
/// absent (an older checkpoint) means the first, what those were trained with.
bool is_second(const nlohmann::json& j, const char* key, const char* first, const char* second) {
  const auto v = j.value(key, std::string(first));
  TORCH_CHECK(v == first || v == second, "seam: ", key, " must be ", first, " or ", second, ", got '", v, "'");
  return v == second;
}

}  // namespace

void SeamOptions::validate() const {
  TORCH_CHECK(channels_ >= 1 && channels_ <= 64 && height_ >= 8 && width_ >= 8 && height_ <= 8192 && width_ <= 8192,
              "seam: input must be 1..64 channels of 8..8192 pixels a side, got ", channels_, "x", height_, "x",
              width_);
  TORCH_CHECK(classes_ >= 1 && classes_ <= 100000, "seam: classes must be in 1..100000, got ", classes_);
  TORCH_CHECK(filters_.size() >= 3, "seam: at least 3 conv blocks are needed, got ", filters_.size());
  for (auto n : filters_) TORCH_CHECK(n >= 1 && n <= 4096, "seam: filter counts must be 1..4096, got ", n);
  TORCH_CHECK(pools_ >= 1 && pools_ <= static_cast<std::int64_t>(filters_.size()) - 2,
              "seam: pools must be between 1 and the number of blocks - 2 (", filters_.size() - 2,
              ": the last two blocks share the output stride), got ", pools_);
  TORCH_CHECK((height_ >> pools_) >= 2 && (width_ >> pools_) >= 2, "seam: ", height_, "x", width_,
              " images are too small for ", pools_, " poolings");
  TORCH_CHECK(pcm_reduce_.size() == 2 && pcm_reduce_[0] >= 1 && pcm_reduce_[1] >= 1 && pcm_reduce_[0] <= 4096 &&
                  pcm_reduce_[1] <= 4096,
              "seam: pcm_reduce must be two channel counts in 1..4096");
  TORCH_CHECK(pcm_embed_ >= 1 && pcm_embed_ <= 4096, "seam: pcm_embed must be in 1..4096, got ", pcm_embed_);
  TORCH_CHECK(std::isfinite(er_weight_) && er_weight_ >= 0 && er_weight_ <= 1000,
              "seam: the ER weight must be in 0..1000, got ", er_weight_);
  TORCH_CHECK(er_warmup_ >= 0 && er_warmup_ <= 100000, "seam: the ER warm-up must be 0..100000 epochs, got ",
              er_warmup_);
  TORCH_CHECK(!ecr_own_ || ecr_, "seam: ecr_target own needs ecr on (it picks L_ecr's targets)");
  TORCH_CHECK(std::isfinite(scale_) && scale_ > 0.0 && scale_ <= 4.0 && scale_ != 1.0,
              "seam: the rescale factor must be in (0,4] and not 1, got ", scale_);
  if (transform_ == SeamTransform::kRescale) {
    TORCH_CHECK(std::floor(height_ * scale_) >= (1 << pools_) && std::floor(width_ * scale_) >= (1 << pools_),
                "seam: rescaling ", height_, "x", width_, " by ", scale_, " leaves less than one grid cell");
  }
}

nlohmann::json SeamOptions::to_json() const {
  return {{"channels", channels_},
          {"height", height_},
          {"width", width_},
          {"classes", classes_},
          {"filters", filters_},
          {"pools", pools_},
          {"pcm_reduce", pcm_reduce_},
          {"pcm_embed", pcm_embed_},
          {"transform", transform_ == SeamTransform::kRescale ? "rescale" : "flip"},
          {"scale", scale_},
          {"er", on_off(er_)},
          {"er_weight", er_weight_},
          {"er_warmup", er_warmup_},
          {"er_gradient", er_to_copy_ ? "copy" : "both"},
          {"ecr", on_off(ecr_)},
          {"ecr_target", ecr_own_ ? "own" : "other"},
          {"min_pool", on_off(min_pool_)},
          {"supervision", pixel_supervision_ ? "pixel" : "image"},
          {"batch_norm", frozen_bn_ ? "frozen" : "train"}};
}

SeamOptions SeamOptions::from_json(const nlohmann::json& j) {
  const auto transform = j.at("transform").get<std::string>();
  TORCH_CHECK(transform == "rescale" || transform == "flip", "seam: transform must be rescale or flip, got '",
              transform, "'");
  return SeamOptions()
      .channels(j.at("channels").get<std::int64_t>())
      .height(j.at("height").get<std::int64_t>())
      .width(j.at("width").get<std::int64_t>())
      .classes(j.at("classes").get<std::int64_t>())
      .filters(j.at("filters").get<std::vector<std::int64_t>>())
      .pools(j.at("pools").get<std::int64_t>())
      .pcm_reduce(j.at("pcm_reduce").get<std::vector<std::int64_t>>())
      .pcm_embed(j.at("pcm_embed").get<std::int64_t>())
      .transform(transform == "rescale" ? SeamTransform::kRescale : SeamTransform::kFlip)
      .scale(j.at("scale").get<double>())
      .er(parse_on_off(j, "er"))
      // Absent in checkpoints written before the options: the authors' constant 1.
      .er_weight(j.value("er_weight", 1.0))
      .er_warmup(j.value("er_warmup", std::int64_t{0}))
      .er_to_copy(is_second(j, "er_gradient", "both", "copy"))
      .ecr(parse_on_off(j, "ecr"))
      .ecr_own(is_second(j, "ecr_target", "other", "own"))
      .min_pool(parse_on_off(j, "min_pool"))
      .pixel_supervision(is_second(j, "supervision", "image", "pixel"))
      .frozen_bn(is_second(j, "batch_norm", "train", "frozen"));
}

SeamNetImpl::SeamNetImpl(SeamOptions options_) : options(std::move(options_)), er_factor_(options.er_weight()) {
  reset();
}

void SeamNetImpl::set_epoch(std::int64_t epoch) {
  TORCH_CHECK(epoch >= 0, "seam: epochs count from 0, got ", epoch);
  const auto warmup = options.er_warmup();
  const double ramp = warmup == 0 ? 1.0 : std::min(1.0, static_cast<double>(epoch) / static_cast<double>(warmup));
  er_factor_ = options.er_weight() * ramp;
}

void SeamNetImpl::reset() {
  options.validate();
  convs = register_module("convs", cam_backbone(options.channels(), options.filters()));
  const auto& f = options.filters();
  const auto n = f.size();
  classifier = register_module(
      "classifier", torch::nn::Conv2d(torch::nn::Conv2dOptions(f[n - 1], options.classes() + 1, 1).bias(false)));
  reduce1 = register_module(
      "reduce1", torch::nn::Conv2d(torch::nn::Conv2dOptions(f[n - 3], options.pcm_reduce()[0], 1).bias(false)));
  reduce2 = register_module(
      "reduce2", torch::nn::Conv2d(torch::nn::Conv2dOptions(f[n - 2], options.pcm_reduce()[1], 1).bias(false)));
  pcm = register_module(
      "pcm", attention::PixelCorrelation(attention::PixelCorrelationOptions(
                 options.channels() + options.pcm_reduce()[0] + options.pcm_reduce()[1], options.pcm_embed())));
  // As the authors initialise their new layers: Xavier for the CAM head, He for the
  // reductions (the PCM's projection: Xavier with gain 4, in PixelCorrelation).
  torch::NoGradGuard no_grad;
  torch::nn::init::xavier_uniform_(classifier->weight);
  torch::nn::init::kaiming_normal_(reduce1->weight);
  torch::nn::init::kaiming_normal_(reduce2->weight);
  if (options.frozen_bn()) {
    for (auto& module : modules(/*include_self=*/false)) {
      if (auto* bn = module->as<torch::nn::BatchNorm2d>()) {
        bn->weight.requires_grad_(false);
        bn->bias.requires_grad_(false);
      }
    }
    train(is_training());  // and their statistics stay as they are
  }
}

void SeamNetImpl::train(bool on) {
  torch::nn::Module::train(on);
  if (!options.frozen_bn()) return;
  for (auto& module : modules(/*include_self=*/false)) {
    if (auto* bn = module->as<torch::nn::BatchNorm2d>()) bn->eval();
  }
}

void SeamNetImpl::pretty_print(std::ostream& stream) const {
  stream << "attend::models::SeamNet(input=" << options.channels() << "x" << options.height() << "x"
         << options.width() << ", filters=" << c10::IntArrayRef(options.filters()) << ", pools=" << options.pools()
         << ", classes=" << options.classes() << "+background, pcm " << options.pcm_embed() << ")";
}

std::pair<std::int64_t, std::int64_t> SeamNetImpl::grid(std::int64_t height, std::int64_t width) const {
  for (std::int64_t i = 0; i < options.pools(); ++i) {
    height /= 2;
    width /= 2;
  }
  return {height, width};
}

torch::Tensor SeamNetImpl::stage(std::size_t i, const torch::Tensor& x) {
  TORCH_CHECK(i <= blocks(), "seam: no stage ", i);
  if (i == 0) {
    TORCH_CHECK(x.dim() == 4 && x.size(1) == options.channels(), "seam: expected images [B,", options.channels(),
                ",H,W], got ", x.sizes());
  }
  // pools <= blocks - 2: the head is never preceded by pooling.
  if (i == blocks()) return classifier->forward(x).narrow(1, 1, options.classes()).mean({2, 3});
  return backbone_stage(convs, i, options.pools(), x);
}

std::pair<torch::Tensor, torch::Tensor> SeamNetImpl::features(const torch::Tensor& images, bool pcm_input) {
  const auto n = blocks();
  std::vector<torch::Tensor> inputs(n);
  TORCH_CHECK(images.dim() == 4 && images.size(1) == options.channels(), "seam: expected images [B,",
              options.channels(), ",H,W], got ", images.sizes());
  auto x = images;
  for (std::size_t i = 0; i < n; ++i) {
    // The input of block i (after its pooling), kept for the PCM.
    if (i >= 1 && static_cast<std::int64_t>(i) <= options.pools()) x = torch::max_pool2d(x, 2);
    inputs[i] = x;
    x = backbone_stage(convs, i, /*pools=*/0, x);
  }
  if (!pcm_input) return {x, torch::Tensor()};
  const auto h = x.size(2), w = x.size(3);
  const auto f1 = torch::relu(reduce1->forward(inputs[n - 2].detach()));
  const auto f2 = torch::relu(reduce2->forward(inputs[n - 1].detach()));
  return {x, torch::cat({resize(images, h, w, true), f1, f2}, 1)};
}

SeamOutput SeamNetImpl::forward(const torch::Tensor& images, bool revise, bool resize_maps) {
  const auto H = images.size(2), W = images.size(3);
  auto [map, pcm_input] = features(images, revise);
  const auto cam = classifier->forward(map);
  SeamOutput out;
  out.grid_cam = cam;
  if (resize_maps) out.cam = resize(cam, H, W, true);
  if (!revise) return out;
  torch::Tensor maps;
  {
    torch::NoGradGuard no_grad;
    maps = seam::pcm_maps(cam.detach());
  }
  auto revised = pcm->forward(pcm_input, maps);
  out.grid_cam_rv = revised.context;
  if (resize_maps) out.cam_rv = resize(revised.context, H, W, true);
  out.affinity = revised.weights;
  return out;
}

SeamLosses SeamNetImpl::losses(const torch::Tensor& images, const torch::Tensor& labels, std::int64_t chunk_size) {
  const auto B = images.size(0), K = options.classes();
  TORCH_CHECK(labels.dim() == 2 && labels.size(0) == B && labels.size(1) == K, "seam: expected labels [", B, ",", K,
              "], got ", labels.sizes());
  const auto t = labels.to(torch::kFloat32);
  const auto transform = options.transform();
  const auto scale = options.scale();
  const auto x2 = seam::transform(images, transform, scale);
  const auto o1 = forward(images, options.pcm(), /*resize=*/false);
  const auto o2 = forward(x2, options.pcm(), /*resize=*/false);
  auto fg = [K](const torch::Tensor& c) { return c.narrow(1, 1, K); };
  SeamLosses out;
  // Classification on the grid-level GAP (= the logits): see SeamClassifier.
  out.cls = (torch::binary_cross_entropy_with_logits(fg(o1.grid_cam).mean({2, 3}), t) +
             torch::binary_cross_entropy_with_logits(fg(o2.grid_cam).mean({2, 3}), t)) /
            2;
  // The other terms work on CAMs resized to the inputs, [B,K+1,H,W]: a few images at
  // a time, so that no tensor passes glibc's mmap threshold (32 MiB) and is faulted in
  // afresh at every step (a batch of 128 128x128 scenes trained 7x slower in one
  // piece). Every term is a mean over images of per-image values, so the chunks'
  // values weighted by their share of the batch add up to the whole batch's.
  const auto H = images.size(2), W = images.size(3), H2 = x2.size(2), W2 = x2.size(3);
  const auto per_image = (K + 1) * std::max(H * W, H2 * W2) * static_cast<std::int64_t>(sizeof(float));
  const auto chunk = chunk_size > 0 ? chunk_size : std::max<std::int64_t>(1, (std::int64_t{8} << 20) / per_image);
  auto zero = torch::zeros({});
  out.min_pool = zero;
  out.er = zero;
  out.ecr = zero;
  for (std::int64_t begin = 0; begin < B; begin += chunk) {
    const auto n = std::min(chunk, B - begin);
    const double share = static_cast<double>(n) / static_cast<double>(B);
    const auto y = torch::cat({torch::ones({n, 1}), t.narrow(0, begin, n)}, 1).view({n, K + 1, 1, 1});
    auto part = [&](const torch::Tensor& grid, std::int64_t h, std::int64_t w) {
      return resize(grid.narrow(0, begin, n), h, w, true);
    };
    const auto cam1 = part(o1.grid_cam, H, W), cam2 = part(o2.grid_cam, H2, W2);
    torch::Tensor rv1, rv2;
    if (options.pcm()) {
      rv1 = part(o1.grid_cam_rv, H, W);
      rv2 = part(o2.grid_cam_rv, H2, W2);
    }
    if (options.min_pool()) {
      out.min_pool = out.min_pool + share * (seam::min_pool_loss(fg(rv1 * y)) + seam::min_pool_loss(fg(rv2 * y))) / 2;
    }
    const auto c1 = seam::transform(seam::max_norm(cam1), transform, scale) * y;
    const auto c2 = seam::max_norm(cam2) * y;
    if (options.er()) {
      const auto target = options.er_to_copy() ? c1.detach() : c1;
      out.er = out.er + share * (fg(target) - fg(c2)).abs().mean();
    }
    if (options.ecr()) {
      const auto r1 = seam::transform(seam::max_norm(rv1), transform, scale) * y;
      const auto r2 = seam::max_norm(rv2) * y;
      // The other branch's raw CAM (the authors), or with ecr_own the same branch's.
      const auto t1 = seam::max_onehot(seam::with_background(options.ecr_own() ? c1 : c2).detach());
      const auto t2 = seam::max_onehot(seam::with_background(options.ecr_own() ? c2 : c1).detach());
      out.ecr = out.ecr + share * (seam::top_mean((t1 - r1).abs(), 0.2) + seam::top_mean((t2 - r2).abs(), 0.2));
    }
  }
  out.total = out.cls + out.min_pool + er_factor_ * out.er + out.ecr;
  return out;
}

SeamLosses SeamNetImpl::pixel_losses(const torch::Tensor& images, const torch::Tensor& labels,
                                     const torch::Tensor& masks, std::int64_t chunk_size) {
  const auto B = images.size(0), H = images.size(2), W = images.size(3), K = options.classes();
  TORCH_CHECK(labels.dim() == 2 && labels.size(0) == B && labels.size(1) == K, "seam: expected labels [", B, ",", K,
              "], got ", labels.sizes());
  TORCH_CHECK(masks.dim() == 3 && masks.size(0) == B && masks.size(1) == H && masks.size(2) == W,
              "seam: expected masks [", B, ",", H, ",", W, "], got ", masks.sizes());
  const auto m = masks.to(torch::kInt64);
  const auto bad = (m < 0) | ((m > K) & (m != 255));
  TORCH_CHECK(!bad.any().item<bool>(), "seam: a mask label is outside 0..", K, " (and 255, ignore)");
  const auto cam = forward(images, /*revise=*/false, /*resize_maps=*/false).grid_cam;
  const auto counted = (m != 255).sum().item<std::int64_t>();
  const auto per_image = (K + 1) * H * W * static_cast<std::int64_t>(sizeof(float));
  const auto chunk = chunk_size > 0 ? chunk_size : std::max<std::int64_t>(1, (std::int64_t{8} << 20) / per_image);
  SeamLosses out;
  out.pixel = torch::zeros({});
  for (std::int64_t begin = 0; begin < B; begin += chunk) {
    const auto n = std::min(chunk, B - begin);
    out.pixel = out.pixel + torch::nn::functional::cross_entropy(
                                resize(cam.narrow(0, begin, n), H, W, true), m.narrow(0, begin, n),
                                torch::nn::functional::CrossEntropyFuncOptions().ignore_index(255).reduction(
                                    torch::kSum));
  }
  out.pixel = out.pixel / static_cast<double>(std::max<std::int64_t>(1, counted));
  out.cls = torch::binary_cross_entropy_with_logits(cam.narrow(1, 1, K).mean({2, 3}), labels.to(torch::kFloat32));
  out.min_pool = out.er = out.ecr = torch::zeros({});
  out.total = out.pixel + out.cls;
  return out;
}

namespace seam {

torch::Tensor max_norm(const torch::Tensor& p) {
  TORCH_CHECK(p.dim() == 4, "seam: expected maps [B,C,h,w], got ", p.sizes());
  const auto r = torch::relu(p);
  const auto flat = r.flatten(2);
  const auto mx = std::get<0>(flat.max(2)).unsqueeze(2).unsqueeze(3);
  const auto mn = std::get<0>(flat.min(2)).unsqueeze(2).unsqueeze(3);
  return torch::relu(r - mn - kEps) / (mx - mn + kEps);
}

torch::Tensor pcm_maps(const torch::Tensor& cam) {
  TORCH_CHECK(cam.dim() == 4 && cam.size(1) >= 2, "seam: expected CAMs [B,K+1,h,w], got ", cam.sizes());
  const auto d = torch::relu(cam);
  const auto mx = std::get<0>(d.flatten(2).max(2)).unsqueeze(2).unsqueeze(3) + kEps;
  const auto norm = torch::relu(d - kEps) / mx;
  return max_onehot(with_background(norm));
}

torch::Tensor with_background(const torch::Tensor& c) {
  const auto fg = c.narrow(1, 1, c.size(1) - 1);
  return torch::cat({1 - std::get<0>(fg.max(1, /*keepdim=*/true)), fg}, 1);
}

torch::Tensor max_onehot(const torch::Tensor& c) {
  const auto fg = c.narrow(1, 1, c.size(1) - 1);
  const auto top = std::get<0>(fg.max(1, /*keepdim=*/true));
  return torch::cat({c.narrow(1, 0, 1), torch::where(fg < top, torch::zeros_like(fg), fg)}, 1);
}

torch::Tensor top_mean(const torch::Tensor& x, double fraction) {
  const auto flat = x.flatten(1);
  const auto k = static_cast<std::int64_t>(static_cast<double>(flat.size(1)) * fraction);
  TORCH_CHECK(k >= 1, "seam: the top ", fraction, " of ", flat.size(1), " entries is empty");
  return std::get<0>(flat.topk(k, 1)).mean();
}

torch::Tensor min_pool_loss(const torch::Tensor& foreground) {
  const auto n = foreground.size(0);
  const auto hw = foreground.size(2) * foreground.size(3);
  const auto k = hw / 4;
  TORCH_CHECK(k >= 1, "seam: the min-pooling loss needs at least 4 pixels, got ", hw);
  const auto top = std::get<0>(foreground.max(1)).view({n, hw});
  const auto lowest = std::get<0>(top.topk(k, 1, /*largest=*/false));
  return torch::relu(lowest).sum() / static_cast<double>(k * n);
}

torch::Tensor transform(const torch::Tensor& maps, SeamTransform kind, double scale) {
  if (kind == SeamTransform::kFlip) return maps.flip(3);
  const auto h = static_cast<std::int64_t>(std::floor(static_cast<double>(maps.size(2)) * scale));
  const auto w = static_cast<std::int64_t>(std::floor(static_cast<double>(maps.size(3)) * scale));
  return resize(maps, h, w, true);
}

}  // namespace seam

torch::Tensor aggregate_cams(const CamPass& pass, const torch::Tensor& images, const torch::Tensor& labels,
                             const CamInference& inference) {
  TORCH_CHECK(images.dim() == 4, "seam: expected images [B,C,H,W], got ", images.sizes());
  TORCH_CHECK(!inference.scales().empty(), "seam: no inference scales");
  const auto B = images.size(0), H = images.size(2), W = images.size(3);
  torch::Tensor sum;
  for (const double s : inference.scales()) {
    TORCH_CHECK(s > 0 && s <= 8, "seam: inference scales must be in (0,8], got ", s);
    const auto h = std::max<std::int64_t>(1, std::llround(static_cast<double>(H) * s));
    const auto w = std::max<std::int64_t>(1, std::llround(static_cast<double>(W) * s));
    const auto scaled = resize(images, h, w, false);
    for (const bool flip : {false, true}) {
      if (flip && !inference.flip()) continue;
      auto cams = pass(flip ? scaled.flip(3) : scaled);
      TORCH_CHECK(cams.dim() == 4 && cams.size(0) == B && cams.size(1) == labels.size(1),
                  "seam: a CAM pass gave ", cams.sizes(), " for labels ", labels.sizes());
      cams = resize(cams.to(torch::kFloat32), H, W, false) * labels.to(torch::kFloat32).view({B, -1, 1, 1});
      if (flip) cams = cams.flip(3);
      sum = sum.defined() ? sum + cams : cams;
    }
  }
  return inference.normalise() ? normalise_cams(sum) : sum;
}

torch::Tensor normalise_cams(const torch::Tensor& sums) {
  TORCH_CHECK(sums.dim() >= 2, "seam: expected maps [..., H, W], got ", sums.sizes());
  const auto x = torch::relu(sums);
  const auto flat = x.flatten(-2);
  const auto mx = std::get<0>(flat.max(-1)).unsqueeze(-1).unsqueeze(-1);
  const auto mn = std::get<0>(flat.min(-1)).unsqueeze(-1).unsqueeze(-1);
  const auto norm = (x - mn - kEps) / (mx - mn + kEps);
  return torch::where(x < mn + kEps, torch::zeros_like(norm), norm);
}

torch::Tensor pseudo_masks(const torch::Tensor& cams, double alpha) {
  TORCH_CHECK(cams.dim() == 4, "seam: expected CAMs [B,K,H,W], got ", cams.sizes());
  TORCH_CHECK(alpha >= 0.0 && alpha <= 1.0, "seam: the background score must be in [0,1], got ", alpha);
  const auto bg = torch::full({cams.size(0), 1, cams.size(2), cams.size(3)}, alpha, cams.options());
  return torch::cat({bg, cams}, 1).argmax(1);
}

SeamClassifier::SeamClassifier(const nlohmann::json& options) : net(SeamOptions::from_json(options)) {}

ClassifierLoss SeamClassifier::loss(const torch::Tensor& images, const torch::Tensor& targets) {
  TORCH_CHECK(targets.dim() == 2 && targets.size(1) == classes(), "seam: needs targets [B,", classes(),
              "] (which classes are present), got ", targets.sizes());
  const auto l = net->losses(images, targets);
  ClassifierLoss out;
  out.total = l.total;
  out.metrics = {{"cls", l.cls.item<double>()},
                 {"er", l.er.item<double>()},
                 {"ecr", l.ecr.item<double>()},
                 {"min_pool", l.min_pool.item<double>()}};
  return out;
}

ClassifierLoss SeamClassifier::loss(const datasets::LabelledBatch& batch) {
  if (!net->options.pixel_supervision()) return loss(batch.images, batch.labels);
  TORCH_CHECK(batch.masks.defined(), "seam: pixel supervision needs the scenes' masks (object scenes, no augmentation)");
  const auto l = net->pixel_losses(batch.images, batch.labels, batch.masks);
  ClassifierLoss out;
  out.total = l.total;
  out.metrics = {{"pixel", l.pixel.item<double>()}, {"cls", l.cls.item<double>()}};
  return out;
}

torch::Tensor SeamClassifier::logits(const torch::Tensor& images) {
  auto x = images;
  for (std::size_t i = 0; i <= net->blocks(); ++i) x = net->stage(i, x);
  return x;
}

std::vector<Stage> SeamClassifier::stages() {
  return conv_stages(net->blocks(), [this](std::size_t i, const torch::Tensor& x) { return net->stage(i, x); });
}

torch::Tensor SeamClassifier::cam_weights(const std::string& name) {
  if (name != "conv" + std::to_string(net->blocks())) return {};
  const auto w = net->classifier->weight.detach();
  return w.narrow(0, 1, classes()).flatten(1);
}

ModelKind seam_kind() {
  ModelKind k;
  k.name = "seam";
  k.summary = "SEAM: CAMs made equivariant and refined by pixel correlation (weakly supervised segmentation)";
  k.capabilities.classify = true;
  k.capabilities.feature_map = true;
  k.capabilities.multi_label_only = true;
  k.options = {
      int_option("classes", "classes", 10, 1, 100000, "number of foreground classes"),
      int_list_option("filters", "seam-filters", {16, 32, 64, 128, 128}, 1, 4096,
                      "output channels of each 3x3 conv + batch norm + ReLU block (at least 3)"),
      int_option("pools", "seam-pools", 3, 1, 12,
                 "blocks followed by 2x2 max-pooling (output stride 2^N; at most blocks - 2)"),
      int_list_option("pcm_reduce", "pcm-reduce", {32, 64}, 1, 4096,
                      "channels the inputs of the last two blocks are reduced to for the PCM"),
      int_option("pcm_embed", "pcm-embed", 96, 1, 4096, "channels of the PCM's pixel embeddings"),
      choice_option("transform", "transform", {"rescale", "flip"}, "the Siamese branch's transform", "T"),
      real_option("scale", "rescale", 0.5, 0.05, 4.0,
                  "rescale factor of the second branch (below 1 shrinks, as the authors; above 1 enlarges)"),
      choice_option("er", "er", {"on", "off"},
                    "equivariant regularisation L_er (on, as the authors; on our scenes it costs the PCM's "
                    "masks with several objects per image, adds with one large object: docs/results.md)",
                    "on|off"),
      real_option("er_weight", "er-weight", 1.0, 0.0, 1000.0, "weight of L_er in the loss (1 as the authors)"),
      int_option("er_warmup", "er-warmup", 0, 0, 100000,
                 "epochs over which L_er's weight ramps in linearly from 0 (0 = full weight from the start)"),
      choice_option("er_gradient", "er-gradient", {"both", "copy"},
                    "which branches L_er trains: both (the authors), or only the transformed copy's, the "
                    "original's transformed CAM held as a fixed target",
                    "G"),
      choice_option("ecr", "ecr", {"on", "off"}, "equivariant cross regularisation L_ecr (trains the PCM)", "on|off"),
      choice_option("ecr_target", "ecr-target", {"other", "own"},
                    "whose raw CAM each branch's PCM output is pulled towards in L_ecr: the other branch's (the "
                    "authors) or its own (an ablation: the two branches' disagreement taken out of its target)",
                    "B"),
      choice_option("min_pool", "min-pool", {"on", "off"}, "the adaptive min-pooling loss on the PCM's maps",
                    "on|off"),
      choice_option("supervision", "supervision", {"image", "pixel"},
                    "image-level labels (SEAM), or the scenes' pixel masks (a fully supervised upper bound)", "S"),
      choice_option("batch_norm", "batch-norm", {"train", "frozen"},
                    "frozen: batch norm keeps its running statistics, scale and shift, as the authors' "
                    "backbone (for a start from a trained one: --init-from)",
                    "B"),
  };
  k.make = [](const nlohmann::json& options) -> std::unique_ptr<Model> {
    return std::make_unique<SeamClassifier>(options);
  };
  return k;
}

}  // namespace attend::models
