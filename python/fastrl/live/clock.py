"""The exchange clock of the live path: which bar a feed must have reached by now.

The sessions come from `exchange-calendars <https://github.com/gerrymanoim/exchange_calendars>`_'
``XBOM`` calendar (BSE): the library keeps no NSE calendar, and NSE and BSE share their
trading holidays and hours (09:15-15:30 IST). The clock is now in Asia/Kolkata, or the end
of the ``--asof`` day if that is earlier (an ``--asof`` of today or later is now):
``--asof`` moves the clock back, it does not switch the check off.

By the clock, the **expected bar** is the newest one a live feed must hold:

- daily bars: the last session whose close has passed. No lag is allowed: a signal for
  the session after X is decided at X's close, so a feed without X's bar would trade the
  next open on an older close (wait for the bar, or decide at an older session with
  ``--asof``);
- 5-minute bars: the last bar that has ended (bars are labelled by their start), less
  ``INTRADAY_LAG_BARS``: a bar is published seconds to a minute after it ends, and a run
  started on the bar boundary would otherwise be refused.

Bars that end after the clock (a daily bar of a session still trading, a bar after
``--asof``) are not seen. Outside the years the calendar records (its holiday lists end;
exchange-calendars 4.13 ends XBOM at 2026-12-31) every weekday is taken as a session: that
can only refuse a fresh feed on a holiday, never pass a stale one, and the refusal says so.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fastrl.live.book import LiveInputError

EXCHANGE = "XBOM"  # BSE: the same holidays and hours as NSE
TZ = "Asia/Kolkata"
OPEN, CLOSE = pd.Timedelta(hours=9, minutes=15), pd.Timedelta(hours=15, minutes=30)
INTRADAY_LAG_BARS = 1
BAR_LENGTH = {"5min": pd.Timedelta(minutes=5)}
_LOOKBACK = pd.Timedelta(days=40)  # longer than any run of exchange holidays


@dataclass(frozen=True)
class Expected:
    """The newest bar a feed must hold by ``clock`` (naive IST stamps, as the loader's)."""

    clock: pd.Timestamp  # tz-aware IST
    bar: pd.Timestamp  # the last bar that has ended by the clock
    allowed: pd.Timestamp  # the oldest newest-bar accepted (``bar`` less the lag)
    visible: pd.Timestamp  # the last bar label a decision may see
    assumed: str | None  # set when weekdays stood in for the calendar

    @property
    def session(self) -> pd.Timestamp:
        return self.bar.normalize()


def now() -> pd.Timestamp:
    """The wall clock in IST (tests pin it by replacing this function)."""
    return pd.Timestamp.now(tz=TZ)


def clock(asof: str | None, flag: str = "--asof") -> pd.Timestamp:
    """``None`` or ``today``: now; a date: the end of that day, in IST, or now if that is
    earlier (``--asof`` today mid-session is now: a bar that has not ended is not seen)."""
    if asof is None or asof == "today":
        return now()
    try:
        day = pd.Timestamp(asof)
    except ValueError:
        raise LiveInputError(f"{flag} {asof!r} is not a date (YYYY-MM-DD or 'today')") from None
    if day.tzinfo is not None:
        day = day.tz_convert(TZ).tz_localize(None)
    end = day.normalize() + pd.Timedelta(days=1) - pd.Timedelta(nanoseconds=1)
    return min(end.tz_localize(TZ), now())


@functools.lru_cache(maxsize=8)
def _calendar(start: pd.Timestamp, end: pd.Timestamp):  # noqa: ANN202 (library type)
    import exchange_calendars as xc

    with warnings.catch_warnings():
        # the library's own pandas deprecation notices (exchange-calendars 4.13 under pandas
        # 3.1) are not the user's to act on
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        return xc.get_calendar(EXCHANGE, start=start, end=end)


@functools.lru_cache(maxsize=1)
def _bounds() -> tuple[pd.Timestamp, pd.Timestamp]:
    """The first and last day the library records the calendar's holidays for."""
    from exchange_calendars.exchange_calendar_xbom import XBOMExchangeCalendar

    return XBOMExchangeCalendar.bound_min(), XBOMExchangeCalendar.bound_max()


@functools.lru_cache(maxsize=1)
def _schedule() -> pd.DataFrame:
    """Every session the library records (its ``_bounds``): a frame indexed by session with
    naive-IST ``open`` and ``close`` columns, built once (building it is what costs)."""
    low, high = _bounds()
    calendar = _calendar(low, high)
    known = calendar.sessions_in_range(low, high)
    return pd.DataFrame({
        "open": calendar.opens[known].dt.tz_convert(TZ).dt.tz_localize(None).to_numpy(),
        "close": calendar.closes[known].dt.tz_convert(TZ).dt.tz_localize(None).to_numpy()},
        index=pd.DatetimeIndex(known))


def _known(first: pd.Timestamp, last: pd.Timestamp) -> pd.DataFrame:
    """The recorded sessions from ``first`` to ``last`` (a slice of ``_schedule``)."""
    table = _schedule()
    lo, hi = table.index.searchsorted([first, last], side="left")
    if hi < len(table) and table.index[hi] == last:
        hi += 1
    return table.iloc[lo:hi]


def sessions(first: pd.Timestamp, last: pd.Timestamp) -> tuple[pd.DataFrame, str | None]:
    """The sessions from ``first`` to ``last`` (dates): a frame indexed by session with
    naive-IST ``open`` and ``close`` columns, and a note when weekdays stood in for the
    calendar outside the years it records."""
    import exchange_calendars as xc

    low, high = _bounds()
    days = pd.bdate_range(first, last)
    frame = pd.DataFrame({"open": days + OPEN, "close": days + CLOSE}, index=days)
    lo, hi = max(first, low), min(last, high)
    if lo <= hi:
        schedule = _known(lo, hi)
        outside = frame[(frame.index < lo) | (frame.index > hi)]
        frame = pd.concat([outside, schedule]).sort_index()
    note = None
    if first < low or last > high:
        note = (f"outside the {EXCHANGE} calendar of exchange-calendars {xc.__version__} "
                f"({low.date()} to {high.date()}) every weekday is taken as a session, so a "
                "holiday counts as one (upgrade exchange-calendars, or on a holiday pass "
                "the session before it as the date)")
    return frame, note


def expected(now_: pd.Timestamp, freq: str) -> Expected:
    """The newest bar a feed of ``freq`` bars must hold at the clock ``now_``."""
    local = now_.tz_convert(TZ).tz_localize(None)
    table, note = sessions((local - _LOOKBACK).normalize(), local.normalize())
    ended = table[table["close"] <= local]
    if ended.empty:
        raise LiveInputError(f"no {EXCHANGE} session closed in the {_LOOKBACK.days} days "
                             f"before {local}")
    if freq == "1d":
        bar = ended.index[-1]
        today = local.normalize()
        close = table["close"].get(today, today + CLOSE)
        visible = today if local >= close else today - pd.Timedelta(nanoseconds=1)
        return Expected(now_, bar, bar, visible, note)
    if freq not in BAR_LENGTH:
        raise LiveInputError(f"no exchange clock for {freq!r} bars")
    length = BAR_LENGTH[freq]
    recent = table[table["open"] + length <= local].tail(2)  # sessions with an ended bar
    stamps = [stamp for open_, close in zip(recent["open"], recent["close"], strict=True)
              for stamp in pd.date_range(open_, close - length, freq=length)
              if stamp + length <= local]
    lag = min(INTRADAY_LAG_BARS, len(stamps) - 1)
    return Expected(now_, stamps[-1], stamps[-1 - lag], local - length, note)


def last_session(day: pd.Timestamp) -> tuple[pd.Timestamp, str | None]:
    """The last session on or before the date ``day`` (and the weekday note, if any)."""
    day = pd.Timestamp(day).normalize()
    table, note = sessions(day - _LOOKBACK, day)
    if table.empty:
        raise LiveInputError(f"no {EXCHANGE} session in the {_LOOKBACK.days} days up to "
                             f"{day.date()}")
    return table.index[-1], note


@functools.lru_cache(maxsize=1)
def _session_arrays() -> tuple[np.ndarray, np.ndarray]:
    """``_schedule``'s sessions (datetime64[D]) and closes (naive IST datetime64[ns]), for
    lookups by searchsorted."""
    table = _schedule()
    return (table.index.to_numpy().astype("datetime64[D]"),
            table["close"].to_numpy(dtype="datetime64[ns]"))


@functools.lru_cache(maxsize=1)
def _recorded_years() -> tuple[np.datetime64, np.datetime64]:
    """``_bounds`` as datetime64[D]."""
    low, high = _bounds()
    return np.datetime64(low.date(), "D"), np.datetime64(high.date(), "D")


def _session_close(day: np.datetime64) -> np.datetime64:
    """The close of the date ``day``'s session (15:30 where the calendar records none)."""
    days, closes = _session_arrays()
    k = int(np.searchsorted(days, day))
    if k < len(days) and days[k] == day:
        return closes[k]
    return day.astype("datetime64[ns]") + CLOSE.to_timedelta64()


def _next_session(day: np.datetime64) -> np.datetime64 | None:
    """The first session after the date ``day`` within ``_LOOKBACK`` days, as
    :func:`sessions` lists them (the recorded ones; weekdays outside the recorded years),
    looked up in the cached schedule."""
    days, _ = _session_arrays()
    low, high = _recorded_years()
    candidates = []
    k = int(np.searchsorted(days, day, side="right"))
    if k < len(days):
        candidates.append(days[k])
    # the weekday after ``day`` (a weekend rolls back to its Friday first)
    weekday = np.busday_offset(day, 1, roll="backward")
    if low <= weekday <= high:  # inside the recorded years only sessions count
        weekday = np.busday_offset(max(day, high), 1, roll="backward")
    candidates.append(weekday)
    found = min(candidates)
    return found if found <= day + _LOOKBACK.to_timedelta64() else None


def next_bar_in_new_month(stamp: pd.Timestamp, freq: str) -> bool:
    """Whether the bar after ``stamp`` by the exchange calendar falls in a new calendar
    month: the live answer to :func:`fastrl.data.months.month_ends` at a series' newest row
    (which the series itself cannot give, nothing follows it). Daily bars: the next session
    is in another month; intraday bars: ``stamp`` is its session's last bar and the next
    session is in another month. The calendar is known ahead; no price after ``stamp`` is
    read."""
    moment = np.datetime64(pd.Timestamp(stamp).to_datetime64(), "ns")
    day = moment.astype("datetime64[D]")
    if freq != "1d":
        if freq not in BAR_LENGTH:
            raise LiveInputError(f"no exchange clock for {freq!r} bars")
        # another bar of this session follows
        if moment + BAR_LENGTH[freq].to_timedelta64() < _session_close(day):
            return False
    following = _next_session(day)
    if following is None:
        raise LiveInputError(f"no {EXCHANGE} session in the {_LOOKBACK.days} days after {day}")
    return bool(following.astype("datetime64[M]") != day.astype("datetime64[M]"))


__all__ = ["EXCHANGE", "INTRADAY_LAG_BARS", "Expected", "clock", "expected", "last_session",
           "next_bar_in_new_month", "now", "sessions"]
