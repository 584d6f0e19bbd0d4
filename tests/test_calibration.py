"""bench/calibration.py's pieces: the block-bootstrap null bars and the rate summaries."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from bench_modules import load_bench
from fastrl.data import build_synthetic_market, load_bars
from fastrl.data.synthetic import block_bootstrap, bootstrap_bars
from fastrl.data.validate import validate_bars


@pytest.fixture(scope="module")
def calibration():
    return load_bench("calibration")


@pytest.fixture(scope="module")
def null_market():
    return block_bootstrap(seed=5)


def _log_returns(frame: pd.DataFrame) -> np.ndarray:
    return np.diff(np.log(frame["close"].to_numpy()))


def test_null_bars_are_valid(null_market):
    real = load_bars(["BPCL", "HDFCLIFE"])
    assert list(null_market) == ["BPCL", "HDFCLIFE"]
    for symbol, frame in null_market.items():
        values = frame[["open", "high", "low", "close", "volume"]].to_numpy()
        assert np.all(np.isfinite(values))
        prices = frame[["open", "high", "low", "close"]]
        assert (prices > 0).all().all()
        assert (frame["high"] >= prices.max(axis=1)).all()
        assert (frame["low"] <= prices.min(axis=1)).all()
        assert (frame["volume"] >= 0).all()
        # the real calendar, less its first day (whose return has no previous close)
        assert frame.index.equals(pd.DatetimeIndex(real[symbol].index[1:], name="timestamp"))
        # the loader's strict validation takes them unchanged
        clean = validate_bars(frame.reset_index(), file_label=symbol).bars
        pd.testing.assert_frame_equal(clean, frame[clean.columns], check_freq=False)
        assert frame.attrs["block_length"] >= 1.0
    # whole real days: every null day's shape is one of the real days'
    bpcl = real["BPCL"]
    real_days = np.round(bpcl[["open", "high", "low", "close"]].to_numpy()[1:]
                         / bpcl["close"].to_numpy()[:-1, None], 9)
    null = null_market["BPCL"]
    previous = np.concatenate([[bpcl["close"].iloc[0]], null["close"].to_numpy()[:-1]])
    null_days = np.round(null[["open", "close"]].to_numpy() / previous[:, None], 9)
    known = {tuple(row) for row in real_days[:, [0, 3]]}
    assert all(tuple(row) in known for row in null_days[:200])


def test_null_bars_keep_the_return_distribution():
    real = load_bars("BPCL")["BPCL"]
    frame, block = bootstrap_bars(real, seed=1, n_bars=40_000)
    assert len(frame) == 40_000 and block > 1.0
    r_real, r_null = _log_returns(real), _log_returns(frame)
    assert np.std(r_null) == pytest.approx(np.std(r_real), rel=0.1)
    assert np.mean(r_null) == pytest.approx(np.mean(r_real), abs=3 * np.std(r_real) / 200)
    # fat tails survive: the 1% and 99% quantiles are the real ones, roughly
    for q in (0.01, 0.99):
        assert np.quantile(r_null, q) == pytest.approx(np.quantile(r_real, q), rel=0.15)
    # volatility clustering survives the blocks (squared returns stay autocorrelated)
    squared = (r_null - r_null.mean()) ** 2
    assert np.corrcoef(squared[:-1], squared[1:])[0, 1] > 0.05


def test_null_bars_are_seeded(null_market):
    again = block_bootstrap(seed=5)
    other = block_bootstrap(seed=6)
    for symbol, frame in null_market.items():
        pd.testing.assert_frame_equal(frame, again[symbol])
        assert not np.allclose(frame["close"].to_numpy(), other[symbol]["close"].to_numpy())
    # symbols draw from their own streams: one symbol alone gets the same bars
    alone = block_bootstrap(symbols=["BPCL"], seed=5)
    pd.testing.assert_frame_equal(alone["BPCL"], null_market["BPCL"])


def test_block_bootstrap_market_goes_through_the_feature_and_split_path():
    market = build_synthetic_market("block_bootstrap", 2, None, test_days=30, val_days=120,
                                    seed=2)
    assert market.train.symbols == ("BPCL", "HDFCLIFE")
    # on the real calendars: the last 30 days of their union hold 26 of BPCL's
    assert market.summary["rows"]["test"] == {"BPCL": 26, "HDFCLIFE": 30}
    with pytest.raises(ValueError, match="freq must be '1d'"):
        block_bootstrap(freq="5min")
    with pytest.raises(ValueError, match="n_symbols=3 but 1 symbols"):
        block_bootstrap(3, symbols=["BPCL"])


def test_rate_summary_matches_clopper_pearson(calibration):
    flags = [True, True] + [False] * 18
    summary = calibration.rate_summary(flags, nominal=0.1)
    assert summary["count"] == 2 and summary["n"] == 20
    assert summary["rate"] == pytest.approx(0.10)
    # Clopper-Pearson from the beta distribution, two-sided 90%
    low, high = stats.beta.ppf(0.05, 2, 19), stats.beta.ppf(0.95, 3, 18)
    assert summary["ci"] == pytest.approx([low, high])
    assert summary["at_or_below_nominal"] and summary["target_met"]
    # 6 of 20: the interval's lower bound (~0.14) clears the nominal 10%
    bad = calibration.rate_summary([True] * 6 + [False] * 14, nominal=0.1)
    assert bad["ci"][0] > 0.1 and not bad["target_met"]
    # edges: none and all
    assert calibration.rate_summary([False] * 5)["ci"][0] == 0.0
    assert calibration.rate_summary([True] * 5)["ci"][1] == 1.0
    empty = calibration.rate_summary([], nominal=0.1)
    assert empty["rate"] is None and empty["ci"] is None and empty["target_met"] is None


def test_claims_edge_follows_the_verdict_rule(calibration):
    from fastrl import stats as fstats

    assert calibration.LEVEL == fstats.DEFAULT_LEVEL
    # the boundary as the bootstrap computes it: p = 1 - 0.9 (1,800 of 2,000 resamples)
    assert calibration.claims_edge(1.0 - 0.9) and calibration.claims_edge(0.03)
    assert not calibration.claims_edge(0.1001)
    assert not calibration.claims_edge(float("nan")) and not calibration.claims_edge(None)
    for p in (0.03, 1.0 - 0.9, 0.1, 0.5):
        comparison = fstats.AgentVsBenchmark(1 - p, p, 1.0, 0.5, 30, "1d", 0.001, 0.252,
                                             0.0005, 2.0, 29, 30, 3, "iid")
        sentence = fstats.verdict(comparison)
        assert calibration.claims_edge(p) == (not sentence.startswith("no evidence"))


def test_summary_and_markdown_from_records(calibration, tmp_path):
    plan = {"level": 0.9, "strengths": [0.2], "symbols": ["BPCL", "HDFCLIFE"],
            "oracle_markets": 3}
    records = {}
    for i in range(4):
        records[f"null/{i}"] = {"key": f"null/{i}", "kind": "null", "data_seed": i,
                                "p_value": 0.05 if i == 0 else 0.6, "claims_edge": i == 0,
                                "sharpe_agent": 0.1, "sharpe_buy_and_hold": 0.3,
                                "mean_position": 0.9, "verdict_agrees": True}
    records["planted/0.2/0"] = {"key": "planted/0.2/0", "kind": "planted", "strength": 0.2,
                                "data_seed": 0, "p_value": 0.02, "claims_edge": True,
                                "sharpe_agent": 2.0, "sharpe_buy_and_hold": 0.0}
    records["study/0"] = {"key": "study/0", "kind": "study", "data_seed": 1000,
                          "tuning_helped": False, "tuning_helped_any": True,
                          "dsr_passes": False, "dsr": 0.4, "pbo": 0.5}
    for minutes, record in enumerate(records.values(), start=1):
        record["seconds"] = 60.0 * minutes
    results = calibration.summarise(records, plan)
    assert results["null"]["false_positive"]["rate"] == pytest.approx(0.25)
    assert results["planted"]["0.2"]["power"]["count"] == 1
    oracle = results["planted"]["0.2"]
    assert oracle["oracle_power_same_markets"]["n"] == 1 and oracle["oracle_power"]["n"] == 3
    assert results["median_run_minutes"] == {"null": 2.5, "study": 6.0, "planted": 5.0}
    assert results["studies"]["tuning_helped_any"]["rate"] == 1.0
    payload = {"settings": {"level": 0.9, "preset": "fast", "hidden_sizes": [64, 64],
                            "timesteps": 200_000, "test_days": 30,
                            "symbols": ["BPCL", "HDFCLIFE"], "study": calibration.STUDY},
               "results": results, "wall_seconds": 60.0, "machine": {"cores": 2},
               "quick": True, "quick_note": "rates mean nothing"}
    text = calibration.markdown(payload)
    assert "1 of 4" in text and "rates mean nothing" in text
    assert "Median run: null 2 min, study 6 min, planted 5 min" in text
    assert "oracle's edge is found on" in text
    # SUMMARY.md's section: the table, or "Not run yet." without a results file
    summary = load_bench("summary")
    assert summary.calibration_section(None, tmp_path)[-2] == "Not run yet."
    # a full run under way: its records so far, no rates
    full = calibration.make_plan(calibration.parse_args([]))
    calibration.append_record(tmp_path / "calibration_runs.jsonl",
                              {**records["null/0"], "signature": full["signature"]})
    assert summary.calibration_section(None, tmp_path)[-2].startswith(
        "In progress: 1 of the 41 runs are recorded (1 of 20 null, 0 of 5 study, 0 of 16 "
        "planted)")
    assert "null markets are complete" not in summary.calibration_section(None, tmp_path)[-2]
    for i in range(1, 20):  # every null run in: its rate is final and shown
        calibration.append_record(tmp_path / "calibration_runs.jsonl",
                                  {**records["null/1"], "key": f"null/{i}",
                                   "signature": full["signature"]})
    assert summary.calibration_section(None, tmp_path)[-2].endswith(
        "The null markets are complete: 1 of 20 runs claim an edge, 5% (90% Clopper-Pearson "
        "interval 0.3% to 21.6%) against the nominal 10%.")
    assert "1 of 4" in "\n".join(summary.calibration_section(payload))
    # records round-trip through the JSONL; other settings and cut lines are skipped
    path = tmp_path / "runs.jsonl"
    for record in records.values():
        calibration.append_record(path, {**record, "signature": "abc"})
    calibration.append_record(path, {"key": "null/9", "signature": "other"})
    with open(path, "a") as f:
        f.write('{"key": "null/1')
    loaded, skipped = calibration.load_records(path, "abc")
    assert set(loaded) == set(records) and skipped == 2


def test_the_oracle_ceiling_is_judged_on_the_planted_runs_own_test_days(calibration):
    """oracle_p_value's bars are the test days fastrl-train --data synthetic backtests on,
    and the verdict finds a strong planted edge and no edge where none is planted."""
    from fastrl.config import build_config
    from fastrl.data.synthetic import planted_signal
    from fastrl.markets import market_for

    config = build_config("fast", None, {"data.source": "synthetic", "data.synthetic_seed": 3,
                                         "data.synthetic_signal_strength": 0.3}, [])
    test = market_for(config).load().test
    bars, _ = planted_signal(2, config.data.synthetic_bars, signal_strength=0.3, seed=3)
    for i, frame in enumerate(bars.values()):
        np.testing.assert_array_equal(test.close[test.segment(i)][-config.data.test_days:],
                                      frame["close"].to_numpy()[-config.data.test_days:])
    market = {"n_symbols": 2, "test_days": 30, "n_bars": 3000}
    assert calibration.oracle_power(0.9, range(5), **market)["count"] == 5
    assert calibration.oracle_power(0.0, range(5), **market)["count"] <= 2


def test_job_keys_and_plan(calibration):
    keys = calibration.job_keys(2, 1, 1, [0.1, 0.2])
    assert keys == ["null/0", "null/1", "study/0", "planted/0.1/0", "planted/0.2/0"]
    args = calibration.parse_args(["--quick"])
    assert args.null_markets == 2 and args.null_studies == 1 and args.planted_markets == 1
    plan = calibration.make_plan(args)
    assert "hidden_sizes=[32, 32]" in plan["train_extra"]
    assert calibration.make_plan(calibration.parse_args([]))["train_extra"] == []
    # --workers sets torch_threads, which changes no result: the same records
    two = calibration.make_plan(calibration.parse_args(["--workers", "2"]))
    assert two["train_extra"] == ["--set", f"torch_threads={max(1, (os.cpu_count() or 1) // 2)}"]
    assert two["signature"] == calibration.make_plan(calibration.parse_args([]))["signature"]
    quick_two = calibration.make_plan(calibration.parse_args(["--quick", "--workers", "2"]))
    assert quick_two["signature"] == plan["signature"]
    assert calibration._merge_set(["--set", "a=1"], ["b=2"]) == ["--set", "b=2", "a=1"]


def test_the_estimate_uses_the_recorded_runs_once_a_kind_has_some(calibration):
    plan = calibration.make_plan(calibration.parse_args([]))
    keys = ["null/3", "null/4", "study/0", "planted/0.2/0"]
    planned = calibration.estimate_minutes(plan, keys, 1)
    assert "2 null x ~10.0 min (planned)" in planned and "1 study x ~26.0 min (planned)" in planned
    records = {f"null/{i}": {"kind": "null", "seconds": s}
               for i, s in enumerate((120.0, 240.0, 6000.0))}
    measured = calibration.estimate_minutes(plan, keys, 1, records)
    assert "2 null x ~4.0 min (median of 3 recorded)" in measured  # the median, not the mean
    assert "1 planted x ~11.0 min (planned)" in measured
