"""Walk-forward tuning on real bars (issue 34): tuned on the years before 2017, confirmed after.

    python bench/tune_walkforward.py            # the full bench (hours on 2 cores)
    python bench/tune_walkforward.py --smoke    # 2 symbols, 2 trials, a tiny budget

The study is ``fastrl-tune --objective walkforward --select-until 2017-01-01`` on the 30
bundled daily symbols: a (64, 64) network, 32,768 env steps a window, ``--trials 32 --batch
8``, the first traded day chosen so that ``--windows 20`` quarterly windows trade before the
date (:func:`start_for_windows`). The space is the shipped one without its shape knobs
(:data:`fastrl.tune.batched.SHAPE_KNOBS`: width, depth, rollout length, minibatches), as
``bench/tune_batch.py`` fixes them: every trial keeps the (64, 64) network and the
walk-forward benches' rollout, and a batch is one population.

Its report (:mod:`fastrl.tune.report_walkforward`) confirms the winner on the windows
trading from 2017 on, which no trial traded, on fresh seeds, beside the fast and baseline
presets, the classical rules and buy-and-hold, with paired 90% intervals, and gives the
study's DSR (every trial counted) and PBO (over the windows). It also measures "steps to
the baseline's score": per confirmation window and seed, the env steps the tuned config
needs to first reach the baseline's best validation Sharpe, over the steps the baseline
needed (median, 90% bootstrap interval).

The bench runs the study with ``--no-report`` (its time is the study's: the issue's target
is under an hour on 2 cores), then the same command with ``--resume``, which runs no trial
and writes the report with the confirmation (timed apart). It copies report.json into
results/tune_walkforward.json (``_smoke`` for a smoke run) with the setup and the times;
SUMMARY.md's section is :func:`markdown`. The study folder (runs/bench-tune-walkforward*)
is kept: a rerun resumes it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fastrl.data import available, load_bars  # noqa: E402
from fastrl.walkforward.plan import DEFAULT_STEP, trading_calendar  # noqa: E402

from bench_common import machine_info, write_json  # noqa: E402

NETWORK = "[64,64]"
SELECT_UNTIL = "2017-01-01"
# the walk-forward benches' rollout (bench/walkforward.py's bench_overrides), on the CPU
FULL_SET = [f"hidden_sizes={NETWORK}", "num_envs=64", "num_steps=64", "minibatch_size=1024",
            "device=cpu"]
SMOKE = {"symbols": 2, "select_until": "2022-01-03", "windows": 2, "trials": 2, "batch": 2,
         "timesteps": 1024, "confirm_seeds": 2,
         "set": ["hidden_sizes=[16,16]", "num_envs=8", "num_steps=32", "minibatch_size=128",
                 "device=cpu"]}


def start_for_windows(bars: dict[str, pd.DataFrame], until: str, windows: int,
                      step: int = DEFAULT_STEP) -> str:
    """The first traded day that leaves exactly ``windows`` windows of ``step`` trading days
    before ``until`` (the next window starts on the first trading day on or after it, where
    the confirmation's first window starts). ValueError when the calendar is too short."""
    calendar = trading_calendar(bars)
    end = int(calendar.searchsorted(pd.Timestamp(until)))
    start = end - windows * step
    if start < 0:
        raise ValueError(f"--windows {windows}: the bars hold {end} trading days before "
                         f"{until}, fewer than {windows} x {step}")
    return str(calendar[start].date())


def tune_argv(args: argparse.Namespace, symbols: list[str], start: str,
              run_dir: Path) -> list[str]:
    """The fastrl-tune command of the study."""
    sets = SMOKE["set"] if args.smoke else FULL_SET
    return ["--symbols", *symbols, "--objective", "walkforward",
            "--select-until", args.select_until, "--start", start,
            "--trials", str(args.trials), "--batch", str(args.batch),
            "--timesteps", str(args.timesteps), "--seeds", str(args.seeds),
            "--confirm-seeds", str(args.confirm_seeds), "--sampler-seed", str(args.sampler_seed),
            "--set", *sets, "--space", str(space_file(run_dir)),
            "--run-dir", str(run_dir), "--study", run_dir.name,
            "--window-workers", str(args.workers)]


def space_file(run_dir: Path) -> Path:
    """The shipped space without the shape knobs, written beside the study folder (the
    folder itself is the CLI's: its existence means a study to resume)."""
    from fastrl.tune.batched import SHAPE_KNOBS
    from fastrl.tune.space import DEFAULT_SPACE

    space = yaml.safe_load(DEFAULT_SPACE.read_text(encoding="utf-8"))
    path = run_dir.parent / f"{run_dir.name}.space.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({k: v for k, v in space.items() if k not in SHAPE_KNOBS},
                                   sort_keys=False), encoding="utf-8")
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", "--quick", action="store_true", dest="smoke",
                        help="2 symbols, 2 trials, a tiny budget (checks the machinery only)")
    parser.add_argument("--trials", type=int, default=None, help="default 32 (smoke 2)")
    parser.add_argument("--batch", type=int, default=None, help="default 8 (smoke 2)")
    parser.add_argument("--timesteps", type=int, default=None,
                        help="env steps a window (default 32,768; smoke 1,024)")
    parser.add_argument("--windows", type=int, default=None,
                        help="selection windows before the date (default 20; smoke 2)")
    parser.add_argument("--seeds", type=int, default=1, help="search seeds a trial (default 1)")
    parser.add_argument("--confirm-seeds", type=int, default=None,
                        help="fresh seeds a confirmed config (default 3; smoke 2)")
    parser.add_argument("--select-until", default=None,
                        help=f"default {SELECT_UNTIL} (smoke {SMOKE['select_until']})")
    parser.add_argument("--sampler-seed", type=int, default=0)
    parser.add_argument("--run-dir", default=None)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="processes a chunk's windows train in (fastrl-tune "
                        "--window-workers; default one per core)")
    args = parser.parse_args()
    defaults = ({k: SMOKE[k] for k in ("trials", "batch", "timesteps", "windows",
                                       "confirm_seeds", "select_until")} if args.smoke else
                {"trials": 32, "batch": 8, "timesteps": 32768, "windows": 20,
                 "confirm_seeds": 3, "select_until": SELECT_UNTIL})
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    symbols = available("1d")[:SMOKE["symbols"]] if args.smoke else available("1d")
    start = start_for_windows(load_bars(symbols, "1d"), args.select_until, args.windows)
    name = "tune_walkforward" + ("_smoke" if args.smoke else "")
    run_dir = Path(args.run_dir or Path("runs") / f"bench-{name.replace('_', '-')}")
    argv = tune_argv(args, symbols, start, run_dir)
    result = run(argv, run_dir)
    result.update({"machine": machine_info(),
                   "setup": {"symbols": symbols, "select_until": args.select_until,
                             "start": start, "windows": args.windows, "step": DEFAULT_STEP,
                             "trials": args.trials, "batch": args.batch,
                             "timesteps_per_window": args.timesteps, "seeds": args.seeds,
                             "confirm_seeds": args.confirm_seeds, "smoke": args.smoke,
                             "network": (SMOKE["set"] if args.smoke else FULL_SET)[0]
                             .split("=", 1)[1],
                             "command": "fastrl-tune " + " ".join(argv)}})
    path = write_json(name, result)
    print(markdown(result))
    print(f"wrote {path}")
    return 0


