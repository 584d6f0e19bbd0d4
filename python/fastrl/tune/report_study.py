"""After the search: best.yaml, trials.csv, overfitting gates, confirmation and the test days.

Order matters for honesty. Everything up to the confirmation reads validation bars only:

1. ``best.yaml`` (the winner as config keys on the base preset, loadable by
   ``fastrl-train --config``) and ``trials.csv``.
2. Noise: the median over completed trials of the standard error of a trial's score (its
   runs over seeds x folds), the winner's lead over the median trial, and whether the
   winner stands out from the best of N equal configs (``selection.best_of_n_test``, the
   trials' labels permuted within each fold x seed, p <= 0.10); when it does not, the
   report says the search did not separate the configs.
3. Gates on validation: the Deflated Sharpe Ratio of the winner's final-policy validation
   returns given the number of completed trials, and the Probability of Backtest
   Overfitting by CSCV over trials x time blocks of those returns (``fastrl.selection``).
4. Confirmation on data the search never saw: the ``confirm_days`` window between fold 0's
   validation window and the test days (``study.confirmation_config``), on fresh seeds
   (1000+, never used by the search): winner, fast and baseline, same budget, same --set
   options, each trained on every bar before the window. Paired differences (winner minus
   preset, seed by seed) with 90% t-intervals say in plain words whether tuning helped.
5. Once, at the end: the confirmation runs' final policies on the test days, beside
   buy-and-hold, with error bars (``EvalResult.uncertainty``).

The report (md + html + PNG) shows the optimisation history, parameter importances, the
validation curves of the top 5 trials (their search seed) next to the winner's and both
presets' on the first fresh confirmation seed, the gates, the confirmation and the test days.

A walk-forward study (``--objective walkforward``) writes best.yaml and trials.csv here and
its gates, confirmation and report in :mod:`fastrl.tune.report_walkforward`.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from fastrl import selection
from fastrl.config import parse_set_options
from fastrl.device import resolve_device
from fastrl.markets.single.backtest import evaluate_agent
from fastrl.metrics import sharpe_per_bar
from fastrl.reports import writer
from fastrl.reports.format import format_number as fmt
from fastrl.reports.plots import plot_optuna, pyplot, save_png
from fastrl.reports.writer import Document, Section, Table
from fastrl.strategies import COMBINED
from fastrl.tune.ladder import confirmation_ladder, ladder_section
from fastrl.tune.objective import (
    CONFIRM_SEED_BASE,
    TUNING_SEED_BASE,
    train_batch,
    train_run,
    validation_schedule,
)
from fastrl.tune.report_walkforward import write_walkforward_report
from fastrl.tune.space import config_for, params_to_overrides
from fastrl.tune.storage import counted_trials
from fastrl.tune.study import base_config, confirmation_config

if TYPE_CHECKING:
    from fastrl.tune.settings import ConfirmationSettings

TOP_CURVES = 5
PRESETS = ("fast", "baseline")
MAX_PBO_BLOCKS = 16
CSV_ATTRS = ("score_se", "worker", "failure", "interrupted")
OBJECTIVE_LABELS = {"excess": "Sharpe of the daily active return over buy-and-hold",
                    "sharpe": "Sharpe (annualised)"}


def _completed(study: Any) -> list[Any]:
    from optuna.trial import TrialState

    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]


def best_yaml_text(trial: Any, runner: Any) -> str:
    """best.yaml: the base preset, the study's fixed keys and the winner's draw."""
    settings = runner.settings
    base = runner.base
    values: dict[str, Any] = {"preset": settings.base_preset}
    values.update(parse_set_options(list(settings.set_options)))
    values.update({"data.symbols": list(settings.symbols), "data.freq": settings.freq,
                   "data.source": settings.source,
                   "data.test_days": settings.test_days,
                   "data.val_days": settings.val_days,
                   "total_timesteps": settings.timesteps})
    values.update(params_to_overrides(trial.params, base, settings.timesteps))
    objective = settings.objective
    score = (f"walk-forward score {trial.value:.4f} (mean daily return over buy-and-hold a "
             f"year on the windows before {settings.select_until})"
             if objective == "walkforward" else f"learning-speed score {trial.value:.4f} "
             f"(mean {objective} validation curve average)")
    header = (f"# fastrl-tune winner: trial {trial.number}, {score}\n"
              f"# train it: fastrl-train --config best.yaml\n")
    return header + yaml.safe_dump(values, sort_keys=False)


def write_trials_csv(study: Any, path: Path) -> Path:
    """One row per trial: number, state, score, params, worker, failure, seconds."""
    trials = study.get_trials(deepcopy=False)
    params = sorted({k for t in trials for k in t.params})
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["number", "state", "score", "seconds", *params, *CSV_ATTRS])
        for t in trials:
            seconds = (t.datetime_complete - t.datetime_start).total_seconds() \
                if t.datetime_complete and t.datetime_start else None
            writer.writerow([t.number, t.state.name, t.value, seconds,
                             *[t.params.get(k) for k in params],
                             *[t.user_attrs.get(k) for k in CSV_ATTRS]])
    return path


def _deployed_series(trial: Any) -> dict[int, np.ndarray]:
    """Fold -> the first seed's per-bar series under the objective (a pruned trial: its last
    validated policy's); older studies recorded only a seed mean over all folds (key -1)."""
    recorded = trial.user_attrs.get("deployed_returns")
    if recorded is None:
        recorded = {-1: trial.user_attrs.get("val_returns", [])}
    series = {int(k): np.asarray(v, dtype=np.float64) for k, v in recorded.items()}
    return {k: v for k, v in series.items() if v.size >= 2 and np.all(np.isfinite(v))}


