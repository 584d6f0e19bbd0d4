// market.hpp: a read-only view of the bar data every env and every thread shares.
#pragma once

#include <cstdint>

namespace fastrl {

// Bits of MarketView::session_flags, computed from the bar timestamps in Python
// (fastrl.env.session_flags) so the step kernel never parses a clock.
enum SessionFlag : uint8_t {
  kSquareOff = 1,      // intraday: a position must be flat after this bar's close (the last
                       // close at or before the cutoff, every later bar of the session, and
                       // the session's last bar)
  kNoEntryAtOpen = 2,  // intraday: a fill at this bar's open may not open a position (the
                       // session was already squared off)
  kSessionEnd = 4,     // the last bar of its trading day: a position marked here is held
                       // overnight (short borrow is charged per such close)
};

// Segment s (one symbol's bars of one split) is rows [offsets[s], offsets[s + 1]).
// The arrays are owned by the caller (numpy in practice) and never written here.
struct MarketView {
  const double* open = nullptr;     // [num_bars]
  const double* close = nullptr;    // [num_bars]
  const float* features = nullptr;  // [num_bars, num_features], row-major
  const int64_t* offsets = nullptr; // [num_segments + 1]
  const uint8_t* session_flags = nullptr;  // [num_bars] SessionFlag bits; needed only by the
                                           // intraday square-off and the short borrow fee
  int64_t num_bars = 0;
  int64_t num_features = 0;
  int64_t num_segments = 0;

  int64_t segment_begin(int64_t s) const { return offsets[s]; }
  int64_t segment_end(int64_t s) const { return offsets[s + 1]; }
};

}  // namespace fastrl
