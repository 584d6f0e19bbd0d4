"""The ladder's rungs beside an agent: classical rules (:mod:`fastrl.rules`) backtested on
the agent's own days through the same simulator, with the same costs and market rules.

A test (or confirmation) block holds only ``window - 1`` context rows, too few for a rule
that reads a year of bars, so the market supplies a history block
(``market.rung_history``: every earlier row of the market the block was cut from, ending
with the block's rows) and each rule starts at the agent's first decision there
(``backtest_single(..., start_bars=...)``, ``backtest_portfolio(..., start_row=...)``).
The rules' backtests are re-indexed onto the block's rows and put into the agent's
result under the rule's name; a rule that is already a baseline there (buy_and_hold;
ew_hold, ew_monthly) is that baseline's row. ``result.ladder()`` then compares the agent
with each rung (:mod:`fastrl.ladder`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

from fastrl.data.panel import PanelBlock
from fastrl.markets.results import EvaluationError
from fastrl.markets.single.result import combine
from fastrl.rules import backtest_portfolio, backtest_single, rule_from_config, rule_names

NONE = "none"  # ``--rungs none``: no rung beside the agent


def check_rungs(names: Sequence[str] | None, kind: str) -> list[str]:
    """The rungs a run shows: every rule of ``kind`` by default (``names`` None), none for
    ``["none"]``, else ``names`` in the order given; ValueError naming an unknown rule (or
    one of the other kind) with the rules of ``kind``."""
    known = rule_names(kind)  # type: ignore[arg-type]
    if names is None:
        return known
    names = list(names)
    if names == [NONE]:
        return []
    bad = [n for n in names if n not in known and n != NONE]
    if NONE in names or bad:
        what = f"unknown rule {bad[0]!r}" if bad else "'none' cannot be combined with rules"
        raise ValueError(f"--rungs: {what} for a {kind} run; known {kind} rules: "
                         f"{', '.join(known)} (or none)")
    return list(dict.fromkeys(names))


def add_rungs(market: Any, result: Any, agent: Any, block: Any, names: Sequence[str], *,
              data: str | os.PathLike | None = None) -> Any:
    """Puts the rules ``names`` (parameters from the agent's config) beside the agent in
    ``result`` (its backtest of ``block``), their history from ``market.rung_history``
    (see the module docstring). Returns ``result``."""
    names = list(names)
    if not names:
        return result
    if any(n not in result.strategies for n in names):
        kwargs = {} if isinstance(block, PanelBlock) else {
            "test_days": result.info.get("test_days")}
        history, starts = market.rung_history(agent, block, data=data, **kwargs)
    else:  # every rung is a baseline already there: nothing to load
        history, starts = None, None
    return attach_rungs(result, block, names, agent.config, market.env_config, history,
                        starts)


def attach_rungs(result: Any, block: Any, names: Sequence[str], config: Any,
                 env_config: Any, history: Any, starts: Any) -> Any:
    """Puts the rules ``names`` (parameters from ``config``'s ``rules`` section) beside the
    agent in ``result``, its backtest of ``block`` (a MarketBlock or PanelBlock) under
    ``env_config``: each rule runs on ``history`` from ``starts`` (each segment's first
    decision bar there, or the panel's first decision row) and is re-indexed onto
    ``block``'s rows. A rule already among ``result``'s strategies (a baseline) is that
    row. Returns ``result``."""
    names = list(names)
    extra = [n for n in names if n not in result.strategies]
    rules = [rule_from_config(n, config) for n in extra]
    window = int(env_config.window)
    if rules and isinstance(block, PanelBlock):
        shift = int(starts) - (window - 1)
        for b in backtest_portfolio(rules, history, env_config, start_row=int(starts)):
            result.backtests.append(dataclasses.replace(
                b, decision_rows=b.decision_rows - shift, fill_rows=b.fill_rows - shift))
    elif rules:
        backtests = backtest_single(rules, history, env_config, starts)
        shift = {block.symbols[s]: int(starts[s]) - block.segment(s).start - (window - 1)
                 for s in range(block.num_segments)}
        for b in backtests:
            d = shift[b.symbol]
            agent_run = result.get(b.symbol, "agent")
            if agent_run.start_bar != b.start_bar - d or agent_run.num_steps != b.num_steps:
                raise EvaluationError(f"rule {b.strategy} on {b.symbol} does not trade the "
                                      "agent's test days")
            result.backtests.append(dataclasses.replace(
                b, start_bar=b.start_bar - d, decision_bars=b.decision_bars - d,
                fill_bars=b.fill_bars - d, bars=b.bars - d))
        for name in extra:
            result.combined[name] = combine([b for b in result.backtests
                                             if b.strategy == name], result.freq)
    result.rungs = names
    return result


__all__ = ["NONE", "add_rungs", "attach_rungs", "check_rungs"]
