// sim.cpp: the batched step kernel (see sim.hpp for the timing of a step).
#include "fastrl/sim.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <sstream>
#include <stdexcept>

#include "fastrl/rng.hpp"

namespace fastrl {
namespace {

[[noreturn]] void fail(const std::string& message) { throw std::invalid_argument(message); }

void check_config(const SimConfig& c) {
  check_episode_config(c, "segment");
  if (c.continuous) {
    if (!std::isfinite(c.min_pos) || !std::isfinite(c.max_pos) || c.min_pos > c.max_pos)
      fail("continuous actions need finite min_pos <= max_pos");
  } else {
    if (c.position_levels.empty()) fail("position_levels must not be empty");
    for (double level : c.position_levels)
      if (!std::isfinite(level)) fail("position_levels must be finite");
  }
  if (!finite_nonneg(c.short_borrow_rate))
    fail("short_borrow_rate must be finite and >= 0 (an annual fraction of short notional)");
  if (c.anchored) {
    if (!(std::isfinite(c.max_underweight) && c.max_underweight > 0.0))
      fail("max_underweight must be finite and > 0");
    const double lo = c.underweight_low(), hi = c.underweight_high();
    if (!(lo <= 0.0 && 0.0 <= hi))
      fail("anchored actions need an underweight range [1 - max_pos, min(max_underweight, "
           "1 - min_pos)] that holds 0 (the benchmark)");
    if (!c.continuous) {
      for (double level : c.position_levels)
        if (!(level >= lo && level <= hi))
          fail("anchored position_levels are underweights and must lie in [1 - max_pos, "
               "min(max_underweight, 1 - min_pos)]");
    }
  }
}

void check_market(const MarketView& m, const std::vector<std::string>& names, int64_t window) {
  if (m.num_segments < 1) fail("the market has no segments (empty split?)");
  if (static_cast<int64_t>(names.size()) != m.num_segments)
    fail("segment_names must have one name per segment");
  if (m.num_features < 1) fail("the market has no feature columns");
  if (m.offsets[0] != 0 || m.offsets[m.num_segments] != m.num_bars)
    fail("segment offsets must start at 0 and end at the number of bars");
  for (int64_t s = 0; s < m.num_segments; ++s) {
    const int64_t begin = m.segment_begin(s), end = m.segment_end(s);
    if (end - begin < window + 1) {
      std::ostringstream msg;
      msg << "segment '" << names[s] << "' has " << (end - begin)
          << " bars; an episode needs at least window + 1 = " << (window + 1);
      fail(msg.str());
    }
    for (int64_t t = begin; t < end; ++t) {
      const double prices[2] = {m.open[t], m.close[t]};
      for (int k = 0; k < 2; ++k) {
        if (!(std::isfinite(prices[k]) && prices[k] > 0.0)) {
          std::ostringstream msg;
          msg << "segment '" << names[s] << "' bar " << (t - begin) << " (market row " << t
              << "): " << (k == 0 ? "open" : "close") << " price is " << prices[k]
              << "; prices must be finite and > 0";
          fail(msg.str());
        }
      }
      const float* row = m.features + t * m.num_features;
      for (int64_t f = 0; f < m.num_features; ++f) {
        if (!std::isfinite(row[f])) {
          std::ostringstream msg;
          msg << "segment '" << names[s] << "' bar " << (t - begin) << " (market row " << t
              << "): feature column " << f << " is " << row[f] << "; features must be finite";
          fail(msg.str());
        }
      }
    }
  }
}

}  // namespace

Simulator::Simulator(const MarketView& market, std::vector<std::string> segment_names,
                     const SimConfig& config, int64_t num_envs, int num_threads, uint64_t seed,
                     const OutputBuffers& out)
    : market_(market),
      segment_names_(std::move(segment_names)),
      config_(config),
      num_envs_(num_envs),
      obs_dim_(config.window * market.num_features + kAgentStateDims),
      out_(out),
      pool_(num_threads < 1 ? 1 : num_threads) {
  check_batch(num_envs, num_threads);
  check_config(config_);
  check_market(market_, segment_names_, config_.window);
  if ((config_.square_off || config_.short_borrow_rate > 0.0) && !market_.session_flags)
    fail("the intraday square-off and the short borrow fee need session_flags (one per bar)");
  if (!out.complete() || !out.ep_position || !out.ep_shares)
    fail("every output buffer must be provided");
  const auto n = static_cast<size_t>(num_envs);
  for (auto* v : {&position, &shares, &cash, &equity, &entry_price, &episode_return,
                  &episode_costs, &peak_equity, &dsr_a, &dsr_b, &bench_position, &bench_shares,
                  &bench_cash})
    v->assign(n, 0.0);
  if (config_.reward.needs_vol()) {
    vol_.assign(static_cast<size_t>(market_.num_bars), kVolFloor);
    std::vector<double> rets;
    for (int64_t s = 0; s < market_.num_segments; ++s) {
      const int64_t begin = market_.segment_begin(s), end = market_.segment_end(s);
      rets.clear();
      for (int64_t k = begin + 1; k < end; ++k)
        rets.push_back(market_.close[k] / market_.close[k - 1] - 1.0);
      segment_vols(rets.data(), static_cast<int64_t>(rets.size()), config_.reward.vol_window,
                   vol_.data() + begin);
    }
  }
  for (auto* v : {&bar_index, &segment, &last_trade_bar, &episode_steps, &episode_trades})
    v->assign(n, 0);
  rng_state.assign(n, 0);
  log1p_table_.resize(4096);
  for (size_t k = 0; k < log1p_table_.size(); ++k)
    log1p_table_[k] = static_cast<float>(std::log1p(static_cast<double>(k)));
  reset(seed);
}

void Simulator::reset(uint64_t seed) {
  for (int64_t i = 0; i < num_envs_; ++i)
    rng_state[static_cast<size_t>(i)] = env_stream_seed(seed, static_cast<uint64_t>(i));
  dispatch(nullptr, nullptr, true);
  out_.clear_step(num_envs_);
}

void Simulator::step_discrete(const int64_t* actions) {
  if (config_.continuous) fail("this simulator takes continuous actions");
  const auto k = static_cast<int64_t>(config_.position_levels.size());
  for (int64_t i = 0; i < num_envs_; ++i) {
    if (actions[i] < 0 || actions[i] >= k) {
      std::ostringstream msg;
      msg << "action " << actions[i] << " for env " << i << " is not a level index in [0, " << k
          << ")";
      fail(msg.str());
    }
  }
  dispatch(actions, nullptr, false);
}

void Simulator::step_continuous(const double* actions) {
  if (!config_.continuous) fail("this simulator takes discrete level indices");
  const bool anchored = config_.anchored;
  const double lo = anchored ? config_.underweight_low() : config_.min_pos;
  const double hi = anchored ? config_.underweight_high() : config_.max_pos;
  for (int64_t i = 0; i < num_envs_; ++i) {
    if (!(actions[i] >= lo && actions[i] <= hi)) {
      std::ostringstream msg;
      msg << "action " << actions[i] << " for env " << i << " is not "
          << (anchored ? "an underweight" : "a target exposure") << " in [" << lo << ", " << hi
          << "] (NaN is not allowed)";
      fail(msg.str());
    }
  }
  dispatch(nullptr, actions, false);
}

void Simulator::dispatch(const int64_t* discrete, const double* continuous, bool reset_all) {
  // Copied into locals: a step_env call could change any memory as far as the compiler
  // knows, so members read in the loop would be reloaded for every env.
  auto block = [this, discrete, continuous, reset_all](int64_t begin, int64_t end) {
    const int64_t window = config_.window, num_features = market_.num_features;
    const int64_t window_bytes = window * num_features * static_cast<int64_t>(sizeof(float));
    const float* features = market_.features;
    const double* levels = config_.position_levels.data();
    const bool anchored = config_.anchored;
    for (int64_t i = begin; i < end; ++i) {
      if (i + 1 < end) {
        // Env i + 1's next window starts at a random row of the market block: start pulling
        // its first cache lines now so the copy does not wait on them.
        const int64_t next_row = bar_index[static_cast<size_t>(i + 1)] + 2 - window;
        const char* src = reinterpret_cast<const char*>(
            features + std::max<int64_t>(next_row, 0) * num_features);
        for (int64_t off = 0; off < std::min<int64_t>(window_bytes, 256); off += 64)
          __builtin_prefetch(src + off);
      }
      if (reset_all) {
        reset_env(i);
        write_obs(i, out_.obs + i * obs_dim_);
      } else {
        const double action = continuous ? continuous[i] : levels[discrete[i]];
        step_env(i, anchored ? 1.0 - action : action);
      }
    }
  };
  run_blocks(pool_, num_envs_, config_.min_envs_per_thread, block);
}

void Simulator::reset_env(int64_t i) {
  const auto u = static_cast<size_t>(i);
  const int64_t num_segments = market_.num_segments;
  const int64_t s = config_.round_robin
                        ? i % num_segments
                        : static_cast<int64_t>(next_below(rng_state[u], static_cast<uint64_t>(num_segments)));
  const int64_t start =
      episode_start(config_, rng_state[u], market_.segment_begin(s), market_.segment_end(s));
  segment[u] = s;
  bar_index[u] = start;
  last_trade_bar[u] = start;
  position[u] = 0.0;
  shares[u] = 0.0;
  cash[u] = config_.initial_cash;
  equity[u] = config_.initial_cash;
  peak_equity[u] = config_.initial_cash;
  entry_price[u] = 0.0;
  // Warm start of the differential Sharpe moments: the mean and mean square of the
  // close-to-close simple returns inside the first observation window (window - 1 of them,
  // all inside the segment), so the first rewards are on the scale of later ones instead of
  // dividing by a near-zero variance. A one-bar window has none and starts from zero.
  double a = 0.0, b = 0.0;
  if (config_.reward.kind == RewardKind::kDiffSharpe && config_.window > 1) {
    for (int64_t k = start - config_.window + 2; k <= start; ++k) {
      const double r = market_.close[k] / market_.close[k - 1] - 1.0;
      a += r;
      b += r * r;
    }
    a /= static_cast<double>(config_.window - 1);
    b /= static_cast<double>(config_.window - 1);
  }
  if (config_.reward.active_base && config_.reward.kind == RewardKind::kDiffSharpe) {
    // Active returns: an agent at the benchmark earns exactly 0, so the mean starts at 0;
    // the mean square is that of the symbol's own returns, the scale of a full active bet.
    a = 0.0;
  }
  dsr_a[u] = a;
  dsr_b[u] = b;
  bench_position[u] = 0.0;
  bench_shares[u] = 0.0;
  bench_cash[u] = config_.reward.needs_benchmark() ? config_.initial_cash : 0.0;
  episode_steps[u] = 0;
  episode_return[u] = 0.0;
  episode_costs[u] = 0.0;
  episode_trades[u] = 0;
}

void Simulator::check_state(const int64_t* new_segment, const int64_t* new_bar_index) const {
  for (int64_t i = 0; i < num_envs_; ++i) {
    const int64_t s = new_segment[i];
    if (s < 0 || s >= market_.num_segments) {
      std::ostringstream msg;
      msg << "state 'segment' of env " << i << " is " << s << "; this market has segments [0, "
          << market_.num_segments << ")";
      fail(msg.str());
    }
    const int64_t lo = market_.segment_begin(s) + config_.window - 1;
    const int64_t hi = market_.segment_end(s) - 2;
    if (new_bar_index[i] < lo || new_bar_index[i] > hi) {
      std::ostringstream msg;
      msg << "state 'bar_index' of env " << i << " is " << new_bar_index[i] << "; segment '"
          << segment_names_[static_cast<size_t>(s)] << "' can be stepped from rows [" << lo
          << ", " << hi << "] with window " << config_.window;
      fail(msg.str());
    }
  }
}

void Simulator::write_observations() {
  for (int64_t i = 0; i < num_envs_; ++i) write_obs(i, out_.obs + i * obs_dim_);
}

void Simulator::write_obs(int64_t i, float* row) const {
  const auto u = static_cast<size_t>(i);
  const int64_t t = bar_index[u];
  const int64_t f = market_.num_features;
  // The window [t - window + 1, t] is contiguous in the row-major feature block.
  std::memcpy(row, market_.features + (t - config_.window + 1) * f,
              static_cast<size_t>(config_.window * f) * sizeof(float));
  float* agent = row + config_.window * f;
  const double pos = position[u];
  agent[0] = static_cast<float>(pos);
  agent[1] = static_cast<float>(pos != 0.0 ? pos * (market_.close[t] / entry_price[u] - 1.0) : 0.0);
  const int64_t since = t - last_trade_bar[u];
  agent[2] = since < static_cast<int64_t>(log1p_table_.size())
                 ? log1p_table_[static_cast<size_t>(since)]
                 : static_cast<float>(std::log1p(static_cast<double>(since)));
}

Simulator::Traded Simulator::trade(int64_t t, double target, double& position,
                                    double& shares, double& cash, double& costs,
                                    int64_t& trades) const {
  const int64_t next = t + 1;
  const bool next_open = config_.execution == Execution::kNextOpen;
  const double fill = next_open ? market_.open[next] : market_.close[t];
  const uint8_t* flags = market_.session_flags;
  if (config_.square_off && (next_open ? (flags[next] & kNoEntryAtOpen) : (flags[t] & kSquareOff)))
    target = 0.0;  // MIS: no fresh position once the fill falls after the cutoff

  Traded out;
  if (target != position) {
    const double equity_at_fill = cash + shares * fill;
    const double target_shares = equity_at_fill > 0.0 ? target * equity_at_fill / fill : 0.0;
    double traded = target_shares - shares;
    if (config_.integer_shares) traded = std::trunc(traded);  // whole shares, toward zero
    if (!config_.integer_shares || traded != 0.0) {  // a zero-share order is not sent
      out.notional = std::fabs(traded) * fill;
      const double cost = order_cost(config_.costs, traded > 0.0, out.notional);
      cash -= traded * fill + cost;
      shares = config_.integer_shares ? shares + traded : target_shares;
      position = target;
      costs += cost;
      trades += 1;
      out.filled = true;
    }
  }

  if (config_.square_off && (flags[next] & kSquareOff) && shares != 0.0) {
    // The session's last allowed close: exit everything there, paying the exit's costs.
    const double price = market_.close[next];
    const double traded = -shares;
    const double exit_notional = std::fabs(traded) * price;
    const double cost = order_cost(config_.costs, traded > 0.0, exit_notional);
    cash -= traded * price + cost;
    shares = 0.0;
    position = 0.0;
    costs += cost;
    trades += 1;
    out.notional += exit_notional;
    out.squared_off = true;
  }
  if (config_.short_borrow_rate > 0.0 && shares < 0.0 && (flags[next] & kSessionEnd)) {
    // One night of stock-lending fee on the short notional at this close.
    const double fee = config_.short_borrow_rate / kSessionsPerYear * -shares * market_.close[next];
    cash -= fee;
    costs += fee;
  }
  return out;
}

void Simulator::step_env(int64_t i, double target) {
  const auto u = static_cast<size_t>(i);
  const int64_t t = bar_index[u];
  const int64_t next = t + 1;
  const double equity_before = equity[u];
  const bool next_open = config_.execution == Execution::kNextOpen;
  const Traded traded =
      trade(t, target, position[u], shares[u], cash[u], episode_costs[u], episode_trades[u]);
  if (traded.filled) {
    entry_price[u] = position[u] != 0.0 ? (next_open ? market_.open[next] : market_.close[t]) : 0.0;
    last_trade_bar[u] = next_open ? next : t;  // the fill's bar
  }
  if (traded.squared_off) {
    entry_price[u] = 0.0;
    last_trade_bar[u] = next;
  }
  const double notional = traded.notional;

  StepContext ctx;
  if (config_.reward.needs_benchmark()) {
    // The benchmark's book steps beside the agent's: its equity before and after this bar.
    double bench_costs = 0.0;
    int64_t bench_trades = 0;
    ctx.bench_before = bench_cash[u] + bench_shares[u] * market_.close[t];
    trade(t, 1.0, bench_position[u], bench_shares[u], bench_cash[u], bench_costs, bench_trades);
    ctx.bench_after = bench_cash[u] + bench_shares[u] * market_.close[next];
  }
  if (!vol_.empty()) ctx.vol = vol_[static_cast<size_t>(t)];

  const double equity_after = cash[u] + shares[u] * market_.close[next];
  const double reward = step_reward(config_.reward, config_.initial_cash, equity_before,
                                    equity_after, notional, dsr_a[u], dsr_b[u], peak_equity[u],
                                    ctx);
  bar_index[u] = next;
  equity[u] = equity_after;
  episode_steps[u] += 1;
  episode_return[u] += reward;

  const EpisodeEnd end =
      episode_end(config_, equity_after, episode_steps[u], next, market_.segment_end(segment[u]));
  out_.write_step(i, reward, end);
  float* obs_row = out_.obs + i * obs_dim_;
  if (end.done()) {
    write_obs(i, out_.final_obs + i * obs_dim_);
    out_.write_episode(i, episode_return[u], episode_steps[u], equity_after, episode_costs[u],
                       episode_trades[u],
                       liquidation_cost(config_.costs, shares[u], market_.close[next]));
    out_.ep_position[i] = position[u];
    out_.ep_shares[i] = shares[u];
    reset_env(i);
  }
  write_obs(i, obs_row);
}

}  // namespace fastrl
