// attend eval <checkpoint>: accuracy and confusion matrix on a test set; for
// stochastic kinds (the RAM) one row per mode: the policy mean and M sampled
// trajectories for each M of --samples.
#include "../cam_options.h"
#include "../cli.h"
#include "../data_options.h"
#include "../report.h"
#include "../validate.h"

#include <attend/io_error.h>

#include <attend/models/registry.h>
#include <attend/models/segmentation.h>

#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <iomanip>
#include <optional>
#include <sstream>

namespace attend::cli {
namespace {

namespace am = attend::models;

std::string stochastic_kinds() {
  std::string kinds;
  for (const auto& k : am::model_registry().kinds()) {
    if (k.capabilities.stochastic_eval) kinds += (kinds.empty() ? "" : ", ") + k.name;
  }
  return kinds;
}

/// A confusion matrix [C,C] as rows of counts.
nlohmann::json confusion_rows(const torch::Tensor& confusion) {
  const auto counts = confusion.to(torch::kInt64).contiguous();
  const auto* cell = counts.data_ptr<std::int64_t>();
  nlohmann::json rows = nlohmann::json::array();
  for (std::int64_t t = 0; t < counts.size(0); ++t) {
    rows.push_back(std::vector<std::int64_t>(cell + t * counts.size(1), cell + (t + 1) * counts.size(1)));
  }
  return rows;
}

class EvalCommand : public Command {
 public:
  std::string name() const override { return "eval"; }
  std::string summary() const override {
    return "evaluate a trained model: a classifier's accuracy and confusion matrix, a captioner's caption metrics";
  }
  std::string usage() const override { return "attend eval <checkpoint> [--data DIR | --scenes KIND] [options]"; }
  std::vector<std::string> examples() const override {
    return {"attend eval out/ram-c60/best.pt", "attend eval out/ram-c60/best.pt --json",
            "attend eval out/ram-c60/best.pt --samples 1,10,100",
            "attend eval out/ram-c60/best.pt --modes sampled --samples 50",
            "attend eval out/cnn/best.pt --data out/cluttered-60 --split test",
            "attend eval out/seam/best.pt --masks --curve"};
  }
  std::vector<po::options_description> options() override {
    po::options_description d("Evaluation", 100);
    d.add_options()
        ("checkpoint", po::value<std::string>()->value_name("FILE"), "checkpoint to evaluate (positional)")
        ("split", po::value<std::string>()->default_value("test")->value_name("S"), "train or test")
        ("json", po::bool_switch(), "print the report as JSON")
        ("modes", po::value<std::string>()->default_value("mean,sampled")->value_name("LIST"),
         ("stochastic models (" + stochastic_kinds() + "): rows to report, mean (the policy's mean locations, "
          "starting at the image centre: deterministic) and/or sampled (one row per --samples)").c_str())
        ("samples", po::value<std::string>()->default_value("1,10")->value_name("LIST"),
         "sampled trajectories per image for each sampled row, comma-separated (their class log-probabilities "
         "are averaged; each row drawn from a generator seeded with 0)");
    po::options_description m("Segmentation (cam and seam models on object scenes)", 100);
    m.add_options()
        ("masks", po::bool_switch(),
         "score pseudo-masks (argmax over [alpha, CAMs]) against the scenes' masks: mIoU, per-class IoU, "
         "precision and recall, where the wrong pixels went (the confusion matrix with --json), the same by "
         "the number of objects in a scene, the alpha curve, the equivariance error")
        ("alpha", po::value<double>()->value_name("A"),
         "background score in [0,1] (default: the best of 0.00..0.60 on the validation scenes)")
        ("val-count", po::value<std::int64_t>()->default_value(100)->value_name("N"),
         "validation scenes on which alpha is chosen")
        ("test-count", po::value<std::int64_t>()->value_name("N"), "test scenes (default: the checkpoint's)")
        ("scales", po::value<std::string>()->default_value("0.5,1,1.5,2")->value_name("LIST"),
         "inference scales whose CAMs are summed")
        ("no-flip", po::bool_switch(), "without the horizontally flipped passes")
        ("labels", po::value<std::string>()->default_value("gt")->value_name("L"),
         "mask the CAMs by the true image labels (gt, the SEAM protocol) or the model's predictions (predicted)")
        ("cams", po::value<std::string>()->value_name("S"), kCamsHelp)
        ("dilate", po::value<std::int64_t>()->default_value(0)->value_name("PX"),
         "grow the true masks by PX pixels (thin strokes a stride-8 map cannot reach)")
        ("curve", po::bool_switch(), "print the whole alpha curve");
    return {d, data_source_options(), m};
  }
  po::positional_options_description positionals() const override {
    po::positional_options_description p;
    p.add("checkpoint", 1);
    return p;
  }
  Command& resolve(const std::vector<std::string>& args) override {
    // A captioner's checkpoint is evaluated by the captioners' command.
    if (args.empty() || args.front().rfind("-", 0) == 0) return *this;
    try {
      const auto info = am::read_checkpoint_info(args.front());
      const auto* kind = am::model_registry().find(info.model.kind);
      if (kind != nullptr && kind->capabilities.caption) {
        if (!caption_command_) caption_command_ = make_caption_eval_command();
        return *caption_command_;
      }
    } catch (const std::exception&) {
      // Unreadable: the classifiers' command reports it.
    }
    return *this;
  }
  int run(const po::variables_map& vm, const GlobalOptions& global, Streams& io) override {
    if (!vm.count("checkpoint")) throw UsageError("eval: missing the checkpoint to evaluate");
    const auto path = vm["checkpoint"].as<std::string>();
    const auto split = require_one_of(vm, "split", {"train", "test"});
    EvalModes modes;
    modes.mean = false;
    std::stringstream list(vm["modes"].as<std::string>());
    bool sampled = false;
    for (std::string mode; std::getline(list, mode, ',');) {
      if (mode == "mean") {
        modes.mean = true;
      } else if (mode == "sampled") {
        sampled = true;
      } else {
        throw UsageError("--modes must be a comma-separated list of mean and sampled, got '" +
                         vm["modes"].as<std::string>() + "'");
      }
    }
    if (!modes.mean && !sampled) throw UsageError("--modes must name mean, sampled or both");
    if (!sampled && !vm["samples"].defaulted()) throw UsageError("--samples needs 'sampled' in --modes");
    modes.samples.clear();
    if (sampled) {
      for (const auto m : parse_int_list(vm["samples"].as<std::string>(), "samples")) {
        if (m < 1 || m > 1000) throw UsageError("--samples must be between 1 and 1000 each, got " + format_number(m));
        modes.samples.push_back(m);
      }
    }
    am::CheckpointInfo info;
    auto classifier = am::load_classifier(path, &info);
    if (!am::model_registry().at(classifier->kind()).capabilities.stochastic_eval) {
      for (const char* flag : {"modes", "samples"}) {
        if (!vm[flag].defaulted()) {
          throw UsageError(std::string("--") + flag + " does not apply to a '" + classifier->kind() +
                           "' model: it is deterministic (stochastic kinds: " + stochastic_kinds() + ")");
        }
      }
    }
    // Without data options, evaluate on the test split of the data the model was trained on.
    datasets::DataSpec spec;
    if (vm.count("data") || vm.count("scenes")) {
      spec = data_spec(vm, global.seed);
    } else if (info.data.contains("kind")) {
      try {
        spec = datasets::DataSpec::from_json(info.data);
      } catch (const c10::Error& e) {
        throw IoError(path, std::string("stored data description is invalid: ") + e.what_without_backtrace());
      }
    } else {
      throw UsageError("eval: the checkpoint does not say what it was trained on; give --data or --scenes");
    }
    if (vm["masks"].as<bool>()) return run_masks(vm, *classifier, spec, path, io);
    for (const char* flag : {"alpha", "test-count", "cams"}) {
      if (vm.count(flag)) throw UsageError(std::string("--") + flag + " needs --masks");
    }
    for (const char* flag : {"val-count", "scales", "no-flip", "labels", "dilate", "curve"}) {
      if (!vm[flag].defaulted()) throw UsageError(std::string("--") + flag + " needs --masks");
    }
    const auto source = spec.evaluation_source(split);
    const auto report = evaluation_report(*classifier, *source, path, modes);
    if (vm["json"].as<bool>()) {
      io.out << report.dump(2) << "\n";
    } else {
      print_evaluation(io.out, report);
    }
    return kSuccess;
  }

