"""The portfolio market: one book over every symbol on one calendar, a PortfolioVecEnv."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd

from fastrl.backtest_portfolio import evaluate_portfolio
from fastrl.data.panel import build_panel, build_panel_from_bars
from fastrl.env_config import PortfolioConfig
from fastrl.markets.base import ActionSpec
from fastrl.markets.portfolio.env import PortfolioVecEnv, portfolio_obs_dim

if TYPE_CHECKING:
    from fastrl.config import TrainConfig


def portfolio_env_config(config: TrainConfig) -> PortfolioConfig:
    """The :class:`~fastrl.env_config.PortfolioConfig` of a portfolio run: the settings both
    envs share from ``env.*``, the caps from ``portfolio.*``."""
    e, p = config.env, config.portfolio
    return PortfolioConfig(
        window=e.window, episode_length=e.episode_length, execution=e.execution,
        long_only=True, max_gross=p.max_gross, max_weight=p.max_weight,
        integer_shares=p.integer_shares, trade_band=p.trade_band, cost=e.cost,
        half_spread_bps=e.half_spread_bps, slippage_bps=e.slippage_bps,
        reward=e.reward, dsr_eta=e.dsr_eta, drawdown_penalty=e.drawdown_penalty,
        turnover_penalty=e.turnover_penalty, initial_cash=e.initial_cash,
        equity_floor=e.equity_floor, random_start=e.random_start,
    )


class PortfolioMarket:
    """Long-only weights over the config's symbols and cash, within ``portfolio.*``'s caps."""

    kind: ClassVar[str] = "portfolio"

    def __init__(self, config: TrainConfig) -> None:
        self.config = config

    @property
    def env_config(self) -> PortfolioConfig:
        return portfolio_env_config(self.config)

    def load(self, normaliser_state: dict | None = None) -> Any:
        """The PanelSplits the config's data section describes: every symbol on one
        calendar."""
        data = self.config.data
        return build_panel(list(data.symbols), freq=data.freq, source=data.source,
                           test_days=data.test_days, val_days=data.val_days,
                           window=self.config.env.window, normaliser_state=normaliser_state,
                           repair_ticks=data.repair_ticks)

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


__all__ = ["PortfolioMarket", "portfolio_env_config"]
