"""The latest bars for the live path, loaded by the training loader and refused when unsafe.

Bars come through :func:`fastrl.data.loaders.load_bars_report`, the loader training used
(same column spellings, validation, split/bonus adjustment, time zone), with
``on_bad_rows="raise"``: a NaN or non-positive price, an exact or conflicting duplicate bar,
an isolated bad tick (:mod:`fastrl.data.ticks`; live bars are never repaired) is an error
naming file, row and column, never a silent repair. On top of it the live path
refuses what a backtest would tolerate but a live decision must not:

- a **missing symbol**: a symbol the run trades is not in the source;
- **out-of-order** rows (training re-sorts them; live, a late bar written after newer ones
  means the feed is broken);
- a **stale** bar: a symbol's newest bar is older than the session being decided, or the
  feed's newest bar older than the exchange clock expects (:mod:`fastrl.live.clock`);
- a **gap longer than the feature look-back** (``FEATURE_LOOKBACK_BARS``, 34 bars) in the
  bars that feed a decision: daily bars more than 34 weekdays apart; 5-minute bars more
  than 34 bars apart within a session, or sessions more than ``MAX_INTRADAY_SESSION_GAP``
  weekdays apart (longer than any exchange holiday run). With long feature sets
  (``data.features`` beyond ``base``) the bars checked reach back over their warm-up
  (``LONG_WARMUP_BARS``) instead of the base look-back;
- **too little history** for long feature sets: fewer than ``LONG_WARMUP_BARS`` + window -
  1 bars before the first decision (its observation would hold 0 where the backtest, on
  the full history, had values).

Validated bars are cached per file (:func:`fastrl.data.loaders.bars_cache_dir`, keyed by
the file's SHA-256): a daily call parses only the files that changed since the last one,
and of a CSV feed that only appended lines, only those lines (validated by the same rules;
anything else, or any bad appended row, and the file is parsed whole, so a refusal reads
exactly as without the cache).

``source="yfinance"`` refreshes the download cache first (the newest session), then reads
it back through the same loader.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from fastrl.data.download import download_bars
from fastrl.data.loaders import bars_cache_dir, load_bars_report
from fastrl.features_long import LONG_WARMUP_BARS
from fastrl.live.book import LiveInputError
from fastrl.live.clock import EXCHANGE, INTRADAY_LAG_BARS, Expected, clock, expected
from fastrl.walkforward.plan import FEATURE_LOOKBACK_BARS

if TYPE_CHECKING:
    from fastrl.live.run import LiveRun

MAX_INTRADAY_SESSION_GAP = 5  # weekdays without a session between two sessions' bars
BAR_MINUTES = {"5min": 5}


@dataclass
class LiveBars:
    """Validated bars of a run's symbols (``bars[symbol]``: the loader's frame)."""

    bars: dict[str, pd.DataFrame]
    freq: str
    source: str

    def through(self, last: pd.Timestamp) -> dict[str, pd.DataFrame]:
        """Every symbol's bars up to and including ``last`` (what a decision there sees)."""
        return {s: frame.loc[:last] for s, frame in self.bars.items()}

    def until(self, last: pd.Timestamp) -> LiveBars:
        """These bars without any labelled after ``last`` (the clock: bars that have not
        ended by it are not seen)."""
        cut = {}
        for symbol, frame in self.bars.items():
            stop = int(np.searchsorted(frame.index, pd.Timestamp(last), side="right"))
            cut[symbol] = frame if stop == len(frame) else frame.iloc[:stop]
        return LiveBars(bars=cut, freq=self.freq, source=self.source)

    def upto(self, session: pd.Timestamp) -> LiveBars:
        """These bars without any after the date ``session`` (``--asof``/``--to``: a decision
        there never sees them)."""
        end = pd.Timestamp(session).normalize() + pd.Timedelta(days=1)
        cut = {}
        for symbol, frame in self.bars.items():
            stop = int(np.searchsorted(frame.index, end, side="left"))
            cut[symbol] = frame if stop == len(frame) else frame.iloc[:stop]
        return LiveBars(bars=cut, freq=self.freq, source=self.source)

    def sessions(self) -> list[pd.Timestamp]:
        """The session dates any symbol has a bar on, in order."""
        days = pd.DatetimeIndex([])
        for frame in self.bars.values():
            days = days.union(frame.index.normalize().unique())
        return list(days)

    def session_rows(self, session: pd.Timestamp) -> dict[str, list[pd.Timestamp]]:
        """Each symbol's bar timestamps on ``session`` (a date)."""
        day = np.datetime64(pd.Timestamp(session).normalize(), "ns")
        end = day + np.timedelta64(1, "D")
        out = {}
        for symbol, frame in self.bars.items():
            index = frame.index  # ascending (the loader's frames; the live path refuses others)
            values = index.to_numpy(dtype="datetime64[ns]")
            lo, hi = np.searchsorted(values, [day, end], side="left")
            out[symbol] = list(index[int(lo):int(hi)])
        return out

    def session_end(self, session: pd.Timestamp) -> pd.Timestamp | None:
        """The last bar of any symbol on ``session`` (a date), or None."""
        ends = [stamps[-1] for stamps in self.session_rows(session).values() if stamps]
        return max(ends) if ends else None

    def digest(self, last: pd.Timestamp) -> str:
        """SHA-256 of every bar up to ``last``, all symbols: the bars a decision used."""
        digest = hashlib.sha256()
        for symbol in sorted(self.bars):
            frame = self.bars[symbol].loc[:last]
            digest.update(symbol.encode())
            digest.update(frame.index.to_numpy(dtype="datetime64[ns]").tobytes())
            values = frame[["open", "high", "low", "close", "volume"]].to_numpy(np.float64)
            digest.update(np.ascontiguousarray(values).tobytes())
        return digest.hexdigest()


