"""The long feature sets (momentum, market, xs_rank): causal for one symbol and across the
universe, the definitions against plain loops, the warm-up, the normaliser and the config."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastrl.config import ConfigError, apply_overrides, parse_set_options, preset_config
from fastrl.data import load_bars
from fastrl.data.panel import build_panel_from_bars
from fastrl.data.splits import build_market_from_bars
from fastrl.features import (
    WARMUP_BARS,
    FeatureNormaliser,
    compute_features,
    compute_features_many,
    feature_names,
)
from fastrl.features_long import (
    LONG_HORIZONS,
    LONG_WARMUP_BARS,
    MACD_PAIRS,
    VOL_SPAN,
    ewm_length,
    long_feature_names,
    warmup_features,
)

ALL_SETS = ("base", "momentum", "market", "xs_rank")
LONG = ("momentum", "market", "xs_rank")
BUNDLED = load_bars(["BPCL", "INFY", "HDFCLIFE"], "1d")
# three symbols of different lengths: HDFCLIFE lists in Nov 2017, inside this stretch
START = pd.Timestamp("2016-01-01")
UNIVERSE = {s: frame[frame.index >= START] for s, frame in BUNDLED.items()}
ONE = UNIVERSE["BPCL"].iloc[:LONG_WARMUP_BARS + 110]
VOL_ALPHA = 2 / (VOL_SPAN + 1)


def truncated_ewm(series: pd.Series, alpha: float, std: bool = False) -> pd.Series:
    """The definition: pandas' EWM of each row's last ``ewm_length(alpha)`` values (NaN
    until that many exist)."""
    def last(window: np.ndarray) -> float:
        ewm = pd.Series(window).ewm(alpha=alpha)
        return float((ewm.std() if std else ewm.mean()).iloc[-1])

    return series.rolling(ewm_length(alpha)).apply(last, raw=True)


def perturb_after(frame: pd.DataFrame, cutoff: pd.Timestamp, seed: int) -> pd.DataFrame:
    """Same bars up to ``cutoff``; every later bar rescaled by a random factor."""
    rng = np.random.default_rng(seed)
    changed = frame.copy()
    later = changed.index > cutoff
    scale = np.exp(rng.normal(0, 0.05, int(later.sum())))
    for column in ("open", "high", "low", "close"):
        changed.loc[later, column] *= scale
    changed.loc[later, "volume"] *= rng.uniform(0, 3, int(later.sum()))
    return changed


@settings(max_examples=10, deadline=None)
@given(t=st.integers(min_value=0, max_value=len(ONE) - 2), seed=st.integers(0, 2**31))
def test_changing_bars_after_t_changes_no_long_feature_of_one_symbol_at_or_before_t(t, seed):
    before = compute_features(ONE, "1d", feature_sets=ALL_SETS)
    cutoff = ONE.index[t]
    after = compute_features(perturb_after(ONE, cutoff, seed), "1d", feature_sets=ALL_SETS)
    pd.testing.assert_frame_equal(before.loc[:cutoff], after.loc[:cutoff], rtol=0, atol=0)
    later = before.index > cutoff
    if later.any() and t >= LONG_WARMUP_BARS:  # the test can fail: later rows do move
        assert not np.allclose(before[later].to_numpy(), after[later].to_numpy(),
                               equal_nan=True)


@settings(max_examples=8, deadline=None)
@given(day=st.integers(min_value=0, max_value=1000), seed=st.integers(0, 2**31),
       only=st.sampled_from([None, "BPCL", "INFY", "HDFCLIFE"]))
def test_changing_any_symbols_bars_after_t_changes_no_feature_at_or_before_t(day, seed, only):
    """The market features read every symbol: changing the later bars of all of them, or of
    one other symbol, changes no symbol's row <= t."""
    calendar = pd.DatetimeIndex(sorted(set().union(*(f.index for f in UNIVERSE.values()))))
    cutoff = calendar[min(day, len(calendar) - 2)]
    changed = {s: perturb_after(f, cutoff, seed) if only in (None, s) else f
               for s, f in UNIVERSE.items()}
    before = compute_features_many(UNIVERSE, "1d", with_volume=True, feature_sets=ALL_SETS)
    after = compute_features_many(changed, "1d", with_volume=True, feature_sets=ALL_SETS)
    for symbol in UNIVERSE:
        pd.testing.assert_frame_equal(before[symbol].loc[:cutoff], after[symbol].loc[:cutoff],
                                      rtol=0, atol=0)


