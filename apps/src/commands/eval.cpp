// attend eval <checkpoint>: accuracy and confusion matrix on a test set; for
// stochastic kinds (the RAM) one row per mode: the policy mean and M sampled
// trajectories for each M of --samples.
#include "../cli.h"
#include "../data_options.h"
#include "../report.h"
#include "../validate.h"

#include <attend/io_error.h>

#include <attend/models/registry.h>

#include <torch/torch.h>

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
            "attend eval out/cnn/best.pt --data out/cluttered-60 --split test"};
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
    return {d, data_source_options()};
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
  std::unique_ptr<Command> caption_command_;
};

}  // namespace

std::unique_ptr<Command> make_eval_command() { return std::make_unique<EvalCommand>(); }

}  // namespace attend::cli
