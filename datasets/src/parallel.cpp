#include "attend/datasets/parallel.h"

#include <ATen/Parallel.h>
#include <c10/util/Exception.h>

#include <dlfcn.h>
#include <sched.h>

#include <algorithm>
#include <exception>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

namespace attend::datasets {

std::size_t parallel_for_threads(std::int64_t n) {
  TORCH_CHECK(n >= 1, "parallel_for_threads: n must be >= 1, got ", n);
  std::mutex m;
  std::set<std::thread::id> ids;
  at::parallel_for(0, n, 1, [&](std::int64_t, std::int64_t) {
    const std::lock_guard<std::mutex> lock(m);
    ids.insert(std::this_thread::get_id());
  });
  return ids.size();
}

namespace {

struct OpenBlas {
  void (*set)(int) = nullptr;
  int (*get)() = nullptr;
};

/// OpenBLAS's thread functions in the process (LibTorch loads the BLAS as a global
/// dependency), or nulls.
const OpenBlas& openblas() {
  static const OpenBlas functions = [] {
    OpenBlas f;
    f.set = reinterpret_cast<void (*)(int)>(::dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
    f.get = reinterpret_cast<int (*)()>(::dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
    if (f.set == nullptr || f.get == nullptr) f = OpenBlas{};
    return f;
  }();
  return functions;
}

}  // namespace

int cores_under_quota(long long quota_us, long long period_us, int cpus) {
  cpus = std::max(1, cpus);
  if (quota_us <= 0 || period_us <= 0) return cpus;
  const long long allowed = (quota_us + period_us - 1) / period_us;
  return static_cast<int>(std::clamp<long long>(allowed, 1, cpus));
}

int cores_under_cpu_max(const std::string& cpu_max, int cpus) {
  std::istringstream in(cpu_max);
  std::string quota;
  long long period = 0;
  if (!(in >> quota >> period) || quota == "max") return std::max(1, cpus);
  try {
    std::size_t used = 0;
    const long long q = std::stoll(quota, &used);
    if (used != quota.size()) return std::max(1, cpus);
    return cores_under_quota(q, period, cpus);
  } catch (const std::exception&) {
    return std::max(1, cpus);
  }
}

namespace {

/// The first line of a file, or "" when it cannot be read.
std::string first_line(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  if (in) std::getline(in, line);
  return line;
}

/// The cgroup folders from `root` down to `root` + `path` ("/a/b": root, root/a,
/// root/a/b).
std::vector<std::string> cgroup_chain(const std::string& root, const std::string& path) {
  std::vector<std::string> dirs{root};
  std::string dir = root;
  std::istringstream parts(path);
  for (std::string part; std::getline(parts, part, '/');) {
    if (part.empty() || part == "." || part == "..") continue;
    dir += "/" + part;
    dirs.push_back(dir);
  }
  return dirs;
}

}  // namespace

int cores_under_cgroup_quota(const std::string& proc_self_cgroup, const std::string& root, int cpus) {
  cpus = std::max(1, cpus);
  // Sets: the root comes again at the top of every chain.
  std::set<std::string> v2_dirs{root}, v1_dirs{root + "/cpu", root + "/cpu,cpuacct"};
  std::istringstream self(proc_self_cgroup);
  for (std::string line; std::getline(self, line);) {
    // "0::/path" (v2) or "N:cpu,cpuacct:/path" (v1).
    const auto a = line.find(':'), b = a == std::string::npos ? a : line.find(':', a + 1);
    if (b == std::string::npos) continue;
    const auto controllers = line.substr(a + 1, b - a - 1), path = line.substr(b + 1);
    if (line.compare(0, a, "0") == 0 && controllers.empty()) {
      for (auto& dir : cgroup_chain(root, path)) v2_dirs.insert(std::move(dir));
    }
    std::istringstream names(controllers);
    for (std::string name; std::getline(names, name, ',');) {
      if (name != "cpu") continue;
      for (const auto* mount : {"/cpu", "/cpu,cpuacct"}) {
        for (auto& dir : cgroup_chain(root + mount, path)) v1_dirs.insert(std::move(dir));
      }
    }
  }
  int cores = cpus;
  for (const auto& dir : v2_dirs) {
    const auto text = first_line(dir + "/cpu.max");
    if (!text.empty()) cores = std::min(cores, cores_under_cpu_max(text, cpus));
  }
  for (const auto& dir : v1_dirs) {
    const auto quota = first_line(dir + "/cpu.cfs_quota_us"), period = first_line(dir + "/cpu.cfs_period_us");
    if (quota.empty() || period.empty()) continue;
    try {
      cores = std::min(cores, cores_under_quota(std::stoll(quota), std::stoll(period), cpus));
    } catch (const std::exception&) {
      // An unreadable quota is no quota.
    }
  }
  return cores;
}

int available_cores() {
  int cpus = static_cast<int>(std::max(1U, std::thread::hardware_concurrency()));
  cpu_set_t mask;
  CPU_ZERO(&mask);
  if (::sched_getaffinity(0, sizeof(mask), &mask) == 0) cpus = std::max(1, CPU_COUNT(&mask));
  std::ifstream in("/proc/self/cgroup");
  std::stringstream text;
  text << in.rdbuf();
  return cores_under_cgroup_quota(text.str(), "/sys/fs/cgroup", cpus);
}

int blas_threads() { return openblas().get != nullptr ? openblas().get() : 0; }

bool set_blas_threads(int n) {
  TORCH_CHECK(n >= 1, "set_blas_threads: n must be >= 1, got ", n);
  if (openblas().set == nullptr) return false;
  openblas().set(n);
  return true;
}

}  // namespace attend::datasets
