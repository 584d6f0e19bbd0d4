"""The history a single-symbol ladder's rungs read before the agent's test days.

A test block holds only ``window - 1`` context rows before its first decision, too few for
a rule that reads a year of bars (momentum 252 bars, ma10 ten month ends, voltarget 60).
So each rule runs on a history block: the symbol's rows of the market's splits (train,
validation, test, in time order, each row once) up to the end of the test days, started at
the agent's first decision bar (``backtest_single(..., start_bars=...)``, see
:mod:`fastrl.rungs`). The rows before it are history the rule reads; it trades exactly the
agent's steps.

The walk-forward's rungs (:func:`fastrl.walkforward.rungs.single_rule_records`) follow
the same convention (history, then the rule from the agent's first decision bar through its
last traded day) but build their block from the raw bars (:meth:`MarketBlock.from_bars`),
and the two differ on purpose. Here there are no raw bars at hand: the history is the run's
own market (its splits, or ``--data`` rebuilt with the run's normaliser), so the rule trades
the very rows the agent's env holds, and :func:`start_bars` proves that the history ends
with the test block's bars. Those rows start after each symbol's feature warm-up (the
featuriser drops them), so a rule reads that many fewer bars of history than in the
walk-forward, which holds every bar from the data's start. A rule's decisions are the same
in both wherever its look-back (momentum 252 bars, ma10 ten month ends, ...) fits in the
shorter history.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fastrl.data.block import MarketBlock
from fastrl.markets.results import EvaluationError

ROW_FIELDS = ("open", "close", "high", "low", "features", "timestamps")


def history_block(blocks: Sequence[MarketBlock | None], symbols: Sequence[str]
                  ) -> MarketBlock:
    """One segment per symbol of ``symbols``: its rows of ``blocks`` (a market's splits in
    time order; None skipped) concatenated, each bar once (by timestamp; without
    timestamps a later block's ``meta["context_rows"]`` leading rows repeat the earlier
    block's last rows and are dropped)."""
    present = [b for b in blocks if b is not None]
    segments = []
    for symbol in symbols:
        parts: dict[str, list[np.ndarray]] = {key: [] for key in ROW_FIELDS}
        last = None
        for i, block in enumerate(present):
            if symbol not in block.symbols:
                continue
            rows = block.segment(block.symbols.index(symbol))
            keep = np.arange(rows.start, rows.stop)
            if block.timestamps is not None:
                stamps = np.asarray(block.timestamps)[keep]
                if last is not None:
                    keep = keep[stamps > last]
                if keep.size:
                    last = np.asarray(block.timestamps)[keep[-1]]
            elif i > 0:
                keep = keep[int(block.meta.get("context_rows", 0)):]
            for key in ROW_FIELDS:
                values = getattr(block, key)
                if values is not None:
                    parts[key].append(np.asarray(values)[keep])
        if not parts["close"]:
            raise EvaluationError(f"no history rows for symbol {symbol!r}")
        segments.append({"symbol": symbol, **{key: np.concatenate(v) if v else None
                                              for key, v in parts.items()}})
    first = present[0]
    return MarketBlock.from_segments(segments, first.feature_names, first.freq,
                                     {**first.meta, "split": "history"})


def start_bars(history: MarketBlock, test: MarketBlock, test_starts: Sequence[int]
               ) -> list[int]:
    """Each test segment's first decision bar (``test_starts``, rows of ``test``) as a row
    of ``history``, whose segment must end with the same bars; EvaluationError otherwise."""
    out = []
    for s, symbol in enumerate(test.symbols):
        seg, hist = test.segment(s), history.segment(history.symbols.index(symbol))
        tail = seg.stop - int(test_starts[s])
        start = hist.stop - tail
        same = start >= hist.start and np.array_equal(
            np.asarray(history.close)[start:hist.stop],
            np.asarray(test.close)[seg.stop - tail:seg.stop])
        if same and test.timestamps is not None and history.timestamps is not None:
            same = np.array_equal(np.asarray(history.timestamps)[start:hist.stop],
                                  np.asarray(test.timestamps)[seg.stop - tail:seg.stop])
        if not same:
            raise EvaluationError(f"the rungs' history of {symbol} does not end with its test "
                                  "days' bars; cannot trade the rules on the agent's days")
        out.append(start)
    return out


__all__ = ["history_block", "start_bars"]
