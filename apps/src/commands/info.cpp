// attend info: versions, threads, the BLAS in use and its measured speed.
#include "../cli.h"
#include "../validate.h"

#include <attend/attention/additive.h>
#include <attend/datasets/parallel.h>
#include <attend/models/registry.h>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <boost/version.hpp>
#include <nlohmann/json.hpp>
#include <opencv2/core/version.hpp>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <iomanip>
#include <set>

namespace attend::cli {
namespace {

/// Shared libraries mapped into this process whose file name mentions BLAS.
std::vector<std::string> loaded_blas_libraries() {
  std::ifstream maps("/proc/self/maps");
  std::set<std::string> found;
  std::string line;
  while (std::getline(maps, line)) {
    const auto slash = line.find('/');
    if (slash == std::string::npos) continue;
    const std::string path = line.substr(slash);
    const auto name = path.substr(path.rfind('/') + 1);
    std::string lower = path;
    std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
    if (lower.find("blas") != std::string::npos || lower.find("libmkl") != std::string::npos ||
        name.rfind("libblis", 0) == 0) {
      found.insert(path);
    }
  }
  return {found.begin(), found.end()};
}

std::string blas_kind(const std::vector<std::string>& libraries) {
  for (const auto& l : libraries) {
    if (l.find("openblas") != std::string::npos) return "OpenBLAS";
  }
  for (const auto& l : libraries) {
    if (l.find("mkl") != std::string::npos) return "MKL";
    if (l.find("blis") != std::string::npos) return "BLIS";
    if (l.find("atlas") != std::string::npos) return "ATLAS";
  }
  for (const auto& l : libraries) {
    if (l.find("/blas/") != std::string::npos) return "reference BLAS";
  }
  return libraries.empty() ? "none found" : "unknown";
}

/// What a kind can do, as words.
std::vector<std::string> capability_names(const attend::models::Capabilities& c) {
  std::vector<std::string> out;
  if (c.classify) out.emplace_back("classify");
  if (c.stochastic_eval) out.emplace_back("stochastic evaluation");
  if (c.glimpse_trace) out.emplace_back("glimpse trace");
  if (c.feature_map) out.emplace_back("feature map");
  if (c.caption) out.emplace_back("caption");
  return out;
}

/// Median GFLOP/s of an n x n x n fp32 matrix product over `repeats` runs.
double measure_gflops(std::int64_t n, int repeats) {
  torch::NoGradGuard no_grad;
  auto generator = at::make_generator<at::CPUGeneratorImpl>(0);  // leaves the process's generator alone
  auto a = torch::rand({n, n}, generator);
  auto b = torch::rand({n, n}, generator);
  auto c = torch::mm(a, b);  // warm-up: first call loads kernels and pages
  std::vector<double> rates;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    torch::mm_out(c, a, b);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    rates.push_back(2.0 * static_cast<double>(n) * n * n / s / 1e9);
  }
  std::sort(rates.begin(), rates.end());
  return rates[rates.size() / 2];
}

class InfoCommand : public Command {
 public:
  std::string name() const override { return "info"; }
  std::string summary() const override {
    return "show library versions, threads, the BLAS in use and its measured speed";
  }
  std::string usage() const override { return "attend info [--json] [--size N] [--repeats R]"; }
  std::vector<std::string> examples() const override {
    return {"attend info", "attend info --json --size 512", "attend --threads 1 info"};
  }
  std::vector<po::options_description> options() override {
    po::options_description desc("Info options", 100);
    desc.add_options()
        ("json", po::bool_switch(), "print one JSON object instead of text")
        ("size", po::value<std::int64_t>()->default_value(1024)->value_name("N"),
         "side of the square matrices of the speed test (16..8192)")
        ("repeats", po::value<int>()->default_value(5)->value_name("R"),
         "timed matrix products; the median is reported (1..100)");
    return {desc};
  }