def _matrix(series: dict[int, dict[int, np.ndarray]], folds: list[int]) -> np.ndarray:
    """T x N: each trial's series over ``folds``, oldest window first, cut to common lengths."""
    ordered = sorted(folds, reverse=True)  # fold f validates f windows back: oldest first
    lengths = {f: min(s[f].size for s in series.values()) for f in ordered}
    return np.stack([np.concatenate([s[f][:lengths[f]] for f in ordered])
                     for s in series.values()], axis=1)


def overfitting_gates(trials: list[Any], winner: Any, n_trials: int,
                      pruned: list[Any] | None = None) -> dict[str, Any]:
    """DSR of the winner and PBO (CSCV), both on what could be deployed: one seed's policy.

    Series: per trial, the first seed's final policy on each fold's validation window under
    the study's objective (the active return over buy-and-hold for ``excess``), folds
    oldest first. PBO runs over the completed trials *and* the pruned ones (their last
    validated policy), on the folds every one of them reached (fold 0 at least: the
    pruner stops a trial only after a validation); a PBO over the completed trials on every
    fold is given beside it. The DSR deflates the winner's series by the Sharpe spread of
    the completed trials, with the *effective* number of trials: the clusters of the
    correlation matrix of all those series (``selection.effective_number_of_trials``).
    """
    out: dict[str, Any] = {"n_trials": n_trials}
    completed = {t.number: _deployed_series(t) for t in trials}
    completed = {k: v for k, v in completed.items() if v}
    all_folds = sorted({f for v in completed.values() for f in v})
    completed = {k: v for k, v in completed.items() if set(all_folds) <= set(v)}
    stopped = {t.number: _deployed_series(t) for t in (pruned or [])}
    stopped = {k: v for k, v in stopped.items() if v}
    everyone = {**completed, **stopped}
    common = sorted(set.intersection(*(set(v) for v in everyone.values()))) if everyone else []
    everyone = everyone if common else completed
    common = common or all_folds
    out["n_with_returns"] = len(everyone)
    out["n_pruned_in_pbo"] = len(set(everyone) & set(stopped))
    if len(completed) < 2 or winner.number not in completed:
        out["dsr"] = out["pbo"] = None
        out["note"] = "needs at least 2 completed trials with validation returns"
        return out
    full = _matrix(completed, all_folds)
    shared = _matrix(everyone, common)
    out["n_effective"] = selection.effective_number_of_trials(shared)
    out["cluster_correlation"] = selection.CLUSTER_CORRELATION
    column = list(completed).index(winner.number)
    sharpes = np.array([sharpe_per_bar(full[:, j]) for j in range(full.shape[1])])
    try:
        out["dsr"] = float(selection.deflated_sharpe_ratio(full[:, column], sharpes,
                                                       n_trials=max(2, out["n_effective"])))
    except ValueError as err:
        out["dsr"], out["dsr_note"] = None, str(err)
    for key, matrix in (("pbo", shared), ("pbo_completed", full)):
        blocks = min(MAX_PBO_BLOCKS, matrix.shape[0] - matrix.shape[0] % 2)
        try:
            result = selection.probability_of_backtest_overfitting(matrix, n_blocks=blocks)
            out[key], out[f"{key}_blocks"] = result.pbo, result.n_blocks
        except ValueError as err:
            out[key], out[f"{key}_note"] = None, str(err)
    out["pbo_bars"], out["pbo_folds"] = int(shared.shape[0]), common
    out["winner_val_sharpe_per_bar"] = float(sharpes[column])
    return out


