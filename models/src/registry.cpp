#include "attend/models/registry.h"

#include "kinds.h"

#include <attend/models/trainer.h>

#include <attend/io_error.h>

#include <torch/torch.h>

#include <cmath>
#include <sstream>

namespace attend::models {
namespace {

/// The built-in kinds, in the order help lists them. One line per kind.
void add_builtin_kinds(ModelRegistry& registry) {
  registry.add(ram_kind());
  registry.add(soft_kind());
  registry.add(cnn_kind());
  registry.add(fc_kind());
  registry.add(captioner_kind());
  registry.add(cam_kind());
  registry.add(seam_kind());
}

std::string number(double v) {
  std::ostringstream out;
  out << v;
  return out.str();
}

std::string range_problem(const OptionSpec& spec, double v) {
  const bool below = spec.min_exclusive ? !(v > spec.min) : !(v >= spec.min);
  if (below || !(v <= spec.max) || !std::isfinite(v)) {
    if (spec.min_exclusive) return "must be greater than " + number(spec.min) + " and at most " + number(spec.max) + ", got " + number(v);
    return "must be between " + number(spec.min) + " and " + number(spec.max) + ", got " + number(v);
  }
  return "";
}

}  // namespace

std::string OptionSpec::problem(const nlohmann::json& value) const {
  switch (type) {
    case Type::kInt:
      if (!value.is_number_integer()) return "must be a whole number, got " + value.dump();
      return range_problem(*this, static_cast<double>(value.get<std::int64_t>()));
    case Type::kReal:
      if (!value.is_number()) return "must be a number, got " + value.dump();
      return range_problem(*this, value.get<double>());
    case Type::kChoice: {
      std::string list;
      for (size_t i = 0; i < choices.size(); ++i) {
        list += (i == 0 ? "" : i + 1 == choices.size() ? " or " : ", ") + choices[i];
      }
      if (value.is_string()) {
        for (const auto& c : choices) {
          if (value.get<std::string>() == c) return "";
        }
      }
      return "must be " + list + ", got " + value.dump();
    }
    case Type::kIntList:
      if (!value.is_array() || value.empty()) return "must be a non-empty list of whole numbers, got " + value.dump();
      for (const auto& v : value) {
        if (!v.is_number_integer()) return "must be a list of whole numbers, got " + value.dump();
        if (auto p = range_problem(*this, static_cast<double>(v.get<std::int64_t>())); !p.empty()) {
          return "holds a value that " + p;
        }
      }
      return "";
  }
  return "has an unknown type";
}

const OptionSpec* ModelKind::option(const std::string& key) const {
  for (const auto& o : options) {
    if (o.key == key) return &o;
  }
  return nullptr;
}

nlohmann::json complete_options(const ModelKind& kind, const nlohmann::json& user, const InputShape& input) {
  TORCH_CHECK(user.is_object() || user.is_null(), kind.name, ": options must be a JSON object, got ", user.dump());
  const auto given = user.is_null() ? nlohmann::json::object() : user;  // null: all defaults
  for (const auto& [key, value] : given.items()) {
    TORCH_CHECK(kind.option(key) != nullptr, kind.name, ": unknown option '", key, "'");
  }
  nlohmann::json out = nlohmann::json::object();
  for (const auto& spec : kind.options) {
    const auto& value = given.contains(spec.key) ? given.at(spec.key) : spec.fallback;
    const auto problem = spec.problem(value);
    TORCH_CHECK(problem.empty(), kind.name, ": option '", spec.key, "' ", problem);
    out[spec.key] = value;
  }
  TORCH_CHECK(input.channels >= 1 && input.height >= 1 && input.width >= 1, kind.name, ": invalid input shape ",
              input.channels, "x", input.height, "x", input.width);
  out["channels"] = input.channels;
  out["height"] = input.height;
  out["width"] = input.width;
  return out;
}

void ModelRegistry::add(ModelKind kind) {
  TORCH_CHECK(!kind.name.empty(), "model registry: a kind needs a name");
  TORCH_CHECK(find(kind.name) == nullptr, "model registry: kind '", kind.name, "' is registered already");
  TORCH_CHECK(static_cast<bool>(kind.make), "model registry: kind '", kind.name, "' has no factory");
  for (const auto& spec : kind.options) {
    TORCH_CHECK(spec.problem(spec.fallback).empty(), "model registry: default of ", kind.name, " option '", spec.key,
                "' ", spec.problem(spec.fallback));
    // One command line serves every kind: a flag means the same type everywhere.
    for (const auto& other : kinds_) {
      for (const auto& o : other.options) {
        TORCH_CHECK(o.flag != spec.flag || o.type == spec.type, "model registry: option --", spec.flag, " of '",
                    kind.name, "' has another type in '", other.name, "'");
      }
    }
  }
  kinds_.push_back(std::move(kind));
}

const ModelKind* ModelRegistry::find(const std::string& name) const {
  for (const auto& k : kinds_) {
    if (k.name == name) return &k;
  }
  return nullptr;
}

std::string ModelRegistry::names() const {
  std::string out;
  for (size_t i = 0; i < kinds_.size(); ++i) {
    out += (i == 0 ? "" : i + 1 == kinds_.size() ? " or " : ", ") + kinds_[i].name;
  }
  return out;
}

const ModelKind& ModelRegistry::at(const std::string& name) const {
  const auto* k = find(name);
  TORCH_CHECK(k != nullptr, "unknown model kind '", name, "' (expected ", names(), ")");
  return *k;
}

ModelRegistry& model_registry() {
  static ModelRegistry registry = [] {
    ModelRegistry r;
    add_builtin_kinds(r);
    return r;
  }();
  return registry;
}

std::unique_ptr<Model> make_model(const std::string& kind, const nlohmann::json& options) {
  const auto& k = model_registry().at(kind);
  try {
    return k.make(options);
  } catch (const nlohmann::json::exception& e) {
    TORCH_CHECK(false, "options of a '", kind, "' model are incomplete: ", e.what());
  }
}

std::unique_ptr<Classifier> make_classifier(const std::string& kind, const nlohmann::json& options) {
  const auto& k = model_registry().at(kind);
  TORCH_CHECK(k.capabilities.classify, "a '", kind, "' model is not an image classifier");
  auto model = make_model(kind, options);
  auto* classifier = dynamic_cast<Classifier*>(model.get());
  TORCH_CHECK(classifier != nullptr, "model kind '", kind, "' says it classifies but builds no Classifier");
  model.release();
  return std::unique_ptr<Classifier>(classifier);
}

std::unique_ptr<Classifier> load_classifier(const std::string& path, CheckpointInfo* info_out) {
  const auto info = read_checkpoint_info(path);
  const auto* kind = model_registry().find(info.model.kind);
  if (kind == nullptr || !kind->capabilities.classify) {
    std::string classifiers;
    for (const auto& k : model_registry().kinds()) {
      if (k.capabilities.classify) classifiers += (classifiers.empty() ? "" : ", ") + k.name;
    }
    throw IoError(path, "holds a '" + info.model.kind + "' model, not an image classifier (" + classifiers + ")");
  }
  std::unique_ptr<Classifier> classifier;
  try {
    // Building initialises parameters from the default generator; the checkpoint's
    // weights replace them, so draw them without moving the process's generator.
    ScopedSeed untouched(0);
    classifier = make_classifier(info.model.kind, info.model.options);
  } catch (const c10::Error& e) {
    throw IoError(path, std::string("stored options are invalid: ") + e.what_without_backtrace());
  }
  LoadOptions load;
  load.expected_kind = info.model.kind;
  auto loaded = load_checkpoint(path, classifier->module(), nullptr, load);
  if (info_out != nullptr) *info_out = loaded;
  return classifier;
}

}  // namespace attend::models

