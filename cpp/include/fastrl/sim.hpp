// sim.hpp: N trading envs stepped as one batch (struct-of-arrays state + step kernel).
//
// Start here. The pipeline per step is: validate the whole action batch -> split the envs
// into contiguous blocks -> each pool thread fills orders, marks equity, computes rewards
// and auto-resets for its block -> every output lands in caller-owned buffers (numpy
// arrays in Python), so nothing is copied or allocated per step.
//
// Timing of one step from bar t (the observation at t includes bar t's close):
//   execution kNextOpen: the new target exposure is filled at open[t+1];
//   execution kClose:    it is filled at close[t] (optimistic: the agent saw that close).
// Equity is marked at close[t+1]; the reward compares it with equity at close[t].
// Market rules, when configured, act inside the same step: integer_shares rounds the order
// toward zero; square_off forces a zero target when the fill falls after the session's
// cutoff and closes any position at close[t+1] when that is the session's last allowed close
// (paying the exit's costs); short_borrow_rate charges a short still open at a session's
// last close one night of borrow. All of it lands in equity before the reward is computed.
//
// What this simulator shares with the portfolio one (sim_portfolio.hpp) lives in episode.hpp
// (the config base, episode start and end, output buffers) and rewards.hpp (the reward and
// its penalties); run_blocks (thread_pool.hpp) hands a batch to the pool for both.
#pragma once

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "fastrl/episode.hpp"
#include "fastrl/market.hpp"
#include "fastrl/thread_pool.hpp"

namespace fastrl {

// The shared settings (window, episode_length, execution, integer_shares, costs, reward,
// initial_cash, equity_floor, random_start, min_envs_per_thread) are episode.hpp's.
struct SimConfig : EpisodeConfig {
  bool continuous = false;               // continuous target exposure instead of levels
  std::vector<double> position_levels{-1.0, 0.0, 1.0};
  double min_pos = -1.0;
  double max_pos = 1.0;
  bool round_robin = false;      // true: env i always trades segment i % S
  // Market rules (python/fastrl/costs.py documents each with its source).
  bool square_off = false;       // intraday (MIS): flat by the cutoff, no entries after it
  double short_borrow_rate = 0.0;  // annual stock-lending fee on the short notional, charged
                                   // at rate / 252 for each session close held short
  // Anchored actions: the action is an underweight u against buy-and-hold's exposure of 1,
  // and the target exposure is 1 - u (levels are underweights; a continuous u must lie in
  // [1 - max_pos, min(max_underweight, 1 - min_pos)]; a negative u is an overweight).
  bool anchored = false;
  double max_underweight = 1.0;

  double underweight_low() const { return 1.0 - max_pos; }
  double underweight_high() const { return std::min(max_underweight, 1.0 - min_pos); }
};

constexpr double kSessionsPerYear = 252.0;  // the borrow fee's day count (see short_borrow_rate)

// Caller-owned output buffers, written in place by reset() and step(): the shared ones
// (episode.hpp) and the position held at an episode's end.
struct OutputBuffers : EpisodeBuffers {
  double* ep_position = nullptr;   // target exposure held at the episode's end
  double* ep_shares = nullptr;     // shares held at the episode's end (before auto-reset)
};

// Names of the per-env state vectors, in for_each_state() order: the one declaration the
// binding exposes (_core.STATE_KEYS) and Python reads.
inline constexpr const char* kStateKeys[] = {
    "position",      "shares",         "cash",           "equity",
    "entry_price",   "bar_index",      "segment",        "last_trade_bar",
    "episode_steps", "episode_return", "episode_costs",  "episode_trades",
    "peak_equity",   "dsr_a",          "dsr_b",          "rng_state",
    "bench_position", "bench_shares",  "bench_cash"};

constexpr int64_t kAgentStateDims = 3;  // position, unrealised return, log1p(bars since trade)

class Simulator {
 public:
  // Throws std::invalid_argument for bad config, market data or buffers; segment_names
  // (one per segment) make the messages point at the symbol.
  Simulator(const MarketView& market, std::vector<std::string> segment_names,
            const SimConfig& config, int64_t num_envs, int num_threads, uint64_t seed,
            const OutputBuffers& out);

