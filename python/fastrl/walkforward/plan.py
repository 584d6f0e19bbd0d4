"""Walk-forward windows: which bars each window trains on, and which days it trades.

The calendar is the union of the symbols' trading days (sessions for 5-minute bars). Window
``k`` trades the calendar days ``[a, b)``: its policy decides at the close of day ``a - 1``
(the previous window's last traded day), fills at the open of day ``a`` and marks every
traded day at its close, so the stitched record has no gap and no overlap. The policy
trains on bars up to the close of day ``a - 1 - embargo`` only (``last_seen``), so no window
sees a bar at or after its first traded day. The ``embargo`` covers what could leak, the
reward's horizon: a decision's reward is marked at the next bar's close (a square-off exits at
that same close), so with the default one day no reward a window trains or validates on is
earned on its decision day or later. Features need no embargo: they only look back, so the
first traded observations may be built from bars the window trained on (they were known at
the decision) and nothing after ``last_seen`` reaches the policy. The last ``test_days`` days
of the calendar (the test split every other command holds out) are never traded unless
``through_test``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from fastrl.features import WARMUP_BARS
from fastrl.metrics import bars_per_day

# bars the newest feature row reaches back over (the warm-up rows plus the row itself)
FEATURE_LOOKBACK_BARS = WARMUP_BARS + 1
# bars a decision's reward looks ahead: filled at the next open (or this close), marked and
# squared off at the next close
REWARD_HORIZON_BARS = 1
DEFAULT_STEP = 63  # trading days per window: a quarter
LATE_LISTINGS = ("error", "join")


def min_embargo_days(freq: str) -> int:
    """The shortest embargo, in trading days, that covers the reward's horizon."""
    return max(1, math.ceil(REWARD_HORIZON_BARS / bars_per_day(freq)))


def default_min_train_days(freq: str) -> int:
    """Training days a window needs at least (after warm-up, before validation)."""
    return 252 if freq == "1d" else 20


@dataclass(frozen=True)
class WalkForwardSpec:
    """The protocol: where the record starts, how often to retrain and on what."""

    step: int = DEFAULT_STEP  # trading days traded per window
    start: str | None = None  # first traded day (None: the earliest with enough history)
    train_window: int | None = None  # None: expanding; N: the last N days before last_seen
    val_days: int = 120  # the end of each window's training span, for best.pt and early stop
    embargo: int | None = None  # None: min_embargo_days(freq)
    min_train_days: int | None = None  # None: default_min_train_days(freq)
    test_days: int = 30  # the data's held-out tail, never traded unless through_test
    through_test: bool = False
    late_listings: str = "error"  # "join": a symbol enters once it has enough history

    def resolved(self, freq: str) -> WalkForwardSpec:
        """Defaults filled in for ``freq``, every value checked (ValueError names it)."""
        embargo = min_embargo_days(freq) if self.embargo is None else self.embargo
        min_train = default_min_train_days(freq) if self.min_train_days is None \
            else self.min_train_days
        spec = WalkForwardSpec(**{**asdict(self), "embargo": embargo, "min_train_days": min_train})
        _check_int("--step", spec.step, 1)
        _check_int("--val-days", spec.val_days, 0)
        _check_int("--embargo", spec.embargo, 0)
        _check_int("--min-train-days", spec.min_train_days, 1)
        _check_int("--test-days", spec.test_days, 0)
        if spec.train_window is not None:
            _check_int("--train-window", spec.train_window, 1)
            if spec.train_window < spec.min_train_days + spec.val_days:
                raise ValueError(
                    f"--train-window {spec.train_window} is shorter than --min-train-days "
                    f"{spec.min_train_days} + --val-days {spec.val_days}")
        shortest = min_embargo_days(freq)
        if spec.embargo < shortest:
            raise ValueError(
                f"--embargo {spec.embargo} is shorter than the reward's horizon "
                f"({REWARD_HORIZON_BARS} bar = {shortest} trading day(s) at {freq}): a window "
                "would train on a reward earned on its decision day; "
                f"use --embargo {shortest} or more")
        if spec.late_listings not in LATE_LISTINGS:
            raise ValueError(f"--late-listings must be one of {LATE_LISTINGS}, "
                             f"got {spec.late_listings!r}")
        if spec.start is not None:
            try:
                pd.Timestamp(spec.start)
            except ValueError:
                raise ValueError(f"--start {spec.start!r} is not a date (use YYYY-MM-DD)") from None
        return spec


