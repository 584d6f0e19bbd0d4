"""bench/run_all.py --quick is a smoke run: every bench at its smallest sizes."""

from __future__ import annotations

import pytest

from bench_modules import load_bench


@pytest.fixture(scope="module")
def run_all():
    return load_bench("run_all")


def test_the_thread_policy_smoke_run_is_one_small_case(run_all):
    throughput = load_bench("train_throughput")
    args = throughput.parse_args(run_all.SUITE["train_threads"][1])
    cases = [c for c in throughput.THREAD_CASES if any(w in c for w in args.cases)]
    processes = args.rounds * 2 * len(cases) * len(args.policies)  # quiet and neighbour
    assert args.rounds == 1 and cases == ["small (64, 64)"] and processes == 4
    assert args.policies[0] == "torch default"  # the ratios' denominator
    full = throughput.parse_args(run_all.SUITE["train_threads"][0])
    assert full.cases is None and full.policies is None and full.rounds == 3


def test_the_quick_suite_trains_tiny(run_all):
    convergence = load_bench("convergence").parse_args(run_all.SUITE["convergence"][1])
    assert convergence.seeds == 1 and convergence.timesteps == 8192
    calibration = load_bench("calibration")
    args = calibration.parse_args(run_all.SUITE["calibration"][1])
    trained = (args.null_markets + args.null_studies + args.planted_markets * len(args.strengths)
               + args.walkforward_markets)
    assert trained <= 4 and args.timesteps == 8192 and args.quick
    assert args.timer_draws <= 5 and args.wf_timer_draws <= 1
    walkforward = load_bench("walkforward")
    assert walkforward.QUICK_SYMBOLS <= 2 and walkforward.QUICK_START >= "2022"
    assert set(run_all.SUITE) >= {"calibration", "walkforward", "train_threads"}
