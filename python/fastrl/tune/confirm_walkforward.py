"""The confirmation of a walk-forward study: the winner's walk-forward after ``--select-until``.

A walk-forward study (``fastrl-tune --objective walkforward --select-until DATE``) scores
its trials on the windows that trade entirely before DATE. The confirmation plans the
windows that trade on or after DATE (the study's walk-forward spec, its ``start`` moved to
DATE: same step, validation days, embargo, training span and held-out test days), so no
trial ever traded one of them, and trains and trades on them, on fresh seeds:

- ``tuned``: the winner's params on the study's base config;
- the presets ``fast`` and ``baseline`` on the same data section, budget and ``--set``
  options (:func:`fastrl.tune.study.base_config`, as the fold objective's confirmation);
- the classical ladder's rules (:mod:`fastrl.walkforward.rungs`), traded on the tuned
  config's days, and the record's buy-and-hold.

Each agent's daily series is the record pooled across symbols
(:func:`fastrl.walkforward.analysis.pooled`), averaged across the seeds (one book split
equally across them); a rule's is seed 0's days, the same days. Every interval is the
paired test of :func:`fastrl.stats.prob_agent_beats` on the same days (HAC SE floored at
the i.i.d. SE, Student's t): a two-sided 90% interval (the one-sided 95% bounds) of the
annualised mean daily difference, with the one-sided p of "the tuned config earns more".
The candidate is compared with every other config at once, so the verdict says where a
difference its interval shows does not survive Holm's adjustment across those comparisons.

``steps_to_score`` reads the windows' validation curves (``WindowResult.val_curve``: one
``[env_step, val_sharpe]`` per validation): the env steps the tuned config needs to first
reach the baseline's best validation Sharpe of the same window and seed, against the steps
the baseline needed itself.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from fastrl import stats
from fastrl.markets import market_for
from fastrl.metrics import periods_per_year
from fastrl.rules import rule_names
from fastrl.tune.objective import CONFIRM_SEED_BASE
from fastrl.walkforward.analysis import pooled
from fastrl.walkforward.plan import WalkForwardSpec
from fastrl.walkforward.run import WalkForwardRun, run_walkforward, window_seed

CANDIDATE = "tuned"
PRESETS = ("fast", "baseline")
BUY_AND_HOLD = "buy_and_hold"
LEVEL = 0.9
BOOTSTRAP_REPS = 2000


# ----------------------------------------------------------------------------- the plan


def study_spec(settings: Any) -> WalkForwardSpec:
    """The study's walk-forward spec (``settings.walkforward``, recorded as a dict)."""
    values = getattr(settings, "walkforward", None)
    if not values:
        raise ValueError("the study recorded no walk-forward spec (settings.walkforward): "
                         "it was not run with --objective walkforward")
    return WalkForwardSpec(**dict(values))


def confirmation_spec(settings: Any) -> WalkForwardSpec:
    """The study's spec with its first traded day moved to ``--select-until``: the windows
    that trade on or after it, planned as the study planned its own."""
    until = getattr(settings, "select_until", None)
    if not until:
        raise ValueError("the study recorded no --select-until date (settings.select_until)")
    return dataclasses.replace(study_spec(settings), start=str(until))


def confirmation_seed_base(settings: Any) -> int:
    """``config.seed`` of every confirmed config: :data:`CONFIRM_SEED_BASE` times the
    study's seeds. A window's trainer seed is ``window_seed(base, k, w) = base + 1000 k +
    w``: the search's seeds ``k < S`` (base 0) take ``[0, 1000 S)``, so a base of
    ``1000 S`` keeps every confirmation seed out of the search's, whatever K (with
    ``S = 1`` the base is :data:`CONFIRM_SEED_BASE` itself)."""
    return CONFIRM_SEED_BASE * max(1, int(getattr(settings, "seeds", 1) or 1))


