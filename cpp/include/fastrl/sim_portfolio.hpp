// sim_portfolio.hpp: N multi-asset portfolio envs over one panel of A symbols, stepped as a batch.
//
// Start here for the portfolio side. The pipeline per step is the single-symbol one
// (sim.hpp): validate the whole weight batch -> contiguous env blocks on the pool threads ->
// each env rebalances, marks equity, computes its reward and auto-resets -> every output
// lands in caller-owned buffers; nothing is allocated per step. The config base, episode
// start and end, reward and output buffers are the single-symbol simulator's (episode.hpp).
//
// The panel: A symbols on one calendar (the union of their trading dates), T rows.
//   open, close [T, A] float64; features [T, A, F] float32; tradable [T, A] uint8.
// A cell is tradable when the symbol has a bar (and a feature row) that day. Nothing is
// back-filled: an untradable cell's features must be 0 and its prices are never read
// (NaN is fine). An untradable name's order is not executed; its shares stay as they are.
// The mark of a name at row t is its close at the last tradable row <= t (0 before its
// first one, when it cannot be held). Equity = cash + sum shares x mark; that is how a
// held name that did not trade today is valued, not a filled-in price.
//
// Action: A target weights (fractions of equity, cash = 1 - sum w). Long-only by default;
// |w_a| <= max_weight and sum |w_a| <= max_gross (a 1e-9 tolerance absorbs rounding).
//
// Timing of one step from row t (the observation at t includes row t's close):
//   kNextOpen: tradable names are rebalanced at open[t+1] (if tradable at t+1);
//   kClose:    at close[t] (optimistic: the agent saw that close).
// Equity at the fill = cash + sum shares x (fill price if tradable there, else mark); the
// target of name a is w_a x that equity / its fill price. With integer_shares the order is
// rounded toward zero to whole shares. Legs whose |notional| is below
// trade_band x equity at the fill are skipped (a no-trade band; 0 trades every difference).
// Each executed leg pays CostModel::order_cost from cash. Equity is marked at close[t+1].
#pragma once

#include <cstdint>
#include <iterator>
#include <string>
#include <vector>

#include "fastrl/episode.hpp"
#include "fastrl/thread_pool.hpp"

namespace fastrl {

// Read-only panel shared by every env and thread; owned by the caller (numpy).
struct PanelView {
  const double* open = nullptr;      // [T, A]
  const double* close = nullptr;     // [T, A]
  const float* features = nullptr;   // [T, A, F]
  const uint8_t* tradable = nullptr; // [T, A], 0 or 1
  int64_t num_bars = 0;
  int64_t num_assets = 0;
  int64_t num_features = 0;
};

// The shared settings (window, episode_length, execution, integer_shares, costs, reward,
// initial_cash, equity_floor, random_start, min_envs_per_thread) are episode.hpp's.
struct PortfolioConfig : EpisodeConfig {
  PortfolioConfig() { min_envs_per_thread = 16; }  // an env writes ~window x A x F floats
  bool long_only = true;         // weights >= 0
  double max_gross = 1.0;        // sum |w| cap (gross leverage)
  double max_weight = 1.0;       // |w_a| cap per name
  double trade_band = 0.0;       // skip legs with |notional| < trade_band x equity at the fill
  // Anchored actions (the policy tilts equal weight): an env whose target weights equal,
  // bit for bit, the last target it rebalanced to sends no order and holds, as the
  // single-symbol simulator holds an unchanged target exposure. An untilted policy is then
  // equal weight bought at the first fill and held.
  bool anchored = false;
};

// Caller-owned outputs, written in place by reset() and step(): the shared ones
// (episode.hpp; ep_trades counts executed legs) and the episode's turnover.
struct PortfolioBuffers : EpisodeBuffers {
  double* ep_turnover = nullptr;  // sum over steps of traded notional / equity before the step
  double* step_costs = nullptr;   // [N] what this step's orders paid (0 after a reset)
  double* step_turnover = nullptr;  // [N] this step's traded notional / equity before it
  double* ep_shares = nullptr;    // [N, A] shares held at the episode's end (before auto-reset)
  double* ep_cash = nullptr;      // [N] cash held at the episode's end (before auto-reset)
};

// Names of the per-env state arrays, in state_fields() order: the one declaration the
// binding exposes (_core.PORTFOLIO_STATE_KEYS) and Python reads.
inline constexpr const char* kPortfolioStateKeys[] = {
    "shares",        "cash",           "equity",           "peak_equity",
    "dsr_a",         "dsr_b",          "episode_return",   "episode_costs",
    "episode_turnover", "bar_index",   "episode_steps",    "episode_trades",
    "rng_state",     "bench_shares",   "bench_cash",       "last_target"};

class PortfolioSim {
 public:
  // Throws std::invalid_argument for a bad config, panel or buffers (symbols name the columns).
  PortfolioSim(const PanelView& panel, std::vector<std::string> symbols,
               const PortfolioConfig& config, int64_t num_envs, int num_threads, uint64_t seed,
               const PortfolioBuffers& out);

