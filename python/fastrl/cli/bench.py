"""fastrl-bench: how fast the simulator steps on this machine, on the bundled bars.

A quick, installed-package version of ``bench/env_throughput.py``: env steps/s of
TradingVecEnv for a few batch sizes and thread counts against the plain-numpy
reference. The full suite (peers, trainer, learning speed) is ``python bench/run_all.py``
in the source tree.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
from rich.console import Console
from rich.table import Table

from fastrl.cli.errors import UsageError, cli_errors

PROG = "fastrl-bench"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", nargs="+", default=["BPCL", "HDFCLIFE"])
    parser.add_argument("--envs", type=int, nargs="+", default=[64, 1024, 4096])
    parser.add_argument("--threads", type=int, nargs="+",
                        default=sorted({1, min(2, os.cpu_count() or 1)}))
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=0.2, help="length of each timed batch")
    parser.add_argument("--verbose", action="store_true")
    return parser


def run(argv: list[str] | None, console: Console) -> int:
    args = build_parser().parse_args(argv)
    if any(n < 1 for n in args.envs) or any(t < 1 for t in args.threads):
        raise UsageError("--envs and --threads must be >= 1")
    if args.seconds <= 0:
        raise UsageError(f"--seconds must be > 0, got {args.seconds}")
    # lazy: the simulator and pandas, which --help must not import
    from fastrl.data import build_market
    from fastrl.env_config import EnvConfig
    from fastrl.markets.single.env import TradingVecEnv
    from fastrl.reference import ReferenceVecEnv
    from fastrl.timing import median_rate

    market = build_market(args.symbols, freq="1d", test_days=30, window=args.window).train
    config = EnvConfig(window=args.window)
    table = Table(title=f"env steps/s, {', '.join(args.symbols)} daily, window {args.window}")
    table.add_column("envs", justify="right")
    for t in args.threads:
        table.add_column(f"fastrl, {t} thread(s)", justify="right")
    table.add_column("reference.py", justify="right")
    table.add_column("fastrl / reference", justify="right")
    rng = np.random.default_rng(0)
    for n in args.envs:
        actions = rng.integers(0, len(config.position_levels), (64, n))
        rates = []
        for env in [TradingVecEnv(market, n, config, num_threads=t) for t in args.threads] + [
                ReferenceVecEnv(market, n, config)]:
            def step(calls: int, env=env, actions=actions) -> None:
                for k in range(calls):
                    env.step(actions[k & 63])

            rates.append(median_rate(step, n, min_seconds=args.seconds, repeats=3))
        table.add_row(f"{n:,}", *(f"{r:,.0f}" for r in rates),
                      f"{max(rates[:-1]) / rates[-1]:.1f}x")
    console.print(table)
    console.print(f"observation: {args.window} x {market.num_features} features + 3 agent "
                  f"state floats; CPU cores: {os.cpu_count()}")
    return 0


@cli_errors(PROG)
def main(argv: list[str] | None = None) -> int:
    return run(argv, Console())
