"""A single-symbol config's walk-forward record: every window's frozen policy trades its days
per symbol, each symbol's holding carried across the window boundaries, beside that
symbol's buy-and-hold."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from fastrl.data.block import MarketBlock
from fastrl.env_config import EnvConfig
from fastrl.markets.results import AGENT_COLUMNS, BENCHMARK_COLUMNS
from fastrl.markets.single.backtest import Holding, baseline_backtest, evaluation_config, run_agent

# the columns a rung's record takes from the agent's record: its days, windows and benchmark
SHARED_COLUMNS = ["time", "symbol", "window", *BENCHMARK_COLUMNS.values()]

if TYPE_CHECKING:
    from fastrl.walkforward.plan import Window


def walkforward_record(training: EnvConfig, freq: str, bars: Mapping[str, pd.DataFrame],
                       windows: Sequence[Window], policies: Sequence[dict[str, Any]], *,
                       agent_for: Callable[[dict[str, Any]], Any],
                       block_for: Callable[[Window, Any], Any]) -> pd.DataFrame:
    """One row per traded bar and symbol: the agent's return, exposure after the fill, costs
    (currency and as a fraction of the equity before the bar), the window, and buy-and-hold's
    return and costs on the same bar. ``training``: the run's env config; ``freq``: the bar
    size; ``agent_for(policy)``: a window's frozen agent; ``block_for(window, agent)``: the
    block the window trades."""
    env_config = dataclasses.replace(evaluation_config(training), equity_floor=0.0)
    holdings: dict[str, Holding] = {}
    frames: dict[str, list[pd.DataFrame]] = {}
    for window, policy in zip(windows, policies, strict=True):
        agent = agent_for(policy)
        block = block_for(window, agent)
        # symbols only ever join, so every symbol's record ends with the last window
        closing = window.index == windows[-1].index
        backtests = run_agent(agent, block, env_config,
                              holdings=[holdings.get(s) for s in block.symbols],
                              liquidate=closing)
        for symbol, backtest in zip(block.symbols, backtests, strict=True):
            holdings[symbol] = Holding.after(backtest, holdings.get(symbol))
            frame = backtest.record_frame(AGENT_COLUMNS)
            frame.insert(0, "window", window.index)
            frame.insert(2, "position", backtest.positions)
            frames.setdefault(symbol, []).append(frame)
    out = []
    for symbol, parts in frames.items():
        agent_frame = pd.concat(parts)
        first_window = windows[int(agent_frame["window"].iloc[0])]
        hold = buy_and_hold(symbol, bars[symbol], first_window,
                            str(agent_frame.index[-1].date()), env_config, freq)
        joined = agent_frame.join(hold, how="left")
        if joined["bh_return"].isna().any():
            raise ValueError(f"symbol {symbol}: buy-and-hold and the agent cover different bars")
        joined.insert(0, "symbol", symbol)
        out.append(joined)
    record = pd.concat(out)
    record.index.name = "time"
    return record.reset_index().sort_values(["time", "symbol"], kind="stable",
                                            ignore_index=True)


def buy_and_hold(symbol: str, bars: pd.DataFrame, window: Window, last_day: str,
                  env_config: Any, freq: str) -> pd.DataFrame:
    """Buy-and-hold of one symbol over its record: decided at the agent's first decision bar
    (``window`` is the symbol's first), so bought with the agent's first possible fill, held,
    sold at the last close (the simulator's cost model and share rounding)."""
    block = MarketBlock.from_bars({symbol: bars.iloc[decision_bar(bars.index, window):]}, freq,
                                  through=last_day)
    return baseline_backtest(block, 0, env_config, "buy_and_hold",
                             start_bar=0).record_frame(BENCHMARK_COLUMNS)


def decision_bar(stamps: pd.DatetimeIndex | np.ndarray, window: Window) -> int:
    """The row of ``stamps`` (sorted bar times) at whose close ``window``'s agent decides
    first: the last bar before the window's ``decision_end`` (-1 if there is none). The
    walk-forward's benchmark and rules start there, as the window's traded block does."""
    return int(np.searchsorted(np.asarray(stamps, dtype="datetime64[ns]"),
                               window.decision_end.to_datetime64(), side="left")) - 1


def paired(name: str, shared: pd.DataFrame, rung: pd.DataFrame,
           columns: list[str]) -> pd.DataFrame:
    """A rung's rows on the agent record's rows (``shared``: time, symbol, window and the
    benchmark's columns) with the record's ``columns``; ValueError if they cover other
    bars."""
    joined = shared.merge(rung, on=["time", "symbol"], how="left", validate="one_to_one")
    if len(rung) != len(shared) or joined["agent_return"].isna().any():
        raise ValueError(f"rule {name} and the agent cover different bars")
    return joined[columns]


__all__ = ["buy_and_hold", "decision_bar", "paired", "walkforward_record"]
