"""Synthetic markets: seeded, well-formed, and a planted signal that matches its specification."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from fastrl.data import build_synthetic_market
from fastrl.data.synthetic import (
    BARS_PER_YEAR,
    gbm,
    planted_oracle_sharpe,
    planted_signal,
    regime_switching,
    trading_timestamps,
)
from fastrl.data.validate import validate_bars


@pytest.mark.parametrize("generator", [gbm, regime_switching])
def test_generators_are_seeded_and_well_formed(generator):
    first = generator(3, 500, seed=7)
    again = generator(3, 500, seed=7)
    other = generator(3, 500, seed=8)
    assert list(first) == ["SYN000", "SYN001", "SYN002"]
    for symbol, frame in first.items():
        pd.testing.assert_frame_equal(frame, again[symbol])
        assert not frame["close"].equals(other[symbol]["close"])
        assert len(frame) == 500
        # every generated bar passes the loader's validation unchanged
        clean = validate_bars(frame.reset_index(), file_label=symbol).bars
        pd.testing.assert_frame_equal(clean, frame[clean.columns], check_freq=False)
    assert not first["SYN000"]["close"].equals(first["SYN001"]["close"])


def test_gbm_matches_its_drift_and_volatility():
    bars = gbm(20, 5000, mu=0.1, sigma=0.3, seed=1)
    returns = np.concatenate([np.diff(np.log(f["close"].to_numpy())) for f in bars.values()])
    sigma_bar = 0.3 / math.sqrt(252)
    assert returns.std() == pytest.approx(sigma_bar, rel=0.01)
    expected_mean = 0.1 / 252 - 0.5 * sigma_bar**2
    assert abs(returns.mean() - expected_mean) < 4 * sigma_bar / math.sqrt(returns.size)


def test_regime_switching_has_distinct_regimes():
    bars = regime_switching(1, 20000, regimes=((0.0, 0.1), (0.0, 0.5)), stay_probability=0.98)
    frame = bars["SYN000"]
    returns = np.log(frame["close"]).diff().iloc[1:]
    regime = frame["regime"].iloc[1:]
    calm, wild = returns[regime == 0].std(), returns[regime == 1].std()
    assert calm == pytest.approx(0.1 / math.sqrt(252), rel=0.05)
    assert wild == pytest.approx(0.5 / math.sqrt(252), rel=0.05)
    switches = (regime.diff().abs() > 0).mean()
    assert switches == pytest.approx(0.02, abs=0.005)


def test_5min_timestamps_are_nse_sessions():
    stamps = trading_timestamps(160, "5min", start="2024-01-05")  # a Friday
    assert stamps[0] == pd.Timestamp("2024-01-05 09:15") and stamps[74] == pd.Timestamp(
        "2024-01-05 15:25"
    )
    assert stamps[75] == pd.Timestamp("2024-01-08 09:15")  # skips the weekend
    assert len(stamps) == 160 and stamps.is_monotonic_increasing


@pytest.mark.parametrize(("rho", "persistence"), [(0.05, 0.0), (0.2, 0.0), (0.2, 0.9)])
def test_planted_signal_predictability_matches_its_specification(rho, persistence):
    bars, oracle = planted_signal(4, 50_000, rho, seed=3, persistence=persistence)
    assert oracle == planted_oracle_sharpe(rho, "1d")
    signal = np.concatenate([f["signal"].to_numpy()[:-1] for f in bars.values()])
    returns = np.concatenate([np.diff(np.log(f["close"].to_numpy())) for f in bars.values()])
    n = signal.size
    # next-bar correlation is the specified strength (4 standard errors)
    assert np.corrcoef(signal, returns)[0, 1] == pytest.approx(rho, abs=4 / math.sqrt(n))
    # the signal is N(0, 1) with the requested persistence
    assert signal.std() == pytest.approx(1.0, abs=0.02)
    lag1 = np.corrcoef(signal[:-1], signal[1:])[0, 1]
    assert lag1 == pytest.approx(persistence, abs=0.02)
    # the sign oracle, simulated on the bars, earns the analytic Sharpe (4 standard errors;
    # persistent signals make strategy returns autocorrelated, widening the error)
    strategy = np.sign(signal) * returns
    measured = strategy.mean() / strategy.std() * math.sqrt(BARS_PER_YEAR["1d"])
    inflation = math.sqrt((1 + persistence) / (1 - persistence))
    assert measured == pytest.approx(oracle, abs=4 * inflation * math.sqrt(252 / n) + 0.02)
    # each bar opens at the previous close: a next-open fill earns the whole predicted move
    for frame in bars.values():
        np.testing.assert_allclose(frame["open"].to_numpy()[1:], frame["close"].to_numpy()[:-1])


def test_oracle_sharpe_formula():
    assert planted_oracle_sharpe(0.0) == 0.0
    rho = 0.1
    per_bar = rho * math.sqrt(2 / math.pi) / math.sqrt(1 - 2 * rho**2 / math.pi)
    assert planted_oracle_sharpe(rho, "1d") == pytest.approx(per_bar * math.sqrt(252))
    assert planted_oracle_sharpe(rho, "5min") == pytest.approx(per_bar * math.sqrt(252 * 75))


def test_no_signal_means_no_predictability():
    bars, oracle = planted_signal(1, 50_000, 0.0, seed=5)
    frame = bars["SYN000"]
    corr = np.corrcoef(frame["signal"].to_numpy()[:-1], np.diff(np.log(frame["close"])))[0, 1]
    assert oracle == 0.0 and abs(corr) < 4 / math.sqrt(50_000)


def test_bad_parameters_are_named():
    with pytest.raises(ValueError, match="signal_strength must be in"):
        planted_signal(1, 100, 1.0)
    with pytest.raises(ValueError, match="persistence must be in"):
        planted_signal(1, 100, 0.1, persistence=1.0)
    with pytest.raises(ValueError, match="n_symbols must be a positive integer"):
        gbm(0, 100)
    with pytest.raises(ValueError, match="n_bars must be an integer"):
        gbm(1, 1)
    with pytest.raises(ValueError, match="kind must be one of"):
        build_synthetic_market("random_walk")


def test_synthetic_market_goes_through_the_feature_and_split_path():
    market = build_synthetic_market(
        "planted_signal", 3, 1500, test_days=100, val_days=50, window=16, signal_strength=0.3
    )
    assert market.feature_names[-1] == "signal"
    assert market.summary["oracle_sharpe"] == pytest.approx(planted_oracle_sharpe(0.3))
    assert market.train.symbols == ("SYN000", "SYN001", "SYN002")
    assert market.summary["rows"]["test"] == {"SYN000": 100, "SYN001": 100, "SYN002": 100}
    assert market.train.meta["synthetic"]["kind"] == "planted_signal"
    # the normalised signal still predicts the next bar's return inside the block
    block = market.train
    column = block.feature_names.index("signal")
    for s in range(block.num_segments):
        rows = block.segment(s)
        signal = block.features[rows, column][:-1].astype(np.float64)
        nxt = np.diff(np.log(block.close[rows]))
        assert np.corrcoef(signal, nxt)[0, 1] == pytest.approx(0.3, abs=0.1)


def test_intraday_synthetic_market():
    market = build_synthetic_market("gbm", 2, 75 * 40, test_days=5, val_days=5, freq="5min")
    assert market.test.freq == "5min"
    assert market.summary["rows"]["test"] == {"SYN000": 375, "SYN001": 375}
    assert "bars_to_close" in market.feature_names
