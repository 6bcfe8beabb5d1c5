#include "attend/datasets/source.h"

#include <attend/datasets/rng.h>

#include <torch/torch.h>

#include <cmath>
#include <numeric>

namespace attend::datasets {
namespace {

void check_indices(const std::vector<std::int64_t>& indices, std::int64_t size, const char* who) {
  for (auto i : indices) TORCH_CHECK(i >= 0 && i < size, who, ": index ", i, " out of range for ", size, " items");
}

}  // namespace

DigitsSource::DigitsSource(Digits digits) : digits_(std::move(digits)) {
  TORCH_CHECK(digits_.images.defined() && digits_.size() > 0, "DigitsSource: no images");
}

std::int64_t DigitsSource::channels() const { return digits_.images.dim() == 4 ? digits_.images.size(3) : 1; }

LabelledBatch DigitsSource::get(const std::vector<std::int64_t>& indices, std::int64_t /*epoch*/) const {
  check_indices(indices, size(), "DigitsSource");
  const auto idx = torch::tensor(indices, torch::kInt64);
  return {images_to_float(digits_.images.index_select(0, idx)), digits_.labels.index_select(0, idx)};
}

SceneSource::SceneSource(std::shared_ptr<const SceneGenerator> generator, SceneMode mode, std::int64_t count)
    : generator_(std::move(generator)), mode_(mode), count_(count < 0 ? generator_->digits().size() : count) {}

std::int64_t SceneSource::channels() const {
  const auto& images = generator_->digits().images;
  return images.dim() == 4 ? images.size(3) : 1;
}

LabelledBatch SceneSource::get(const std::vector<std::int64_t>& indices, std::int64_t epoch) const {
  check_indices(indices, size(), "SceneSource");
  auto batch = generator_->generate(indices, mode_ == SceneMode::kFixed ? 0 : epoch);
  return {images_to_float(batch.images), batch.labels};
}

SubsetSource::SubsetSource(std::shared_ptr<const ImageSource> base, std::int64_t offset, std::int64_t count)
    : base_(std::move(base)), offset_(offset), count_(count) {
  TORCH_CHECK(offset_ >= 0 && count_ >= 0 && offset_ + count_ <= base_->size(), "SubsetSource: [", offset_, ", ",
              offset_ + count_, ") is outside the ", base_->size(), " items of the source");
}

LabelledBatch SubsetSource::get(const std::vector<std::int64_t>& indices, std::int64_t epoch) const {
  check_indices(indices, count_, "SubsetSource");
  std::vector<std::int64_t> shifted(indices);
  for (auto& i : shifted) i += offset_;
  return base_->get(shifted, epoch);
}

ShiftedSource::ShiftedSource(std::shared_ptr<const ImageSource> base, std::int64_t max_shift, std::uint64_t seed)
    : base_(std::move(base)), max_shift_(max_shift), seed_(seed) {
  TORCH_CHECK(base_ != nullptr, "ShiftedSource: no base source");
  TORCH_CHECK(max_shift_ >= 0 && max_shift_ < std::min(base_->height(), base_->width()),
              "ShiftedSource: max_shift must be in [0, ", std::min(base_->height(), base_->width()), ") for ",
              base_->height(), "x", base_->width(), " images, got ", max_shift_);
}

std::array<std::int64_t, 2> ShiftedSource::shift(std::int64_t index, std::int64_t epoch) const {
  Rng rng(stream_key(seed_, static_cast<std::uint64_t>(epoch), static_cast<std::uint64_t>(index)));
  const auto dx = rng.uniform_int(2 * max_shift_ + 1) - max_shift_;
  const auto dy = rng.uniform_int(2 * max_shift_ + 1) - max_shift_;
  return {dx, dy};
}

LabelledBatch ShiftedSource::get(const std::vector<std::int64_t>& indices, std::int64_t epoch) const {
  auto batch = base_->get(indices, epoch);
  if (max_shift_ == 0) return batch;
  const auto h = batch.images.size(2), w = batch.images.size(3);
  auto out = torch::zeros_like(batch.images);
  for (size_t i = 0; i < indices.size(); ++i) {
    const auto [dx, dy] = shift(indices[i], epoch);
    // Destination rows/columns [y0, y1) x [x0, x1) come from source ones shifted by (-dy, -dx).
    const auto y0 = std::max<std::int64_t>(0, dy), y1 = std::min(h, h + dy);
    const auto x0 = std::max<std::int64_t>(0, dx), x1 = std::min(w, w + dx);
    const auto n = static_cast<std::int64_t>(i);
    out[n].narrow(1, y0, y1 - y0).narrow(2, x0, x1 - x0).copy_(
        batch.images[n].narrow(1, y0 - dy, y1 - y0).narrow(2, x0 - dx, x1 - x0));
  }
  batch.images = out;
  return batch;
}

WarpedSource::WarpedSource(std::shared_ptr<const ImageSource> base, double max_degrees, double max_scale,
                           std::uint64_t seed)
    : base_(std::move(base)), max_degrees_(max_degrees), max_scale_(max_scale), seed_(seed) {
  TORCH_CHECK(base_ != nullptr, "WarpedSource: no base source");
  TORCH_CHECK(max_degrees_ >= 0 && max_degrees_ <= 180, "WarpedSource: max_degrees must be in [0, 180], got ",
              max_degrees_);
  TORCH_CHECK(max_scale_ >= 0 && max_scale_ < 1, "WarpedSource: max_scale must be in [0, 1), got ", max_scale_);
}

WarpedSource::Warp WarpedSource::warp(std::int64_t index, std::int64_t epoch) const {
  // The constant keeps this stream apart from ShiftedSource's when both get one seed.
  Rng rng(stream_key(seed_ ^ 0x77a4e, static_cast<std::uint64_t>(epoch), static_cast<std::uint64_t>(index)));
  const double degrees = (2 * rng.uniform() - 1) * max_degrees_;
  const double scale = 1 + (2 * rng.uniform() - 1) * max_scale_;
  return {degrees, scale};
}

LabelledBatch WarpedSource::get(const std::vector<std::int64_t>& indices, std::int64_t epoch) const {
  auto batch = base_->get(indices, epoch);
  if (max_degrees_ == 0 && max_scale_ == 0) return batch;
  const auto n = static_cast<std::int64_t>(indices.size());
  const double h = static_cast<double>(batch.images.size(2)), w = static_cast<double>(batch.images.size(3));
  // affine_grid maps output to input in coordinates normalised by the half sizes; the
  // rotation and scaling act in pixels, hence the conjugation by diag(w/2, h/2).
  auto theta = torch::empty({n, 2, 3}, torch::kFloat64);
  auto t = theta.accessor<double, 3>();
  for (std::int64_t i = 0; i < n; ++i) {
    const auto [degrees, scale] = warp(indices[static_cast<size_t>(i)], epoch);
    // With y down, turning counter-clockwise on screen by a maps p to [[c, s], [-s, c]] p;
    // output pixel p (relative to the centre) so reads input [[c, -s], [s, c]] p / scale.
    const double a = degrees * M_PI / 180.0, c = std::cos(a) / scale, s = std::sin(a) / scale;
    t[i][0][0] = c, t[i][0][1] = -s * h / w, t[i][0][2] = 0;
    t[i][1][0] = s * w / h, t[i][1][1] = c, t[i][1][2] = 0;
  }
  namespace F = torch::nn::functional;
  const auto grid = F::affine_grid(theta.to(batch.images.scalar_type()), batch.images.sizes().vec(), false);
  batch.images = F::grid_sample(batch.images, grid,
                                F::GridSampleFuncOptions().mode(torch::kBilinear).padding_mode(torch::kZeros).align_corners(false));
  return batch;
}

std::vector<std::int64_t> epoch_order(std::int64_t size, std::uint64_t seed, std::int64_t epoch) {
  TORCH_CHECK(size > 0, "epoch_order: size must be positive, got ", size);
  // Fisher-Yates with the portable generator.
  std::vector<std::int64_t> order(static_cast<size_t>(size));
  std::iota(order.begin(), order.end(), 0);
  Rng rng(stream_key(seed, 0x5eed, static_cast<std::uint64_t>(epoch)));
  for (std::int64_t i = size - 1; i > 0; --i) {
    std::swap(order[static_cast<size_t>(i)], order[static_cast<size_t>(rng.uniform_int(i + 1))]);
  }
  return order;
}

std::vector<std::int64_t> order_batch(const std::vector<std::int64_t>& order, std::int64_t batch_size,
                                      std::int64_t step) {
  const auto size = static_cast<std::int64_t>(order.size());
  TORCH_CHECK(batch_size > 0, "order_batch: batch size must be positive, got ", batch_size);
  const std::int64_t begin = step * batch_size;
  TORCH_CHECK(begin >= 0 && begin < size, "order_batch: step ", step, " is past the end of an epoch of ", size,
              " items in batches of ", batch_size);
  const std::int64_t end = std::min(size, begin + batch_size);
  return {order.begin() + begin, order.begin() + end};
}

std::vector<std::int64_t> epoch_batch(std::int64_t size, std::int64_t batch_size, std::uint64_t seed,
                                      std::int64_t epoch, std::int64_t step) {
  return order_batch(epoch_order(size, seed, epoch), batch_size, step);
}

}  // namespace attend::datasets