def test_other_symbols_move_the_market_features_and_dropping_the_future_changes_nothing():
    """A later change to INFY alone moves BPCL's market features (they do read it); bars cut
    at a date (a symbol listed later is then absent) give the same rows up to it (the live
    path's prefix)."""
    full = compute_features_many(UNIVERSE, "1d", with_volume=True, feature_sets=ALL_SETS)
    cutoff = pd.Timestamp("2019-06-28")
    changed = dict(UNIVERSE, INFY=perturb_after(UNIVERSE["INFY"], cutoff, 1))
    moved = compute_features_many(changed, "1d", with_volume=True, feature_sets=ALL_SETS)
    later = full["BPCL"].index > cutoff
    for name in ("mkt_ret_21", "mkt_vol", "rel_ret_63", "rank_mom_21"):
        assert not np.allclose(full["BPCL"].loc[later, name], moved["BPCL"].loc[later, name]), name
    assert np.array_equal(full["BPCL"].loc[later, "mom_21"], moved["BPCL"].loc[later, "mom_21"])
    for stop in ("2017-06-30", "2017-12-29", "2019-06-28"):  # HDFCLIFE lists 2017-11-17
        end = pd.Timestamp(stop)
        cut = {s: f.loc[:end] for s, f in UNIVERSE.items() if len(f.loc[:end])}
        part = compute_features_many(cut, "1d", with_volume=True, feature_sets=ALL_SETS)
        for symbol, frame in part.items():
            if len(cut[symbol]) <= WARMUP_BARS:  # listed, too young for features of its own
                assert isinstance(frame, ValueError)
                continue
            pd.testing.assert_frame_equal(frame, full[symbol].loc[:end], rtol=0, atol=0)


@pytest.mark.parametrize("stop", ["2020-12-31", "2022-06-30"])
def test_features_from_the_minimum_history_equal_those_from_the_whole_history(stop):
    """Bounded look-back: with only ``LONG_WARMUP_BARS`` bars of every symbol before the
    last one (the live path's minimum feed, a --train-window window's warm-up), the last
    row's long features equal, bit for bit, those from the whole history since 2005; with
    one bar fewer the slowest one is not defined yet (never a different value)."""
    whole = {s: f.loc[:stop] for s, f in BUNDLED.items()}
    assert len(whole["BPCL"]) > 3 * LONG_WARMUP_BARS  # HDFCLIFE: from Nov 2017 only
    assert min(len(f) for f in whole.values()) > LONG_WARMUP_BARS + 1
    full = compute_features_many(whole, "1d", with_volume=True, feature_sets=ALL_SETS)
    names = long_feature_names(LONG)
    for rows, defined in ((LONG_WARMUP_BARS + 1, True), (LONG_WARMUP_BARS, False)):
        short = {s: f.iloc[-rows:] for s, f in whole.items()}
        part = compute_features_many(short, "1d", with_volume=True, feature_sets=ALL_SETS)
        for symbol in whole:
            last, expected = part[symbol].iloc[-1][names], full[symbol].iloc[-1][names]
            assert last.name == expected.name
            if defined:
                assert np.isfinite(expected.to_numpy()).all()
                assert np.array_equal(last.to_numpy(), expected.to_numpy()), symbol
            else:
                assert np.isnan(last["macd_32_96"])
                same = last.notna()
                assert np.array_equal(last[same].to_numpy(), expected[same].to_numpy())


# ------------------------------------------------------------------------ definitions


def test_momentum_features_follow_lim_et_al():
    close = ONE["close"]
    out = compute_features(ONE, "1d", feature_sets=("momentum",))
    sigma = truncated_ewm(close.pct_change(), VOL_ALPHA, std=True)
    for h in LONG_HORIZONS:
        expected = (close / close.shift(h) - 1) / (sigma * math.sqrt(h))
        np.testing.assert_allclose(out[f"mom_{h}"], expected.loc[out.index], rtol=1e-9)
    for fast, slow in MACD_PAIRS:  # Lim et al.'s half-life form of the EWMs
        means = []
        for span in (fast, slow):
            half = math.log(0.5) / math.log(1 - 1 / span)
            assert math.isclose(0.5 ** (1 / half), 1 - 1 / span)  # alpha = 1 / span
            means.append(truncated_ewm(close, 1 / span))
        q = (means[0] - means[1]) / close.rolling(63).std()
        expected = (q / q.rolling(252).std()).loc[out.index]
        np.testing.assert_allclose(out[f"macd_{fast}_{slow}"], expected, rtol=1e-9)
    assert [ewm_length(1 / s) for pair in MACD_PAIRS for s in pair] == [
        35, 109, 72, 219, 146, 440]  # the truncation the module docstring states
    assert ewm_length(VOL_ALPHA) == 139
    first = out["macd_32_96"].first_valid_index()
    assert ONE.index.get_loc(first) == LONG_WARMUP_BARS == 440 - 1 + 252 - 1


