#pragma once
/// The model-kind registry. Every kind of model attend can train, evaluate or load
/// ("ram", "soft", "fc", "cnn", and users' own) registers here once: its name, its
/// options (JSON keys, command-line names, defaults, ranges, help), what it can do,
/// and a factory. The CLI builds its option groups, its help and its dispatch from
/// the registry; checkpoints name a kind and are rebuilt through it. No code outside
/// the registry compares kind names.
///
/// Adding a kind: one file defining `ModelKind my_kind()` (see ram_kind.cpp) and one
/// line in builtin_kinds() (registry.cpp), or, from a user's program,
/// `model_registry().add(my_kind())` before anything looks the kind up.

#include <attend/models/classifier.h>

#include <nlohmann/json.hpp>

#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace attend::models {

/// What a model of a kind can do. Callers ask these instead of comparing names.
struct Capabilities {
  bool classify = false;         ///< images -> class scores (a Classifier)
  bool stochastic_eval = false;  ///< predictions depend on sampled trajectories (evaluate at M = 1, 10 too)
  bool glimpse_trace = false;    ///< Classifier::glimpse_trace shows where it looked
  bool feature_map = false;      ///< Classifier::features and head (CAM, Grad-CAM)
  bool caption = false;          ///< generates captions
  bool multi_label_only = false; ///< trained only on several classes per image (object scenes)
};

/// One option a user sets for a kind.
struct OptionSpec {
  enum class Type { kInt, kReal, kChoice, kIntList };
  std::string key;                   ///< JSON key in the model's options
  std::string flag;                  ///< command-line name, without "--"
  Type type = Type::kInt;
  nlohmann::json fallback;           ///< the default (JSON of the type; a list for kIntList)
  std::string value_name;            ///< e.g. "N"
  std::string help;
  double min = 0.0, max = 0.0;       ///< inclusive range: kInt, kReal and each kIntList element
  bool min_exclusive = false;        ///< kReal: the value must be greater than min
  std::vector<std::string> choices;  ///< kChoice

  /// "" when `value` is valid for this option, else what is wrong with it
  /// ("must be between 1 and 1000, got 0"), without the option's name.
  std::string problem(const nlohmann::json& value) const;
};

/// The image size a model is built for; stored in its options as "channels",
/// "height" and "width".
struct InputShape {
  std::int64_t channels = 1;
  std::int64_t height = 28;
  std::int64_t width = 28;
};

struct ModelKind {
  std::string name;
  std::string summary;  ///< one line for help
  Capabilities capabilities;
  std::vector<OptionSpec> options;
  /// Builds a model from complete options (as complete_options returns them and
  /// checkpoints store them). throws c10::Error for invalid options.
  std::function<std::unique_ptr<Model>(const nlohmann::json& options)> make;

  const OptionSpec* option(const std::string& key) const;
};

/// OptionSpec makers, so a kind's option list reads as a table.
OptionSpec int_option(std::string key, std::string flag, std::int64_t fallback, std::int64_t min, std::int64_t max,
                      std::string help, std::string value_name = "N");
OptionSpec real_option(std::string key, std::string flag, double fallback, double min, double max, std::string help,
                       bool min_exclusive = false, std::string value_name = "X");
OptionSpec choice_option(std::string key, std::string flag, std::vector<std::string> choices, std::string help,
                         std::string value_name = "NAME");
OptionSpec int_list_option(std::string key, std::string flag, std::vector<std::int64_t> fallback, std::int64_t min,
                           std::int64_t max, std::string help);

/// The options `make` takes: every key of `kind.options` from `user` or its default,
/// plus the input shape ({} or null: all defaults). Keys in `user` that the kind
/// does not know are an error.
/// throws c10::Error naming the key and the problem.
nlohmann::json complete_options(const ModelKind& kind, const nlohmann::json& user, const InputShape& input);

class ModelRegistry {
 public:
  /// throws c10::Error for an empty or duplicate name, a missing factory, or an
  /// option flag that another kind declares with another type.
  void add(ModelKind kind);
  /// nullptr when no kind has that name.
  const ModelKind* find(const std::string& name) const;
  /// throws c10::Error: "unknown model kind 'x' (expected ram, soft, fc or cnn)".
  const ModelKind& at(const std::string& name) const;
  /// In registration order; references stay valid when kinds are added.
  const std::deque<ModelKind>& kinds() const { return kinds_; }
  /// "ram, soft, fc or cnn".
  std::string names() const;

 private:
  std::deque<ModelKind> kinds_;
};

/// The process-wide registry, holding the built-in kinds from the first call on.
/// Register a program's own kinds before other threads use it (add is not locked).
ModelRegistry& model_registry();

/// Builds a model of a registered kind from complete options.
/// throws c10::Error for an unknown kind or invalid options.
std::unique_ptr<Model> make_model(const std::string& kind, const nlohmann::json& options);

/// As make_model, for kinds that classify.
/// throws c10::Error when the kind is unknown or does not classify.
std::unique_ptr<Classifier> make_classifier(const std::string& kind, const nlohmann::json& options);

/// Rebuilds the classifier stored in a checkpoint and loads its weights.
/// throws attend::IoError naming the path for unreadable files, unknown kinds or
/// kinds that do not classify.
std::unique_ptr<Classifier> load_classifier(const std::string& path, CheckpointInfo* info = nullptr);

}  // namespace attend::models
