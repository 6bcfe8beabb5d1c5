#pragma once
/// The model options of `attend train`, built from the model-kind registry: one
/// parser that knows every kind's flags, one help group per kind, and the
/// conversion of what the user typed into a kind's options JSON.

#include "cli.h"

#include <attend/models/registry.h>

#include <nlohmann/json.hpp>

#include <functional>
#include <vector>

namespace attend::cli {

/// Every registered kind's flags, typed and without defaults (for parsing; a flag
/// shared by several kinds appears once).
/// `include` picks the kinds (default: all).
po::options_description model_options_for_parsing(
    const std::function<bool(const models::ModelKind&)>& include = nullptr);

/// One group per kind with its defaults, for help; `include` as above.
std::vector<po::options_description> model_options_for_help(
    const std::function<bool(const models::ModelKind&)>& include = nullptr);

/// The options of `kind` the user gave on the command line, as JSON keyed like the
/// kind's options (absent ones are left to the kind's defaults).
/// throws UsageError naming the flag for a value out of range, a list that does not
/// parse, or a flag that belongs to other kinds only.
nlohmann::json given_model_options(const po::variables_map& vm, const models::ModelKind& kind);

}  // namespace attend::cli
