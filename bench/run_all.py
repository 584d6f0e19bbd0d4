"""Run the benchmark suite, then write and print bench/results/SUMMARY.md.

    python bench/run_all.py            # full suite (about two hours on 2 cores, and
                                       # about five more for calibration)
    python bench/run_all.py --quick    # a smoke run: every benchmark end to end at its
                                       # smallest sizes (one rollout, tiny networks, one
                                       # round), calibration included; results/quick/. Its
                                       # figures mean nothing: the full run makes them
    python bench/run_all.py --only env_throughput peer_envs

Each benchmark runs in its own process (clean memory figures, no shared torch state).
Peer comparisons need the `[bench]` extra; without it they report that and move on.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# name -> (full arguments, quick arguments); the script is bench/<name>.py unless SCRIPTS says
SCRIPTS = {"train_threads": "train_throughput", "walkforward_portfolio": "walkforward"}
SUITE: dict[str, tuple[list[str], list[str]]] = {
    "env_throughput": ([], ["--quick", "--envs", "1", "64", "4096", "16384"]),
    "peer_envs": ([], ["--quick"]),
    "env_portfolio": ([], ["--quick"]),
    "data_prep": ([], ["--quick"]),
    "train_throughput": (["--device", "cpu"],
                         ["--device", "cpu", "--quick", "--networks", "small", "--num-envs",
                          "256"]),
    "peer_training": ([], ["--quick"]),
    "convergence": ([], ["--quick", "--seeds", "1", "--timesteps", "8192", "--hidden", "16,16"]),
    "generalisation": ([], ["--quick", "--symbols", "BPCL", "INFY", "--timesteps", "8192"]),
    "validation_cost": ([], ["--updates", "1", "--hidden", "[16,16]"]),
    "train_threads": (["--thread-policy"], ["--thread-policy", "--quick"]),
    "tune_payoff": ([], ["--quick"]),
    "tune_batch": ([], ["--quick", "--trials", "4", "--batch", "2"]),
    "pbt": (["--device", "cpu"], ["--quick"]),
    "walkforward": (["--configs", "fast", "baseline", "buy_and_hold", "voltarget", "momentum",
                     "ma10", "ma200"], ["--quick", "--configs", "fast", "momentum"]),
    "walkforward_portfolio": (["--portfolio", "--configs", "fast", "baseline", "ew_monthly",
                               "inverse_vol", "min_variance", "xs_momentum"],
                              ["--portfolio", "--quick", "--configs", "fast", "inverse_vol"]),
    "ladder": ([], ["--quick"]),  # after walkforward: it reads that bench's traded days
    "walkforward_population": ([], ["--quick"]),
    "anchored": ([], ["--quick"]),
    "tune_walkforward": ([], ["--smoke"]),
    "calibration": ([], ["--quick", "--null-markets", "1", "--timesteps", "8192"]),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", nargs="+", choices=list(SUITE), default=list(SUITE))
    args = parser.parse_args()
    env = dict(os.environ)
    if args.quick:  # a quick pass writes beside, never over, the full results
        env["FASTRL_BENCH_RESULTS"] = str(HERE / "results" / "quick")
        os.environ["FASTRL_BENCH_RESULTS"] = env["FASTRL_BENCH_RESULTS"]
    failed = []
    for name in args.only:
        full, quick = SUITE[name]
        script = SCRIPTS.get(name, name)
        cmd = [sys.executable, str(HERE / f"{script}.py"), *(quick if args.quick else full)]
        print(f"\n=== {name}: {' '.join(cmd[1:])}", flush=True)
        start = time.perf_counter()
        code = subprocess.call(cmd, env=env)
        print(f"=== {name}: exit {code} after {time.perf_counter() - start:.0f} s", flush=True)
        if code:
            failed.append(name)
    from summary import build

    print("\n" + build().read_text())
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