  int run(const po::variables_map& vm, const GlobalOptions& /*global*/, Streams& io) override {
    const auto n = require_range<std::int64_t>(vm, "size", 16, 8192);
    const auto repeats = require_range<int>(vm, "repeats", 1, 100);
    const double gflops = measure_gflops(n, repeats);
    const auto libraries = loaded_blas_libraries();
    const auto kind = blas_kind(libraries);
    std::string boost_version = std::to_string(BOOST_VERSION / 100000) + "." +
                                std::to_string(BOOST_VERSION / 100 % 1000) + "." + std::to_string(BOOST_VERSION % 100);
    const auto warning = blas_speed_warning(gflops, n, kind, attend::datasets::blas_threads());
    nlohmann::json kinds = nlohmann::json::array();
    for (const auto& k : attend::models::model_registry().kinds()) {
      kinds.push_back({{"name", k.name}, {"capabilities", capability_names(k.capabilities)}});
    }
    if (vm["json"].as<bool>()) {
      nlohmann::json j = {{"attend", version()},
                          {"libtorch", TORCH_VERSION},
                          {"opencv", CV_VERSION},
                          {"boost", boost_version},
                          {"intra_op_threads", at::get_num_threads()},
                          {"inter_op_threads", at::get_num_interop_threads()},
                          {"parallel_for_threads", attend::datasets::parallel_for_threads()},
                          {"blas", kind},
                          {"blas_threads", attend::datasets::blas_threads()},
                          {"blas_libraries", libraries},
                          {"matmul_size", n},
                          {"matmul_gflops", gflops},
                          {"additive_decoding_isa", attend::attention::additive_decoding_isa()},
                          {"model_kinds", kinds},
                          {"warning", warning}};
      io.out << j.dump(2) << "\n";
    } else {
      io.out << "attend        " << version() << "\n"
             << "LibTorch      " << TORCH_VERSION << "\n"
             << "OpenCV        " << CV_VERSION << "\n"
             << "Boost         " << boost_version << "\n"
             << "threads       " << at::get_num_threads() << " intra-op, " << at::get_num_interop_threads()
             << " inter-op; attend's own loops split over " << attend::datasets::parallel_for_threads() << "\n"
             << "BLAS          " << kind;
      if (const int b = attend::datasets::blas_threads(); b > 0) io.out << ", " << b << (b == 1 ? " thread" : " threads");
      io.out << "\n";
      for (const auto& l : libraries) io.out << "              " << l << "\n";
      std::size_t name_width = 0;
      for (const auto& k : kinds) name_width = std::max(name_width, k["name"].get<std::string>().size());
      for (size_t i = 0; i < kinds.size(); ++i) {
        std::string caps;
        for (const auto& c : kinds[i]["capabilities"]) caps += (caps.empty() ? "" : ", ") + c.get<std::string>();
        io.out << (i == 0 ? "model kinds   " : "              ") << std::left
               << std::setw(static_cast<int>(name_width + 2)) << kinds[i]["name"].get<std::string>() << std::right
               << caps << "\n";
      }
      io.out << "kernels       additive decoding: " << attend::attention::additive_decoding_isa() << "\n";
      io.out << "fp32 matmul   " << std::fixed << std::setprecision(1) << gflops << " GFLOP/s (" << n << "^3, median of "
             << repeats << ")\n";
    }
    if (!warning.empty()) io.err << "attend: warning: " << warning << "\n";
    return kSuccess;
  }
};

}  // namespace

std::string blas_speed_warning(double gflops, std::int64_t n, const std::string& kind, int blas_threads) {
  if (n < 512) return "";
  const auto speed = "matrix products run at " + std::to_string(static_cast<int>(gflops)) + " GFLOP/s";
  if (kind == "OpenBLAS") {
    const int threads = std::max(1, blas_threads);
    if (gflops >= 20.0 * threads) return "";
    return speed + " although OpenBLAS is in use on " + std::to_string(threads) +
           (threads == 1 ? " thread" : " threads") +
           ": other processes are busy on this process's cores, or a CPU quota throttles it";
  }
  if (gflops >= 50.0) return "";
  if (kind == "MKL" || kind == "BLIS" || kind == "ATLAS") {
    return speed + " with " + kind + "; attend is built and measured with OpenBLAS (libopenblas0-pthread, which "
           "scripts/setup installs): check which BLAS the alternatives system selects";
  }
  return speed + ", which means the reference BLAS is in use (" + kind + "); install libopenblas0-pthread "
         "(scripts/setup does) for about 50 times the speed";
}

std::unique_ptr<Command> make_info_command() { return std::make_unique<InfoCommand>(); }

}  // namespace attend::cli
