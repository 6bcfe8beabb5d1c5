// attend train <kind>: trains a model of a registered kind with progress,
// metrics.jsonl, checkpoints and resume, then evaluates it on the test split.
#include "../cli.h"
#include "../data_options.h"
#include "../distributed_run.h"
#include "../interrupt.h"
#include "../model_options.h"
#include "../progress.h"
#include "../scene_options.h"
#include "../report.h"
#include "../training_options.h"
#include "../validate.h"

#include <attend/io_error.h>
#include <attend/run_lock.h>
#include <attend/models/checkpoint.h>
#include <attend/models/registry.h>
#include <attend/models/train.h>

#include <torch/torch.h>

#include <filesystem>
#include <optional>

namespace attend::cli {
namespace {

namespace fs = std::filesystem;
namespace am = attend::models;

bool classifies(const am::ModelKind& kind) { return kind.capabilities.classify; }

/// --init-from: copies the tensors of another run's checkpoint that fit the new model
/// (before the run folder is touched, so a bad file leaves nothing behind). A run that
/// resumes keeps its own weights. Rank 0 alone reads the file: its parameters are
/// broadcast to the others at the start.
std::optional<am::WarmStart> warm_start(const std::string& path, am::Classifier& classifier,
                                        const am::TrainOptions& training, const DistributedRun& distributed,
                                        Streams& io) {
  if (am::will_resume(training.run_dir(), training.resume())) {
    if (distributed.writer()) {
      io.err << "init: the run resumes from its last.pt; --init-from " << path << " is not applied\n";
    }
    return std::nullopt;
  }
  if (!distributed.writer()) return std::nullopt;
  auto result = am::warm_start(path, classifier.module());
  io.err << "init: from " << path << " (a '" << result.kind << "' model): " << am::summarise_tensor_names(result.copied)
         << "; kept as initialised: " << am::summarise_tensor_names(result.kept) << "\n";
  return result;
}

/// Which tensors came from where, in <run-dir>/init.json.
void write_warm_start(const std::string& run_dir, const std::string& path, const am::WarmStart& result) {
  std::error_code ec;
  write_json_file((fs::path(run_dir) / "init.json").string(), {{"checkpoint", fs::absolute(path, ec).string()},
                                                               {"kind", result.kind},
                                                               {"copied", result.copied},
                                                               {"kept", result.kept}});
}

class TrainCommand : public Command {
 public:
  std::string name() const override { return "train"; }
  std::string summary() const override {
    return "train a model (" + am::model_registry().names() + ")";
  }
  std::string usage() const override {
    std::string kinds;
    for (const auto& k : am::model_registry().kinds()) kinds += (kinds.empty() ? "" : "|") + k.name;
    return "attend train <" + kinds + "> (--data DIR | --scenes KIND) --run-dir DIR [options]";
  }
  std::string description() const override {
    std::string text = "Model kinds:\n";
    for (const auto& k : am::model_registry().kinds()) {
      text += "  " + k.name + std::string(k.name.size() < 10 ? 10 - k.name.size() : 1, ' ') + k.summary + "\n";
    }
    return text + "The options below are the classifiers'; a captioner's: 'attend train captioner --help'.\n";
  }
  Command& resolve(const std::vector<std::string>& args) override {
    // The first word that is not an option (nor an option's value) names the kind.
    for (const auto& a : args) {
      if (a.rfind("-", 0) == 0) break;
      const auto* kind = am::model_registry().find(a);
      if (kind != nullptr && kind->capabilities.caption) {
        if (!caption_command_) caption_command_ = make_caption_train_command();
        return *caption_command_;
      }
      break;
    }
    return *this;
  }
  std::vector<std::string> examples() const override {
    return {"attend train ram --scenes cluttered --canvas 60 --fragments 4 --glimpses 8 --glimpse-size 12 "
            "--scales 3 --epochs 100 --run-dir out/ram-c60",
            "attend train ram --data data/mnist --glimpses 6 --glimpse-size 8 --scales 1 --run-dir out/ram-28",
            "attend train cnn --scenes translated --canvas 60 --epochs 20 --run-dir out/cnn-t60",
            "attend train cam --scenes objects --objects 1-3 --background clutter --epochs 10 --run-dir out/cam",
            "attend train seam --scenes objects --items fashion --colour --objects 1-4 --canvas 128 --background clutter "
            "--epochs 20 --run-dir out/seam",
            "attend train ram --run-dir out/ram-c60 --scenes cluttered --epochs 150   # continue a run"};
  }
  std::vector<po::options_description> options() override {
    auto model = model_options_for_parsing(classifies);
    model.add_options()("model", po::value<std::string>()->value_name("KIND"), "model kind (positional)");
    return {model, data_source_options(), object_scene_options(), object_count_options(), augmentation_options(),
            classifier_training_options(), distributed_options()};
  }
  std::vector<po::options_description> help_options() override {
    auto groups = model_options_for_help(classifies);
    groups.push_back(data_source_options());
    groups.push_back(object_scene_options());
    groups.push_back(object_count_options());
    groups.push_back(augmentation_options());
    groups.push_back(classifier_training_options());
    groups.push_back(distributed_options());
    return groups;
  }
  po::positional_options_description positionals() const override {
    po::positional_options_description p;
    p.add("model", 1);
    return p;
  }

