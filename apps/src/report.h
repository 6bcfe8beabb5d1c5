#pragma once
/// Evaluation reports shared by train and eval: JSON and text.

#include <attend/datasets/source.h>
#include <attend/models/classifier.h>

#include <nlohmann/json.hpp>

#include <iosfwd>
#include <string>
#include <vector>

namespace attend::cli {

/// Which rows an evaluation report has. For kinds with stochastic evaluation (the
/// RAM): the policy-mean row when `mean` is set, then one row per entry of `samples`
/// (M sampled trajectories whose log-probabilities are averaged). Kinds without it
/// have one deterministic row whatever these say.
struct EvalModes {
  bool mean = true;
  std::vector<std::int64_t> samples{1, 10};
};

/// Evaluates `classifier` on `source` in `modes`. Each sampled row draws from its own
/// generator seeded with 0, so its figures are reproducible and do not depend on which
/// rows come before it.
nlohmann::json evaluation_report(models::Classifier& classifier, const datasets::ImageSource& source,
                                 const std::string& checkpoint, const EvalModes& modes = {});

void print_evaluation(std::ostream& out, const nlohmann::json& report);

/// Writes JSON atomically (attend::AtomicFile).
void write_json_file(const std::string& path, const nlohmann::json& j);

}  // namespace attend::cli
