"""bench/tune_walkforward.py: the study's windows before the date, its space, its table."""

from __future__ import annotations

import argparse

import pandas as pd
import pytest
import yaml

from bench_modules import load_bench
from fastrl.data import load_bars
from fastrl.walkforward.plan import WalkForwardSpec, plan_windows


@pytest.fixture(scope="module")
def bench():
    return load_bench("tune_walkforward")


def test_the_start_leaves_exactly_the_asked_windows_before_the_date(bench):
    bars = load_bars(["BPCL", "HDFCLIFE"], "1d")
    start = bench.start_for_windows(bars, "2017-01-01", 5)
    windows = plan_windows(bars, WalkForwardSpec(start=start, late_listings="join"))
    before = [w for w in windows if pd.Timestamp(w.last_traded) < pd.Timestamp("2017-01-01")]
    assert len(before) == 5
    # the next window starts on the date's first trading day, where the confirmation's does
    assert windows[5].first_traded == "2017-01-02"
    with pytest.raises(ValueError, match="--windows 500: the bars hold"):
        bench.start_for_windows(bars, "2017-01-01", 500)


def test_the_space_keeps_the_network_and_rollout(bench, tmp_path):
    from fastrl.tune.batched import SHAPE_KNOBS

    space = yaml.safe_load(bench.space_file(tmp_path / "study").read_text())
    assert "learning_rate" in space and not set(SHAPE_KNOBS) & set(space)
    assert not (tmp_path / "study").exists()  # the study folder is the CLI's to create


def _entry(mean: float, ci: list[float] | None, p: float | None) -> dict:
    return {"mean": mean, "ci": ci, "p": p, "p_holm": None if p is None else min(1.0, 3 * p)}


def result(steps: dict) -> dict:
    rows = [{"config": "tuned", "active": _entry(0.02, [-0.01, 0.05], 0.2), "vs_candidate": None},
            {"config": "fast", "active": _entry(0.01, [-0.02, 0.04], 0.3),
             "vs_candidate": _entry(0.01, [-0.005, 0.025], 0.15)},
            {"config": "buy_and_hold", "active": None,
             "vs_candidate": _entry(0.02, [-0.01, 0.05], 0.2)}]
    return {
        "setup": {"symbols": ["A", "B"], "network": "[64,64]", "step": 63,
                  "start": "2012-01-02", "windows": 20, "select_until": "2017-01-01",
                  "timesteps_per_window": 32768, "batch": 8, "seeds": 1,
                  "command": "fastrl-tune --symbols A B"},
        "study": {"n_trials": 32, "states": "30 complete, 2 pruned",
                  "best": {"number": 7, "score": 0.03, "se": 0.02},
                  "confirmation": {"windows": [{}] * 23, "first_day": "2017-01-02",
                                   "last_day": "2022-09-29", "seeds": 3, "rows": rows},
                  "gates": {"dsr": 0.4, "pbo": 0.55, "n_trials": 32, "n_pruned": 2,
                            "n_failed": 0, "pbo_windows": list(range(20)),
                            "pbo_trials": list(range(30))},
                  "steps_to_baseline": steps, "verdict": "no edge over fast"},
        "study_seconds": 1800.0, "report_seconds": 900.0, "machine": {"cores": 2},
        "load_average": {"start": [1.0], "end": [2.0]}}


def test_the_summary_table(bench):
    text = bench.markdown(result({"median_ratio": None, "missing_curves": 69}))
    assert "| fast | +1.0% [-2.0%, +4.0%] | +1.0% [-0.5%, +2.5%] | 0.150 (0.450) |" in text
    assert "| buy_and_hold | 0 (the benchmark) | +2.0% [-1.0%, +5.0%] |" in text
    assert "**30.0 min** on 2 cores (target < 60 min)" in text
    assert "DSR of the winner over all 32 trials (2 pruned, 0 failed): 0.40" in text
    assert "not measured (69 window x seed pairs without validation curves)" in text
    measured = {"median_ratio": 0.5, "ci": [0.25, float("inf")], "rows": [{}] * 40,
                "median_reference_steps": 16384.0, "never_reached": 3}
    text = bench.markdown(result(measured))
    assert "**0.50** [90%: 0.25, inf]; the baseline's own median 16,384 steps" in text
    assert "never reached in 3" in text


def test_the_smoke_arguments(bench, tmp_path):
    args = argparse.Namespace(smoke=True, select_until="2022-01-03", trials=2, batch=2,
                              timesteps=1024, seeds=1, confirm_seeds=2, sampler_seed=0,
                              workers=2)
    argv = bench.tune_argv(args, ["A", "B"], "2021-06-30", tmp_path / "study")
    assert argv[argv.index("--window-workers") + 1] == "2"
    assert argv[argv.index("--objective") + 1] == "walkforward"
    assert argv[argv.index("--start") + 1] == "2021-06-30"
    assert argv[argv.index("--space") + 1] == str(tmp_path / "study.space.yaml")
    assert "hidden_sizes=[16,16]" in argv
