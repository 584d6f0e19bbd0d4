"""Simulator throughput: fastrl's C++ core against reference.py and the bare cost of
writing the observation bytes, over num_envs x threads x window, plus memory at scale.

    python bench/env_throughput.py [--quick] [--envs 1 64 1024 4096 16384]

Prints a table and writes bench/results/env_throughput.json. All figures of one run come
from the same process on the same market, so the ratios are what to read.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fastrl.data.block import MarketBlock  # noqa: E402
from fastrl.env_config import EnvConfig  # noqa: E402
from fastrl.markets.single.env import TradingVecEnv  # noqa: E402
from fastrl.reference import ReferenceVecEnv  # noqa: E402

from bench_common import machine_info, median_rate, rss_mib, write_json  # noqa: E402

NUM_FEATURES = 8  # window 32 -> 32 x 8 + 3 = 259 floats per observation


def synthetic_block(segments: int = 16, bars: int = 4000, seed: int = 0) -> MarketBlock:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, (segments, bars)), axis=1)).ravel()
    open_ = close * np.exp(rng.normal(0, 0.002, close.shape))
    return MarketBlock(symbols=tuple(f"S{i}" for i in range(segments)), open=open_, close=close,
                       features=rng.normal(size=(segments * bars, NUM_FEATURES)).astype(np.float32),
                       offsets=np.arange(segments + 1) * bars)


def env_rate(market: MarketBlock, num_envs: int, window: int, threads: int,
             reference: bool, quick: bool) -> float:
    config = EnvConfig(window=window, episode_length=256)
    if reference:
        env = ReferenceVecEnv(market, num_envs, config, seed=0)
    else:
        env = TradingVecEnv(market, num_envs, config, num_threads=threads, seed=0)
    actions = np.random.default_rng(0).integers(0, len(config.position_levels), (64, num_envs))

    def run(calls: int) -> None:
        for k in range(calls):
            env.step(actions[k & 63])

    run(16)
    return median_rate(run, num_envs, min_seconds=0.1 if quick else 0.25,
                       repeats=3 if quick else 5)


def floor_rate(num_envs: int, obs_dim: int, quick: bool) -> float:
    """Observations per second that a bare numpy copy of the same bytes achieves."""
    src = np.random.default_rng(0).normal(size=(num_envs, obs_dim)).astype(np.float32)
    dst = np.empty_like(src)

    def run(calls: int) -> None:
        for _ in range(calls):
            np.copyto(dst, src)

    run(4)
    return median_rate(run, num_envs, min_seconds=0.1 if quick else 0.25,
                       repeats=3 if quick else 5)


def rss_probe(num_envs: int, window: int) -> None:
    """Run in a subprocess: RSS before and after building and stepping the env."""
    market = synthetic_block()
    base, _ = rss_mib()
    env = TradingVecEnv(market, num_envs, EnvConfig(window=window), num_threads=2)
    actions = np.zeros(num_envs, np.int64)
    for _ in range(20):
        env.step(actions)
    now, peak = rss_mib()
    buffers = sum(a.nbytes for a in env.buffers.values()) / 2**20
    state = num_envs * 17 * 8 / 2**20  # 17 per-env state vectors of 8 bytes
    print(json.dumps({"num_envs": num_envs, "window": window, "rss_before_mib": base,
                      "rss_after_mib": now, "peak_mib": peak, "buffers_mib": buffers,
                      "state_mib": state, "market_mib": (market.features.nbytes
                                                         + market.open.nbytes * 2) / 2**20}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, shorter batches")
    parser.add_argument("--envs", type=int, nargs="+", default=[1, 64, 1024, 4096, 16384])
    parser.add_argument("--windows", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rss-probe", type=int, nargs=2, metavar=("NUM_ENVS", "WINDOW"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_probe:
        rss_probe(*args.rss_probe)
        return

    market = synthetic_block()
    rows = []
    print(f"{'envs':>6} {'win':>4} {'obs':>4} | " + " ".join(f"{f'core {t}t':>12}" for t in
          args.threads) + f" {'reference':>12} {'write floor':>12} | {'core/ref':>8} "
          f"{'floor/core':>10} {'2t/1t':>6}")
    for window in args.windows:
        obs_dim = window * NUM_FEATURES + 3
        for n in args.envs:
            core = {t: env_rate(market, n, window, t, False, args.quick) for t in args.threads}
            ref = env_rate(market, n, window, 1, True, args.quick)
            floor = floor_rate(n, obs_dim, args.quick)
            best = max(core.values())
            row = {"num_envs": n, "window": window, "obs_dim": obs_dim,
                   "core_steps_per_s": {str(t): r for t, r in core.items()},
                   "reference_steps_per_s": ref, "floor_obs_per_s": floor,
                   "speedup_vs_reference": best / ref,
                   "step_time_over_floor": floor / best,
                   "step_time_over_floor_1t": floor / core[min(core)],
                   "two_over_one_thread": core.get(2, np.nan) / core.get(1, np.nan)}
            rows.append(row)
            print(f"{n:>6} {window:>4} {obs_dim:>4} | " + " ".join(f"{core[t]:>12,.0f}" for t in
                  args.threads) + f" {ref:>12,.0f} {floor:>12,.0f} | {best / ref:>8.1f} "
                  f"{floor / best:>10.2f} {row['two_over_one_thread']:>6.2f}", flush=True)

    memory = []
    for n in (64, 16384):
        out = subprocess.run([sys.executable, __file__, "--rss-probe", str(n), "32"],
                             capture_output=True, text=True, check=True)
        memory.append(json.loads(out.stdout))
    print("\nmemory (window 32): RSS growth when building + stepping the env vs. what it must hold")
    for m in memory:
        grew = m["rss_after_mib"] - m["rss_before_mib"]
        print(f"  {m['num_envs']:>6} envs: RSS {m['rss_before_mib']:.0f} -> "
              f"{m['rss_after_mib']:.0f} MiB (+{grew:.1f}); "
              f"per-env buffers {m['buffers_mib']:.1f} MiB + state "
              f"{m['state_mib']:.1f} MiB; market block {m['market_mib']:.1f} MiB (shared, once)")

    def pick(n: int, w: int) -> dict:
        return next((r for r in rows if r["num_envs"] == n and r["window"] == w), {})

    targets = {
        "4096 envs, window 32: step time / obs-write floor <= 2":
            pick(4096, 32).get("step_time_over_floor"),
        "(same, one simulator thread against the one-thread numpy copy)":
            pick(4096, 32).get("step_time_over_floor_1t"),
        "64 envs, window 1: core / reference >= 20": pick(64, 1).get("speedup_vs_reference"),
        "4096 envs, window 1: 2 threads / 1 thread >= 1.6":
            pick(4096, 1).get("two_over_one_thread"),
    }
    print("\ntargets")
    for name, value in targets.items():
        print(f"  {name}: {'n/a' if value is None else f'{value:.2f}'}")
    path = write_json("env_throughput", {"machine": machine_info(), "rows": rows,
                                         "memory": memory, "targets": targets})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
