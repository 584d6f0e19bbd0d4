"""Time splits: exact day boundaries, context rows, train-only normalisation, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fastrl.data import MarketBlock, build_market, build_market_from_bars, load_bars, split_bars
from fastrl.features import compute_features

FIXTURES = Path(__file__).parent / "fixtures"


def own_rows(block: MarketBlock, s: int) -> np.ndarray:
    """Timestamps of segment s without its context rows."""
    rows = block.segment(s)
    return block.timestamps[rows][block.meta["context_rows"] :]


@pytest.mark.parametrize(
    ("test_days", "val_days", "window"), [(30, 0, 32), (20, 15, 8), (6, 40, 1)]
)
def test_daily_split_boundaries_are_exact(test_days, val_days, window):
    market = build_market(
        ["BPCL", "HDFCLIFE"], test_days=test_days, val_days=val_days, window=window
    )
    bars = load_bars(["BPCL", "HDFCLIFE"])
    featured = {symbol: compute_features(frame, "1d") for symbol, frame in bars.items()}
    calendar = featured["BPCL"].index.union(featured["HDFCLIFE"].index)
    test_start, val_start = calendar[-test_days], calendar[-test_days - val_days]
    assert market.summary["split_dates"]["test"] == str(test_start.date())
    for s, symbol in enumerate(market.test.symbols):
        index = featured[symbol].index
        train = market.train.timestamps[market.train.segment(s)]
        test = own_rows(market.test, s)
        pieces = [train, test]
        if val_days:
            val = own_rows(market.val, s)
            pieces.insert(1, val)
            np.testing.assert_array_equal(
                val, index[(index >= val_start) & (index < test_start)].to_numpy())
            assert val[-1] < test[0] and train[-1] < val[0]
        # the test set is the symbol's days among the calendar's last test_days days
        np.testing.assert_array_equal(test, index[index >= test_start].to_numpy())
        joined = np.concatenate(pieces)
        assert len(np.unique(joined)) == len(joined)  # no row in two splits
        np.testing.assert_array_equal(joined, index.to_numpy())  # and none lost
        assert market.summary["rows"]["test"][symbol] == len(test)
    # HDFCLIFE trades 4 days after BPCL's last bar: those are test days for both
    assert market.summary["rows"]["test"]["HDFCLIFE"] == test_days
    assert market.summary["rows"]["test"]["BPCL"] == test_days - 4


def test_every_symbol_splits_on_the_same_dates():
    """BPCL's data end 4 trading days before HDFCLIFE's: no symbol's validation days (which
    pick best.pt) may be another symbol's test days."""
    market = build_market(["BPCL", "HDFCLIFE"], test_days=30, val_days=20, window=8)
    test = [pd.DatetimeIndex(own_rows(market.test, s)) for s in range(2)]
    val = [pd.DatetimeIndex(own_rows(market.val, s)) for s in range(2)]
    assert test[0][-1] < test[1][-1]  # the data end on different dates
    assert test[0][0] == test[1][0]  # the test window starts on one date for both
    assert val[0][0] == val[1][0]
    assert max(v[-1] for v in val) < min(t[0] for t in test)
    assert max(len(t) for t in test) == 30


