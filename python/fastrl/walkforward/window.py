"""One window of a walk-forward: what it trains on, how it is seeded, and what it gives.

A window's job (:class:`WindowJob`: a config, a seed index and the window), the config and
seed it trains with (:func:`training_config`, :func:`window_seed`), the bars and splits it
trains on (:func:`training_bars`, :func:`train_market`: bars through ``last_seen`` only) and
its result (:class:`WindowResult`), shared by the lone trainers of
:func:`fastrl.walkforward.run.train_window` and the populations of
:mod:`fastrl.walkforward.members`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from fastrl.config import TrainConfig, config_from_dict, config_to_dict
from fastrl.features import WARMUP_BARS
from fastrl.features_long import LONG_WARMUP_BARS, has_long_sets
from fastrl.markets import market_for
from fastrl.walkforward.plan import WalkForwardSpec, Window, window_bars


@dataclass
class WindowResult:
    """One trained window of one config and seed: the policy it trades and what it cost."""

    config: str
    seed: int
    window: int
    policy: dict[str, Any]  # network, obs_normaliser, feature_normaliser, obs_dim, num_actions
    final: dict[str, Any] | None  # the last weights (warm start of the next window)
    chosen_update: int | None
    best_val_sharpe: float | None
    updates: int
    env_steps: int
    seconds: float
    reason: str
    # [env step, validation Sharpe] of every validation, in order (empty without one)
    val_curve: list[list[float]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {"config": self.config, "seed": self.seed, "window": self.window,
                "chosen_update": self.chosen_update, "val_sharpe": self.best_val_sharpe,
                "updates": self.updates, "env_steps": self.env_steps,
                "seconds": self.seconds, "reason": self.reason}


@dataclass(frozen=True)
class WindowJob:
    """One window to train: config ``name``'s seed ``seed_index`` on ``window``."""

    name: str
    seed_index: int
    window: Window

    @property
    def key(self) -> tuple[str, int, int]:
        return (self.name, self.seed_index, self.window.index)


def window_seed(base: int, seed_index: int, window: int) -> int:
    """The trainer seed of one window: the same for every config, so configs are paired."""
    return int(base) + 1000 * int(seed_index) + int(window)


def training_config(config: TrainConfig, window: Window, seed: int,
                    val_days: int) -> TrainConfig:
    """The window's TrainConfig: the user's config on the window's symbols, seed and
    validation days (rebuilt from its dict, so the caller's config is never changed)."""
    values = config_to_dict(config)
    values["data"] = {**values["data"], "symbols": list(window.symbols),
                      "val_days": int(val_days)}
    values["seed"] = int(seed)
    values["run_dir"] = ""
    values["device"] = values.get("device") or "auto"
    return config_from_dict(values)


def training_bars(bars: Mapping[str, pd.DataFrame], window: Window,
                  spec: WalkForwardSpec, features: Sequence[str] | None = None
                  ) -> dict[str, pd.DataFrame]:
    """The bars a window trains on: through ``last_seen``; with ``--train-window N`` from its
    ``train_start`` and the warm-up bars before it that the feature sets ``features`` consume
    (long sets: ``LONG_WARMUP_BARS``; None: enough for any set), so all N days are trained
    on with every feature defined."""
    long = features is None or has_long_sets(features)
    warmup = max(WARMUP_BARS, LONG_WARMUP_BARS) if long else WARMUP_BARS
    return window_bars(bars, window, "train", warmup if spec.train_window else 0)


def train_market(bars: Mapping[str, pd.DataFrame], window: Window, config: TrainConfig,
                 spec: WalkForwardSpec) -> Any:
    """The train/val MarketSplits of one window from bars through ``last_seen`` only."""
    past = training_bars(bars, window, spec, config.data.features)
    after = pd.Timestamp(window.last_seen) + pd.Timedelta(days=1)
    try:
        # the rows before train_start only warm the features up (long sets: LONG_WARMUP_BARS)
        return market_for(config).from_bars(past, val_days=spec.val_days, test_start=after,
                                            source=f"walk-forward window {window.index}",
                                            train_start=window.train_start
                                            if spec.train_window else None)
    except ValueError as error:
        raise ValueError(f"window {window.index} (training through {window.last_seen}): "
                         f"{error}") from None


__all__ = ["WindowJob", "WindowResult", "train_market", "training_bars", "training_config",
           "window_seed"]
