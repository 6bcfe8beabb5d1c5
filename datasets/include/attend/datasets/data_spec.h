#pragma once
/// DataSpec: what a model is trained and evaluated on, as a value. It is stored in
/// every checkpoint (so `attend eval best.pt` knows its test set and a resumed run
/// is refused on other data), and it builds the image sources for training,
/// validation and evaluation, for the CLI and for a user's own program alike.
///
/// JSON form (kept from the first checkpoint format, so old checkpoints read):
///   {"kind": "idx", "dir": DIR}
///   {"kind": "scenes", "scenes": "translated"|"cluttered", "source": DIR,
///    "canvas": S, "fragments": K, "fragment_size": F, "seed": SEED}
///   {"kind": "objects", "objects": {ObjectSceneOptions}, "source": DIR, "fashion": DIR,
///    "count": N, "test_count": N, "seed": SEED}  (multi-label: labels are [B,K] multi-hot;
///    N fresh training scenes per epoch, validation scenes from the val split, the test
///    split fixed)
/// plus, for training augmentation, "shift": P, "rotate": DEG, "scale_jitter": F and
/// (with any of them, for idx data) "seed". Absent augmentation keys mean none.
/// "validation": "stratified" (and "seed") unless the split is the last N items.

#include <attend/datasets/object_scenes.h>
#include <attend/datasets/source.h>

#include <torch/arg.h>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <string>

namespace attend::datasets {

enum class DataKind { kIdx, kScenes, kObjects };
enum class SceneKind { kTranslated, kCluttered };
/// Which training items are held out for validation. kStratified: a seeded random
/// subset with each class in proportion (largest remainders); kLast: the last N items
/// of the file (what runs before the option did; skewed when a file is sorted by class).
enum class ValidationSplit { kStratified, kLast };

/// Names as written in JSON and on the command line.
const char* to_string(DataKind kind);
const char* to_string(SceneKind kind);
/// throws c10::Error listing the valid names.
SceneKind parse_scene_kind(const std::string& name);
const char* to_string(ValidationSplit split);
/// throws c10::Error listing the valid names.
ValidationSplit parse_validation_split(const std::string& name);

/// `count` indices of `labels` ([N] int64) drawn per class in proportion to its size
/// (largest remainders), each class's items shuffled by a stream of `seed`; sorted.
/// The same arguments give the same indices on every platform.
/// requires: 0 <= count <= N.
std::vector<std::int64_t> stratified_indices(const torch::Tensor& labels, std::int64_t count, std::uint64_t seed);

/// Train and validation sources: `validation_count` items of the training split are
/// held out for validation (none when 0), chosen as DataSpec::validation says. Scenes
/// are drawn afresh every epoch for training and fixed for validation.
struct TrainingSources {
  std::shared_ptr<const ImageSource> train;
  std::shared_ptr<const ImageSource> validation;  ///< null when validation_count = 0
  std::vector<std::int64_t> validation_indices;   ///< which items of the training split, sorted
};

struct DataSpec {
  TORCH_ARG(DataKind, kind) = DataKind::kIdx;
  /// idx: folder with train-/t10k- IDX images and labels (see find_split).
  TORCH_ARG(std::string, dir) = "";
  /// scenes: what to generate, from the digits in `source`.
  TORCH_ARG(SceneKind, scenes) = SceneKind::kCluttered;
  TORCH_ARG(std::string, source) = "data/mnist";
  TORCH_ARG(std::int64_t, canvas) = 60;
  TORCH_ARG(std::int64_t, fragments) = 4;      ///< cluttered only; translated scenes have 0
  TORCH_ARG(std::int64_t, fragment_size) = 8;
  /// objects: the scenes, the Fashion-MNIST folder (when they use it), training scenes
  /// per epoch and test scenes.
  TORCH_ARG(ObjectSceneOptions, objects) = {};
  TORCH_ARG(std::string, fashion) = "data/fashion-mnist";
  TORCH_ARG(std::int64_t, count) = 8000;
  TORCH_ARG(std::int64_t, test_count) = 500;
  /// Training augmentation (0 = none).
  TORCH_ARG(std::int64_t, shift) = 0;
  TORCH_ARG(double, rotate) = 0.0;
  TORCH_ARG(double, scale_jitter) = 0.0;
  /// Seed of the scenes, of the augmentation draws and of the validation subset.
  TORCH_ARG(std::uint64_t, seed) = 1;
  /// How validation items are chosen (JSON key "validation"; absent = kLast, as
  /// checkpoints from before the option were split).
  TORCH_ARG(ValidationSplit, validation) = ValidationSplit::kStratified;

 public:
  bool augmented() const { return shift_ > 0 || rotate_ > 0 || scale_jitter_ > 0; }
  /// Several classes per image (object scenes).
  bool multi_label() const { return kind_ == DataKind::kObjects; }
  /// Objects only: the scene generator (the same for every split).
  /// throws attend::IoError for unreadable files; c10::Error for other data.
  std::shared_ptr<const ObjectSceneGenerator> object_generator() const;
  /// throws c10::Error naming the first value out of range.
  void validate() const;
  nlohmann::json to_json() const;
  /// throws c10::Error naming the missing or malformed key.
  static DataSpec from_json(const nlohmann::json& j);

  /// Loads the training split and splits off validation. With `classes` > 0 the
  /// labels of an IDX folder or of the scenes' source must lie in 0..classes-1.
  /// throws attend::IoError for unreadable files and labels out of range (naming the
  /// labels file and the first bad index); c10::Error when validation_count is not
  /// in 0..size-1 or the shift does not fit the images.
  TrainingSources training_sources(std::int64_t validation_count, std::int64_t classes = 0) const;

  /// The fixed (unaugmented) source of split "train" or "test". Scenes use the same
  /// streams as `attend data`, so the test scenes of a run and of `attend data
  /// --seed S` are the same scenes.
  /// `classes` > 0 checks the labels as training_sources does.
  std::shared_ptr<const ImageSource> evaluation_source(const std::string& split, std::int64_t classes = 0) const;

  /// Scenes only: the generator of split "train" or "test" over all of the split's
  /// digits, with the split's stream (what `attend data` writes and what evaluation
  /// reads). throws attend::IoError for unreadable files; c10::Error for idx data.
  std::shared_ptr<const SceneGenerator> scene_generator(const std::string& split) const;

 private:
  /// load_split, then check_labels when classes > 0.
  static Digits load_checked(const std::string& dir, const std::string& split, std::int64_t classes);
  /// `s` with the training source wrapped in the augmentation this spec asks for.
  TrainingSources augmented_training(TrainingSources s) const;
};

}  // namespace attend::datasets
