"""Tiny trained runs for the live-path tests (fastrl-signal, fastrl-paper), and their backtests.

Parity does not need a good agent, only one that trades: the daily run acts continuously
(its exposure changes every day), the intraday run picks among (-1, 0, 1) under the MIS
square-off, the portfolio run allocates whole shares over three symbols.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from fastrl.config import DataConfig, PortfolioSettings, TrainConfig
from fastrl.env_config import EnvConfig

# the live path's bars cache: this process's own, never the user's
os.environ.setdefault("FASTRL_BARS_CACHE", tempfile.mkdtemp(prefix="fastrl-bars-cache-"))

TINY = {"total_timesteps": 256, "num_envs": 4, "num_steps": 32, "n_epochs": 1,
        "minibatch_size": 64, "hidden_sizes": (16,), "device": "cpu", "torch_threads": 1,
        "lr_warmup_steps": 0}
PORTFOLIO_SYMBOLS = ("BPCL", "INFY", "TCS")  # bundled daily bars ending on the same day
PAIR_SYMBOLS = ("BPCL", "HDFCLIFE")  # the README's run: BPCL ends 2022-11-09, HDFCLIFE 11-15


def run_config(kind: str, seed: int = 0) -> TrainConfig:
    if kind == "daily":
        return TrainConfig(env=EnvConfig(window=8, action="continuous"),
                           data=DataConfig(symbols=("BPCL",), test_days=10, val_days=5),
                           seed=seed, **TINY)
    if kind == "discrete":  # the delivery preset's long/flat levels (0, 1)
        return TrainConfig(env=EnvConfig(window=8),
                           data=DataConfig(symbols=("BPCL",), test_days=10, val_days=5),
                           seed=seed, **TINY)
    if kind == "pair":  # two single-asset segments on their own calendars
        # the calendar's last 14 days hold BPCL's last 10 (its bars end 4 days earlier)
        return TrainConfig(env=EnvConfig(window=8, action="continuous"),
                           data=DataConfig(symbols=PAIR_SYMBOLS, test_days=14, val_days=5),
                           seed=seed, **TINY)
    if kind == "intraday":
        return TrainConfig(env=EnvConfig(window=8, cost="nse_intraday"),
                           data=DataConfig(symbols=("BPCL",), freq="5min", test_days=3,
                                           val_days=2), seed=seed, **TINY)
    if kind == "anchored-daily":  # underweights in [0, 0.6], rewarded against buy-and-hold
        return TrainConfig(env=EnvConfig(window=8, action="continuous", action_mode="anchored",
                                         max_underweight=0.6, reward="active"),
                           data=DataConfig(symbols=("BPCL",), test_days=10, val_days=5),
                           seed=seed, **TINY)
    if kind == "anchored-discrete":  # underweights (0, 0.25, 0.5): exposures (1, 0.75, 0.5)
        return TrainConfig(env=EnvConfig(window=8, action_mode="anchored", max_underweight=0.5),
                           data=DataConfig(symbols=("BPCL",), test_days=10, val_days=5),
                           seed=seed, **TINY)
    if kind == "anchored-portfolio":  # equal weight plus a tilt, held while it is unchanged
        return TrainConfig(env=EnvConfig(window=8, action_mode="anchored", reward="active"),
                           data=DataConfig(symbols=PORTFOLIO_SYMBOLS, test_days=10, val_days=5),
                           portfolio=PortfolioSettings(enabled=True, max_weight=0.5,
                                                       integer_shares=True),
                           seed=seed, **TINY)
    if kind == "portfolio":
        return TrainConfig(env=EnvConfig(window=8),
                           data=DataConfig(symbols=PORTFOLIO_SYMBOLS, test_days=10, val_days=5),
                           portfolio=PortfolioSettings(enabled=True, max_weight=0.5,
                                                       integer_shares=True),
                           seed=seed, **TINY)
    raise ValueError(kind)


def train_run(kind: str, folder: Path, seed: int = 0) -> Path:
    from fastrl.ppo.trainer import train

    run_dir = folder / f"{kind}-{seed}"
    train(run_config(kind, seed), run_dir=run_dir)
    return run_dir


def backtest(run_dir: Path, liquidate: bool = False):
    """The backtest of the run's checkpoint on its test days (the block fastrl-eval builds):
    the first symbol's Backtest or the PortfolioBacktest; ``liquidate=False`` leaves the last
    position open (a paper account goes on)."""
    from fastrl.live.run import open_run

    run = open_run(run_dir)
    data = run.config.data
    if run.market.kind == "portfolio":
        from fastrl.data.panel import build_panel
        from fastrl.markets.portfolio.backtest import run_agent

        panel = build_panel(list(data.symbols), freq=data.freq, source=data.source,
                            test_days=data.test_days, window=run.window,
                            normaliser_state=run.normaliser_state).test
        return run_agent(run.agent, panel, run.env_config(), liquidate=liquidate)
    return backtests(run_dir, liquidate)[0]


def backtests(run_dir: Path, liquidate: bool = False) -> list:
    """A single-symbol run's backtests on its test days, one per symbol (its days among the
    last ``test_days`` of the symbols' common calendar, as fastrl-eval runs them)."""
    from fastrl.live.run import open_run
    from fastrl.markets.single.backtest import run_agent

    run = open_run(run_dir)
    block, _ = run.market.test_block(run.agent)
    return run_agent(run.agent, block, run.config.env, liquidate=liquidate)


