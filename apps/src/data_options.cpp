#include "data_options.h"

#include "validate.h"

#include <attend/datasets/digits.h>
#include <attend/datasets/rng.h>

#include <torch/torch.h>

namespace attend::cli {

namespace ds = attend::datasets;

po::options_description data_options() {
  po::options_description d("Data (an IDX folder, or scenes generated on the fly)", 100);
  d.add_options()
      ("data", po::value<std::string>()->value_name("DIR"),
       "folder with train-/t10k- IDX images and labels (e.g. data/mnist or the output of 'attend data')")
      ("scenes", po::value<std::string>()->value_name("KIND"),
       "generate translated or cluttered scenes from --source, fresh positions every epoch")
      ("source", po::value<std::string>()->default_value("data/mnist")->value_name("DIR"),
       "digits the scenes are made of")
      ("canvas", po::value<std::int64_t>()->default_value(60)->value_name("S"), "scene side in pixels")
      ("fragments", po::value<std::int64_t>()->default_value(4)->value_name("K"), "clutter fragments (cluttered)")
      ("fragment-size", po::value<std::int64_t>()->default_value(8)->value_name("F"), "fragment side in pixels")
      ("shift", po::value<std::int64_t>()->default_value(0)->value_name("P"),
       "train: translate every training image by up to P pixels, drawn afresh each epoch (augmentation)")
      ("rotate", po::value<double>()->default_value(0.0)->value_name("DEG"),
       "train: rotate every training image by up to DEG degrees about its centre, drawn each epoch")
      ("scale-jitter", po::value<double>()->default_value(0.0)->value_name("F"),
       "train: scale every training image by a factor in [1-F, 1+F], drawn each epoch");
  return d;
}

nlohmann::json data_spec(const po::variables_map& vm, std::uint64_t seed) {
  const bool idx = vm.count("data") > 0, scenes = vm.count("scenes") > 0;
  if (idx == scenes) throw UsageError("give exactly one of --data DIR or --scenes translated|cluttered");
  const auto shift = vm.count("shift") ? require_range<std::int64_t>(vm, "shift", 0, 4096) : 0;
  const auto rotate = vm.count("rotate") ? require_range<double>(vm, "rotate", 0.0, 180.0) : 0.0;
  const auto scale_jitter = vm.count("scale-jitter") ? require_range<double>(vm, "scale-jitter", 0.0, 0.9) : 0.0;
  auto augment = [&](nlohmann::json spec) {
    if (shift > 0) spec["shift"] = shift;
    if (rotate > 0) spec["rotate"] = rotate;
    if (scale_jitter > 0) spec["scale_jitter"] = scale_jitter;
    if (shift > 0 || rotate > 0 || scale_jitter > 0) spec["seed"] = seed;
    return spec;
  };
  if (idx) return augment({{"kind", "idx"}, {"dir", vm["data"].as<std::string>()}});
  const auto kind = require_one_of(vm, "scenes", {"translated", "cluttered"});
  const auto canvas = require_range<std::int64_t>(vm, "canvas", 1, 4096);
  const auto fragments = kind == "cluttered" ? require_range<std::int64_t>(vm, "fragments", 0, 1000) : 0;
  const auto fragment_size = require_range<std::int64_t>(vm, "fragment-size", 1, 4096);
  return augment({{"kind", "scenes"}, {"scenes", kind},       {"source", vm["source"].as<std::string>()},
                  {"canvas", canvas}, {"fragments", fragments}, {"fragment_size", fragment_size},
                  {"seed", seed}});
}

namespace {

ds::Digits slice(const ds::Digits& d, std::int64_t begin, std::int64_t count) {
  return {d.images.narrow(0, begin, count), d.labels.narrow(0, begin, count)};
}

std::shared_ptr<const ds::ImageSource> scene_source(const nlohmann::json& spec, ds::Digits digits,
                                                    std::uint64_t stream, ds::SceneMode mode) {
  const auto opts = ds::SceneOptions()
                        .canvas(spec.at("canvas").get<std::int64_t>())
                        .fragments(spec.at("fragments").get<std::int64_t>())
                        .fragment_size(spec.at("fragment_size").get<std::int64_t>());
  const auto seed = ds::stream_key(spec.at("seed").get<std::uint64_t>(), stream);
  auto generator = std::make_shared<const ds::SceneGenerator>(std::move(digits), opts, seed);
  return std::make_shared<ds::SceneSource>(generator, mode);
}

}  // namespace

TrainSources training_sources(const nlohmann::json& spec, std::int64_t val_count) {
  const bool idx = spec.at("kind") == "idx";
  auto digits = ds::load_split(spec.at(idx ? "dir" : "source").get<std::string>(), "train");
  if (val_count < 0 || val_count >= digits.size()) {
    throw UsageError("--val-count must be between 0 and " + std::to_string(digits.size() - 1) +
                     " (the training split has " + std::to_string(digits.size()) + " items), got " +
                     std::to_string(val_count));
  }
  const auto n_train = digits.size() - val_count;
  TrainSources s;
  if (idx) {
    auto all = std::make_shared<const ds::DigitsSource>(digits);
    s.train = std::make_shared<ds::SubsetSource>(all, 0, n_train);
    if (val_count > 0) s.validation = std::make_shared<ds::SubsetSource>(all, n_train, val_count);
  } else {
    s.train = scene_source(spec, slice(digits, 0, n_train), 0, ds::SceneMode::kFreshEachEpoch);
    if (val_count > 0) s.validation = scene_source(spec, slice(digits, n_train, val_count), 2, ds::SceneMode::kFixed);
  }
  const auto rotate = spec.value("rotate", 0.0), scale_jitter = spec.value("scale_jitter", 0.0);
  if (rotate > 0 || scale_jitter > 0) {
    s.train = std::make_shared<ds::WarpedSource>(s.train, rotate, scale_jitter,
                                                 ds::stream_key(spec.at("seed").get<std::uint64_t>(), 4));
  }
  if (const auto shift = spec.value("shift", std::int64_t{0}); shift > 0) {
    if (shift >= std::min(s.train->height(), s.train->width())) {
      throw UsageError("--shift must be smaller than the " + std::to_string(s.train->height()) + "x" +
                       std::to_string(s.train->width()) + " images, got " + std::to_string(shift));
    }
    s.train = std::make_shared<ds::ShiftedSource>(
        s.train, shift, ds::stream_key(spec.at("seed").get<std::uint64_t>(), 3));
  }
  return s;
}

std::shared_ptr<const ds::ImageSource> evaluation_source(const nlohmann::json& spec, const std::string& split) {
  const bool idx = spec.at("kind") == "idx";
  auto digits = ds::load_split(spec.at(idx ? "dir" : "source").get<std::string>(), split);
  if (idx) return std::make_shared<const ds::DigitsSource>(std::move(digits));
  // The same stream as `attend data` uses for that split: the test scenes of a run
  // and of `attend data --seed S` are the same scenes.
  return scene_source(spec, std::move(digits), split == "train" ? 0 : 1, ds::SceneMode::kFixed);
}

}  // namespace attend::cli
