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
    results.push_back({{"mode", name},
                       {"samples", samples},
                       {"accuracy", r.accuracy},
                       {"error_percent", 100.0 * (1.0 - r.accuracy)},
                       {"nll", r.nll},
                       {"confusion", confusion}});
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
  const auto& confusion = report["results"].back()["confusion"];
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
