#include "attend/datasets/data_spec.h"

#include <attend/datasets/rng.h>

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <map>

namespace attend::datasets {
namespace {

// Streams of stream_key(seed, n): the same numbers `attend data` has always used.
constexpr std::uint64_t kTrainStream = 0;
constexpr std::uint64_t kTestStream = 1;
constexpr std::uint64_t kValidationStream = 2;
constexpr std::uint64_t kShiftStream = 3;
constexpr std::uint64_t kWarpStream = 4;
constexpr std::uint64_t kValidationSplitStream = 7;

std::shared_ptr<const SceneGenerator> make_generator(const DataSpec& spec, Digits digits, std::uint64_t stream) {
  const auto opts = SceneOptions()
                        .canvas(spec.canvas())
                        .fragments(spec.scenes() == SceneKind::kCluttered ? spec.fragments() : 0)
                        .fragment_size(spec.fragment_size());
  return std::make_shared<const SceneGenerator>(std::move(digits), opts, stream_key(spec.seed(), stream));
}

std::shared_ptr<const ImageSource> scene_source(const DataSpec& spec, Digits digits, std::uint64_t stream,
                                                SceneMode mode) {
  return std::make_shared<SceneSource>(make_generator(spec, std::move(digits), stream), mode);
}

template <typename T>
T get(const nlohmann::json& j, const char* key) {
  TORCH_CHECK(j.contains(key), "data description: missing '", key, "' in ", j.dump());
  try {
    return j.at(key).get<T>();
  } catch (const nlohmann::json::exception&) {
    TORCH_CHECK(false, "data description: '", key, "' has the wrong type in ", j.dump());
  }
}

template <typename T>
T get_or(const nlohmann::json& j, const char* key, T fallback) {
  return j.contains(key) ? get<T>(j, key) : fallback;
}

}  // namespace

const char* to_string(DataKind kind) {
  return kind == DataKind::kIdx ? "idx" : kind == DataKind::kScenes ? "scenes" : "objects";
}
const char* to_string(SceneKind kind) { return kind == SceneKind::kTranslated ? "translated" : "cluttered"; }

const char* to_string(ValidationSplit split) { return split == ValidationSplit::kStratified ? "stratified" : "last"; }

ValidationSplit parse_validation_split(const std::string& name) {
  if (name == "stratified") return ValidationSplit::kStratified;
  if (name == "last") return ValidationSplit::kLast;
  TORCH_CHECK(false, "unknown validation split '", name, "' (expected stratified or last)");
}

std::vector<std::int64_t> stratified_indices(const torch::Tensor& labels, std::int64_t count, std::uint64_t seed) {
  TORCH_CHECK(labels.defined() && labels.dim() == 1, "stratified_indices: expected labels [N]");
  const auto n = labels.size(0);
  TORCH_CHECK(count >= 0 && count <= n, "stratified_indices: count must be in 0..", n, ", got ", count);
  const auto l = labels.to(torch::kInt64).contiguous();
  const auto* lp = l.data_ptr<std::int64_t>();
  std::map<std::int64_t, std::vector<std::int64_t>> members;
  for (std::int64_t i = 0; i < n; ++i) members[lp[i]].push_back(i);
  // Quotas by largest remainder: floor(count * n_c / n), then one more for the
  // classes with the largest fractions (ties: smaller label first).
  std::vector<std::pair<std::int64_t, std::int64_t>> quota;  // label, quota
  std::vector<std::pair<double, std::int64_t>> fraction;      // -remainder, position
  std::int64_t given = 0;
  for (const auto& [label, items] : members) {
    const double exact = static_cast<double>(count) * static_cast<double>(items.size()) / static_cast<double>(n);
    const auto base = static_cast<std::int64_t>(std::floor(exact));
    fraction.emplace_back(-(exact - static_cast<double>(base)), static_cast<std::int64_t>(quota.size()));
    quota.emplace_back(label, base);
    given += base;
  }
  std::sort(fraction.begin(), fraction.end());
  for (std::int64_t k = 0; k < count - given; ++k) ++quota[static_cast<size_t>(fraction[static_cast<size_t>(k)].second)].second;
  std::vector<std::int64_t> chosen;
  for (const auto& [label, take] : quota) {
    auto items = members[label];
    Rng rng(stream_key(seed, kValidationSplitStream, static_cast<std::uint64_t>(label)));
    for (std::int64_t i = static_cast<std::int64_t>(items.size()) - 1; i > 0; --i) {
      std::swap(items[static_cast<size_t>(i)], items[static_cast<size_t>(rng.uniform_int(i + 1))]);
    }
    chosen.insert(chosen.end(), items.begin(), items.begin() + take);
  }
  std::sort(chosen.begin(), chosen.end());
  return chosen;
}

SceneKind parse_scene_kind(const std::string& name) {
  if (name == "translated") return SceneKind::kTranslated;
  if (name == "cluttered") return SceneKind::kCluttered;
  TORCH_CHECK(false, "unknown scene kind '", name, "' (expected translated or cluttered)");
}

void DataSpec::validate() const {
  if (kind_ == DataKind::kIdx) {
    TORCH_CHECK(!dir_.empty(), "data: an IDX folder is required");
  } else if (kind_ == DataKind::kObjects) {
    TORCH_CHECK(!source_.empty(), "data: the folder of source digits is required");
    objects_.validate();
    TORCH_CHECK(count_ >= 1 && count_ <= 100'000'000, "data: scenes per epoch must be in 1..100000000, got ", count_);
    TORCH_CHECK(test_count_ >= 1 && test_count_ <= 10'000'000, "data: test scenes must be in 1..10000000, got ",
                test_count_);
  } else {
    TORCH_CHECK(!source_.empty(), "data: the folder of source digits is required");
    TORCH_CHECK(canvas_ >= 1 && canvas_ <= 4096, "data: canvas must be in 1..4096, got ", canvas_);
    TORCH_CHECK(fragments_ >= 0 && fragments_ <= 1000, "data: fragments must be in 0..1000, got ", fragments_);
    TORCH_CHECK(fragment_size_ >= 1 && fragment_size_ <= 4096, "data: fragment size must be in 1..4096, got ",
                fragment_size_);
  }
  TORCH_CHECK(shift_ >= 0 && shift_ <= 4096, "data: shift must be in 0..4096, got ", shift_);
  TORCH_CHECK(rotate_ >= 0 && rotate_ <= 180, "data: rotation must be in 0..180 degrees, got ", rotate_);
  TORCH_CHECK(scale_jitter_ >= 0 && scale_jitter_ <= 0.9, "data: scale jitter must be in 0..0.9, got ",
              scale_jitter_);
}

nlohmann::json DataSpec::to_json() const {
  nlohmann::json j;
  if (kind_ == DataKind::kIdx) {
    j = {{"kind", "idx"}, {"dir", dir_}};
  } else if (kind_ == DataKind::kObjects) {
    j = {{"kind", "objects"}, {"objects", objects_.to_json()}, {"source", source_}, {"fashion", fashion_},
         {"count", count_},   {"test_count", test_count_},     {"seed", seed_}};
  } else {
    j = {{"kind", "scenes"},
         {"scenes", to_string(scenes_)},
         {"source", source_},
         {"canvas", canvas_},
         {"fragments", scenes_ == SceneKind::kCluttered ? fragments_ : 0},
         {"fragment_size", fragment_size_},
         {"seed", seed_}};
  }
  if (validation_ == ValidationSplit::kStratified) {
    j["validation"] = to_string(validation_);
    j["seed"] = seed_;
  }
  if (shift_ > 0) j["shift"] = shift_;
  if (rotate_ > 0) j["rotate"] = rotate_;
  if (scale_jitter_ > 0) j["scale_jitter"] = scale_jitter_;
  if (augmented()) j["seed"] = seed_;
  return j;
}

DataSpec DataSpec::from_json(const nlohmann::json& j) {
  TORCH_CHECK(j.is_object(), "data description: expected a JSON object, got ", j.dump());
  const auto kind = get<std::string>(j, "kind");
  DataSpec s;
  if (kind == "idx") {
    s.kind(DataKind::kIdx).dir(get<std::string>(j, "dir"));
  } else if (kind == "scenes") {
    s.kind(DataKind::kScenes)
        .scenes(parse_scene_kind(get<std::string>(j, "scenes")))
        .source(get<std::string>(j, "source"))
        .canvas(get<std::int64_t>(j, "canvas"))
        .fragments(get<std::int64_t>(j, "fragments"))
        .fragment_size(get<std::int64_t>(j, "fragment_size"));
  } else if (kind == "objects") {
    TORCH_CHECK(j.contains("objects"), "data description: missing 'objects' in ", j.dump());
    s.kind(DataKind::kObjects)
        .objects(ObjectSceneOptions::from_json(j.at("objects")))
        .source(get<std::string>(j, "source"))
        .fashion(get<std::string>(j, "fashion"))
        .count(get<std::int64_t>(j, "count"))
        .test_count(get<std::int64_t>(j, "test_count"));
  } else {
    TORCH_CHECK(false, "data description: unknown kind '", kind, "' (expected idx, scenes or objects)");
  }
  s.shift(get_or<std::int64_t>(j, "shift", 0))
      .rotate(get_or<double>(j, "rotate", 0.0))
      .scale_jitter(get_or<double>(j, "scale_jitter", 0.0))
      .seed(get_or<std::uint64_t>(j, "seed", 1))
      .validation(parse_validation_split(get_or<std::string>(j, "validation", "last")));
  s.validate();
  return s;
}

std::shared_ptr<const ObjectSceneGenerator> DataSpec::object_generator() const {
  validate();
  TORCH_CHECK(kind_ == DataKind::kObjects, "object_generator: the data are not object scenes");
  ObjectSources sources;
  sources.digits_dir = source_;
  sources.fashion_dir = fashion_;
  return std::make_shared<const ObjectSceneGenerator>(objects_, seed_, sources);
}

Digits DataSpec::load_checked(const std::string& dir, const std::string& split, std::int64_t classes) {
  auto digits = load_split(dir, split);
  if (classes > 0) check_labels(digits, classes);
  return digits;
}

TrainingSources DataSpec::training_sources(std::int64_t validation_count, std::int64_t classes) const {
  validate();
  if (kind_ == DataKind::kObjects) {
    // Validation scenes come from the val split's items, never seen in training.
    TORCH_CHECK(validation_count >= 0 && validation_count <= 10'000'000,
                "validation count must be between 0 and 10000000, got ", validation_count);
    const auto generator = object_generator();
    TrainingSources s;
    s.train = std::make_shared<const ObjectLabelSource>(generator, ObjectSplit::kTrain, count_, true);
    if (validation_count > 0) {
      s.validation = std::make_shared<const ObjectLabelSource>(generator, ObjectSplit::kVal, validation_count, false);
      for (std::int64_t i = 0; i < validation_count; ++i) s.validation_indices.push_back(i);
    }
    return augmented_training(std::move(s));
  }
  const bool idx = kind_ == DataKind::kIdx;
  auto digits = load_checked(idx ? dir_ : source_, "train", classes);
  TORCH_CHECK(validation_count >= 0 && validation_count < digits.size(),
              "validation count must be between 0 and ", digits.size() - 1, " (the training split has ",
              digits.size(), " items), got ", validation_count);
  const auto n_train = digits.size() - validation_count;
  TrainingSources s;
  std::vector<std::int64_t> train_indices;
  if (validation_ == ValidationSplit::kStratified) {
    s.validation_indices = stratified_indices(digits.labels, validation_count, seed_);
    std::vector<bool> held(static_cast<size_t>(digits.size()), false);
    for (auto i : s.validation_indices) held[static_cast<size_t>(i)] = true;
    for (std::int64_t i = 0; i < digits.size(); ++i) {
      if (!held[static_cast<size_t>(i)]) train_indices.push_back(i);
    }
  } else {
    for (std::int64_t i = 0; i < n_train; ++i) train_indices.push_back(i);
    for (std::int64_t i = n_train; i < digits.size(); ++i) s.validation_indices.push_back(i);
  }
  auto train_digits = select(digits, train_indices);
  auto validation_digits = select(digits, s.validation_indices);
  if (idx) {
    s.train = std::make_shared<const DigitsSource>(std::move(train_digits));
    if (validation_count > 0) s.validation = std::make_shared<const DigitsSource>(std::move(validation_digits));
  } else {
    s.train = scene_source(*this, std::move(train_digits), kTrainStream, SceneMode::kFreshEachEpoch);
    if (validation_count > 0) {
      s.validation = scene_source(*this, std::move(validation_digits), kValidationStream, SceneMode::kFixed);
    }
  }
  return augmented_training(std::move(s));
}

TrainingSources DataSpec::augmented_training(TrainingSources s) const {
  if (rotate_ > 0 || scale_jitter_ > 0) {
    s.train = std::make_shared<WarpedSource>(s.train, rotate_, scale_jitter_, stream_key(seed_, kWarpStream));
  }
  if (shift_ > 0) {
    TORCH_CHECK(shift_ < std::min(s.train->height(), s.train->width()), "shift must be smaller than the ",
                s.train->height(), "x", s.train->width(), " images, got ", shift_);
    s.train = std::make_shared<ShiftedSource>(s.train, shift_, stream_key(seed_, kShiftStream));
  }
  return s;
}

std::shared_ptr<const ImageSource> DataSpec::evaluation_source(const std::string& split, std::int64_t classes) const {
  validate();
  TORCH_CHECK(split == "train" || split == "test", "unknown split '", split, "' (expected train or test)");
  if (kind_ == DataKind::kIdx) return std::make_shared<const DigitsSource>(load_checked(dir_, split, classes));
  if (kind_ == DataKind::kObjects) {
    return std::make_shared<const ObjectLabelSource>(
        object_generator(), split == "train" ? ObjectSplit::kTrain : ObjectSplit::kTest,
        split == "train" ? count_ : test_count_, false);
  }
  return std::make_shared<SceneSource>(
      make_generator(*this, load_checked(source_, split, classes), split == "train" ? kTrainStream : kTestStream),
      SceneMode::kFixed);
}

std::shared_ptr<const SceneGenerator> DataSpec::scene_generator(const std::string& split) const {
  validate();
  TORCH_CHECK(kind_ == DataKind::kScenes, "scene_generator: the data are an IDX folder, not generated scenes");
  TORCH_CHECK(split == "train" || split == "test", "unknown split '", split, "' (expected train or test)");
  return make_generator(*this, load_split(source_, split), split == "train" ? kTrainStream : kTestStream);
}

}  // namespace attend::datasets
