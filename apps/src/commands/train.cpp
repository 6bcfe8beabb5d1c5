// attend train ram|cnn|fc: trains a classifier with progress, metrics.jsonl,
// checkpoints and resume, then evaluates it on the test split.
#include "../cli.h"
#include "../data_options.h"
#include "../interrupt.h"
#include "../progress.h"
#include "../report.h"
#include "../validate.h"

#include <attend/io_error.h>
#include <attend/models/train.h>

#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <sstream>

namespace attend::cli {
namespace {

namespace fs = std::filesystem;
namespace am = attend::models;

std::vector<std::int64_t> parse_sizes(const std::string& text, const std::string& option) {
  std::vector<std::int64_t> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    try {
      size_t used = 0;
      const auto v = std::stoll(item, &used);
      if (used != item.size() || v < 1 || v > 65536) throw std::invalid_argument(item);
      out.push_back(v);
    } catch (const std::exception&) {
      throw UsageError("--" + option + " must be a comma-separated list of sizes in 1..65536, got '" + text + "'");
    }
  }
  if (out.empty()) throw UsageError("--" + option + " must not be empty");
  return out;
}

class TrainCommand : public Command {
 public:
  std::string name() const override { return "train"; }
  std::string summary() const override {
    return "train a RAM, a soft-glimpse, a CNN or a fully connected classifier";
  }
  std::string usage() const override {
    return "attend train <ram|soft|cnn|fc> (--data DIR | --scenes KIND) [options]";
  }
  std::vector<std::string> examples() const override {
    return {"attend train ram --scenes cluttered --canvas 60 --fragments 4 --glimpses 8 --glimpse-size 12 "
            "--scales 3 --epochs 100 --run-dir out/ram-c60",
            "attend train ram --data data/mnist --glimpses 6 --glimpse-size 8 --scales 1 --run-dir out/ram-28",
            "attend train cnn --scenes translated --canvas 60 --epochs 20 --run-dir out/cnn-t60",
            "attend train ram --run-dir out/ram-c60 --scenes cluttered --epochs 150   # continue a run"};
  }
  std::vector<po::options_description> options() override {
    po::options_description model("Model", 100);
    model.add_options()
        ("model", po::value<std::string>()->value_name("KIND"), "ram, soft, cnn or fc (positional)")
        ("soft-glimpse", po::value<std::string>()->default_value("gaussian")->value_name("G"),
         "soft: gaussian (DRAW filterbank) or affine (spatial transformer)")
        ("supersample", po::value<std::int64_t>()->default_value(0)->value_name("S"),
         "soft affine: samples per glimpse pixel and direction, averaged (0 = enough for full resolution)")
        ("glimpses", po::value<std::int64_t>()->default_value(6)->value_name("T"), "ram, soft: glimpses per image")
        ("glimpse-size", po::value<std::int64_t>()->default_value(8)->value_name("G"),
         "ram: retina patch side; soft: filters per side N")
        ("scales", po::value<std::int64_t>()->default_value(1)->value_name("K"), "ram: retina patches per glimpse")
        ("scale-ratio", po::value<double>()->default_value(2.0)->value_name("S"), "ram: side ratio of patches")
        ("hidden", po::value<std::int64_t>()->default_value(256)->value_name("N"), "ram: core state size")
        ("what-size", po::value<std::int64_t>()->default_value(128)->value_name("N"), "ram: retina features h_g")
        ("where-size", po::value<std::int64_t>()->default_value(128)->value_name("N"), "ram: location features h_l")
        ("glimpse-features", po::value<std::int64_t>()->default_value(256)->value_name("N"),
         "ram: combined glimpse features")
        ("core", po::value<std::string>()->default_value("rnn")->value_name("C"), "ram: rnn (paper) or lstm")
        ("std", po::value<double>()->default_value(0.15, "0.15")->value_name("S"), "ram: location policy std")
        ("std-start", po::value<double>()->default_value(0.0)->value_name("S"),
         "ram: anneal the policy std by half a cosine from S in the first epoch to --std in the last (0 = "
         "constant --std)")
        ("reinforce-weight", po::value<double>()->default_value(1.0)->value_name("L"), "ram: lambda of REINFORCE")
        ("fc-hidden", po::value<std::string>()->default_value("256,256")->value_name("LIST"), "fc: hidden sizes")
        ("filters", po::value<std::string>()->default_value("32,64")->value_name("LIST"), "cnn: conv filters")
        ("cnn-hidden", po::value<std::int64_t>()->default_value(256)->value_name("N"), "cnn: dense layer size");
    po::options_description training("Training", 100);
    training.add_options()
        ("run-dir", po::value<std::string>()->value_name("DIR"), "checkpoints and metrics.jsonl (required)")
        ("epochs", po::value<std::int64_t>()->default_value(10)->value_name("N"), "epochs")
        ("batch", po::value<std::int64_t>()->default_value(128)->value_name("B"), "batch size")
        ("optimizer", po::value<std::string>()->default_value("adam")->value_name("O"), "adam or sgd (momentum)")
        ("lr", po::value<double>()->default_value(1e-3)->value_name("R"), "learning rate")
        ("momentum", po::value<double>()->default_value(0.9, "0.9")->value_name("M"), "sgd momentum")
        ("weight-decay", po::value<double>()->default_value(0.0)->value_name("W"), "L2 weight decay")
        ("schedule", po::value<std::string>()->default_value("constant")->value_name("S"),
         "learning-rate schedule: constant, step or cosine")
        ("step-epochs", po::value<std::int64_t>()->default_value(10)->value_name("N"), "step schedule period")
        ("gamma", po::value<double>()->default_value(0.1, "0.1")->value_name("G"), "step schedule factor")
        ("clip", po::value<double>()->default_value(0.0)->value_name("N"), "clip gradient norm (0 = off)")
        ("val-count", po::value<std::int64_t>()->default_value(500)->value_name("N"),
         "training items held out for validation and best.pt (0 = none)")
        ("patience", po::value<std::int64_t>()->default_value(0)->value_name("N"),
         "stop after N epochs without a better validation accuracy (0 = never)")
        ("eval-samples", po::value<std::int64_t>()->default_value(0)->value_name("M"),
         "ram: Monte-Carlo trajectories for validation (0 = policy mean)")
        ("no-resume", po::bool_switch(), "start afresh even if the run folder holds last.pt")
        ("checkpoint-every", po::value<std::int64_t>()->default_value(0)->value_name("N"),
         "also checkpoint every N steps (0 = at epoch ends)")
        ("log-every", po::value<std::int64_t>()->default_value(20)->value_name("N"), "metrics.jsonl step interval");
    return {model, data_options(), training};
  }
  po::positional_options_description positionals() const override {
    po::positional_options_description p;
    p.add("model", 1);
    return p;
  }

