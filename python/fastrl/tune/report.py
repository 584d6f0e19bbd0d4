"""After the search: best.yaml, trials.csv, overfitting gates, confirmation and the test days.

Order matters for honesty. Everything up to the confirmation reads validation bars only:

1. ``best.yaml`` (the winner as config keys on the base preset, loadable by
   ``fastrl-train --config``) and ``trials.csv``.
2. Gates on validation: the Deflated Sharpe Ratio of the winner's final-policy validation
   returns given the number of completed trials, and the Probability of Backtest
   Overfitting by CSCV over trials x time blocks of those returns (``fastrl.stats``).
3. Confirmation on fresh seeds (1000+, never used by the search): winner, fast and
   baseline, same budget, same --set options, fold 0.
4. Once, at the end: the confirmation runs' final policies on the test days, beside
   buy-and-hold, with error bars (``EvalResult.uncertainty``).

The report (md + html + PNG) shows the optimisation history, parameter importances, the
validation curves of the top 5 trials (their search seed) next to the winner's and both
presets' on the first fresh confirmation seed, the gates, the confirmation and the test days.
"""

from __future__ import annotations

import copy
import csv
import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from fastrl import report_writer
from fastrl.report_writer import Document, Section, Table
from fastrl.tune.objective import (
    CONFIRM_SEED_BASE,
    TUNING_SEED_BASE,
    train_run,
    validation_schedule,
)
from fastrl.tune.space import config_for, params_to_overrides

TOP_CURVES = 5
PRESETS = ("fast", "baseline")
MAX_PBO_BLOCKS = 16
CSV_ATTRS = ("worker", "failure", "interrupted")


def _completed(study: Any) -> list[Any]:
    from optuna.trial import TrialState

    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]