def _preset_config(name: str, runner: Any) -> Any:
    return base_config(runner.settings.replaced(base_preset=name))


def _configs(winner: Any, runner: Any) -> dict[str, Any]:
    timesteps = runner.settings.timesteps
    configs = {"tuned": config_for(winner.params, runner.base, timesteps)}
    for name in PRESETS:
        configs[name] = _preset_config(name, runner)
    return configs


def noise_summary(trials: list[Any], winner: Any, level: float = 0.9,
                  reps: int = 2000) -> dict[str, Any]:
    """Did the search separate the configs: the winner against the best of N under noise.

    ``separated`` comes from :func:`fastrl.selection.best_of_n_test` on the trials x runs
    matrix of run scores (every trial runs the same folds and seeds, so runs pair up):
    p <= 1 - ``level``. Not "the winner's lead over the median trial exceeds the median
    trial SE": the lead of a maximum of N grows with N even among identical configs, so
    that rule separates them more often the more trials run. The noise floor (median trial
    SE) and the lead are reported as descriptions. ``reps``: permutations."""
    scores = np.array([t.value for t in trials], dtype=np.float64)
    ses = [t.user_attrs.get("score_se") for t in trials]
    ses = [float(x) for x in ses if x is not None and math.isfinite(x)]
    floor = float(np.median(ses)) if ses else None
    lead = float(winner.value - np.median(scores))
    runs = winner.user_attrs.get("run_scores") or []
    # trials that ran the winner's plan of folds x seeds (all of them, for one study)
    matrix = [t.user_attrs["run_scores"] for t in trials
              if len(t.user_attrs.get("run_scores") or []) == len(runs)
              and all(math.isfinite(x) for x in t.user_attrs["run_scores"])]
    test = None
    if len(runs) >= 2 and len(matrix) >= 2:
        test = selection.best_of_n_test(np.array(matrix, dtype=np.float64), reps=reps)
    p_value = None if test is None else test.p_value
    return {"noise_floor": floor, "trials_with_se": len(ses),
            "median_score": float(np.median(scores)), "winner_lead": lead,
            "winner_se": winner.user_attrs.get("score_se"),
            "test": "max-of-N permutation (trial labels shuffled within each fold x seed)",
            "p_value": p_value, "trials_tested": len(matrix), "runs_per_trial": len(runs),
            "level": level,
            "separated": bool(p_value is not None and p_value <= 1.0 - level)}


def paired_differences(confirmation: dict[str, Any], key: str = "scores",
                       level: float = 0.9, candidate: str = "tuned") -> dict[str, Any]:
    """``candidate`` (the study's winner, or PBT's replayed winner) minus each preset on the
    same fresh seeds: mean and a t-interval at ``level`` (None with fewer than 2 seeds)."""
    from scipy import stats as sps

    out: dict[str, Any] = {}
    tuned = np.asarray(confirmation[candidate][key], dtype=np.float64)
    for name in PRESETS:
        diffs = tuned - np.asarray(confirmation[name][key], dtype=np.float64)
        mean, n = float(np.mean(diffs)), int(diffs.size)
        ci = None
        if n >= 2:
            sem = float(np.std(diffs, ddof=1) / math.sqrt(n))
            ci = ([mean, mean] if sem == 0.0 else
                  [float(x) for x in sps.t.interval(level, n - 1, loc=mean, scale=sem)])
        out[name] = {"differences": diffs.tolist(), "mean": mean, "ci": ci, "level": level}
    return out


