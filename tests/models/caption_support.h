#pragma once
// Small captioning fixtures shared by the captioner's training and data-parallel tests.

#include <attend/datasets/caption_source.h>
#include <attend/models/registry.h>

#include <torch/torch.h>

#include <memory>
#include <string>

namespace attend::testing {

/// Bars of varying size as 28x28 items, label (i + i / 10) % 10 (every tenth item
/// still covers all classes, so the val split has them all).
inline datasets::Digits bar_digits(std::int64_t n, std::int64_t salt) {
  auto images = torch::zeros({n, 28, 28}, torch::kUInt8);
  for (std::int64_t i = 0; i < n; ++i) {
    const auto x0 = 4 + (i + salt) % 5, y0 = 3 + i % 3;
    images[i].narrow(0, y0, 18).narrow(1, x0, 16).fill_(static_cast<std::uint8_t>(120 + i % 100));
  }
  const auto i = torch::arange(n, torch::kInt64);
  return {images, (i + i.div(10, "floor")) % 10};
}

inline std::shared_ptr<const datasets::ObjectSceneGenerator> bar_scene_generator() {
  return std::make_shared<const datasets::ObjectSceneGenerator>(
      datasets::ObjectSceneOptions().canvas(32), 3, std::vector<datasets::Digits>{bar_digits(200, 0)},
      std::vector<datasets::Digits>{bar_digits(60, 1)});
}

/// A small captioner's options for 32x32 grey scenes (stride 4: an 8x8 grid).
inline nlohmann::json small_captioner_options(const std::string& attention = "soft") {
  const auto& kind = models::model_registry().at("captioner");
  auto o = models::complete_options(kind,
                                    {{"filters", {4, 8}}, {"embed", 8}, {"hidden", 16}, {"attention_size", 8},
                                     {"attention", attention}, {"dropout", 0.0}},
                                    models::InputShape{1, 32, 32});
  o["vocabulary"] =
      datasets::Vocabulary::build({datasets::object_caption_words(datasets::ObjectItems::kDigits)}).words();
  return o;
}

}  // namespace attend::testing
