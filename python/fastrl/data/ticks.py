"""Isolated bad ticks: prices far outside the closes around them, reversed at once.

A feed error such as an open printed at 5x the price, with the close in line, passes the
OHLC checks (open <= high, low <= close) but hands a backtest that fills at the open a fake
windfall. Every bar ``t`` (daily or intraday, across sessions alike) gets one limit,
``max(TICK_FLOOR, TICK_SCALE_K * scale)`` in log terms, where ``scale`` is the median
absolute close-to-close log return of the ``TICK_SCALE_BARS`` bars centred on it (the
symbol's typical move at that time, so volatile names and periods get more room), and two
rules:

- **a whole bar out of line**: its close lies beyond the limit outside the range of both
  neighbouring closes ``close[t-1]`` and ``close[t+1]`` (the next bar reverses it; the first
  and last bar have one neighbour and are not judged by this rule);
- **an open, high or low out of line**: it lies beyond the limit outside the range of the
  previous and own close, ``[min(close[t-1], close[t]), max(close[t-1], close[t])]`` (the
  first bar: its own close), the closes taken after the first rule's repair.

The own close lies inside the second range, so such an excursion is reversed within the
bar; a real gap that holds moves the close too, which widens the range, and the next close
stays near it, so it is never flagged. The floor (a price 1.5x the range's top, or 1/1.5 of
its bottom) lies beyond any move of the bundled daily and 5-minute bars, crash days
included (a test checks every bundled file).

Repair (asked for explicitly) clips each bad price into its range and keeps the bar
consistent (``high >= max(open, close)``, ``low <= min(open, close)``).
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
    outside of and the limit (a price ratio)."""

    index: int
    column: str
    value: float
    range_low: float
    range_high: float
    ratio: float  # how far outside the range, as a price ratio (>= 1)
    limit: float  # the ratio allowed at this bar


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


@dataclass
class TickCheck:
    """The bad prices of one symbol's bars and the prices a repair gives every bar."""

    bad: list[BadTick]
    repaired: dict[str, np.ndarray]  # open/high/low/close; the inputs when nothing is bad


def check_ticks(open_: np.ndarray, high: np.ndarray, low: np.ndarray,
                close: np.ndarray) -> TickCheck:
    """Every bad price of one symbol's bars (in time order, valid positive prices with
    low <= open, close <= high), ordered by position then column (a whole bar out of line
    is listed once, by its close), and the bars repaired.

    Two rules, on one limit per bar: a **whole bar out of line** (its close far outside the
    range of both neighbouring closes, so the next bar reverses it; not judged for the first
    and last bar, which have one neighbour) has its close clipped into that range first; then
    an **open, high or low** far outside the range of the previous and own (repaired) close
    is clipped into it. Last, each repaired bar is made consistent again (high at least its
    open and close, low at most), which may move a price that was not itself bad."""
    o, h, lo, c = (np.asarray(a, dtype=np.float64) for a in (open_, high, low, close))
    values = {"open": o, "high": h, "low": lo, "close": c}
    if len(c) == 0:
        return TickCheck([], values)
    limit = np.maximum(TICK_FLOOR, TICK_SCALE_K * _typical_move(c))
    found: list[BadTick] = []

    def outside(v: np.ndarray, bottom: np.ndarray, top: np.ndarray) -> np.ndarray:
        return np.maximum(np.log(v / top), np.log(bottom / v))

    # whole bar: the close against both neighbours
    before, after = np.roll(c, 1), np.roll(c, -1)
    nb_top, nb_bottom = np.maximum(before, after), np.minimum(before, after)
    close_out = outside(c, nb_bottom, nb_top)
    close_bad = close_out > limit
    close_bad[[0, -1]] = False
    fixed_close = np.where(close_bad, np.clip(c, nb_bottom, nb_top), c)
    # open, high, low: against the previous and own close (both repaired)
    previous = np.concatenate([fixed_close[:1], fixed_close[:-1]])
    top, bottom = np.maximum(previous, fixed_close), np.minimum(previous, fixed_close)
    excursion = {k: outside(values[k], bottom, top) for k in TICK_COLUMNS}
    bad = {k: excursion[k] > limit for k in TICK_COLUMNS}
    rows = np.flatnonzero(close_bad | bad["open"] | bad["high"] | bad["low"])
    if rows.size == 0:
        return TickCheck([], values)
    fixed = {k: np.where(bad[k], np.clip(values[k], bottom, top), values[k])
             for k in TICK_COLUMNS}
    fixed["close"] = fixed_close
    fixed["high"] = np.maximum.reduce([fixed["high"], fixed["open"], fixed_close])
    fixed["low"] = np.minimum.reduce([fixed["low"], fixed["open"], fixed_close])
    for i in rows:
        for column in TICK_COLUMNS:
            if bad[column][i] and not close_bad[i]:  # a whole bar is reported by its close
                found.append(BadTick(int(i), column, float(values[column][i]),
                                     float(bottom[i]), float(top[i]),
                                     float(np.exp(excursion[column][i])),
                                     float(np.exp(limit[i]))))
        if close_bad[i]:
            found.append(BadTick(int(i), "close", float(c[i]), float(nb_bottom[i]),
                                 float(nb_top[i]), float(np.exp(close_out[i])),
                                 float(np.exp(limit[i]))))
    return TickCheck(found, fixed)


def find_bad_ticks(open_: np.ndarray, high: np.ndarray, low: np.ndarray,
                   close: np.ndarray) -> list[BadTick]:
    """The bad prices of :func:`check_ticks`."""
    return check_ticks(open_, high, low, close).bad


__all__ = ["BadTick", "TickCheck", "TickRepair", "check_ticks", "find_bad_ticks", "TICK_FLOOR",
           "TICK_SCALE_K", "TICK_SCALE_BARS"]
