"""fastrl-signal's latency for 30 symbols on a CPU: load the newest bars, build features and
observations, ask the policy, size the orders.

Trains (or takes with ``--run``) a run over the 30 bundled daily symbols with the default
(2048, 1024, 512, 256) network, one update only: latency does not depend on what the agent
learned. The bars come from a user's feed: a folder of 30 plain CSVs (the bundled files,
decompressed, ~4,400 rows each). Then times, ``--repeats`` times each and interleaved in one
process so every case sees the same machine load (imports and the checkpoint load excluded,
they are paid once per command), ``load_live_bars`` (read and validate the 30 files),
``make_signal`` (features of every bar with the run's normaliser, the simulator's
observation, one policy call, the orders) and both together, in three cases:

- ``warm``: every file unchanged since the last call (the bars cache serves them);
- ``daily``: every file gained one bar since the cached version (the cache is restored,
  untimed, to the bars of the files without their last row; the timed call reads the full
  files: only the appended rows are parsed, and the grown entries are written);
- ``cold``: no cache (``FASTRL_BARS_CACHE=off``): every file parsed whole.

Also the portfolio kind (one policy over all 30 symbols). Reports medians. The machine is
shared with other jobs, so single calls vary; the medians are what is compared. Writes
bench/results/signal_latency.json. Target: under 1 s for the whole decision.
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
from fastrl.env_config import EnvConfig

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


CASES = ("warm", "daily", "cold")


def write_feed(folder: Path, symbols: list[str]) -> tuple[Path, dict[str, bytes]]:
    """A feed folder of the bundled daily files as plain CSVs, each without its last line;
    returns it and every file's full text (write it to add the last bar)."""
    import gzip

    from fastrl.data.loaders import BUNDLED_DIR

    feed = folder / "feed"
    feed.mkdir(parents=True, exist_ok=True)
    full = {}
    for symbol in symbols:
        text = gzip.decompress((BUNDLED_DIR / "daily" / f"{symbol}.csv.gz").read_bytes())
        full[symbol] = text
        cut = text.rstrip(b"\n").rfind(b"\n") + 1  # without the last row
        (feed / f"{symbol}.csv").write_bytes(text[:cut])
    return feed, full


def time_signal(run_dir: Path, repeats: int, folder: Path) -> dict:
    """Times the decision ``repeats`` times in each of the three cases, interleaved."""
    import os
    import shutil

    from fastrl.live.bars import load_live_bars
    from fastrl.live.run import open_run
    from fastrl.live.signal import make_signal

    started = time.perf_counter()
    run = open_run(run_dir)
    open_s = time.perf_counter() - started
    work = folder / f"latency-{run_dir.name}"
    feed, full = write_feed(work, list(run.symbols))
    day_before, daily, warm = (work / name
                               for name in ("cache-day-before", "cache-daily", "cache-warm"))
    os.environ["FASTRL_BARS_CACHE"] = str(day_before)
    load_live_bars(run, feed)  # the cache as it stood the day before: no last bar
    for symbol, text in full.items():  # the new bar arrives
        (feed / f"{symbol}.csv").write_bytes(text)
    os.environ["FASTRL_BARS_CACHE"] = str(warm)
    load_live_bars(run, feed)  # fills the warm cache
    phases: dict[str, dict[str, list[float]]] = {
        case: {"load": [], "decide": [], "total": []} for case in CASES}
    for _ in range(repeats):
        for case in CASES:
            if case == "daily":  # untimed: back to the day before
                shutil.rmtree(daily, ignore_errors=True)
                shutil.copytree(day_before, daily)
            os.environ["FASTRL_BARS_CACHE"] = {"warm": str(warm), "daily": str(daily),
                                               "cold": "off"}[case]
            t0 = time.perf_counter()
            bars = load_live_bars(run, feed)
            t1 = time.perf_counter()
            signal = make_signal(run, bars, asof="2022-11-09", capital=10_000_000)
            t2 = time.perf_counter()
            phases[case]["load"].append(t1 - t0)
            phases[case]["decide"].append(t2 - t1)
            phases[case]["total"].append(t2 - t0)
    os.environ.pop("FASTRL_BARS_CACHE", None)
    row = {"symbols": len(run.symbols), "kind": signal.kind, "open_run_s": open_s,
           "repeats": repeats}
    for case, times in phases.items():
        row[case] = {"load_bars_s": statistics.median(times["load"]),
                     "make_signal_s": statistics.median(times["decide"]),
                     "total_s": statistics.median(times["total"]),
                     "total_max_s": max(times["total"]),
                     "under_1s": statistics.median(times["total"]) < 1.0}
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
               "torch_threads": 1,
               "note": "medians of interleaved repeats on a machine shared with other jobs; "
                       "bars from a folder of 30 plain CSVs (the bundled daily files)"}
    with tempfile.TemporaryDirectory() as folder:
        for portfolio in (False, True):
            run_dir = (Path(args.run) / ("portfolio" if portfolio else "single") if args.run
                       else train_run(Path(folder), portfolio))
            row = time_signal(run_dir, args.repeats, Path(folder))
            results["portfolio" if portfolio else "single"] = row
            print(json.dumps(row))
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