def backtest_window(run_dir: Path, source: str | Path, start: str, through: str):
    """The backtest of the run's checkpoint on the same days a paper account from ``start``
    to ``through`` trades (each symbol from its first bar on or after ``start``, its bars
    from ``source`` up to ``through``): one Backtest per symbol, last position left open."""
    from fastrl.data.loaders import load_bars_report
    from fastrl.data.splits import build_market_from_bars
    from fastrl.live.run import open_run
    from fastrl.markets.single.backtest import run_agent

    run = open_run(run_dir)
    data = run.config.data
    bars = load_bars_report(list(data.symbols), data.freq, str(source), "raise").bars
    end = pd.Timestamp(through) + pd.Timedelta(days=1)
    bars = {s: frame[frame.index < end] for s, frame in bars.items()}
    block = build_market_from_bars(bars, data.freq, val_days=0, window=run.window,
                                   normaliser_state=run.normaliser_state,
                                   test_start=pd.Timestamp(start)).test
    return run_agent(run.agent, block, run.config.env, liquidate=False)


def column(rows: list[dict], symbol: str, key: str) -> np.ndarray:
    """One symbol's values of ``key`` in a journal's step rows, in order."""
    return np.array([r[key] for r in rows if r["symbol"] == symbol], dtype=np.float64)


def first_session(backtest) -> str:
    """The first test day: the backtest's first decision is at its close."""
    return str(pd.Timestamp(backtest.timestamps[0]).date())


def bundled_copy(symbols, folder: Path, freq: str = "1d", through: str | None = None,
                 rows: int | None = None) -> Path:
    """The bundled bars of ``symbols`` as plain CSV files in ``folder`` (optionally only up
    to the date ``through``, or only the last ``rows``) for tests that edit them."""
    from fastrl.data.loaders import BUNDLED_DIR, FREQ_FOLDERS

    folder.mkdir(parents=True, exist_ok=True)
    for symbol in symbols:
        frame = pd.read_csv(BUNDLED_DIR / FREQ_FOLDERS[freq][0] / f"{symbol}.csv.gz")
        if through is not None:
            stamps = frame.iloc[:, 0].astype(str).str[:10]
            frame = frame[stamps <= through]
        if rows is not None:
            frame = frame.tail(rows)
        frame.to_csv(folder / f"{symbol}.csv", index=False)
    return folder


def rewrite_policy(run_dir: Path, how: str, seed: int = 0) -> Path:
    """Rewrites every checkpoint of ``run_dir`` in place: ``how="untrained"`` puts back a
    freshly built network (an anchored policy's start, the benchmark); ``"shaken"`` adds
    noise to the policy layer so that a tiny anchored run, which stays at its benchmark
    level, switches levels with its observations (parity needs a policy that trades)."""
    import torch

    from fastrl.config import config_from_dict
    from fastrl.ppo.checkpoint import atomic_torch_save, build_network, read_torch_file

    for path in sorted((run_dir / "checkpoints").glob("*.pt")):
        state = read_torch_file(path)
        network = state["trainer"]["network"]
        generator = torch.Generator().manual_seed(seed)
        if how == "untrained":
            fresh = build_network(config_from_dict(state["config"]), int(state["obs_dim"]),
                                  int(state["num_actions"]), generator=generator)
            network.update(fresh.state_dict())
        elif how == "shaken":
            weight = network["policy_head.weight"]
            network["policy_head.weight"] = weight + 3.0 * torch.randn(
                weight.shape, generator=generator, dtype=weight.dtype)
        else:
            raise ValueError(how)
        atomic_torch_save(state, path)
    return run_dir
