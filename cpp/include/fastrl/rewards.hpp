// rewards.hpp: the per-step reward kinds.
#pragma once

#include <algorithm>
#include <cmath>

namespace fastrl {

enum class RewardKind : int {
  kLogReturn = 0,     // log(equity_{t+1} / equity_t)
  kPnl = 1,           // (equity_{t+1} - equity_t) / initial_cash
  kDiffSharpe = 2,    // Moody & Saffell's differential Sharpe ratio of simple returns
};

struct RewardParams {
  RewardKind kind = RewardKind::kLogReturn;
  double dsr_eta = 0.01;          // adaptation rate of the differential Sharpe moments
  double drawdown_penalty = 0.0;  // times the current drawdown from the episode's peak equity
  double turnover_penalty = 0.0;  // times traded notional / equity before the trade
};

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
// penalty charges it as a fraction of equity_before). Updates the differential Sharpe
// moments (a, b) and the episode's peak equity in place.
inline double step_reward(const RewardParams& rp, double initial_cash, double equity_before,
                          double equity_after, double traded_notional, double& a, double& b,
                          double& peak_equity) {
  double reward;
  switch (rp.kind) {
    case RewardKind::kPnl:
      reward = (equity_after - equity_before) / initial_cash;
      break;
    case RewardKind::kDiffSharpe:
      reward = differential_sharpe(equity_after / equity_before - 1.0, a, b, rp.dsr_eta);
      break;
    case RewardKind::kLogReturn:
    default:
      // A gap can wipe out a leveraged book; keep the log finite (the floor terminates it).
      reward = std::log(std::max(equity_after, 1e-9 * initial_cash) / equity_before);
      break;
  }
  peak_equity = std::max(peak_equity, equity_after);
  if (rp.drawdown_penalty > 0.0) reward -= rp.drawdown_penalty * (1.0 - equity_after / peak_equity);
  if (rp.turnover_penalty > 0.0)
    reward -= rp.turnover_penalty * (traded_notional / equity_before);
  return reward;
}

}  // namespace fastrl
