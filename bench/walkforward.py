"""Walk-forward bench: the 30 bundled daily symbols, one (64, 64) policy per window for all of
them, retrained every quarter from 2012 to the start of the test days, fast against baseline.

    python bench/walkforward.py            # the full bench (target: under 45 min on 2 cores)
    python bench/walkforward.py --quick    # 2 symbols from 2022, small budget (a smoke run)
    python bench/walkforward.py --configs fast baseline buy_and_hold voltarget momentum ma10 ma200
    python bench/walkforward.py --portfolio --configs fast baseline ew_monthly inverse_vol \
        min_variance xs_momentum

``--portfolio``: one policy allocates over the symbols with two years of history before the
start (a portfolio trades every symbol in every window, so a later listing is left out and
named), judged against equal weight bought and held; results/walkforward_portfolio.json.

``--configs`` takes presets and config files (trained per window) and rules of
fastrl.rules (rungs: traded on the same days, never trained); SUMMARY.md gets each config's
ladder.

Writes results/walkforward.json (every table of the report, the time of each phase) and
results/walkforward/ (report.md, windows.csv and the plots; report.html and oos_returns.csv
stay in the run folder). The run folder with the trained windows is kept
(runs/bench-walkforward), so an interrupted bench resumes; delete it to start over.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fastrl.config import build_config  # noqa: E402
from fastrl.data import available, load_bars  # noqa: E402
from fastrl.ladder import ladder_note, ladder_table  # noqa: E402
from fastrl.markets import kind_overrides  # noqa: E402
from fastrl.walkforward.plan import WalkForwardSpec  # noqa: E402
from fastrl.walkforward.report import write_walkforward_report  # noqa: E402
from fastrl.walkforward.run import run_walkforward  # noqa: E402
from fastrl.walkforward.rungs import split_compare  # noqa: E402

from bench_common import RESULTS, machine_info, write_json  # noqa: E402

NETWORK = "[64,64]"
# a portfolio symbol's history before the start: its features' warm-up, a year of training
# and the validation days fit in two years
HISTORY_DAYS = 504
# --quick: a smoke run of every phase (train, trade, analyse, report) on a few windows
QUICK_SYMBOLS = 2
QUICK_START = "2022-01-03"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--timesteps", type=int, default=None,
                        help="env steps per window (default 32,768; quick 8,192)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--start", default=None, help="first traded day (default 2012-01-02)")
    parser.add_argument("--configs", nargs="+", default=["fast", "baseline"],
                        help="presets or config files (a tune best.yaml), and rules "
                        "(fastrl.rules: the ladder's rungs, not trained)")
    parser.add_argument("--run-dir", default=None)
    parser.add_argument("--portfolio", action="store_true",
                        help="one portfolio policy over the symbols listed two years before the "
                        "start")
    args = parser.parse_args()
    symbols = available("1d")
    if args.quick:
        symbols = symbols[:QUICK_SYMBOLS]
    timesteps = args.timesteps or (8192 if args.quick else 32768)
    start = args.start or (QUICK_START if args.quick else "2012-01-02")
    left_out: list[str] = []
    if args.portfolio:
        symbols, left_out = listed_before(symbols, start)
        if left_out:
            print(f"portfolio: leaving out {', '.join(left_out)} (less than "
                  f"{HISTORY_DAYS} trading days before {start})", flush=True)
    overrides = bench_overrides(symbols, timesteps, args.portfolio)
    agents, rungs = split_compare(args.configs)
    if not agents:
        parser.error(f"--configs names only rules ({', '.join(rungs)}): add a preset or file")
    configs = {}
    for entry in agents:
        path = Path(entry)
        if path.is_file():
            configs[path.stem] = build_config(None, str(path), overrides,
                                              [f"hidden_sizes={NETWORK}"])
        else:
            configs[entry] = build_config(entry, None, overrides, [f"hidden_sizes={NETWORK}"])
    spec = WalkForwardSpec(step=63, start=start, val_days=120, test_days=30,
                           late_listings="error" if args.portfolio else "join")
    name = ("walkforward_portfolio" if args.portfolio else "walkforward") + (
        "_quick" if args.quick else "")
    run_dir = Path(args.run_dir or Path("runs") / f"bench-{name}")
    started = time.perf_counter()
    load_start = list(os.getloadavg())
    run = run_walkforward(configs, spec, workers=args.workers, run_dir=run_dir,
                          progress=lambda line: print(line, flush=True), rungs=rungs)
    report_dir = RESULTS / name
    analysed = time.perf_counter()
    payload = write_walkforward_report(run, run_dir)
    wall = time.perf_counter() - started
    report_dir.mkdir(parents=True, exist_ok=True)
    for file in ("report.md", "equity.png", "rolling_sharpe.png",
                 "drawdown.png", "windows.csv"):
        shutil.copy(run_dir / file, report_dir / file)
    frame = run.windows_frame()
    training = float(frame["seconds"].sum())
    result = {
        "machine": machine_info(),
        "setup": {"symbols": symbols, "left_out": left_out, "portfolio": args.portfolio,
                  "timesteps_per_window": timesteps, "network": NETWORK,
                  "workers": args.workers, "start": start, "step": spec.step,
                  "configs": list(configs), "rungs": run.rungs,
                  "windows": len(run.windows)},
        "wall_seconds": wall,  # this invocation: train (what is not on disk), trade, report
        "phase_seconds": {"train": run.train_seconds,
                          "trade": run.seconds - run.train_seconds,
                          "analyse_and_report": time.perf_counter() - analysed},
        "training_seconds": training,  # summed over windows (workers run them side by side)
        "windows_resumed": run.resumed,
        "load_average": {"start": load_start, "end": list(os.getloadavg())},
        "report": payload,
    }
    path = write_json(name, result)
    print(markdown(result))
    print(f"wrote {path} and {report_dir}")
    return 0


def bench_overrides(symbols: list[str], timesteps: int, portfolio: bool) -> dict[str, Any]:
    """The config keys every walk-forward bench trains with: the symbols, the budget per
    window, 64 envs x 64 steps a rollout, the CPU, and the market kind."""
    return {"data.symbols": symbols, "total_timesteps": timesteps, "num_envs": 64,
            "num_steps": 64, "minibatch_size": 1024, "device": "cpu",
            **(kind_overrides("portfolio") if portfolio else {})}


def listed_before(symbols: list[str], start: str) -> tuple[list[str], list[str]]:
    """(the symbols with HISTORY_DAYS bars before ``start``, the others)."""
    bars = load_bars(symbols, "1d")
    day = pd.Timestamp(start)
    kept = [s for s in symbols if int((bars[s].index < day).sum()) >= HISTORY_DAYS]
    return kept, [s for s in symbols if s not in kept]


def markdown(data: dict) -> str:
    """The SUMMARY.md section."""
    setup, report = data["setup"], data["report"]
    what = (f"one {setup['network']} portfolio policy per window allocating over them and "
            "cash, against equal weight bought and held"
            + (f" ({', '.join(setup['left_out'])} left out: listed too late)"
               if setup.get("left_out") else "")
            if setup.get("portfolio") else
            f"one {setup['network']} policy per window for all of them")
    lines = [f"{len(setup['symbols'])} daily symbols, {what}, retrained every "
             f"{setup['step']} trading days from "
             f"{setup['start']} ({setup['windows']} windows, {setup['timesteps_per_window']:,} "
             f"env steps each, {setup['workers']} workers). Window training took "
             f"{data['training_seconds'] / 60:.1f} min summed over the workers."]
    phases = data.get("phase_seconds")
    if phases:
        resumed = data.get("windows_resumed", 0)
        lines[-1] += (f" This invocation: {data['wall_seconds'] / 60:.1f} min wall, training "
                      f"{phases['train'] / 60:.1f} min"
                      f"{f' ({resumed} windows loaded from an earlier run)' if resumed else ''}"
                      f", trading {phases['trade'] / 60:.1f} min, statistics and report "
                      f"{phases['analyse_and_report'] / 60:.1f} min.")
    load = data.get("load_average")
    if load:
        lines[-1] += (f" Load average (1 min) {load['start'][0]:.1f} at the start and "
                      f"{load['end'][0]:.1f} at the end on {data['machine'].get('cores', '?')} "
                      "cores: above the core count, other jobs shared the machine.")
    lines.append("")
    lines += ["| config | pooled agent Sharpe ± SE | pooled B&H Sharpe ± SE | "
              "agent - B&H a year (p) | symbols ahead at 90% (raw / Holm / BH) | cost break-even |",
              "|---|---|---|---|---|---|"]
    for name, analysis in report["configs"].items():
        pooled = analysis["pooled"]
        agent, bench = pooled["agent"], pooled["buy_and_hold"]
        wins = analysis["wins"]
        breakeven = analysis["costs"]["breakeven_multiple"]
        p_value = pooled["versus"]["p_value"]
        lines.append(
            f"| {name} | {agent['sharpe']:+.2f} ± {agent['se']:.2f} | "
            f"{bench['sharpe']:+.2f} ± {bench['se']:.2f} | "
            f"{100 * pooled['active_annual_mean']:+.1f}% "
            f"({'n/a' if p_value is None else f'{p_value:.3f}'})"
            f" | {wins['raw']} / {wins['holm']} / "
            f"{wins['bh']} of {len(analysis['symbols'])} | "
            f"{'none' if breakeven is None else f'{float(breakeven):.2f}x'} |")
    lines.append("")
    for name, analysis in report["configs"].items():
        lines.append(f"- **{name}**: {analysis['verdict']}.")
    for name, result in report.get("ladders", {}).items():
        header, rows = ladder_table(result)
        lines += ["", f"The ladder of {name} (pooled, the same days, costs and market "
                  "rules):", "",
                  "| " + " | ".join(header) + " |", "|---|---|---|---|",
                  *("| " + " | ".join(row) + " |" for row in rows), "",
                  f"- {ladder_note(result)}."]
    for comparison in report["comparisons"]:
        low = comparison["mean_diff_low"]
        lines.append(f"- {comparison['verdict']}; one-sided 90% lower bound "
                     f"{'n/a' if low is None else f'{100 * low:+.1f}%'} a year.")
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
