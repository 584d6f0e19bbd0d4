"""Anchored-agent ablation (issue 33): what each new component buys, chosen out of sample.

    python bench/anchored.py                  # single-symbol, then portfolio
                                              # (target: < 45 min; see "Cost" below)
    python bench/anchored.py --kind single    # one kind
    python bench/anchored.py --quick          # 2 symbols from 2021, small budget (a smoke run)

Candidates, each a walk-forward on the bundled symbols with a (64, 64) network: the presets
before this bench (fast, then the default, and baseline), then fast with ONE component added:
anchored actions (``env.action_mode=anchored``), the active reward (``env.reward=active``),
the vol-scaled active reward (``env.reward=vol_scaled env.reward_base=active``), the long and
market features (``data.features=[base,momentum,market,xs_rank]``) and an ensemble of 3.

**The choice never reads a day of 2017 or later.** Phase 1 trains every candidate on every
window. Phase 2 chooses on the *selection windows* only: those whose last traded day is
before SELECT_UNTIL (2017-01-01). A component is kept when its candidate's pooled mean return
over buy-and-hold there is above the default's; of the two rewards the better is kept. The
chosen config is the default plus every kept component (the default itself if none is
kept). Phase 3 trains it (unless it equals a candidate) and the table is reported on the
*report windows*: those whose first traded day is on or after SELECT_UNTIL. A window that
straddles the date is in neither. No number of the report windows feeds back into a choice.

Windows are longer than the walk-forward bench's quarter so the ablation fits the time
target: half a year for single symbols (retrained every 126 days), a year for the portfolio
(252 days, 16,384 env steps; a portfolio env step of fast's training cost 4.6x a
single-symbol one in this bench: 0.82 against 0.18 ms, results/anchored*.json).

Writes results/anchored.json (or anchored_portfolio.json) and SUMMARY.md's section through
bench/summary.py. Run folders runs/bench-anchored*/ are kept: a rerun resumes.

Cost on 2 cores: the single-symbol half takes about 13 min with 2 workers. The portfolio
half's window training sums to about an hour, half of it the chosen ensemble of 3 with the
long features: one of its windows peaks at 5.1 GB alone, and two pool workers grew to about
10 GB each over several windows; with 24 GB, run it with 1 worker (its default). Both
halves together miss the 45-minute target.

Turnover (single) is the exposure traded, summed over the symbols' bars, divided by the
number of symbols and by the years of the pooled span: a symbol that joins late counts
for less than a year per year.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fastrl.config import build_config  # noqa: E402
from fastrl.data import available  # noqa: E402
from fastrl.metrics import periods_per_year  # noqa: E402
from fastrl.rules import rule_names  # noqa: E402
from fastrl.walkforward.analysis import pooled  # noqa: E402
from fastrl.walkforward.plan import WalkForwardSpec  # noqa: E402
from fastrl.walkforward.run import run_walkforward  # noqa: E402
from fastrl.walkforward.rungs import BENCHMARK_RUNG  # noqa: E402
from walkforward import bench_overrides, listed_before  # noqa: E402

from bench_common import machine_info, write_json  # noqa: E402

NETWORK = "[64,64]"
SELECT_UNTIL = "2017-01-01"
LEVEL = 0.9
# kind -> (retrain step in trading days, env steps per window)
BUDGET = {"single": (126, 32768), "portfolio": (252, 16384)}
QUICK = {"start": "2021-01-04", "symbols": 3, "select_until": "2022-01-01", "step": 63,
         "timesteps": 4096}
DEFAULT = "fast"
# component -> the overrides that add it to the default (each alone); the two rewards exclude
# each other
COMPONENTS: dict[str, list[str]] = {
    "anchored": ["env.action_mode=anchored"],
    "active": ["env.reward=active"],
    "vol_scaled": ["env.reward=vol_scaled", "env.reward_base=active"],
    "features": ["data.features=[base,momentum,market,xs_rank]"],
    "ensemble": ["ensemble=3"],
}
REWARDS = ("active", "vol_scaled")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=("single", "portfolio", "both"), default="both")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--workers", type=int, default=None,
                        help="processes training windows (default: 2 single, 1 portfolio, "
                        "whose workers grow to about 10 GB each)")
    args = parser.parse_args()
    kinds = ["single", "portfolio"] if args.kind == "both" else [args.kind]
    for kind in kinds:
        workers = args.workers or (1 if kind == "portfolio" and not args.quick else 2)
        result = run_kind(kind, args.quick, workers)
        name = "anchored" + ("_portfolio" if kind == "portfolio" else "") + (
            "_quick" if args.quick else "")
        path = write_json(name, result)
        print(markdown(result))
        print(f"wrote {path}", flush=True)
    return 0


def candidate_sets() -> dict[str, tuple[str, list[str]]]:
    """name -> (preset, --set overrides) of every phase-1 candidate."""
    out = {"fast": ("fast", []), "baseline": ("baseline", [])}
    out.update({f"+{name}": (DEFAULT, sets) for name, sets in COMPONENTS.items()})
    return out


def choose(scores: dict[str, float]) -> list[str]:
    """The components kept from the selection windows' scores (pooled mean return over
    buy-and-hold a year, by candidate): each beating the default's; the better reward."""
    base = scores[DEFAULT]
    kept = [c for c in COMPONENTS if c not in REWARDS and scores[f"+{c}"] > base]
    rewards = [c for c in REWARDS if scores[f"+{c}"] > base]
    if rewards:
        kept.append(max(rewards, key=lambda c: scores[f"+{c}"]))
    return [c for c in COMPONENTS if c in kept]