  int64_t num_envs() const { return num_envs_; }
  int64_t num_assets() const { return panel_.num_assets; }
  // window x A x F feature floats, then A weights and the cash weight.
  int64_t obs_dim() const { return obs_dim_; }
  int num_threads() const { return pool_.size(); }
  const PortfolioConfig& config() const { return config_; }
  const std::vector<double>& mark() const { return mark_; }

  void reset(uint64_t seed);
  // weights: [N, A] row-major. The batch is validated before any state changes.
  // orders: [N] or nullptr (every env rebalances); an env whose entry is 0 sends no order
  // this step (its weights are neither read nor checked), holds its shares and is marked.
  void step(const double* weights, const uint8_t* orders = nullptr);
  // Rewrites obs for the current state (after set_state); rewards/flags are left alone.
  void write_observations();

  // One per-env state array, for snapshots. kind: 'd' double, 'q' int64, 'Q' uint64.
  struct StateField {
    const char* name;
    char kind;
    void* data;
    int64_t width;   // values per env
    bool per_asset;  // [N, A] (width == A) rather than [N]
  };
  std::vector<StateField> state_fields();
  // Checks, then copies, every field from `sources` (same order as state_fields(), each
  // [N, width] contiguous). Throws std::invalid_argument and changes nothing when a value
  // would break an invariant (row out of range, non-finite or non-positive equity, ...).
  void set_state(const std::vector<const void*>& sources);

  // Struct-of-arrays state.
  std::vector<double> shares;          // [N, A]
  std::vector<double> cash;            // may dip below 0 by the costs of a full buy
  std::vector<double> equity;          // marked at the close of bar_index
  std::vector<double> peak_equity;
  std::vector<double> dsr_a, dsr_b;
  std::vector<double> episode_return;
  std::vector<double> episode_costs;
  std::vector<double> episode_turnover;
  std::vector<int64_t> bar_index;      // current panel row
  std::vector<int64_t> episode_steps;
  std::vector<int64_t> episode_trades;
  std::vector<uint64_t> rng_state;
  // The shadow benchmark book (kept where the reward reads it, RewardParams::needs_benchmark;
  // zeros otherwise): equal weight (1 / A each) bought at the episode's first fill under the
  // same prices, costs, whole shares and trade band as the agent's book, then held.
  std::vector<double> bench_shares;    // [N, A]
  std::vector<double> bench_cash;
  // Anchored: the target weights of the env's last rebalance ([N, A]); kNoTarget, which no
  // valid weight equals, before the episode's first.
  std::vector<double> last_target;

 private:
  void dispatch(const double* weights, const uint8_t* orders, bool reset_all);
  void reset_env(int64_t i);
  void step_env(int64_t i, const double* w, bool rebalance);
  // What one book's rebalance at a step traded.
  struct Rebalanced {
    double notional = 0.0;
    double costs = 0.0;
    int64_t legs = 0;
  };
  // Rebalances one book (shares sh [A], cash) to weights w at the fill of the step from row t.
  Rebalanced rebalance(int64_t t, const double* w, double* sh, double& cash) const;
  double no_target() const { return config_.max_weight + 1.0; }
  void write_obs(int64_t i, float* row) const;

  PanelView panel_;
  std::vector<std::string> symbols_;
  PortfolioConfig config_;
  int64_t num_envs_;
  int64_t obs_dim_;
  PortfolioBuffers out_;
  std::vector<double> mark_;  // [T, A] last traded close (see the header comment)
  std::vector<double> equal_weight_;  // [A], 1 / A each: the benchmark's target
  // RewardParams::needs_vol: per panel row t, the trailing volatility of the equal-weight
  // index's close-to-close returns over the vol_window rows up to t (rewards.hpp's
  // segment_vols); empty otherwise.
  std::vector<double> vol_;
  bool stream_obs_ = false;   // observation batch too large for the caches: bypass them
  ThreadPool pool_;
};

}  // namespace fastrl
