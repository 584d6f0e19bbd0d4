"""fastrl-signal's latency for 30 symbols on a CPU: load the newest bars, build features and
observations, ask the policy, size the orders.

Trains (or takes with ``--run``) a run over the 30 bundled daily symbols with the default
(2048, 1024, 512, 256) network, one update only: latency does not depend on what the agent
learned. Then times, ``--repeats`` times each, in one process (imports and the checkpoint load
excluded, they are paid once per command): ``load_live_bars`` (read and validate 30 gzip
CSVs, ~4,400 rows each; cold: the bars cache off, every file parsed; warm: every file
unchanged since the last call, read from the cache), ``make_signal`` (features of every
bar with the run's normaliser, the simulator's observation, one policy call, the orders)
and both together. Also the
portfolio kind (one policy over all 30 symbols). Writes bench/results/signal_latency.json.
Target: under 1 s for the whole decision.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from fastrl.config import DataConfig, PortfolioSettings, TrainConfig
from fastrl.data.loaders import available
from fastrl.env import EnvConfig

from bench_common import RESULTS, machine_info


def train_run(folder: Path, portfolio: bool) -> Path:
    from fastrl.ppo.trainer import train

    symbols = tuple(available("1d"))
    config = TrainConfig(env=EnvConfig(), data=DataConfig(symbols=symbols, test_days=30,
                                                          val_days=0),
                         portfolio=PortfolioSettings(enabled=portfolio, max_weight=0.1),
                         total_timesteps=64, num_envs=4, num_steps=16, n_epochs=1,
                         minibatch_size=64, device="cpu", torch_threads=1)
    run_dir = folder / ("portfolio" if portfolio else "single")
    train(config, run_dir=run_dir)
    return run_dir


def time_signal(run_dir: Path, repeats: int, cache: Path) -> dict:
    """Times the decision ``repeats`` times with the bars cache cold (off: every file parsed,
    as on a day when every file gained a bar) and warm (every file unchanged since the last
    call), interleaved in one process so both see the same machine load."""
    import os

    from fastrl.live.bars import load_live_bars
    from fastrl.live.run import open_run
    from fastrl.live.signal import make_signal

    started = time.perf_counter()
    run = open_run(run_dir)
    open_s = time.perf_counter() - started
    phases: dict[str, dict[str, list[float]]] = {
        mode: {"load": [], "decide": [], "total": []} for mode in ("cold", "warm")}
    os.environ["FASTRL_BARS_CACHE"] = str(cache)
    load_live_bars(run, "bundled")  # fills the cache
    for _ in range(repeats):
        for mode in ("cold", "warm"):
            os.environ["FASTRL_BARS_CACHE"] = "off" if mode == "cold" else str(cache)
            t0 = time.perf_counter()
            bars = load_live_bars(run, "bundled")
            t1 = time.perf_counter()
            signal = make_signal(run, bars, asof="2022-11-09", capital=10_000_000)
            t2 = time.perf_counter()
            phases[mode]["load"].append(t1 - t0)
            phases[mode]["decide"].append(t2 - t1)
            phases[mode]["total"].append(t2 - t0)
    row = {"symbols": len(run.symbols), "kind": signal.kind, "open_run_s": open_s,
           "repeats": repeats}
    for mode, times in phases.items():
        row[mode] = {"load_bars_s": statistics.median(times["load"]),
                     "make_signal_s": statistics.median(times["decide"]),
                     "total_s": statistics.median(times["total"]),
                     "total_max_s": max(times["total"]),
                     "under_1s": statistics.median(times["total"]) < 1.0}
    row["cold_over_warm"] = statistics.median(
        c / w for c, w in zip(phases["cold"]["total"], phases["warm"]["total"], strict=True))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--run", default=None,
                        help="a folder holding already trained single/ and portfolio/ runs")
    parser.add_argument("--out", default=str(RESULTS / "signal_latency.json"))
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    results = {"machine": machine_info(), "network": "default (2048, 1024, 512, 256)",
               "torch_threads": 1}
    with tempfile.TemporaryDirectory() as folder:
        for portfolio in (False, True):
            run_dir = (Path(args.run) / ("portfolio" if portfolio else "single") if args.run
                       else train_run(Path(folder), portfolio))
            row = time_signal(run_dir, args.repeats, Path(folder) / "bars-cache")
            results["portfolio" if portfolio else "single"] = row
            print(json.dumps(row))
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