def confirmation_configs(winner: Any, runner: Any) -> dict[str, Any]:
    """name -> TrainConfig: the winner on the study's base config and both presets on the
    same data section, budget and ``--set`` options, all on the fresh seed base."""
    # the study modules import the report modules, which import this one
    from fastrl.tune.space import config_for
    from fastrl.tune.study import base_config

    settings = runner.settings
    configs = {CANDIDATE: config_for(winner.params, runner.base, settings.timesteps)}
    for name in PRESETS:
        configs[name] = base_config(settings.replaced(base_preset=name))
    seed = confirmation_seed_base(settings)
    for config in configs.values():
        config.seed = seed
    return configs


def run_confirmation(winner: Any, runner: Any, *, bars: Mapping[str, pd.DataFrame] | None = None,
                     workers: int | None = None,
                     progress: Callable[[str], None] | None = None) -> WalkForwardRun:
    """Trains and trades the confirmation: :func:`confirmation_configs` on the windows of
    :func:`confirmation_spec`, ``settings.confirmation_seeds`` seeds, beside every rule of
    the market's kind (the ladder's rungs). ``workers``: processes training its windows
    (default one per core; they never change a result)."""
    configs = confirmation_configs(winner, runner)
    workers = int(workers or os.cpu_count() or 1)
    kind = market_for(configs[CANDIDATE]).kind
    return run_walkforward(configs, confirmation_spec(runner.settings),
                           seeds=int(runner.settings.confirmation_seeds), bars=bars,
                           workers=workers, progress=progress, rungs=rule_names(kind))


# ----------------------------------------------------------------------------- analysis


def check_after(run: WalkForwardRun, select_until: str) -> None:
    """ValueError unless every window of ``run`` (and so every bar it traded) starts on or
    after ``select_until``: the confirmation must trade no day a trial could have."""
    day = pd.Timestamp(select_until)
    early = [w for w in run.windows if pd.Timestamp(w.first_traded) < day]
    if early:
        raise ValueError(f"confirmation window {early[0].index} trades from "
                         f"{early[0].first_traded}, before --select-until {select_until}")


def daily_frame(run: WalkForwardRun, name: str) -> pd.DataFrame:
    """Per bar: config ``name``'s agent and buy-and-hold returns pooled across symbols and
    averaged across its seeds (one book split equally across the seeds)."""
    pools = [pooled(run.records[(name, seed)])[["agent_return", "bh_return"]]
             for seed in range(run.seeds)]
    return pd.concat(pools).groupby(level=0, sort=True).mean()


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def paired_interval(agent: np.ndarray, other: np.ndarray, freq: str,
                    level: float = LEVEL) -> dict[str, Any]:
    """``agent - other`` on the same bars: the annualised mean, its two-sided ``level``
    interval (the one-sided bounds of :meth:`~fastrl.stats.AgentVsBenchmark.lower_bound` at
    ``(1 + level) / 2``) and the one-sided p of :func:`fastrl.stats.prob_agent_beats`.
    The interval is None where there is no test (too few bars, no difference)."""
    versus = stats.prob_agent_beats(agent, other, freq)
    scale = periods_per_year(freq)
    low = versus.lower_bound((1.0 + level) / 2.0) * scale
    mean = float(versus.mean_active_annual)
    ci = [float(low), float(2.0 * mean - low)] if math.isfinite(low) else None
    if ci is None and versus.n >= stats.MIN_BARS and versus.active_bars == 0:
        ci = [0.0, 0.0]  # the same return every day: no difference, known exactly
    return {"mean": mean, "ci": ci, "p": _finite(versus.p_value), "days": int(versus.n),
            "level": level}


