"""Causal features: no look-ahead, warm-up dropped, values against plain reference loops."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastrl.data import load_bars
from fastrl.features import WARMUP_BARS, FeatureNormaliser, compute_features, feature_names

FIXTURES = Path(__file__).parent / "fixtures"
DAILY_BARS = load_bars("BPCL", source=FIXTURES / "daily")["BPCL"]
INTRADAY_BARS = load_bars("BPCL", "5min", FIXTURES / "intraday_5min")["BPCL"]


def perturb_after(bars: pd.DataFrame, t: int, seed: int) -> pd.DataFrame:
    """Same bars up to row t; every later bar rescaled by a random factor (still valid)."""
    rng = np.random.default_rng(seed)
    changed = bars.copy()
    n_after = len(bars) - t - 1
    scale = np.exp(rng.normal(0, 0.05, n_after))
    for column in ("open", "high", "low", "close"):
        changed.iloc[t + 1 :, changed.columns.get_loc(column)] *= scale
    changed.iloc[t + 1 :, changed.columns.get_loc("volume")] *= rng.uniform(0, 3, n_after)
    return changed


@settings(max_examples=25, deadline=None)
@given(t=st.integers(min_value=0, max_value=len(DAILY_BARS) - 2), seed=st.integers(0, 2**31))
def test_changing_bars_after_t_changes_no_daily_feature_at_or_before_t(t, seed):
    before = compute_features(DAILY_BARS, "1d")
    after = compute_features(perturb_after(DAILY_BARS, t, seed), "1d")
    cutoff = DAILY_BARS.index[t]
    pd.testing.assert_frame_equal(before.loc[:cutoff], after.loc[:cutoff], rtol=0, atol=0)
    if t + 1 < len(DAILY_BARS) and DAILY_BARS.index[t + 1] in before.index:
        later = before.index > cutoff
        assert not np.allclose(before[later].to_numpy(), after[later].to_numpy())


@settings(max_examples=15, deadline=None)
@given(t=st.integers(min_value=0, max_value=len(INTRADAY_BARS) - 2), seed=st.integers(0, 2**31))
def test_changing_bars_after_t_changes_no_intraday_feature_at_or_before_t(t, seed):
    before = compute_features(INTRADAY_BARS, "5min")
    after = compute_features(perturb_after(INTRADAY_BARS, t, seed), "5min")
    cutoff = INTRADAY_BARS.index[t]
    pd.testing.assert_frame_equal(before.loc[:cutoff], after.loc[:cutoff], rtol=0, atol=0)


def test_truncating_the_future_changes_nothing_before():
    full = compute_features(DAILY_BARS, "1d")
    for stop in (WARMUP_BARS + 1, 100, 200):
        part = compute_features(DAILY_BARS.iloc[:stop], "1d")
        pd.testing.assert_frame_equal(part, full.iloc[: len(part)], rtol=0, atol=0)


def test_warm_up_rows_are_dropped_not_filled():
    features = compute_features(DAILY_BARS, "1d")
    assert len(features) == len(DAILY_BARS) - WARMUP_BARS
    assert features.index[0] == DAILY_BARS.index[WARMUP_BARS]
    assert np.isfinite(features.to_numpy()).all()
    with pytest.raises(ValueError, match="too few"):
        compute_features(DAILY_BARS.iloc[:WARMUP_BARS], "1d")


def test_feature_columns_per_freq_and_volume():
    assert list(compute_features(DAILY_BARS, "1d").columns) == feature_names("1d", True)
    no_volume = DAILY_BARS.assign(volume=np.nan)
    assert "volume_z" not in compute_features(no_volume, "1d").columns
    intraday = compute_features(INTRADAY_BARS, "5min")
    assert list(intraday.columns)[-2:] == ["time_of_day", "bars_to_close"]


def wilder_rsi(close: np.ndarray, window: int = 14) -> np.ndarray:
    out = np.full(close.shape, np.nan)
    gain = loss = 0.0
    for t in range(1, len(close)):
        change = close[t] - close[t - 1]
        if t == 1:
            gain, loss = max(change, 0.0), max(-change, 0.0)
        else:
            gain += (max(change, 0.0) - gain) / window
            loss += (max(-change, 0.0) - loss) / window
        if t >= window:
            out[t] = gain / (gain + loss) if gain + loss > 0 else 0.5
    return out


def test_values_match_plain_reference_computations():
    features = compute_features(DAILY_BARS, "1d")
    close = DAILY_BARS["close"].to_numpy()
    rows = np.arange(WARMUP_BARS, len(close))
    np.testing.assert_allclose(features["ret_5"], np.log(close[rows] / close[rows - 5]))
    np.testing.assert_allclose(features["ret_20"], np.log(close[rows] / close[rows - 20]))
    log_ret = np.diff(np.log(close), prepend=np.nan)
    vol = [np.std(log_ret[t - 19 : t + 1], ddof=1) for t in rows]
    np.testing.assert_allclose(features["vol_20"], vol, rtol=1e-9)
    np.testing.assert_allclose(features["rsi_14"], wilder_rsi(close)[rows], rtol=1e-9)
    window = [close[t - 19 : t + 1] for t in rows]
    pctb = [(c[-1] - (c.mean() - 2 * c.std())) / (4 * c.std()) for c in window]
    np.testing.assert_allclose(features["bb_pctb"], pctb, rtol=1e-9)
    volume = np.log1p(DAILY_BARS["volume"].to_numpy())
    z = [(volume[t] - volume[t - 19 : t + 1].mean()) / volume[t - 19 : t + 1].std() for t in rows]
    np.testing.assert_allclose(features["volume_z"], z, rtol=1e-9)


def test_flat_prices_and_zero_volume_stay_finite():
    bars = DAILY_BARS.iloc[:120].copy()
    bars.iloc[60:, :4] = 100.0  # a halted stock: constant price
    bars.iloc[60:, 4] = 0.0  # and no volume
    features = compute_features(bars, "1d")
    assert np.isfinite(features.to_numpy()).all()
    last = features.iloc[-1]
    assert last["bb_pctb"] == 0.5 and last["volume_z"] == 0.0
    assert 0.0 <= last["rsi_14"] <= 1.0  # Wilder averages decay but remember the last moves
    always_flat = bars.assign(open=100.0, high=100.0, low=100.0, close=100.0)
    assert (compute_features(always_flat, "1d")["rsi_14"] == 0.5).all()


def test_intraday_time_features_follow_the_session_schedule():
    features = compute_features(INTRADAY_BARS, "5min")
    day = features.loc["2023-11-08"]
    assert day["bars_to_close"].iloc[-1] == 0.0  # 15:25 bar: the session ends after it
    assert day.loc["2023-11-08 15:20", "bars_to_close"] == 1.0
    assert day.loc["2023-11-08 09:15", "time_of_day"] == 0.0
    assert day.loc["2023-11-08 15:25", "time_of_day"] == pytest.approx(370 / 375)
    muhurat = features.loc["2023-11-12"]  # Sunday evening special session: after hours
    assert len(muhurat) == 12 and (muhurat["bars_to_close"] == 0).all()


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="unique and ascending"):
        compute_features(DAILY_BARS.iloc[::-1], "1d")
    with pytest.raises(ValueError, match="freq"):
        compute_features(DAILY_BARS, "1h")
    with pytest.raises(ValueError, match="lack column"):
        compute_features(DAILY_BARS.drop(columns="high"), "1d")


def test_normaliser_fits_transforms_and_round_trips_through_json():
    features = compute_features(DAILY_BARS, "1d")
    train, rest = features.iloc[:150], features.iloc[150:]
    normaliser = FeatureNormaliser.fit(train)
    scaled = normaliser.transform(train)
    assert scaled.dtype == np.float32
    np.testing.assert_allclose(scaled.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(scaled.std(axis=0), 1, atol=1e-4)
    state = json.loads(json.dumps(normaliser.state_dict()))
    restored = FeatureNormaliser.from_state_dict(state)
    np.testing.assert_array_equal(restored.transform(rest), normaliser.transform(rest))
    # columns are matched by name, not position
    np.testing.assert_array_equal(
        normaliser.transform(rest[list(reversed(rest.columns))]), normaliser.transform(rest)
    )
    extreme = rest.copy()
    extreme.iloc[0, 0] = 1e6
    assert normaliser.transform(extreme)[0, 0] == normaliser.clip


def test_normaliser_handles_constant_features_and_refuses_mismatches():
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [5.0, 5.0, 5.0]})
    normaliser = FeatureNormaliser.fit(frame)
    assert normaliser.std[1] == 1.0 and normaliser.transform(frame)[:, 1].tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match="missing feature column"):
        normaliser.transform(frame[["a"]])
    with pytest.raises(ValueError, match=r"expected \[rows, 2\]"):
        normaliser.transform(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="NaN or inf"):
        FeatureNormaliser.fit(frame.assign(a=[1.0, math.nan, 2.0]))
    with pytest.raises(ValueError, match="lacks key"):
        FeatureNormaliser.from_state_dict({"mean": [0.0]})


# ------------------------------------------------------------- one pass over many symbols


def _bitwise_equal(one: pd.DataFrame, many: pd.DataFrame) -> bool:
    return (one.index.equals(many.index) and list(one.columns) == list(many.columns)
            and np.array_equal(one.to_numpy().view(np.int64), many.to_numpy().view(np.int64)))


def _assert_many_equals_one(bars: dict, freq: str, **kwargs) -> None:
    from fastrl.features import compute_features_many

    many = compute_features_many(bars, freq, **kwargs)
    assert list(many) == list(bars)
    for symbol, frame in bars.items():
        try:
            one = compute_features(frame, freq, **kwargs)
        except ValueError as error:
            assert isinstance(many[symbol], ValueError), symbol
            assert str(many[symbol]) == str(error), symbol
            continue
        assert isinstance(many[symbol], pd.DataFrame), (symbol, many[symbol])
        assert _bitwise_equal(one, many[symbol]), symbol


def test_many_symbols_in_one_pass_equal_each_symbol_bit_for_bit_bundled_daily():
    from fastrl.data.loaders import available

    bars = load_bars(available("1d"), "1d")  # the 30 bundled symbols, lengths differ
    assert len({len(frame) for frame in bars.values()}) > 1
    _assert_many_equals_one(bars, "1d", with_volume=True)
    _assert_many_equals_one(bars, "1d", with_volume=False)


def test_many_symbols_in_one_pass_equal_each_symbol_bit_for_bit_bundled_5min():
    from fastrl.data.loaders import available

    bars = load_bars(available("5min"), "5min", on_bad_rows="drop")
    _assert_many_equals_one(bars, "5min", with_volume=True)


def test_many_symbols_in_one_pass_equal_each_symbol_on_edge_cases_and_errors():
    flat = DAILY_BARS.iloc[:120].copy()
    flat[["open", "high", "low", "close"]] = 100.0  # rsi and %b on their flat branches
    flat["volume"] = 5.0  # volume_z on its zero-width branch
    planted = DAILY_BARS.copy()
    planted["signal"] = np.sin(np.arange(len(planted)))
    float32 = DAILY_BARS.astype(np.float32)  # not the loader's dtype: computed alone
    bars = {"A": DAILY_BARS, "SHORT": DAILY_BARS.iloc[:WARMUP_BARS],  # too few bars
            "FLAT": flat, "REVERSED": DAILY_BARS.iloc[::-1], "F32": float32,
            "NOHIGH": DAILY_BARS.drop(columns="high"), "TAIL": DAILY_BARS.iloc[-100:]}
    _assert_many_equals_one(bars, "1d", with_volume=True)
    bad = DAILY_BARS.copy()
    bad.iloc[100, bad.columns.get_loc("volume")] = np.nan  # with_volume=True refuses it
    _assert_many_equals_one({"A": DAILY_BARS, "BAD": bad}, "1d", with_volume=True)
    _assert_many_equals_one({"A": planted, "B": planted.iloc[:150]}, "1d", with_volume=True,
                            extra_columns=("signal",))
    infinite = DAILY_BARS.copy()
    infinite.iloc[200, infinite.columns.get_loc("close")] = np.inf  # a non-finite feature
    _assert_many_equals_one({"A": DAILY_BARS, "INF": infinite}, "1d", with_volume=True)