def run(argv: list[str], run_dir: Path) -> dict[str, Any]:
    """The study (``--no-report``), then its report (``--resume``): report.json and the
    wall time of each, with the load average around them."""
    from fastrl.cli.tune import main as tune_main

    load_start = list(os.getloadavg())
    resumed = run_dir.exists()
    started = time.perf_counter()
    code = tune_main([*argv, "--no-report", *(["--resume"] if resumed else [])])
    if code:
        raise SystemExit(f"fastrl-tune exited {code}")
    study_seconds = time.perf_counter() - started
    started = time.perf_counter()
    code = tune_main([*argv, "--resume"])
    if code:
        raise SystemExit(f"fastrl-tune --resume (the report) exited {code}")
    report_seconds = time.perf_counter() - started
    report = json.loads((run_dir / "report.json").read_text())
    shutil.copy(run_dir / "report.md", run_dir / "report_bench.md")
    return {"study": report, "study_seconds": study_seconds, "study_resumed": resumed,
            "report_seconds": report_seconds,
            "load_average": {"start": load_start, "end": list(os.getloadavg())}}


def _pct(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{100 * value:+.1f}%"


def _interval(entry: dict[str, Any] | None) -> str:
    if entry is None:
        return "0 (the benchmark)"
    ci = entry.get("ci")
    return _pct(entry["mean"]) + (f" [{_pct(ci[0])}, {_pct(ci[1])}]" if ci else "")


def _p(entry: dict[str, Any]) -> str:
    p, holm = entry.get("p"), entry.get("p_holm")
    return ("n/a" if p is None else f"{p:.3f}") + ("" if holm is None else f" ({holm:.3f})")


def markdown(data: dict[str, Any]) -> str:
    """The SUMMARY.md section."""
    setup, study = data["setup"], data["study"]
    conf, gates, steps = study["confirmation"], study["gates"], study["steps_to_baseline"]
    best = study["best"]
    load = data["load_average"]
    lines = [
        f"{len(setup['symbols'])} daily symbols, one {setup['network']} policy per window for "
        "all of "
        f"them, retrained every {setup['step']} trading days from {setup['start']} "
        f"({setup['windows']} selection windows before {setup['select_until']}, "
        f"{setup['timesteps_per_window']:,} env steps each). The study: {study['n_trials']} "
        f"trials ({study['states']}), --batch {setup['batch']}, {setup['seeds']} seed(s): "
        f"**{data['study_seconds'] / 60:.1f} min** on {data['machine'].get('cores', '?')} "
        f"cores (target < 60 min){' (resumed)' if data.get('study_resumed') else ''}; the "
        f"confirmation and report {data['report_seconds'] / 60:.1f} min. Load average "
        f"{load['start'][0]:.1f} at the start and {load['end'][0]:.1f} at the end.", "",
        f"Winner: trial {best['number']}, {_pct(best['score'])} a year over buy-and-hold "
        f"± {_pct(best['se']).lstrip('+')} on the selection windows. Confirmation on "
        f"{len(conf['windows'])} windows ({conf['first_day']} to {conf['last_day']}), "
        f"{conf['seeds']} fresh seeds:", "",
        "| config | mean return over buy-and-hold a year [90%] | tuned minus it a year [90%] "
        "| p (Holm) |", "|---|---|---|---|"]
    for row in conf["rows"]:
        versus = row["vs_candidate"]
        lines.append(f"| {row['config']} | {_interval(row['active'])} | "
                     f"{'-' if versus is None else _interval(versus)} | "
                     f"{'-' if versus is None else _p(versus)} |")
    dsr, pbo = gates.get("dsr"), gates.get("pbo")
    lines += [
        "", f"- Verdict: {study['verdict']}.",
        f"- DSR of the winner over all {gates['n_trials']} trials ({gates['n_pruned']} pruned, "
        f"{gates['n_failed']} failed): {'n/a' if dsr is None else f'{dsr:.2f}'}; PBO over "
        f"{len(gates['pbo_windows'])} windows and {len(gates['pbo_trials'])} trials: "
        f"{'n/a' if pbo is None else f'{pbo:.2f}'}."]
    if steps.get("median_ratio") is None:
        lines.append(f"- Steps to the baseline's best validation Sharpe: not measured "
                     f"({steps['missing_curves']} window x seed pairs without validation "
                     "curves).")
    else:
        ci = steps.get("ci")
        lines.append(
            f"- Steps to the baseline's best validation Sharpe, tuned over baseline (median "
            f"of {len(steps['rows'])} window x seed pairs): **{steps['median_ratio']:.2f}**"
            + (f" [90%: {ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")
            + f"; the baseline's own median {steps['median_reference_steps']:,.0f} steps; "
            f"never reached in {steps['never_reached']} (below 1: the tuned config learns "
            "faster).")
    lines += [f"- Command: `{setup['command']}`", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