def test_a_symbol_missing_the_first_test_day_keeps_the_move_after_it():
    """BPCL has no bar on the test split's first date (HDFCLIFE does): its first test decision
    is at its last close before that date, so the move from that close to its next one is in
    the test record, for the agent and for buy-and-hold, as it is for HDFCLIFE."""
    from fastrl.env_config import EnvConfig
    from fastrl.markets.single.backtest import baseline_backtest, run_agent

    bars = load_bars(["BPCL", "HDFCLIFE"])
    first = pd.Timestamp(build_market_from_bars(bars, test_days=30, window=8)
                         .summary["split_dates"]["test"])
    bars["BPCL"] = bars["BPCL"].drop(index=first)
    market = build_market_from_bars(bars, test_days=30, window=8)
    assert market.summary["split_dates"]["test"] == str(first.date())  # HDFCLIFE traded it
    frame = bars["BPCL"]
    decided = frame.index[frame.index < first][-1]
    assert own_rows(market.test, 0)[0] == decided  # the decision bar
    assert own_rows(market.train, 0)[-1] == decided
    config = EnvConfig(window=8, cost="zero", position_levels=(0.0, 1.0))
    traded = frame[frame.index > first]
    ratio = traded["close"].iloc[-1] / traded["open"].iloc[0]  # the first fill to the end
    agent = run_agent(lambda obs: np.ones(len(obs), np.int64), market.test, config)[0]
    hold = baseline_backtest(market.test, 0, config, "buy_and_hold")
    for backtest in (agent, hold):
        np.testing.assert_array_equal(backtest.timestamps[1:], traded.index.to_numpy())
        assert backtest.equity[-1] / backtest.equity[0] == pytest.approx(ratio, rel=1e-4)


def test_a_symbol_without_test_days_is_named():
    bars = load_bars(["BPCL", "HDFCLIFE"])
    bars["BPCL"] = bars["BPCL"].loc[:"2022-09-15"]
    first = compute_features(bars["HDFCLIFE"], "1d").index[-30].date()
    with pytest.raises(ValueError, match=f"symbol BPCL: no bars in the test split .* from "
                       f"{first}.* end on 2022-09-15"):
        build_market_from_bars(bars, test_days=30, window=8)


def test_a_symbol_listed_after_the_validation_start_is_named():
    bars = load_bars(["BPCL", "HDFCLIFE"])
    bars["HDFCLIFE"] = bars["HDFCLIFE"].iloc[-150:]  # listed inside the validation days
    with pytest.raises(ValueError, match="symbol HDFCLIFE: no bars to train on: its features "
                       "start on .* after the validation split's first day"):
        build_market_from_bars(bars, test_days=30, val_days=120, window=8)


def test_context_rows_are_the_rows_just_before_the_split():
    window = 16
    market = build_market(["BPCL", "HDFCLIFE"], test_days=25, val_days=10, window=window)
    assert market.train.meta["context_rows"] == 0
    for split in ("val", "test"):
        block = market.block(split)
        assert block.meta == {**block.meta, "split": split, "context_rows": window - 1}
    for s in range(2):
        train_rows = market.train.segment(s)
        val_rows, test_rows = market.val.segment(s), market.test.segment(s)
        # val context = last window-1 train rows; test context = last window-1 val rows
        for name in ("open", "close", "timestamps"):
            np.testing.assert_array_equal(
                getattr(market.val, name)[val_rows][: window - 1],
                getattr(market.train, name)[train_rows][-(window - 1) :],
            )
            np.testing.assert_array_equal(
                getattr(market.test, name)[test_rows][: window - 1],
                getattr(market.val, name)[val_rows][-(window - 1) :],
            )
        np.testing.assert_array_equal(
            market.test.features[test_rows][: window - 1],
            market.val.features[val_rows][-(window - 1) :],
        )
        # the first decision row (index window-1) is the first row of the split itself
        assert market.test.timestamps[test_rows][window - 1] == own_rows(market.test, s)[0]


def test_5min_test_days_are_calendar_trading_days():
    market = build_market(
        "BPCL", "5min", source=FIXTURES / "intraday_5min", test_days=3, val_days=2, window=10
    )
    test = pd.DatetimeIndex(own_rows(market.test, 0))
    val = pd.DatetimeIndex(own_rows(market.val, 0))
    assert [str(d.date()) for d in test.normalize().unique()] == [
        "2023-11-15",
        "2023-11-16",
        "2023-11-17",
    ]
    assert len(test) == 3 * 75
    # 2023-11-14 was a holiday; the Sunday 2023-11-12 muhurat session (12 bars) is one
    # trading day like any other
    assert [str(d.date()) for d in val.normalize().unique()] == ["2023-11-12", "2023-11-13"]
    assert len(val) == 12 + 75
    train = pd.DatetimeIndex(market.train.timestamps)
    assert train[-1] == pd.Timestamp("2023-11-10 15:25")
    assert val[0] == pd.Timestamp("2023-11-12 18:15")
    assert market.test.freq == "5min" and market.summary["days"]["test"]["BPCL"] == 3


