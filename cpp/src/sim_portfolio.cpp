// sim_portfolio.cpp: the batched multi-asset step kernel (see sim_portfolio.hpp for the rules).
#include "fastrl/sim_portfolio.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <sstream>
#include <stdexcept>

#include "fastrl/rng.hpp"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace fastrl {
namespace {

// Copies n floats. With `stream`, the stores bypass the cache (non-temporal): a batch of
// observations far larger than the cache would otherwise first read every destination
// line (write-allocate) only to evict it again, doubling the memory traffic.
void copy_floats(float* dst, const float* src, size_t n, bool stream) {
#if defined(__SSE2__)
  if (stream) {
    for (; n > 0 && (reinterpret_cast<uintptr_t>(dst) & 15) != 0; --n) *dst++ = *src++;
    for (; n >= 16; n -= 16, dst += 16, src += 16) {
      const __m128 a = _mm_loadu_ps(src), b = _mm_loadu_ps(src + 4);
      const __m128 c = _mm_loadu_ps(src + 8), d = _mm_loadu_ps(src + 12);
      _mm_stream_ps(dst, a);
      _mm_stream_ps(dst + 4, b);
      _mm_stream_ps(dst + 8, c);
      _mm_stream_ps(dst + 12, d);
    }
    for (; n > 0; --n) *dst++ = *src++;
    return;
  }
#endif
  (void)stream;
  std::memcpy(dst, src, n * sizeof(float));
}

// Streaming stores pay off once one step's observations are several MB: measured on a
// 32 MB-L3 EPYC, 13 MB (A = 10) and 39 MB (A = 30) batches step faster with them.
constexpr int64_t kStreamObsBytes = 4 << 20;

[[noreturn]] void fail(const std::string& message) { throw std::invalid_argument(message); }

// Weights within this of a cap pass: softmax outputs summing to 1 + 2e-16 are not an error.
constexpr double kCapTolerance = 1e-9;

void check_config(const PortfolioConfig& c) {
  check_episode_config(c, "panel");
  if (!(std::isfinite(c.max_gross) && c.max_gross > 0.0)) fail("max_gross must be finite and > 0");
  if (!(std::isfinite(c.max_weight) && c.max_weight > 0.0))
    fail("max_weight must be finite and > 0");
  if (!(finite_nonneg(c.trade_band) && c.trade_band < 1.0)) fail("trade_band must lie in [0, 1)");
}

void check_panel(const PanelView& p, const std::vector<std::string>& symbols, int64_t window) {
  if (p.num_assets < 1) fail("the panel has no symbols");
  if (static_cast<int64_t>(symbols.size()) != p.num_assets)
    fail("symbols must name every panel column");
  if (p.num_features < 1) fail("the panel has no feature columns");
  if (p.num_bars < window + 1) {
    std::ostringstream msg;
    msg << "the panel has " << p.num_bars << " rows; an episode needs at least window + 1 = "
        << (window + 1);
    fail(msg.str());
  }
  const int64_t A = p.num_assets, F = p.num_features;
  for (int64_t t = 0; t < p.num_bars; ++t) {
    for (int64_t a = 0; a < A; ++a) {
      const int64_t cell = t * A + a;
      const uint8_t can = p.tradable[cell];
      auto where = [&] {
        std::ostringstream s;
        s << "symbol '" << symbols[static_cast<size_t>(a)] << "' row " << t << ": ";
        return s.str();
      };
      if (can > 1) fail(where() + "tradable must be 0 or 1");
      if (can) {
        const double prices[2] = {p.open[cell], p.close[cell]};
        for (int k = 0; k < 2; ++k) {
          if (!(std::isfinite(prices[k]) && prices[k] > 0.0)) {
            std::ostringstream msg;
            msg << where() << (k == 0 ? "open" : "close") << " price is " << prices[k]
                << " on a tradable day; prices must be finite and > 0";
            fail(msg.str());
          }
        }
      }
      const float* row = p.features + cell * F;
      for (int64_t f = 0; f < F; ++f) {
        if (!std::isfinite(row[f])) fail(where() + "feature column " + std::to_string(f) +
                                         " is not finite");
        // An untradable cell has no bar: a non-zero feature there would be filled-in data.
        if (!can && row[f] != 0.0f)
          fail(where() + "feature column " + std::to_string(f) +
               " is non-zero on an untradable day (untradable cells must hold zeros)");
      }
    }
  }
}

}  // namespace

