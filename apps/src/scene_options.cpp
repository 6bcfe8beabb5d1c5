#include "scene_options.h"

#include "validate.h"

#include <torch/torch.h>

#include <cmath>
#include <sstream>

namespace attend::cli {

namespace ds = attend::datasets;

namespace {

template <typename E>
E require_enum_name(const po::variables_map& vm, const std::string& name, std::initializer_list<const char*> choices,
                    E (*parse)(const std::string&)) {
  return parse(require_one_of(vm, name, choices));
}

}  // namespace

po::options_description object_scene_options() {
  po::options_description objects("Object scenes", 100);
  objects.add_options()
      ("level", po::value<std::int64_t>()->value_name("L"),
       "caption level: 1 one object and its place, 2 two objects and their relation, 3 three objects in "
       "reading order (sets --objects)")
      ("objects", po::value<std::string>()->value_name("A[-B]"), "objects per scene, fixed or a range (default 2)")
      ("items", po::value<std::string>()->default_value("digits")->value_name("I"),
       "digits (from --source), fashion (from --fashion) or both (20 classes)")
      ("fashion", po::value<std::string>()->default_value("data/fashion-mnist")->value_name("DIR"),
       "folder with Fashion-MNIST IDX files")
      ("size", po::value<std::string>()->default_value("0.35,0.5")->value_name("A,B"),
       "side of an item's 28x28 frame as a fraction of the canvas, drawn per object")
      ("jitter", po::value<double>()->default_value(0.8, "0.8")->value_name("J"),
       "offset of an object from its grid cell's centre, as a fraction of half a cell")
      ("max-overlap", po::value<double>()->default_value(0.0)->value_name("F"),
       "largest overlap of two tight boxes as a fraction of the smaller one (0 = none)")
      ("repeat-classes", po::bool_switch(), "allow two objects of the same class in a scene")
      ("colour", po::bool_switch(), "RGB scenes, each object and fragment tinted with a random hue")
      ("background", po::value<std::string>()->default_value("black")->value_name("B"),
       "black, noise (smooth) or clutter (low-contrast fragments of other items)")
      ("background-level", po::value<std::int64_t>()->default_value(96)->value_name("V"),
       "brightest noise or clutter value, 0..255")
      ("mask-threshold", po::value<std::int64_t>()->default_value(48)->value_name("T"),
       "an object's pixel is in its mask when its resized value is above T")
      ("relation-margin", po::value<double>()->default_value(0.0)->value_name("P"),
       "pixels by which a relation must be clear (0 = canvas/10)")
      ("hold-out", po::value<std::string>()->value_name("LIST"),
       "comma-separated triples never shown in training, e.g. '3 left of 7,1 above 2'");
  return objects;
}

ds::ObjectSceneOptions parse_object_scene_options(const po::variables_map& vm) {
  auto options = ds::ObjectSceneOptions();
  if (vm.count("canvas")) options.canvas(require_range<std::int64_t>(vm, "canvas", 32, 1024));
  if (vm.count("level") && vm.count("objects")) throw UsageError("give --level or --objects, not both");
  if (vm.count("level")) {
    const auto level = require_range<std::int64_t>(vm, "level", 1, 3);
    options.objects_min(level).objects_max(level);
  }
  if (vm.count("objects")) {
    const auto text = vm["objects"].as<std::string>();
    const auto dash = text.find('-');
    std::vector<std::int64_t> range;
    try {
      if (dash != std::string::npos && (dash == 0 || dash + 1 == text.size())) throw UsageError("");
      range = parse_int_list(dash == std::string::npos ? text : text.substr(0, dash) + "," + text.substr(dash + 1),
                             "objects");
    } catch (const UsageError&) {
      throw UsageError("--objects must be a count or a range like 1-4, got '" + text + "'");
    }
    if (range.size() == 1) range.push_back(range[0]);
    if (range.size() != 2 || range[0] < 1 || range[1] > 9 || range[0] > range[1]) {
      throw UsageError("--objects must be a count or a range within 1..9, got '" + text + "'");
    }
    options.objects_min(range[0]).objects_max(range[1]);
  }
  options.items(require_enum_name(vm, "items", {"digits", "fashion", "both"}, ds::parse_object_items));
  const auto size_text = vm["size"].as<std::string>();
  const auto comma = size_text.find(',');
  try {
    // Each side must be a whole number text: "0.3x" or a third value is refused.
    auto number = [](const std::string& text) {
      size_t used = 0;
      const double v = std::stod(text, &used);
      if (used != text.size()) throw std::invalid_argument(text);
      return v;
    };
    const double lo = number(size_text.substr(0, comma));
    const double hi = comma == std::string::npos ? lo : number(size_text.substr(comma + 1));
    if (!std::isfinite(lo) || !std::isfinite(hi) || lo < 0.1 || hi > 1.0 || lo > hi) throw std::out_of_range("size");
    options.size_min(lo).size_max(hi);
  } catch (const std::exception&) {
    throw UsageError("--size must be a fraction or a range A,B within 0.1..1 of the canvas, got '" + size_text + "'");
  }
  options.jitter(require_range<double>(vm, "jitter", 0.0, 1.0))
      .max_overlap(require_range<double>(vm, "max-overlap", 0.0, 1.0))
      .distinct_classes(!vm["repeat-classes"].as<bool>())
      .colour(vm["colour"].as<bool>())
      .background(require_enum_name(vm, "background", {"black", "noise", "clutter"}, ds::parse_object_background))
      .background_level(require_range<std::int64_t>(vm, "background-level", 0, 255))
      .mask_threshold(require_range<std::int64_t>(vm, "mask-threshold", 0, 254))
      .relation_margin(require_range<double>(vm, "relation-margin", 0.0, static_cast<double>(options.canvas()) / 2));
  if (vm.count("fragments")) options.fragments(require_range<std::int64_t>(vm, "fragments", 0, 100));
  if (vm.count("fragment-size")) options.fragment_size(require_range<std::int64_t>(vm, "fragment-size", 2, 28));
  if (vm.count("hold-out")) {
    std::vector<ds::RelationTriple> held;
    std::stringstream list(vm["hold-out"].as<std::string>());
    for (std::string item; std::getline(list, item, ',');) {
      try {
        held.push_back(ds::RelationTriple::parse(item));
      } catch (const c10::Error& e) {
        throw UsageError("--hold-out: " + std::string(e.what_without_backtrace()));
      }
    }
    options.held_out(held);
  }
  try {
    options.validate();
  } catch (const c10::Error& e) {
    throw UsageError(std::string(e.what_without_backtrace()));
  }
  // Options that would be accepted and then do nothing are refused.
  const bool pairs = options.objects_min() <= 2 && options.objects_max() >= 2;
  for (const char* flag : {"hold-out", "relation-margin"}) {
    if (vm.count(flag) && !vm[flag].defaulted() && !pairs) {
      throw UsageError(std::string("--") + flag + " applies to two-object scenes, and these have " +
                       std::to_string(options.objects_min()) + "-" + std::to_string(options.objects_max()) +
                       " objects");
    }
  }
  if (!vm["background-level"].defaulted() && options.background() == ds::ObjectBackground::kBlack) {
    throw UsageError("--background-level applies to --background noise or clutter");
  }
  for (const char* flag : {"fragments", "fragment-size"}) {
    if (vm.count(flag) && options.background() != ds::ObjectBackground::kClutter) {
      throw UsageError(std::string("--") + flag + " applies to --background clutter");
    }
  }
  return options;
}

}  // namespace attend::cli
