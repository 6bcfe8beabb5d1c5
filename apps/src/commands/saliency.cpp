// attend saliency <model> <image|video|folder>...: CAM and the Grad-CAM family over
// our checkpoints and users' TorchScript files, drawn over images and videos; with
// --benchmark the cost of each method, with --metrics how faithful each map is.
#include "../cli.h"
#include "../image_files.h"
#include "../interrupt.h"
#include "../report.h"
#include "../validate.h"
#include "saliency_run.h"

#include <attend/io_error.h>
#include <attend/models/caption_model.h>
#include <attend/models/checkpoint.h>
#include <attend/models/registry.h>
#include <attend/models/saliency.h>
#include <attend/models/scripted_model.h>
#include <attend/vision/image_io.h>
#include <attend/vision/npy.h>
#include <attend/vision/saliency_render.h>
#include <attend/vision/video.h>

#include <torch/torch.h>

#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <sstream>

namespace attend::cli {
namespace {

namespace am = attend::models;
namespace fs = std::filesystem;
namespace vi = attend::vision;

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream ss(text);
  for (std::string item; std::getline(ss, item, ',');) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

/// "224x224" or "224".
std::pair<std::int64_t, std::int64_t> parse_hw(const std::string& text, const std::string& flag) {
  const auto x = text.find('x');
  try {
    size_t used = 0;
    const auto h = std::stoll(text.substr(0, x), &used);
    if (used != text.substr(0, x).size()) throw std::invalid_argument(text);
    auto w = h;
    if (x != std::string::npos) {
      const auto rest = text.substr(x + 1);
      w = std::stoll(rest, &used);
      if (used != rest.size()) throw std::invalid_argument(text);
    }
    if (h < 8 || w < 8 || h > 4096 || w > 4096) throw std::out_of_range(text);
    return {h, w};
  } catch (const std::exception&) {
    throw UsageError("--" + flag + " must be HxW (or one side for a square) within 8..4096, got '" + text + "'");
  }
}

class SaliencyCommand : public Command {
 public:
  std::string name() const override { return "saliency"; }
  std::string summary() const override {
    return "saliency maps (CAM, Grad-CAM family) of a checkpoint or TorchScript model over images, folders and videos";
  }
  std::string usage() const override {
    return "attend saliency <checkpoint|model.pt> <image|folder|video>... --out DIR [--method M,...] [options]";
  }
  std::string description() const override {
    return "Methods: " + am::enum_choices<am::SaliencyMethod>() +
           " (or all). Maps are post-processed as pytorch-grad-cam does (ReLU, min-max per map,\n"
           "bilinear resize); --npy also writes them as float32 .npy files, with the raw low-resolution map.\n"
           "\n"
           "Models: an attend checkpoint of a kind with a feature map (cam, cnn); a captioner checkpoint,\n"
           "whose encoder blocks are the layers and whose classes are the vocabulary's words, each scored by\n"
           "its largest logit along the model's own greedy caption (--class WORD, or --top-k K for the K\n"
           "best-scored words); or a TorchScript file exported from Python in one of two forms:\n"
           "  (a) forward is a chain of named children (nn.Sequential, or torchvision's ResNet/VGG whose\n"
           "      flatten before the last Linear is implied); the target is a child's name (--layer layer4):\n"
           "        torch.jit.script(torchvision.models.resnet18(weights=...).eval()).save('resnet18.pt')\n"
           "  (b) the module exports a method returning (logits, activation_1, ..., activation_n); give its\n"
           "      name with --script-method and the activation's 1-based index with --layer:\n"
           "        @torch.jit.export\n"
           "        def forward_with_activations(self, x): ... return logits, a3, a4\n"
           "At load the split is checked to reproduce forward on a probe input. TorchScript models take\n"
           "--input-size (default 224x224), --mean/--std (e.g. ImageNet's 0.485,0.456,0.406 and\n"
           "0.229,0.224,0.225) and --model-colours (rgb, as torchvision expects; OpenCV files are read as\n"
           "BGR and converted).\n";
  }
  std::vector<std::string> examples() const override {
    return {"attend saliency out/cam/best.pt scenes/images --out out/saliency --method gradcam,scorecam --top-k 2",
            "attend saliency resnet18.pt photo.jpg --out out/sal --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225",
            "attend saliency out/cam/best.pt clip.avi --out out/sal --method gradcam --normalise running --smooth 0.6",
            "attend saliency out/cam/best.pt --metrics --count 200 --method all",
            "attend saliency resnet18.pt photo.jpg --benchmark --method gradcam,gradcam++,scorecam"};
  }
  std::vector<po::options_description> options() override {
    po::options_description what("Saliency", 100);
    what.add_options()
        ("model", po::value<std::string>()->value_name("FILE"), "attend checkpoint or TorchScript file (positional)")
        ("inputs", po::value<std::vector<std::string>>()->value_name("PATH"),
         "images, folders of images, or videos (positional)")
        ("out", po::value<std::string>()->value_name("DIR"), "folder for overlays, videos, .npy and reports")
        ("method", po::value<std::string>()->default_value("gradcam")->value_name("LIST"),
         "comma-separated methods, or all")
        ("layer", po::value<std::string>()->value_name("LIST"),
         "target layers (several are fused; default: the last feature map)")
        ("class", po::value<std::string>()->value_name("N|NAME"),
         "explain the class named NAME (a captioner: a word), or class N (default: the top class)")
        ("top-k", po::value<std::int64_t>()->value_name("K"),
         "explain each image's K best classes (videos: the best one per frame)")
        ("aug-smooth", po::bool_switch(), "average over flips and x0.9/x1.1 of the input (6 passes)")
        ("score-batch", po::value<std::int64_t>()->default_value(8)->value_name("N"),
         "scorecam: masked inputs per forward pass")
        ("batch", po::value<std::int64_t>()->default_value(8)->value_name("N"), "images or frames per batch");
    po::options_description look("Rendering", 100);
    look.add_options()
        ("colormap", po::value<std::string>()->default_value("jet")->value_name("NAME"),
         "any OpenCV colormap: jet, turbo, viridis, inferno, ... (a wrong name lists them)")
        ("image-weight", po::value<double>()->default_value(0.5)->value_name("W"), "weight of the image in the blend")
        ("mode", po::value<std::string>()->default_value("blend")->value_name("M"),
         "blend, threshold (colour only where the map >= --threshold) or contour")
        ("threshold", po::value<double>()->default_value(0.5)->value_name("T"), "threshold and contour level")
        ("colour-bar", po::bool_switch(), "add a colour bar from 0 to 1")
        ("grad-cam-compatible", po::bool_switch(),
         "blend exactly as pytorch-grad-cam's show_cam_on_image (rescaled by its maximum)")
        ("npy", po::bool_switch(), "also write each map (input size) and its raw map as float32 .npy");
    po::options_description scripted("TorchScript models", 100);
    scripted.add_options()
        ("script-method", po::value<std::string>()->value_name("NAME"),
         "form (b): the method returning (logits, activations...)")
        ("input-size", po::value<std::string>()->value_name("HxW"), "size images are resized to (default 224x224)")
        ("mean", po::value<std::string>()->value_name("LIST"), "per-channel mean subtracted from [0,1] images")
        ("std", po::value<std::string>()->value_name("LIST"), "per-channel standard deviation divided by")
        ("model-colours", po::value<std::string>()->default_value("rgb")->value_name("ORDER"),
         "channel order the model expects: rgb or bgr")
        ("class-names", po::value<std::string>()->value_name("FILE"), "class names, one per line");
    po::options_description video("Video", 100);
    video.add_options()
        ("normalise", po::value<std::string>()->default_value("frame")->value_name("N"),
         "frame (each map to [0,1]), running (by the largest value so far) or global (by the video's largest; "
         "two passes)")
        ("smooth", po::value<double>()->default_value(0.0)->value_name("A"),
         "temporal smoothing against flicker: map = A * previous + (1 - A) * current (0 = none)")
        ("video-format", po::value<std::string>()->default_value("avi")->value_name("F"),
         "avi (MJPG) or mp4 (mp4v)")
        ("as-video", po::bool_switch(),
         "take all the images given (a folder: its images in name order) as the frames of one video")
        ("fps", po::value<double>()->default_value(10.0)->value_name("F"), "--as-video: frames per second");
    po::options_description measure("Measurement", 100);
    measure.add_options()
        ("benchmark", po::bool_switch(), "print ms per frame of the forward pass and of each method")
        ("repeats", po::value<std::int64_t>()->default_value(10)->value_name("N"), "benchmark repeats (median)")
        ("metrics", po::bool_switch(),
         "deletion/insertion AUC and confidence drop of each method; on object scenes also the pointing game "
         "and mask IoU")
        ("count", po::value<std::int64_t>()->default_value(200)->value_name("N"),
         "--metrics without inputs: test scenes of the checkpoint's object scenes")
        ("json", po::bool_switch(), "--metrics/--benchmark: also print the results as JSON");
    return {what, look, scripted, video, measure};
  }
  po::positional_options_description positionals() const override {
    po::positional_options_description p;
    p.add("model", 1).add("inputs", -1);
    return p;
  }