PortfolioSim::PortfolioSim(const PanelView& panel, std::vector<std::string> symbols,
                           const PortfolioConfig& config, int64_t num_envs, int num_threads,
                           uint64_t seed, const PortfolioBuffers& out)
    : panel_(panel),
      symbols_(std::move(symbols)),
      config_(config),
      num_envs_(num_envs),
      obs_dim_(config.window * panel.num_assets * panel.num_features + panel.num_assets + 1),
      out_(out),
      pool_(num_threads < 1 ? 1 : num_threads) {
  check_batch(num_envs, num_threads);
  check_config(config_);
  check_panel(panel_, symbols_, config_.window);
  if (!out.complete() || !out.ep_turnover || !out.step_costs || !out.step_turnover ||
      !out.ep_shares || !out.ep_cash)
    fail("every output buffer must be provided");

  stream_obs_ = num_envs_ * obs_dim_ * static_cast<int64_t>(sizeof(float)) >= kStreamObsBytes;
  const int64_t A = panel_.num_assets;
  mark_.assign(static_cast<size_t>(panel_.num_bars * A), 0.0);
  for (int64_t t = 0; t < panel_.num_bars; ++t) {
    for (int64_t a = 0; a < A; ++a) {
      const auto cell = static_cast<size_t>(t * A + a);
      const double previous = t > 0 ? mark_[cell - static_cast<size_t>(A)] : 0.0;
      mark_[cell] = panel_.tradable[cell] ? panel_.close[cell] : previous;
    }
  }

  equal_weight_.assign(static_cast<size_t>(A), 1.0 / static_cast<double>(A));
  if (config_.reward.needs_vol()) {
    // The equal-weight index's return at row t: the mean close-to-close return of the
    // names tradable at both t - 1 and t (0 where none is).
    std::vector<double> index(static_cast<size_t>(panel_.num_bars), 0.0);
    for (int64_t t = 1; t < panel_.num_bars; ++t) {
      double sum = 0.0;
      int64_t count = 0;
      for (int64_t a = 0; a < A; ++a) {
        const int64_t cell = t * A + a;
        if (panel_.tradable[cell] && panel_.tradable[cell - A]) {
          sum += panel_.close[cell] / panel_.close[cell - A] - 1.0;
          count += 1;
        }
      }
      index[static_cast<size_t>(t)] = count > 0 ? sum / static_cast<double>(count) : 0.0;
    }
    vol_.assign(static_cast<size_t>(panel_.num_bars), kVolFloor);
    if (panel_.num_bars > 0)
      segment_vols(index.data() + 1, panel_.num_bars - 1, config_.reward.vol_window,
                   vol_.data());
  }

  const auto n = static_cast<size_t>(num_envs);
  shares.assign(n * static_cast<size_t>(A), 0.0);
  bench_shares.assign(n * static_cast<size_t>(A), 0.0);
  last_target.assign(n * static_cast<size_t>(A), no_target());
  bench_cash.assign(n, 0.0);
  for (auto* v : {&cash, &equity, &peak_equity, &dsr_a, &dsr_b, &episode_return, &episode_costs,
                  &episode_turnover})
    v->assign(n, 0.0);
  for (auto* v : {&bar_index, &episode_steps, &episode_trades}) v->assign(n, 0);
  rng_state.assign(n, 0);
  reset(seed);
}

void PortfolioSim::reset(uint64_t seed) {
  for (int64_t i = 0; i < num_envs_; ++i)
    rng_state[static_cast<size_t>(i)] = env_stream_seed(seed, static_cast<uint64_t>(i));
  dispatch(nullptr, nullptr, true);
  out_.clear_step(num_envs_);
  std::fill(out_.step_costs, out_.step_costs + num_envs_, 0.0);
  std::fill(out_.step_turnover, out_.step_turnover + num_envs_, 0.0);
}

