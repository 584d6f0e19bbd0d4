// rewards.hpp: the per-step reward kinds.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace fastrl {

enum class RewardKind : int {
  kLogReturn = 0,     // log(equity_{t+1} / equity_t)
  kPnl = 1,           // (equity_{t+1} - equity_t) / initial_cash
  kDiffSharpe = 2,    // Moody & Saffell's differential Sharpe ratio of simple returns
  kActive = 3,        // log(equity_{t+1} / equity_t) - log(bench_{t+1} / bench_t)
  kVolScaled = 4,     // the log return (or the active one) / the trailing volatility
};

// The benchmark book's equity over the step and the trailing volatility of the market up to
// the step's decision bar: what the benchmark-relative and vol-scaled rewards read. Left at
// the defaults (no benchmark, unit volatility) where the reward reads neither.
struct StepContext {
  double bench_before = 1.0;
  double bench_after = 1.0;
  double vol = 1.0;
};

struct RewardParams {
  RewardKind kind = RewardKind::kLogReturn;
  double dsr_eta = 0.01;          // adaptation rate of the differential Sharpe moments
  double drawdown_penalty = 0.0;  // times the current drawdown from the episode's peak equity
  double turnover_penalty = 0.0;  // times traded notional / equity before the trade
  bool active_base = false;  // diff_sharpe / vol_scaled on the return minus the benchmark's
  int64_t vol_window = 60;   // close-to-close returns in the trailing volatility (needs_vol)

  // Whether the simulator must keep the shadow benchmark book for this reward.
  bool needs_benchmark() const {
    return kind == RewardKind::kActive ||
           (active_base && (kind == RewardKind::kDiffSharpe || kind == RewardKind::kVolScaled));
  }
  // Whether the reward reads the trailing volatility (StepContext::vol): vol_scaled divides
  // by it; the differential Sharpe on active returns floors its variance with it.
  bool needs_vol() const {
    return kind == RewardKind::kVolScaled || (active_base && kind == RewardKind::kDiffSharpe);
  }
};

// A volatility never falls below this (a daily return's 1 bp): a flat stretch of prices
// would otherwise make the vol-scaled reward infinite.
constexpr double kVolFloor = 1e-4;

// Sample standard deviation of rets[0..n) (n - 1 in the denominator), floored at kVolFloor;
// the floor where n < 2. Sums in index order (python/fastrl/reference.py does the same).
inline double trailing_vol(const double* rets, int64_t n) {
  if (n < 2) return kVolFloor;
  double mean = 0.0;
  for (int64_t k = 0; k < n; ++k) mean += rets[k];
  mean /= static_cast<double>(n);
  double ss = 0.0;
  for (int64_t k = 0; k < n; ++k) ss += (rets[k] - mean) * (rets[k] - mean);
  return std::max(std::sqrt(ss / static_cast<double>(n - 1)), kVolFloor);
}

// The trailing volatility of every row of one segment whose close-to-close returns are
// rets[0..n) (rets[k]: the return into row k + 1 of the segment), written to vol[0..n].
// Row t reads the window returns up to it; rows with fewer than window returns behind them
// (the segment's first window rows) take the segment's first full estimate (its first
// window returns, all of them if it has fewer), so a segment start is scaled like the rest
// rather than by the 1 bp floor of an empty window. That estimate reads up to window bars
// past those rows: it sets the scale of a training reward, never an observation.
inline void segment_vols(const double* rets, int64_t n, int64_t window, double* vol) {
  const double first = trailing_vol(rets, std::min(n, window));
  for (int64_t t = 0; t <= n; ++t)
    vol[t] = t < window ? first : trailing_vol(rets + (t - window), window);
}

// Differential Sharpe on active returns: the variance estimate never falls below this
// fraction of the squared trailing volatility of the market (the symbol; a portfolio's
// equal-weight index), the variance of the active return of a deviation of half the book.
// An agent at the benchmark earns exactly 0, so without a floor the moments decay toward 0
// and a later deviation would be scored by an ever larger 1 / sqrt(variance).
constexpr double kDsrVarFloor = 0.25;

// Differential Sharpe ratio for simple return r, given the running first and second
// moments (a, b) before this step; updates them in place. An episode starts the moments
// from the returns inside its first observation window (Simulator::reset_env); zero while
// the variance estimate is degenerate (a flat window, or window 1).
inline double differential_sharpe(double r, double& a, double& b, double eta) {
  const double da = r - a;
  const double db = r * r - b;
  const double var = b - a * a;
  const double d = var > 1e-12 ? (b * da - 0.5 * a * db) / (var * std::sqrt(var)) : 0.0;
  a += eta * da;
  b += eta * db;
  return d;
}

// The reward of one step from equity_before to equity_after, penalties included, as both
// simulators compute it; traded_notional is what the step's orders traded (the turnover
// penalty charges it as a fraction of equity_before); ctx is the benchmark's equity over
// the same step and the trailing volatility (StepContext). Updates the differential Sharpe
// moments (a, b) and the episode's peak equity in place.
inline double step_reward(const RewardParams& rp, double initial_cash, double equity_before,
                          double equity_after, double traded_notional, double& a, double& b,
                          double& peak_equity, const StepContext& ctx = StepContext{}) {
  // A gap can wipe out a leveraged book; keep the log finite (the floor terminates it).
  auto log_return = [&] {
    return std::log(std::max(equity_after, 1e-9 * initial_cash) / equity_before);
  };
  auto bench_log = [&] {
    return std::log(std::max(ctx.bench_after, 1e-9 * initial_cash) / ctx.bench_before);
  };
  double reward;
  switch (rp.kind) {
    case RewardKind::kPnl:
      reward = (equity_after - equity_before) / initial_cash;
      break;
    case RewardKind::kDiffSharpe: {
      double r = equity_after / equity_before - 1.0;
      if (rp.active_base) {
        r -= ctx.bench_after / ctx.bench_before - 1.0;
        b = std::max(b, a * a + kDsrVarFloor * ctx.vol * ctx.vol);
      }
      reward = differential_sharpe(r, a, b, rp.dsr_eta);
      break;
    }
    case RewardKind::kActive:
      reward = log_return() - bench_log();
      break;
    case RewardKind::kVolScaled:
      reward = (rp.active_base ? log_return() - bench_log() : log_return()) / ctx.vol;
      break;
    case RewardKind::kLogReturn:
    default:
      reward = log_return();
      break;
  }
  // The penalties are fractions of equity, on the scale of a return: vol_scaled divides
  // them by the same volatility as the return, so a penalty weighs against the return as it
  // does under log_return.
  const double penalty_scale = rp.kind == RewardKind::kVolScaled ? ctx.vol : 1.0;
  peak_equity = std::max(peak_equity, equity_after);
  if (rp.drawdown_penalty > 0.0)
    reward -= rp.drawdown_penalty * (1.0 - equity_after / peak_equity) / penalty_scale;
  if (rp.turnover_penalty > 0.0)
    reward -= rp.turnover_penalty * (traded_notional / equity_before) / penalty_scale;
  return reward;
}

}  // namespace fastrl
