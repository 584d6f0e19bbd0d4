// rng.hpp: splitmix64, one stream per env derived from (seed, env index).
//
// Small, fast and trivially reproducible in numpy (reference.py implements the same
// arithmetic), so a trajectory depends on the seed alone and never on the thread count.
#pragma once

#include <cstdint>

namespace fastrl {

constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ULL;

inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// Initial state of env `index`'s stream.
inline uint64_t env_stream_seed(uint64_t seed, uint64_t index) {
  return mix64((seed ^ 0x5851F42D4C957F2DULL) + kGolden * (index + 1));
}

// Advances the state and returns the next 64 random bits.
inline uint64_t next_u64(uint64_t& state) {
  state += kGolden;
  return mix64(state);
}

// Uniform integer in [0, n), n >= 1. The modulo bias (n / 2^64) is far below anything
// an episode start could show, and keeps the numpy reference a one-liner.
inline uint64_t next_below(uint64_t& state, uint64_t n) { return next_u64(state) % n; }

}  // namespace fastrl
