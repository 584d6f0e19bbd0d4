"""bench/convergence.py: the pure helpers that turn learning curves into the reported figures."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from bench_modules import load_bench


@pytest.fixture(scope="module")
def conv():
    return load_bench("convergence")


def test_first_reach_is_the_first_validation_at_or_above_the_target(conv):
    steps = [8192, 16384, 24576, 32768]
    assert conv.first_reach(steps, [0.1, 0.5, 0.4, 0.9], 0.5) == 1  # equal counts as reached
    assert conv.first_reach(steps, [0.1, 0.49, 0.4, 0.9], 0.5) == 3
    assert conv.first_reach(steps, [None, float("nan"), 0.2, 0.3], 0.25) == 3
    assert conv.first_reach(steps, [0.1, 0.2, 0.3, 0.4], 0.5) is None
    assert conv.first_reach([], [], 0.5) is None


def test_first_reach_rejects_bad_input(conv):
    with pytest.raises(ValueError, match="differ in length"):
        conv.first_reach([1, 2], [0.1], 0.0)
    with pytest.raises(ValueError, match="rise strictly"):
        conv.first_reach([2, 2], [0.1, 0.2], 0.0)
    with pytest.raises(ValueError, match="finite"):
        conv.first_reach([1], [0.1], float("nan"))


def test_time_to_reads_steps_and_seconds_of_the_same_validation(conv):
    curve = {"steps": [8192, 16384, 24576], "seconds": [1.5, 3.0, 4.5],
             "val_sharpe": [None, 2.0, 3.0]}
    assert conv.time_to(curve, 2.5) == (24576, 4.5)
    assert conv.time_to(curve, 1.0) == (16384, 3.0)
    assert conv.time_to(curve, 9.0) == (None, None)


def test_seed_band_statistics_per_step_and_missing_points(conv):
    curves = [([1, 2, 3], [0.0, 1.0, 2.0]),
              ([1, 2, 3], [2.0, 3.0, None]),
              ([1, 2], [4.0, 5.0])]
    band = conv.seed_band(curves)
    np.testing.assert_array_equal(band["steps"], [1, 2, 3])
    np.testing.assert_array_equal(band["count"], [3, 3, 1])
    np.testing.assert_allclose(band["median"], [2.0, 3.0, 2.0])
    np.testing.assert_allclose(band["min"], [0.0, 1.0, 2.0])
    np.testing.assert_allclose(band["max"], [4.0, 5.0, 2.0])
    np.testing.assert_allclose(band["q25"], [1.0, 2.0, 2.0])
    np.testing.assert_allclose(band["q75"], [3.0, 4.0, 2.0])


def test_seed_band_leaves_steps_without_values_empty(conv):
    band = conv.seed_band([([1, 2], [None, 1.0]), ([1, 2], [None, 3.0])])
    assert math.isnan(band["median"][0]) and band["count"][0] == 0
    assert band["median"][1] == 2.0
    with pytest.raises(ValueError, match="at least one curve"):
        conv.seed_band([])


def test_paired_ratios_exact_and_censored(conv):
    pairs = conv.paired_ratios([10, 10, None, None], [30, None, 40, None],
                               fast_budgets=[100] * 4, baseline_budgets=[100, 200, 100, 100])
    assert pairs[0] == {"ratio": 3.0, "kind": "exact"}
    assert pairs[1] == {"ratio": 20.0, "kind": "lower"}  # baseline ran 200 steps in vain
    assert pairs[2] == {"ratio": 0.4, "kind": "upper"}  # fast needs more than its 100
    assert pairs[3] == {"ratio": None, "kind": "none"}
    summary = conv.summarise_pairs(pairs)
    assert summary["exact_n"] == 1 and summary["exact_median"] == 3.0
    assert summary["lower_bounds"] == [20.0] and summary["upper_bounds"] == [0.4]
    assert summary["neither"] == 1
    text = conv.format_ratio_summary(summary)
    assert "median 3.00x" in text and "> 20.00x" in text and "< 0.40x" in text


def test_paired_ratios_rejects_unpaired_seeds(conv):
    with pytest.raises(ValueError, match="one value per seed"):
        conv.paired_ratios([1, 2], [1], [10, 10], [10, 10])
    with pytest.raises(ValueError, match="positive"):
        conv.paired_ratios([1], [1], [0], [10])


def test_upper_median_ranks_not_reached_last(conv):
    assert conv.upper_median([5, 1, 3]) == 3
    assert conv.upper_median([1, 3]) == 3  # upper of the two middle values
    assert conv.upper_median([1, None, 2]) == 2
    assert math.isinf(conv.upper_median([1, None]))  # half not reached: median not reached
    with pytest.raises(ValueError):
        conv.upper_median([])


def test_ratio_of_medians_and_its_bootstrap_interval(conv):
    result = conv.ratio_of_medians([10, 10, 10, 10, 10], [30, 30, 30, 30, 30])
    assert result["ratio"] == 3.0 and result["ci90"] == [3.0, 3.0]
    spread = conv.ratio_of_medians([10, 20, 10, 20, 15], [30, 60, 45, 30, 60], resamples=500)
    low, high = spread["ci90"]
    assert low <= spread["ratio"] <= high and low < high
    slow = conv.ratio_of_medians([10, 10, 10], [None, None, 30])
    assert slow["ratio"] == "inf"  # the baseline's median run never reached the target
    assert "baseline's median not reached" in conv.format_ratio_of_medians(slow)
    stalled = conv.ratio_of_medians([None, None, 10], [30, 30, 30])
    assert stalled["ratio"] == 0.0
    assert "fast preset's median not reached" in conv.format_ratio_of_medians(stalled)
    neither = conv.ratio_of_medians([None, None], [None, None])
    assert neither["ratio"] is None and neither["undefined_share"] == 1.0
    assert conv.format_ratio_of_medians(neither).startswith("undefined")
    assert conv.format_ratio_of_medians(result) == "3.00x (90% CI 3.00x to 3.00x)"


def test_parse_args_defaults_and_errors(conv):
    args = conv.parse_args([])
    assert args.seeds == conv.DEFAULT_SEEDS and args.markets == ["planted", "real"]
    assert args.hidden == (64, 64) and args.timesteps is None
    quick = conv.parse_args(["--quick", "--markets", "real", "--hidden", "32,16"])
    assert quick.seeds == 2 and quick.markets == ["real"] and quick.hidden == (32, 16)
    for bad in (["--markets", "moon"], ["--seeds", "0"], ["--hidden", "a,b"],
                ["--timesteps", "100"]):
        with pytest.raises(SystemExit):
            conv.parse_args(bad)


def _fake_run(seed: int, sharpe_curve: list[float], seconds_per_update: float) -> dict:
    steps = [8192 * (i + 1) for i in range(len(sharpe_curve))]
    clock = [seconds_per_update * (i + 1) for i in range(len(steps))]
    curve = {"steps": steps, "seconds": clock, "cpu_seconds": clock, "val_sharpe": sharpe_curve}
    reached = {}
    for label, level in (("low", 1.0), ("target", 2.0)):
        index = next((i for i, v in enumerate(sharpe_curve) if v >= level), None)
        reached[label] = {unit: None if index is None else curve[unit][index]
                          for unit in ("steps", "seconds", "cpu_seconds")}
    metrics = {"sharpe": 1.0 + seed, "total_return": 0.1, "max_drawdown": -0.05,
               "num_trades": 10.0, "sharpe_se": 0.8 + seed, "sharpe_ci90": [-0.2, 2.4 + seed],
               "psr": 0.9 + 0.05 * seed}
    versus = {"probability": 0.7 + 0.25 * seed, "p_value": 0.3 - 0.25 * seed,
              "verdict": "..."}
    return {"seed": seed, "reached": reached, "curve": curve,
            "best_val_sharpe": max(sharpe_curve), "total_steps": steps[-1],
            "total_seconds": clock[-1], "total_cpu_seconds": clock[-1],
            "test": {"agent": metrics, "vs_buy_and_hold": versus,
                     "buy_and_hold": {**metrics, "sharpe": -0.5, "psr": 0.3}}}


def test_comparison_table_and_plot_from_run_records(conv, tmp_path):
    runs = {"fast": [_fake_run(0, [2.5, 2.6, 2.0], 1.0), _fake_run(1, [0.5, 1.2, 1.8], 1.0)],
            "baseline": [_fake_run(0, [0.2, 1.0, 2.1], 0.5), _fake_run(1, [0.1, 0.3, 0.9], 0.5)]}
    target = conv.compare(runs, "target")
    assert target["steps"]["pairs"] == [{"ratio": 3.0, "kind": "exact"},
                                        {"ratio": None, "kind": "none"}]
    assert target["seconds"]["pairs"][0] == {"ratio": 1.5, "kind": "exact"}
    assert target["steps"]["fast_upper_median"] == "inf"  # 1 of 2 seeds reached it
    low = conv.compare(runs, "low")
    assert [p["kind"] for p in low["steps"]["pairs"]] == ["exact", "lower"]
    assert low["steps"]["pairs"][1]["ratio"] == 24576 / 16384
    tests = conv.summarise_test_metrics(runs)
    assert tests["fast"]["sharpe"] == {"median": 1.5, "min": 1.0, "max": 2.0}
    assert tests["fast"]["sharpe_se"]["median"] == pytest.approx(1.3)
    assert tests["fast"]["psr"] == pytest.approx({"median": 0.925, "min": 0.9, "max": 0.95})
    assert tests["fast"]["prob_beats_buy_and_hold"]["max"] == pytest.approx(0.95)
    # seed 1's p = 0.05 beats buy-and-hold at 90% confidence, seed 0's p = 0.3 does not
    assert tests["fast"]["beats_buy_and_hold"] == {"runs": 1, "of": 2, "level": 0.9}
    assert tests["buy_and_hold"]["sharpe"] == -0.5 and tests["buy_and_hold"]["psr"] == 0.3
    result = {"description": "fake", "target": 2.0, "target_rule": "target",
              "thresholds": [{"label": "low", "value": 1.0, "primary": False},
                             {"label": "target", "value": 2.0, "primary": True}],
              "references": {"oracle_val_sharpe": 2.5}, "budget_steps": 24576, "runs": runs,
              "baseline_over_fast": {"low": low, "target": target}, "test_summary": tests}
    text = "\n".join(conv.summary_table({"fake": result}))
    assert "target *" in text and "median 3.00x (range 3.00-3.00, 1 pair)" in text
    assert "beats B&H at 90%" in text and " 1.30  0.93    0.82 1/2" in text
    assert "not reached" in text
    path = tmp_path / "curves.png"
    conv.plot_market("fake", result, (64, 64), path)
    assert path.stat().st_size > 10_000
    payload = {"settings": {"seeds": 2, "hidden_sizes": [64, 64], "torch_threads": 1},
               "machine": {"cpu": "test", "cores": 2}, "wall_seconds": 60.0,
               "markets": {"fake": {**result, "plot": path.name}}}
    markdown = conv.markdown_summary(payload)
    assert "| **target = 2.00 (target)** | 1/2, not reached | 1/2, not reached |" in markdown
    assert "| fast | 1.50 [1.00, 2.00] | 1.30 | 0.93 [0.90, 0.95] | 0.82 [0.70, 0.95] | 1/2 |" \
        in markdown and "](curves.png)" in markdown
    assert "| buy & hold | -0.50 (90% CI -0.20 to 2.40) | 0.80 | 0.30 | - | - |" in markdown
    saved = tmp_path / "convergence.json"
    saved.write_text(json.dumps(payload))
    path.unlink()
    conv.main(["--from-json", str(saved)])  # reprints the tables, redraws the plot
    assert path.is_file()
    with pytest.raises(SystemExit, match="not a convergence results file"):
        saved.write_text("{}")
        conv.main(["--from-json", str(saved)])


def test_shipped_timesteps_is_the_presets_budget(conv):
    from fastrl.config import PRESETS, TrainConfig

    assert all("total_timesteps" not in PRESETS[p] for p in conv.PRESETS)
    assert conv.shipped_timesteps() == TrainConfig.__dataclass_fields__["total_timesteps"].default


def test_old_results_without_error_bars_still_render(conv):
    run = _fake_run(0, [2.5], 1.0)
    for key in ("sharpe_se", "sharpe_ci90", "psr"):
        del run["test"]["agent"][key], run["test"]["buy_and_hold"][key]
    del run["test"]["vs_buy_and_hold"]
    tests = conv.summarise_test_metrics({"fast": [run], "baseline": [run]})
    assert tests["fast"]["psr"] is None and tests["fast"]["beats_buy_and_hold"] is None
    assert conv.format_test_sharpe(run["test"]) == "1.00" and conv.format_beats(run["test"]) == ""


def test_test_record_carries_the_reports_error_bars(conv):
    pytest.importorskip("fastrl._core")
    from fastrl import stats
    from fastrl.data.block import MarketBlock
    from fastrl.env_config import EnvConfig
    from fastrl.evaluate import evaluate_agent

    rng = np.random.default_rng(5)
    segments = []
    for k in range(2):
        close = 100.0 * np.cumprod(1.0 + rng.normal(0.0005, 0.01, 60))
        days = np.datetime64("2024-01-01") + np.arange(60).astype("timedelta64[D]")
        segments.append({"symbol": f"S{k}", "open": close, "close": close,
                         "features": rng.normal(size=(60, 2)),
                         "timestamps": days.astype("datetime64[ns]")})
    market = MarketBlock.from_segments(segments, meta={"context_rows": 3})
    evaluation = evaluate_agent(lambda obs: (obs[:, 0] > 0).astype(np.int64), market,
                                EnvConfig(window=4))
    test = conv.test_record(evaluation)
    agent_returns = evaluation.returns("ALL", "agent")
    bench_returns = evaluation.returns("ALL", "buy_and_hold")
    expected = stats.sharpe_stats(agent_returns, "1d", seed=0)
    assert test["agent"]["sharpe"] == pytest.approx(evaluation.metrics("ALL", "agent").sharpe)
    assert test["agent"]["sharpe_se"] == pytest.approx(expected.se)
    assert test["agent"]["sharpe_ci90"] == pytest.approx([expected.ci_low, expected.ci_high])
    assert test["agent"]["psr"] == pytest.approx(expected.psr)
    versus = stats.prob_agent_beats(agent_returns, bench_returns, "1d")
    assert test["vs_buy_and_hold"]["probability"] == versus.probability
    assert test["vs_buy_and_hold"]["verdict"] == evaluation.verdict
    json.dumps(test, allow_nan=False)  # goes into convergence.json as is
    assert "±" in conv.format_test_sharpe(test) and "P(> buy & hold)" in conv.format_beats(test)


@pytest.fixture(scope="module")
def tune_bench():
    return load_bench("tune_payoff", "bench_tune")  # it imports convergence, bench_common


def _speed(ratio, low, tuned=40_960.0, baseline=188_416.0):
    entry = {"ratio_of_medians": {"ratio": ratio, "ci90": [low, None]},
             "tuned_upper_median": tuned, "baseline_upper_median": baseline}
    return {"baseline_over_tuned_steps": entry}


def test_tune_bench_target_is_met_only_when_the_lower_bound_clears_it(tune_bench):
    # the README's old 4.60x with its lower bound 3.00 sitting on the 3x target: not met
    assert ": not met" in tune_bench._verdict(_speed(4.6, 3.0), "steps", 3.0)
    assert tune_bench._verdict(_speed(4.6, 3.2), "steps", 3.0).endswith(
        ": met (lower bound vs 3x)")
    assert ": not met" in tune_bench._verdict(_speed(4.6, None), "steps", 3.0)
    assert ": met" in tune_bench._verdict(_speed("inf", "inf"), "steps", 3.0)


def test_tune_bench_break_even_counts_the_study_cost(tune_bench):
    got = tune_bench.break_even(1_474_560.0, _speed(4.6, 3.0), "steps")
    assert got["saved_per_run"] == 188_416 - 40_960
    assert got["runs"] == pytest.approx(1_474_560 / (188_416 - 40_960))
    assert "after 10 runs" in tune_bench._break_even_text(got, "env steps")  # exactly 10
    never = tune_bench.break_even(1e6, _speed(1.0, 0.5, tuned=50.0, baseline=40.0), "steps")
    assert never["runs"] is None
    assert tune_bench.break_even(1e6, _speed(None, None, tuned=None), "steps")["runs"] is None
