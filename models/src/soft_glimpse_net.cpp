#include "attend/models/soft_glimpse_net.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>

namespace attend::models {

void SoftGlimpseNetOptions::validate() const {
  TORCH_CHECK(channels_ >= 1 && height_ >= 1 && width_ >= 1 && classes_ >= 2,
              "soft glimpse net: invalid input size or class count");
  TORCH_CHECK(glimpse_size_ >= 2 && glimpse_size_ <= 256, "soft glimpse net: glimpse size must be in 2..256, got ",
              glimpse_size_);
  TORCH_CHECK(glimpses_ >= 1 && glimpses_ <= 1000, "soft glimpse net: glimpses must be in 1..1000, got ", glimpses_);
  TORCH_CHECK(features_ >= 1 && hidden_ >= 1, "soft glimpse net: layer sizes must be >= 1");
  TORCH_CHECK(supersample_ >= 0 && supersample_ <= 64, "soft glimpse net: supersample must be in 0..64, got ",
              supersample_);
}

std::int64_t SoftGlimpseNetOptions::resolved_supersample() const {
  if (supersample_ > 0) return supersample_;
  return std::clamp<std::int64_t>((std::max(height_, width_) + glimpse_size_ - 1) / glimpse_size_, 1, 64);
}

nlohmann::json SoftGlimpseNetOptions::to_json() const {
  return {{"channels", channels_}, {"height", height_},     {"width", width_},
          {"classes", classes_},   {"glimpse", enum_name(glimpse_)},   {"glimpse_size", glimpse_size_},
          {"glimpses", glimpses_}, {"features", features_}, {"hidden", hidden_},
          {"supersample", resolved_supersample()}};
}

SoftGlimpseNetOptions SoftGlimpseNetOptions::from_json(const nlohmann::json& j) {
  return SoftGlimpseNetOptions()
      .channels(j.at("channels").get<std::int64_t>())
      .height(j.at("height").get<std::int64_t>())
      .width(j.at("width").get<std::int64_t>())
      .classes(j.at("classes").get<std::int64_t>())
      .glimpse(parse_enum<SoftGlimpse>(j.at("glimpse").get<std::string>()))
      .glimpse_size(j.at("glimpse_size").get<std::int64_t>())
      .glimpses(j.at("glimpses").get<std::int64_t>())
      .features(j.at("features").get<std::int64_t>())
      .hidden(j.at("hidden").get<std::int64_t>())
      // Checkpoints from before anti-aliasing read with one sample per pixel.
      .supersample(j.value("supersample", std::int64_t{1}));
}

SoftGlimpseNetImpl::SoftGlimpseNetImpl(SoftGlimpseNetOptions options_) : options(std::move(options_)) { reset(); }

void SoftGlimpseNetImpl::reset() {
  options.validate();
  const auto n = options.glimpse_size();
  gaussian = nullptr;
  affine = nullptr;
  if (options.glimpse() == SoftGlimpse::kGaussian) {
    gaussian = register_module("gaussian", attention::GaussianGlimpse(attention::GaussianGlimpseOptions(options.hidden(), n)));
  } else {
    affine = register_module(
        "affine", attention::AffineGlimpse(
                      attention::AffineGlimpseOptions(options.hidden(), n).supersample(options.resolved_supersample())));
  }
  embed = register_module("embed", torch::nn::Linear(options.channels() * n * n, options.features()));
  core = register_module("core", torch::nn::LSTMCell(options.features(), options.hidden()));
  classifier = register_module("classifier", torch::nn::Linear(options.hidden(), options.classes()));
}

void SoftGlimpseNetImpl::pretty_print(std::ostream& stream) const {
  stream << "attend::models::SoftGlimpseNet(glimpse=" << enum_name(options.glimpse()) << ", N=" << options.glimpse_size()
         << ", T=" << options.glimpses() << ", hidden=" << options.hidden() << ")";
}

SoftGlimpseOutput SoftGlimpseNetImpl::forward(const torch::Tensor& images) {
  TORCH_CHECK(images.dim() == 4 && images.size(1) == options.channels() && images.size(2) == options.height() &&
                  images.size(3) == options.width(),
              "SoftGlimpseNet: expected images [B,", options.channels(), ",", options.height(), ",", options.width(),
              "], got ", images.sizes());
  const auto b = images.size(0), h_img = options.height(), w_img = options.width();
  auto h = torch::zeros({b, options.hidden()}, images.options());
  auto c = torch::zeros_like(h);
  std::vector<torch::Tensor> centres, sides, reads;
  for (std::int64_t t = 0; t < options.glimpses(); ++t) {
    torch::Tensor read;
    if (gaussian) {
      const auto p = gaussian->params(h, h_img, w_img);
      read = attention::gaussian_glimpse(images, p, options.glimpse_size());
      centres.push_back(torch::stack({(p.centre_x + 0.5) / static_cast<double>(w_img) * 2 - 1,
                                      (p.centre_y + 0.5) / static_cast<double>(h_img) * 2 - 1},
                                     1).detach());
      sides.push_back((p.stride * static_cast<double>(options.glimpse_size())).detach());
    } else {
      const auto theta = affine->theta(h);
      read = attention::affine_glimpse(images, theta, options.glimpse_size(), options.glimpse_size(),
                                       affine->options.supersample());
      centres.push_back(theta.select(2, 2).detach());  // translation = centre in [-1,1]
      const auto det = (theta.select(1, 0).select(1, 0) * theta.select(1, 1).select(1, 1) -
                        theta.select(1, 0).select(1, 1) * theta.select(1, 1).select(1, 0)).abs();
      sides.push_back((det.sqrt() * static_cast<double>(std::max(h_img, w_img))).detach());
    }
    reads.push_back(read.detach());
    std::tie(h, c) = core(torch::relu(embed(read.flatten(1))), std::make_tuple(h, c));
  }
  SoftGlimpseOutput out;
  out.logits = classifier(h);
  out.log_probs = torch::log_softmax(out.logits, 1);
  out.centres = torch::stack(centres, 1);
  out.sides = torch::stack(sides, 1);
  out.glimpses = torch::stack(reads, 1);
  return out;
}

}  // namespace attend::models