def test_market_features_against_a_plain_loop_with_a_late_listing():
    bars = {s: UNIVERSE[s].loc[:"2019-12-31"] for s in ("BPCL", "HDFCLIFE")}
    out = compute_features_many(bars, "1d", with_volume=True, feature_sets=("market",))
    calendar = sorted(set(bars["BPCL"].index) | set(bars["HDFCLIFE"].index))
    closes = {s: f["close"] for s, f in bars.items()}
    level, index = 1.0, {}
    means = []
    for day in calendar:  # the mean 1-bar return of the symbols with a bar and one before
        moves = []
        for close in closes.values():
            k = close.index.searchsorted(day)
            if k < len(close) and close.index[k] == day and k > 0:
                moves.append(close.iloc[k] / close.iloc[k - 1] - 1)
        if moves:
            means.append(sum(moves) / len(moves))
        level *= 1 + (sum(moves) / len(moves) if moves else 0.0)
        index[day] = level
    listed = bars["HDFCLIFE"].index[0]
    before = [d for d in calendar if d <= listed]
    bpcl = closes["BPCL"]  # before HDFCLIFE lists, the universe is BPCL alone
    np.testing.assert_allclose([index[d] / index[before[1]] for d in before[1:]],
                               (bpcl.loc[before[1]:listed] / bpcl.loc[before[1]]).to_numpy(),
                               rtol=1e-12)
    index = pd.Series(index)
    vol = truncated_ewm(pd.Series(means, index=calendar[1:]), VOL_ALPHA, std=True)
    for symbol, close in closes.items():
        frame = out[symbol]
        own_vol = truncated_ewm(close.pct_change(), VOL_ALPHA, std=True)
        at_own = index.loc[close.index]
        for h in LONG_HORIZONS:
            market = (index / index.shift(h) - 1) / (vol * math.sqrt(h))
            np.testing.assert_allclose(frame[f"mkt_ret_{h}"], market.loc[frame.index],
                                       rtol=1e-9)
            active = ((close / close.shift(h) - 1) - (at_own / at_own.shift(h) - 1).to_numpy())
            np.testing.assert_allclose(frame[f"rel_ret_{h}"],
                                       (active / (own_vol * math.sqrt(h))).loc[frame.index],
                                       rtol=1e-9, atol=1e-12)  # 0 but rounding: one symbol
        np.testing.assert_allclose(frame["mkt_vol"], vol.loc[frame.index], rtol=1e-9)


def test_cross_sectional_ranks_lie_in_0_1_among_the_symbols_trading_that_row():
    out = compute_features_many(UNIVERSE, "1d", with_volume=True,
                                feature_sets=("momentum", "xs_rank"))
    day = pd.Timestamp("2020-06-30")
    values = {s: out[s].loc[day, "mom_63"] for s in UNIVERSE}
    order = sorted(values, key=values.get)
    assert [out[s].loc[day, "rank_mom_63"] for s in order] == [0.0, 0.5, 1.0]
    day = pd.Timestamp("2017-06-30")  # HDFCLIFE not listed: ranked among two
    assert sorted(out[s].loc[day, "rank_mom_21"] for s in ("BPCL", "INFY")) == [0.0, 1.0]
    alone = compute_features(ONE, "1d", feature_sets=("momentum", "xs_rank"))
    defined = alone["rank_mom_21"].dropna()
    assert len(defined) and (defined == 0.5).all()
    assert alone["rank_mom_21"].isna().sum() == alone["mom_21"].isna().sum()


# ---------------------------------------------------------------- warm-up and normaliser


def test_the_rows_kept_are_the_base_sets_and_the_base_columns_are_unchanged():
    base = compute_features(ONE, "1d")
    every = compute_features(ONE, "1d", feature_sets=ALL_SETS)
    assert every.index.equals(base.index)
    assert list(every.columns) == feature_names("1d", True, (), ALL_SETS)
    assert list(every.columns[: base.shape[1]]) == list(base.columns)
    assert np.array_equal(every[base.columns].to_numpy(), base.to_numpy())
    long_only = compute_features(ONE, "1d", feature_sets=("momentum",))
    assert long_only.index.equals(base.index) and "ret_1" not in long_only
    # NaN only before a feature is defined, never after
    for name in long_feature_names(LONG):
        column = every[name].to_numpy()
        first = int(np.argmax(~np.isnan(column)))
        assert not np.isnan(column[first:]).any(), name


