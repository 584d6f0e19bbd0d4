"""Does tuning pay? A fastrl-tune study against both presets, and what the study costs.

    python bench/tune_payoff.py [--quick] [--tune-minutes 14] [--real-tune-minutes 5] [--seeds 10]

1. ``planted``: the planted-signal market of ``bench/convergence.py`` (its setup, target
   and helpers are imported, not copied): a study with the (64, 64)-class space below, one
   seed x one fold per trial, the shipped ``excess`` objective, ``--timesteps`` (default the
   presets' 196,608) per run, for at most ``--tune-minutes`` (the trials and the budget are
   reported). The winner, fast and baseline then train on ``--seeds`` fresh seeds (1000+,
   never used by the search) on *fresh data*: the same planted market generated with
   another data seed (``CONFIRM_DATA_SEED``), so neither the bars nor the validation slice
   the study chose on are reused. Env steps and wall seconds to 80% of that market's oracle
   validation Sharpe, ratios per seed pair and of upper medians with 90% bootstrap
   intervals, as convergence.py reports them. Target: the tuned config needs >= 3x fewer
   env steps than baseline and >= 2x fewer wall seconds, called met only when the *lower*
   90% bound clears it. Break-even: the study's own cost (every trial's env steps and its
   wall seconds) over what one future training run saves (baseline's median steps or
   seconds to the target minus the tuned config's): after that many runs tuning has paid.
2. ``real``: BPCL + HDFCLIFE (convergence.py's real setup: 250 validation / 120 test days),
   a shorter study; the winner and both presets on fresh seeds, their final policies on the
   test days beside buy-and-hold, with Sharpe error bars and PSR. No target.
3. Overhead: trials per hour of the planted study on this machine, and the share of each
   trial's wall time spent in study-storage calls (claim, suggest, report, should_prune,
   set_user_attr, tell) for the journal file and for a throwaway PostgreSQL server (when its
   binaries exist). Target: under 2% of a trial.

Writes ``bench/results/tune_payoff.json`` (``--quick``: ``tune_payoff_quick.json``) and
``tune_payoff.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from convergence import (  # noqa: E402
    PLANTED_SIGNAL_STRENGTH,
    ROLLOUT,
    format_ratio_of_medians,
    format_ratio_summary,
    format_test_sharpe,
    paired_ratios,
    planted_market,
    ratio_of_medians,
    real_market,
    run_config,
    shipped_timesteps,
    summarise_pairs,
    test_record,
    time_to,
    upper_median,
)

from bench_common import RESULTS, machine_info, write_json  # noqa: E402

HIDDEN = (64, 64)
CONFIGS = ("tuned", "fast", "baseline")
STEPS_TARGET = 3.0  # baseline / tuned env steps to 80% of the oracle
SECONDS_TARGET = 2.0
OVERHEAD_TARGET = 0.02
CONFIRM_DATA_SEED = 1  # the study searches the planted market of data seed 0
# the shipped space with (64, 64)-class networks: CPU-sized, like convergence.py's presets
SMALL_NETWORK = {"width": {"type": "categorical", "choices": [32, 64, 128]},
                 "depth": {"type": "int", "low": 1, "high": 2}}


def _set_options(overrides: dict[str, Any], torch_threads: int) -> list[str]:
    import json

    options = [f"{key}={json.dumps(value)}" for key, value in overrides.items()]
    return options + [f"hidden_sizes={list(HIDDEN)}", "device=cpu",
                      f"torch_threads={torch_threads}", "data.synthetic_seed=0",
                      f"data.synthetic_signal_strength={PLANTED_SIGNAL_STRENGTH}"]


def study_settings(market: Any, timesteps: int, torch_threads: int) -> dict[str, Any]:
    over = dict(market.overrides)
    return {"symbols": list(over.pop("data.symbols")), "freq": over.pop("data.freq"),
            "source": over.pop("data.source", "bundled"),
            "test_days": over.pop("data.test_days"), "val_days": over.pop("data.val_days"),
            "timesteps": timesteps, "seeds": 1, "folds": 1, "base_preset": "fast",
            "set_options": _set_options(over, torch_threads), "objective": "excess",
            "val_interval_steps": ROLLOUT}  # the presets' update size, as convergence.py


# --quick: short rollouts and many epochs are the slow corners; a smoke check skips them
QUICK_LIMITS = {"num_steps": {"type": "categorical", "choices": [64, 128]},
                "n_epochs": {"type": "int", "low": 1, "high": 4}}


def small_space(quick: bool = False) -> dict[str, Any]:
    from fastrl.tune.space import load_space, parse_knob

    space = load_space()
    changes = {**SMALL_NETWORK, **(QUICK_LIMITS if quick else {})}
    space.update({name: parse_knob(name, spec) for name, spec in changes.items()})
    return space


def run_study(market: Any, name: str, storage: Any, timesteps: int, minutes: float,
              max_trials: int, torch_threads: int, log: Any,
              quick: bool = False) -> tuple[Any, Any, float]:
    """A study on ``market`` for at most ``minutes`` (and ``max_trials``) in this process."""
    from fastrl.tune.storage import open_study
    from fastrl.tune.study import TrialRunner

    runner = TrialRunner(study_settings(market, timesteps, torch_threads), small_space(quick),
                         log=log)
    runner.markets[0] = market.splits  # the same splits convergence.py measures on
    study = open_study(storage, name, runner.settings, max_trials)
    started = time.perf_counter()
    runner.run(study, deadline=time.time() + 60 * minutes)
    return study, runner, time.perf_counter() - started


def overhead(runner: Any) -> dict[str, Any]:
    """Storage seconds over wall seconds per trial (median and worst)."""
    shares = [r.storage_seconds / r.wall_seconds for r in runner.records if r.wall_seconds > 0]
    return {"trials": len(shares), "median_share": float(np.median(shares)) if shares else None,
            "max_share": float(max(shares)) if shares else None,
            "median_storage_seconds": float(np.median([r.storage_seconds
                                                       for r in runner.records]))
            if runner.records else None,
            "median_trial_seconds": float(np.median([r.wall_seconds for r in runner.records]))
            if runner.records else None}


def configs_of(study: Any, runner: Any, market: Any, timesteps: int,
               torch_threads: int) -> dict[str, Any]:
    from fastrl.tune.space import config_for

    configs = {"tuned": config_for(study.best_trial.params, runner.base, timesteps)}
    for preset in ("fast", "baseline"):
        configs[preset] = run_config(preset, market, 0, timesteps, HIDDEN, torch_threads)
    return configs


def fresh_runs(configs: dict[str, Any], market: Any, seeds: int, log: Any,
               keep_agent: bool = False) -> dict[str, list[Any]]:
    from fastrl.tune.objective import CONFIRM_SEED_BASE, train_run

    runs: dict[str, list[Any]] = {name: [] for name in configs}
    for i in range(seeds):
        for name, config in configs.items():  # interleaved, so machine load hits all three
            run = train_run(config, market.splits, seed=CONFIRM_SEED_BASE + i, fold=0,
                            val_interval_steps=ROLLOUT, keep_agent=keep_agent)
            runs[name].append(run)
            log(f"  {market.name} {name:8s} seed {CONFIRM_SEED_BASE + i}: score "
                f"{run.score:+.2f}, final val Sharpe {run.final_sharpe:+.2f}")
    return runs


def speed(runs: dict[str, list[Any]], target: float) -> dict[str, Any]:
    """Steps and seconds to ``target`` per config; baseline/tuned and fast/tuned ratios."""
    reached: dict[str, dict[str, list]] = {}
    for name, rs in runs.items():
        # from the first update on, as convergence.py measures (step 0 is the untrained policy)
        pairs = [time_to({"steps": r.steps[1:], "seconds": r.seconds[1:],
                          "val_sharpe": r.sharpe[1:]}, target) for r in rs]
        reached[name] = {"steps": [p[0] for p in pairs], "seconds": [p[1] for p in pairs],
                         "total_steps": [r.steps[-1] for r in rs],
                         "total_seconds": [r.seconds[-1] for r in rs]}
    out: dict[str, Any] = {"reached": reached}
    for other in ("baseline", "fast"):
        for unit in ("steps", "seconds"):
            tuned, slow = reached["tuned"][unit], reached[other][unit]
            pairs = paired_ratios(tuned, slow, reached["tuned"][f"total_{unit}"],
                                  reached[other][f"total_{unit}"])
            out[f"{other}_over_tuned_{unit}"] = {
                "pairs": pairs, "summary": summarise_pairs(pairs),
                "ratio_of_medians": ratio_of_medians(tuned, slow),
                "tuned_upper_median": _finite(upper_median(tuned)),
                f"{other}_upper_median": _finite(upper_median(slow))}
    return out


def _finite(value: float) -> float | None:
    return None if not np.isfinite(value) else float(value)


def test_days(runs: dict[str, list[Any]], configs: dict[str, Any], market: Any) -> dict:
    from fastrl.markets.single.backtest import evaluate_agent

    return {name: [test_record(evaluate_agent(r.agent, market.splits.test, configs[name].env))
                   for r in rs] for name, rs in runs.items()}


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[str | None]:
    """A PostgreSQL server on a free localhost port (None without binaries or psycopg2)."""
    import importlib.util

    bindir = next((p for p in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
                   if (p / "initdb").is_file()), None)
    if bindir is None or importlib.util.find_spec("psycopg2") is None:
        yield None
        return
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    folder = Path(tempfile.mkdtemp(prefix="fastrl-bench-pg-", dir="/tmp"))
    if as_user:
        shutil.chown(folder, "postgres", "postgres")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    data = folder / "data"

    def run(*cmd: str) -> None:
        subprocess.run([*as_user, *cmd], check=True, capture_output=True, timeout=60)

    try:
        run(str(bindir / "initdb"), "-D", str(data), "--auth=trust", "-U", "postgres")
        run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(folder / "log"), "-w", "-o",
            f"-p {port} -k {folder} -c listen_addresses=127.0.0.1", "start")
        run(str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
            "tune")
        yield f"postgresql://postgres@127.0.0.1:{port}/tune"
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast",
                        "stop"], capture_output=True, timeout=60)
        shutil.rmtree(folder, ignore_errors=True)


def _verdict(speed: dict[str, Any], unit: str, target: float) -> str:
    """'steps 4.60x, 90% CI from 3.20x: met' for baseline / tuned: met only when the lower
    90% bound clears (is above) the target, not the point estimate."""
    medians = speed[f"baseline_over_tuned_{unit}"]["ratio_of_medians"]
    ratio, low = medians["ratio"], medians["ci90"][0]
    if ratio is None:
        return f"{unit}: undefined (neither median reached)"
    value = math.inf if ratio == "inf" else float(ratio)
    low_value = None if low is None else (math.inf if low == "inf" else float(low))
    bound = "" if low_value is None else (", 90% CI from inf" if math.isinf(low_value)
                                          else f", 90% CI from {low_value:.2f}x")
    shown = "inf" if math.isinf(value) else f"{value:.2f}x"
    met = low_value is not None and low_value > target  # a bound on the target does not clear it
    return f"{unit} {shown}{bound}: {'met' if met else 'not met'} (lower bound vs {target:g}x)"


def break_even(study_cost: float, speed: dict[str, Any], unit: str) -> dict[str, Any]:
    """Future training runs after which the study's cost in ``unit`` (env steps or wall
    seconds) is repaid by what each run saves: baseline's upper median to the target minus
    the tuned config's. Never, when the tuned config saves nothing (or a median was not
    reached)."""
    entry = speed[f"baseline_over_tuned_{unit}"]
    tuned, baseline = entry["tuned_upper_median"], entry["baseline_upper_median"]
    saved = None if tuned is None or baseline is None else baseline - tuned
    runs = study_cost / saved if saved is not None and saved > 0 else None
    return {"study_cost": study_cost, "saved_per_run": saved,
            "runs": None if runs is None else float(runs)}


def _break_even_text(entry: dict[str, Any], unit: str) -> str:
    if entry["runs"] is None:
        return (f"never in {unit} (the study cost {entry['study_cost']:,.0f}; a tuned run "
                "saves nothing measurable)")
    return (f"after {math.ceil(entry['runs']):,} runs in {unit} (the study cost "
            f"{entry['study_cost']:,.0f}, a run saves {entry['saved_per_run']:,.0f})")


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def markdown_summary(payload: dict[str, Any]) -> str:
    """Markdown of a tune_payoff.json payload (for SUMMARY.md)."""
    s = payload["settings"]
    p = payload["planted"]
    lines = [f"`python bench/tune_payoff.py{' --quick' if s['quick'] else ''}` on "
             f"{payload['machine'].get('cpu', '?')} ({payload['machine'].get('cores', '?')} "
             f"cores, {s['torch_threads']} torch threads), {payload['wall_seconds'] / 60:.0f} "
             "min.", "",
             f"**planted**: {p['description']}. Study: {p['study']['trials']} trials "
             f"({p['study']['states']}) in {p['study']['seconds'] / 60:.1f} min (budget "
             f"{s['tune_minutes']} min), {s['timesteps']:,} env steps per run, network "
             f"width {SMALL_NETWORK['width']['choices']} x depth 1-2; winner score "
             f"{p['study']['best_score']:.2f}. Then {s['seeds']} fresh seeds per config; "
             f"target {p['target_rule']} = {p['target']:.2f}.", "",
             "| vs tuned | env steps per seed pair | steps: ratio of medians (90% CI) | "
             "wall s per seed pair | wall s: ratio of medians (90% CI) |", "|---|---|---|---|---|"]
    for other in ("baseline", "fast"):
        st, sec = p["speed"][f"{other}_over_tuned_steps"], p["speed"][f"{other}_over_tuned_seconds"]
        names = {"slow": other, "quick": "tuned"}
        lines.append(f"| {other} / tuned | {format_ratio_summary(st['summary'], **names)} | "
                     f"{format_ratio_of_medians(st['ratio_of_medians'], **names)} | "
                     f"{format_ratio_summary(sec['summary'], **names)} | "
                     f"{format_ratio_of_medians(sec['ratio_of_medians'], **names)} |")
    reached = p["speed"]["reached"]
    lines += ["", "Reached the target: " + ", ".join(
        f"{name} {sum(x is not None for x in reached[name]['steps'])}/"
        f"{len(reached[name]['steps'])}" for name in CONFIGS) +
        f". Targets: baseline/tuned >= {STEPS_TARGET:g}x env steps and >= "
        f"{SECONDS_TARGET:g}x wall seconds (ratio of medians): "
        f"{_verdict(p['speed'], 'steps', STEPS_TARGET)}; "
        f"{_verdict(p['speed'], 'seconds', SECONDS_TARGET)}.", "",
        (f"Measured out of sample: the fresh seeds train and validate on {p['confirm_data']}."
         " Break-even, counting the study's own cost: "
         f"{_break_even_text(p['break_even']['steps'], 'env steps')}; "
         f"{_break_even_text(p['break_even']['seconds'], 'wall seconds')}."
         if "break_even" in p else "Measured in sample (an older result): the fresh seeds "
         "ran on the market and validation slice the study searched."), ""]
    r = payload["real"]
    lines += [f"**real**: {r['description']}. Study: {r['study']['trials']} trials in "
              f"{r['study']['seconds'] / 60:.1f} min; test days, final policies of "
              f"{s['real_seeds']} fresh seed(s) each:", "",
              "| config | test Sharpe ± SE [90% CI], PSR (per seed) |", "|---|---|"]
    for name in CONFIGS:
        lines.append(f"| {name} | " + "; ".join(format_test_sharpe(t) for t in r["test"][name])
                     + " |")
    bh = r["test"]["tuned"][0]
    lines += [f"| buy & hold | {format_test_sharpe(bh, 'buy_and_hold')} |", ""]
    o = payload["overhead"]
    lines += [f"**Overhead**: {o['trials_per_hour']:.0f} trials per hour (planted study, "
              f"{s['timesteps']:,} steps per trial). Study-storage calls per trial, median "
              f"(worst) share of the trial's wall time: journal file "
              f"{_pct(o['journal']['median_share'])} ({_pct(o['journal']['max_share'])})"]
    if o.get("postgresql"):
        lines[-1] += (f", PostgreSQL {_pct(o['postgresql']['median_share'])} "
                      f"({_pct(o['postgresql']['max_share'])})")
    else:
        lines[-1] += ", PostgreSQL not measured (no server binaries or psycopg2)"
    lines[-1] += f". Target: under {OVERHEAD_TARGET:.0%}."
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke check (< 2 minutes)")
    parser.add_argument("--tune-minutes", type=float, default=14.0)
    parser.add_argument("--real-tune-minutes", type=float, default=5.0)
    parser.add_argument("--max-trials", type=int, default=200)
    parser.add_argument("--seeds", type=int, default=10, help="fresh seeds on planted")
    parser.add_argument("--real-seeds", type=int, default=3, help="fresh seeds on real")
    parser.add_argument("--timesteps", type=int, default=None)
    parser.add_argument("--torch-threads", type=int, default=2, choices=(1, 2))
    args = parser.parse_args(argv)
    if args.quick:  # one trial, one seed, one update per run: checks the plumbing only
        args.tune_minutes, args.real_tune_minutes = 0.1, 0.1
        args.max_trials, args.seeds, args.real_seeds = 1, 1, 1
        args.timesteps = args.timesteps or ROLLOUT
    if args.tune_minutes > 20:
        parser.error("--tune-minutes: the benchmark's tuning budget is at most 20 minutes")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    import torch

    from fastrl.tune.storage import make_storage

    torch.set_num_threads(args.torch_threads)
    timesteps = args.timesteps or shipped_timesteps()
    started = time.perf_counter()

    def log(line: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)

    payload: dict[str, Any] = {"machine": machine_info(), "settings": {
        "quick": args.quick, "tune_minutes": args.tune_minutes,
        "real_tune_minutes": args.real_tune_minutes, "seeds": args.seeds,
        "real_seeds": args.real_seeds, "timesteps": timesteps,
        "torch_threads": args.torch_threads, "hidden_presets": list(HIDDEN),
        "space": "fastrl/tune/space.yaml with " + str(SMALL_NETWORK)}}
    with tempfile.TemporaryDirectory(prefix="fastrl-bench-tune-") as folder:
        market = planted_market()
        fresh = planted_market(seed=CONFIRM_DATA_SEED)  # fresh data, not only fresh seeds
        log(f"planted: {market.description}; study for up to {args.tune_minutes} min")
        study, runner, seconds = run_study(market, "planted", make_storage(None, folder),
                                           timesteps, args.tune_minutes, args.max_trials,
                                           args.torch_threads, log, args.quick)
        states: dict[str, int] = {}
        for t in study.get_trials():
            states[t.state.name.lower()] = states.get(t.state.name.lower(), 0) + 1
        finished = sum(v for k, v in states.items() if k in ("complete", "pruned", "fail"))
        configs = configs_of(study, runner, fresh, timesteps, args.torch_threads)
        runs = fresh_runs(configs, fresh, args.seeds, log)
        planted_speed = speed(runs, fresh.target.value)
        study_steps = float(sum(r.env_steps for r in runner.records))
        payload["planted"] = {
            "description": market.description, "target": fresh.target.value,
            "target_rule": fresh.target.label, "references": fresh.references,
            "search_references": market.references,
            "confirm_data": f"the planted market of data seed {CONFIRM_DATA_SEED} (the study "
                            "searched data seed 0)",
            "break_even": {"steps": break_even(study_steps, planted_speed, "steps"),
                           "seconds": break_even(seconds, planted_speed, "seconds")},
            "study": {"trials": finished, "states": ", ".join(f"{v} {k}" for k, v in
                                                               states.items()),
                      "seconds": seconds, "best_score": study.best_value,
                      "best_params": study.best_trial.params},
            "speed": planted_speed,
            "curves": {name: [{"steps": r.steps, "sharpe": r.sharpe, "seconds": r.seconds}
                              for r in rs] for name, rs in runs.items()},
        }
        overheads = {"trials_per_hour": 3600.0 * finished / seconds,
                     "journal": overhead(runner)}

        real = real_market()
        log(f"real: {real.description}; study for up to {args.real_tune_minutes} min")
        rstudy, rrunner, rseconds = run_study(real, "real", make_storage(None, folder),
                                              timesteps, args.real_tune_minutes,
                                              args.max_trials, args.torch_threads, log,
                                              args.quick)
        rconfigs = configs_of(rstudy, rrunner, real, timesteps, args.torch_threads)
        rruns = fresh_runs(rconfigs, real, args.real_seeds, log, keep_agent=True)
        rfinished = sum(t.state.is_finished() for t in rstudy.get_trials())
        payload["real"] = {"description": real.description,
                           "study": {"trials": rfinished, "seconds": rseconds,
                                     "best_params": rstudy.best_trial.params},
                           "test": test_days(rruns, rconfigs, real)}

        with throwaway_postgres() as url:
            if url is not None:
                log("PostgreSQL storage overhead: a short study on the planted market")
                _, pg_runner, _ = run_study(market, "planted-pg", make_storage(url, folder),
                                            timesteps, 0.1 if args.quick else 1.5,
                                            1 if args.quick else 3, args.torch_threads,
                                            log, args.quick)
                overheads["postgresql"] = overhead(pg_runner)
        payload["overhead"] = overheads
    payload["wall_seconds"] = time.perf_counter() - started
    suffix = "_quick" if args.quick else ""
    path = write_json(f"tune_payoff{suffix}", payload)
    text = markdown_summary(payload)
    (RESULTS / f"tune_payoff{suffix}.md").write_text(text)
    print("\n" + text)
    print(f"wrote {path} and tune_payoff{suffix}.md ({payload['wall_seconds']:.0f} s)")


if __name__ == "__main__":
    main()
