// costs.hpp: what an order costs. Rates are fractions of traded notional.
//
// The presets (NSE delivery, NSE intraday, plain bps) live in python/fastrl/costs.py with
// every rate and its source; the simulator only needs the folded numbers below.
#pragma once

#include <algorithm>

namespace fastrl {

struct CostModel {
  double buy_rate = 0.0;         // taxes, fees, half-spread, slippage on a buy, per notional
  double sell_rate = 0.0;        // same on a sell (STT and stamp duty differ by side)
  double brokerage_rate = 0.0;   // brokerage per unit notional ...
  double brokerage_cap = 0.0;    // ... capped per order (e.g. Rs 20); +inf for no cap
  double gst_on_brokerage = 0.0; // GST charged on brokerage (GST on exchange fees is in the rates)
  double fixed_fee_buy = 0.0;    // per executed buy order, in currency
  double fixed_fee_sell = 0.0;   // per executed sell order (e.g. depository charge)
};

// Cost of one executed order of the given |notional|; buy = true for a buy.
inline double order_cost(const CostModel& m, bool buy, double notional) {
  const double brokerage = std::min(notional * m.brokerage_rate, m.brokerage_cap);
  return notional * (buy ? m.buy_rate : m.sell_rate) + brokerage * (1.0 + m.gst_on_brokerage) +
         (buy ? m.fixed_fee_buy : m.fixed_fee_sell);
}

}  // namespace fastrl