void PortfolioSim::step(const double* weights, const uint8_t* orders) {
  const int64_t A = panel_.num_assets;
  const double max_w = config_.max_weight + kCapTolerance;
  const double max_gross = config_.max_gross + kCapTolerance;
  for (int64_t i = 0; i < num_envs_; ++i) {
    if (orders && !orders[i]) continue;
    const double* w = weights + i * A;
    double gross = 0.0;
    for (int64_t a = 0; a < A; ++a) {
      const double x = w[a];
      const char* problem = nullptr;
      if (!std::isfinite(x)) {
        problem = "is not finite";
      } else if (config_.long_only && x < 0.0) {
        problem = "is negative (the portfolio is long-only)";
      } else if (std::fabs(x) > max_w) {
        problem = "exceeds max_weight";
      }
      if (problem) {
        std::ostringstream msg;
        msg << "weight " << x << " of env " << i << ", symbol '"
            << symbols_[static_cast<size_t>(a)] << "' " << problem
            << " (max_weight = " << config_.max_weight << ")";
        fail(msg.str());
      }
      gross += std::fabs(x);
    }
    if (gross > max_gross) {
      std::ostringstream msg;
      msg << "weights of env " << i << " have gross sum |w| = " << gross
          << ", above max_gross = " << config_.max_gross;
      fail(msg.str());
    }
  }
  dispatch(weights, orders, false);
}

void PortfolioSim::write_observations() {
  for (int64_t i = 0; i < num_envs_; ++i) write_obs(i, out_.obs + i * obs_dim_);
#if defined(__SSE2__)
  if (stream_obs_) _mm_sfence();
#endif
}

void PortfolioSim::dispatch(const double* weights, const uint8_t* orders, bool reset_all) {
  const int64_t A = panel_.num_assets;
  auto block = [this, weights, orders, reset_all, A](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      if (reset_all) {
        reset_env(i);
        write_obs(i, out_.obs + i * obs_dim_);
      } else {
        step_env(i, weights + i * A, !orders || orders[i]);
      }
    }
#if defined(__SSE2__)
    // Non-temporal stores are weakly ordered: publish them before the pool reports done.
    if (stream_obs_) _mm_sfence();
#endif
  };
  run_blocks(pool_, num_envs_, config_.min_envs_per_thread, block);
}

void PortfolioSim::reset_env(int64_t i) {
  const auto u = static_cast<size_t>(i);
  const int64_t start = episode_start(config_, rng_state[u], 0, panel_.num_bars);
  const int64_t A = panel_.num_assets;
  std::fill(shares.begin() + i * A, shares.begin() + (i + 1) * A, 0.0);
  bar_index[u] = start;
  cash[u] = config_.initial_cash;
  equity[u] = config_.initial_cash;
  peak_equity[u] = config_.initial_cash;
  dsr_a[u] = 0.0;
  dsr_b[u] = 0.0;
  episode_steps[u] = 0;
  episode_return[u] = 0.0;
  episode_costs[u] = 0.0;
  episode_turnover[u] = 0.0;
  episode_trades[u] = 0;
  std::fill(bench_shares.begin() + i * A, bench_shares.begin() + (i + 1) * A, 0.0);
  bench_cash[u] = config_.reward.needs_benchmark() ? config_.initial_cash : 0.0;
  std::fill(last_target.begin() + i * A, last_target.begin() + (i + 1) * A, no_target());
}

void PortfolioSim::write_obs(int64_t i, float* row) const {
  const auto u = static_cast<size_t>(i);
  const int64_t t = bar_index[u];
  const int64_t A = panel_.num_assets;
  const int64_t block = config_.window * A * panel_.num_features;
  // Rows [t - window + 1, t] of the [T, A, F] panel are one contiguous run: one copy, and
  // untradable cells are already zero in the panel.
  copy_floats(row, panel_.features + (t - config_.window + 1) * A * panel_.num_features,
              static_cast<size_t>(block), stream_obs_);
  float* weights = row + block;
  const double* sh = shares.data() + i * A;
  const double* m = mark_.data() + t * A;
  const double inv_equity = 1.0 / equity[u];
  for (int64_t a = 0; a < A; ++a) weights[a] = static_cast<float>(sh[a] * m[a] * inv_equity);
  weights[A] = static_cast<float>(cash[u] * inv_equity);
}

