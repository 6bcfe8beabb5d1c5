#include "attend/datasets/scenes.h"

#include <attend/datasets/rng.h>

#include <torch/torch.h>

#include <algorithm>

namespace attend::datasets {

SceneGenerator::SceneGenerator(Digits digits, SceneOptions options, std::uint64_t seed)
    : digits_(std::move(digits)), options_(options), seed_(seed) {
  TORCH_CHECK(digits_.images.defined() && digits_.images.scalar_type() == torch::kUInt8 &&
                  (digits_.images.dim() == 3 || digits_.images.dim() == 4),
              "SceneGenerator: expected uint8 digits [N,H,W] or [N,H,W,C]");
  TORCH_CHECK(digits_.size() > 0, "SceneGenerator: no digits to place");
  digits_.images = digits_.images.contiguous();
  TORCH_CHECK(digits_.labels.defined() && digits_.labels.dim() == 1 && digits_.labels.size(0) == digits_.images.size(0),
              "SceneGenerator: expected one label per digit");
  digits_.labels = digits_.labels.to(torch::kInt64).contiguous();
  const auto h = digits_.images.size(1);
  const auto w = digits_.images.size(2);
  TORCH_CHECK(options_.canvas() >= std::max(h, w) && options_.canvas() <= 4096,
              "SceneGenerator: canvas must be between the digit side (", std::max(h, w), ") and 4096, got ",
              options_.canvas());
  TORCH_CHECK(options_.fragments() >= 0 && options_.fragments() <= 1000,
              "SceneGenerator: fragments must be in 0..1000, got ", options_.fragments());
  TORCH_CHECK(options_.fragment_size() >= 1 && options_.fragment_size() <= std::min(h, w),
              "SceneGenerator: fragment_size must be in 1..", std::min(h, w), " (the digit side), got ",
              options_.fragment_size());
  TORCH_CHECK(options_.fragments() == 0 || digits_.size() >= 2,
              "SceneGenerator: clutter needs at least 2 digits to cut fragments from other digits");
}

SceneBatch SceneGenerator::generate(const std::vector<std::int64_t>& indices, std::int64_t epoch) const {
  const auto b = static_cast<std::int64_t>(indices.size());
  const auto n = digits_.size();
  const auto h = digits_.images.size(1);
  const auto w = digits_.images.size(2);
  const std::int64_t c = digits_.images.dim() == 4 ? digits_.images.size(3) : 1;
  const auto s = options_.canvas();
  const auto k = options_.fragments();
  const auto f = options_.fragment_size();

  std::vector<std::int64_t> image_sizes{b, s, s};
  if (digits_.images.dim() == 4) image_sizes.push_back(c);
  SceneBatch out;
  out.images = torch::zeros(image_sizes, torch::kUInt8);
  out.labels = torch::empty({b}, torch::kInt64);
  out.digit_index = torch::empty({b}, torch::kInt64);
  out.boxes = torch::empty({b, 4}, torch::kInt64);
  out.fragment_source = torch::empty({b, k}, torch::kInt64);
  out.fragment_boxes = torch::empty({b, k, 4}, torch::kInt64);

  const auto* src = digits_.images.data_ptr<std::uint8_t>();
  const auto* labels = digits_.labels.data_ptr<std::int64_t>();
  auto* dst_all = out.images.data_ptr<std::uint8_t>();
  auto* out_labels = out.labels.data_ptr<std::int64_t>();
  auto* out_digit = out.digit_index.data_ptr<std::int64_t>();
  auto* box = out.boxes.data_ptr<std::int64_t>();
  auto* frag_src = out.fragment_source.data_ptr<std::int64_t>();
  auto* frag_box = out.fragment_boxes.data_ptr<std::int64_t>();
  const std::int64_t digit_stride = h * w * c;

  // Pastes rows [sy, sy+ph) x cols [sx, sx+pw) of digit `from` at (px, py) by max.
  auto paste = [&](std::uint8_t* dst, std::int64_t from, std::int64_t sx, std::int64_t sy, std::int64_t pw,
                   std::int64_t ph, std::int64_t px, std::int64_t py) {
    const auto* digit = src + from * digit_stride;
    for (std::int64_t y = 0; y < ph; ++y) {
      const auto* row = digit + ((sy + y) * w + sx) * c;
      auto* out_row = dst + ((py + y) * s + px) * c;
      for (std::int64_t x = 0; x < pw * c; ++x) out_row[x] = std::max(out_row[x], row[x]);
    }
  };

  for (auto index : indices) TORCH_CHECK(index >= 0, "SceneGenerator: negative scene index ", index);
  at::parallel_for(0, b, 16, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t i = begin; i < end; ++i) {
      const auto index = indices[static_cast<size_t>(i)];
      const std::int64_t digit = index % n;
      Rng rng(stream_key(seed_, static_cast<std::uint64_t>(epoch), static_cast<std::uint64_t>(index)));
      const auto x = rng.uniform_int(s - w + 1);
      const auto y = rng.uniform_int(s - h + 1);
      auto* dst = dst_all + i * s * s * c;
      for (std::int64_t j = 0; j < k; ++j) {
        auto other = rng.uniform_int(n - 1);
        if (other >= digit) ++other;  // any digit but this one
        const auto cx = rng.uniform_int(w - f + 1);
        const auto cy = rng.uniform_int(h - f + 1);
        const auto px = rng.uniform_int(s - f + 1);
        const auto py = rng.uniform_int(s - f + 1);
        paste(dst, other, cx, cy, f, f, px, py);
        frag_src[i * k + j] = other;
        std::int64_t* fb = frag_box + (i * k + j) * 4;
        fb[0] = px, fb[1] = py, fb[2] = f, fb[3] = f;
      }
      paste(dst, digit, 0, 0, w, h, x, y);
      out_labels[i] = labels[digit];
      out_digit[i] = digit;
      box[i * 4 + 0] = x, box[i * 4 + 1] = y, box[i * 4 + 2] = w, box[i * 4 + 3] = h;
    }
  });
  return out;
}

SceneBatch SceneGenerator::generate_all(std::int64_t count, std::int64_t epoch) const {
  if (count < 0) count = digits_.size();
  std::vector<std::int64_t> indices(static_cast<size_t>(count));
  for (std::int64_t i = 0; i < count; ++i) indices[static_cast<size_t>(i)] = i;
  return generate(indices, epoch);
}

SceneDataset::SceneDataset(std::shared_ptr<const SceneGenerator> generator, SceneMode mode, std::int64_t count)
    : generator_(std::move(generator)),
      mode_(mode),
      count_(count < 0 ? generator_->digits().size() : count),
      epoch_(std::make_shared<std::atomic<std::int64_t>>(0)) {}

torch::data::Example<> SceneDataset::get_batch(c10::ArrayRef<size_t> indices) {
  std::vector<std::int64_t> idx(indices.begin(), indices.end());
  for (auto i : idx) TORCH_CHECK(i >= 0 && i < count_, "SceneDataset: index ", i, " out of range for ", count_, " scenes");
  const auto epoch = mode_ == SceneMode::kFixed ? 0 : epoch_->load();
  auto batch = generator_->generate(idx, epoch);
  return {images_to_float(batch.images), batch.labels};
}

torch::optional<size_t> SceneDataset::size() const { return static_cast<size_t>(count_); }

}  // namespace attend::datasets
