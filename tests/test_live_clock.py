"""The exchange clock of the live path: the NSE/BSE (XBOM) calendar decides which bar a feed
must hold by now, and bars that have not ended by the clock are not seen."""

from __future__ import annotations

import pandas as pd
import pytest

from fastrl.data.loaders import load_bars_report
from fastrl.live.bars import LiveBars, decision_bars
from fastrl.live.book import LiveInputError
from fastrl.live.clock import clock, expected, last_session


def at(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="Asia/Kolkata")


def test_daily_expected_session_follows_the_exchange_calendar():
    # Friday 2022-11-04, the holiday Tuesday 2022-11-08 in between
    assert expected(at("2022-11-07 15:29"), "1d").bar == pd.Timestamp("2022-11-04")
    assert expected(at("2022-11-07 15:30"), "1d").bar == pd.Timestamp("2022-11-07")
    assert expected(at("2022-11-08 20:00"), "1d").bar == pd.Timestamp("2022-11-07")
    assert expected(at("2022-11-09 09:00"), "1d").bar == pd.Timestamp("2022-11-07")
    assert expected(clock("2022-11-09"), "1d").bar == pd.Timestamp("2022-11-09")
    assert expected(clock("2022-11-08"), "1d").assumed is None
    assert last_session(pd.Timestamp("2022-11-08"))[0] == pd.Timestamp("2022-11-07")


def test_five_minute_bars_may_lag_one_bar():
    got = expected(at("2024-06-28 10:02:10"), "5min")
    assert (got.bar, got.allowed) == (pd.Timestamp("2024-06-28 09:55"),
                                      pd.Timestamp("2024-06-28 09:50"))
    before_first_bar_ends = expected(at("2024-06-28 09:17"), "5min")
    assert before_first_bar_ends.bar == pd.Timestamp("2024-06-27 15:25")


def test_weekdays_stand_in_beyond_the_calendar_and_say_so():
    got = expected(at("2027-01-26 20:00"), "1d")  # Republic Day, past the recorded holidays
    assert got.bar == pd.Timestamp("2027-01-26")
    assert got.assumed is not None and "every weekday" in got.assumed


def test_asof_that_is_not_a_date_is_refused():
    with pytest.raises(LiveInputError, match="--asof 'soon' is not a date"):
        clock("soon")


@pytest.fixture(scope="module")
def intraday() -> LiveBars:
    bars = load_bars_report(["BPCL"], "5min", "bundled", "raise").bars
    return LiveBars(bars=bars, freq="5min", source="bundled")


def test_an_intraday_feed_behind_the_clock_is_stale(intraday, monkeypatch):
    import fastrl.live.clock

    last = intraday.bars["BPCL"].index[-1]  # 2024-06-28 15:25, the session's last bar
    day = last.normalize()
    cut = intraday.until(day + pd.Timedelta(hours=11))  # the feed stopped at 11:00
    # at 11:12 the 11:05 bar has ended (11:10): the feed may be that one bar behind
    monkeypatch.setattr(fastrl.live.clock, "now", lambda: at(f"{day.date()} 11:12"))
    seen, session, _ = decision_bars(cut, None)
    assert session == day and seen.bars["BPCL"].index[-1] == day + pd.Timedelta(hours=11)
    monkeypatch.setattr(fastrl.live.clock, "now", lambda: at(f"{day.date()} 11:15"))
    with pytest.raises(LiveInputError, match="stale bar.*11:00:00.*11:10:00 less a lag"):
        decision_bars(cut, None)
    # bars that have not ended by the clock are not seen
    monkeypatch.setattr(fastrl.live.clock, "now", lambda: at(f"{day.date()} 11:07"))
    seen, _, _ = decision_bars(intraday, None)
    assert seen.bars["BPCL"].index[-1] == day + pd.Timedelta(hours=11)


def test_asof_today_or_later_is_now_not_the_end_of_the_day(intraday, monkeypatch):
    import fastrl.live.clock

    last = intraday.bars["BPCL"].index[-1]  # 2024-06-28 15:25
    day = last.normalize()
    monkeypatch.setattr(fastrl.live.clock, "now", lambda: at(f"{day.date()} 10:00"))
    for asof in (str(day.date()), str((day + pd.Timedelta(days=3)).date())):
        assert clock(asof) == at(f"{day.date()} 10:00")
        # mid-session the daily bar of today is not a close yet: yesterday's is expected
        assert expected(clock(asof), "1d").bar == pd.Timestamp("2024-06-27")
        # a 5-minute feed that is current at 10:00 is not refused as stale until the close
        seen, session, _ = decision_bars(intraday.until(day + pd.Timedelta(hours=9, minutes=50)),
                                         asof)
        assert session == day
        assert seen.bars["BPCL"].index[-1] == day + pd.Timedelta(hours=9, minutes=50)
    assert clock("2024-06-27") == at("2024-06-27 23:59:59.999999999")  # an earlier day: its end
