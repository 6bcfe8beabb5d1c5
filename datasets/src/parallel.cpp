#include "attend/datasets/parallel.h"

#include <ATen/Parallel.h>
#include <c10/util/Exception.h>

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

}  // namespace attend::datasets