  int run(const po::variables_map& vm, const GlobalOptions& global, Streams& io) override {
    if (!vm.count("model")) throw UsageError("train: missing the model kind (ram, soft, cnn or fc)");
    const auto kind = vm["model"].as<std::string>();
    if (kind != "ram" && kind != "soft" && kind != "cnn" && kind != "fc") {
      throw UsageError("train: unknown model '" + kind + "', expected ram, soft, cnn or fc");
    }
    if (!vm.count("run-dir")) throw UsageError("train: --run-dir is required");
    const auto run_dir = vm["run-dir"].as<std::string>();
    const auto spec = data_spec(vm, global.seed);
    const auto val_count = require_range<std::int64_t>(vm, "val-count", 0, 10'000'000);

    auto training = am::TrainOptions()
                        .epochs(require_range<std::int64_t>(vm, "epochs", 1, 100000))
                        .batch_size(require_range<std::int64_t>(vm, "batch", 1, 65536))
                        .optimizer(require_one_of(vm, "optimizer", {"adam", "sgd"}))
                        .lr(vm["lr"].as<double>())
                        .momentum(vm["momentum"].as<double>())
                        .weight_decay(vm["weight-decay"].as<double>())
                        .schedule(require_one_of(vm, "schedule", {"constant", "step", "cosine"}))
                        .step_epochs(require_positive<std::int64_t>(vm, "step-epochs"))
                        .gamma(vm["gamma"].as<double>())
                        .clip_norm(vm["clip"].as<double>())
                        .patience(require_range<std::int64_t>(vm, "patience", 0, 100000))
                        .eval_samples(require_range<std::int64_t>(vm, "eval-samples", 0, 1000))
                        .seed(global.seed)
                        .run_dir(run_dir)
                        .resume(!vm["no-resume"].as<bool>())
                        .checkpoint_every(require_range<std::int64_t>(vm, "checkpoint-every", 0, 1'000'000'000));
    try {
      training.validate();
    } catch (const c10::Error& e) {
      throw UsageError(e.what_without_backtrace());
    }

    const auto sources = training_sources(spec, val_count);
    // Load the test split now: a missing one should stop us before training, not after.
    const auto test = evaluation_source(spec, "test");
    const auto& train = *sources.train;
    nlohmann::json model_options;
    if (kind == "ram") {
      model_options = am::RamOptions()
                          .channels(train.channels())
                          .glimpses(require_range<std::int64_t>(vm, "glimpses", 1, 1000))
                          .glimpse_size(require_range<std::int64_t>(vm, "glimpse-size", 1, 1024))
                          .scales(require_range<std::int64_t>(vm, "scales", 1, 16))
                          .scale_ratio(vm["scale-ratio"].as<double>())
                          .hidden(require_range<std::int64_t>(vm, "hidden", 1, 65536))
                          .what_size(require_range<std::int64_t>(vm, "what-size", 1, 65536))
                          .where_size(require_range<std::int64_t>(vm, "where-size", 1, 65536))
                          .glimpse_features(require_range<std::int64_t>(vm, "glimpse-features", 1, 65536))
                          .core(require_one_of(vm, "core", {"rnn", "lstm"}))
                          .location_std(vm["std"].as<double>())
                          .to_json();
      model_options["height"] = train.height();
      model_options["width"] = train.width();
      model_options["reinforce_weight"] = vm["reinforce-weight"].as<double>();
      const double std_end = vm["std"].as<double>(), std_start = vm["std-start"].as<double>();
      if (!(std_end > 0 && std::isfinite(std_end))) {
        throw UsageError("--std must be a number > 0, got " + format_number(std_end));
      }
      if (!(std_start >= 0 && std::isfinite(std_start))) {
        throw UsageError("--std-start must be a number >= 0 (0 = no annealing), got " + format_number(std_start));
      }
      if (std_start > 0) model_options["location_std_start"] = std_start;
      if (vm["glimpse-size"].as<std::int64_t>() > std::max(train.height(), train.width())) {
        throw UsageError("--glimpse-size " + std::to_string(vm["glimpse-size"].as<std::int64_t>()) +
                         " is larger than the " + std::to_string(train.height()) + "x" +
                         std::to_string(train.width()) + " images");
      }
    } else if (kind == "soft") {
      model_options = am::SoftGlimpseNetOptions()
                          .channels(train.channels())
                          .height(train.height())
                          .width(train.width())
                          .glimpse(require_one_of(vm, "soft-glimpse", {"gaussian", "affine"}))
                          .glimpse_size(require_range<std::int64_t>(vm, "glimpse-size", 2, 256))
                          .glimpses(require_range<std::int64_t>(vm, "glimpses", 1, 1000))
                          .hidden(require_range<std::int64_t>(vm, "hidden", 1, 65536))
                          .supersample(require_range<std::int64_t>(vm, "supersample", 0, 64))
                          .to_json();
    } else if (kind == "fc") {
      model_options = am::FcNetOptions()
                          .channels(train.channels())
                          .height(train.height())
                          .width(train.width())
                          .hidden(parse_sizes(vm["fc-hidden"].as<std::string>(), "fc-hidden"))
                          .to_json();
    } else {
      model_options = am::ConvNetOptions()
                          .channels(train.channels())
                          .height(train.height())
                          .width(train.width())
                          .filters(parse_sizes(vm["filters"].as<std::string>(), "filters"))
                          .hidden(require_range<std::int64_t>(vm, "cnn-hidden", 1, 65536))
                          .to_json();
    }
    std::unique_ptr<am::Classifier> classifier;
    try {
      classifier = am::make_classifier(kind, model_options);
    } catch (const c10::Error& e) {
      throw UsageError(e.what_without_backtrace());
    }

    std::error_code ec;
    fs::create_directories(run_dir, ec);
    if (ec) throw IoError(run_dir, "cannot create run folder: " + ec.message());
    auto observers = std::make_shared<am::ObserverList>();
    observers->add(std::make_shared<ProgressObserver>(io.err, io.err_is_tty));
    observers->add(std::make_shared<MetricsJsonl>((fs::path(run_dir) / "metrics.jsonl").string(),
                                                  require_positive<std::int64_t>(vm, "log-every")));
    const auto& stop = install_interrupt_handler();
    const auto summary = am::train_classifier(*classifier, train, sources.validation.get(), training, spec,
                                              observers.get(), &stop);
    if (summary.status == am::FitStatus::kInterrupted) {
      throw Interrupted("training saved at step " + std::to_string(summary.global_step) + " in " +
                        summary.last_checkpoint + "; run the same command again to resume");
    }
    // Evaluate the best checkpoint (or the last) on the test split.
    const auto checkpoint = !summary.best_checkpoint.empty() && fs::exists(summary.best_checkpoint)
                                ? summary.best_checkpoint
                                : summary.last_checkpoint;
    auto best = am::load_classifier(checkpoint);
    const auto report = evaluation_report(*best, *test, checkpoint, kind == "ram");
    write_json_file((fs::path(run_dir) / "eval.json").string(), report);
    print_evaluation(io.out, report);
    io.out << "run folder " << run_dir << " (last.pt, " << (summary.best_checkpoint.empty() ? "" : "best.pt, ")
           << "metrics.jsonl, eval.json)\n";
    return kSuccess;
  }
};

}  // namespace

std::unique_ptr<Command> make_train_command() { return std::make_unique<TrainCommand>(); }

}  // namespace attend::cli
