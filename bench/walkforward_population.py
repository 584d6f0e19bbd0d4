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
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fastrl.config import build_config  # noqa: E402
from fastrl.data import available  # noqa: E402
from fastrl.walkforward.plan import WalkForwardSpec  # noqa: E402
from fastrl.walkforward.run import run_walkforward  # noqa: E402
from walkforward import NETWORK, QUICK_START, QUICK_SYMBOLS, bench_overrides  # noqa: E402

from bench_common import RESULTS, machine_info, write_json  # noqa: E402

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


def per_member_costs(config: Any, spec: WalkForwardSpec, sizes: tuple[int, ...] = (1, 8),
                     updates: int = 4) -> list[dict[str, Any]]:
    """Where a member's time goes, alone and beside others: milliseconds per member and
    update of the rollout, the PPO update and the validation backtest, for populations of
    ``sizes`` windows (spread over the plan) trained ``updates`` updates, one thread."""
    from fastrl.config import config_to_dict
    from fastrl.ppo.population import Population
    from fastrl.walkforward.members import population_config, window_members
    from fastrl.walkforward.plan import plan_windows
    from fastrl.walkforward.run import WindowJob, load_walkforward_bars

    bars = load_walkforward_bars(config)
    resolved = spec.resolved(config.data.freq)
    windows = plan_windows(bars, resolved, config.data.freq)
    values = {"bench": config_to_dict(config)}
    rows = []
    for size in sizes:
        picked = [windows[i] for i in np.linspace(0, len(windows) - 1, size).astype(int)]
        members = window_members(values, [WindowJob("bench", 0, w) for w in picked], bars, resolved)
        pop = Population([population_config(m.config, members[0].config) for m in members],
                         market=[m.market for m in members],
                         member_seeds=[m.seed for m in members])
        spent = {"rollout": 0.0, "update": 0.0, "validation": 0.0}
        for _ in range(updates):
            started = time.perf_counter()
            pop.collect()
            rolled = time.perf_counter()
            pop.global_step += pop.batch_size
            pop.set_step(pop.global_step)
            pop.ppo_update(pop.finish_rollout())
            updated = time.perf_counter()
            pop.validation_results(list(range(size)))
            done = time.perf_counter()
            spent["rollout"] += rolled - started
            spent["update"] += updated - rolled
            spent["validation"] += done - updated
        row = {f"{k}_ms": 1000 * v / (updates * size) for k, v in spent.items()}
        row["members"] = size
        row["total_ms"] = sum(row[f"{k}_ms"] for k in spent)
        rows.append(row)
    return rows


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
    parser.add_argument("--profile", action="store_true",
                        help="only the per-member costs (alone and in a population of 8), "
                        "added to the results file")
    args = parser.parse_args()
    symbols = available("1d")[:QUICK_SYMBOLS] if args.quick else available("1d")
    timesteps = args.timesteps or (8192 if args.quick else 32768)
    start = QUICK_START if args.quick else "2012-01-02"
    config = build_config(args.config, None, bench_overrides(symbols, timesteps, False),
                          [f"hidden_sizes={NETWORK}"])
    spec = WalkForwardSpec(step=63, start=start, val_days=120, test_days=30,
                           late_listings="join")
    if args.profile:
        torch.set_num_threads(1)
        name = "walkforward_population" + ("_quick" if args.quick else "")
        path = RESULTS / f"{name}.json"
        result = json.loads(path.read_text()) if path.exists() else {}
        result["per_member"] = {"machine": machine_info(),
                                "load_average": list(os.getloadavg()),
                                "rows": per_member_costs(config, spec)}
        write_json(name, result)
        print(profile_markdown(result["per_member"]))
        return 0
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


def profile_markdown(data: dict) -> str:
    """The per-member cost table."""
    lines = ["| members in the population | rollout | PPO update | validation | total "
             "(ms per member and update) |", "|---|---|---|---|---|"]
    for row in data["rows"]:
        lines.append(f"| {row['members']} | {row['rollout_ms']:.0f} | {row['update_ms']:.0f} | "
                     f"{row['validation_ms']:.0f} | {row['total_ms']:.0f} |")
    return "\n".join(lines)


def markdown(data: dict) -> str:
    """The SUMMARY.md section (the per-member costs after the layouts, when measured)."""
    tail = ["", profile_markdown(data["per_member"])] if "per_member" in data else []
    if "setup" not in data:
        return "\n".join(tail[1:])
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
    return "\n".join(lines + tail)


if __name__ == "__main__":
    pd.set_option("display.width", 120)
    sys.exit(main())