  int run(const po::variables_map& vm, const GlobalOptions& global, Streams& io) override {
    if (!vm.count("model")) throw UsageError("saliency: missing the model (an attend checkpoint or a TorchScript file)");
    SaliencyRun run;
    run.methods = parse_methods(vm["method"].as<std::string>());
    if (vm.count("layer")) run.layers = split_list(vm["layer"].as<std::string>());
    if (vm.count("class") && vm.count("top-k")) throw UsageError("give --class or --top-k, not both");
    if (vm.count("top-k")) run.top_k = require_range<std::int64_t>(vm, "top-k", 1, 1000);
    run.aug_smooth = vm["aug-smooth"].as<bool>();
    run.score_batch = require_range<std::int64_t>(vm, "score-batch", 1, 4096);
    run.batch = require_range<std::int64_t>(vm, "batch", 1, 1024);
    run.render.colormap(colormap(vm["colormap"].as<std::string>()))
        .image_weight(require_range<double>(vm, "image-weight", 0.0, 1.0))
        .threshold(require_range<double>(vm, "threshold", 0.0, 1.0))
        .colour_bar(vm["colour-bar"].as<bool>())
        .grad_cam_compatible(vm["grad-cam-compatible"].as<bool>());
    const auto mode = require_one_of(vm, "mode", {"blend", "threshold", "contour"});
    run.render.mode(mode == "blend"       ? vi::SaliencyMode::kBlend
                    : mode == "threshold" ? vi::SaliencyMode::kThreshold
                                          : vi::SaliencyMode::kContour);
    run.npy = vm["npy"].as<bool>();
    const auto normalise = require_one_of(vm, "normalise", {"frame", "running", "global"});
    run.normalise = normalise == "frame" ? VideoNormalise::kFrame
                    : normalise == "running" ? VideoNormalise::kRunning
                                             : VideoNormalise::kGlobal;
    run.smooth = require_range<double>(vm, "smooth", 0.0, 0.99);
    run.video_extension = "." + require_one_of(vm, "video-format", {"avi", "mp4"});
    run.fps = require_range<double>(vm, "fps", 0.1, 1000.0);
    const bool as_video = vm["as-video"].as<bool>();
    run.benchmark = vm["benchmark"].as<bool>();
    run.repeats = require_range<std::int64_t>(vm, "repeats", 1, 1000);
    run.metrics = vm["metrics"].as<bool>();
    run.metric_count = require_range<std::int64_t>(vm, "count", 1, 100'000);
    run.json = vm["json"].as<bool>();
    run.seed = global.seed;

    const auto model_path = vm["model"].as<std::string>();
    open_model(run, model_path, vm);

    std::vector<std::string> inputs;
    if (vm.count("inputs")) inputs = vm["inputs"].as<std::vector<std::string>>();
    if (inputs.empty() && !(run.metrics && run.scenes) && !run.benchmark) {
      throw UsageError("saliency: no images, folders or videos given");
    }
    const bool writes = !run.benchmark && !run.metrics;
    if (vm.count("out")) {
      run.out = vm["out"].as<std::string>();
    } else if (writes) {
      throw UsageError("saliency: --out DIR is required (where the overlays go)");
    }
    if (!run.out.empty()) {
      std::error_code ec;
      fs::create_directories(run.out, ec);
      if (ec) throw IoError(run.out, "cannot create output folder: " + ec.message());
      const auto probe = (fs::path(run.out) / ".attend-write-test").string();
      std::ofstream test(probe);
      if (!test) throw IoError(run.out, "output folder is not writable");
      test.close();
      fs::remove(probe, ec);
    }
    // Inputs: videos by extension, folders expanded to their images.
    std::vector<std::string> images, videos;
    std::vector<std::string> not_videos;
    for (const auto& p : inputs) (vi::is_video_file(p) ? videos : not_videos).push_back(p);
    if (!not_videos.empty()) images = image_files(not_videos);

    // An image or video that cannot be read is reported on its own line and the others
    // are still processed; the exit code says that one failed.
    BadInputs bad(io.err);
    // Measuring is all --benchmark and --metrics do; overlays come from a run without them.
    if (run.benchmark) run_benchmark(run, images, io, bad);
    if (run.metrics) run_metrics(run, images, io, bad);
    if (run.benchmark || run.metrics) return bad.exit_code();
    if (as_video && !images.empty()) {
      // The frames' video is named after the folder (or the first image).
      const auto& first = not_videos.front();
      auto name = fs::path(first).filename().string();
      if (name.empty()) name = fs::path(first).parent_path().filename().string();
      if (!fs::is_directory(first)) name = fs::path(first).stem().string();
      InterruptScope interrupt;
      if (!run_video(run, name, io, interrupt.flag(), bad, images)) {
        throw Interrupted("saliency: stopped; the partial video is finalised and playable");
      }
      images.clear();
    }
    if (!images.empty()) run_images(run, images, io, bad);
    if (!videos.empty()) {
      InterruptScope interrupt;
      for (const auto& v : videos) {
        bool complete = true;
        try {
          complete = run_video(run, v, io, interrupt.flag(), bad);
        } catch (const IoError& e) {
          if (e.path() != v) throw;  // an output problem stops the command
          bad.report(e);
        }
        if (!complete) throw Interrupted("saliency: stopped; the partial video is finalised and playable");
      }
    }
    return bad.exit_code();
  }

 private:
  static std::vector<am::SaliencyMethod> parse_methods(const std::string& text) {
    std::vector<am::SaliencyMethod> out;
    for (const auto& name : split_list(text)) {
      if (name == "all") {
        for (const auto& n : am::enum_names<am::SaliencyMethod>()) out.push_back(am::parse_enum<am::SaliencyMethod>(n));
        continue;
      }
      try {
        out.push_back(am::parse_enum<am::SaliencyMethod>(name));
      } catch (const c10::Error&) {
        throw UsageError("--method: unknown method '" + name + "' (expected " + am::enum_choices<am::SaliencyMethod>() +
                         ", or all)");
      }
    }
    if (out.empty()) throw UsageError("--method must name at least one method");
    return out;
  }

  static int colormap(const std::string& name) {
    try {
      return vi::colormap_by_name(name);
    } catch (const c10::Error& e) {
      throw UsageError("--colormap: " + std::string(e.what_without_backtrace()));
    }
  }

  static void open_model(SaliencyRun& run, const std::string& path, const po::variables_map& vm) {
    std::error_code ec;
    if (!fs::exists(path, ec)) throw IoError(path, "no such file");
    std::optional<am::CheckpointInfo> info;
    try {
      info = am::read_checkpoint_info(path);
    } catch (const IoError&) {
      // Not an attend checkpoint: a TorchScript file.
    }
    const char* script_only[] = {"script-method", "input-size", "mean", "std", "class-names"};
    if (info) {
      for (const char* flag : script_only) {
        if (vm.count(flag)) throw UsageError(std::string("--") + flag + " applies to TorchScript models");
      }
      if (!vm["model-colours"].defaulted()) throw UsageError("--model-colours applies to TorchScript models");
      const auto& kind = am::model_registry().at(info->model.kind);
      if (kind.capabilities.caption) {
        std::shared_ptr<am::CaptionModel> captioner = am::load_captioner(path);
        run.captioner = true;
        run.model = am::captioner_saliency_model(captioner, "captioner checkpoint " + path);
        run.input_height = captioner->height();
        run.input_width = captioner->width();
        run.channels = captioner->channels();
        run.rgb = true;
      } else if (!kind.capabilities.feature_map) {
        std::string kinds;
        for (const auto& k : am::model_registry().kinds()) {
          if (k.capabilities.feature_map || k.capabilities.caption) kinds += (kinds.empty() ? "" : ", ") + k.name;
        }
        throw UsageError("saliency: a '" + kind.name + "' model has no feature map to explain (kinds that do: " +
                         kinds + "; or a TorchScript file)");
      } else {
        std::shared_ptr<am::Classifier> classifier = am::load_classifier(path);
        run.multi_label = classifier->multi_label();
        std::vector<std::string> names;
        if (info->data.value("kind", "") == "objects") {
          try {
            const auto spec = datasets::DataSpec::from_json(info->data);
            names = datasets::object_words(spec.objects().items());
            run.scenes = std::make_shared<datasets::DataSpec>(spec);
          } catch (const c10::Error& e) {
            throw IoError(path, std::string("stored data description is invalid: ") + e.what_without_backtrace());
          }
        }
        run.model = am::classifier_saliency_model(classifier, classifier->kind() + " checkpoint " + path, names);
        run.input_height = classifier->height();
        run.input_width = classifier->width();
        run.channels = classifier->channels();
        run.rgb = true;
      }
    } else {
      auto options = am::ScriptedModelOptions(path);
      if (vm.count("script-method")) options.method(vm["script-method"].as<std::string>());
      const auto [h, w] = vm.count("input-size") ? parse_hw(vm["input-size"].as<std::string>(), "input-size")
                                                 : std::pair<std::int64_t, std::int64_t>{224, 224};
      options.probe_height(h).probe_width(w);
      if (vm.count("mean")) options.mean(parse_real_list(vm["mean"].as<std::string>(), "mean"));
      if (vm.count("std")) options.std(parse_real_list(vm["std"].as<std::string>(), "std"));
      if (options.mean().size() != options.std().size() && !(options.mean().empty() || options.std().empty())) {
        throw UsageError("--mean and --std must have as many values");
      }
      for (double s : options.std()) {
        if (s <= 0) throw UsageError("--std values must be positive");
      }
      if (!options.mean().empty() && options.std().empty()) options.std(std::vector<double>(options.mean().size(), 1.0));
      if (options.mean().empty() && !options.std().empty()) options.mean(std::vector<double>(options.std().size(), 0.0));
      if (!options.mean().empty() && options.mean().size() != 3 && options.mean().size() != 1) {
        throw UsageError("--mean and --std take one value per channel (3, or 1 for grey models)");
      }
      if (!options.mean().empty()) options.channels(static_cast<std::int64_t>(options.mean().size()));
      if (vm.count("class-names")) {
        const auto file = vm["class-names"].as<std::string>();
        std::ifstream in(file);
        if (!in) throw IoError(file, "cannot read the class names");
        std::vector<std::string> names;
        for (std::string line; std::getline(in, line);) {
          if (!line.empty() && line.back() == '\r') line.pop_back();
          names.push_back(line);
        }
        while (!names.empty() && names.back().empty()) names.pop_back();
        options.class_names(names);
      }
      run.rgb = require_one_of(vm, "model-colours", {"rgb", "bgr"}) == "rgb";
      try {
        run.model = am::open_scripted_model(options);
      } catch (const c10::Error& e) {
        throw IoError(path, first_line(e.what_without_backtrace()));
      }
      run.input_height = h;
      run.input_width = w;
      run.channels = options.channels();
    }
    if (vm.count("class")) run.target_class = resolve_class(run, vm["class"].as<std::string>());
    // Layers and the class index are checked now, before any work.
    const auto valid = run.model->layers();
    for (const auto& l : run.layers) {
      if (std::find(valid.begin(), valid.end(), l) == valid.end()) {
        std::string list;
        for (const auto& v : valid) list += (list.empty() ? "" : ", ") + v;
        throw UsageError("--layer: unknown layer '" + l + "' (" + run.model->describe() + " has " + list + ")");
      }
    }
    run.classes = probe_classes(run);
    if (run.target_class >= run.classes) {
      throw UsageError("--class " + std::to_string(run.target_class) + " is out of range: the model has " +
                       std::to_string(run.classes) + " classes (0.." + std::to_string(run.classes - 1) + ")");
    }
    if (run.top_k > run.classes) {
      throw UsageError("--top-k " + std::to_string(run.top_k) + " is more than the model's " +
                       std::to_string(run.classes) + " classes");
    }
    const auto names = run.model->class_names();
    if (!names.empty() && static_cast<std::int64_t>(names.size()) != run.classes) {
      throw UsageError("--class-names: " + std::to_string(names.size()) + " names for a model of " +
                       std::to_string(run.classes) + " classes");
    }
    for (const auto method : run.methods) {
      if (method != am::SaliencyMethod::kCam) continue;
      const auto layer = run.layers.empty() ? run.model->default_layer() : run.layers.front();
      if (!run.model->cam_weights(layer).defined()) {
        throw UsageError("--method cam needs a head that is global average pooling then one linear layer after '" +
                         layer + "'; " + run.model->describe() + " has none there (use gradcam, its generalisation)");
      }
    }
  }

  static std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

  // --class: an index, or a name of the model's classes.
  static std::int64_t resolve_class(const SaliencyRun& run, const std::string& text) {
    // A class name first (a captioner's words may be digits), then an index.
    const auto names = run.model->class_names();
    const size_t first = run.captioner ? 4 : 0;  // a captioner's special tokens are not words
    for (size_t i = 0; i < names.size(); ++i) {
      if (names[i] != text) continue;
      if (i < first) throw UsageError("--class '" + text + "' is a special token, not a word");
      return static_cast<std::int64_t>(i);
    }
    if (!text.empty() && std::all_of(text.begin(), text.end(), [](unsigned char c) { return std::isdigit(c); })) {
      if (text.size() > 9) throw UsageError("--class " + text + " is out of range");
      const auto index = std::stoll(text);
      if (index < static_cast<std::int64_t>(first)) {
        throw UsageError("--class " + text + " is a special token of the captioner, not a word");
      }
      return index;
    }
    if (names.empty()) {
      throw UsageError("--class '" + text + "': " + run.model->describe() +
                       " has no class names; give an index (or --class-names FILE)");
    }
    std::string list;
    for (size_t i = first; i < names.size() && i < first + 40; ++i) list += (list.empty() ? "" : ", ") + names[i];
    if (names.size() > first + 40) list += ", ...";
    throw UsageError("--class '" + text + "' is not a class of " + run.model->describe() + " (" + list + ")");
  }

  static std::int64_t probe_classes(SaliencyRun& run) {
    const auto probe = torch::zeros({1, run.channels, run.input_height, run.input_width});
    return run.model->logits(run.model->prepare(probe)).size(1);
  }
};

}  // namespace

std::unique_ptr<Command> make_saliency_command() { return std::make_unique<SaliencyCommand>(); }

}  // namespace attend::cli
