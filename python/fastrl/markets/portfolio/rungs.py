"""The history a portfolio ladder's rungs read before the agent's test days.

A test panel holds only ``window - 1`` context rows before its first decision, too few for
a rule that reads a year of marks (xs_momentum 252 rows, inverse_vol and min_variance
their lookbacks). So each rule runs on a history panel: every row of the market's splits
(train, validation, test, in time order, each row once) up to the end of the test days,
started at the agent's first decision row (``backtest_portfolio(..., start_row=...)``,
see :mod:`fastrl.rungs`). The rows before it are history the rule reads; it trades
exactly the agent's steps.

The walk-forward's rungs (:func:`fastrl.walkforward.rungs.portfolio_rule_records`) follow
the same convention but trade a panel of the raw bars (:meth:`PanelBlock.from_bars`), and
the two differ on purpose. Here the history is the run's own panel, so the rule sees the
agent's calendar and tradable cells (:func:`start_row` proves the history ends with the
test panel's rows): a cell in a symbol's feature warm-up is untradable here, as it is for
the agent, and those warm-up rows are missing from the history. The walk-forward's raw
panel holds every bar from the data's start, tradable wherever the symbol has a bar; its
symbols all trade from the first window (a portfolio joins no late listing), so the two
differ in the rule's history only, not in the days it trades.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fastrl.data.panel import PanelBlock
from fastrl.markets.results import EvaluationError

ROW_FIELDS = ("open", "close", "features", "tradable")


def history_panel(blocks: Sequence[PanelBlock | None]) -> PanelBlock:
    """The rows of ``blocks`` (one market's splits in time order; None skipped) on one
    calendar, each row once: by timestamp, or without timestamps dropping a later block's
    ``meta["context_rows"]`` leading rows (they repeat the earlier block's last rows)."""
    present = [b for b in blocks if b is not None]
    if not present:
        raise EvaluationError("no panel rows for the rungs' history")
    keep = []
    last = None
    for i, block in enumerate(present):
        rows = np.arange(block.num_bars)
        if block.timestamps is not None:
            stamps = np.asarray(block.timestamps)
            if last is not None:
                rows = rows[stamps > last]
            if rows.size:
                last = stamps[rows[-1]]
        elif i > 0:
            rows = rows[int(block.meta.get("context_rows", 0)):]
        keep.append(rows)
    first = present[0]
    stamped = all(b.timestamps is not None for b in present)
    return PanelBlock(
        symbols=first.symbols,
        **{key: np.concatenate([getattr(b, key)[rows] for b, rows in zip(present, keep,
                                                                         strict=True)])
           for key in ROW_FIELDS},
        feature_names=first.feature_names,
        timestamps=(np.concatenate([np.asarray(b.timestamps)[rows] for b, rows
                                    in zip(present, keep, strict=True)]) if stamped else None),
        freq=first.freq, meta={**first.meta, "split": "history"})


def start_row(history: PanelBlock, test: PanelBlock, test_start: int) -> int:
    """The test panel's first decision row (``test_start``) as a row of ``history``, whose
    last rows must be the test panel's; EvaluationError otherwise."""
    tail = test.num_bars - int(test_start)
    start = history.num_bars - tail
    same = (start >= 0 and history.symbols == test.symbols
            and np.array_equal(history.close[start:], test.close[test_start:], equal_nan=True))
    if same and history.timestamps is not None and test.timestamps is not None:
        same = np.array_equal(history.timestamps[start:], test.timestamps[test_start:])
    if not same:
        raise EvaluationError("the rungs' history panel does not end with the test days' "
                              "rows; cannot trade the rules on the agent's days")
    return start


__all__ = ["history_panel", "start_row"]
