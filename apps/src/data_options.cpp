#include "data_options.h"

#include "scene_options.h"
#include "validate.h"

#include <torch/torch.h>

#include <attend/datasets/idx.h>

#include <algorithm>
#include <filesystem>

namespace attend::cli {

namespace ds = attend::datasets;

po::options_description data_source_options() {
  po::options_description d("Data (an IDX folder, or scenes generated on the fly)", 100);
  d.add_options()
      ("data", po::value<std::string>()->value_name("DIR"),
       "folder with train-/t10k- IDX images and labels (e.g. data/mnist or the output of 'attend data')")
      ("scenes", po::value<std::string>()->value_name("KIND"),
       "generate translated or cluttered scenes from --source, fresh positions every epoch; or objects: "
       "object scenes with image-level labels (which classes are present; train only, see 'Object scenes')")
      ("source", po::value<std::string>()->default_value("data/mnist")->value_name("DIR"),
       "digits the scenes are made of")
      ("canvas", po::value<std::int64_t>()->value_name("S"), "scene side in pixels (default 60; objects 64)")
      ("fragments", po::value<std::int64_t>()->value_name("K"),
       "clutter fragments (cluttered: default 4; objects with --background clutter: 8)")
      ("fragment-size", po::value<std::int64_t>()->value_name("F"), "fragment side in pixels (default 8; objects 10)");
  return d;
}

po::options_description augmentation_options() {
  po::options_description d("Training data (augmentation and validation)", 100);
  d.add_options()
      ("shift", po::value<std::int64_t>()->default_value(0)->value_name("P"),
       "translate every training image by up to P pixels, drawn afresh each epoch (augmentation)")
      ("rotate", po::value<double>()->default_value(0.0)->value_name("DEG"),
       "rotate every training image by up to DEG degrees about its centre, drawn each epoch")
      ("scale-jitter", po::value<double>()->default_value(0.0)->value_name("F"),
       "scale every training image by a factor in [1-F, 1+F], drawn each epoch")
      ("val-split", po::value<std::string>()->default_value("stratified")->value_name("S"),
       "which training items --val-count holds out: stratified (a seeded subset with every class in "
       "proportion; indices in <run-dir>/validation.json) or last (the file's last items)");
  return d;
}

po::options_description object_count_options() {
  po::options_description d("Object scene counts (--scenes objects)", 100);
  d.add_options()
      ("count", po::value<std::int64_t>()->value_name("N"), "training scenes per epoch, drawn afresh (default 8000)")
      ("test-count", po::value<std::int64_t>()->value_name("N"), "test scenes (default 500)");
  return d;
}

ds::DataSpec data_spec(const po::variables_map& vm, std::uint64_t seed) {
  const bool idx = vm.count("data") > 0, scenes = vm.count("scenes") > 0;
  if (idx == scenes) throw UsageError("give exactly one of --data DIR or --scenes translated|cluttered|objects");
  auto spec = ds::DataSpec().seed(seed);
  if (vm.count("val-split")) {
    spec.validation(ds::parse_validation_split(require_one_of(vm, "val-split", {"stratified", "last"})));
  }
  if (vm.count("shift")) spec.shift(require_range<std::int64_t>(vm, "shift", 0, 4096));
  if (vm.count("rotate")) spec.rotate(require_range<double>(vm, "rotate", 0.0, 180.0));
  if (vm.count("scale-jitter")) spec.scale_jitter(require_range<double>(vm, "scale-jitter", 0.0, 0.9));
  const bool objects = scenes && vm["scenes"].as<std::string>() == "objects";
  if (!objects) {
    for (const char* flag : {"count", "test-count", "level", "objects", "items", "size", "jitter", "max-overlap",
                             "repeat-classes", "colour", "background", "background-level", "mask-threshold",
                             "relation-margin", "hold-out", "fashion"}) {
      if (vm.count(flag) && !vm[flag].defaulted()) {
        throw UsageError(std::string("--") + flag + " applies to --scenes objects");
      }
    }
  }
  if (idx) return spec.kind(ds::DataKind::kIdx).dir(vm["data"].as<std::string>());
  if (objects) {
    if (!vm.count("fashion")) throw UsageError("--scenes objects is not available in this command");
    spec.kind(ds::DataKind::kObjects)
        .objects(parse_object_scene_options(vm))
        // Absolute, so 'attend eval' and 'attend saliency' of the checkpoint work from any folder.
        .source(std::filesystem::absolute(vm["source"].as<std::string>()).lexically_normal().string())
        .fashion(std::filesystem::absolute(vm["fashion"].as<std::string>()).lexically_normal().string())
        .count(vm.count("count") ? require_range<std::int64_t>(vm, "count", 1, 100'000'000) : 8000)
        .test_count(vm.count("test-count") ? require_range<std::int64_t>(vm, "test-count", 1, 10'000'000) : 500);
    return spec;
  }
  const auto kind = ds::parse_scene_kind(require_one_of(vm, "scenes", {"translated", "cluttered", "objects"}));
  spec.kind(ds::DataKind::kScenes)
      .scenes(kind)
      .source(vm["source"].as<std::string>())
      .canvas(vm.count("canvas") ? require_range<std::int64_t>(vm, "canvas", 1, 4096) : 60)
      .fragment_size(vm.count("fragment-size") ? require_range<std::int64_t>(vm, "fragment-size", 1, 4096) : 8);
  if (kind == ds::SceneKind::kCluttered) {
    spec.fragments(vm.count("fragments") ? require_range<std::int64_t>(vm, "fragments", 0, 1000) : 4);
  }
  check_scene_geometry(spec.source(), spec.canvas(), spec.fragment_size());
  return spec;
}

ds::TrainingSources training_sources(const ds::DataSpec& spec, std::int64_t val_count, std::int64_t classes) {
  try {
    return spec.training_sources(val_count, classes);
  } catch (const c10::Error& e) {
    // Argument errors found once the data's size is known: the held-out count, the
    // shift, and scene sizes the digits do not fit.
    const std::string what = e.what_without_backtrace();
    if (what.rfind("validation count", 0) == 0) throw UsageError("--val-count: " + what);
    if (what.rfind("shift", 0) == 0) throw UsageError("--" + what);
    throw UsageError(what);
  }
}

void check_scene_geometry(const std::string& source, std::int64_t canvas, std::int64_t fragment_size) {
  const auto header = ds::read_idx_header(ds::find_split(source, "train").images);
  if (header.dims.size() < 3) return;  // load_digits names the file and its rank
  const auto side = std::max(header.dims[1], header.dims[2]);
  const auto narrow = std::min(header.dims[1], header.dims[2]);
  if (canvas < side || canvas > 4096) {
    throw UsageError("--canvas must be between " + std::to_string(side) + " (the side of the digits in " + source +
                     ") and 4096, got " + std::to_string(canvas));
  }
  if (fragment_size < 1 || fragment_size > narrow) {
    throw UsageError("--fragment-size must be between 1 and " + std::to_string(narrow) + " (the side of the digits in " +
                     source + "), got " + std::to_string(fragment_size));
  }
}

}  // namespace attend::cli
