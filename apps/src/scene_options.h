#pragma once
/// The options of object scenes (datasets::ObjectSceneOptions) on the command line,
/// shared by `attend data objects` and `attend train captioner --scenes objects`.

#include "cli.h"

#include <attend/datasets/object_scenes.h>

namespace attend::cli {

/// --level, --objects, --items, --fashion, --size, --jitter, --max-overlap,
/// --repeat-classes, --colour, --background, --background-level, --mask-threshold,
/// --relation-margin, --hold-out. (--canvas, --fragments and --fragment-size belong
/// to the command's own groups; parse_object_scene_options reads them when present.)
po::options_description object_scene_options();

/// The scene options given, validated. throws UsageError naming the option for a value
/// out of range, contradictory options, or an option that would do nothing.
datasets::ObjectSceneOptions parse_object_scene_options(const po::variables_map& vm);

}  // namespace attend::cli
