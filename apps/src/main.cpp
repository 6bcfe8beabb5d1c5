#include "cli.h"

#include <malloc.h>
#include <unistd.h>

#include <cstdlib>
#include <iostream>

int main(int argc, char** argv) try {
  // LibTorch's OpenMP workers spin while OpenBLAS's own threads do the matrix
  // products, and on 2 cores they starve each other: RAM training measured 5x
  // slower. The wait policy is read when libgomp loads, before main, so set it and
  // start again once (an explicit OMP_WAIT_POLICY from the user is respected).
  if (std::getenv("OMP_WAIT_POLICY") == nullptr) {
    ::setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
    ::execv("/proc/self/exe", argv);  // returns only on failure: carry on as we are
  }
  // glibc hands blocks above its mmap threshold straight back to the kernel and trims
  // the heap top, so the tensors of every step are faulted in afresh (about 0.4 ms per
  // MiB on these machines; docs/performance.md). Keep freed memory for reuse instead.
  ::mallopt(M_MMAP_THRESHOLD, 32 << 20);
  ::mallopt(M_TRIM_THRESHOLD, 1 << 30);
  return attend::cli::run_cli(argc, argv, std::cout, std::cerr);
} catch (...) {
  std::cerr << "attend: error: unexpected failure\n";
  return attend::cli::kFailure;
}
