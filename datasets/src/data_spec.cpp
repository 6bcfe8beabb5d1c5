#include "attend/datasets/data_spec.h"

#include <attend/datasets/rng.h>

#include <torch/torch.h>

#include <cmath>

namespace attend::datasets {
namespace {

// Streams of stream_key(seed, n): the same numbers `attend data` has always used.
constexpr std::uint64_t kTrainStream = 0;
constexpr std::uint64_t kTestStream = 1;
constexpr std::uint64_t kValidationStream = 2;
constexpr std::uint64_t kShiftStream = 3;
constexpr std::uint64_t kWarpStream = 4;

Digits slice(const Digits& d, std::int64_t begin, std::int64_t count) {
  return {d.images.narrow(0, begin, count), d.labels.narrow(0, begin, count)};
}

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

const char* to_string(DataKind kind) { return kind == DataKind::kIdx ? "idx" : "scenes"; }
const char* to_string(SceneKind kind) { return kind == SceneKind::kTranslated ? "translated" : "cluttered"; }

SceneKind parse_scene_kind(const std::string& name) {
  if (name == "translated") return SceneKind::kTranslated;
  if (name == "cluttered") return SceneKind::kCluttered;
  TORCH_CHECK(false, "unknown scene kind '", name, "' (expected translated or cluttered)");
}

void DataSpec::validate() const {
  if (kind_ == DataKind::kIdx) {
    TORCH_CHECK(!dir_.empty(), "data: an IDX folder is required");
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
  } else {
    j = {{"kind", "scenes"},
         {"scenes", to_string(scenes_)},
         {"source", source_},
         {"canvas", canvas_},
         {"fragments", scenes_ == SceneKind::kCluttered ? fragments_ : 0},
         {"fragment_size", fragment_size_},
         {"seed", seed_}};
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
  } else {
    TORCH_CHECK(false, "data description: unknown kind '", kind, "' (expected idx or scenes)");
  }
  s.shift(get_or<std::int64_t>(j, "shift", 0))
      .rotate(get_or<double>(j, "rotate", 0.0))
      .scale_jitter(get_or<double>(j, "scale_jitter", 0.0))
      .seed(get_or<std::uint64_t>(j, "seed", 1));
  s.validate();
  return s;
}

TrainingSources DataSpec::training_sources(std::int64_t validation_count) const {
  validate();
  const bool idx = kind_ == DataKind::kIdx;
  auto digits = load_split(idx ? dir_ : source_, "train");
  TORCH_CHECK(validation_count >= 0 && validation_count < digits.size(),
              "validation count must be between 0 and ", digits.size() - 1, " (the training split has ",
              digits.size(), " items), got ", validation_count);
  const auto n_train = digits.size() - validation_count;
  TrainingSources s;
  if (idx) {
    auto all = std::make_shared<const DigitsSource>(digits);
    s.train = std::make_shared<SubsetSource>(all, 0, n_train);
    if (validation_count > 0) s.validation = std::make_shared<SubsetSource>(all, n_train, validation_count);
  } else {
    s.train = scene_source(*this, slice(digits, 0, n_train), kTrainStream, SceneMode::kFreshEachEpoch);
    if (validation_count > 0) {
      s.validation = scene_source(*this, slice(digits, n_train, validation_count), kValidationStream,
                                  SceneMode::kFixed);
    }
  }
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

std::shared_ptr<const ImageSource> DataSpec::evaluation_source(const std::string& split) const {
  validate();
  TORCH_CHECK(split == "train" || split == "test", "unknown split '", split, "' (expected train or test)");
  if (kind_ == DataKind::kIdx) return std::make_shared<const DigitsSource>(load_split(dir_, split));
  return std::make_shared<SceneSource>(scene_generator(split), SceneMode::kFixed);
}

std::shared_ptr<const SceneGenerator> DataSpec::scene_generator(const std::string& split) const {
  validate();
  TORCH_CHECK(kind_ == DataKind::kScenes, "scene_generator: the data are an IDX folder, not generated scenes");
  TORCH_CHECK(split == "train" || split == "test", "unknown split '", split, "' (expected train or test)");
  return make_generator(*this, load_split(source_, split), split == "train" ? kTrainStream : kTestStream);
}

}  // namespace attend::datasets
