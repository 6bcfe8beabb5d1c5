#include "caption_data.h"

#include "scene_options.h"
#include "validate.h"

#include <attend/io_error.h>

#include <torch/torch.h>

#include <filesystem>
#include <ostream>
#include <thread>

namespace attend::cli {

namespace ds = attend::datasets;
namespace fs = std::filesystem;

std::vector<po::options_description> caption_data_options() {
  po::options_description d("Data (a caption file in Karpathy's layout, or object scenes generated on the fly)", 100);
  d.add_options()
      ("data", po::value<std::string>()->value_name("FILE"),
       "caption file (dataset_coco.json layout; e.g. the dataset_objects.json of 'attend data objects')")
      ("images", po::value<std::string>()->value_name("DIR"), "folder the file's image paths are relative to "
       "(default: the file's folder)")
      ("image-size", po::value<std::string>()->value_name("S|WxH"),
       "size images are resized to (default: the first training image's)")
      ("channels", po::value<std::int64_t>()->value_name("C"),
       "1 (grey) or 3 (colour); other images are converted (default: the first training image's)")
      ("scenes", po::value<std::string>()->value_name("KIND"), "objects: scenes generated on the fly (fresh every "
       "epoch for training; fixed validation and test scenes)")
      ("source", po::value<std::string>()->default_value("data/mnist")->value_name("DIR"),
       "digits the scenes are made of")
      ("canvas", po::value<std::int64_t>()->default_value(64)->value_name("S"), "scene side in pixels")
      ("fragments", po::value<std::int64_t>()->value_name("K"), "clutter fragments (--background clutter; default 8)")
      ("fragment-size", po::value<std::int64_t>()->value_name("F"),
       "fragment side in pixels of the 28x28 item (default 10)")
      ("count", po::value<std::int64_t>()->default_value(5000)->value_name("N"), "training scenes per epoch")
      ("val-count", po::value<std::int64_t>()->value_name("N"), "validation scenes (default 500; 0 = none)")
      ("test-count", po::value<std::int64_t>()->value_name("N"), "test scenes (default 500)");
  return {d, object_scene_options()};
}

namespace {

ds::CaptionImageShape parse_size(const std::string& text, ds::CaptionImageShape shape) {
  const auto x = text.find('x');
  try {
    size_t used = 0;
    if (x == std::string::npos) {
      const auto s = std::stoll(text, &used);
      if (used != text.size()) throw std::invalid_argument(text);
      shape.width = shape.height = s;
    } else {
      shape.width = std::stoll(text.substr(0, x), &used);
      if (used != x) throw std::invalid_argument(text);
      shape.height = std::stoll(text.substr(x + 1), &used);
      if (used != text.size() - x - 1) throw std::invalid_argument(text);
    }
  } catch (const std::exception&) {
    throw UsageError("--image-size must be a side S or WxH in pixels, got '" + text + "'");
  }
  if (shape.width < 8 || shape.height < 8 || shape.width > 4096 || shape.height > 4096) {
    throw UsageError("--image-size must be within 8..4096 pixels a side, got '" + text + "'");
  }
  return shape;
}

}  // namespace

nlohmann::json caption_data_description(const po::variables_map& vm, std::uint64_t seed) {
  const bool file = vm.count("data") > 0, scenes = vm.count("scenes") > 0;
  if (file == scenes) throw UsageError("give exactly one of --data FILE (a caption file) or --scenes objects");
  if (file) {
    for (const char* flag : {"level", "objects", "size", "jitter", "max-overlap", "repeat-classes", "colour",
                             "background", "background-level", "mask-threshold", "relation-margin", "hold-out",
                             "items", "fashion", "source", "canvas", "fragments", "fragment-size", "count",
                             "val-count", "test-count"}) {
      if (vm.count(flag) && !vm[flag].defaulted()) {
        throw UsageError(std::string("--") + flag + " applies to --scenes objects, not to a caption file");
      }
    }
    const auto json_path = vm["data"].as<std::string>();
    const auto images = vm.count("images") ? vm["images"].as<std::string>() : std::string();
    // Read without checking every file: the first training image gives the size.
    const auto set = ds::read_caption_set(json_path, images, ds::CaptionReadOptions().check_files(false));
    auto train = set.split("train");
    if (train.empty()) throw IoError(json_path, "has no 'train' (or 'restval') images");
    ds::CaptionImageShape shape = ds::probe_caption_image(*train.front());
    if (vm.count("image-size")) shape = parse_size(vm["image-size"].as<std::string>(), shape);
    if (vm.count("channels")) {
      shape.channels = require_range<std::int64_t>(vm, "channels", 1, 3);
      if (shape.channels == 2) throw UsageError("--channels must be 1 or 3, got 2");
    }
    return {{"kind", "captions"},
            {"dataset", fs::absolute(json_path).lexically_normal().string()},
            {"images", set.image_root.empty() ? "" : fs::absolute(set.image_root).lexically_normal().string()},
            {"channels", shape.channels},
            {"height", shape.height},
            {"width", shape.width}};
  }
  for (const char* flag : {"images", "image-size", "channels"}) {
    if (vm.count(flag)) throw UsageError(std::string("--") + flag + " applies to a caption file (--data)");
  }
  require_one_of(vm, "scenes", {"objects"});
  const auto options = parse_object_scene_options(vm);
  const auto count = require_range<std::int64_t>(vm, "count", 1, 10'000'000);
  const auto val = vm.count("val-count") ? require_range<std::int64_t>(vm, "val-count", 0, 1'000'000) : 500;
  const auto test = vm.count("test-count") ? require_range<std::int64_t>(vm, "test-count", 1, 1'000'000) : 500;
  return {{"kind", "objects"},
          {"options", options.to_json()},
          {"seed", seed},
          // Absolute, so 'attend eval <checkpoint>' finds them from any folder.
          {"sources",
           {{"digits", fs::absolute(vm["source"].as<std::string>()).lexically_normal().string()},
            {"fashion", fs::absolute(vm["fashion"].as<std::string>()).lexically_normal().string()}}},
          {"counts", {{"train", count}, {"val", val}, {"test", test}}}};
}

CaptionData open_caption_data(const nlohmann::json& d, bool train, bool val, bool test, int threads,
                              std::ostream& notes, std::int64_t max_words) {
  CaptionData out;
  std::string kind;
  try {
    kind = d.at("kind").get<std::string>();
    if (kind == "objects") {
      const auto options = ds::ObjectSceneOptions::from_json(d.at("options"));
      ds::ObjectSources sources;
      sources.digits_dir = d.at("sources").at("digits").get<std::string>();
      sources.fashion_dir = d.at("sources").at("fashion").get<std::string>();
      const auto& counts = d.at("counts");
      auto generator =
          std::make_shared<const ds::ObjectSceneGenerator>(options, d.at("seed").get<std::uint64_t>(), sources);
      // The layouts must be possible: the first scene of each split says so now.
      try {
        generator->generate(ds::ObjectSplit::kTrain, 0);
      } catch (const c10::Error& e) {
        throw UsageError(e.what_without_backtrace());
      }
      if (train) {
        out.train = std::make_unique<ds::SceneCaptionSource>(generator, ds::ObjectSplit::kTrain,
                                                             counts.at("train").get<std::int64_t>());
      }
      if (val && counts.at("val").get<std::int64_t>() > 0) {
        out.val = std::make_unique<ds::SceneCaptionSource>(generator, ds::ObjectSplit::kVal,
                                                           counts.at("val").get<std::int64_t>());
      }
      if (test) {
        out.test = std::make_unique<ds::SceneCaptionSource>(generator, ds::ObjectSplit::kTest,
                                                            counts.at("test").get<std::int64_t>());
      }
      out.vocabulary_text = {ds::object_caption_words(options.items())};
      return out;
    }
    if (kind != "captions") throw UsageError("unknown caption data kind '" + kind + "'");
    const auto json_path = d.at("dataset").get<std::string>();
    const auto set = ds::read_caption_set(json_path, d.at("images").get<std::string>());
    ds::CaptionImageShape shape;
    shape.channels = d.at("channels").get<std::int64_t>();
    shape.height = d.at("height").get<std::int64_t>();
    shape.width = d.at("width").get<std::int64_t>();
    std::int64_t converted = 0, resized = 0;
    auto open = [&](const std::string& split) {
      auto source = std::make_unique<ds::FileCaptionSource>(set, split, shape, threads);
      converted += source->converted();
      resized += source->resized();
      return source;
    };
    if (train) {
      out.train = open("train");
      for (const auto* image : set.split("train")) {
        for (const auto& s : image->sentences) {
          out.vocabulary_text.push_back(s.tokens);
          if (static_cast<std::int64_t>(s.tokens.size()) > max_words) ++out.over_long;
        }
      }
    }
    if (val && !set.split("val").empty()) out.val = open("val");
    if (test) {
      if (set.split("test").empty()) throw IoError(json_path, "has no 'test' images");
      out.test = open("test");
    }
    const char* colour = shape.channels == 1 ? "grey" : "colour";
    if (converted > 0) {
      notes << "attend: note: " << converted << " image" << (converted == 1 ? "" : "s") << " converted to "
            << colour << " for a " << colour << " model\n";
    }
    if (resized > 0) {
      notes << "attend: note: " << resized << " image" << (resized == 1 ? "" : "s") << " resized to "
            << shape.width << "x" << shape.height << "\n";
    }
    return out;
  } catch (const nlohmann::json::exception& e) {
    throw UsageError(std::string("invalid caption data description: ") + e.what());
  } catch (const c10::Error& e) {
    throw UsageError(e.what_without_backtrace());
  }
}

std::string describe_caption_data(const nlohmann::json& d) {
  try {
    if (d.at("kind") == "objects") {
      const auto o = ds::ObjectSceneOptions::from_json(d.at("options"));
      const auto& c = d.at("counts");
      std::string objects = o.objects_min() == o.objects_max()
                                ? std::to_string(o.objects_min())
                                : std::to_string(o.objects_min()) + "-" + std::to_string(o.objects_max());
      return "object scenes (" + objects + " " + ds::to_string(o.items()) + " per scene, " +
             std::to_string(o.canvas()) + "x" + std::to_string(o.canvas()) + (o.colour() ? " colour" : " grey") +
             ", " + ds::to_string(o.background()) + "): " + std::to_string(c.at("train").get<std::int64_t>()) +
             " train, " + std::to_string(c.at("val").get<std::int64_t>()) + " val, " +
             std::to_string(c.at("test").get<std::int64_t>()) + " test";
    }
    return d.at("dataset").get<std::string>() + " (" + std::to_string(d.at("width").get<std::int64_t>()) + "x" +
           std::to_string(d.at("height").get<std::int64_t>()) +
           (d.at("channels").get<std::int64_t>() == 1 ? " grey)" : " colour)");
  } catch (const std::exception&) {
    return d.dump();
  }
}

}  // namespace attend::cli