def run_kind(kind: str, quick: bool, workers: int) -> dict[str, Any]:
    started = time.perf_counter()
    load_start = list(os.getloadavg())
    step, timesteps = BUDGET[kind]
    start, select_until = "2012-01-02", SELECT_UNTIL
    symbols = available("1d")
    if quick:
        symbols = symbols[:QUICK["symbols"]]
        start, select_until = QUICK["start"], QUICK["select_until"]
        step, timesteps = QUICK["step"], QUICK["timesteps"]
    left_out: list[str] = []
    if kind == "portfolio":
        symbols, left_out = listed_before(symbols, start)
    overrides = bench_overrides(symbols, timesteps, kind == "portfolio")

    def config(preset: str, sets: list[str]) -> Any:
        return build_config(preset, None, overrides, [f"hidden_sizes={NETWORK}", *sets])

    spec = WalkForwardSpec(step=step, start=start, val_days=120, test_days=30,
                           late_listings="error" if kind == "portfolio" else "join")
    rungs = rule_names(kind)
    suffix = ("-portfolio" if kind == "portfolio" else "") + ("-quick" if quick else "")
    progress = lambda line: print(line, flush=True)  # noqa: E731
    configs = {name: config(preset, sets) for name, (preset, sets) in candidate_sets().items()}
    run = run_walkforward(configs, spec, workers=workers, run_dir=Path("runs") / (
        "bench-anchored" + suffix), progress=progress, rungs=rungs)
    records, rung_recs, trained = outputs(run)
    resumed = run.resumed
    windows = run.windows

    selection, report = split_windows(windows, select_until)
    select_rows = {name: row(records[name], rung_recs[name], selection, kind)
                   for name in configs}
    scores = {name: r["vs_benchmark"]["mean"] for name, r in select_rows.items()}
    kept = choose(scores)
    chosen_sets = [s for c in kept for s in COMPONENTS[c]]
    same = [name for name, (preset, sets) in candidate_sets().items()
            if preset == DEFAULT and sorted(sets) == sorted(chosen_sets)]
    if same:
        chosen_from = same[0]
        records["chosen"], rung_recs["chosen"] = records[same[0]], rung_recs[same[0]]
        trained["chosen"] = trained[same[0]]
    else:
        chosen_from = None
        chosen_run = run_walkforward({"chosen": config(DEFAULT, chosen_sets)}, spec,
                                     workers=workers, run_dir=Path("runs") / (
                                         "bench-anchored-chosen" + suffix),
                                     progress=progress, rungs=rungs)
        for whole, part in zip((records, rung_recs, trained), outputs(chosen_run),
                               strict=True):
            whole.update(part)
        resumed += chosen_run.resumed
    report_rows = {name: row(records[name], rung_recs[name], report, kind)
                   for name in records}
    goal = paired(records["chosen"], records[DEFAULT], report)
    moved = {c: report_rows[f"+{c}"]["vs_benchmark"]["mean"]
             - report_rows[DEFAULT]["vs_benchmark"]["mean"] for c in COMPONENTS}
    def days(ids: list[int]) -> list[str]:
        return [str(windows[ids[0]].first_traded), str(windows[ids[-1]].last_traded)] if ids \
            else []

    return {
        "machine": machine_info(),
        "setup": {"kind": kind, "symbols": symbols, "left_out": left_out, "start": start,
                  "step": step, "timesteps_per_window": timesteps, "network": NETWORK,
                  "workers": workers, "windows": len(windows), "rungs": rungs,
                  "select_until": select_until,
                  "selection_windows": [selection[0], selection[-1]] if selection else [],
                  "selection_days": days(selection),
                  "report_windows": [report[0], report[-1]] if report else [],
                  "report_days": days(report),
                  "candidates": {name: sets for name, (_, sets) in candidate_sets().items()}},
        "selection": select_rows,
        "kept": kept,
        "chosen_sets": chosen_sets,
        "chosen_from": chosen_from,
        "report": report_rows,
        "chosen_vs_default": goal,
        "moved_most": max(moved, key=lambda c: abs(moved[c])),
        "component_effects": moved,
        "training_seconds": trained,
        "windows_resumed": resumed,
        "wall_seconds": time.perf_counter() - started,
        "load_average": {"start": load_start, "end": list(os.getloadavg())},
    }