def test_normaliser_fits_long_features_on_defined_rows_and_maps_warm_up_to_zero():
    every = compute_features(ONE, "1d", feature_sets=ALL_SETS)
    warm = warmup_features(every.columns)
    assert warm == long_feature_names(LONG)
    with pytest.raises(ValueError, match="NaN or inf"):
        FeatureNormaliser.fit(every)  # the base columns' rule: no NaN
    normaliser = FeatureNormaliser.fit(every, warmup=warm)
    col = list(every.columns).index("mom_252")
    defined = every["mom_252"].dropna()
    assert math.isclose(normaliser.mean[col], defined.mean(), rel_tol=1e-12)
    assert math.isclose(normaliser.std[col], defined.std(ddof=0), rel_tol=1e-12)
    scaled = normaliser.transform(every)
    assert np.isfinite(scaled).all()
    assert (scaled[every["mom_252"].isna().to_numpy(), col] == 0).all()
    state = json.loads(json.dumps(normaliser.state_dict()))
    assert state["warmup"] == warm
    assert np.array_equal(FeatureNormaliser.from_state_dict(state).transform(every), scaled)
    assert "warmup" not in FeatureNormaliser.fit(compute_features(ONE, "1d")).state_dict()
    with pytest.raises(ValueError, match="'macd_8_24' is defined on 0 training row"):
        FeatureNormaliser.fit(every.iloc[:300], warmup=warm)


def test_markets_keep_their_splits_and_fill_the_warm_up_with_zero():
    bars = {s: f.loc[:"2020-12-31"] for s, f in UNIVERSE.items()}
    base = build_market_from_bars(bars, test_days=40, val_days=20, window=8)
    every = build_market_from_bars(bars, test_days=40, val_days=20, window=8,
                                   feature_sets=ALL_SETS)
    assert every.summary["date_ranges"] == base.summary["date_ranges"]
    width = base.train.features.shape[1]
    for split in ("train", "val", "test"):
        a, b = base.block(split), every.block(split)
        assert np.array_equal(a.timestamps, b.timestamps)
        assert np.array_equal(a.features, b.features[:, :width])  # base columns unchanged
        assert np.isfinite(b.features).all()
    first = every.train.features[every.train.segment(0)][0, width:]
    assert (first == 0).all()  # BPCL's first training row: every long feature in warm-up
    panel = build_panel_from_bars(bars, test_days=40, val_days=20, window=8,
                                  feature_sets=ALL_SETS)
    plain = build_panel_from_bars(bars, test_days=40, val_days=20, window=8)
    assert np.array_equal(panel.test.timestamps, plain.test.timestamps)
    assert np.array_equal(panel.test.features[..., :width], plain.test.features)
    assert np.isfinite(panel.test.features).all()


# ----------------------------------------------------------------------------- config


@pytest.mark.parametrize(("value", "words"), [
    ("[base,foo]", "must name known feature sets (base, momentum, market, xs_rank); "
                   "unknown: 'foo'"),
    ("[]", "must name at least one feature set"),
    ("base,base", "must not name a feature set twice"),
    ("base,xs_rank", "must add momentum or market with xs_rank"),
])
def test_bad_feature_sets_are_a_config_error_naming_the_key(value, words):
    with pytest.raises(ConfigError) as info:
        apply_overrides(preset_config("fast"), parse_set_options([f"data.features={value}"]))
    assert str(info.value).startswith(f"config key 'data.features' {words}")


def test_feature_sets_default_to_base_and_parse_from_set():
    assert preset_config("fast").data.features == ("base",)
    config = apply_overrides(preset_config("fast"),
                             parse_set_options(["data.features=[base,momentum,market]"]))
    assert config.data.features == ("base", "momentum", "market")


def test_bad_feature_sets_in_the_library_name_the_argument():
    with pytest.raises(ValueError, match="^feature_sets must name known feature sets"):
        compute_features(ONE, "1d", feature_sets=("base", "x"))
    with pytest.raises(ValueError, match="^feature_sets must add momentum or market"):
        build_market_from_bars({"BPCL": ONE}, feature_sets=("xs_rank",))
    with pytest.raises(ValueError, match="freq"):
        feature_names("1h", True, (), ("momentum",))
    early_nan = ONE.copy()
    early_nan.iloc[0, early_nan.columns.get_loc("close")] = np.nan  # a warm-up row only
    assert np.isfinite(compute_features(early_nan, "1d").to_numpy()).all()
    with pytest.raises(ValueError, match="finite positive closes"):
        compute_features(early_nan, "1d", feature_sets=ALL_SETS)