def _check_int(name: str, value: object, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


@dataclass(frozen=True)
class Window:
    """One retraining: train on ``[train_start, last_seen]`` (validating on ``[val_start,
    last_seen]``), trade ``[first_traded, last_traded]``.

    Dates are ISO strings (the session date for 5-minute bars). ``decision_day`` is the day
    whose close the first decision is made at (the day before ``first_traded``);
    ``symbols`` are the symbols the window trains on and trades.
    """

    index: int
    train_start: str
    val_start: str  # the first validation day ("" without validation)
    last_seen: str
    decision_day: str
    first_traded: str
    last_traded: str
    days: int
    symbols: tuple[str, ...]

    @property
    def decision_end(self) -> pd.Timestamp:
        """The instant after the decision day's last bar: midnight after its date."""
        return pd.Timestamp(self.decision_day) + pd.Timedelta(days=1)

    def as_dict(self) -> dict:
        return {**asdict(self), "symbols": list(self.symbols)}


def trading_calendar(bars: Mapping[str, pd.DataFrame]) -> pd.DatetimeIndex:
    """The union of the symbols' trading days (normalised dates), ascending."""
    days = [frame.index.normalize().unique() for frame in bars.values()]
    return pd.DatetimeIndex(np.unique(np.concatenate([d.to_numpy() for d in days])))


def _day_text(day: pd.Timestamp) -> str:
    return pd.Timestamp(day).strftime("%Y-%m-%d")


def plan_windows(bars: Mapping[str, pd.DataFrame], spec: WalkForwardSpec,
                 freq: str = "1d") -> list[Window]:
    """The windows of a walk-forward over ``bars`` (validated bars per symbol).

    Raises ValueError naming the problem: a start before enough history (with the earliest
    start that works), no day left to trade, a symbol with no bars in a window.
    """
    if not bars:
        raise ValueError("walk-forward needs at least one symbol")
    spec = spec.resolved(freq)
    calendar = trading_calendar(bars)
    symbol_days = {s: frame.index.normalize().unique() for s, frame in bars.items()}
    # days the data holds out at its end: the calendar's last test_days days, the test
    # split of every other command (fastrl.data.splits)
    end = len(calendar)
    if spec.test_days and not spec.through_test:
        if len(calendar) <= spec.test_days:
            raise ValueError(f"the symbols' calendar has {len(calendar)} trading days, not "
                             f"more than --test-days {spec.test_days}")
        end = len(calendar) - spec.test_days
    # earliest traded day per symbol: warm-up + training + validation days, then the embargo
    needed = spec.min_train_days + spec.val_days
    first_day_with_features = math.ceil(WARMUP_BARS / bars_per_day(freq))
    ready = {}  # symbol -> the first calendar index it may trade (its last_seen, one day spare)
    for symbol, days in symbol_days.items():
        last_needed = first_day_with_features + needed - 1
        if last_needed >= len(days):
            ready[symbol] = None
            continue
        ready[symbol] = int(calendar.searchsorted(days[last_needed])) + spec.embargo + 2
    earliest_all = max((r for r in ready.values() if r is not None), default=None)
    missing = [s for s, r in ready.items() if r is None]
    if spec.start is None:
        if spec.late_listings == "join":
            candidates = [r for r in ready.values() if r is not None]
            start = min(candidates) if candidates else end
        else:
            start = end if missing else earliest_all
    else:
        start = int(calendar.searchsorted(pd.Timestamp(spec.start).normalize()))
        if start >= len(calendar):
            raise ValueError(f"--start {spec.start} is after the last bar "
                             f"({_day_text(calendar[-1])})")
    if spec.late_listings == "error":
        late = {s: r for s, r in ready.items() if r is None or r > start}
        if late:
            symbol = sorted(late, key=lambda s: -1 if late[s] is None else late[s])[-1]
            hint = ("" if earliest_all is None or missing else
                    f"; the earliest --start with enough history for every symbol is "
                    f"{_day_text(calendar[min(earliest_all, len(calendar) - 1)])}")
            raise ValueError(
                f"--start {_day_text(calendar[min(start, len(calendar) - 1)])}: symbol "
                f"{symbol} has too little history before it (needs {WARMUP_BARS} warm-up bars, "
                f"--min-train-days {spec.min_train_days}, --val-days {spec.val_days} and "
                f"--embargo {spec.embargo} days){hint}; or --late-listings join lets late "
                "symbols enter when they have it")
    if start >= end:
        raise ValueError(
            f"no day left to trade: the first traded day would be "
            f"{_day_text(calendar[min(start, len(calendar) - 1)])} but the tradable days end "
            f"{_day_text(calendar[end - 1])} (the last --test-days {spec.test_days} days are "
            "held out; --through-test trades them)")
    windows = []
    for k, a in enumerate(range(start, end, spec.step)):
        b = min(a + spec.step, end)
        last_seen = a - 1 - spec.embargo
        if spec.train_window is None:
            train_start = calendar[0]
        else:
            train_start = calendar[max(0, last_seen - spec.train_window + 1)]
        first, last = calendar[a], calendar[b - 1]
        symbols = []
        for symbol, days in symbol_days.items():
            if ready[symbol] is not None and ready[symbol] <= a:
                traded = np.sum((days >= first) & (days <= last))
                if traded == 0:
                    raise ValueError(f"symbol {symbol} has no bars in window {k} "
                                     f"({_day_text(first)} to {_day_text(last)})")
                symbols.append(symbol)
        if not symbols:
            continue
        val_start = (_day_text(calendar[max(0, last_seen - spec.val_days + 1)])
                     if spec.val_days else "")
        windows.append(Window(
            index=len(windows), train_start=_day_text(train_start), val_start=val_start,
            last_seen=_day_text(calendar[last_seen]), decision_day=_day_text(calendar[a - 1]),
            first_traded=_day_text(first), last_traded=_day_text(last), days=b - a,
            symbols=tuple(symbols)))
    return windows


def window_bars(bars: Mapping[str, pd.DataFrame], window: Window, part: str,
                warmup_bars: int = 0) -> dict[str, pd.DataFrame]:
    """The bars of ``window.symbols`` a part of the window may use.

    ``part="train"``: from ``train_start`` (and the ``warmup_bars`` bars before it, which
    the features consume, so the first feature row is on ``train_start``) through the close
    of ``last_seen``; ``part="trade"``: everything through the close of ``last_traded``.
    Slices are copies, so nothing downstream can reach a later bar.
    """
    if part not in ("train", "trade"):
        raise ValueError(f"part must be 'train' or 'trade', got {part!r}")
    end = pd.Timestamp(window.last_seen if part == "train" else window.last_traded)
    out = {}
    for symbol in window.symbols:
        frame = bars[symbol]
        days = frame.index.normalize()
        keep = days <= end
        if part == "train":
            first = int(np.searchsorted(days, pd.Timestamp(window.train_start), side="left"))
            keep &= np.arange(len(frame)) >= first - warmup_bars
        out[symbol] = frame.loc[keep].copy()
    return out
