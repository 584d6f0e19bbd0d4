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
  int64_t vol_window = 60;   // close-to-close returns in the trailing volatility (vol_scaled)

  // Whether the simulator must keep the shadow benchmark book for this reward.
  bool needs_benchmark() const {
    return kind == RewardKind::kActive ||
           (active_base && (kind == RewardKind::kDiffSharpe || kind == RewardKind::kVolScaled));
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
      if (rp.active_base) r -= ctx.bench_after / ctx.bench_before - 1.0;
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
  peak_equity = std::max(peak_equity, equity_after);
  if (rp.drawdown_penalty > 0.0) reward -= rp.drawdown_penalty * (1.0 - equity_after / peak_equity);
  if (rp.turnover_penalty > 0.0)
    reward -= rp.turnover_penalty * (traded_notional / equity_before);
  return reward;
}

}  // namespace fastrl