PortfolioSim::Rebalanced PortfolioSim::rebalance(int64_t t, const double* w, double* sh,
                                                 double& cash) const {
  const int64_t A = panel_.num_assets;
  const bool next_open = config_.execution == Execution::kNextOpen;
  const int64_t fill_row = next_open ? t + 1 : t;
  const double* fill_px = (next_open ? panel_.open : panel_.close) + fill_row * A;
  const uint8_t* can = panel_.tradable + fill_row * A;
  const double* mark_fill = mark_.data() + fill_row * A;

  double equity_at_fill = cash;
  for (int64_t a = 0; a < A; ++a) equity_at_fill += sh[a] * (can[a] ? fill_px[a] : mark_fill[a]);

  const double band = config_.trade_band * equity_at_fill;
  double c = cash;
  Rebalanced out;
  for (int64_t a = 0; a < A; ++a) {
    if (!can[a]) continue;  // no bar, no order: the weight stays where it is
    const double p = fill_px[a];
    const double target = equity_at_fill > 0.0 ? w[a] * equity_at_fill / p : 0.0;
    double traded = target - sh[a];
    if (config_.integer_shares) traded = std::trunc(traded);
    const double notional = std::fabs(traded) * p;
    if (traded == 0.0 || notional < band) continue;
    const double cost = order_cost(config_.costs, traded > 0.0, notional);
    c -= traded * p + cost;
    sh[a] += traded;
    out.notional += notional;
    out.costs += cost;
    out.legs += 1;
  }
  cash = c;
  return out;
}

void PortfolioSim::step_env(int64_t i, const double* w, bool rebalance_now) {
  const auto u = static_cast<size_t>(i);
  const int64_t A = panel_.num_assets;
  const int64_t t = bar_index[u];
  double* sh = shares.data() + i * A;
  const double equity_before = equity[u];

  if (rebalance_now && config_.anchored) {
    // An unchanged target sends no order (sim_portfolio.hpp's PortfolioConfig::anchored).
    double* last = last_target.data() + i * A;
    rebalance_now = !std::equal(w, w + A, last);
    if (rebalance_now) std::copy(w, w + A, last);
  }
  Rebalanced done;
  if (rebalance_now) done = rebalance(t, w, sh, cash[u]);
  const double c = cash[u], notional_sum = done.notional, cost_sum = done.costs;
  const int64_t legs = done.legs;

  const int64_t next = t + 1;
  const double* mark_next = mark_.data() + next * A;
  double equity_after = c;
  for (int64_t a = 0; a < A; ++a) equity_after += sh[a] * mark_next[a];

  StepContext ctx;
  if (config_.reward.needs_benchmark()) {
    // The benchmark's book steps beside the agent's: bought on the episode's first step.
    double* bench = bench_shares.data() + i * A;
    const double* mark_now = mark_.data() + t * A;
    double before = bench_cash[u], after = 0.0;
    for (int64_t a = 0; a < A; ++a) before += bench[a] * mark_now[a];
    if (episode_steps[u] == 0) rebalance(t, equal_weight_.data(), bench, bench_cash[u]);
    after = bench_cash[u];
    for (int64_t a = 0; a < A; ++a) after += bench[a] * mark_next[a];
    ctx.bench_before = before;
    ctx.bench_after = after;
  }
  if (!vol_.empty()) ctx.vol = vol_[static_cast<size_t>(t)];
  const double turnover = notional_sum / equity_before;
  const double reward = step_reward(config_.reward, config_.initial_cash, equity_before,
                                    equity_after, notional_sum, dsr_a[u], dsr_b[u],
                                    peak_equity[u], ctx);
  bar_index[u] = next;
  equity[u] = equity_after;
  episode_steps[u] += 1;
  episode_return[u] += reward;
  episode_costs[u] += cost_sum;
  episode_turnover[u] += turnover;
  episode_trades[u] += legs;

  const EpisodeEnd end = episode_end(config_, equity_after, episode_steps[u], next, panel_.num_bars);
  out_.write_step(i, reward, end);
  out_.step_costs[i] = cost_sum;
  out_.step_turnover[i] = turnover;
  if (end.done()) {
    write_obs(i, out_.final_obs + i * obs_dim_);
    double liquidation = 0.0;
    for (int64_t a = 0; a < A; ++a)
      liquidation += liquidation_cost(config_.costs, sh[a], mark_next[a]);
    out_.write_episode(i, episode_return[u], episode_steps[u], equity_after, episode_costs[u],
                       episode_trades[u], liquidation);
    out_.ep_turnover[i] = episode_turnover[u];
    std::copy(sh, sh + A, out_.ep_shares + i * A);
    out_.ep_cash[i] = c;
    reset_env(i);
  }
  write_obs(i, out_.obs + i * obs_dim_);
}

