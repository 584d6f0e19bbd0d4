"""A portfolio config's walk-forward record: every window's frozen policy trades the whole
book, its holding carried across the window boundaries, beside equal weight bought at the
first fill and held (the portfolio report's buy-and-hold)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from fastrl.env_config import PortfolioConfig
from fastrl.markets.portfolio.backtest import baseline_backtest, evaluation_config
from fastrl.markets.portfolio.backtest import run_agent as run_portfolio
from fastrl.markets.results import AGENT_COLUMNS, BENCHMARK_COLUMNS
from fastrl.strategies import EW_HOLD

if TYPE_CHECKING:
    from fastrl.walkforward.plan import Window

PORTFOLIO = "PORTFOLIO"  # the record's symbol for a portfolio config (one policy, one equity)


def walkforward_record(training: PortfolioConfig, windows: Sequence[Window],
                       policies: Sequence[dict[str, Any]], *,
                       agent_for: Callable[[dict[str, Any]], Any],
                       block_for: Callable[[Window, Any], Any]) -> pd.DataFrame:
    """One row per bar for the whole portfolio (symbol ``PORTFOLIO``, position = the symbols'
    gross weight). ``training``: the run's env config; ``agent_for(policy)``: a window's
    frozen agent; ``block_for(window, agent)``: the panel the window trades."""
    env_config = dataclasses.replace(evaluation_config(training), equity_floor=0.0)
    holding = None
    parts = []
    for window, policy in zip(windows, policies, strict=True):
        agent = agent_for(policy)
        panel = block_for(window, agent)
        backtest = run_portfolio(agent, panel, env_config, holding=holding,
                                 liquidate=window.index == windows[-1].index)
        holding = backtest.holding
        frame = backtest.record_frame(AGENT_COLUMNS)
        frame.insert(0, "window", window.index)
        frame.insert(2, "position", backtest.weights[:, :-1].sum(axis=1))
        parts.append(frame)
    record = pd.concat(parts)
    whole = dataclasses.replace(windows[0], last_traded=windows[-1].last_traded)
    panel = block_for(whole, agent_for(policies[0]))
    bench = baseline_backtest(panel, env_config, EW_HOLD).record_frame(BENCHMARK_COLUMNS)
    joined = record.join(bench, how="left")
    if joined["bh_return"].isna().any():
        raise ValueError("the portfolio and its equal-weight benchmark cover different bars")
    joined.insert(0, "symbol", PORTFOLIO)
    joined.index.name = "time"
    return joined.reset_index()


__all__ = ["PORTFOLIO", "walkforward_record"]