def best_yaml_text(trial: Any, runner: Any) -> str:
    """best.yaml: the base preset, the study's fixed keys and the winner's draw."""
    settings = runner.settings
    base = runner.base
    values: dict[str, Any] = {"preset": settings["base_preset"]}
    from fastrl.config import parse_set_options

    values.update(parse_set_options(list(settings.get("set_options", []))))
    values.update({"data.symbols": list(settings["symbols"]), "data.freq": settings["freq"],
                   "data.source": settings.get("source", "bundled"),
                   "data.test_days": settings["test_days"],
                   "data.val_days": settings["val_days"],
                   "total_timesteps": settings["timesteps"]})
    values.update(params_to_overrides(trial.params, base, settings["timesteps"]))
    header = (f"# fastrl-tune winner: trial {trial.number}, learning-speed score "
              f"{trial.value:.4f} (median validation-Sharpe curve average)\n"
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


def overfitting_gates(trials: list[Any], winner: Any, n_trials: int) -> dict[str, Any]:
    """DSR of the winner and PBO (CSCV) over the trials' final validation returns."""
    from fastrl import stats
    from fastrl.metrics import sharpe_per_bar

    series = {t.number: np.asarray(t.user_attrs.get("val_returns", []), dtype=np.float64)
              for t in trials}
    series = {k: v for k, v in series.items() if v.size >= 2 and np.all(np.isfinite(v))}
    out: dict[str, Any] = {"n_trials": n_trials, "n_with_returns": len(series)}
    if len(series) < 2 or winner.number not in series:
        out["dsr"] = out["pbo"] = None
        out["note"] = "needs at least 2 completed trials with validation returns"
        return out
    sharpes = np.array([sharpe_per_bar(v) for v in series.values()])
    try:
        out["dsr"] = float(stats.deflated_sharpe_ratio(series[winner.number], sharpes,
                                                       n_trials=max(2, n_trials)))
    except ValueError as err:
        out["dsr"], out["dsr_note"] = None, str(err)
    length = min(v.size for v in series.values())
    matrix = np.stack([v[:length] for v in series.values()], axis=1)
    blocks = min(MAX_PBO_BLOCKS, length - length % 2)
    try:
        result = stats.probability_of_backtest_overfitting(matrix, n_blocks=blocks)
        out["pbo"], out["pbo_blocks"] = result.pbo, result.n_blocks
    except ValueError as err:
        out["pbo"], out["pbo_note"] = None, str(err)
    out["winner_val_sharpe_per_bar"] = float(sharpe_per_bar(series[winner.number]))
    return out


def _preset_config(name: str, runner: Any) -> Any:
    from fastrl.tune.study import base_config

    return base_config({**runner.settings, "base_preset": name})


def _configs(winner: Any, runner: Any) -> dict[str, Any]:
    timesteps = runner.settings["timesteps"]
    configs = {"tuned": config_for(winner.params, runner.base, timesteps)}
    for name in PRESETS:
        configs[name] = _preset_config(name, runner)
    return configs


def confirm_and_test(configs: dict[str, Any], runner: Any, log: Any) -> dict[str, Any]:
    """Fresh seeds on validation (fold 0), then, last, the test days of those runs."""
    from fastrl.backtest import COMBINED, evaluate_agent

    seeds = [CONFIRM_SEED_BASE + s for s in range(runner.settings["seeds"])]
    market = runner.market(0)
    runs: dict[str, list[Any]] = {}
    for name, config in configs.items():
        runs[name] = [train_run(config, market, seed=seed, fold=0, keep_agent=True,
                                **validation_schedule(runner.settings)) for seed in seeds]
        log(f"confirmation {name}: scores {[round(r.score, 3) for r in runs[name]]}")
    confirmation = {name: {"seeds": seeds, "scores": [r.score for r in rs],
                           "final_val_sharpes": [r.final_sharpe for r in rs],
                           "median_score": float(np.median([r.score for r in rs])),
                           # the first fresh seed's validation curve, for the curves plot
                           "curve": {"seed": rs[0].seed, "steps": rs[0].steps,
                                     "sharpe": rs[0].sharpe, "score": rs[0].score}}
                    for name, rs in runs.items()}
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
                             "p_beats_buy_and_hold": errors.vs_buy_and_hold.probability,
                             "total_return": result.combined["agent"].total_return})
            bh = errors.sharpe["buy_and_hold"]
            test["buy_and_hold"] = {"sharpe": bh.sharpe, "se": bh.se,
                                    "ci90": [bh.ci_low, bh.ci_high], "psr": bh.psr,
                                    "total_return": result.combined["buy_and_hold"].total_return}
        test[name] = {"runs": per_seed,
                      "median_sharpe": float(np.median([r["sharpe"] for r in per_seed]))}
    return {"confirmation": confirmation, "test": test}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(trials: list[Any], confirmed: dict[str, dict[str, Any]], path: Path) -> Path:
    """The top trials' validation curves (the search's seed; chosen on them, so optimistic)
    next to the winner's and both presets' curves on the first fresh confirmation seed (the
    presets trained once, with the confirmation, not again for the picture)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    top = sorted(trials, key=lambda t: t.value, reverse=True)[:TOP_CURVES]
    for t in top:
        curve = t.user_attrs.get("curve") or {}
        if curve:
            ax.plot(curve["steps"], curve["sharpe"], drawstyle="steps-post", alpha=0.7,
                    label=f"trial {t.number} (score {t.value:.2f})")
    styles = {"tuned": "-", "fast": "--", "baseline": ":"}
    for name, entry in confirmed.items():
        curve = entry["curve"]
        ax.plot(curve["steps"], curve["sharpe"], styles.get(name, "-."), color="black",
                lw=1.8 if name == "tuned" else 1.2, drawstyle="steps-post",
                label=f"{'winner' if name == 'tuned' else 'preset ' + name}, fresh seed "
                      f"{curve['seed']} (score {curve['score']:.2f})")
    ax.set(xlabel="env steps", ylabel="validation Sharpe (annualised)",
           title=f"top {len(top)} trials (seed {TUNING_SEED_BASE}) vs winner and presets on a "
                 "fresh seed (fold 0)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_optuna(study: Any, folder: Path) -> tuple[dict[str, Path], list[str]]:
    """Optimisation history and parameter importances (when they can be computed)."""
    import optuna

    plt = _pyplot()
    images, notes = {}, []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        ax = optuna.visualization.matplotlib.plot_optimization_history(study)
        ax.figure.tight_layout()
        images["history"] = folder / "optimization_history.png"
        ax.figure.savefig(images["history"], dpi=100)
        plt.close(ax.figure)
        try:
            # with few trials the evaluator may warn that its quantiles pick the same trials
            # (equal importances); the plot still says so, so the warning adds nothing
            warnings.filterwarnings("ignore", message="Target and region quantiles",
                                    category=UserWarning)
            ax = optuna.visualization.matplotlib.plot_param_importances(study)
            ax.figure.tight_layout()
            images["importances"] = folder / "param_importances.png"
            ax.figure.savefig(images["importances"], dpi=100)
            plt.close(ax.figure)
        except (ValueError, RuntimeError) as err:
            # needs >= 2 completed trials whose parameters vary
            notes.append(f"parameter importances not computed: {err}")
            plt.close("all")
    return images, notes


def _fmt(value: Any, spec: str = ".2f") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return format(value, spec)


def study_document(payload: dict[str, Any], images: dict[str, Path],
                   notes: list[str]) -> Document:
    """The study report's content for :mod:`fastrl.report_writer`: settings and winner,
    the gates, the confirmation and the test days, the plots."""
    s = payload["settings"]
    gates = payload["gates"]
    doc = Document(
        title=f"fastrl-tune study {payload['study']}",
        paragraphs=[
            f"{', '.join(s['symbols'])} ({s['freq']}); {payload['n_trials']} trials "
            f"({payload['states']}); {s['timesteps']:,} env steps per run, {s['seeds']} seed(s)"
            f" x {s['folds']} fold(s) of {s['val_days']} validation days; base preset "
            f"{s['base_preset']}; fixed: {' '.join(s['set_options']) or 'nothing'}.",
            f"Winner: trial {payload['best']['number']}, score "
            f"{payload['best']['score']:.4f} (time-average of the validation Sharpe over the "
            "budget, median over seeds x folds). `fastrl-train --config best.yaml` trains it."],
        images=images, image_notes=list(notes))
    doc.sections.append(Section("Overfitting gates (validation)", bullets=[
        f"Deflated Sharpe Ratio of the winner given {gates['n_trials']} trials: "
        f"**{_fmt(gates.get('dsr'))}** (above 0.95: unlikely to be luck)",
        f"Probability of Backtest Overfitting (CSCV, {gates.get('pbo_blocks', 'n/a')} "
        f"blocks, {gates['n_with_returns']} trials): **{_fmt(gates.get('pbo'))}** "
        "(near 0: the in-sample best stays good out of sample)",
        *(gates[k] for k in ("note", "dsr_note", "pbo_note") if gates.get(k))]))
    if "confirmation" in payload:
        conf = payload["confirmation"]
        doc.sections.append(Section(
            f"Confirmation on fresh seeds {conf['tuned']['seeds']} (validation, fold 0)",
            table=Table(["config", "median score", "scores", "final val Sharpe"], [
                [name, f"{c['median_score']:.3f}", ", ".join(f"{x:.2f}" for x in c["scores"]),
                 ", ".join(f"{x:.2f}" for x in c["final_val_sharpes"])]
                for name, c in conf.items()], numeric=False)))
        test = payload["test"]
        rows = [[f"{name} seed {r['seed']}", _fmt(r["sharpe"]), _fmt(r["se"]),
                 f"{_fmt(r['ci90'][0])} to {_fmt(r['ci90'][1])}", _fmt(r["psr"]),
                 _fmt(r["p_beats_buy_and_hold"]), _fmt(r["total_return"], ".1%")]
                for name in ("tuned", *PRESETS) for r in test[name]["runs"]]
        bh = test["buy_and_hold"]
        rows.append(["buy & hold", _fmt(bh["sharpe"]), _fmt(bh["se"]),
                     f"{_fmt(bh['ci90'][0])} to {_fmt(bh['ci90'][1])}", _fmt(bh["psr"]), "-",
                     _fmt(bh["total_return"], ".1%")])
        doc.sections.append(Section(
            f"Test days ({s['test_days']}), touched once, at the end",
            table=Table(["strategy", "Sharpe (per seed)", "SE", "90% CI", "PSR",
                         "P(> buy & hold)", "total return"], rows, numeric=False)))
    return doc


def markdown(payload: dict[str, Any], images: dict[str, Path], notes: list[str]) -> str:
    """report.md of the study (:func:`study_document` rendered)."""
    return report_writer.markdown(study_document(payload, images, notes))


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
    from fastrl.tune.study import counted_trials

    # the trials that ran (slots a --timeout left waiting never did)
    all_trials = [t for t in counted_trials(study) if t.state.is_finished()]
    states: dict[str, int] = {}
    for t in all_trials:
        states[t.state.name.lower()] = states.get(t.state.name.lower(), 0) + 1
    payload: dict[str, Any] = {
        "study": study.study_name, "settings": copy.deepcopy(runner.settings),
        "n_trials": len(all_trials), "states": ", ".join(f"{v} {k}" for k, v in states.items()),
        "best": {"number": winner.number, "score": winner.value, "params": winner.params},
        "gates": overfitting_gates(trials, winner, len(all_trials)),
    }
    payload.update(confirm_and_test(_configs(winner, runner), runner, log))
    images, notes = plot_optuna(study, folder)
    images["curves"] = plot_curves(trials, payload["confirmation"], folder / "curves.png")
    report_writer.write_pages(study_document(payload, images, notes), folder)
    (folder / "report.json").write_text(json.dumps(payload, indent=1, default=_json_default)
                                        + "\n", encoding="utf-8")
    written += [folder / "report.md", folder / "report.html", folder / "report.json",
                *images.values()]
    return written


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return str(value)


__all__ = ["best_yaml_text", "confirm_and_test", "overfitting_gates", "write_study_outputs",
           "write_trials_csv"]
