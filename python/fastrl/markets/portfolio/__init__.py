"""The portfolio market: one book over every symbol on one calendar, a PortfolioVecEnv."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd

from fastrl.data.panel import PanelBlock, build_panel, build_panel_from_bars
from fastrl.env_config import PortfolioConfig
from fastrl.ladder import LADDER_HEADER
from fastrl.markets.base import CONSOLE_METRICS, ActionSpec, ConsoleTable
from fastrl.markets.portfolio import rungs
from fastrl.markets.portfolio import walkforward as records
from fastrl.markets.portfolio.backtest import (
    PortfolioResult,
    evaluate_portfolio,
    evaluation_config,
)
from fastrl.markets.portfolio.env import PortfolioVecEnv, portfolio_obs_dim
from fastrl.markets.portfolio.live import PortfolioLiveEnv
from fastrl.markets.results import EvaluationError
from fastrl.metrics import METRIC_LABELS
from fastrl.reports.files import ReportFiles
from fastrl.reports.portfolio import table_rows, write_portfolio_report
from fastrl.strategies import strategy_label

if TYPE_CHECKING:
    from fastrl.config import TrainConfig
    from fastrl.walkforward.plan import Window


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
        reward_base=e.reward_base, vol_window=e.vol_window, action_mode=e.action_mode,
        max_underweight=e.max_underweight,
    )


class PortfolioMarket:
    """Long-only weights over the config's symbols and cash, within ``portfolio.*``'s caps."""

    kind: ClassVar[str] = "portfolio"
    title: ClassVar[str] = "Portfolio backtest"
    selected_by: ClassVar[str] = "portfolio.enabled=true"
    tunable: ClassVar[bool] = False  # fastrl-tune and PBT score it
    joins_late_listings: ClassVar[bool] = False  # a symbol may start after the others

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
                           repair_ticks=data.repair_ticks, feature_sets=data.features)

    def from_bars(self, bars: Mapping[str, pd.DataFrame], *, test_days: int = 30,
                  val_days: int = 0, normaliser_state: dict | None = None,
                  source: str = "memory", test_start: pd.Timestamp | str | None = None,
                  train_start: pd.Timestamp | str | None = None) -> Any:
        return build_panel_from_bars(dict(bars), self.config.data.freq, test_days=test_days,
                     val_days=val_days, window=self.config.env.window,
                     normaliser_state=normaliser_state, source=source, test_start=test_start,
                     feature_sets=self.config.data.features, train_start=train_start)

    def obs_dim(self, block: Any) -> int:
        return portfolio_obs_dim(block, self.config.env.window)

    def make_env(self, block: Any, num_envs: int, *, num_threads: int, seed: int,
                 buffers: dict | None = None, env_config: Any = None) -> PortfolioVecEnv:
        return PortfolioVecEnv(block, num_envs, env_config or self.env_config,
                               num_threads=num_threads, seed=seed, buffers=buffers)

    def action_spec(self) -> ActionSpec:
        p = self.config.portfolio
        e = self.env_config
        return ActionSpec("simplex", len(self.config.data.symbols) + 1,
                          max_weight=float(p.max_weight), max_gross=float(p.max_gross),
                          anchored=e.anchored, high=float(e.max_underweight))

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

    def evaluate_copies(self, policy: Any, block: Any, *, copies: int, env_config: Any = None,
                        baselines: bool = False) -> list[Any]:
        raise ValueError("a portfolio backtest runs one policy per env: evaluate each "
                         "member's agent (member_scores)")

    def member_scores(self, engine: Any, members: list[int], block: Any) -> list[dict[str, Any]]:
        return [self.validation_scores(engine.validation_agent(m), block, returns=True)
                for m in members]

    # -- evaluation, reports and the live path -------------------------------------------

    def describe(self) -> str:
        return "portfolio of " + ", ".join(self.config.data.symbols)

    def evaluation_env_config(self) -> PortfolioConfig:
        return evaluation_config(self.env_config)

    def test_block(self, agent: Any, *, symbols: Sequence[str] | None = None,
                   test_days: int | None = None, data: str | os.PathLike | None = None
                   ) -> tuple[Any, dict[str, Any]]:
        """The panel of every trained symbol on the last ``test_days`` (at most the
        training's) of the training data."""
        if symbols or data:
            raise EvaluationError("a portfolio run is evaluated on its own symbols and data; "
                                  "drop --symbols/--data")
        data_config = self.config.data
        days = int(data_config.test_days) if test_days is None else int(test_days)
        if not 1 <= days <= data_config.test_days:
            raise EvaluationError(f"test_days must lie in [1, {data_config.test_days}] (the "
                                  f"days held out in training), got {days}")
        state = agent.feature_state
        try:
            panel = build_panel(list(data_config.symbols), freq=data_config.freq,
                                source=data_config.source, test_days=days,
                                window=self.config.env.window, normaliser_state=state,
                                repair_ticks=data_config.repair_ticks,
                                feature_sets=data_config.features).test
        except (ValueError, OSError) as exc:
            raise EvaluationError(str(exc)) from exc
        stamps = panel.timestamps
        first = self.config.env.window - 1
        info = {"test_days": days, "data": data_config.source,
                "test_rows": None if stamps is None else [str(stamps[first])[:10],
                                                          str(stamps[-1])[:10]]}
        return panel, info

    def tables(self, result: PortfolioResult) -> list[ConsoleTable]:
        """The portfolio's metrics x strategies, with the Sharpe's error bars."""
        keep = {METRIC_LABELS[k][0] for k in CONSOLE_METRICS} | {"Orders (legs)"}
        rows = [row for row in table_rows(result)
                if row[0] in keep or row[0].startswith(("Sharpe ", "P("))]
        tables = [ConsoleTable("portfolio", ["metric", *(strategy_label(s)
                                                         for s in result.strategies)], rows)]
        if result.rungs:
            tables.append(ConsoleTable("ladder", list(LADDER_HEADER),
                                       result.ladder().table_rows()))
        return tables

    def rung_history(self, agent: Any, block: PanelBlock, *,
                     data: str | os.PathLike | None = None, test_days: int | None = None
                     ) -> tuple[PanelBlock, int]:
        """(history panel, the test panel's first decision row as a row of it): every row
        of the training data's splits up to the test days' end, for the ladder's rules
        (:mod:`fastrl.markets.portfolio.rungs`)."""
        if data is not None:
            raise EvaluationError("a portfolio run is evaluated on its own data; drop --data")
        try:
            splits = self.load(normaliser_state=agent.feature_state)
        except (ValueError, OSError) as exc:
            raise EvaluationError(f"cannot load the rungs' history: {exc}") from exc
        history = rungs.history_panel([splits.train, splits.val, splits.test])
        return history, rungs.start_row(history, block, self.config.env.window - 1)

    def report(self, result: PortfolioResult, out_dir: str | os.PathLike, *,
               training_metrics: str | os.PathLike | None = None) -> ReportFiles:
        return write_portfolio_report(result, out_dir, training_metrics=training_metrics)

    def live_env_class(self) -> type[PortfolioLiveEnv]:
        return PortfolioLiveEnv

    def walkforward_record(self, bars: Mapping[str, pd.DataFrame], windows: Sequence[Window],
                           policies: Sequence[dict[str, Any]], *,
                           agent_for: Callable[[dict[str, Any]], Any],
                           block_for: Callable[[Window, Any], Any]) -> pd.DataFrame:
        return records.walkforward_record(self.env_config, windows, policies,
                                          agent_for=agent_for, block_for=block_for)

__all__ = ["PortfolioMarket", "portfolio_env_config"]