def tuning_verdict(differences: dict[str, Any], noise: dict[str, Any] | None = None, *,
                   subject: str = "tuning", searcher: str = "the search",
                   winner: str = "the winner", seeds_flag: str = "--confirm-seeds") -> str:
    """Did tuning help, in plain words, from the paired confirmation differences.

    ``subject`` (what helped or not), ``searcher`` (what never saw the data), ``winner``
    and ``seeds_flag`` name them for another caller (PBT's replay)."""
    above = [n for n, d in differences.items() if d["ci"] is not None and d["ci"][0] > 0]
    below = [n for n, d in differences.items() if d["ci"] is not None and d["ci"][1] < 0]
    if any(d["ci"] is None for d in differences.values()):
        text = (f"{subject} cannot be judged: one confirmation seed gives no interval "
                f"(raise {seeds_flag})")
    elif len(above) == len(differences):
        text = (f"{subject} helped: on data {searcher} never saw {winner} beats both presets "
                "(90% intervals of the paired differences above 0)")
    elif len(below) == len(differences):
        text = f"{subject} hurt: on data {searcher} never saw both presets beat {winner}"
    elif above:
        text = (f"{subject} helped against {', '.join(above)} only; no evidence against "
                f"{', '.join(n for n in differences if n not in above)}")
    else:
        text = (f"no evidence that {subject} helped: on data {searcher} never saw "
                f"{winner}'s paired differences with the presets have 90% intervals that "
                "include 0")
    if noise is not None and not noise["separated"]:
        text += "; and the search did not separate the configs"
    return text


def confirm_and_test(configs: dict[str, Any], settings: ConfirmationSettings, market: Any,
                     log: Any, *, seeds: list[int] | None = None, candidate: str = "tuned",
                     window: str | None = None, batched: bool | None = None) -> dict[str, Any]:
    """Train each config on fresh seeds laid out for the confirmation window
    (``study.confirmation_config``: every bar before it), score it there with the objective
    of ``settings``, then, last, backtest those runs once on the test days.

    ``configs``: name -> config, ``candidate`` (the study's winner, or PBT's) and the
    presets; ``market``: the confirmation splits (``TrialRunner.confirmation_market``);
    ``seeds`` default to CONFIRM_SEED_BASE + 0 .. confirm_seeds - 1; ``window`` describes
    the confirmation window in the report; ``batched``: train a config's seeds as one
    population (default: on a GPU). Shared by the study and PBT's replay."""
    if seeds is None:
        seeds = [CONFIRM_SEED_BASE + s for s in range(settings.confirmation_seeds)]
    configs = {name: confirmation_config(config, settings) for name, config in configs.items()}
    runs: dict[str, list[Any]] = {}
    for name, config in configs.items():
        stackable = int(config.ensemble) == 1  # an ensemble is itself a population
        if stackable and (batched or (batched is None
                                      and resolve_device(config.device).type == "cuda")):
            # on a GPU a config's seeds train side by side as one population of independent
            # members (each the run it would be alone, to float rounding). Not on the CPU:
            # the presets' big networks are compute-bound there, so stacking seeds saves
            # nothing (bench/tune_batch.py --confirm measures both devices).
            runs[name] = train_batch([config] * len(seeds), market, seed=seeds, fold=0,
                                     keep_agents=True, **validation_schedule(settings))
            for outcome in runs[name]:
                if isinstance(outcome, BaseException):
                    raise outcome
        else:
            runs[name] = [train_run(config, market, seed=seed, fold=0, keep_agent=True,
                                    **validation_schedule(settings)) for seed in seeds]
        log(f"confirmation {name}: scores {[round(r.score, 3) for r in runs[name]]}")
    confirmation = {name: {"seeds": seeds, "scores": [r.score for r in rs],
                           "final_val_sharpes": [r.final_sharpe for r in rs],
                           "final_values": [r.final_value for r in rs],
                           "median_score": float(np.median([r.score for r in rs])),
                           "mean_score": float(np.mean([r.score for r in rs])),
                           # the first fresh seed's validation curve, for the curves plot
                           "curve": {"seed": rs[0].seed, "steps": rs[0].steps,
                                     "values": rs[0].values, "score": rs[0].score}}
                    for name, rs in runs.items()}
    # where the candidate stands on the ladder over the same confirmation days
    ladder = (confirmation_ladder(runs[candidate], configs[candidate], market)
              if candidate in runs else None)
    # the test days, once, after everything that chose anything
    test: dict[str, Any] = {}
    for name, rs in runs.items():
        per_seed = []
        for run in rs:
            result = evaluate_agent(run.agent, market.test, configs[name].env)
            errors = result.uncertainty(COMBINED)
            agent = errors.sharpe["agent"]
            per_seed.append({"seed": run.seed, "sharpe": agent.sharpe, "se": agent.se,
                             "ci90": [agent.ci_low, agent.ci_high], "psr": agent.psr,
                             # 1 - p of the mean-active-return test (bench/ reads it)
                             "p_beats_buy_and_hold": errors.vs_buy_and_hold.probability,
                             "p_value": errors.vs_buy_and_hold.p_value,
                             "active_annual": errors.vs_buy_and_hold.mean_active_annual,
                             "total_return": result.combined["agent"].total_return})
            bh = errors.sharpe["buy_and_hold"]
            test["buy_and_hold"] = {"sharpe": bh.sharpe, "se": bh.se,
                                    "ci90": [bh.ci_low, bh.ci_high], "psr": bh.psr,
                                    "total_return": result.combined["buy_and_hold"].total_return}
        test[name] = {"runs": per_seed,
                      "median_sharpe": float(np.median([r["sharpe"] for r in per_seed]))}
    if window is None:
        window = (f"the {settings.confirm_days} days before the test days, never seen by "
                  "the search" if settings.confirm_days else
                  "fold 0's validation window (the search chose on it: optimistic)")
    return {"confirmation": confirmation, "confirmation_window": window,
            **({"ladder": ladder} if ladder else {}),
            "differences": {
                "score": paired_differences(confirmation, "scores", candidate=candidate),
                "final_value": paired_differences(confirmation, "final_values",
                                                  candidate=candidate)},
            "test": test}