namespace attend::models {

double accuracy(const torch::Tensor& scores, const torch::Tensor& targets) {
  return (scores.argmax(1) == targets).to(torch::kFloat64).mean().item<double>();
}

namespace {

OptionSpec make_spec(std::string key, std::string flag, OptionSpec::Type type, nlohmann::json fallback, double min,
                     double max, std::string help, std::string value_name) {
  OptionSpec s;
  s.key = std::move(key);
  s.flag = std::move(flag);
  s.type = type;
  s.fallback = std::move(fallback);
  s.min = min;
  s.max = max;
  s.help = std::move(help);
  s.value_name = std::move(value_name);
  return s;
}

}  // namespace

OptionSpec int_option(std::string key, std::string flag, std::int64_t fallback, std::int64_t min, std::int64_t max,
                      std::string help, std::string value_name) {
  return make_spec(std::move(key), std::move(flag), OptionSpec::Type::kInt, fallback, static_cast<double>(min),
                   static_cast<double>(max), std::move(help), std::move(value_name));
}

OptionSpec real_option(std::string key, std::string flag, double fallback, double min, double max, std::string help,
                       bool min_exclusive, std::string value_name) {
  auto s = make_spec(std::move(key), std::move(flag), OptionSpec::Type::kReal, fallback, min, max, std::move(help),
                     std::move(value_name));
  s.min_exclusive = min_exclusive;
  return s;
}

OptionSpec choice_option(std::string key, std::string flag, std::vector<std::string> choices, std::string help,
                         std::string value_name) {
  auto s = make_spec(std::move(key), std::move(flag), OptionSpec::Type::kChoice, choices.front(), 0, 0,
                     std::move(help), std::move(value_name));
  s.choices = std::move(choices);
  return s;
}

OptionSpec int_list_option(std::string key, std::string flag, std::vector<std::int64_t> fallback, std::int64_t min,
                           std::int64_t max, std::string help) {
  return make_spec(std::move(key), std::move(flag), OptionSpec::Type::kIntList, fallback, static_cast<double>(min),
                   static_cast<double>(max), std::move(help), "LIST");
}

}  // namespace attend::models
