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

}  // namespace attend::datasets
