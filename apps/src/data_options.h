#pragma once
/// Data options shared by train and eval: an IDX folder or on-the-fly scenes. They
/// describe a datasets::DataSpec; building the sources is the library's.

#include "cli.h"

#include <attend/datasets/data_spec.h>

namespace attend::cli {

/// --data, --scenes, --source, --canvas, --fragments, --fragment-size: where images
/// come from (train and eval).
po::options_description data_source_options();

/// --shift, --rotate, --scale-jitter and --val-split: what training does with them
/// (train only; data_spec() reads them when present).
po::options_description augmentation_options();

/// --count and --test-count of object scenes (train only; with object_scene_options()).
po::options_description object_count_options();

/// What the options describe. throws UsageError naming the option for
/// contradictory, missing or out-of-range options.
datasets::DataSpec data_spec(const po::variables_map& vm, std::uint64_t seed);

/// spec.training_sources(val_count, classes), with its range problems as usage
/// errors naming --val-count or --shift.
datasets::TrainingSources training_sources(const datasets::DataSpec& spec, std::int64_t val_count,
                                           std::int64_t classes = 0);

/// --canvas and --fragment-size of generated scenes against the digits of `source`
/// (the side declared by its training images' IDX header): the canvas must hold a
/// digit (side..4096) and a fragment must fit in one (1..side).
/// throws UsageError naming the option; attend::IoError when the source is unreadable.
void check_scene_geometry(const std::string& source, std::int64_t canvas, std::int64_t fragment_size);

}  // namespace attend::cli
