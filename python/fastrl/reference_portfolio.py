"""Test oracle, not part of fastrl's API: the portfolio simulator in plain numpy, vectorised
over envs, that the tests check ``cpp/src/sim_portfolio.cpp`` against and the benchmarks
time it against. Nothing in fastrl evaluates, trains or trades through it.

It implements the semantics of ``cpp/src/sim_portfolio.cpp`` (see fastrl.markets.portfolio.env
for the contract) with the same splitmix64 streams as fastrl.reference. Sums over symbols run
in the C++ order (cash first, then symbol 0, 1, ...) so that rounding, and with it every
whole-share and no-trade-band decision, comes out the same.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fastrl.data.panel import PanelBlock
from fastrl.env_config import PortfolioConfig
from fastrl.markets.portfolio.env import PORTFOLIO_STATE_KEYS, portfolio_obs_dim
from fastrl.reference import (
    VOL_FLOOR,
    ReferenceEpisodes,
    needs_benchmark,
    needs_vol,
    segment_vols,
)
from fastrl.rng import env_stream_seeds


class ReferencePortfolioEnv(ReferenceEpisodes):
    """Same constructor arguments and outputs as PortfolioVecEnv, without threads or C++."""

    def __init__(self, panel: PanelBlock, num_envs: int = 64,
                 config: PortfolioConfig | None = None, *, seed: int = 0) -> None:
        self.config = config if config is not None else PortfolioConfig()
        self.config.validate()
        self.panel = panel
        self.num_envs = int(num_envs)
        self.num_assets = panel.num_assets
        self.window = self.config.window
        self.obs_dim = portfolio_obs_dim(panel, self.window)
        self.cost_model = self.config.cost_model()
        self.mark = panel.mark
        n, a = self.num_envs, self.num_assets
        self.shares = np.zeros((n, a))
        for name in ("cash", "equity", "peak_equity", "dsr_a", "dsr_b", "episode_return",
                     "episode_costs", "episode_turnover"):
            setattr(self, name, np.zeros(n))
        for name in ("bar_index", "episode_steps", "episode_trades"):
            setattr(self, name, np.zeros(n, dtype=np.int64))
        self.rng_state = np.zeros(n, dtype=np.uint64)
        self.bench_shares = np.zeros((n, a))
        self.bench_cash = np.zeros(n)
        self.last_target = np.zeros((n, a))
        self.no_target = self.config.max_weight + 1.0  # sim_portfolio.hpp's no_target()
        self.needs_benchmark = needs_benchmark(self.config)
        self.vol = (portfolio_vols(panel, self.config.vol_window)
                    if needs_vol(self.config) else None)
        self.step_costs, self.step_turnover = np.zeros(n), np.zeros(n)
        self.reset(seed=seed)

    def _reset_envs(self, envs: np.ndarray) -> None:
        self._start_episodes(envs, self._episode_starts(envs, 0, self.panel.num_bars))
        for arr in (self.shares, self.dsr_a, self.dsr_b, self.episode_turnover,
                    self.bench_shares):
            arr[envs] = 0.0
        self.bench_cash[envs] = self.config.initial_cash if self.needs_benchmark else 0.0
        self.last_target[envs] = self.no_target

    def observe(self, envs: np.ndarray | None = None) -> np.ndarray:
        """Observation rows of the given envs (all by default) at their current row."""
        envs = np.arange(self.num_envs) if envs is None else envs
        t, window = self._window(self.panel.features, envs)
        inv = 1.0 / self.equity[envs]
        weights = self.shares[envs] * self.mark[t] * inv[:, None]
        cash = (self.cash[envs] * inv)[:, None]
        return np.concatenate([window, weights.astype(np.float32), cash.astype(np.float32)],
                              axis=1)

    def reset(self, *, seed: int = 0) -> tuple[np.ndarray, dict[str, Any]]:
        self.rng_state[:] = env_stream_seeds(int(seed) & (2**64 - 1), self.num_envs)
        self._reset_envs(np.arange(self.num_envs))
        self.step_costs, self.step_turnover = np.zeros(self.num_envs), np.zeros(self.num_envs)
        return self.observe(), {}

    def get_state(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name).copy() for name in PORTFOLIO_STATE_KEYS}

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        for name in PORTFOLIO_STATE_KEYS:
            setattr(self, name, np.array(state[name], dtype=getattr(self, name).dtype))

    def _rebalance(self, t: np.ndarray, w: np.ndarray, shares: np.ndarray, cash: np.ndarray,
                   orders: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                       np.ndarray, np.ndarray]:
        """sim_portfolio.cpp's PortfolioSim::rebalance of one book (shares [N, A] changed in
        place) to weights ``w``: (cash, notional, costs, legs, shares)."""
        c, p = self.config, self.panel
        n, A = self.num_envs, self.num_assets
        fill_row = t + 1 if c.execution == "next_open" else t
        px = (p.open if c.execution == "next_open" else p.close)[fill_row]
        can = p.tradable[fill_row]
        value_px = np.where(can, px, self.mark[fill_row])
        if orders is not None:  # an env without an order trades no name
            can = can & np.asarray(orders, dtype=bool)[:, None]
        equity_at_fill = cash.copy()
        for a in range(A):
            equity_at_fill += shares[:, a] * value_px[:, a]
        band = c.trade_band * equity_at_fill
        cash = cash.copy()
        notional_sum, cost_sum = np.zeros(n), np.zeros(n)
        legs = np.zeros(n, dtype=np.int64)
        for a in range(A):
            price = np.where(can[:, a], px[:, a], 1.0)  # untradable prices may be NaN
            target = np.where(equity_at_fill > 0.0, w[:, a] * equity_at_fill / price, 0.0)
            traded = target - shares[:, a]
            if c.integer_shares:
                traded = np.trunc(traded)
            notional = np.abs(traded) * price
            trade = can[:, a] & (traded != 0.0) & ~(notional < band)
            cost = np.where(trade, self.cost_model.order_cost(traded > 0.0, notional), 0.0)
            cash = np.where(trade, cash - (traded * price + cost), cash)
            shares[:, a] = np.where(trade, shares[:, a] + traded, shares[:, a])
            notional_sum += np.where(trade, notional, 0.0)
            cost_sum += cost
            legs += trade
        return cash, notional_sum, cost_sum, legs, shares

    def step(self, actions: Any, orders: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """One step to the target weights; ``orders`` [N] (None: all) False sends no order."""
        c, p = self.config, self.panel
        n, A = self.num_envs, self.num_assets
        w = np.asarray(actions, dtype=np.float64).reshape(n, A)
        t = self.bar_index
        equity_before = self.equity.copy()
        if c.anchored:  # an unchanged target sends no order
            send = np.ones(n, dtype=bool) if orders is None else np.asarray(orders, bool).copy()
            send &= np.any(w != self.last_target, axis=1)
            self.last_target = np.where(send[:, None], w, self.last_target)
            orders = send
        self.cash, notional_sum, cost_sum, legs, _ = self._rebalance(t, w, self.shares,
                                                                     self.cash, orders)
        cash = self.cash
        equity_after = cash.copy()
        mark_next = self.mark[t + 1]
        for a in range(A):
            equity_after += self.shares[:, a] * mark_next[:, a]
        bench = None
        if self.needs_benchmark:  # equal weight, bought on the episode's first step, held
            before = self.bench_cash.copy()
            for a in range(A):
                before += self.bench_shares[:, a] * self.mark[t][:, a]
            ew = np.full((n, A), 1.0 / A)
            self.bench_cash = self._rebalance(t, ew, self.bench_shares, self.bench_cash,
                                              self.episode_steps == 0)[0]
            after = self.bench_cash.copy()
            for a in range(A):
                after += self.bench_shares[:, a] * mark_next[:, a]
            bench = (before, after)
        vol = self.vol[t] if self.vol is not None else None
        turnover = notional_sum / equity_before
        reward = self._step_reward(equity_before, equity_after, notional_sum, bench, vol)
        self.episode_costs = self.episode_costs + cost_sum
        self.episode_turnover = self.episode_turnover + turnover
        self.episode_trades = self.episode_trades + legs
        self.step_costs, self.step_turnover = cost_sum, turnover
        liquidation = np.zeros(n)
        for a in range(A):  # the C++ order: symbol 0, 1, ...
            held = self.shares[:, a]
            liquidation += np.where(held != 0.0, self.cost_model.order_cost(
                held < 0.0, np.abs(held) * mark_next[:, a]), 0.0)
        return self._end_step(reward, equity_after, p.num_bars,
                              {"turnover": self.episode_turnover, "liquidation": liquidation,
                               "shares": self.shares.copy(), "cash": self.cash.copy()})


def portfolio_vols(panel: PanelBlock, vol_window: int) -> np.ndarray:
    """sim_portfolio.cpp's per-row trailing volatility of the equal-weight index: the mean
    close-to-close return of the names tradable at both rows (0 where none is)."""
    T, A = panel.num_bars, panel.num_assets
    close, tradable = np.asarray(panel.close), np.asarray(panel.tradable, dtype=bool)
    index = np.zeros(T)
    for t in range(1, T):
        total, count = 0.0, 0
        for a in range(A):
            if tradable[t, a] and tradable[t - 1, a]:
                total += close[t, a] / close[t - 1, a] - 1.0
                count += 1
        index[t] = total / count if count else 0.0
    if T == 0:
        return np.full(T, VOL_FLOOR)
    return segment_vols(index[1:], vol_window)