 private:
  static int run_masks(const po::variables_map& vm, am::Classifier& model, const datasets::DataSpec& spec,
                       const std::string& path, Streams& io) {
    const auto kind = model.kind();
    if (kind != "cam" && kind != "seam") {
      throw UsageError("--masks: a '" + kind + "' model has no class activation maps (cam or seam)");
    }
    if (!spec.multi_label()) {
      throw UsageError("--masks needs object scenes (the checkpoint was trained on other data; give --scenes objects)");
    }
    if (!model.multi_label()) {
      throw UsageError("--masks needs a multi-label model (train cam with object scenes)");
    }
    if (vm["split"].as<std::string>() != "test") throw UsageError("--masks scores the test scenes; drop --split");
    am::SegmentationEvalOptions options;
    const bool by_argmax = am::segments_by_argmax(model);
    if (vm.count("alpha")) {
      const double a = require_finite(vm, "alpha");
      if (a < 0 || a > 1) throw UsageError("--alpha must be in [0,1], got " + format_number(a));
      if (by_argmax) {
        throw UsageError("--alpha: this model was trained with pixel supervision and segments by its own argmax "
                         "over background and classes; it has no background score");
      }
      options.alpha(a);
    }
    const auto scales = parse_real_list(vm["scales"].as<std::string>(), "scales");
    for (double s : scales) {
      if (s <= 0 || s > 4) throw UsageError("--scales must each be in (0,4], got " + format_number(s));
    }
    options.inference(am::CamInference().scales(scales).flip(!vm["no-flip"].as<bool>()));
    options.predicted_labels(require_one_of(vm, "labels", {"gt", "predicted"}) == "predicted");
    options.stage(cam_stage_option(vm, model));
    options.dilate(require_range<std::int64_t>(vm, "dilate", 0, 64));
    const auto val_count = require_range<std::int64_t>(vm, "val-count", 0, 1'000'000);
    if (val_count == 0 && !options.alpha() && !by_argmax) {
      throw UsageError("--val-count 0 needs --alpha (nothing to choose it on)");
    }
    const auto test_count = vm.count("test-count") ? require_range<std::int64_t>(vm, "test-count", 1, 1'000'000)
                                                   : spec.test_count();
    const auto generator = spec.object_generator();
    if (static_cast<std::int64_t>(datasets::object_words(generator->options().items()).size()) != model.classes()) {
      throw UsageError("--masks: the scenes have " +
                       std::to_string(datasets::object_words(generator->options().items()).size()) +
                       " classes, the model " + std::to_string(model.classes()));
    }
    if (generator->channels() != model.channels() || generator->options().canvas() != model.height()) {
      throw UsageError("--masks: the scenes are " + std::to_string(generator->channels()) + "x" +
                       std::to_string(generator->options().canvas()) + " pixels, the model takes " +
                       std::to_string(model.channels()) + "x" + std::to_string(model.height()));
    }
    std::optional<datasets::ObjectLabelSource> val;
    if (val_count > 0) val.emplace(generator, datasets::ObjectSplit::kVal, val_count, false);
    const datasets::ObjectLabelSource test(generator, datasets::ObjectSplit::kTest, test_count, false);
    const auto start = std::chrono::steady_clock::now();
    const auto report = am::evaluate_segmentation(model, val ? &*val : nullptr, test, options);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const auto words = datasets::object_words(generator->options().items());
    nlohmann::json j = {{"checkpoint", path},
                        {"kind", model.kind()},
                        {"val_count", report.val_count},
                        {"test_count", report.test_count},
                        {"alpha", report.by_argmax ? nlohmann::json(nullptr) : nlohmann::json(report.alpha)},
                        {"alpha_chosen_on", report.by_argmax ? "none: the model's own argmax"
                                            : options.alpha() ? "given"
                                                              : "validation"},
                        {"miou", report.test.mean_iou()},
                        {"pixel_accuracy", report.test.pixel_accuracy()},
                        {"equivariance_error", report.equivariance_error},
                        {"cams", am::cam_stage_name(report.stage)},
                        {"labels", options.predicted_labels() ? "predicted" : "gt"},
                        {"scales", scales},
                        {"flip", options.inference().flip()},
                        {"dilate", options.dilate()},
                        {"seconds", seconds}};
    const auto iou = report.test.iou(), precision = report.test.precision(), recall = report.test.recall();
    auto number = [](double v) { return std::isnan(v) ? nlohmann::json(nullptr) : nlohmann::json(v); };
    for (size_t c = 0; c < iou.size(); ++c) {
      j["classes"].push_back({{"name", c == 0 ? std::string("background") : words[c - 1]},
                              {"iou", number(iou[c])},
                              {"precision", number(precision[c])},
                              {"recall", number(recall[c])}});
    }
    // Where the wrong pixels went, over all test scenes and by their number of objects.
    auto errors = [&](const am::SegmentationScores& scores) {
      return nlohmann::json{{"object_as_background", number(scores.object_as_background())},
                            {"object_as_other_object", number(scores.object_as_other_object())},
                            {"background_as_object", number(scores.background_as_object())}};
    };
    j["confusion"] = confusion_rows(report.test.confusion());
    j["errors"] = errors(report.test);
    j["by_objects"] = nlohmann::json::array();
    for (const auto& [objects, scores] : report.test_by_objects) {
      j["by_objects"].push_back({{"objects", objects},
                                 {"scenes", report.scenes_by_objects.at(objects)},
                                 {"miou", number(scores.mean_iou())},
                                 {"pixel_accuracy", number(scores.pixel_accuracy())},
                                 {"errors", errors(scores)},
                                 {"confusion", confusion_rows(scores.confusion())}});
    }
    if (report.by_argmax) j["curve"] = nlohmann::json::array();
    for (size_t a = 0; a < report.alphas.size(); ++a) {
      nlohmann::json row = {{"alpha", report.alphas[a]}, {"test_miou", number(report.test_miou[a])}};
      if (!report.val_miou.empty()) row["val_miou"] = number(report.val_miou[a]);
      j["curve"].push_back(row);
    }
    if (vm["json"].as<bool>()) {
      io.out << j.dump(2) << "\n";
      return kSuccess;
    }
    auto pct = [](double v) {
      std::ostringstream s;
      if (std::isnan(v)) return std::string("    -");
      s << std::fixed << std::setprecision(1) << std::setw(5) << 100 * v;
      return s.str();
    };
    io.out << "checkpoint " << path << " (" << model.kind() << "), " << report.test_count << " test scenes, "
           << scales.size() * (options.inference().flip() ? 2 : 1) << " passes each, "
           << (report.by_argmax                          ? "classes limited to the "
               : kind != "seam"                          ? "CAMs masked by "
               : report.stage == am::CamStage::kRevised ? "PCM-revised CAMs masked by "
                                                        : "raw CAMs (before any PCM) masked by ")
           << (options.predicted_labels() ? "predicted" : "true") << " labels\n";
    if (report.by_argmax) {
      io.out << "labels: the argmax of the model's own background and class probabilities (trained with pixel "
                "supervision; no alpha)\n";
    } else {
      io.out << "alpha " << format_number(report.alpha) << " ("
             << (options.alpha() ? std::string("given")
                                 : "best of " + std::to_string(report.alphas.size()) + " on " +
                                       std::to_string(report.val_count) + " validation scenes")
             << ")\n";
    }
    io.out << "mIoU " << pct(report.test.mean_iou()) << " %   pixel accuracy " << pct(report.test.pixel_accuracy())
           << " %   equivariance error " << std::fixed << std::setprecision(3) << report.equivariance_error << "\n\n";
    io.out << "class          IoU %  precision %  recall %\n";
    for (size_t c = 0; c < iou.size(); ++c) {
      std::string name = c == 0 ? std::string("background") : words[c - 1];
      name.resize(12, ' ');
      io.out << name << "   " << pct(iou[c]) << "        " << pct(precision[c]) << "     " << pct(recall[c]) << "\n";
    }
    auto bare = [&](double v) {
      auto text = pct(v);
      return text.erase(0, text.find_first_not_of(' '));
    };
    io.out << "\nobject pixels labelled background " << bare(report.test.object_as_background())
           << " %, another object class " << bare(report.test.object_as_other_object())
           << " %; background pixels labelled an object " << bare(report.test.background_as_object()) << " %\n";
    if (report.test_by_objects.size() > 1) {
      io.out << "\nobjects  scenes  mIoU %  object as background %  as another object %  background as object %\n";
      for (const auto& [objects, scores] : report.test_by_objects) {
        io.out << std::setw(7) << objects << "  " << std::setw(6) << report.scenes_by_objects.at(objects) << "  "
               << pct(scores.mean_iou()) << "  " << std::setw(22) << pct(scores.object_as_background()) << "  "
               << std::setw(19) << pct(scores.object_as_other_object()) << "  " << std::setw(22)
               << pct(scores.background_as_object()) << "\n";
      }
    }
    if (vm["curve"].as<bool>() && !report.by_argmax) {
      io.out << "\nalpha   val mIoU %  test mIoU %\n";
      for (size_t a = 0; a < report.alphas.size(); ++a) {
        io.out << std::fixed << std::setprecision(2) << report.alphas[a] << "    "
               << pct(report.val_miou.empty() ? std::nan("") : report.val_miou[a]) << "       "
               << pct(report.test_miou[a]) << "\n";
      }
    }
    io.out << "(" << std::fixed << std::setprecision(1) << seconds << " s)\n";
    return kSuccess;
  }

  std::unique_ptr<Command> caption_command_;
};

}  // namespace

std::unique_ptr<Command> make_eval_command() { return std::make_unique<EvalCommand>(); }

}  // namespace attend::cli