def test_split_bars_positions():
    index = pd.DatetimeIndex(
        [
            "2024-01-01 09:15",
            "2024-01-01 09:20",
            "2024-01-02 09:15",
            "2024-01-03 09:15",
            "2024-01-03 09:20",
        ]
    )
    assert split_bars(index, test_days=1) == (3, 3)
    assert split_bars(index, test_days=1, val_days=1) == (2, 3)
    with pytest.raises(ValueError, match="3 trading days cannot hold"):
        split_bars(index, test_days=2, val_days=1)
    with pytest.raises(ValueError, match="test_days must be a positive integer"):
        split_bars(index, test_days=0)


def test_normaliser_is_fitted_on_train_rows_only():
    bars = load_bars(["BPCL", "HDFCLIFE"])
    market = build_market_from_bars(bars, test_days=30)
    test_start = pd.Timestamp(market.summary["split_dates"]["test"])
    changed = {s: f.copy() for s, f in bars.items()}
    for frame in changed.values():  # wreck the test days: the normaliser must not move
        late = frame.index >= test_start
        frame.loc[late, frame.columns[:4]] *= np.linspace(1, 3, int(late.sum()))[:, None]
    other = build_market_from_bars(changed, test_days=30)
    np.testing.assert_array_equal(market.normaliser.mean, other.normaliser.mean)
    np.testing.assert_array_equal(market.normaliser.std, other.normaliser.std)
    np.testing.assert_array_equal(market.train.features, other.train.features)
    assert not np.array_equal(market.test.features, other.test.features)
    train_rows = pd.concat(
        [compute_features(frame, "1d").loc[lambda f: f.index < test_start]
         for frame in bars.values()], ignore_index=True
    )
    np.testing.assert_allclose(market.normaliser.mean, train_rows.mean().to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(market.normaliser.std, train_rows.std(ddof=0).to_numpy(), rtol=1e-9)


def test_normaliser_state_restores_the_training_features():
    market = build_market(["BPCL", "HDFCLIFE"], test_days=30)
    state = json.loads(json.dumps(market.normaliser.state_dict()))
    again = build_market(["HDFCLIFE"], test_days=60, normaliser_state=state)
    assert again.summary["normaliser"] == "restored"
    np.testing.assert_array_equal(again.normaliser.mean, market.normaliser.mean)
    with pytest.raises(ValueError, match="normaliser_state was fitted on features"):
        build_market("BPCL", "5min", test_days=5, normaliser_state=state)


def test_blocks_carry_prices_timestamps_and_features():
    market = build_market(["BPCL", "HDFCLIFE"], test_days=30, window=32)
    bars = load_bars(["BPCL", "HDFCLIFE"])
    for block in (market.train, market.test):
        assert isinstance(block, MarketBlock) and block.freq == "1d"
        assert block.symbols == ("BPCL", "HDFCLIFE")
        assert block.features.dtype == np.float32 and not block.features.flags.writeable
        assert block.feature_names == market.feature_names
        assert block.high is not None and block.low is not None
        for s, symbol in enumerate(block.symbols):
            rows = block.segment(s)
            expected = bars[symbol].loc[pd.DatetimeIndex(block.timestamps[rows])]
            np.testing.assert_array_equal(block.close[rows], expected["close"].to_numpy())
            np.testing.assert_array_equal(block.open[rows], expected["open"].to_numpy())
    assert market.val is None
    with pytest.raises(ValueError, match="no 'val' split"):
        market.block("val")
    json.dumps(market.summary)  # the summary goes into reports as is


def test_summary_records_repairs_and_ranges():
    market = build_market(["HDFCBANK"], "5min", test_days=5, on_bad_rows="drop")
    repairs = market.summary["repairs"]["HDFCBANK"]
    assert repairs["rows_dropped"] == 1 and repairs["issues"][0]["column"] == "open"
    first, last = market.summary["date_ranges"]["test"]["HDFCBANK"]
    assert first == "2024-06-24T09:15:00" and last == "2024-06-28T15:25:00"
    assert market.summary["rows"]["test"]["HDFCBANK"] == 5 * 75 - 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"test_days": 1, "window": 32}, r"symbol BPCL: the test split would have 1 bar\(s\)"),
        ({"test_days": 1, "window": 1}, r"the test split would have 1 bar\(s\)"),
        ({"test_days": 30, "val_days": 1, "window": 4}, "the val split would have 1"),
        ({"test_days": 230, "window": 32}, "the train split would have"),
        ({"test_days": 300}, "trading days cannot hold"),
        ({"test_days": 0}, "test_days must be a positive integer"),
        ({"val_days": -1}, "val_days must be a non-negative integer"),
        ({"window": 0}, "window must be a positive integer"),
    ],
)
def test_too_short_or_empty_splits_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_market("BPCL", source=FIXTURES / "daily", **kwargs)