def outputs(run: Any) -> tuple[dict[str, pd.DataFrame], dict[str, dict[str, pd.DataFrame]],
                                dict[str, float]]:
    """A walk-forward run's (record, rung records, window training seconds) by config."""
    records = {name: run.record(name) for name in run.configs}
    rungs = {name: {r: run.rung_records[(name, r)] for r in run.rungs} for name in run.configs}
    seconds = {name: float(sum(res.seconds for (c, _, _), res in run.trained.items()
                               if c == name)) for name in run.configs}
    return records, rungs, seconds


def split_windows(windows: list[Any], select_until: str) -> tuple[list[int], list[int]]:
    """(the selection windows: every traded day before ``select_until``; the report
    windows: every traded day on or after it). A window that straddles it is in neither."""
    day = pd.Timestamp(select_until)
    selection = [w.index for w in windows if pd.Timestamp(w.last_traded) < day]
    report = [w.index for w in windows if pd.Timestamp(w.first_traded) >= day]
    return selection, report


def _in(record: pd.DataFrame, windows: list[int]) -> pd.DataFrame:
    return record[record["window"].isin(windows)]


def difference(agent: np.ndarray, other: np.ndarray) -> dict[str, float]:
    """The annualised mean of ``agent - other`` per bar, its one-sided LEVEL lower bound and
    p (:func:`fastrl.stats.prob_agent_beats`)."""
    from fastrl import stats  # arch takes seconds to import

    versus = stats.prob_agent_beats(agent, other, "1d")
    scale = periods_per_year("1d")
    return {"mean": float(versus.mean_active_annual),
            "low": float(versus.lower_bound(LEVEL) * scale),
            "p": float(versus.p_value)}


def paired(record: pd.DataFrame, other: pd.DataFrame, windows: list[int]) -> dict[str, float]:
    """``record`` against ``other`` on the same pooled days of ``windows``."""
    a, b = pooled(_in(record, windows)), pooled(_in(other, windows))
    a, b = a.align(b, join="inner", axis=0)
    return difference(a["agent_return"].to_numpy(), b["agent_return"].to_numpy())


def row(record: pd.DataFrame, rungs: dict[str, pd.DataFrame], windows: list[int],
        kind: str) -> dict[str, Any]:
    """One config's ablation row on ``windows``: pooled Sharpe with its SE, the difference
    from the benchmark and from the strongest other rung (the rung with the highest pooled
    Sharpe on these days), turnover and costs a year."""
    from fastrl import stats

    part = _in(record, windows)
    pool = pooled(part)
    agent = pool["agent_return"].to_numpy()
    sharpe = stats.sharpe_stats(agent, "1d")
    rung_pools = {name: pooled(_in(rec, windows))["agent_return"].reindex(pool.index)
                  .to_numpy() for name, rec in rungs.items()}
    bench = BENCHMARK_RUNG[kind]
    others = {name: float(stats.sharpe_ratio(r, "1d")) for name, r in rung_pools.items()
              if name != bench}
    strongest = max(others, key=others.get)
    years = len(pool) / periods_per_year("1d")
    # turnover a year: single, the exposure traded (|change of position| summed, per
    # symbol); portfolio, whose position column is the invested fraction only, the costs
    # paid over what buying the whole book cost the benchmark (its first fill), per unit
    if kind == "portfolio":
        unit = float(record.loc[record["bh_cost_frac"] > 0, "bh_cost_frac"].iloc[0])
        turnover = float(part["cost_frac"].sum() / unit / years)
    else:
        position = part.sort_values(["symbol", "time"]).groupby("symbol")["position"]
        turnover = float(position.diff().abs().fillna(part["position"].abs()).sum()
                         / part["symbol"].nunique() / years)
    return {"days": int(len(pool)), "sharpe": sharpe.sharpe, "se": sharpe.se,
            "bench_sharpe": float(stats.sharpe_ratio(rung_pools[bench], "1d")),
            "vs_benchmark": difference(agent, rung_pools[bench]),
            "strongest_rung": strongest, "strongest_sharpe": others[strongest],
            "vs_strongest": difference(agent, rung_pools[strongest]),
            "turnover": turnover,
            "costs": float(pool["cost_frac"].mean() * periods_per_year("1d")),
            "mean_position": float(part["position"].mean())}


