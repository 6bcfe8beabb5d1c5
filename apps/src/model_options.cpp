#include "model_options.h"

#include "validate.h"

#include <boost/make_shared.hpp>

#include <set>
#include <sstream>

namespace attend::cli {
namespace {

using Type = models::OptionSpec::Type;

constexpr int kWidth = 100;

/// Adds `spec` as a flag; with a default when `with_default`.
void add_flag(po::options_description& group, const models::OptionSpec& spec, bool with_default,
              const std::string& help) {
  po::value_semantic* value = nullptr;
  switch (spec.type) {
    case Type::kInt: {
      auto* v = po::value<std::int64_t>();
      if (with_default) v->default_value(spec.fallback.get<std::int64_t>());
      value = v->value_name(spec.value_name);
      break;
    }
    case Type::kReal: {
      auto* v = po::value<double>();
      if (with_default) {
        std::ostringstream text;
        text << spec.fallback.get<double>();
        v->default_value(spec.fallback.get<double>(), text.str());
      }
      value = v->value_name(spec.value_name);
      break;
    }
    case Type::kChoice: {
      auto* v = po::value<std::string>();
      if (with_default) v->default_value(spec.fallback.get<std::string>());
      value = v->value_name(spec.value_name);
      break;
    }
    case Type::kIntList: {
      auto* v = po::value<std::string>();
      if (with_default) {
        std::string text;
        for (const auto& n : spec.fallback) text += (text.empty() ? "" : ",") + std::to_string(n.get<std::int64_t>());
        v->default_value(text);
      }
      value = v->value_name(spec.value_name);
      break;
    }
  }
  group.add(boost::make_shared<po::option_description>(spec.flag.c_str(), value, help.c_str()));
}

}  // namespace

po::options_description model_options_for_parsing(const std::function<bool(const models::ModelKind&)>& include) {
  po::options_description group("Model", kWidth);
  std::set<std::string> seen;
  for (const auto& kind : models::model_registry().kinds()) {
    if (include && !include(kind)) continue;
    for (const auto& spec : kind.options) {
      if (seen.insert(spec.flag).second) add_flag(group, spec, /*with_default=*/false, spec.help);
    }
  }
  return group;
}

std::vector<po::options_description> model_options_for_help(
    const std::function<bool(const models::ModelKind&)>& include) {
  std::vector<po::options_description> groups;
  for (const auto& kind : models::model_registry().kinds()) {
    if (include && !include(kind)) continue;
    po::options_description group("Model options of '" + kind.name + "'", kWidth);
    for (const auto& spec : kind.options) add_flag(group, spec, /*with_default=*/true, spec.help);
    groups.push_back(group);
  }
  return groups;
}

nlohmann::json given_model_options(const po::variables_map& vm, const models::ModelKind& kind) {
  nlohmann::json out = nlohmann::json::object();
  // Flags of other kinds only: most likely a mistake, and silently ignoring it would
  // train something else than the user asked for.
  for (const auto& other : models::model_registry().kinds()) {
    for (const auto& spec : other.options) {
      if (!vm.count(spec.flag) || vm[spec.flag].defaulted()) continue;
      bool known = false;
      for (const auto& own : kind.options) known = known || own.flag == spec.flag;
      if (!known) {
        throw UsageError("--" + spec.flag + " does not apply to a '" + kind.name + "' model (it is an option of '" +
                         other.name + "')");
      }
    }
  }
  for (const auto& spec : kind.options) {
    if (!vm.count(spec.flag)) continue;
    nlohmann::json value;
    switch (spec.type) {
      case Type::kInt: value = vm[spec.flag].as<std::int64_t>(); break;
      case Type::kReal: value = vm[spec.flag].as<double>(); break;
      case Type::kChoice: value = vm[spec.flag].as<std::string>(); break;
      case Type::kIntList: value = parse_int_list(vm[spec.flag].as<std::string>(), spec.flag); break;
    }
    if (const auto problem = spec.problem(value); !problem.empty()) {
      throw UsageError("--" + spec.flag + " " + problem);
    }
    out[spec.key] = value;
  }
  return out;
}

}  // namespace attend::cli