def test_too_few_bars_for_the_warm_up_is_named():
    bars = load_bars("BPCL", source=FIXTURES / "daily")
    with pytest.raises(ValueError, match="symbol BPCL: .*too few"):
        build_market_from_bars({"BPCL": bars["BPCL"].iloc[:20]}, test_days=1, window=1)


@pytest.mark.parametrize("portfolio", [False, True])
def test_blocks_equal_the_one_symbol_at_a_time_build_bit_for_bit(monkeypatch, portfolio):
    """build_market_from_bars / build_panel_from_bars featurise every symbol in one pass
    (compute_features_many); their blocks equal those of the per-symbol computation."""
    import dataclasses

    import fastrl.data.panel as panel_module
    import fastrl.data.splits as splits_module
    from fastrl.data.loaders import available

    symbols = available("1d")[:8]
    bars = load_bars(symbols)
    module = panel_module if portfolio else splits_module
    build = (panel_module.build_panel_from_bars if portfolio
             else splits_module.build_market_from_bars)
    fast = build(bars, "1d", test_days=40, val_days=20, window=16)

    def one_at_a_time(frames, freq, **kwargs):
        out = {}
        for symbol, frame in frames.items():
            try:
                out[symbol] = compute_features(frame, freq, **kwargs)
            except ValueError as error:
                out[symbol] = error
        return out

    monkeypatch.setattr(module, "compute_features_many", one_at_a_time)
    slow = build(bars, "1d", test_days=40, val_days=20, window=16)
    assert fast.summary == slow.summary
    for split in ("train", "val", "test"):
        a, b = fast.block(split), slow.block(split)
        for field in dataclasses.fields(a):
            left, right = getattr(a, field.name), getattr(b, field.name)
            if isinstance(left, np.ndarray):
                assert left.dtype == right.dtype and np.array_equal(
                    left.view(np.uint8), right.view(np.uint8)), (split, field.name)
            else:
                assert left == right, (split, field.name)
    if not portfolio:  # the summary's day counts: the dates each split holds
        counts = []
        for symbol in symbols:
            days = pd.DatetimeIndex(fast.test.timestamps[
                fast.test.segment(symbols.index(symbol))][15:]).normalize().unique()
            assert fast.summary["days"]["test"][symbol] == len(days)
            assert days[0] >= pd.Timestamp(fast.summary["split_dates"]["test"])
            counts.append(len(days))
        assert max(counts) == 40