std::vector<PortfolioSim::StateField> PortfolioSim::state_fields() {
  const int64_t A = panel_.num_assets;
  const auto* k = kPortfolioStateKeys;
  std::vector<StateField> fields{
      {k[0], 'd', shares.data(), A, true},
      {k[1], 'd', cash.data(), 1, false},
      {k[2], 'd', equity.data(), 1, false},
      {k[3], 'd', peak_equity.data(), 1, false},
      {k[4], 'd', dsr_a.data(), 1, false},
      {k[5], 'd', dsr_b.data(), 1, false},
      {k[6], 'd', episode_return.data(), 1, false},
      {k[7], 'd', episode_costs.data(), 1, false},
      {k[8], 'd', episode_turnover.data(), 1, false},
      {k[9], 'q', bar_index.data(), 1, false},
      {k[10], 'q', episode_steps.data(), 1, false},
      {k[11], 'q', episode_trades.data(), 1, false},
      {k[12], 'Q', rng_state.data(), 1, false},
      {k[13], 'd', bench_shares.data(), A, true},
      {k[14], 'd', bench_cash.data(), 1, false},
      {k[15], 'd', last_target.data(), A, true},
  };
  static_assert(std::size(kPortfolioStateKeys) == 16, "one key per state field");
  return fields;
}

void PortfolioSim::set_state(const std::vector<const void*>& sources) {
  auto fields = state_fields();
  if (sources.size() != fields.size()) fail("set_state needs every state array");
  // Check everything first: a rejected snapshot leaves the simulator as it was.
  for (size_t k = 0; k < fields.size(); ++k) {
    const StateField& f = fields[k];
    const int64_t count = num_envs_ * f.width;
    if (f.kind == 'd') {
      const auto* v = static_cast<const double*>(sources[k]);
      for (int64_t j = 0; j < count; ++j)
        if (!std::isfinite(v[j]))
          fail(std::string("state '") + f.name + "' holds a non-finite value");
      if (f.data == equity.data() || f.data == peak_equity.data())
        for (int64_t j = 0; j < count; ++j)
          if (!(v[j] > 0.0)) fail(std::string("state '") + f.name + "' must be > 0");
    } else if (f.kind == 'q') {
      const auto* v = static_cast<const int64_t*>(sources[k]);
      const bool is_bar = f.data == bar_index.data();
      const int64_t lo = is_bar ? config_.window - 1 : 0;
      const int64_t hi = is_bar ? panel_.num_bars - 2 : std::numeric_limits<int64_t>::max();
      for (int64_t j = 0; j < count; ++j) {
        if (v[j] < lo || v[j] > hi) {
          std::ostringstream msg;
          msg << "state '" << f.name << "' value " << v[j] << " (env " << j / f.width
              << ") is outside [" << lo << ", " << hi << "]";
          fail(msg.str());
        }
      }
    }
  }
  for (size_t k = 0; k < fields.size(); ++k) {
    const size_t bytes = static_cast<size_t>(num_envs_ * fields[k].width) * 8;
    std::memcpy(fields[k].data, sources[k], bytes);
  }
  write_observations();
}

}  // namespace fastrl
