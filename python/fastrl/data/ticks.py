"""Isolated bad ticks: an open, high or low far outside the closes around it.

A feed error such as an open printed at 5x the price, with the close in line, passes the
OHLC checks (open <= high, low <= close) but hands a backtest that fills at the open a fake
windfall. The rule, for every bar ``t`` (daily or intraday, across sessions alike):

- its reference range is ``[min(close[t-1], close[t]), max(close[t-1], close[t])]`` (the
  first bar: its own close);
- its open, high or low is a **bad tick** when it lies outside that range by more than
  ``limit = max(TICK_FLOOR, TICK_SCALE_K * scale)`` in log terms, where ``scale`` is the
  median absolute close-to-close log return of the ``TICK_SCALE_BARS`` bars centred on it
  (the symbol's typical move at that time, so volatile names and periods get more room).

The bar's own close lies inside the range, so a flagged excursion is reversed within the
bar: a real gap that holds moves the close too, which widens the range, and is never
flagged. The floor (a price 1.5x the range's top, or 1/1.5 of its bottom) lies beyond
any excursion of the bundled daily and 5-minute bars, crash days included (a test checks
every bundled file).

Repair (asked for explicitly) clips each bad price into the reference range and keeps the
bar consistent (``high >= max(open, close)``, ``low <= min(open, close)``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

TICK_FLOOR = math.log(1.5)  # log excursion every bar may make whatever its symbol's scale
TICK_SCALE_K = 20.0  # excursion limit in typical moves (median |close-to-close log return|)
TICK_SCALE_BARS = 101  # bars in the centred window the typical move is the median of
TICK_COLUMNS = ("open", "high", "low")


@dataclass(frozen=True)
class BadTick:
    """One bad price: position ``index`` in the arrays checked, the reference range it lies
    outside of, the limit (a price ratio) and the value a repair gives it."""

    index: int
    column: str
    value: float
    range_low: float
    range_high: float
    ratio: float  # how far outside the range, as a price ratio (>= 1)
    limit: float  # the ratio allowed at this bar
    repaired: float


@dataclass(frozen=True)
class TickRepair:
    """One price changed by the explicit bad-tick repair (values as written in the file)."""

    file: str
    row: int  # 1-based data row of the file, as in RowIssue
    column: str
    timestamp: str
    old: float
    new: float
    csv_lines: bool = True

    def describe(self) -> str:
        line = f" (line {self.row + 1})" if self.csv_lines else ""
        return (f"{self.file}, row {self.row}{line}, {self.timestamp}, column "
                f"{self.column!r}: bad tick {self.old!r} repaired to {self.new!r}")

    def as_dict(self) -> dict:
        return {"file": self.file, "row": self.row, "column": self.column,
                "timestamp": self.timestamp, "old": self.old, "new": self.new}


def _typical_move(close: np.ndarray) -> np.ndarray:
    """Per bar: median |log return| of the close over the centred window (0 for one bar)."""
    moves = np.abs(np.diff(np.log(close), prepend=np.nan))
    scale = pd.Series(moves).rolling(TICK_SCALE_BARS, center=True, min_periods=1).median()
    return np.nan_to_num(scale.to_numpy(), nan=0.0)


def find_bad_ticks(open_: np.ndarray, high: np.ndarray, low: np.ndarray,
                   close: np.ndarray) -> list[BadTick]:
    """Every bad open, high or low of one symbol's bars (in time order, valid positive
    prices with low <= open, close <= high), ordered by position then column."""
    o, h, lo, c = (np.asarray(a, dtype=np.float64) for a in (open_, high, low, close))
    if len(c) == 0:
        return []
    previous = np.concatenate([c[:1], c[:-1]])
    top = np.maximum(previous, c)
    bottom = np.minimum(previous, c)
    limit = np.maximum(TICK_FLOOR, TICK_SCALE_K * _typical_move(c))
    values = {"open": o, "high": h, "low": lo}
    excursion = {k: np.maximum(np.log(v / top), np.log(bottom / v)) for k, v in values.items()}
    bad = {k: e > limit for k, e in excursion.items()}
    rows = np.flatnonzero(bad["open"] | bad["high"] | bad["low"])
    if rows.size == 0:
        return []
    fixed = {k: np.where(bad[k], np.clip(v, bottom, top), v) for k, v in values.items()}
    # a bad open drags the high (or low) beyond it, so that one is bad too: restoring
    # low <= open, close <= high never moves a price that was not flagged
    fixed["high"] = np.maximum.reduce([fixed["high"], fixed["open"], c])
    fixed["low"] = np.minimum.reduce([fixed["low"], fixed["open"], c])
    found = []
    for i in rows:
        for column in TICK_COLUMNS:
            if bad[column][i]:
                found.append(BadTick(
                    index=int(i), column=column, value=float(values[column][i]),
                    range_low=float(bottom[i]), range_high=float(top[i]),
                    ratio=float(np.exp(excursion[column][i])), limit=float(np.exp(limit[i])),
                    repaired=float(fixed[column][i])))
    return found


__all__ = ["BadTick", "TickRepair", "find_bad_ticks", "TICK_FLOOR", "TICK_SCALE_K",
           "TICK_SCALE_BARS"]
