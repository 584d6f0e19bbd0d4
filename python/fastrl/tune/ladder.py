"""Where a tuned winner stands on the ladder over its confirmation days.

The confirmation runs (fresh seeds, trained on every bar before the confirmation window)
are backtested on that window (the confirmation market's validation block) beside every
single-symbol rule of :mod:`fastrl.rules` (parameters from the winner's ``rules``
section). The rules run on the market's rows up to the window's end, from its first
decision bar (the rows before are their history: :func:`fastrl.rungs.attach_rungs`), so
every rung trades exactly the winner's days, with the same costs and market rules. The
winner's record is the mean over its seeds of the equal-capital portfolio's per-bar
return (one book split equally across the seeds); its mean return over each rung is
tested one-sided and Holm-adjusted across the rungs (:func:`fastrl.ladder.ladder_of`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from fastrl.ladder import LADDER_HEADER, columns_note, ladder_of
from fastrl.markets.results import BOOTSTRAP_SEED
from fastrl.markets.single.backtest import evaluate_agent
from fastrl.markets.single.rungs import history_block, start_bars
from fastrl.reports.writer import Section, Table
from fastrl.rules import rule_names
from fastrl.rungs import attach_rungs
from fastrl.strategies import COMBINED


def confirmation_ladder(runs: Sequence[Any], config: Any, market: Any, *,
                        rungs: Sequence[str] | None = None, label: str = "the winner"
                        ) -> dict[str, Any] | None:
    """The ladder of ``runs`` (the candidate's confirmation runs, agents kept) on the
    confirmation window ``market.val`` under ``config`` (the candidate's confirmation
    config): JSON-ready, with the window's dates and seeds. None without a window."""
    block = getattr(market, "val", None)
    if block is None or not runs:
        return None
    names = list(rule_names("single") if rungs is None else rungs)
    window = int(config.env.window)
    history = history_block([market.train, block], block.symbols)
    starts = start_bars(history, block, [block.segment(s).start + window - 1
                                         for s in range(block.num_segments)])
    results = [evaluate_agent(run.agent, block, config.env) for run in runs]
    first = attach_rungs(results[0], block, names, config, config.env, history, starts)
    agent = np.mean([r.returns(COMBINED, "agent") for r in results], axis=0)
    ladder = ladder_of(agent, {name: (first.returns(COMBINED, name),
                                      first.metrics(COMBINED, name).total_return)
                               for name in names}, first.freq,
                       agent=f"{label} (mean of {len(runs)} seed{'s' * (len(runs) != 1)})",
                       seed=BOOTSTRAP_SEED)
    stamps = first.get(first.symbols[0], "agent").timestamps
    dates = None if stamps is None else [str(stamps[0])[:10], str(stamps[-1])[:10]]
    return {"seeds": [int(run.seed) for run in runs], "dates": dates,
            "symbols": list(first.symbols), "bars": int(agent.shape[0]),
            "winner_total_return": float(np.prod(1.0 + agent) - 1.0),
            "table": ladder.table_rows(), **ladder.as_dict()}


def ladder_section(payload: dict[str, Any], label: str = "winner") -> Section | None:
    """The report's ladder section from :func:`confirmation_ladder`'s output (None when the
    payload has none)."""
    ladder = payload.get("ladder")
    if not ladder:
        return None
    dates = ladder.get("dates")
    span = f" ({dates[0]} .. {dates[1]})" if dates else ""
    return Section(
        f"Ladder: the {label} against the classical rules on the confirmation days{span}",
        level=3,
        paragraphs=[
            f"The {label}'s confirmation runs (seeds {ladder['seeds']}; their mean per-bar "
            f"return, {100 * ladder['winner_total_return']:+.2f}% over {ladder['bars']} bars) "
            "beside each rule traded through the same simulator on the same days and symbols "
            "(equal capital per symbol), with the same costs; every earlier bar is the "
            "rules' history. " + columns_note() + "."],
        table=Table(list(LADDER_HEADER), [list(row) for row in ladder["table"]]),
        closing=[f"{ladder['line']}."])


__all__ = ["confirmation_ladder", "ladder_section"]