  int run(const po::variables_map& vm, const GlobalOptions& global, Streams& io) override {
    const auto& registry = am::model_registry();
    if (!vm.count("model")) throw UsageError("train: missing the model kind (" + registry.names() + ")");
    const auto* kind = registry.find(vm["model"].as<std::string>());
    if (kind == nullptr) {
      throw UsageError("train: unknown model '" + vm["model"].as<std::string>() + "', expected " + registry.names());
    }
    if (!kind->capabilities.classify) {
      throw UsageError("train: a '" + kind->name + "' model is not trained by this command (it trains classifiers)");
    }
    if (!vm.count("run-dir")) throw UsageError("train: --run-dir is required");
    const auto run_dir = vm["run-dir"].as<std::string>();
    const auto spec = data_spec(vm, global.seed);
    const auto val_count = require_range<std::int64_t>(vm, "val-count", 0, 10'000'000);
    auto user_options = given_model_options(vm, *kind);
    if (spec.multi_label()) {
      // Object scenes: which classes are present, several per image.
      if (kind->option("labels") == nullptr && !kind->capabilities.multi_label_only) {
        throw UsageError("train: object scenes have several classes per image; a '" + kind->name +
                         "' model predicts one (train a cam or seam model)");
      }
      if (kind->option("labels") != nullptr) {
        if (user_options.contains("labels") && user_options["labels"] != "multi") {
          throw UsageError("--labels single does not fit object scenes, which have several classes per image");
        }
        user_options["labels"] = "multi";
      }
      const auto classes = datasets::object_words(spec.objects().items()).size();
      if (user_options.contains("classes") && user_options["classes"] != classes) {
        throw UsageError("--classes: object scenes of " + std::string(datasets::to_string(spec.objects().items())) +
                         " have " + std::to_string(classes) + " classes");
      }
      user_options["classes"] = classes;
    } else if (kind->capabilities.multi_label_only) {
      throw UsageError("train: a '" + kind->name +
                       "' model learns from several classes per image; train it on object scenes (--scenes objects)");
    } else if (user_options.contains("labels") && user_options["labels"] == "multi") {
      throw UsageError("--labels multi needs data with several classes per image (--scenes objects)");
    }

    const auto training = parse_training_options(vm, global, run_dir);

    // Stored labels (an IDX folder, the digits scenes are made of) must name one of
    // the model's classes; object scenes make theirs from the classes they know.
    std::int64_t classes = 0;
    if (!spec.multi_label()) {
      if (user_options.contains("classes")) {
        classes = user_options["classes"].get<std::int64_t>();
      } else if (const auto* option = kind->option("classes")) {
        classes = option->fallback.get<std::int64_t>();
      }
    }
    const auto sources = training_sources(spec, val_count, classes);
    // Load the test split now: a missing one should stop us before training, not after.
    const auto test = spec.evaluation_source("test", classes);
    const auto& train = *sources.train;
    if (test->channels() != train.channels() || test->height() != train.height() || test->width() != train.width()) {
      auto shape = [](const datasets::ImageSource& s) {
        return std::to_string(s.channels()) + "x" + std::to_string(s.height()) + "x" + std::to_string(s.width());
      };
      throw IoError(spec.kind() == datasets::DataKind::kIdx ? spec.dir() : spec.source(),
                    "the test split holds " + shape(*test) + " images but the training split " + shape(train) +
                        " (both splits must have one image size)");
    }
    std::unique_ptr<am::Classifier> classifier;
    try {
      const auto options = am::complete_options(
          *kind, user_options, am::InputShape{train.channels(), train.height(), train.width()});
      // Parameter initialisation draws from LibTorch's default generator: seeded here,
      // and put back afterwards.
      am::ScopedSeed seeded(global.seed);
      classifier = am::make_classifier(kind->name, options);
    } catch (const c10::Error& e) {
      throw UsageError(e.what_without_backtrace());
    }

    // With RANK and WORLD_SIZE set: join the other workers (rank 0 alone writes).
    DistributedRun distributed(vm);
    std::optional<am::WarmStart> warm;
    if (vm.count("init-from")) {
      warm = warm_start(vm["init-from"].as<std::string>(), *classifier, training, distributed, io);
    }
    // One run per folder, from its first file to its last (creates the folder).
    std::unique_ptr<RunFolderLock> lock;
    auto observers = std::make_shared<am::ObserverList>();
    if (distributed.writer()) {
      lock = std::make_unique<RunFolderLock>(run_dir);
      // Which training items were held out, reproducible from the seed and written down.
      write_json_file((fs::path(run_dir) / "validation.json").string(),
                      {{"split", datasets::to_string(spec.validation())},
                       {"seed", spec.seed()},
                       {"count", static_cast<std::int64_t>(sources.validation_indices.size())},
                       {"indices", sources.validation_indices}});
      observers->add(std::make_shared<ProgressObserver>(io.err, io.err_is_tty));
      observers->add(std::make_shared<OverfittingWarning>(
          io.err, std::string(spec.augmented() ? "augment them more" : "augment them") +
                      " with --shift, --rotate or --scale-jitter (see 'attend train --help')"));
      observers->add(std::make_shared<MetricsJsonl>((fs::path(run_dir) / "metrics.jsonl").string(),
                                                    require_positive<std::int64_t>(vm, "log-every")));
    } else if (auto log = distributed.rank_log(run_dir)) {
      observers->add(log);
    }
    if (warm) write_warm_start(run_dir, vm["init-from"].as<std::string>(), *warm);
    am::FitHooks hooks;
    distributed.join(classifier->module(), hooks);
    am::FitSummary summary;
    {
      // Ctrl-C saves and stops training; during the test evaluation after it, the
      // default handling (stop at once) applies again.
      InterruptScope interrupt;
      summary = am::train_classifier(*classifier, train, sources.validation.get(), training, spec.to_json(),
                                     observers.get(), &interrupt.flag(), hooks);
    }
    distributed.report(io.err);
    if (!distributed.writer()) {
      // Rank 0 reports, keeps the checkpoints and evaluates on the test split.
      if (summary.status == am::FitStatus::kInterrupted) throw Interrupted("stopped with rank 0");
      return kSuccess;
    }
    if (summary.status == am::FitStatus::kInterrupted) {
      throw Interrupted("training saved at step " + std::to_string(summary.global_step) + " in " +
                        summary.last_checkpoint + "; run the same command again to resume");
    }
    // Evaluate the best checkpoint (or the last) on the test split.
    const auto checkpoint = !summary.best_checkpoint.empty() && fs::exists(summary.best_checkpoint)
                                ? summary.best_checkpoint
                                : summary.last_checkpoint;
    auto best = am::load_classifier(checkpoint);
    const auto report = evaluation_report(*best, *test, checkpoint);
    write_json_file((fs::path(run_dir) / "eval.json").string(), report);
    print_evaluation(io.out, report);
    io.out << "run folder " << run_dir << " (last.pt, " << (summary.best_checkpoint.empty() ? "" : "best.pt, ")
           << "metrics.jsonl, eval.json)\n";
    return kSuccess;
  }


 private:
  std::unique_ptr<Command> caption_command_;
};

}  // namespace

std::unique_ptr<Command> make_train_command() { return std::make_unique<TrainCommand>(); }

}  // namespace attend::cli
