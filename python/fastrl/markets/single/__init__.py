"""The single-symbol market: each symbol traded on its own by a TradingVecEnv."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd

from fastrl.data.block import MarketBlock
from fastrl.data.splits import build_market, build_market_from_bars
from fastrl.data.synthetic import build_synthetic_market
from fastrl.env_config import EnvConfig
from fastrl.ladder import LADDER_HEADER
from fastrl.markets.base import CONSOLE_METRICS, ActionSpec, ConsoleTable
from fastrl.markets.results import EvaluationError
from fastrl.markets.single import heldout, rungs
from fastrl.markets.single import walkforward as records
from fastrl.markets.single.backtest import evaluate_agent, evaluate_agents, evaluation_config
from fastrl.markets.single.env import TradingVecEnv, single_obs_dim
from fastrl.markets.single.live import SingleLiveEnv
from fastrl.markets.single.result import EvalResult
from fastrl.metrics import METRIC_LABELS, format_metric
from fastrl.reports.files import ReportFiles
from fastrl.reports.single import uncertainty_rows, write_report
from fastrl.strategies import COMBINED, STRATEGIES, STRATEGY_LABELS

if TYPE_CHECKING:
    from fastrl.config import TrainConfig
    from fastrl.walkforward.plan import Window


class SingleMarket:
    """Per-symbol long/flat (or long/short) timing: one env row trades one symbol segment."""

    kind: ClassVar[str] = "single"
    title: ClassVar[str] = "Backtest"
    selected_by: ClassVar[str] = "portfolio.enabled=false"
    tunable: ClassVar[bool] = True  # fastrl-tune and PBT score it
    joins_late_listings: ClassVar[bool] = True  # a symbol may start after the others

    def __init__(self, config: TrainConfig) -> None:
        self.config = config

    @property
    def env_config(self) -> EnvConfig:
        return self.config.env

    def load(self, normaliser_state: dict | None = None) -> Any:
        """The MarketSplits the config's data section describes (the planted-signal market
        for ``data.source: synthetic``)."""
        data, window = self.config.data, self.config.env.window
        if data.source == "synthetic":
            return build_synthetic_market(
                kind="planted_signal", n_symbols=len(data.symbols), n_bars=data.synthetic_bars,
                test_days=data.test_days, val_days=data.val_days, window=window,
                seed=self.config.seed if data.synthetic_seed is None else data.synthetic_seed,
                freq=data.freq, signal_strength=data.synthetic_signal_strength,
                normaliser_state=normaliser_state, feature_sets=data.features)
        return build_market(list(data.symbols), freq=data.freq, source=data.source,
                            test_days=data.test_days, val_days=data.val_days, window=window,
                            normaliser_state=normaliser_state, repair_ticks=data.repair_ticks,
                            feature_sets=data.features)

    def from_bars(self, bars: Mapping[str, pd.DataFrame], *, test_days: int = 30,
                  val_days: int = 0, normaliser_state: dict | None = None,
                  source: str = "memory", test_start: pd.Timestamp | str | None = None,
                  train_start: pd.Timestamp | str | None = None) -> Any:
        return build_market_from_bars(dict(bars), self.config.data.freq, test_days=test_days,
                     val_days=val_days, window=self.config.env.window,
                     normaliser_state=normaliser_state, source=source, test_start=test_start,
                     feature_sets=self.config.data.features, train_start=train_start)

    def obs_dim(self, block: Any) -> int:
        return single_obs_dim(block, self.config.env.window)

    def make_env(self, block: Any, num_envs: int, *, num_threads: int, seed: int,
                 buffers: dict | None = None, env_config: Any = None) -> TradingVecEnv:
        return TradingVecEnv(block, num_envs, env_config or self.env_config,
                             num_threads=num_threads, seed=seed, buffers=buffers)

    def action_spec(self) -> ActionSpec:
        env = self.config.env
        if env.action == "continuous":
            low, high = env.action_bounds()
            return ActionSpec("gaussian", 1, low=float(low), high=float(high),
                              anchored=env.anchored)
        return ActionSpec("categorical", len(env.position_levels), anchored=env.anchored,
                          anchor_level=(env.position_levels.index(0.0) if env.anchored else 0))

    def evaluate(self, policy: Any, block: Any, *, env_config: Any = None,
                 info: dict[str, Any] | None = None, baselines: bool = True) -> Any:
        return evaluate_agent(policy, block, env_config or self.env_config, info=info,
                              baselines=baselines)

    def validation_scores(self, agent: Any, block: Any, *, env_config: Any = None,
                          returns: bool = False) -> dict[str, Any]:
        result = self.evaluate(agent, block, env_config=env_config, baselines=False)
        return _scores(result, returns)

    def evaluate_copies(self, policy: Any, block: Any, *, copies: int, env_config: Any = None,
                        baselines: bool = False) -> list[Any]:
        return evaluate_agents(policy, block, env_config or self.env_config, copies=copies,
                               baselines=baselines)

    def member_scores(self, engine: Any, members: list[int], block: Any) -> list[dict[str, Any]]:
        return [_scores(r, True) for r in engine.validation_evals(members, block)]


    # -- evaluation, reports and the live path -------------------------------------------

    def describe(self) -> str:
        return ", ".join(self.config.data.symbols)

    def evaluation_env_config(self) -> EnvConfig:
        return evaluation_config(self.env_config)

    def test_block(self, agent: Any, *, symbols: Sequence[str] | None = None,
                   test_days: int | None = None, data: str | os.PathLike | None = None
                   ) -> tuple[Any, dict[str, Any]]:
        """Any of the trained ``symbols`` (default: all), on at most the training's test
        days, or on the last ``test_days`` of newer bars from ``data`` (a CSV/Parquet path,
        checked to start after the training's test split)."""
        return heldout.test_block(agent, None if symbols is None else list(symbols),
                                  test_days, data, self.load)

    def tables(self, result: EvalResult) -> list[ConsoleTable]:
        """One table per symbol (and the combined portfolio): metrics x strategies, the
        Sharpe with its error bars (the report's numbers, from ``result.uncertainty``)."""
        tables = []
        symbols = result.symbols + ([COMBINED] if len(result.symbols) > 1 else [])
        for symbol in symbols:
            title = "combined (equal capital)" if symbol == COMBINED else symbol
            per_strategy = [result.metrics(symbol, s).to_dict() for s in STRATEGIES]
            rows = []
            for key in CONSOLE_METRICS:
                label, kind = METRIC_LABELS[key]
                rows.append([label, *(format_metric(values[key], kind)
                                      for values in per_strategy)])
                if key == "sharpe":
                    rows += uncertainty_rows(result, symbol)
            tables.append(ConsoleTable(title, ["metric", *(STRATEGY_LABELS[s]
                                                          for s in STRATEGIES)], rows))
        if result.rungs:
            tables += [ConsoleTable(f"ladder: {'combined' if symbol == COMBINED else symbol}",
                                    list(LADDER_HEADER), result.ladder(symbol).table_rows())
                       for symbol in symbols]
        return tables

    def rung_history(self, agent: Any, block: MarketBlock, *,
                     data: str | os.PathLike | None = None, test_days: int | None = None
                     ) -> tuple[MarketBlock, list[int]]:
        """(history block, each test segment's first decision bar as a row of it): the
        symbols of ``block`` with every earlier row of the market it was cut from (the
        training data's splits, or those of ``data`` with ``test_days``), for the ladder's
        rules (:mod:`fastrl.markets.single.rungs`)."""
        config = agent.config
        data_config = config.data
        try:
            if data is None:
                splits = self.load(normaliser_state=agent.feature_state)
            else:
                splits = build_market(list(block.symbols), freq=data_config.freq,
                                      source=str(data),
                                      test_days=int(test_days or data_config.test_days),
                                      val_days=0, window=config.env.window,
                                      normaliser_state=agent.feature_state,
                                      repair_ticks=data_config.repair_ticks)
        except (ValueError, OSError) as exc:
            raise EvaluationError(f"cannot load the rungs' history: {exc}") from exc
        history = rungs.history_block([splits.train, splits.val, splits.test], block.symbols)
        starts = [block.segment(s).start + config.env.window - 1
                  for s in range(block.num_segments)]
        return history, rungs.start_bars(history, block, starts)

    def report(self, result: EvalResult, out_dir: str | os.PathLike, *,
               training_metrics: str | os.PathLike | None = None) -> ReportFiles:
        return write_report(result, out_dir, training_metrics=training_metrics)

    def live_env_class(self) -> type[SingleLiveEnv]:
        return SingleLiveEnv

    def walkforward_record(self, bars: Mapping[str, pd.DataFrame], windows: Sequence[Window],
                           policies: Sequence[dict[str, Any]], *,
                           agent_for: Callable[[dict[str, Any]], Any],
                           block_for: Callable[[Window, Any], Any]) -> pd.DataFrame:
        return records.walkforward_record(self.env_config, self.config.data.freq, bars, windows,
                                          policies, agent_for=agent_for, block_for=block_for)

def _scores(result: Any, returns: bool) -> dict[str, Any]:
    """The agent's combined Sharpe and total return of an EvalResult (and its per-bar
    returns)."""
    combined = result.combined["agent"]
    out: dict[str, Any] = {"sharpe": float(combined.sharpe),
                           "return": float(combined.total_return)}
    if returns:
        out["returns"] = np.asarray(result.returns(COMBINED, "agent"), dtype=np.float64)
    return out


__all__ = ["SingleMarket"]