def confirmation_summary(run: WalkForwardRun, select_until: str,
                         candidate: str = CANDIDATE) -> dict[str, Any]:
    """The confirmation table (JSON-ready): per config (the agents, the rules, buy-and-hold)
    its mean active return a year against buy-and-hold with its 90% interval, and the
    paired difference ``candidate`` minus it with its 90% interval and p."""
    check_after(run, select_until)
    freq = run.freq
    frames = {name: daily_frame(run, name) for name in run.configs}
    days = frames[candidate].index
    bench = frames[candidate]["bh_return"].to_numpy()
    series = {name: frame["agent_return"].reindex(days).to_numpy()
              for name, frame in frames.items()}
    benchmark_rung = run.rungs[0] if run.rungs else None  # the record's own buy-and-hold
    for rung in run.rungs:
        if rung != benchmark_rung:
            series[rung] = pooled(run.rung_records[(candidate, rung)])["agent_return"] \
                .reindex(days).to_numpy()
    if not np.all(np.isfinite(np.stack(list(series.values())))):
        raise ValueError("the confirmation's records do not cover the same days")
    rows = []
    for name, values in series.items():
        rows.append({"config": name, "kind": "agent" if name in run.configs else "rule",
                     "active": paired_interval(values, bench, freq),
                     "vs_candidate": None if name == candidate else
                     paired_interval(series[candidate], values, freq)})
    # the record's benchmark: buy-and-hold (a portfolio's equal weight bought and held)
    rows.append({"config": benchmark_rung or BUY_AND_HOLD, "kind": "benchmark", "active": None,
                 "vs_candidate": paired_interval(series[candidate], bench, freq)})
    adjust_for_comparisons([row["vs_candidate"] for row in rows if row["vs_candidate"]])
    scale = periods_per_year(freq)
    per_seed = {name: [float(np.mean((p := pooled(run.records[(name, seed)]))["agent_return"]
                                     - p["bh_return"]) * scale) for seed in range(run.seeds)]
                for name in run.configs}
    base = int(run.configs[candidate].seed)
    return {"candidate": candidate, "select_until": str(select_until), "freq": freq,
            "seeds": run.seeds, "seed_base": base,
            "trainer_seeds": sorted({window_seed(base, k, w.index)
                                     for k in range(run.seeds) for w in run.windows}),
            "windows": [{"index": w.index, "first_traded": w.first_traded,
                         "last_traded": w.last_traded, "last_seen": w.last_seen}
                        for w in run.windows],
            "days": int(days.size), "first_day": str(days[0].date()),
            "last_day": str(days[-1].date()), "rows": rows, "per_seed_active": per_seed,
            "level": LEVEL, "verdict": confirmation_verdict(rows, candidate)}


def adjust_for_comparisons(entries: Sequence[dict[str, Any]]) -> None:
    """Adds Holm's adjusted p-values across ``entries`` (the candidate against every other
    config: one family) in both directions: ``p_holm`` for "the candidate earns more",
    ``p_holm_less`` for "it earns less" (from the one-sided p's complement)."""
    p = np.array([np.nan if e["p"] is None else e["p"] for e in entries], dtype=np.float64)
    for key, values in (("p_holm", p), ("p_holm_less", 1.0 - p)):
        for entry, adjusted in zip(entries, stats.holm(values), strict=True):
            entry[key] = _finite(float(adjusted))


def confirmation_verdict(rows: Sequence[Mapping[str, Any]], candidate: str = CANDIDATE) -> str:
    """In plain words, from the paired intervals: whom the candidate beats (interval above
    0), trails (below 0) and has no edge over (the interval includes 0)."""
    ahead, behind, even, untested = [], [], [], []
    alpha = (1.0 - LEVEL) / 2.0  # the one-sided level of the interval's ends
    for row in rows:
        versus = row["vs_candidate"]
        if versus is None:
            continue
        ci, name = versus["ci"], row["config"]
        if ci is None:
            untested.append(name)
        elif ci[0] > 0 or ci[1] < 0:
            key = "p_holm" if ci[0] > 0 else "p_holm_less"
            held = versus.get(key) is None or versus[key] <= alpha
            (ahead if ci[0] > 0 else behind).append(
                name if held else f"{name} (not after Holm's adjustment for the comparisons)")
        else:
            even.append(name)
    parts = []
    if ahead:
        parts.append(f"the {candidate} config beats {', '.join(ahead)} (90% intervals of the "
                     "paired daily differences above 0)")
    if even:
        parts.append(f"no edge over {', '.join(even)} (the intervals include 0)")
    if behind:
        parts.append(f"{', '.join(behind)} beat{'s' if len(behind) == 1 else ''} the "
                     f"{candidate} config (intervals below 0)")
    if untested:
        parts.append(f"too few days to compare with {', '.join(untested)}")
    return "on the windows no trial traded: " + "; ".join(parts)


