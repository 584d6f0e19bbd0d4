"""The scale of the vol-scaled and differential-Sharpe rewards where their estimates are thin:
a segment's first bars (vol_scaled), a long stretch at the benchmark (diff_sharpe on active
returns), and the penalties under vol_scaled."""

from __future__ import annotations

import numpy as np
import pytest

from fastrl.data.panel import build_panel
from fastrl.data.splits import build_market
from fastrl.env_config import EnvConfig, PortfolioConfig
from fastrl.markets.portfolio.env import PortfolioVecEnv
from fastrl.markets.single.env import TradingVecEnv

pytest.importorskip("fastrl._core")

VOL_WINDOW = 60


def single_env(config: EnvConfig, test_days: int) -> tuple[TradingVecEnv, np.ndarray]:
    market = build_market(["BPCL"], test_days=test_days, window=config.window).test
    env = TradingVecEnv(market, 1, config, num_threads=1, seed=0)
    env.reset(seed=0)
    return env, np.asarray(market.close, dtype=np.float64)


def bench_value(env: TradingVecEnv, close: np.ndarray, t: int) -> float:
    state = env.get_state()
    return float(state["bench_cash"][0] + state["bench_shares"][0] * close[t])


def test_diff_sharpe_on_active_returns_keeps_its_scale_after_a_long_stretch_at_the_benchmark():
    """600 steps at the benchmark earn exactly 0, so the moments decay; the deviation after
    them is scored at most 1 / (0.5 sigma) per unit of active return (the variance floor:
    a quarter of the symbol's squared trailing vol), not by 1 / sqrt(a decayed moment)."""
    config = EnvConfig(window=8, episode_length=0, random_start=False, reward="diff_sharpe",
                       reward_base="active", vol_window=VOL_WINDOW)
    env, close = single_env(config, test_days=700)
    hold, flat = config.position_levels.index(1.0), config.position_levels.index(0.0)
    rewards = [env.step(np.array([hold]))[1][0] for _ in range(600)]
    assert rewards[1:] == [0.0] * 599  # at the benchmark (the first step buys both books)
    t = int(env.get_state()["bar_index"][0])
    equity, bench = float(env.get_state()["equity"][0]), bench_value(env, close, t)
    reward = env.step(np.array([flat]))[1][0]
    active = float(env.get_state()["equity"][0]) / equity - bench_value(env, close, t + 1) / bench
    returns = close[t - VOL_WINDOW + 1:t + 1] / close[t - VOL_WINDOW:t] - 1.0
    sigma = float(np.std(returns, ddof=1))
    assert abs(active) > 0.1 * sigma  # a real deviation
    assert 0 < abs(reward) <= 1.01 * abs(active) / (0.5 * sigma)
    assert np.sign(reward) == np.sign(active)


def test_vol_scaled_reward_at_a_segment_start_uses_the_first_full_estimate():
    """With a 2-bar window the first step has one return behind it: the reward is scaled by
    the segment's first vol_window-return estimate, not the 1 bp floor."""
    config = EnvConfig(window=2, episode_length=0, random_start=False, reward="vol_scaled",
                       vol_window=VOL_WINDOW)
    env, close = single_env(config, test_days=200)
    t = int(env.get_state()["bar_index"][0])
    assert t == 1  # one return behind the first decision
    hold = config.position_levels.index(1.0)
    _, reward, _, _, _ = env.step(np.array([hold]))
    equity = float(env.get_state()["equity"][0])
    first = close[1:VOL_WINDOW + 1] / close[:VOL_WINDOW] - 1.0
    expected = np.log(equity / config.initial_cash) / float(np.std(first, ddof=1))
    assert reward[0] == pytest.approx(expected, rel=1e-9)


def test_portfolio_vol_scaled_reward_at_the_first_rows_uses_the_first_full_estimate():
    symbols = ["BPCL", "HDFCLIFE", "INFY"]
    panel = build_panel(symbols, test_days=150, window=2).test
    base = dict(window=2, episode_length=0, random_start=False, vol_window=VOL_WINDOW,
                integer_shares=False)
    rewards = {}
    for kind in ("log_return", "vol_scaled"):
        env = PortfolioVecEnv(panel, 1, PortfolioConfig(reward=kind, **base), num_threads=1,
                              seed=0)
        env.reset(seed=0)
        assert int(env.get_state()["bar_index"][0]) == 1
        rewards[kind] = env.step(np.full((1, len(symbols)), 1.0 / len(symbols)))[1][0]
    close, tradable = np.asarray(panel.close), np.asarray(panel.tradable, dtype=bool)
    both = tradable[1:] & tradable[:-1]
    index = np.where(both, close[1:] / np.where(both, close[:-1], 1.0) - 1.0, 0.0)
    index = index.sum(axis=1) / np.maximum(both.sum(axis=1), 1)
    sigma = float(np.std(index[:VOL_WINDOW], ddof=1))
    assert rewards["vol_scaled"] == pytest.approx(rewards["log_return"] / sigma, rel=1e-9)


@pytest.mark.parametrize("penalty", ["turnover_penalty", "drawdown_penalty"])
def test_vol_scaled_penalties_are_divided_by_the_same_volatility(penalty):
    """A penalty weighs against the scaled return as it does against the log return: its
    share of the reward is divided by the step's volatility too."""
    def rewards(kind: str, weight: float) -> np.ndarray:
        config = EnvConfig(window=8, episode_length=0, random_start=False, reward=kind,
                           vol_window=VOL_WINDOW, **{penalty: weight})
        env, _ = single_env(config, test_days=200)
        rng = np.random.default_rng(3)
        return np.array([env.step(rng.integers(0, 2, 1))[1][0] for _ in range(120)])

    charged = rewards("log_return", 0.0) - rewards("log_return", 0.5)
    scaled = rewards("vol_scaled", 0.0) - rewards("vol_scaled", 0.5)
    assert (charged > 0).sum() >= 5  # the penalty bites on some steps
    plain = rewards("log_return", 0.0)
    moved = (np.abs(charged) > 1e-12) & (np.abs(plain) > 1e-9)
    ratio = rewards("vol_scaled", 0.0)[moved] / plain[moved]  # 1 / vol on each step
    assert moved.sum() >= 5
    np.testing.assert_allclose(scaled[moved], charged[moved] * ratio, rtol=1e-6)
