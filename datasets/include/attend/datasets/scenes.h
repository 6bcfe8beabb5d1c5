#pragma once
/// Translated and cluttered digit scenes (Mnih et al. 2014, section 4.1):
/// - translated: the digit at a uniformly random position of an S x S canvas;
/// - cluttered: the same plus K fragments of F x F pixels cut at random from other
///   digits of the same split and pasted at random positions of the canvas.
/// Pixels combine by maximum, so the digit is never hidden by clutter. Every scene
/// is a pure function of (seed, epoch, index): the same arguments give the same
/// bytes on every platform.

#include <attend/datasets/digits.h>

#include <torch/arg.h>
#include <torch/data/datasets/base.h>
#include <torch/data/example.h>
#include <torch/types.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

namespace attend::datasets {

struct SceneOptions {
  /// Canvas side S in pixels; must be at least the digit's height and width.
  TORCH_ARG(std::int64_t, canvas) = 60;
  /// Number K of clutter fragments; 0 gives translated scenes.
  TORCH_ARG(std::int64_t, fragments) = 0;
  /// Side F of each fragment; at most the digit's side and the canvas.
  TORCH_ARG(std::int64_t, fragment_size) = 8;
};

/// A batch of generated scenes.
struct SceneBatch {
  torch::Tensor images;            ///< [B,S,S] (or [B,S,S,C]) uint8
  torch::Tensor labels;            ///< [B] int64
  torch::Tensor digit_index;       ///< [B] int64: which source digit each scene shows
  torch::Tensor boxes;             ///< [B,4] int64: digit box x, y, width, height
  torch::Tensor fragment_source;   ///< [B,K] int64: source digit of each fragment
  torch::Tensor fragment_boxes;    ///< [B,K,4] int64: where each fragment was pasted
};

class SceneGenerator {
 public:
  /// requires: digits non-empty; canvas >= digit side; 0 <= fragments <= 1000;
  /// 1 <= fragment_size <= digit side; at least 2 digits when fragments > 0.
  /// throws c10::Error naming the offending option otherwise.
  SceneGenerator(Digits digits, SceneOptions options, std::uint64_t seed);

  /// Scenes for the given indices. Index i shows digit i mod N; its position and
  /// clutter depend only on (seed, epoch, i).
  SceneBatch generate(const std::vector<std::int64_t>& indices, std::int64_t epoch = 0) const;

  /// Scenes 0..count-1 of `epoch` (count defaults to the number of digits).
  SceneBatch generate_all(std::int64_t count = -1, std::int64_t epoch = 0) const;

  const SceneOptions& options() const { return options_; }
  const Digits& digits() const { return digits_; }
  std::uint64_t seed() const { return seed_; }

 private:
  Digits digits_;
  SceneOptions options_;
  std::uint64_t seed_;
};

/// Which scenes a SceneDataset yields across epochs.
enum class SceneMode {
  kFreshEachEpoch,  ///< training: new positions and clutter every epoch (set_epoch)
  kFixed,           ///< evaluation: the same scenes whatever the epoch
};

/// Batched `torch::data` dataset generating scenes on the fly: a batch's data is
/// float [B,C,S,S] in [0,1], its target int64 [B]. Copies share the epoch counter,
/// so set_epoch on the original also reaches a copy held by a data loader.
class SceneDataset
    : public torch::data::datasets::BatchDataset<SceneDataset, torch::data::Example<>> {
 public:
  SceneDataset(std::shared_ptr<const SceneGenerator> generator, SceneMode mode, std::int64_t count = -1);

  torch::data::Example<> get_batch(c10::ArrayRef<size_t> indices) override;
  torch::optional<size_t> size() const override;

  void set_epoch(std::int64_t epoch) { epoch_->store(epoch); }
  std::int64_t epoch() const { return epoch_->load(); }
  const SceneGenerator& generator() const { return *generator_; }

 private:
  std::shared_ptr<const SceneGenerator> generator_;
  SceneMode mode_;
  std::int64_t count_;
  std::shared_ptr<std::atomic<std::int64_t>> epoch_;
};

}  // namespace attend::datasets
