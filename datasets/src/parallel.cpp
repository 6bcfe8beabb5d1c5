#include "attend/datasets/parallel.h"

#include <ATen/Parallel.h>
#include <c10/util/Exception.h>

#include <dlfcn.h>

#include <mutex>
#include <set>
#include <thread>

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

int blas_threads() { return openblas().get != nullptr ? openblas().get() : 0; }

bool set_blas_threads(int n) {
  TORCH_CHECK(n >= 1, "set_blas_threads: n must be >= 1, got ", n);
  if (openblas().set == nullptr) return false;
  openblas().set(n);
  return true;
}

}  // namespace attend::datasets
