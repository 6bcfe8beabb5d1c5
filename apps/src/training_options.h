#pragma once
/// The training options of `attend train`: one table for every model, with the few
/// that belong to one family added by it.

#include "cli.h"

#include <attend/models/train.h>

namespace attend::cli {

/// --run-dir, --epochs, --batch, --optimizer, --lr, --momentum, --weight-decay,
/// --schedule, --step-epochs, --gamma, --clip, --patience, --no-resume,
/// --checkpoint-every, --log-every; `patience_help` says what patience waits for.
po::options_description common_training_options(const std::string& patience_help, std::int64_t default_batch = 128,
                                                double default_lr = 1e-3);

/// The common options plus the classifiers' --val-count and --eval-samples.
po::options_description classifier_training_options();

/// What the common options (and --eval-samples when present) say, for `run_dir`.
/// throws UsageError naming the option for a value out of range.
models::TrainOptions parse_training_options(const po::variables_map& vm, const GlobalOptions& global,
                                            const std::string& run_dir);

}  // namespace attend::cli
