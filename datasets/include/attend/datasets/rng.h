#pragma once
/// A small counter-based random source for data generation. Unlike the std::
/// distributions, its streams are the same on every platform and standard library,
/// so a data set generated with the same seed is byte-identical everywhere.

#include <cstdint>

namespace attend::datasets {

/// SplitMix64 finaliser: a bijective mix of 64 bits.
constexpr std::uint64_t mix64(std::uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

/// Derives an independent stream key from a seed and a list of counters
/// (e.g. seed, epoch, sample index).
constexpr std::uint64_t stream_key(std::uint64_t seed, std::uint64_t a, std::uint64_t b = 0) {
  return mix64(mix64(mix64(seed) ^ a) ^ (b * 0xd1b54a32d192ed03ULL));
}

class Rng {
 public:
  explicit constexpr Rng(std::uint64_t seed) : state_(seed) {}

  /// Next 64 uniformly distributed bits.
  constexpr std::uint64_t next() {
    state_ += 0x9e3779b97f4a7c15ULL;
    std::uint64_t z = state_;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }

  /// Uniform integer in [0, n) without modulo bias. requires n > 0.
  constexpr std::int64_t uniform_int(std::int64_t n) {
    const auto un = static_cast<std::uint64_t>(n);
    const std::uint64_t threshold = (0 - un) % un;  // 2^64 mod n
    for (;;) {
      const std::uint64_t r = next();
      if (r >= threshold) return static_cast<std::int64_t>(r % un);
    }
  }

  /// Uniform double in [0, 1) with 53 random bits.
  constexpr double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

 private:
  std::uint64_t state_;
};

}  // namespace attend::datasets
