"""Test oracle, not part of fastrl's API: the simulator in plain numpy, vectorised over
envs, that the tests check ``cpp/src/sim.cpp`` against and the benchmarks (``fastrl bench``)
time it against. Nothing in fastrl evaluates, trains or trades through it.

It implements exactly the semantics of ``cpp/src/sim.cpp`` (see fastrl.markets.single.env for the
contract), including the per-env splitmix64 streams and the market rules (whole shares,
intraday square-off, short borrow fee; see fastrl.costs), so that the same seed and the same
actions give the same positions, cash, costs and rewards to floating-point rounding.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from fastrl.data.block import MarketBlock
from fastrl.env_config import EnvConfig, needs_benchmark
from fastrl.markets.single.env import (
    NO_ENTRY_AT_OPEN,
    SESSION_END,
    SQUARE_OFF,
    STATE_KEYS,
    session_flags,
    single_obs_dim,
)
from fastrl.rng import env_stream_seeds, next_below

SESSIONS_PER_YEAR = 252.0  # sim.hpp's kSessionsPerYear: the borrow fee's day count


class ReferenceEpisodes:
    """What both reference simulators share, as cpp/include/fastrl/episode.hpp and rewards.hpp
    do for the C++ ones: the random draws, the episode start, the reward with its penalties
    and the episode end with its auto-reset. A subclass holds the per-env state arrays
    (rng_state, dsr_a, dsr_b, peak_equity, bar_index, equity, episode_steps, episode_return,
    episode_costs, episode_trades), ``config``, ``num_envs``, ``obs_dim``, and provides
    ``observe(envs)`` and ``_reset_envs(envs)``."""

    def _next_below(self, envs: np.ndarray, bound: Any) -> np.ndarray:
        return next_below(self.rng_state, envs, bound)

    def _episode_starts(self, envs: np.ndarray, begin: Any, end: Any) -> np.ndarray:
        """First rows of new episodes over data rows [begin, end) (episode.hpp's
        episode_start): the first full window, or a random draw that still fits."""
        c = self.config
        first = np.broadcast_to(np.asarray(begin, dtype=np.int64) + c.window - 1, envs.shape)
        if not c.random_start:
            return first.copy()
        latest = np.maximum(first, np.asarray(end) - 1 - c.episode_length) \
            if c.episode_length > 0 else np.broadcast_to(np.asarray(end) - 2, envs.shape)
        return first + self._next_below(envs, latest - first + 1)

    def _start_episodes(self, envs: np.ndarray, start: np.ndarray) -> None:
        """The state every new episode starts from: all cash at ``start``, nothing counted."""
        c = self.config
        self.bar_index[envs] = start
        for arr in (self.cash, self.equity, self.peak_equity):
            arr[envs] = c.initial_cash
        self.episode_return[envs] = 0.0
        self.episode_costs[envs] = 0.0
        self.episode_steps[envs] = 0
        self.episode_trades[envs] = 0

    def _window(self, features: np.ndarray, envs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(current rows of ``envs``, their observation windows of ``features`` flattened)."""
        t = self.bar_index[envs]
        rows = t[:, None] + np.arange(-self.config.window + 1, 1, dtype=np.int64)[None, :]
        return t, features[rows].reshape(len(envs), -1)

    def _step_reward(self, equity_before: np.ndarray, equity_after: np.ndarray,
                     notional: np.ndarray, bench: tuple[np.ndarray, np.ndarray] | None = None,
                     vol: np.ndarray | None = None) -> np.ndarray:
        """rewards.hpp's step_reward: the reward kind, then the drawdown and turnover
        penalties (the turnover penalty charges the traded notional / equity before).
        ``bench``: the benchmark book's equity before and after the step, where the reward
        reads it; ``vol``: the trailing volatility (vol_scaled; diff_sharpe on active returns
        floors its variance at DSR_VAR_FLOOR * vol ** 2)."""
        c = self.config
        floor = 1e-9 * c.initial_cash
        active = c.reward == "active" or c.reward_base == "active"
        log_r = np.log(np.maximum(equity_after, floor) / equity_before)
        if active and bench is not None:
            log_b = np.log(np.maximum(bench[1], floor) / bench[0])
        if c.reward == "pnl":
            reward = (equity_after - equity_before) / c.initial_cash
        elif c.reward == "active":
            reward = log_r - log_b
        elif c.reward == "vol_scaled":
            reward = (log_r - log_b if active else log_r) / vol
        elif c.reward == "diff_sharpe":
            r = equity_after / equity_before - 1.0
            if active:
                r = r - (bench[1] / bench[0] - 1.0)
                self.dsr_b = np.maximum(self.dsr_b, self.dsr_a**2 + DSR_VAR_FLOOR * vol * vol)
            da, db = r - self.dsr_a, r * r - self.dsr_b
            var = self.dsr_b - self.dsr_a**2
            safe = np.where(var > 1e-12, var, 1.0)
            reward = np.where(var > 1e-12, (self.dsr_b * da - 0.5 * self.dsr_a * db)
                              / (safe * np.sqrt(safe)), 0.0)
            self.dsr_a = self.dsr_a + c.dsr_eta * da
            self.dsr_b = self.dsr_b + c.dsr_eta * db
        else:
            reward = log_r
        scale = vol if c.reward == "vol_scaled" else 1.0  # penalties on the return's scale
        self.peak_equity = np.maximum(self.peak_equity, equity_after)
        if c.drawdown_penalty > 0.0:
            reward = reward - c.drawdown_penalty * (1.0 - equity_after / self.peak_equity) / scale
        if c.turnover_penalty > 0.0:
            reward = reward - c.turnover_penalty * (notional / equity_before) / scale
        return reward

    def _end_step(self, reward: np.ndarray, equity_after: np.ndarray, data_end: Any,
                  held: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                        np.ndarray, dict[str, Any]]:
        """Advances every env one row and ends episodes as episode.hpp's episode_end does:
        terminated at the equity floor, else truncated by length or when no row follows in
        the data (rows before ``data_end``). Reports the ended episodes (with ``held``, the
        simulator's own end-of-episode fields), auto-resets them and returns step()'s tuple."""
        c = self.config
        nxt = self.bar_index + 1
        self.bar_index = nxt
        self.equity = equity_after
        self.episode_steps = self.episode_steps + 1
        self.episode_return = self.episode_return + reward

        terminated = equity_after <= c.equity_floor * c.initial_cash
        length_done = (self.episode_steps >= c.episode_length) if c.episode_length > 0 \
            else np.zeros(self.num_envs, dtype=bool)
        truncated = ~terminated & (length_done | (nxt + 1 >= data_end))
        done = terminated | truncated
        final_obs = np.zeros((self.num_envs, self.obs_dim), dtype=np.float32)
        ended_values = {"r": self.episode_return, "l": self.episode_steps,
                        "equity": equity_after, "costs": self.episode_costs,
                        "trades": self.episode_trades, **held}
        episode = {key: np.where(done.reshape(-1, *(1,) * (np.ndim(value) - 1)), value, 0)
                   for key, value in ended_values.items()}
        ended = np.flatnonzero(done)
        if ended.size:
            final_obs[ended] = self.observe(ended)
            self._reset_envs(ended)
        info = {"final_obs": final_obs, "_final_obs": done, "episode": episode, "_episode": done}
        return self.observe(), reward, terminated, truncated, info


