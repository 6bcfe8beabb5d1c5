// The cost of attend's collectives on this machine, without any training around them
// (docs/distributed.md): one process per rank, started by hand with torchrun's
// variables, e.g. two ranks on this machine:
//
//   for r in 0 1; do RANK=$r WORLD_SIZE=2 MASTER_PORT=29611 OMP_NUM_THREADS=1 \
//     build/bench/allreduce_bench 300 [spin] & done; wait
//
// For each size, every rank all-reduces a float32 tensor of that many bytes `repeats`
// times (after a tenth as many unmeasured ones, the ranks aligned by a small
// all-reduce before each), and rank 0 prints the median and the 10th/90th percentiles
// of one all-reduce in milliseconds, and the payload rate. With `spin`, the ranks
// wait for each collective by polling it (ProcessGroupOptions::spin_wait).
#include <attend/models/distributed.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

namespace am = attend::models;
using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

struct Percentiles {
  double p10, p50, p90;
};

Percentiles percentiles(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  auto at = [&](double q) { return v[static_cast<std::size_t>(q * static_cast<double>(v.size() - 1) + 0.5)]; };
  return {at(0.1), at(0.5), at(0.9)};
}

}  // namespace

int main(int argc, char** argv) {
  const int repeats = argc > 1 ? std::max(10, std::atoi(argv[1])) : 300;
  try {
    const bool spin = argc > 2 && std::string(argv[2]) == "spin";
    auto group = am::ProcessGroup::from_environment(am::ProcessGroupOptions().spin_wait(spin));
    if (!group) {
      std::fprintf(stderr, "allreduce_bench: set RANK and WORLD_SIZE (and MASTER_PORT) for each rank\n");
      return 2;
    }
    const bool report = group->rank() == 0;
    auto align = torch::zeros({1});
    if (report) {
      std::printf("%d ranks, %d all-reduces per size, waiting %s\n", group->size(), repeats,
                  spin ? "by polling" : "asleep");
    }
    if (report) std::printf("%10s %9s %9s %9s %10s\n", "bytes", "p10 ms", "median", "p90 ms", "MB/s");
    for (const std::int64_t bytes : {4LL << 10, 64LL << 10, 256LL << 10, 1LL << 20, 4LL << 20}) {
      auto t = torch::ones({bytes / 4});
      std::vector<double> times;
      for (int i = 0; i < repeats + repeats / 10; ++i) {
        group->all_reduce_sum(align, "align");
        const auto t0 = Clock::now();
        group->all_reduce_sum(t, "the measured all-reduce");
        if (i >= repeats / 10) times.push_back(ms_since(t0));
      }
      const auto p = percentiles(times);
      if (report) {
        std::printf("%10lld %9.3f %9.3f %9.3f %10.0f\n", static_cast<long long>(bytes), p.p10, p.p50, p.p90,
                    static_cast<double>(bytes) / 1e3 / p.p50);
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "allreduce_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
