// market.hpp: a read-only view of the bar data every env and every thread shares.
#pragma once

#include <cstdint>

namespace fastrl {

// Segment s (one symbol's bars of one split) is rows [offsets[s], offsets[s + 1]).
// The arrays are owned by the caller (numpy in practice) and never written here.
struct MarketView {
  const double* open = nullptr;     // [num_bars]
  const double* close = nullptr;    // [num_bars]
  const float* features = nullptr;  // [num_bars, num_features], row-major
  const int64_t* offsets = nullptr; // [num_segments + 1]
  int64_t num_bars = 0;
  int64_t num_features = 0;
  int64_t num_segments = 0;

  int64_t segment_begin(int64_t s) const { return offsets[s]; }
  int64_t segment_end(int64_t s) const { return offsets[s + 1]; }
};

}  // namespace fastrl
