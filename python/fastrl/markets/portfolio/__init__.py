"""The portfolio market: one book over every symbol on one calendar, a PortfolioVecEnv."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd

from fastrl.config import portfolio_env_config
from fastrl.data.market import load_market
from fastrl.data.panel import build_panel_from_bars
from fastrl.env_portfolio import PortfolioConfig, PortfolioVecEnv, portfolio_obs_dim
from fastrl.markets.base import ActionSpec
from fastrl.markets.portfolio.backtest import evaluate_portfolio

if TYPE_CHECKING:
    from fastrl.config import TrainConfig


class PortfolioMarket:
    """Long-only weights over the config's symbols and cash, within ``portfolio.*``'s caps."""

    kind: ClassVar[str] = "portfolio"

    def __init__(self, config: TrainConfig) -> None:
        self.config = config

    @property
    def env_config(self) -> PortfolioConfig:
        return portfolio_env_config(self.config)

    def load(self, normaliser_state: dict | None = None) -> Any:
        return load_market(self.config, normaliser_state)

    def from_bars(self, bars: Mapping[str, pd.DataFrame], *, test_days: int = 30,
                  val_days: int = 0, normaliser_state: dict | None = None,
                  source: str = "memory", test_start: pd.Timestamp | str | None = None) -> Any:
        return build_panel_from_bars(dict(bars), self.config.data.freq, test_days=test_days,
                     val_days=val_days, window=self.config.env.window,
                     normaliser_state=normaliser_state, source=source, test_start=test_start)

    def obs_dim(self, block: Any) -> int:
        return portfolio_obs_dim(block, self.config.env.window)

    def make_env(self, block: Any, num_envs: int, *, num_threads: int, seed: int,
                 buffers: dict | None = None, env_config: Any = None) -> PortfolioVecEnv:
        return PortfolioVecEnv(block, num_envs, env_config or self.env_config,
                               num_threads=num_threads, seed=seed, buffers=buffers)

    def action_spec(self) -> ActionSpec:
        p = self.config.portfolio
        return ActionSpec("simplex", len(self.config.data.symbols) + 1,
                          max_weight=float(p.max_weight), max_gross=float(p.max_gross))

    def evaluate(self, policy: Any, block: Any, *, env_config: Any = None,
                 info: dict[str, Any] | None = None, baselines: bool = True) -> Any:
        return evaluate_portfolio(policy, block, env_config or self.env_config, info=info,
                                  baselines=baselines)

    def validation_scores(self, agent: Any, block: Any, *, env_config: Any = None,
                          returns: bool = False) -> dict[str, Any]:
        backtest = self.evaluate(agent, block, env_config=env_config, baselines=False).get("agent")
        out: dict[str, Any] = {"sharpe": float(backtest.metrics.sharpe),
                               "return": float(backtest.metrics.total_return)}
        if returns:
            out["returns"] = np.asarray(backtest.returns, dtype=np.float64)
        return out


__all__ = ["PortfolioMarket"]