def load_live_bars(run: LiveRun, source: str | Path) -> LiveBars:
    """The run's symbols from ``source`` (a CSV/Parquet path, ``bundled`` or ``yfinance``),
    validated as in training and refused when out of order or missing."""
    symbols = list(run.symbols)
    source = str(source)
    if source == "yfinance":
        try:  # the newest session: re-download over the cache
            download_bars(symbols, freq=run.freq, refresh=True)
        except (ImportError, RuntimeError) as exc:  # no yfinance, offline, unknown ticker
            raise LiveInputError(str(exc)) from None
    elif source != "bundled" and not Path(source).expanduser().exists():
        raise LiveInputError(f"--bars {source}: no such file or folder")
    try:
        loaded = load_bars_report(symbols, run.freq, source, "raise", cache=bars_cache_dir())
    except ValueError as exc:
        text = str(exc)
        if text.startswith("unknown symbol"):
            raise LiveInputError(f"missing symbol: {text}") from None
        raise LiveInputError(f"bad bars: {text}") from None
    if loaded.resorted:
        symbol = loaded.resorted[0]
        raise LiveInputError(
            f"out-of-order bars: {symbol}'s rows in {loaded.files[symbol]} are not in time "
            f"order; a bar written after newer ones means the feed is broken (sort the file "
            f"after checking it, the live path never re-sorts)")
    return LiveBars(bars=loaded.bars, freq=run.freq, source=source)


def check_sessions(run: LiveRun, bars: LiveBars, sessions: list[pd.Timestamp]) -> None:
    """Raises LiveInputError unless every symbol has a bar on the last of ``sessions`` (the
    expected session; ``bars`` end there, see :meth:`LiveBars.upto`) and no gap longer than
    the feature look-back in the bars those sessions' decisions use.

    A symbol without a bar on an earlier session is not refused: the backtest trades each
    symbol on its own calendar (single-symbol runs: one segment per symbol; portfolios: an
    untradable cell), and so does the live path."""
    if not sessions:
        return
    first, last = sessions[0], sessions[-1]
    for symbol, frame in bars.bars.items():
        newest = frame.index[-1].normalize() if len(frame) else None
        if newest is None or newest < last:
            shown = newest.date() if newest is not None else "none"
            raise LiveInputError(
                f"stale bar: the newest bar of {symbol} is from {shown}, older than "
                f"the expected session {last.date()}")
        _check_history(run, symbol, frame, first)
        _check_gaps(run, symbol, frame, first)


def feature_lookback_bars(run: LiveRun) -> int:
    """The bars before a decision its features read: the base set's look-back, or the long
    sets' warm-up (``LONG_WARMUP_BARS``) where the run observes one."""
    return LONG_WARMUP_BARS + 1 if run.long_features else FEATURE_LOOKBACK_BARS


