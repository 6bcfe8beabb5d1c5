#include "attend/models/baselines.h"

#include <torch/torch.h>

namespace attend::models {
namespace {

void check_input(const char* who, std::int64_t c, std::int64_t h, std::int64_t w, std::int64_t classes) {
  TORCH_CHECK(c >= 1 && c <= 64 && h >= 1 && w >= 1 && h <= 8192 && w <= 8192, who,
              ": input must be 1..64 channels of 1..8192 pixels a side, got ", c, "x", h, "x", w);
  TORCH_CHECK(classes >= 2, who, ": classes must be >= 2, got ", classes);
}

void check_images(const char* who, const torch::Tensor& x, std::int64_t c, std::int64_t h, std::int64_t w) {
  TORCH_CHECK(x.defined() && x.dim() == 4 && x.size(1) == c && x.size(2) == h && x.size(3) == w, who,
              ": expected images [B,", c, ",", h, ",", w, "], got ",
              x.defined() ? c10::str(x.sizes()) : std::string("an undefined tensor"));
}

}  // namespace

void FcNetOptions::validate() const {
  check_input("FcNet", channels_, height_, width_, classes_);
  for (auto n : hidden_) TORCH_CHECK(n >= 1, "FcNet: hidden sizes must be >= 1, got ", n);
}

nlohmann::json FcNetOptions::to_json() const {
  return {{"channels", channels_}, {"height", height_}, {"width", width_}, {"classes", classes_}, {"hidden", hidden_}};
}

FcNetOptions FcNetOptions::from_json(const nlohmann::json& j) {
  return FcNetOptions()
      .channels(j.at("channels").get<std::int64_t>())
      .height(j.at("height").get<std::int64_t>())
      .width(j.at("width").get<std::int64_t>())
      .classes(j.at("classes").get<std::int64_t>())
      .hidden(j.at("hidden").get<std::vector<std::int64_t>>());
}

FcNetImpl::FcNetImpl(FcNetOptions options_) : options(std::move(options_)) { reset(); }

void FcNetImpl::reset() {
  options.validate();
  layers = torch::nn::Sequential();
  std::int64_t in = options.channels() * options.height() * options.width();
  for (auto n : options.hidden()) {
    layers->push_back(torch::nn::Linear(in, n));
    layers->push_back(torch::nn::ReLU());
    in = n;
  }
  layers->push_back(torch::nn::Linear(in, options.classes()));
  register_module("layers", layers);
}

void FcNetImpl::pretty_print(std::ostream& stream) const {
  stream << "attend::models::FcNet(input=" << options.channels() << "x" << options.height() << "x" << options.width()
         << ", hidden=" << c10::IntArrayRef(options.hidden()) << ", classes=" << options.classes() << ")";
}

torch::Tensor FcNetImpl::logits(const torch::Tensor& images) {
  check_images("FcNet", images, options.channels(), options.height(), options.width());
  return layers->forward(images.flatten(1));
}

torch::Tensor FcNetImpl::forward(const torch::Tensor& images) { return torch::log_softmax(logits(images), 1); }

void ConvNetOptions::validate() const {
  check_input("ConvNet", channels_, height_, width_, classes_);
  TORCH_CHECK(!filters_.empty(), "ConvNet: at least one conv block is needed");
  for (auto n : filters_) TORCH_CHECK(n >= 1, "ConvNet: filter counts must be >= 1, got ", n);
  TORCH_CHECK(hidden_ >= 1, "ConvNet: hidden must be >= 1, got ", hidden_);
}

nlohmann::json ConvNetOptions::to_json() const {
  return {{"channels", channels_}, {"height", height_}, {"width", width_},
          {"classes", classes_},   {"filters", filters_}, {"hidden", hidden_}};
}

ConvNetOptions ConvNetOptions::from_json(const nlohmann::json& j) {
  return ConvNetOptions()
      .channels(j.at("channels").get<std::int64_t>())
      .height(j.at("height").get<std::int64_t>())
      .width(j.at("width").get<std::int64_t>())
      .classes(j.at("classes").get<std::int64_t>())
      .filters(j.at("filters").get<std::vector<std::int64_t>>())
      .hidden(j.at("hidden").get<std::int64_t>());
}

ConvNetImpl::ConvNetImpl(ConvNetOptions options_) : options(std::move(options_)) { reset(); }

void ConvNetImpl::reset() {
  options.validate();
  features = torch::nn::Sequential();
  std::int64_t in = options.channels(), h = options.height(), w = options.width();
  for (auto n : options.filters()) {
    features->push_back(torch::nn::Conv2d(torch::nn::Conv2dOptions(in, n, 5).padding(2)));
    features->push_back(torch::nn::ReLU());
    if (h >= 2 && w >= 2) {
      features->push_back(torch::nn::MaxPool2d(2));
      h /= 2;
      w /= 2;
    }
    in = n;
  }
  register_module("features", features);
  head = torch::nn::Sequential(torch::nn::Linear(in * h * w, options.hidden()), torch::nn::ReLU(),
                               torch::nn::Linear(options.hidden(), options.classes()));
  register_module("head", head);
}

void ConvNetImpl::pretty_print(std::ostream& stream) const {
  stream << "attend::models::ConvNet(input=" << options.channels() << "x" << options.height() << "x"
         << options.width() << ", filters=" << c10::IntArrayRef(options.filters()) << ", hidden=" << options.hidden()
         << ", classes=" << options.classes() << ")";
}

torch::Tensor ConvNetImpl::feature_map(const torch::Tensor& images) {
  check_images("ConvNet", images, options.channels(), options.height(), options.width());
  return features->forward(images);
}

torch::Tensor ConvNetImpl::head_logits(const torch::Tensor& features) {
  return head->forward(features.flatten(1));
}

torch::Tensor ConvNetImpl::logits(const torch::Tensor& images) { return head_logits(feature_map(images)); }

torch::Tensor ConvNetImpl::forward(const torch::Tensor& images) { return torch::log_softmax(logits(images), 1); }

}  // namespace attend::models
