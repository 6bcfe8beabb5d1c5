// attend eval <checkpoint>: accuracy (deterministic, M=1, M=10 for the RAM) and
// confusion matrix on a test set.
#include "../cli.h"
#include "../data_options.h"
#include "../report.h"
#include "../validate.h"

#include <attend/io_error.h>

#include <attend/models/registry.h>

#include <torch/torch.h>

namespace attend::cli {
namespace {

namespace am = attend::models;

class EvalCommand : public Command {
 public:
  std::string name() const override { return "eval"; }
  std::string summary() const override { return "evaluate a trained classifier: accuracy and confusion matrix"; }
  std::string usage() const override { return "attend eval <checkpoint> [--data DIR | --scenes KIND] [options]"; }
  std::vector<std::string> examples() const override {
    return {"attend eval out/ram-c60/best.pt", "attend eval out/ram-c60/best.pt --json",
            "attend eval out/cnn/best.pt --data out/cluttered-60 --split test"};
  }
  std::vector<po::options_description> options() override {
    po::options_description d("Evaluation", 100);
    d.add_options()
        ("checkpoint", po::value<std::string>()->value_name("FILE"), "checkpoint to evaluate (positional)")
        ("split", po::value<std::string>()->default_value("test")->value_name("S"), "train or test")
        ("json", po::bool_switch(), "print the report as JSON");
    po::options_description data = data_options();
    return {d, data};
  }
  po::positional_options_description positionals() const override {
    po::positional_options_description p;
    p.add("checkpoint", 1);
    return p;
  }
  int run(const po::variables_map& vm, const GlobalOptions& global, Streams& io) override {
    if (!vm.count("checkpoint")) throw UsageError("eval: missing the checkpoint to evaluate");
    const auto path = vm["checkpoint"].as<std::string>();
    const auto split = require_one_of(vm, "split", {"train", "test"});
    am::CheckpointInfo info;
    auto classifier = am::load_classifier(path, &info);
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
    const auto report = evaluation_report(*classifier, *source, path);
    if (vm["json"].as<bool>()) {
      io.out << report.dump(2) << "\n";
    } else {
      print_evaluation(io.out, report);
    }
    return kSuccess;
  }
};

}  // namespace

std::unique_ptr<Command> make_eval_command() { return std::make_unique<EvalCommand>(); }

}  // namespace attend::cli
