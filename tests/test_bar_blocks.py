"""MarketBlock.from_bars / PanelBlock.from_bars: raw bar frames as the classical rules' market
(union calendar, NaN and untradable where a symbol has no bar, a clear error for a bad frame)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fastrl.data.block import MarketBlock
from fastrl.data.panel import PanelBlock, build_panel_from_bars

DAYS = pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05",
                       "2024-01-08"])


def bars(days, first: float) -> pd.DataFrame:
    close = first + np.arange(len(days), dtype=float)
    return pd.DataFrame({"open": close - 0.5, "high": close + 1, "low": close - 1,
                         "close": close}, index=pd.DatetimeIndex(days, name="date"))


def frames() -> dict[str, pd.DataFrame]:
    # LATE lists on the third day, skips the fourth, and trades a day EARLY lacks
    return {"EARLY": bars(DAYS[:5], 10.0), "LATE": bars(DAYS[[2, 4, 5]], 100.0)}


def test_a_late_listing_is_nan_and_untradable_before_its_first_bar():
    panel = PanelBlock.from_bars(frames(), "1d")
    assert panel.symbols == ("EARLY", "LATE")
    np.testing.assert_array_equal(panel.timestamps, DAYS.to_numpy(dtype="datetime64[ns]"))
    assert panel.timestamps.dtype == np.dtype("datetime64[ns]")
    np.testing.assert_array_equal(panel.tradable, [[True, False], [True, False], [True, True],
                                                   [True, False], [True, True], [False, True]])
    np.testing.assert_array_equal(panel.close[:, 1], [np.nan, np.nan, 100, np.nan, 101, 102])
    np.testing.assert_array_equal(panel.open[:, 1], [np.nan, np.nan, 99.5, np.nan, 100.5, 101.5])
    np.testing.assert_array_equal(panel.close[:, 0], [10, 11, 12, 13, 14, np.nan])
    # a held name is valued at its last close; 0 before it ever traded
    np.testing.assert_array_equal(panel.mark[:, 1], [0, 0, 100, 100, 101, 102])
    np.testing.assert_array_equal(panel.mark[:, 0], [10, 11, 12, 13, 14, 14])
    assert panel.features.shape == (6, 2, 1) and not panel.features.any()
    assert panel.freq == "1d" and panel.feature_names == ()


def test_through_keeps_the_days_on_or_before_it_for_both_shapes():
    intraday = bars(pd.date_range("2024-01-02 09:15", periods=4, freq="1D"), 5.0)
    panel = PanelBlock.from_bars({**frames(), "I": intraday}, through="2024-01-04")
    assert str(panel.timestamps[-1])[:10] == "2024-01-04"
    assert panel.tradable[:, 2].sum() == 3  # 09:15 on the 2nd, 3rd and 4th: same days kept
    block = MarketBlock.from_bars(frames(), "1d", through=pd.Timestamp("2024-01-04 15:30"))
    assert block.segment_lengths().tolist() == [4, 1]
    with pytest.raises(ValueError, match="symbol LATE: no bars on or before 2024-01-02"):
        MarketBlock.from_bars(frames(), through="2024-01-02")


def test_a_market_block_holds_each_symbols_bars_as_one_segment():
    source = frames()
    source["EARLY"].index = source["EARLY"].index.as_unit("us")  # normalised to ns
    block = MarketBlock.from_bars(source, "5min", meta={"split": "history"})
    assert block.symbols == ("EARLY", "LATE") and block.freq == "5min"
    assert block.offsets.tolist() == [0, 5, 8]
    assert block.timestamps.dtype == np.dtype("datetime64[ns]")
    for s, symbol in enumerate(block.symbols):
        rows = block.segment(s)
        np.testing.assert_array_equal(block.close[rows], source[symbol]["close"].to_numpy())
        np.testing.assert_array_equal(block.open[rows], source[symbol]["open"].to_numpy())
        np.testing.assert_array_equal(block.timestamps[rows],
                                      source[symbol].index.to_numpy(dtype="datetime64[ns]"))
    assert block.features.shape == (8, 1) and not block.features.any()
    assert block.high is None and block.meta == {"split": "history"}


def test_the_raw_panel_prices_agree_with_the_featured_panel_where_it_trades():
    rng = np.random.default_rng(3)
    days = pd.bdate_range("2020-01-01", periods=260)
    source = {}
    for symbol, start in (("A", 0), ("B", 40)):
        close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, len(days) - start)))
        source[symbol] = pd.DataFrame(
            {"open": close * 1.001, "high": close * 1.01, "low": close * 0.99, "close": close,
             "volume": 1000.0}, index=days[start:])
    featured = build_panel_from_bars(source, "1d", test_days=30, window=8).train
    raw = PanelBlock.from_bars(source)
    rows = np.searchsorted(raw.timestamps, featured.timestamps)
    np.testing.assert_array_equal(raw.timestamps[rows], featured.timestamps)
    cells = featured.tradable
    assert cells.any() and raw.tradable[rows][cells].all()
    np.testing.assert_array_equal(raw.close[rows][cells], featured.close[cells])
    np.testing.assert_array_equal(raw.open[rows][cells], featured.open[cells])
    # the raw panel drops no feature warm-up: B trades from its first bar
    assert raw.tradable[:, 1].sum() == len(source["B"])


def _unsorted(f):
    return f.iloc[[1, 0, 2, 3, 4]]


def _duplicated(f):
    return f.iloc[[0, 1, 1, 2]]


def _no_open(f):
    return f.drop(columns="open")


def _nan_close(f):
    f = f.copy()
    f.iloc[2, f.columns.get_loc("close")] = np.nan
    return f


def _zero_open(f):
    f = f.copy()
    f.iloc[1, f.columns.get_loc("open")] = 0.0
    return f


def _zoned(f):
    return f.tz_localize("Asia/Kolkata")


def _range_index(f):
    return f.reset_index(drop=True)


@pytest.mark.parametrize("build", [MarketBlock.from_bars, PanelBlock.from_bars])
@pytest.mark.parametrize(("spoil", "message"), [
    (_unsorted, r"symbol BAD: bars are not in time order \(2024-01-01 00:00:00 comes after "
                r"2024-01-02"),
    (_duplicated, "symbol BAD: duplicate bar timestamp 2024-01-02"),
    (_no_open, r"symbol BAD: bars lack the column\(s\) open \(have high, low, close\)"),
    (_nan_close, "symbol BAD: close is nan at 2024-01-03 00:00:00; prices must be finite"),
    (_zero_open, "symbol BAD: open is 0.0 at 2024-01-02 00:00:00; prices must be finite and "
                 "positive"),
    (_zoned, "symbol BAD: bar timestamps must be local exchange time without a zone"),
    (_range_index, "symbol BAD: bars need a DatetimeIndex, got RangeIndex"),
])
def test_a_bad_frame_is_refused_naming_its_symbol(build, spoil, message):
    good = frames()["EARLY"]
    with pytest.raises(ValueError, match=message):
        build({"GOOD": good, "BAD": spoil(good)})


@pytest.mark.parametrize("build", [MarketBlock.from_bars, PanelBlock.from_bars])
def test_no_symbols_is_refused(build):
    with pytest.raises(ValueError, match="no symbols"):
        build({})
