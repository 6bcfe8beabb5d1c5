#pragma once
/// What at::parallel_for does in attend's own compiled code.

#include <cstddef>
#include <cstdint>

namespace attend::datasets {

/// How many distinct threads run the chunks of an at::parallel_for over `n` items with
/// grain 1, as compiled into attend's libraries, at the current intra-op thread count.
/// LibTorch 1.13's at::parallel_for is OpenMP inline in its headers: compiled without
/// -fopenmp it runs serially and this is 1 whatever the thread count.
/// requires: n >= 1.
std::size_t parallel_for_threads(std::int64_t n = 64);

/// OpenBLAS (Debian's libopenblas0-pthread, which LibTorch calls for matrix products)
/// runs a thread pool of its own, sized by OPENBLAS_NUM_THREADS or else one thread per
/// core, whatever at::set_num_threads says; its idle threads spin in sched_yield. These
/// reach it through the loaded library's symbols, so they work with any BLAS: the
/// number of threads OpenBLAS multiplies matrices on, or 0 when the BLAS in use is not
/// OpenBLAS.
int blas_threads();

/// Sets OpenBLAS's thread count; false (and nothing changed) when the BLAS in use is not
/// OpenBLAS. requires: n >= 1.
bool set_blas_threads(int n);

}  // namespace attend::datasets
