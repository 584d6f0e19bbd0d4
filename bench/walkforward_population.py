"""Windows as members against the process pool, on the walk-forward bench's setup.

The 30 bundled daily symbols, one (64, 64) policy per window retrained every quarter from
2012 (42 windows), 32,768 env steps a window: trained once by today's process pool
(``--engine pool --workers 2``: a lone Trainer per window) and then as members of
populations (``--engine population``) in the layouts a user can pick on 2 cores. Every
layout must give each window the pool's chosen update and the pool's trades; the table is
the training phase's wall time (trading, the same for all, is timed once).

    python bench/walkforward_population.py            # the full comparison (~15 min)
    python bench/walkforward_population.py --quick    # 2 symbols from 2022 (a smoke run)

Writes results/walkforward_population.json and prints the SUMMARY.md table.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fastrl.config import build_config  # noqa: E402
from fastrl.data import available  # noqa: E402
from fastrl.walkforward.plan import WalkForwardSpec  # noqa: E402
from fastrl.walkforward.run import run_walkforward  # noqa: E402
from walkforward import NETWORK, QUICK_START, QUICK_SYMBOLS, bench_overrides  # noqa: E402

from bench_common import machine_info, write_json  # noqa: E402

# (label, run_walkforward keywords): the pool first, the baseline every layout is held to
LAYOUTS = [
    ("pool, 2 workers", {"engine": "pool", "workers": 2}),
    ("population, 1 process", {"engine": "population", "workers": 1}),
    ("population, 1 process x 2 threads", {"engine": "population", "workers": 1,
                                           "torch_threads": 2}),
    ("population, 2 workers", {"engine": "population", "workers": 2}),
]


def same_trades(a: Any, b: Any) -> dict[str, Any]:
    """Whether every window chose the same update and every record made the same trades."""
    chosen = all(a.trained[k].chosen_update == b.trained[k].chosen_update
                 and a.trained[k].updates == b.trained[k].updates for k in a.trained)
    trades = all(np.array_equal(a.records[k]["position"].to_numpy(),
                                b.records[k]["position"].to_numpy()) for k in a.records)
    equity = max(float(np.max(np.abs(b.records[k]["agent_equity"].to_numpy()
                                     / a.records[k]["agent_equity"].to_numpy() - 1)))
                 for k in a.records)
    return {"chosen_updates_equal": chosen, "positions_equal": trades,
            "max_equity_relative_difference": equity}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--timesteps", type=int, default=None,
                        help="env steps per window (default 32,768; quick 8,192)")
    parser.add_argument("--config", default="fast", help="the preset every window trains")
    parser.add_argument("--layouts", nargs="+", type=int, default=None,
                        help="indices of the layouts to run after the pool (default all)")
    parser.add_argument("--device", default="cpu",
                        help="where the populations train (cuda: one population on the GPU "
                        "against the CPU pool; bench/gpu_check.sh walkforward)")
    args = parser.parse_args()
    symbols = available("1d")[:QUICK_SYMBOLS] if args.quick else available("1d")
    timesteps = args.timesteps or (8192 if args.quick else 32768)
    start = QUICK_START if args.quick else "2012-01-02"
    config = build_config(args.config, None, bench_overrides(symbols, timesteps, False),
                          [f"hidden_sizes={NETWORK}"])
    spec = WalkForwardSpec(step=63, start=start, val_days=120, test_days=30,
                           late_listings="join")
    chosen = [LAYOUTS[0]] + [LAYOUTS[i] for i in (args.layouts or range(1, len(LAYOUTS)))]
    if args.device != "cpu":
        chosen = [LAYOUTS[0], (f"population on {args.device}", {
            "engine": "population", "workers": 1, "configs": {args.config: build_config(
                args.config, None, {**bench_overrides(symbols, timesteps, False),
                                    "device": args.device}, [f"hidden_sizes={NETWORK}"])}})]
    rows, runs = [], []
    load_start = list(os.getloadavg())
    for label, keywords in chosen:
        started = time.perf_counter()
        keywords = dict(keywords)
        configs = keywords.pop("configs", {args.config: config})
        run = run_walkforward(configs, spec, **keywords)
        wall = time.perf_counter() - started
        row = {"layout": label, **keywords, "device": str(next(iter(configs.values())).device),
               "train_seconds": run.train_seconds,
               "trade_seconds": run.seconds - run.train_seconds, "wall_seconds": wall,
               "windows": len(run.windows),
               "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
               "peak_children_rss_mib":
                   resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}
        if runs:
            row.update(same_trades(runs[0], run))
            row["speedup_vs_pool"] = runs[0].train_seconds / run.train_seconds
        rows.append(row)
        runs.append(run)
        print(f"{label}: training {run.train_seconds:.1f} s", flush=True)
    result = {"machine": machine_info(),
              "setup": {"symbols": len(symbols), "windows": len(runs[0].windows),
                        "timesteps_per_window": timesteps, "network": NETWORK,
                        "config": args.config, "start": start, "step": spec.step},
              "load_average": {"start": load_start, "end": list(os.getloadavg())},
              "layouts": rows}
    name = "walkforward_population" + ("" if args.device == "cpu" else f"_{args.device}")
    path = write_json(name + ("_quick" if args.quick else ""), result)
    print(markdown(result))
    print(f"wrote {path}")
    return 0


def markdown(data: dict) -> str:
    """The SUMMARY.md section."""
    setup = data["setup"]
    lines = [f"{setup['symbols']} daily symbols, {setup['windows']} windows, "
             f"{setup['network']} {setup['config']}, {setup['timesteps_per_window']:,} env "
             f"steps a window, on {data['machine'].get('cores', '?')} cores (load average "
             f"{data['load_average']['start'][0]:.1f} at the start, "
             f"{data['load_average']['end'][0]:.1f} at the end).", "",
             "| layout | training (s) | vs the pool | same chosen updates | same trades | "
             "max equity difference |", "|---|---|---|---|---|---|"]
    for row in data["layouts"]:
        same = "-" if "positions_equal" not in row else (
            "yes" if row["chosen_updates_equal"] else "NO")
        trades = "-" if "positions_equal" not in row else (
            "yes" if row["positions_equal"] else "NO")
        diff = "-" if "max_equity_relative_difference" not in row \
            else f"{row['max_equity_relative_difference']:.1e}"
        speed = f"{row['speedup_vs_pool']:.2f}x" if "speedup_vs_pool" in row else "1x"
        lines.append(f"| {row['layout']} | {row['train_seconds']:.1f} | {speed} | {same} | "
                     f"{trades} | {diff} |")
    return "\n".join(lines)


if __name__ == "__main__":
    pd.set_option("display.width", 120)
    sys.exit(main())