def plot_curves(trials: list[Any], confirmed: dict[str, dict[str, Any]], path: Path,
                objective: str = "sharpe") -> Path:
    """The top trials' validation curves (the search's seed; chosen on them, so optimistic)
    next to the winner's and both presets' curves on the first fresh confirmation seed (the
    presets trained once, with the confirmation, not again for the picture)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    top = sorted(trials, key=lambda t: t.value, reverse=True)[:TOP_CURVES]
    for t in top:
        curve = t.user_attrs.get("curve") or {}
        if curve:
            ax.plot(curve["steps"], curve[curve.get("objective", "sharpe")],
                    drawstyle="steps-post", alpha=0.7,
                    label=f"trial {t.number} (score {t.value:.2f})")
    styles = {"tuned": "-", "fast": "--", "baseline": ":"}
    for name, entry in confirmed.items():
        curve = entry["curve"]
        ax.plot(curve["steps"], curve["values"], styles.get(name, "-."), color="black",
                lw=1.8 if name == "tuned" else 1.2, drawstyle="steps-post",
                label=f"{'winner' if name == 'tuned' else 'preset ' + name}, fresh seed "
                      f"{curve['seed']} (score {curve['score']:.2f})")
    ax.set(xlabel="env steps", ylabel=f"validation {OBJECTIVE_LABELS[objective]}",
           title=f"top {len(top)} trials (seed {TUNING_SEED_BASE}) vs winner and presets on a "
                 "fresh seed (fold 0)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_png(fig, path)
    return path



def confirmation_sections(payload: dict[str, Any], test_days: int, *,
                          candidate: str = "tuned", label: str = "winner") -> list[Section]:
    """The report's confirmation table, paired differences with their verdict, and the
    test days, from :func:`confirm_and_test`'s output (and ``payload["verdict"]``);
    ``candidate`` is the key of the config compared with the presets, ``label`` its name in
    the headings. Shared by the study and PBT reports."""
    sections = []
    conf = payload["confirmation"]
    sections.append(Section(
        f"Confirmation on fresh seeds {conf[candidate]['seeds']}, on "
        f"{payload.get('confirmation_window', 'fold 0')}",
        table=Table(["config", "mean score", "scores", "final val Sharpe"], [
            [name, f"{c.get('mean_score', c['median_score']):.3f}",
             ", ".join(f"{x:.2f}" for x in c["scores"]),
             ", ".join(f"{x:.2f}" for x in c["final_val_sharpes"])]
            for name, c in conf.items()], numeric=False)))
    differences = payload.get("differences")
    if differences:
        rows = []
        for name in PRESETS:
            cells = []
            for kind in ("score", "final_value"):
                d = differences[kind][name]
                ci = d["ci"]
                cells.append(f"{d['mean']:+.3f}" + (f" [{ci[0]:+.3f}, {ci[1]:+.3f}]"
                                                    if ci else " (one seed: no interval)"))
            rows.append([name, *cells])
        sections.append(Section(
            f"Paired differences, {label} minus preset on the same seeds", level=3,
            paragraphs=["Mean, 90% t-interval."],
            table=Table(["vs", "score", "final-policy value"], rows, numeric=False),
            closing=[f"**Verdict: {payload.get('verdict', '')}.**"]))
    ladder = ladder_section(payload, label)
    if ladder is not None:
        sections.append(ladder)
    test = payload["test"]
    rows = [[f"{name} seed {r['seed']}", fmt(r["sharpe"]), fmt(r["se"]),
             f"{fmt(r['ci90'][0])} to {fmt(r['ci90'][1])}", fmt(r["psr"]),
             _active_cell(r), fmt(r["total_return"], ".1%")]
            for name in (candidate, *PRESETS) for r in test[name]["runs"]]
    bh = test["buy_and_hold"]
    rows.append(["buy & hold", fmt(bh["sharpe"]), fmt(bh["se"]),
                 f"{fmt(bh['ci90'][0])} to {fmt(bh['ci90'][1])}", fmt(bh["psr"]), "-",
                 fmt(bh["total_return"], ".1%")])
    sections.append(Section(
        f"Test days ({test_days}), touched once, at the end",
        table=Table(["strategy", "Sharpe (per seed)", "SE", "90% CI", "PSR",
                     "over buy & hold a year (one-sided p)", "total return"], rows,
                    numeric=False)))
    return sections


def _active_cell(run: dict[str, Any]) -> str:
    """The mean return over buy-and-hold a year and its one-sided p."""
    p_value = run["p_value"]
    if p_value is None or not math.isfinite(p_value):
        return "n/a"
    return f"{fmt(run['active_annual'], '+.1%')} (p = {p_value:.3f})"


def _untested_reason(noise: dict[str, Any]) -> str:
    """Why the separation test could not run: too few runs per trial or too few trials."""
    if noise["runs_per_trial"] < 2:
        return ("**the search did not separate the configs**: with one run per trial the "
                "noise cannot be measured (use more --folds or --seeds)")
    return ("**the search did not separate the configs**: fewer than two trials have the "
            "winner's runs to compare with")


def study_document(payload: dict[str, Any], images: dict[str, Path],
                   notes: list[str]) -> Document:
    """The study report's content for :mod:`fastrl.reports.writer`: settings and winner,
    the gates, the confirmation and the test days, the plots."""
    s = payload["settings"]
    gates = payload["gates"]
    objective = s.get("objective", "excess")
    grid = (f"every {s['val_interval_steps']:,} env steps (one grid for every config)"
            if s.get("val_interval_steps") else f"after every {s.get('val_every', 1)} updates")
    doc = Document(
        title=f"fastrl-tune study {payload['study']}",
        verdict=payload.get("verdict") or None,
        paragraphs=[
            f"{', '.join(s['symbols'])} ({s['freq']}); {payload['n_trials']} trials "
            f"({payload['states']}); {s['timesteps']:,} env steps per run, {s['seeds']} seed(s)"
            f" x {s['folds']} fold(s) of {s['val_days']} validation days; base preset "
            f"{s['base_preset']}; fixed: {' '.join(s['set_options']) or 'nothing'}.",
            f"Winner: trial {payload['best']['number']}, score "
            f"{payload['best']['score']:.4f}. `fastrl-train --config best.yaml` trains it.",
            f"Score (area rule): each run's validation {OBJECTIVE_LABELS[objective]} is "
            f"measured at step 0 and {grid}, each value held until the next point (the value "
            "at a point is the policy's after the first update that reaches it); the area "
            "under that step curve divided by the budget is the run's time-average. A trial's "
            "score is the mean over its seeds x folds runs."],
        images=images, image_notes=list(notes))
    noise = payload.get("noise")
    if noise is not None:
        floor = noise["noise_floor"]
        p_value = noise.get("p_value")
        alpha = f"{1.0 - noise.get('level', 0.9):g}"
        doc.sections.append(Section("Noise", bullets=[
            f"Noise floor (median SE of a trial's score over its seeds x folds, "
            f"{noise['trials_with_se']} trials): **{fmt(floor, '.3f')}**",
            f"Winner's lead over the median trial ({noise['median_score']:.3f}): "
            f"**{noise['winner_lead']:.3f}** (winner's own SE {fmt(noise['winner_se'], '.3f')})",
            (_untested_reason(noise) if p_value is None else
             f"Winner against the best of {noise['trials_tested']} equal configs (the trials'"
             f" labels shuffled within each of the {noise['runs_per_trial']} folds x seeds): "
             f"p = **{p_value:.3f}**; " + (
                 f"the search separated the winner (p <= {alpha})" if noise["separated"]
                 else f"**the search did not separate the configs** (p > {alpha})"))]))
    doc.sections.append(Section(
        "Overfitting gates (validation, one seed's policies: what is deployed)", bullets=[
            f"Deflated Sharpe Ratio of the winner given {gates['n_trials']} trials, "
            f"{gates.get('n_effective', 'n/a')} effective (clusters of the trials' return "
            "correlations: hierarchical, average linkage, cut at correlation "
            f"{gates.get('cluster_correlation', 'n/a')}): **{fmt(gates.get('dsr'))}** "
            "(above 0.95: unlikely to be luck)",
            f"Probability of Backtest Overfitting (CSCV, {gates.get('pbo_blocks', 'n/a')} "
            f"blocks of {gates.get('pbo_bars', 'n/a')} bars, fold(s) "
            f"{', '.join(str(f) for f in gates.get('pbo_folds', [])) or 'n/a'} (those every "
            f"trial reached), {gates['n_with_returns']} trials of which "
            f"{gates.get('n_pruned_in_pbo', 0)} pruned, at their last validated policy): "
            f"**{fmt(gates.get('pbo'))}** (near 0: the in-sample best stays good out of "
            f"sample; completed trials only, every fold: {fmt(gates.get('pbo_completed'))})",
            *(gates[k] for k in ("note", "dsr_note", "pbo_note") if gates.get(k))]))
    if "confirmation" in payload:
        doc.sections += confirmation_sections(payload, s["test_days"])
    return doc


def markdown(payload: dict[str, Any], images: dict[str, Path], notes: list[str]) -> str:
    """report.md of the study (:func:`study_document` rendered)."""
    return writer.markdown(study_document(payload, images, notes))


def write_study_outputs(study: Any, runner: Any, study_dir: str | Path, *, report: bool = True,
                        log: Any = lambda line: None) -> list[Path]:
    """best.yaml and trials.csv; with ``report`` the gates, confirmation, test days and the
    report files. Returns the paths written."""
    folder = Path(study_dir)
    folder.mkdir(parents=True, exist_ok=True)
    written = [write_trials_csv(study, folder / "trials.csv")]
    trials = _completed(study)
    if not trials:
        log("no trial completed: no best.yaml and no report")
        return written
    winner = max(trials, key=lambda t: t.value)
    best = folder / "best.yaml"
    best.write_text(best_yaml_text(winner, runner), encoding="utf-8")
    written.append(best)
    if not report:
        return written
    if getattr(runner.settings, "objective", None) == "walkforward":
        return written + write_walkforward_report(study, runner, folder, winner, log=log)

    # the trials that ran (slots a --timeout left waiting never did)
    all_trials = [t for t in counted_trials(study) if t.state.is_finished()]
    states: dict[str, int] = {}
    for t in all_trials:
        states[t.state.name.lower()] = states.get(t.state.name.lower(), 0) + 1
    payload: dict[str, Any] = {
        "study": study.study_name, "settings": runner.settings.to_dict(),
        "n_trials": len(all_trials), "states": ", ".join(f"{v} {k}" for k, v in states.items()),
        "best": {"number": winner.number, "score": winner.value, "params": winner.params},
        "gates": overfitting_gates(trials, winner, len(all_trials),
                                   pruned=[t for t in all_trials if t.state.name == "PRUNED"]),
        "noise": noise_summary(trials, winner),
    }
    payload.update(confirm_and_test(_configs(winner, runner), runner.settings,
                                    runner.confirmation_market(), log))
    payload["verdict"] = tuning_verdict(payload["differences"]["score"], payload["noise"])
    images, notes = plot_optuna(study, folder)
    images["curves"] = plot_curves(trials, payload["confirmation"], folder / "curves.png",
                                   validation_schedule(runner.settings)["objective"])
    writer.write_pages(study_document(payload, images, notes), folder)
    (folder / "report.json").write_text(json.dumps(payload, indent=1, default=_json_default)
                                        + "\n", encoding="utf-8")
    written += [folder / "report.md", folder / "report.html", folder / "report.json",
                *images.values()]
    return written


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return str(value)


__all__ = ["best_yaml_text", "confirm_and_test", "confirmation_sections", "noise_summary",
           "overfitting_gates", "paired_differences", "tuning_verdict", "write_study_outputs",
           "write_trials_csv"]
