#include "training_options.h"

#include "validate.h"

#include <torch/torch.h>

#include <sstream>

namespace attend::cli {

namespace am = attend::models;

po::options_description common_training_options(const std::string& patience_help, std::int64_t default_batch,
                                                double default_lr) {
  po::options_description training("Training", 100);
  std::ostringstream lr_text;
  lr_text << default_lr;
  training.add_options()
      ("run-dir", po::value<std::string>()->value_name("DIR"), "checkpoints and metrics.jsonl (required)")
      ("epochs", po::value<std::int64_t>()->default_value(10)->value_name("N"), "epochs")
      ("batch", po::value<std::int64_t>()->default_value(default_batch)->value_name("B"), "batch size")
      ("optimizer", po::value<std::string>()->default_value("adam")->value_name("O"),
       ("optimizer: " + am::enum_choices<am::OptimizerKind>() + " (sgd with momentum)").c_str())
      ("lr", po::value<double>()->default_value(default_lr, lr_text.str())->value_name("R"), "learning rate")
      ("momentum", po::value<double>()->default_value(0.9, "0.9")->value_name("M"), "sgd momentum")
      ("weight-decay", po::value<double>()->default_value(0.0)->value_name("W"), "L2 weight decay")
      ("schedule", po::value<std::string>()->default_value("constant")->value_name("S"),
       ("learning-rate schedule: " + am::enum_choices<am::Schedule>()).c_str())
      ("step-epochs", po::value<std::int64_t>()->default_value(10)->value_name("N"), "step schedule period")
      ("gamma", po::value<double>()->default_value(0.1, "0.1")->value_name("G"), "step schedule factor")
      ("clip", po::value<double>()->default_value(0.0)->value_name("N"), "clip gradient norm (0 = off)")
      ("on-nonfinite", po::value<std::string>()->default_value("stop")->value_name("A"),
       "a step with a nan or inf loss or gradient: stop (keep the checkpoints as they are, exit 1) or skip it")
      ("patience", po::value<std::int64_t>()->default_value(0)->value_name("N"), patience_help.c_str())
      ("no-resume", po::bool_switch(), "start afresh even if the run folder holds last.pt")
      ("checkpoint-every", po::value<std::int64_t>()->default_value(0)->value_name("N"),
       "also checkpoint every N steps (0 = at epoch ends)")
      ("log-every", po::value<std::int64_t>()->default_value(20)->value_name("N"), "metrics.jsonl step interval");
  return training;
}

po::options_description classifier_training_options() {
  auto training = common_training_options("stop after N epochs without a better validation accuracy (0 = never)");
  training.add_options()
      ("val-count", po::value<std::int64_t>()->default_value(500)->value_name("N"),
       "training items held out for validation and best.pt (0 = none)")
      ("eval-samples", po::value<std::int64_t>()->default_value(0)->value_name("M"),
       "stochastic models (ram): Monte-Carlo trajectories for validation (0 = policy mean)")
      ("init-from", po::value<std::string>()->value_name("CKPT"),
       "start from another run's checkpoint: each layer whose tensors it holds under the same names "
       "and shapes is copied (e.g. a seam network from a cam run's best.pt: the backbone); not "
       "applied when the run resumes");
  return training;
}

namespace {

/// A finite number > 0 (a learning rate).
double require_above_zero(const po::variables_map& vm, const std::string& name) {
  const double value = require_finite(vm, name);
  if (!(value > 0)) throw UsageError("--" + name + " must be a number > 0, got " + format_number(value));
  return value;
}

}  // namespace

am::TrainOptions parse_training_options(const po::variables_map& vm, const GlobalOptions& global,
                                        const std::string& run_dir) {
  auto training = am::TrainOptions()
                      .epochs(require_range<std::int64_t>(vm, "epochs", 1, 100000))
                      .batch_size(require_range<std::int64_t>(vm, "batch", 1, 65536))
                      .optimizer(require_enum<am::OptimizerKind>(vm, "optimizer"))
                      .lr(require_above_zero(vm, "lr"))
                      .momentum(require_range<double>(vm, "momentum", 0.0, 0.999999))
                      .weight_decay(require_range<double>(vm, "weight-decay", 0.0, 1e6))
                      .schedule(require_enum<am::Schedule>(vm, "schedule"))
                      .step_epochs(require_positive<std::int64_t>(vm, "step-epochs"))
                      .gamma(require_range<double>(vm, "gamma", 1e-12, 1.0))
                      .clip_norm(require_range<double>(vm, "clip", 0.0, 1e12))
                      .patience(require_range<std::int64_t>(vm, "patience", 0, 100000))
                      .seed(global.seed)
                      .run_dir(run_dir)
                      .resume(!vm["no-resume"].as<bool>())
                      .checkpoint_every(require_range<std::int64_t>(vm, "checkpoint-every", 0, 1'000'000'000))
                      .skip_nonfinite(require_one_of(vm, "on-nonfinite", {"stop", "skip"}) == "skip");
  if (vm.count("eval-samples")) training.eval_samples(require_range<std::int64_t>(vm, "eval-samples", 0, 1000));
  try {
    training.validate();
  } catch (const c10::Error& e) {
    throw UsageError(e.what_without_backtrace());
  }
  return training;
}

}  // namespace attend::cli