class ReferenceVecEnv(ReferenceEpisodes):
    """Same constructor arguments and outputs as TradingVecEnv, without threads or C++."""

    def __init__(self, market: MarketBlock, num_envs: int = 64, config: EnvConfig | None = None,
                 *, seed: int = 0) -> None:
        self.config = config if config is not None else EnvConfig()
        self.config.validate()
        self.market = market
        self.num_envs = int(num_envs)
        self.window = self.config.window
        self.obs_dim = single_obs_dim(market, self.window)
        self.cost_model = self.config.cost_model()
        self.levels = np.asarray(self.config.position_levels, dtype=np.float64)
        self.flags = (session_flags(market, self.config.intraday_cutoff)
                      if self.config.needs_session_flags() else None)
        n = self.num_envs
        self.position = np.zeros(n)
        self.shares = np.zeros(n)
        self.cash = np.zeros(n)
        self.equity = np.zeros(n)
        self.entry_price = np.zeros(n)
        self.peak_equity = np.zeros(n)
        self.dsr_a = np.zeros(n)
        self.dsr_b = np.zeros(n)
        self.episode_return = np.zeros(n)
        self.episode_costs = np.zeros(n)
        self.bar_index = np.zeros(n, dtype=np.int64)
        self.segment = np.zeros(n, dtype=np.int64)
        self.last_trade_bar = np.zeros(n, dtype=np.int64)
        self.episode_steps = np.zeros(n, dtype=np.int64)
        self.episode_trades = np.zeros(n, dtype=np.int64)
        self.rng_state = np.zeros(n, dtype=np.uint64)
        self.bench_position = np.zeros(n)
        self.bench_shares = np.zeros(n)
        self.bench_cash = np.zeros(n)
        self.needs_benchmark = needs_benchmark(self.config)
        self.vol = (single_vols(market, self.config.vol_window)
                    if needs_vol(self.config) else None)
        self.reset_seed = int(seed) & (2**64 - 1)
        self.reset_count = 0
        self.reset(seed=seed)

    # -- episodes ------------------------------------------------------------------------

    def _reset_envs(self, envs: np.ndarray) -> None:
        c, m = self.config, self.market
        if c.segment_assignment == "round_robin":
            seg = envs % m.num_segments
        else:
            seg = self._next_below(envs, np.full(envs.shape, m.num_segments))
        start = self._episode_starts(envs, m.offsets[seg], m.offsets[seg + 1])
        self._start_episodes(envs, start)
        self.segment[envs] = seg
        self.last_trade_bar[envs] = start
        for arr in (self.position, self.shares, self.entry_price):
            arr[envs] = 0.0
        # Differential Sharpe warm start: mean and mean square of the window - 1 close-to-close
        # simple returns inside the first observation window, summed in sim.cpp's order.
        a = np.zeros(len(envs))
        b = np.zeros(len(envs))
        if c.reward == "diff_sharpe" and c.window > 1:
            for k in range(c.window - 2, -1, -1):
                r = m.close[start - k] / m.close[start - k - 1] - 1.0
                a += r
                b += r * r
            a /= c.window - 1
            b /= c.window - 1
        if c.reward == "diff_sharpe" and c.reward_base == "active":
            a = np.zeros(len(envs))  # an agent at the benchmark earns exactly 0 (sim.cpp)
        self.dsr_a[envs] = a
        self.dsr_b[envs] = b
        self.bench_position[envs] = 0.0
        self.bench_shares[envs] = 0.0
        self.bench_cash[envs] = c.initial_cash if self.needs_benchmark else 0.0

    def observe(self, envs: np.ndarray | None = None) -> np.ndarray:
        """Observation rows of the given envs (all by default) at their current bar."""
        envs = np.arange(self.num_envs) if envs is None else envs
        t, window = self._window(self.market.features, envs)
        pos = self.position[envs]
        entry = np.where(pos != 0.0, self.entry_price[envs], 1.0)
        unrealised = np.where(pos != 0.0, pos * (self.market.close[t] / entry - 1.0), 0.0)
        since = np.log1p((t - self.last_trade_bar[envs]).astype(np.float64))
        agent = np.stack([pos, unrealised, since], axis=1).astype(np.float32)
        return np.concatenate([window, agent], axis=1)

    def reset(self, *, seed: int | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """As TradingVecEnv.reset: without a seed, the next seed of the sequence from the first."""
        if seed is not None:
            self.reset_seed = int(seed) & (2**64 - 1)
            self.reset_count = 0
            stream_seed = self.reset_seed
        else:
            stream_seed = (self.reset_seed + 0x9E3779B97F4A7C15 * self.reset_count) & (2**64 - 1)
        self.reset_count += 1
        self.rng_state[:] = env_stream_seeds(stream_seed, self.num_envs)
        self._reset_envs(np.arange(self.num_envs))
        return self.observe(), {}

    # -- snapshots (same keys, dtypes and shapes as TradingVecEnv.get_state) -------------------

    def get_state(self) -> dict[str, np.ndarray]:
        state = {key: np.array(getattr(self, key)) for key in STATE_KEYS[:-2]}
        state["reset_seed"] = np.array(self.reset_seed, dtype=np.uint64)
        state["reset_count"] = np.array(self.reset_count, dtype=np.int64)
        return state

    def set_state(self, state: dict[str, np.ndarray]) -> np.ndarray:
        """Loads a snapshot (checked like TradingVecEnv.set_state); returns the observation."""
        missing = [key for key in STATE_KEYS if key not in state]
        unknown = sorted(set(state) - set(STATE_KEYS))
        if missing or unknown:
            raise ValueError(f"state keys: missing {missing}, unknown {unknown}")
        current = self.get_state()
        for key in STATE_KEYS:
            want, got = current[key], state[key]
            if (not isinstance(got, np.ndarray) or got.dtype != want.dtype
                    or got.shape != want.shape):
                raise ValueError(f"state '{key}' must be a {want.dtype} array of shape "
                                 f"{want.shape}")
        seg, bar = state["segment"], state["bar_index"]
        if np.any((seg < 0) | (seg >= self.market.num_segments)):
            raise ValueError("state 'segment' is outside this market's segments")
        lo = self.market.offsets[np.clip(seg, 0, self.market.num_segments - 1)] + self.window - 1
        hi = self.market.offsets[np.clip(seg, 0, self.market.num_segments - 1) + 1] - 2
        if np.any((bar < lo) | (bar > hi)):
            raise ValueError("state 'bar_index' is outside the steppable rows of its segment")
        for key in STATE_KEYS:
            if key in ("reset_seed", "reset_count"):
                setattr(self, key, int(state[key]))
            else:
                setattr(self, key, np.array(state[key]))
        return self.observe()

    def _trade(self, t: np.ndarray, target: np.ndarray, position: np.ndarray,
               shares: np.ndarray, cash: np.ndarray) -> dict[str, np.ndarray]:
        """sim.cpp's Simulator::trade on one book (the agent's or the benchmark's): the order
        for ``target`` and the market rules. Returns the book after them and what happened
        (fill, square-off exit, borrow fee), for the caller to count."""
        c, m = self.config, self.market
        fill = m.open[t + 1] if c.execution == "next_open" else m.close[t]
        if self.cost_model.square_off:  # MIS: no fresh position after the cutoff
            late = (self.flags[t + 1] & NO_ENTRY_AT_OPEN if c.execution == "next_open"
                    else self.flags[t] & SQUARE_OFF)
            target = np.where(late != 0, 0.0, target)

        change = target != position
        equity_at_fill = cash + shares * fill
        target_shares = np.where(equity_at_fill > 0.0, target * equity_at_fill / fill, 0.0)
        traded = target_shares - shares
        if c.integer_shares:
            traded = np.trunc(traded)
            change &= traded != 0.0  # a zero-share order is not sent
            target_shares = shares + traded
        notional = np.where(change, np.abs(traded) * fill, 0.0)
        cost = np.where(change, self.cost_model.order_cost(traded > 0.0, notional), 0.0)
        cash = np.where(change, cash - (traded * fill + cost), cash)
        shares = np.where(change, target_shares, shares)
        position = np.where(change, target, position)
        out = np.zeros(self.num_envs, dtype=bool)
        exit_cost = exit_notional = np.zeros(self.num_envs)
        if self.cost_model.square_off:  # the session's last allowed close: exit everything
            out = ((self.flags[t + 1] & SQUARE_OFF) != 0) & (shares != 0.0)
            price = m.close[t + 1]
            exit_traded = -shares
            exit_notional = np.where(out, np.abs(exit_traded) * price, 0.0)
            exit_cost = np.where(out, self.cost_model.order_cost(exit_traded > 0.0,
                                                                 exit_notional), 0.0)
            cash = np.where(out, cash - (exit_traded * price + exit_cost), cash)
            shares = np.where(out, 0.0, shares)
            position = np.where(out, 0.0, position)
        night = np.zeros(self.num_envs, dtype=bool)
        fee = np.zeros(self.num_envs)
        if c.short_borrow_rate > 0.0:  # one night of borrow on a short held over the close
            night = ((self.flags[t + 1] & SESSION_END) != 0) & (shares < 0.0)
            fee = c.short_borrow_rate / SESSIONS_PER_YEAR * -shares * m.close[t + 1]
            cash = np.where(night, cash - fee, cash)
        return {"position": position, "shares": shares, "cash": cash, "fill": fill,
                "change": change, "notional": notional, "cost": cost, "out": out,
                "exit_notional": exit_notional, "exit_cost": exit_cost, "night": night,
                "fee": fee, "target": target}

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                          dict[str, Any]]:
        c, m = self.config, self.market
        a = np.asarray(actions).reshape(self.num_envs)
        value = a.astype(np.float64) if c.action == "continuous" else self.levels[a]
        target = 1.0 - value if c.anchored else value  # anchored: 1 - the underweight
        t = self.bar_index
        equity_before = self.equity.copy()

        d = self._trade(t, target, self.position, self.shares, self.cash)
        change, out, night = d["change"], d["out"], d["night"]
        self.cash, self.shares, self.position = d["cash"], d["shares"], d["position"]
        self.entry_price = np.where(change, np.where(d["target"] != 0.0, d["fill"], 0.0),
                                    self.entry_price)
        fill_bar = t + 1 if c.execution == "next_open" else t
        self.last_trade_bar = np.where(change, fill_bar, self.last_trade_bar)
        self.episode_costs = self.episode_costs + d["cost"]
        self.episode_trades = self.episode_trades + change
        notional = d["notional"]
        if self.cost_model.square_off:
            self.entry_price = np.where(out, 0.0, self.entry_price)
            self.last_trade_bar = np.where(out, t + 1, self.last_trade_bar)
            self.episode_costs = np.where(out, self.episode_costs + d["exit_cost"],
                                          self.episode_costs)
            self.episode_trades = self.episode_trades + out
            notional = notional + d["exit_notional"]
        if c.short_borrow_rate > 0.0:
            self.episode_costs = np.where(night, self.episode_costs + d["fee"],
                                          self.episode_costs)

        bench = None
        if self.needs_benchmark:  # buy-and-hold's book beside the agent's
            before = self.bench_cash + self.bench_shares * m.close[t]
            b = self._trade(t, np.ones(self.num_envs), self.bench_position, self.bench_shares,
                            self.bench_cash)
            self.bench_cash, self.bench_shares = b["cash"], b["shares"]
            self.bench_position = b["position"]
            bench = (before, self.bench_cash + self.bench_shares * m.close[t + 1])
        equity_after = self.cash + self.shares * m.close[t + 1]
        vol = self.vol[t] if self.vol is not None else None
        reward = self._step_reward(equity_before, equity_after, notional, bench, vol)
        liquidation = np.where(self.shares != 0.0, self.cost_model.order_cost(
            self.shares < 0.0, np.abs(self.shares) * m.close[t + 1]), 0.0)
        return self._end_step(reward, equity_after, m.offsets[self.segment + 1],
                              {"position": self.position, "shares": self.shares,
                               "liquidation": liquidation})


