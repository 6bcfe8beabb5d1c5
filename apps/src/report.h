#pragma once
/// Evaluation reports shared by train and eval: JSON and text.

#include <attend/datasets/source.h>
#include <attend/models/classifier.h>

#include <nlohmann/json.hpp>

#include <iosfwd>
#include <string>

namespace attend::cli {

/// Evaluates `classifier` on `source`. For kinds with stochastic evaluation (the RAM)
/// three modes: the policy mean (deterministic), M=1 and M=10 sampled trajectories,
/// drawn from a generator seeded with 0 (reproducible); otherwise one.
nlohmann::json evaluation_report(models::Classifier& classifier, const datasets::ImageSource& source,
                                 const std::string& checkpoint);

void print_evaluation(std::ostream& out, const nlohmann::json& report);

/// Writes JSON atomically (attend::AtomicFile).
void write_json_file(const std::string& path, const nlohmann::json& j);

}  // namespace attend::cli
