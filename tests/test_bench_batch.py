"""bench/tune_batch.py and the thread-policy section of bench/train_throughput.py: the
tables and verdicts they print from their results (the runs themselves are benchmarks)."""

from __future__ import annotations

import pytest

from bench_modules import load_bench


@pytest.fixture(scope="module")
def tune_batch():
    return load_bench("tune_batch")


def arm(name: str, wall: float, batch: int) -> dict:
    return {"arm": name, "batch": batch, "wall_seconds": wall, "trials": 64,
            "trials_per_hour": 3600 * 64 / wall, "states": {"COMPLETE": 40, "PRUNED": 24},
            "env_steps": 9_000_000, "env_steps_per_s": 9e6 / wall, "best_score": 1.5,
            "best_trial": 17, "peak_rss_mb": 900.0, "params_hash": "abc"}


@pytest.mark.parametrize("sequential, batched, verdict", [
    (3600.0, 1000.0, "3.60x**. Target >= 3x at B = 16: met"),
    (3600.0, 1300.0, "2.77x**. Target >= 3x at B = 16: not met"),
])
def test_tune_batch_summary_states_the_speedup_and_the_target(tune_batch, sequential, batched,
                                                              verdict):
    payload = {"machine": {"cpu": "test cpu", "cores": 2},
               "settings": {"quick": False, "device": "cpu", "batch": 16, "trials": 64,
                            "timesteps": 200_000, "sampler": "random"},
               "arms": {"sequential": arm("sequential", sequential, 1),
                        "batched": arm("batched", batched, 16)},
               "speedup": sequential / batched}
    text = tune_batch.markdown_summary(payload)
    assert verdict in text
    assert "| batched (B = 16) |" in text and "40 complete, 24 pruned" in text
    assert "the same trials in both arms (RandomSampler seeded 0)" in text
    assert "Both arms trained the same trials (their params match)." in text
    # params that differ are said to, and TPE's draws (or a file from before --sampler)
    # give no target verdict: each arm trained other trials
    payload["arms"]["batched"] = {**payload["arms"]["batched"], "params_hash": "other"}
    assert "**The arms' params differ**" in tune_batch.markdown_summary(payload)
    for settings in ({**payload["settings"], "sampler": "tpe"},
                     {k: v for k, v in payload["settings"].items() if k != "sampler"}):
        text = tune_batch.markdown_summary({**payload, "settings": settings})
        assert "Target >=" not in text and "the sampler's luck" in text


def test_an_arm_cut_at_its_minutes_is_extrapolated_and_says_so(tune_batch):
    sequential = {**arm("sequential", 150.0, 1), "trials": 15, "complete_study": False}
    batched = {**arm("batched", 60.0, 64), "complete_study": True, "train_seconds": 20.0,
               "validate_seconds": 35.0, "cuda_peak_allocated_mb": 800.0}
    # 10 s a trial over 64 trials = 640 s against 60 s
    assert tune_batch.full_wall(sequential, 64) == pytest.approx(640.0)
    payload = {"machine": {"cpu": "test cpu", "cores": 16},
               "settings": {"quick": False, "device": "cuda", "batch": 64, "trials": 64,
                            "timesteps": 200_000, "minutes": 2.5, "sampler": "random"},
               "arms": {"sequential": sequential, "batched": batched},
               "speedup": 640.0 / 60.0}
    text = tune_batch.markdown_summary(payload)
    assert "10.67x**. Target >= 20x at B = 64: not met. **Estimated**: the sequential arm " \
        "stopped at the 2.5-minute limit after 15 of 64 trials" in text
    assert "| 60 | 20 | 35 |" in text and "(GPU 800)" in text


def test_confirm_summary_gives_each_round_the_medians_and_the_scores(tune_batch):
    def confirm_arm(name: str, wall: float) -> dict:
        return {"arm": name, "wall_seconds": wall, "runs": 4, "peak_rss_mb": 500.0,
                "scores": {"fast": [1.25, -0.5], "baseline": [0.5, 0.75]},
                "hidden_sizes": {"fast": [2048, 1024], "baseline": [64, 64]},
                "device_name": "test gpu", "cuda_peak_allocated_mb": 300.0}

    payload = {"machine": {"cpu": "test cpu", "cores": 16},
               "settings": {"quick": False, "device": "cuda", "rounds": 2, "confirm_seeds": 2,
                            "timesteps": 65_536},
               "order": ["batched", "sequential", "sequential", "batched"],
               "arms": {"sequential": [confirm_arm("sequential", 100.0),
                                       confirm_arm("sequential", 120.0)],
                        "batched": [confirm_arm("batched", 40.0), confirm_arm("batched", 60.0)]},
               "speedup": 110.0 / 50.0}
    text = tune_batch.confirm_summary(payload)
    assert "fast (2048, 1024), baseline (64, 64)" in text
    assert "arm order batched, sequential, sequential, batched" in text
    assert "| one seed after another | 100, 120 | 110 | 500 (GPU 300) | +1.25 -0.50; " \
        "+0.50 +0.75 |" in text
    assert "| a config's seeds batched | 40, 60 | 50 |" in text
    assert "**2.20x** (medians)" in text


def test_thread_summary_pairs_each_case_and_load():
    throughput = load_bench("train_throughput")
    results = []
    for case in throughput.THREAD_CASES:
        for load in ("quiet", "neighbour"):
            for policy in throughput.POLICIES:
                rate = 1000.0 if policy == "torch default" else 2500.0
                for r in range(2):
                    results.append({"case": case, "load": load, "policy": policy,
                                    "round": r, "threads": 1, "env_steps_per_s": rate + r})
    summary = throughput.thread_summary(results)
    assert len(summary) == 2 * len(throughput.THREAD_CASES)
    assert all(row["ratios"]["passive wait"] == pytest.approx(2500.5 / 1000.5)
               for row in summary)
    table = throughput.thread_table(summary)
    assert table[0].startswith("| case | load |") and "passive wait / default" in table[0]
    assert "governed (spinning, governed)" in table[0]
    assert table[2].count("2.50x") == len(throughput.POLICIES) - 1
    # a run of some cases and policies summarises what it measured
    some = [r for r in results if r["case"] == "small (64, 64)"
            and r["policy"] in ("torch default", "governed")]
    summary = throughput.thread_summary(some)
    assert [(row["case"], row["load"]) for row in summary] == [
        ("small (64, 64)", "quiet"), ("small (64, 64)", "neighbour")]
    assert set(summary[0]["median"]) == {"torch default", "governed"}
