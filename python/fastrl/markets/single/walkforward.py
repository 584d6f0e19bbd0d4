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
    first = int(np.searchsorted(bars.index, window.decision_end, side="left")) - 1
    span = bars.iloc[first:]
    span = span.loc[span.index.normalize() <= pd.Timestamp(last_day)]
    n = len(span)
    block = MarketBlock(symbols=(symbol,),
                        open=span["open"].to_numpy(), close=span["close"].to_numpy(),
                        features=np.zeros((n, 1), dtype=np.float32),
                        offsets=np.array([0, n]), timestamps=span.index.to_numpy(), freq=freq)
    return baseline_backtest(block, 0, env_config, "buy_and_hold",
                             start_bar=0).record_frame(BENCHMARK_COLUMNS)


__all__ = ["buy_and_hold", "walkforward_record"]
