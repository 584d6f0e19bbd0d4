// episode.hpp: what the single-symbol Simulator (sim.hpp) and the PortfolioSim
// (sim_portfolio.hpp) share: the common config, the episode start, the episode end and the
// output buffers every step writes.
//
// Both simulators run the same episode: start at a random row with a full observation
// window behind it (episode_start), step, reward the equity change (rewards.hpp's
// step_reward), end by length or at the data's end (truncated) or at the equity floor
// (terminated), report the episode and auto-reset. Only what is traded differs.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "fastrl/costs.hpp"
#include "fastrl/rewards.hpp"
#include "fastrl/rng.hpp"

namespace fastrl {

// When the order chosen at row t fills: at open[t+1] (default) or at close[t] (optimistic:
// the agent saw that close).
enum class Execution : int { kNextOpen = 0, kClose = 1 };

// Settings both simulators read. SimConfig and PortfolioConfig add what they trade.
struct EpisodeConfig {
  int64_t window = 32;           // rows per observation
  int64_t episode_length = 252;  // steps per episode; 0 = until the data ends
  Execution execution = Execution::kNextOpen;
  bool integer_shares = false;   // orders are whole shares, rounded toward zero
  CostModel costs;
  RewardParams reward;
  double initial_cash = 1e6;
  double equity_floor = 0.5;     // terminate when equity <= equity_floor * initial_cash
  bool random_start = true;      // false: start at the first row with a full window
  int64_t min_envs_per_thread = 128;  // smaller blocks cost more to hand out than to step
};

inline void require(bool ok, const std::string& message) {
  if (!ok) throw std::invalid_argument(message);
}

inline bool finite_nonneg(double x) { return std::isfinite(x) && x >= 0.0; }

// Checks the shared settings; `data_end` names where episode_length 0 runs to.
inline void check_episode_config(const EpisodeConfig& c, const char* data_end) {
  require(c.window >= 1, "window must be >= 1, got " + std::to_string(c.window));
  require(c.episode_length >= 0, "episode_length must be >= 0 (0 = to the " +
                                     std::string(data_end) + " end), got " +
                                     std::to_string(c.episode_length));
  require(std::isfinite(c.initial_cash) && c.initial_cash > 0.0,
          "initial_cash must be a positive number");
  require(c.equity_floor >= 0.0 && c.equity_floor < 1.0,
          "equity_floor must lie in [0, 1) (a fraction of initial_cash)");
  const CostModel& k = c.costs;
  require(finite_nonneg(k.buy_rate) && finite_nonneg(k.sell_rate) &&
              finite_nonneg(k.brokerage_rate) && k.brokerage_cap >= 0.0 &&
              finite_nonneg(k.gst_on_brokerage) && finite_nonneg(k.fixed_fee_buy) &&
              finite_nonneg(k.fixed_fee_sell),
          "cost model rates and fees must be finite and >= 0 (brokerage_cap may be inf)");
  require(c.reward.dsr_eta > 0.0 && c.reward.dsr_eta <= 1.0, "dsr_eta must lie in (0, 1]");
  require(finite_nonneg(c.reward.drawdown_penalty) && finite_nonneg(c.reward.turnover_penalty),
          "drawdown_penalty and turnover_penalty must be finite and >= 0");
  require(c.min_envs_per_thread >= 1, "min_envs_per_thread must be >= 1");
  require(c.reward.vol_window >= 2, "vol_window must be >= 2 (returns in a volatility)");
}

inline void check_batch(int64_t num_envs, int num_threads) {
  require(num_envs >= 1, "num_envs must be >= 1, got " + std::to_string(num_envs));
  require(num_threads >= 1, "num_threads must be >= 1, got " + std::to_string(num_threads));
}

// First row of a new episode over data rows [begin, end): the first row with a full window,
// or with random_start a uniform draw from the env's stream up to the latest start that
// still fits a whole episode (or one step when it cannot fit).
inline int64_t episode_start(const EpisodeConfig& c, uint64_t& rng, int64_t begin, int64_t end) {
  const int64_t first = begin + c.window - 1;
  if (!c.random_start) return first;
  const int64_t latest =
      c.episode_length > 0 ? std::max(first, end - 1 - c.episode_length) : end - 2;
  return first + static_cast<int64_t>(next_below(rng, static_cast<uint64_t>(latest - first + 1)));
}

struct EpisodeEnd {
  bool terminated;  // equity at or below the floor: no bootstrap
  bool truncated;   // length reached or no next row in the data: bootstrap the value
  bool done() const { return terminated || truncated; }
};

// After a step to row `next` (of data ending before row `end`), with `steps` taken so far.
inline EpisodeEnd episode_end(const EpisodeConfig& c, double equity_after, int64_t steps,
                              int64_t next, int64_t end) {
  const bool terminated = equity_after <= c.equity_floor * c.initial_cash;
  const bool truncated =
      !terminated &&
      ((c.episode_length > 0 && steps >= c.episode_length) || next + 1 >= end);
  return {terminated, truncated};
}

// Cost of selling (or buying back) `shares` at `price` in one order; 0 when nothing is held.
inline double liquidation_cost(const CostModel& costs, double shares, double price) {
  return shares != 0.0 ? order_cost(costs, shares < 0.0, std::fabs(shares) * price) : 0.0;
}

// Caller-owned outputs both simulators write in place (reset() and step()); each adds its
// own end-of-episode fields.
struct EpisodeBuffers {
  float* obs = nullptr;            // [N, obs_dim]
  double* rewards = nullptr;       // [N]
  uint8_t* terminated = nullptr;   // [N] (numpy bool)
  uint8_t* truncated = nullptr;    // [N]
  uint8_t* done = nullptr;         // [N], terminated or truncated (the info masks)
  float* final_obs = nullptr;      // [N, obs_dim], rows valid where the episode ended
  double* ep_return = nullptr;     // [N], valid where the episode ended
  int64_t* ep_length = nullptr;
  double* ep_equity = nullptr;
  double* ep_costs = nullptr;
  int64_t* ep_trades = nullptr;
  // What selling every share still held at the episode's last close would cost (the cost
  // model per leg). Reported, never charged: ep_equity and ep_costs exclude it, and an
  // evaluation that closes its books at the end subtracts it.
  double* ep_liquidation = nullptr;

  bool complete() const {
    return obs && rewards && terminated && truncated && done && final_obs && ep_return &&
           ep_length && ep_equity && ep_costs && ep_trades && ep_liquidation;
  }

  // After a reset: no reward, no episode ended.
  void clear_step(int64_t n) const {
    std::fill(rewards, rewards + n, 0.0);
    std::fill(terminated, terminated + n, uint8_t{0});
    std::fill(truncated, truncated + n, uint8_t{0});
    std::fill(done, done + n, uint8_t{0});
  }

  void write_step(int64_t i, double reward, EpisodeEnd end) const {
    rewards[i] = reward;
    terminated[i] = end.terminated ? 1 : 0;
    truncated[i] = end.truncated ? 1 : 0;
    done[i] = end.done() ? 1 : 0;
  }

  void write_episode(int64_t i, double ret, int64_t length, double equity, double costs,
                     int64_t trades, double liquidation) const {
    ep_return[i] = ret;
    ep_length[i] = length;
    ep_equity[i] = equity;
    ep_costs[i] = costs;
    ep_trades[i] = trades;
    ep_liquidation[i] = liquidation;
  }
};

}  // namespace fastrl