def trailing_vol(returns: Any) -> float:
    """rewards.hpp's trailing_vol: the sample std of ``returns`` summed in order, floored at
    VOL_FLOOR (the floor with fewer than two)."""
    rets = [float(r) for r in returns]
    n = len(rets)
    if n < 2:
        return VOL_FLOOR
    mean = 0.0
    for r in rets:
        mean += r
    mean /= n
    ss = 0.0
    for r in rets:
        ss += (r - mean) * (r - mean)
    return max(math.sqrt(ss / (n - 1)), VOL_FLOOR)


VOL_FLOOR = 1e-4  # rewards.hpp's kVolFloor
DSR_VAR_FLOOR = 0.25  # rewards.hpp's kDsrVarFloor


def segment_vols(returns: np.ndarray, window: int) -> np.ndarray:
    """rewards.hpp's segment_vols: row t's trailing volatility over the window returns up to
    it (``returns[k]`` the return into row k + 1); the segment's first ``window`` rows take
    its first full estimate."""
    n = len(returns)
    first = trailing_vol(returns[:min(n, window)])
    return np.array([first if t < window else trailing_vol(returns[t - window:t])
                     for t in range(n + 1)])


def needs_vol(config: Any) -> bool:
    """rewards.hpp's RewardParams::needs_vol."""
    return config.reward == "vol_scaled" or (config.reward_base == "active"
                                             and config.reward == "diff_sharpe")


def single_vols(market: MarketBlock, vol_window: int) -> np.ndarray:
    """sim.cpp's per-row trailing volatility of the segment's close-to-close returns."""
    vol = np.full(market.num_bars, VOL_FLOOR)
    close = np.asarray(market.close, dtype=np.float64)
    for s in range(market.num_segments):
        begin, end = int(market.offsets[s]), int(market.offsets[s + 1])
        vol[begin:end] = segment_vols(close[begin + 1:end] / close[begin:end - 1] - 1.0,
                                      vol_window)
    return vol