def _check_history(run: LiveRun, symbol: str, frame: pd.DataFrame,
                   first: pd.Timestamp) -> None:
    """A run with long feature sets needs ``LONG_WARMUP_BARS`` before the first decision's
    observation window: with fewer, those features are undefined there and the observation
    holds 0 where the backtest, on the full history, had values."""
    if not run.long_features:
        return
    have = int(np.searchsorted(frame.index, first, side="left"))
    need = LONG_WARMUP_BARS + run.window - 1
    if have < need:
        raise LiveInputError(
            "too little history for the long feature sets "
            f"({', '.join(run.config.data.features)}): {symbol} has {have} bars before "
            f"{first.date()}, they need {need} "
            f"({LONG_WARMUP_BARS} warm-up bars and the {run.window}-bar observation window); "
            "feed at least that many earlier bars (the live path would otherwise observe 0 "
            "where the backtest had values)")


def _check_gaps(run: LiveRun, symbol: str, frame: pd.DataFrame, first: pd.Timestamp) -> None:
    index = frame.index
    start = int(np.searchsorted(index, first, side="left"))
    # the bars the first decision's observation window and its features' look-back read
    lo = max(0, start - run.window - feature_lookback_bars(run))
    stamps = index[lo:]
    if len(stamps) < 2:
        return
    prev, cur = stamps[:-1], stamps[1:]
    prev_days = prev.to_numpy(dtype="datetime64[ns]").astype("datetime64[D]")
    cur_days = cur.to_numpy(dtype="datetime64[ns]").astype("datetime64[D]")
    weekdays_missing = np.busday_count(prev_days + 1, cur_days)
    if run.freq == "1d":
        too_long = weekdays_missing > FEATURE_LOOKBACK_BARS
        rule = f"{FEATURE_LOOKBACK_BARS} weekdays (the feature look-back)"
    else:
        same_day = prev_days == cur_days
        minutes = (cur - prev).total_seconds().to_numpy() / 60.0
        bars_missing = minutes / BAR_MINUTES[run.freq] - 1
        too_long = np.where(same_day, bars_missing > FEATURE_LOOKBACK_BARS,
                            weekdays_missing > MAX_INTRADAY_SESSION_GAP)
        rule = (f"{FEATURE_LOOKBACK_BARS} bars within a session (the feature look-back) or "
                f"{MAX_INTRADAY_SESSION_GAP} weekdays between sessions")
    if too_long.any():
        k = int(np.flatnonzero(too_long)[0])
        raise LiveInputError(
            f"gap longer than the feature look-back: {symbol} has no bars between "
            f"{prev[k]} and {cur[k]} (more than {rule}); its features would span the hole")


def decision_bars(bars: LiveBars, asof: str | None) -> tuple[LiveBars, pd.Timestamp, Expected]:
    """The bars a signal sees by the clock (now, or the end of the ``asof`` day; see
    :mod:`fastrl.live.clock`), the session it decides at (the newest one among them) and
    the expected bar. Refuses a feed whose newest bar is older than the expected one: a
    stale feed would trade the next open on an old close."""
    expect = expected(clock(asof), bars.freq)
    seen = bars.until(expect.visible)
    ends = {frame.index[-1]: symbol for symbol, frame in seen.bars.items() if len(frame)}
    newest = max(ends, default=None)
    if newest is None or newest < expect.allowed:
        shown = "none" if newest is None else f"{ends[newest]}, {_when(newest, bars.freq)}"
        at = "now" if asof in (None, "today") else f"the end of --asof {asof}"
        bar = ("" if bars.freq == "1d" else f", its bar {expect.bar} less a lag of "
               f"{INTRADAY_LAG_BARS} bar")
        extra = f"; {expect.assumed}" if expect.assumed else ""
        raise LiveInputError(
            f"stale bar: the feed's newest bar ({shown}) is older than the expected session "
            f"{expect.session.date()}{bar} (by the {EXCHANGE} calendar and the clock, {at}, "
            f"{expect.clock.strftime('%Y-%m-%d %H:%M %Z')}); refresh the feed, or pass "
            f"--asof DATE to decide at an earlier session{extra}")
    return seen, newest.normalize(), expect


def _when(stamp: pd.Timestamp, freq: str) -> str:
    return str(stamp.date()) if freq == "1d" else str(stamp)


__all__ = ["LiveBars", "check_sessions", "decision_bars", "feature_lookback_bars",
           "load_live_bars"]
