#include "report.h"

#include <attend/atomic_file.h>
#include <attend/models/registry.h>
#include <attend/models/train.h>

#include <ATen/CPUGeneratorImpl.h>

#include <torch/torch.h>

#include <iomanip>
#include <ostream>

namespace attend::cli {

nlohmann::json evaluation_report(models::Classifier& classifier, const datasets::ImageSource& source,
                                 const std::string& checkpoint, const EvalModes& wanted) {
  nlohmann::json report = {{"checkpoint", checkpoint}, {"kind", classifier.kind()}, {"count", source.size()}};
  std::vector<std::pair<std::string, std::int64_t>> modes{{"deterministic", 0}};
  if (models::model_registry().at(classifier.kind()).capabilities.stochastic_eval) {
    modes.clear();
    if (wanted.mean) modes.emplace_back("mean location", 0);
    for (const auto m : wanted.samples) {
      TORCH_CHECK(m >= 1, "evaluation: sampled trajectories must be >= 1, got ", m);
      modes.emplace_back("M=" + std::to_string(m), m);
    }
    TORCH_CHECK(!modes.empty(), "evaluation: no mode to evaluate");
  }
  nlohmann::json results = nlohmann::json::array();
  for (const auto& [name, samples] : modes) {
    // Each sampled mode draws from its own generator: reproducible, and the same
    // numbers whichever modes come before it.
    const auto r = models::evaluate_classifier(classifier, source, samples, 256,
                                               at::make_generator<at::CPUGeneratorImpl>(0));
    std::vector<std::vector<std::int64_t>> confusion;
    for (std::int64_t i = 0; i < r.confusion.size(0); ++i) {
      std::vector<std::int64_t> row(static_cast<size_t>(r.confusion.size(1)));
      for (std::int64_t j = 0; j < r.confusion.size(1); ++j) row[static_cast<size_t>(j)] = r.confusion[i][j].item<std::int64_t>();
      confusion.push_back(row);
    }
    nlohmann::json result = {{"mode", name},
                             {"samples", samples},
                             {"accuracy", r.accuracy},
                             {"error_percent", 100.0 * (1.0 - r.accuracy)},
                             {"nll", r.nll}};
    if (r.multi_label) {
      // Per class: true positives, false positives, false negatives, and their rates.
      nlohmann::json classes = nlohmann::json::array();
      double f1_sum = 0;
      for (const auto& row : confusion) {
        const double tp = static_cast<double>(row[0]), fp = static_cast<double>(row[1]),
                     fn = static_cast<double>(row[2]);
        const double precision = tp + fp > 0 ? tp / (tp + fp) : 0.0, recall = tp + fn > 0 ? tp / (tp + fn) : 0.0;
        const double f1 = precision + recall > 0 ? 2 * precision * recall / (precision + recall) : 0.0;
        f1_sum += f1;
        classes.push_back({{"tp", row[0]}, {"fp", row[1]}, {"fn", row[2]}, {"precision", precision},
                           {"recall", recall}, {"f1", f1}});
      }
      result["multi_label"] = true;
      result["classes"] = classes;
      result["mean_f1"] = confusion.empty() ? 0.0 : f1_sum / static_cast<double>(confusion.size());
    } else {
      result["confusion"] = confusion;
    }
    results.push_back(result);
  }
  report["results"] = results;
  return report;
}

void print_evaluation(std::ostream& out, const nlohmann::json& report) {
  out << "test set: " << report["count"].get<std::int64_t>() << " images, checkpoint "
      << report["checkpoint"].get<std::string>() << "\n";
  for (const auto& r : report["results"]) {
    out << "  " << std::left << std::setw(15) << r["mode"].get<std::string>() << " accuracy " << std::fixed
        << std::setprecision(2) << 100.0 * r["accuracy"].get<double>() << "%  error "
        << r["error_percent"].get<double>() << "%\n";
  }
  const auto& last = report["results"].back();
  if (last.value("multi_label", false)) {
    out << "  (accuracy = images whose whole set of classes is right)  mean F1 over classes " << std::fixed
        << std::setprecision(3) << last["mean_f1"].get<double>() << "\n  class  precision  recall     F1\n";
    for (size_t i = 0; i < last["classes"].size(); ++i) {
      const auto& c = last["classes"][i];
      out << "  " << std::right << std::setw(5) << i << "  " << std::setw(9) << c["precision"].get<double>() << "  "
          << std::setw(6) << c["recall"].get<double>() << "  " << std::setw(5) << c["f1"].get<double>() << "\n";
    }
    return;
  }
  const auto& confusion = last["confusion"];
  out << "confusion (" << report["results"].back()["mode"].get<std::string>()
      << "; rows = true class, columns = predicted):\n";
  for (size_t i = 0; i < confusion.size(); ++i) {
    out << "  " << std::right << std::setw(3) << i << " |";
    for (const auto& v : confusion[i]) out << std::setw(5) << v.get<std::int64_t>();
    out << "\n";
  }
}

void write_json_file(const std::string& path, const nlohmann::json& j) {
  write_file_atomically(path, j.dump(2) + "\n");
}

}  // namespace attend::cli
