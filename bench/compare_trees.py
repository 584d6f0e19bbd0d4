"""Before/after: one figure of one benchmark, two checkouts, interleaved, paired ratios.

    python bench/compare_trees.py BEFORE_DIR AFTER_DIR --rounds 6 --name engine_trainer \
        --figure 'default\\s+fp32:\\s+([\\d,]+) env steps/s' \
        --figure 'small\\s+fp32:\\s+([\\d,]+) env steps/s' \
        -- bench/train_throughput.py --device cpu --networks default small \
           --precisions fp32 --num-envs 1024 --updates 4 --bare-seconds 0.5

This machine's speed drifts by up to 30% within minutes, so a before figure measured an hour
before the after figure says little. Here each round runs the benchmark in both checkouts,
one right after the other (the order alternates, so neither side always goes first), each
with its own ``python/`` on ``PYTHONPATH`` (and its own compiled ``_core``: build each
checkout first). Every ``--figure`` regex's first group is read from the benchmark's
output. Reported per figure: the medians and the paired ratio after / before of each round,
its median and a 95% bootstrap interval over rounds. Writes
``bench/results/compare_<name>.json``. Measure on a quiet machine and say when it was not.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import machine_info, write_json  # noqa: E402


def paired_summary(before: list[float], after: list[float], resamples: int = 5000,
                   seed: int = 0) -> dict[str, float]:
    """Medians of each side and the median of the per-round ratios after / before, with a
    95% bootstrap interval over rounds."""
    if len(before) != len(after) or not before:
        raise ValueError(f"need as many before as after figures (>= 1), got {len(before)} "
                         f"and {len(after)}")
    b, a = np.asarray(before, dtype=np.float64), np.asarray(after, dtype=np.float64)
    ratio = a / b
    rng = np.random.default_rng(seed)
    boots = np.median(rng.choice(ratio, size=(resamples, ratio.size)), axis=1)
    return {"before_median": float(np.median(b)), "after_median": float(np.median(a)),
            "ratio_median": float(np.median(ratio)),
            "ratio_ci95": [float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))],
            "rounds": int(ratio.size)}


def run_once(tree: Path, command: list[str], patterns: list[re.Pattern]) -> list[float]:
    env = {**os.environ, "PYTHONPATH": str(tree / "python")}
    done = subprocess.run([sys.executable, *command], cwd=tree, env=env, capture_output=True,
                          text=True)
    if done.returncode:
        raise SystemExit(f"{tree}: {' '.join(command)} exited {done.returncode}:\n"
                         f"{done.stderr[-2000:]}")
    values = []
    for pattern in patterns:
        match = pattern.search(done.stdout)
        if match is None:
            raise SystemExit(f"{tree}: no match for --figure {pattern.pattern!r} in the output")
        values.append(float(match.group(1).replace(",", "")))
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path, help="checkout measured as 'before'")
    parser.add_argument("after", type=Path, help="checkout measured as 'after'")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--name", required=True, help="results file: compare_<name>.json")
    parser.add_argument("--figure", action="append", required=True, metavar="REGEX",
                        help="a regex whose first group is a number in the output")
    argv = sys.argv[1:]
    if "--" not in argv:
        parser.error("give the benchmark script and its arguments after --")
    cut = argv.index("--")
    args, command = parser.parse_args(argv[:cut]), argv[cut + 1:]
    if not command:
        parser.error("give the benchmark script and its arguments after --")
    if args.rounds < 1:
        parser.error(f"--rounds must be >= 1, got {args.rounds}")
    patterns = [re.compile(p) for p in args.figure]
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    figures: dict[str, list[list[float]]] = {"before": [], "after": []}
    for i in range(args.rounds):
        for side in (("before", "after") if i % 2 == 0 else ("after", "before")):
            figures[side].append(run_once(trees[side], command, patterns))
        print(f"round {i + 1}: before {figures['before'][-1]}, after {figures['after'][-1]}",
              flush=True)
    results = []
    for k, pattern in enumerate(patterns):
        summary = paired_summary([r[k] for r in figures["before"]],
                                 [r[k] for r in figures["after"]])
        results.append({"figure": pattern.pattern, **summary,
                        "before": [r[k] for r in figures["before"]],
                        "after": [r[k] for r in figures["after"]]})
        print(f"{pattern.pattern}: before {summary['before_median']:,.6g}, after "
              f"{summary['after_median']:,.6g}; after / before {summary['ratio_median']:.3f} "
              f"[{summary['ratio_ci95'][0]:.3f}, {summary['ratio_ci95'][1]:.3f}]")
    path = write_json(f"compare_{args.name}", {
        "machine": machine_info(), "command": command, "rounds": args.rounds,
        "trees": {side: str(tree) for side, tree in trees.items()},
        "commits": {side: _commit(tree) for side, tree in trees.items()}, "results": results})
    print(f"wrote {path}")


def _commit(tree: Path) -> str | None:
    done = subprocess.run(["git", "-C", str(tree), "rev-parse", "HEAD"], capture_output=True,
                          text=True)
    return done.stdout.strip() or None


if __name__ == "__main__":
    main()