# ----------------------------------------------------------------------------- learning speed


def first_step_at(curve: Sequence[Sequence[float]], target: float) -> int | None:
    """The first env step of ``curve`` (``[env_step, value]`` pairs, in order) whose value
    reaches ``target``; None where none does."""
    for step, value in curve:
        if math.isfinite(value) and value >= target:
            return int(step)
    return None


def steps_to_score(run: WalkForwardRun, candidate: str = CANDIDATE,
                   reference: str = "baseline", *, level: float = LEVEL,
                   reps: int = BOOTSTRAP_REPS, seed: int = 0) -> dict[str, Any]:
    """Per window and seed: the steps ``candidate`` needs to first reach ``reference``'s
    best validation Sharpe, against the steps ``reference`` needed (its best's step).

    The ratio is infinite where the candidate never reaches it within its budget; windows
    whose reference peaked at step 0 (no steps to compare) and windows without curves are
    counted and left out. The median ratio's interval is a percentile bootstrap over the
    (window, seed) pairs, read with ``inverted_cdf`` so an infinite ratio stays infinite
    (an interpolating percentile, scipy's ``bootstrap`` included, makes it NaN)."""
    rows, missing, at_zero = [], 0, 0
    for k in range(run.seeds):
        for window in run.windows:
            ref = getattr(run.trained[(reference, k, window.index)], "val_curve", None)
            cand = getattr(run.trained[(candidate, k, window.index)], "val_curve", None)
            finite = [v for _, v in ref or [] if math.isfinite(v)]
            if not finite or not cand:
                missing += 1
                continue
            target = max(finite)
            ref_steps = first_step_at(ref, target)
            if not ref_steps:
                at_zero += 1
                continue
            cand_steps = first_step_at(cand, target)
            rows.append({"window": window.index, "seed": k, "target": target,
                         "reference_steps": ref_steps, "candidate_steps": cand_steps,
                         "ratio": math.inf if cand_steps is None else cand_steps / ref_steps})
    out: dict[str, Any] = {"candidate": candidate, "reference": reference, "rows": rows,
                           "missing_curves": missing, "reference_best_at_step_0": at_zero,
                           "never_reached": sum(r["candidate_steps"] is None for r in rows),
                           "level": level, "median_ratio": None, "ci": None}
    if not rows:
        return out
    ratios = np.array([r["ratio"] for r in rows], dtype=np.float64)
    out["median_ratio"] = float(np.median(ratios))
    out["median_reference_steps"] = float(np.median([r["reference_steps"] for r in rows]))
    reached = [r["candidate_steps"] for r in rows if r["candidate_steps"] is not None]
    out["median_candidate_steps_reached"] = float(np.median(reached)) if reached else None
    if ratios.size >= 2:
        rng = np.random.default_rng(seed)
        medians = np.median(ratios[rng.integers(0, ratios.size, (reps, ratios.size))], axis=1)
        tail = (1.0 - level) / 2.0
        out["ci"] = [float(x) for x in np.quantile(medians, [tail, 1.0 - tail],
                                                   method="inverted_cdf")]
    return out


__all__ = ["BUY_AND_HOLD", "CANDIDATE", "PRESETS", "adjust_for_comparisons", "check_after",
           "confirmation_configs", "confirmation_seed_base", "confirmation_spec",
           "confirmation_summary", "confirmation_verdict", "daily_frame", "first_step_at",
           "paired_interval", "run_confirmation", "steps_to_score", "study_spec"]
