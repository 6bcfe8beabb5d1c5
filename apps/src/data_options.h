#pragma once
/// Data options shared by train and eval: an IDX folder or on-the-fly scenes.

#include "cli.h"

#include <attend/datasets/source.h>

#include <nlohmann/json.hpp>

#include <memory>

namespace attend::cli {

/// Adds --data, --scenes, --source, --canvas, --fragments, --fragment-size.
po::options_description data_options();

/// What the options describe, as stored in checkpoints:
/// {"kind": "idx", "dir": ...} or {"kind": "scenes", "scenes": "cluttered", "source":
/// ..., "canvas": ..., "fragments": ..., "fragment_size": ..., "seed": ...}.
/// throws UsageError for contradictory or missing options.
nlohmann::json data_spec(const po::variables_map& vm, std::uint64_t seed);

/// Train and validation sources: the last `val_count` items of the training split
/// are held out for validation (none when 0). Scenes are fresh every epoch for
/// training and fixed for validation.
struct TrainSources {
  std::shared_ptr<const datasets::ImageSource> train;
  std::shared_ptr<const datasets::ImageSource> validation;  ///< may be null
};
TrainSources training_sources(const nlohmann::json& spec, std::int64_t val_count);

/// The fixed evaluation source of `split` ("train" or "test") for a data spec.
std::shared_ptr<const datasets::ImageSource> evaluation_source(const nlohmann::json& spec, const std::string& split);

}  // namespace attend::cli
