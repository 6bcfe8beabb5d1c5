#pragma once
/// Labelled image sources for training loops: a batch is a pure function of
/// (indices, epoch), so a loop can be resumed exactly and an epoch can see fresh
/// generated scenes.

#include <attend/datasets/digits.h>
#include <attend/datasets/scenes.h>

#include <torch/types.h>

#include <array>
#include <memory>
#include <vector>

namespace attend::datasets {

struct LabelledBatch {
  torch::Tensor images;  ///< [B,C,H,W] float in [0,1]
  torch::Tensor labels;  ///< [B] int64 class, or [B,K] float multi-hot for multi-label sources
  /// [B,H,W] int64 label images (0 background, c+1 class c, 255 ignore) from sources
  /// that know where every object is (object scenes); undefined otherwise (and after
  /// augmentations that move pixels).
  torch::Tensor masks{};
};

class ImageSource {
 public:
  virtual ~ImageSource() = default;
  virtual std::int64_t size() const = 0;
  virtual std::int64_t channels() const = 0;
  virtual std::int64_t height() const = 0;
  virtual std::int64_t width() const = 0;
  /// requires: 0 <= indices < size().
  virtual LabelledBatch get(const std::vector<std::int64_t>& indices, std::int64_t epoch) const = 0;
};

/// Fixed images held in memory (e.g. read from IDX files); ignores the epoch.
class DigitsSource : public ImageSource {
 public:
  explicit DigitsSource(Digits digits);
  std::int64_t size() const override { return digits_.size(); }
  std::int64_t channels() const override;
  std::int64_t height() const override { return digits_.images.size(1); }
  std::int64_t width() const override { return digits_.images.size(2); }
  LabelledBatch get(const std::vector<std::int64_t>& indices, std::int64_t epoch) const override;

 private:
  Digits digits_;
};

/// Scenes generated on the fly; kFreshEachEpoch draws new positions and clutter
/// every epoch, kFixed always shows epoch 0's scenes.
class SceneSource : public ImageSource {
 public:
  SceneSource(std::shared_ptr<const SceneGenerator> generator, SceneMode mode, std::int64_t count = -1);
  std::int64_t size() const override { return count_; }
  std::int64_t channels() const override;
  std::int64_t height() const override { return generator_->options().canvas(); }
  std::int64_t width() const override { return generator_->options().canvas(); }
  LabelledBatch get(const std::vector<std::int64_t>& indices, std::int64_t epoch) const override;

 private:
  std::shared_ptr<const SceneGenerator> generator_;
  SceneMode mode_;
  std::int64_t count_;
};

/// The first `count` items of another source (or items [offset, offset+count)).
class SubsetSource : public ImageSource {
 public:
  SubsetSource(std::shared_ptr<const ImageSource> base, std::int64_t offset, std::int64_t count);
  std::int64_t size() const override { return count_; }
  std::int64_t channels() const override { return base_->channels(); }
  std::int64_t height() const override { return base_->height(); }
  std::int64_t width() const override { return base_->width(); }
  LabelledBatch get(const std::vector<std::int64_t>& indices, std::int64_t epoch) const override;

 private:
  std::shared_ptr<const ImageSource> base_;
  std::int64_t offset_, count_;
};

/// Training augmentation: every image of `base` translated by (dx, dy), each drawn
/// uniformly from [-max_shift, max_shift] with attend's portable generator from
/// (seed, epoch, index); pixels shifted in are 0. A pure function of (indices, epoch)
/// like every source, so resumed training sees the same images.
class ShiftedSource : public ImageSource {
 public:
  /// requires: 0 <= max_shift < min(height, width) of base.
  ShiftedSource(std::shared_ptr<const ImageSource> base, std::int64_t max_shift, std::uint64_t seed);
  std::int64_t size() const override { return base_->size(); }
  std::int64_t channels() const override { return base_->channels(); }
  std::int64_t height() const override { return base_->height(); }
  std::int64_t width() const override { return base_->width(); }
  LabelledBatch get(const std::vector<std::int64_t>& indices, std::int64_t epoch) const override;

  /// The translation of item `index` in `epoch`: {dx, dy}.
  std::array<std::int64_t, 2> shift(std::int64_t index, std::int64_t epoch) const;

 private:
  std::shared_ptr<const ImageSource> base_;
  std::int64_t max_shift_;
  std::uint64_t seed_;
};

/// Training augmentation: every image of `base` rotated by an angle drawn uniformly
/// from [-max_degrees, max_degrees] and scaled by a factor drawn from
/// [1 - max_scale, 1 + max_scale], about the image centre, by bilinear resampling
/// (pixel centres at i + 0.5, zeros outside), both drawn from (seed, epoch, index).
class WarpedSource : public ImageSource {
 public:
  /// requires: 0 <= max_degrees <= 180, 0 <= max_scale < 1.
  WarpedSource(std::shared_ptr<const ImageSource> base, double max_degrees, double max_scale, std::uint64_t seed);
  std::int64_t size() const override { return base_->size(); }
  std::int64_t channels() const override { return base_->channels(); }
  std::int64_t height() const override { return base_->height(); }
  std::int64_t width() const override { return base_->width(); }
  LabelledBatch get(const std::vector<std::int64_t>& indices, std::int64_t epoch) const override;

  struct Warp {
    double degrees;  ///< counter-clockwise in image coordinates (x right, y down)
    double scale;    ///< > 1 enlarges
  };
  /// The warp of item `index` in `epoch`.
  Warp warp(std::int64_t index, std::int64_t epoch) const;

 private:
  std::shared_ptr<const ImageSource> base_;
  double max_degrees_, max_scale_;
  std::uint64_t seed_;
};

/// The order in which an epoch visits `size` items: a permutation drawn from
/// (seed, epoch) with attend's portable generator (the same on every platform).
std::vector<std::int64_t> epoch_order(std::int64_t size, std::uint64_t seed, std::int64_t epoch);

/// Indices of batch `step` of `order` (from epoch_order); the last batch may be smaller.
std::vector<std::int64_t> order_batch(const std::vector<std::int64_t>& order, std::int64_t batch_size,
                                      std::int64_t step);

/// Indices of batch `step` of `epoch`: order_batch(epoch_order(size, seed, epoch), ...).
std::vector<std::int64_t> epoch_batch(std::int64_t size, std::int64_t batch_size, std::uint64_t seed,
                                      std::int64_t epoch, std::int64_t step);

}  // namespace attend::datasets