def _pct(value: float) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{100 * value:+.1f}%"


def table(rows: dict[str, dict[str, Any]], bench: str) -> list[str]:
    lines = [f"| config | pooled Sharpe ± SE | - {bench} a year [90% lower bound] | "
             "- strongest other rung a year [90% lower bound] | turnover a year | "
             "costs a year | mean exposure |", "|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        vb, vs = r["vs_benchmark"], r["vs_strongest"]
        lines.append(
            f"| {name} | {r['sharpe']:+.2f} ± {r['se']:.2f} | {_pct(vb['mean'])} "
            f"[{_pct(vb['low'])}] | {_pct(vs['mean'])} [{_pct(vs['low'])}] vs "
            f"{r['strongest_rung']} ({r['strongest_sharpe']:+.2f}) | "
            f"{r['turnover']:.1f}x | {100 * r['costs']:.2f}% | "
            f"{r['mean_position']:.2f} |")
    return lines


def markdown(data: dict) -> str:
    """The SUMMARY.md section of one kind."""
    setup = data["setup"]
    bench = BENCHMARK_RUNG[setup["kind"]]
    rd, sd = setup["report_days"], setup["selection_days"]
    lines = [f"{len(setup['symbols'])} daily symbols ({setup['kind']}"
             + (f"; {', '.join(setup['left_out'])} left out: listed too late"
                if setup["left_out"] else "")
             + f"), {setup['network']} network, retrained every {setup['step']} trading days "
             f"from {setup['start']} ({setup['windows']} windows, "
             f"{setup['timesteps_per_window']:,} env steps each, {setup['workers']} "
             f"worker{'s' if setup['workers'] != 1 else ''}). "
             f"Chosen on the windows trading {sd[0]} to {sd[1]}; reported on {rd[0]} to "
             f"{rd[1]}. This invocation: {data['wall_seconds'] / 60:.1f} min wall"
             + (f" ({data['windows_resumed']} windows loaded from an earlier run)"
                if data["windows_resumed"] else "")
             + f"; load average {data['load_average']['start'][0]:.1f} at the start and "
             f"{data['load_average']['end'][0]:.1f} at the end. Window training summed over "
             f"the workers: {sum(data['training_seconds'].values()) / 60:.1f} min ("
             + ", ".join(f"{name} {sec / 60:.1f}" for name, sec in
                         data["training_seconds"].items()) + ").", "",
             f"Kept on the selection windows: {', '.join(data['kept']) or 'nothing'}; the "
             f"chosen config is `{DEFAULT}`"
             + (f" with `{' '.join(data['chosen_sets'])}`" if data["chosen_sets"] else "")
             + ".", "", "The 2017+ windows (never used to choose):", "",
             *table(data["report"], bench), "",
             "The selection windows (the choice's input):", "",
             *table(data["selection"], bench), ""]
    g = data["chosen_vs_default"]
    verdict = data["report"]["chosen"]["vs_benchmark"]
    lines += [f"- chosen - {DEFAULT} on the report windows: {_pct(g['mean'])} a year, 90% lower "
              f"bound {_pct(g['low'])}, p = {g['p']:.3f}.",
              f"- chosen - {bench}: {_pct(verdict['mean'])} a year, 90% lower bound "
              f"{_pct(verdict['low'])}, p = {verdict['p']:.3f}; the component that moved the "
              f"difference from {bench} most (alone, against {DEFAULT}): "
              f"{data['moved_most']} "
              f"({_pct(data['component_effects'][data['moved_most']])} a year).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