  int64_t num_envs() const { return num_envs_; }
  int64_t obs_dim() const { return obs_dim_; }
  int num_threads() const { return pool_.size(); }
  const SimConfig& config() const { return config_; }

  // Reseeds every env stream from `seed` and starts new episodes everywhere.
  void reset(uint64_t seed);
  // Discrete: level indices in [0, K). Continuous: exposures in [min_pos, max_pos].
  // The whole batch is validated before any state changes.
  void step_discrete(const int64_t* actions);
  void step_continuous(const double* actions);

  // Struct-of-arrays state, readable from outside (Python gets read-only views).
  std::vector<double> position;    // target exposure currently held (fraction of equity)
  std::vector<double> shares;
  std::vector<double> cash;
  std::vector<double> equity;      // marked at the close of bar_index
  std::vector<double> entry_price; // fill price of the trade that set the position
  std::vector<int64_t> bar_index;  // current row in the market block
  std::vector<int64_t> segment;
  std::vector<int64_t> last_trade_bar;
  std::vector<int64_t> episode_steps;
  std::vector<double> episode_return;
  std::vector<double> episode_costs;
  std::vector<int64_t> episode_trades;
  std::vector<double> peak_equity;
  std::vector<double> dsr_a, dsr_b;  // differential Sharpe moments
  std::vector<uint64_t> rng_state;
  // The shadow benchmark book (kept where the reward reads it, RewardParams::needs_benchmark;
  // zeros otherwise): buy-and-hold, i.e. the target exposure 1 from the episode's first
  // fill, traded under the same prices, costs and market rules as the agent's book.
  std::vector<double> bench_position, bench_shares, bench_cash;

  // Calls f(name, vector) for every per-env state vector above, named by kStateKeys: together
  // they determine every future output, so a snapshot is exactly these (see get/set_state in
  // the binding).
  template <class F>
  void for_each_state(F&& f) {
    const auto* k = kStateKeys;
    f(k[0], position);
    f(k[1], shares);
    f(k[2], cash);
    f(k[3], equity);
    f(k[4], entry_price);
    f(k[5], bar_index);
    f(k[6], segment);
    f(k[7], last_trade_bar);
    f(k[8], episode_steps);
    f(k[9], episode_return);
    f(k[10], episode_costs);
    f(k[11], episode_trades);
    f(k[12], peak_equity);
    f(k[13], dsr_a);
    f(k[14], dsr_b);
    f(k[15], rng_state);
    f(k[16], bench_position);
    f(k[17], bench_shares);
    f(k[18], bench_cash);
    static_assert(std::size(kStateKeys) == 19, "one key per state vector");
  }

  // Before loading a snapshot: the values that index the market must point inside it
  // (segment in range, bar_index a steppable bar of that segment with a full window).
  // Throws std::invalid_argument naming the key and the env.
  void check_state(const int64_t* new_segment, const int64_t* new_bar_index) const;
  // After loading a snapshot: rewrites every observation row from the restored state.
  void write_observations();

 private:
  void reset_env(int64_t i);
  void step_env(int64_t i, double target);
  // What one book's step traded: the order's notional (the square-off exit's included),
  // and whether the order filled or the position was squared off.
  struct Traded {
    double notional = 0.0;
    bool filled = false;
    bool squared_off = false;
  };
  // The order for `target` from bar t and the market rules, applied to one book (the
  // agent's or the benchmark's); costs and orders are added to `costs` and `trades`.
  Traded trade(int64_t t, double target, double& position, double& shares, double& cash,
               double& costs, int64_t& trades) const;
  void write_obs(int64_t i, float* row) const;
  void dispatch(const int64_t* discrete, const double* continuous, bool reset_all);

  MarketView market_;
  std::vector<std::string> segment_names_;
  SimConfig config_;
  int64_t num_envs_;
  int64_t obs_dim_;
  OutputBuffers out_;
  std::vector<float> log1p_table_;  // log1p(k) for small k: the obs's "bars since trade"
  // RewardParams::needs_vol: per market row t, the trailing volatility of the segment's
  // close-to-close returns over the vol_window bars up to t (rewards.hpp's segment_vols);
  // empty otherwise.
  std::vector<double> vol_;
  ThreadPool pool_;
};

}  // namespace fastrl
