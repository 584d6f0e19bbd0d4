"""The report of a walk-forward study (``fastrl-tune --objective walkforward``).

Order matters for honesty, as in :mod:`fastrl.tune.report_study`:

1. The selection: every trial with its score (the annualised mean daily active return
   over buy-and-hold on the windows trading before ``--select-until``, ``wf_score``), its
   HAC SE (``wf_se``), the windows it scored (a pruned trial fewer) and its state.
2. The gates, on the selection windows only:
   - the Deflated Sharpe Ratio of the winner's daily active return (its
     ``trials/trial_NNNNN_walkforward.csv``) against the best Sharpe luck buys among N
     trials, N counting *every* trial that ran, pruned and failed ones included (a pruned
     or failed trial was a try too); the Sharpe spread is that of every trial with a
     record (completed and pruned), so a noisy short record widens it, never narrows it;
   - the Probability of Backtest Overfitting by CSCV over the windows: the matrix windows x
     trials of each window's mean daily active return (``wf_window_active``), for the
     trials that scored every selection window (a pruned trial is left out: its missing
     windows have no score to rank), in blocks of consecutive windows.
3. The confirmation (:mod:`fastrl.tune.confirm_walkforward`): the winner, both presets,
   the ladder's rules and buy-and-hold on the windows that trade on or after the date, on
   fresh seeds, with paired 90% intervals; the verdict says "no edge" where an interval
   includes 0.

The report (report.md, report.html, report.json, confirmation_daily.csv and the optuna
plots) is written in the study folder.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fastrl import selection
from fastrl.metrics import sharpe_per_bar
from fastrl.reports import writer
from fastrl.reports.format import format_number as fmt
from fastrl.reports.plots import plot_optuna
from fastrl.reports.writer import Document, Section, Table
from fastrl.tune.confirm_walkforward import (
    CANDIDATE,
    confirmation_summary,
    daily_frame,
    run_confirmation,
    steps_to_score,
)
from fastrl.tune.storage import counted_trials

MAX_PBO_BLOCKS = 16  # C(16, 8) = 12,870 splits; more windows share blocks
DSR_PASS = 0.95
CSV_COLUMNS = ("time", "window", "agent_return", "bh_return", "active")


def trial_csv(folder: Path, number: int) -> Path:
    """The walk-forward record of trial ``number`` in the study folder."""
    return Path(folder) / "trials" / f"trial_{int(number):05d}_walkforward.csv"


def active_series(folder: Path, number: int) -> np.ndarray | None:
    """Trial ``number``'s daily active returns, oldest first (None: no record written, as
    for a trial that failed before its first window). ValueError names a malformed file."""
    path = trial_csv(folder, number)
    if not path.is_file():
        return None
    frame = pd.read_csv(path)
    missing = [c for c in CSV_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)}")
    values = frame.sort_values("time", kind="stable")["active"].to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(values)):
        row = int(np.flatnonzero(~np.isfinite(values))[0])
        raise ValueError(f"{path}: non-finite active return at row {row + 2}")
    return values


def _score(trial: Any) -> float | None:
    value = trial.user_attrs.get("wf_score", trial.value)
    return None if value is None or not math.isfinite(value) else float(value)


def selection_windows(trials: Sequence[Any]) -> list[int]:
    """The selection windows: every window a completed trial scored."""
    done = [t for t in trials if t.state.name == "COMPLETE"]
    return sorted({int(w) for t in done for w in t.user_attrs.get("wf_windows") or []})


def selection_rows(trials: Sequence[Any]) -> list[dict[str, Any]]:
    """One row per trial that ran, best score first, unscored ones last."""
    rows = [{"number": t.number, "state": t.state.name.lower(), "params": dict(t.params),
             "score": _score(t), "se": t.user_attrs.get("wf_se"),
             "windows": len(t.user_attrs.get("wf_windows") or []),
             "env_steps": t.user_attrs.get("wf_env_steps")} for t in trials]
    return sorted(rows, key=lambda r: (r["score"] is None, -(r["score"] or 0.0), r["number"]))


def window_matrix(trials: Sequence[Any], windows: Sequence[int]) -> tuple[np.ndarray, list[int]]:
    """windows x trials of ``wf_window_active`` for the trials that scored every window of
    ``windows``, and those trials' numbers."""
    columns, numbers = [], []
    for t in trials:
        scored = [int(w) for w in t.user_attrs.get("wf_windows") or []]
        active = t.user_attrs.get("wf_window_active") or []
        if len(scored) != len(active):
            raise ValueError(f"trial {t.number}: wf_windows has {len(scored)} entries but "
                             f"wf_window_active {len(active)}")
        if windows and set(windows) <= set(scored):
            by_window = dict(zip(scored, active, strict=True))
            columns.append([float(by_window[w]) for w in windows])
            numbers.append(t.number)
    matrix = np.array(columns, dtype=np.float64).T if columns else np.empty((len(windows), 0))
    return matrix, numbers


def walkforward_gates(trials: Sequence[Any], winner: Any, folder: Path) -> dict[str, Any]:
    """DSR of the winner (N = every trial in ``trials``) and PBO over the windows."""
    states = [t.state.name for t in trials]
    out: dict[str, Any] = {"n_trials": len(trials), "n_pruned": states.count("PRUNED"),
                           "n_failed": states.count("FAIL")}
    series = {t.number: s for t in trials
              if (s := active_series(folder, t.number)) is not None and s.size >= 2}
    out["n_with_records"] = len(series)
    notes = []
    if winner.number not in series or len(series) < 2:
        out["dsr"] = None
        notes.append("DSR needs the winner's record and at least 2 trials with records")
    else:
        sharpes = np.array([sharpe_per_bar(s) for s in series.values()])
        try:
            out["dsr"] = float(selection.deflated_sharpe_ratio(
                series[winner.number], sharpes, n_trials=max(2, len(trials))))
        except ValueError as err:
            out["dsr"] = None
            notes.append(f"DSR not computed: {err}")
        out["winner_sharpe_per_bar"] = float(sharpe_per_bar(series[winner.number]))
        out["trial_sharpe_sd"] = float(np.std(sharpes, ddof=1))
        out["winner_days"] = int(series[winner.number].size)
    windows = selection_windows(trials)
    matrix, numbers = window_matrix(trials, windows)
    out.update({"pbo_windows": windows, "pbo_trials": numbers, "pbo": None})
    if matrix.shape[1] >= 2:
        # the trials that scored every window cluster by the correlation of their windows'
        # scores: context for N (TPE samples near its best, so trials repeat one another)
        out["n_effective_complete"] = selection.effective_number_of_trials(matrix)
    blocks = min(MAX_PBO_BLOCKS, len(windows) - len(windows) % 2)
    if matrix.shape[1] < 2 or blocks < 2:
        notes.append(f"PBO needs at least 2 trials that scored every selection window and "
                     f"2 windows (here {matrix.shape[1]} and {len(windows)})")
    else:
        try:
            result = selection.probability_of_backtest_overfitting(matrix, n_blocks=blocks,
                                                                   metric="mean")
            out["pbo"], out["pbo_blocks"] = result.pbo, result.n_blocks
        except ValueError as err:
            notes.append(f"PBO not computed: {err}")
    out["notes"] = notes
    return out


def gates_words(gates: Mapping[str, Any]) -> str:
    """The gates in plain words."""
    dsr, pbo = gates.get("dsr"), gates.get("pbo")
    parts = []
    if dsr is not None:
        parts.append(f"DSR {dsr:.2f} over {gates['n_trials']} trials "
                     + ("(above 0.95: the winner's selection record is unlikely to be luck)"
                        if dsr > DSR_PASS else "(not above 0.95: the winner's selection record "
                        "is within what luck buys among that many trials)"))
    if pbo is not None:
        parts.append(f"PBO {pbo:.2f} over {len(gates['pbo_windows'])} windows "
                     + ("(the in-sample best most often falls to the median or below out of "
                        "sample)" if pbo >= 0.5 else "(the in-sample best mostly stays above "
                        "the median out of sample)"))
    return "; ".join(parts) or "the gates could not be computed"


def walkforward_payload(study: Any, runner: Any, folder: Path, winner: Any) -> dict[str, Any]:
    """Everything the report states before the confirmation: settings, the selection
    table and the gates (JSON-ready)."""
    trials = [t for t in counted_trials(study) if t.state.is_finished()]
    states: dict[str, int] = {}
    for t in trials:
        states[t.state.name.lower()] = states.get(t.state.name.lower(), 0) + 1
    return {"study": study.study_name, "objective": "walkforward",
            "settings": runner.settings.to_dict(),
            "n_trials": len(trials), "states": ", ".join(f"{v} {k}" for k, v in states.items()),
            "best": {"number": winner.number, "score": _score(winner),
                     "se": winner.user_attrs.get("wf_se"), "params": dict(winner.params)},
            "selection": {"windows": selection_windows(trials), "rows": selection_rows(trials)},
            "gates": walkforward_gates(trials, winner, folder)}


def _pct(value: float | None, spec: str = "+.1%") -> str:
    return "n/a" if value is None or not math.isfinite(value) else format(value, spec)


def _interval(entry: Mapping[str, Any] | None, p: bool = False) -> str:
    if entry is None:
        return "-"
    ci = entry["ci"]
    text = _pct(entry["mean"]) + (f" [{_pct(ci[0])}, {_pct(ci[1])}]" if ci else " (no interval)")
    return text + (f" (p = {entry['p']:.3f})" if p and entry.get("p") is not None else "")


def _params(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={fmt(v, '.3g') if isinstance(v, float) else v}"
                     for k, v in sorted(params.items()))


def _selection_section(payload: Mapping[str, Any], until: str) -> Section:
    rows = [[str(r["number"]), r["state"],
             f"{_pct(r['score'])} ± {_pct(r['se'], '.1%')}" if r["score"] is not None else "-",
             str(r["windows"]), "-" if r["env_steps"] is None else f"{int(r['env_steps']):,}",
             _params(r["params"])] for r in payload["selection"]["rows"]]
    windows = payload["selection"]["windows"]
    return Section(
        f"Selection: the windows trading before {until}",
        paragraphs=[f"A trial's score is its mean daily return over buy-and-hold a year "
                    f"(equal weight for a portfolio), pooled across symbols and seeds, on the "
                    f"{len(windows)} selection windows (± its HAC SE); a pruned trial stopped "
                    "between windows and scored fewer."],
        table=Table(["trial", "state", "score a year ± SE", "windows", "env steps", "params"],
                    rows, numeric=False))


def _gates_section(gates: Mapping[str, Any]) -> Section:
    return Section("Overfitting gates (selection windows only)", bullets=[
        f"Deflated Sharpe Ratio of the winner's daily active return "
        f"({gates.get('winner_days', 'n/a')} days) given **{gates['n_trials']} trials** "
        "(every trial that ran: "
        f"{gates['n_pruned']} pruned and {gates['n_failed']} failed included; Sharpe spread "
        f"from the {gates['n_with_records']} trials with a record): **{fmt(gates.get('dsr'))}**"
        " (above 0.95: unlikely to be luck)",
        f"Probability of Backtest Overfitting (CSCV over {len(gates['pbo_windows'])} windows "
        f"in {gates.get('pbo_blocks', 'n/a')} blocks, score: a window's mean daily active "
        f"return; {len(gates['pbo_trials'])} trials that scored every window, pruned ones left "
        f"out): **{fmt(gates.get('pbo'))}** (near 0: the in-sample best stays good out of "
        "sample; 0.5 and above: it does not)",
        f"Clusters among those trials (correlation of their window scores above "
        f"{selection.CLUSTER_CORRELATION}): {gates.get('n_effective_complete', 'n/a')}",
        *gates.get("notes", [])])


def _confirmation_sections(conf: Mapping[str, Any]) -> list[Section]:
    candidate = conf["candidate"]
    windows = conf["windows"]
    rows = [[row["config"], _interval(row["active"]) if row["active"] else "0 (the benchmark)",
             "-" if row["vs_candidate"] is None else _interval(row["vs_candidate"], p=True)]
            for row in conf["rows"]]
    seeds = conf["seeds"]
    return [Section(
        f"Confirmation: the windows trading on or after {conf['select_until']}",
        paragraphs=[
            f"{len(windows)} windows ({conf['first_day']} to {conf['last_day']}, "
            f"{conf['days']} days), none traded by any trial, planned with the study's spec. "
            f"The agents trained on {seeds} fresh seed{'s' * (seeds != 1)} (trainer seeds "
            f"{conf['trainer_seeds'][0]} to {conf['trainer_seeds'][-1]}); an agent's daily "
            "return is pooled across symbols and averaged across seeds; the rules trade the "
            f"{candidate} config's days. Intervals: two-sided 90%, paired on the same days "
            "(HAC SE, Student's t); p: one-sided, H0 the tuned config earns no more."],
        table=Table(["config", "mean return over buy-and-hold a year [90%]",
                     f"{candidate} minus it a year [90%] (p)"], rows, numeric=False),
        closing=[f"**{conf['verdict'][0].upper()}{conf['verdict'][1:]}.**"])]


def _steps_section(steps: Mapping[str, Any]) -> Section:
    if steps["median_ratio"] is None:
        text = (f"not measured: no window had both validation curves ({steps['missing_curves']} "
                f"without, {steps['reference_best_at_step_0']} with the "
                f"{steps['reference']}'s best at step 0)")
    else:
        ci = steps["ci"]
        text = (f"median ratio of the steps to reach the {steps['reference']}'s best validation "
                f"Sharpe, {steps['candidate']} over {steps['reference']}: "
                f"**{steps['median_ratio']:.2f}**"
                + (f" (90% bootstrap interval {ci[0]:.2f} to {ci[1]:.2f})" if ci else "")
                + f" over {len(steps['rows'])} window x seed pairs; never reached in "
                f"{steps['never_reached']}; below 1: the tuned config learns faster")
    return Section("Steps to the baseline's validation score", level=3, bullets=[text])


def walkforward_document(payload: Mapping[str, Any], images: Mapping[str, Path],
                         notes: Sequence[str]) -> Document:
    """The walk-forward study report's content for :mod:`fastrl.reports.writer`."""
    s = payload["settings"]
    until = s.get("select_until")
    spec = s.get("walkforward") or {}
    best = payload["best"]
    doc = Document(
        title=f"fastrl-tune study {payload['study']} (walk-forward objective)",
        verdict=payload.get("verdict") or None,
        paragraphs=[
            f"{', '.join(s['symbols'])} ({s['freq']}); {payload['n_trials']} trials "
            f"({payload['states']}); {s['timesteps']:,} env steps a window, {s['seeds']} "
            f"seed(s); retrained every {spec.get('step', 'n/a')} trading days, "
            f"{spec.get('val_days', 'n/a')} validation days a window; selection before "
            f"{until}; base preset {s['base_preset']}; fixed: "
            f"{' '.join(s['set_options']) or 'nothing'}.",
            f"Winner: trial {best['number']}, score {_pct(best['score'])} a year "
            f"± {_pct(best['se'], '.1%')}. `fastrl-train --config best.yaml` trains it."],
        images=dict(images), image_notes=list(notes))
    doc.sections += [_selection_section(payload, str(until)), _gates_section(payload["gates"])]
    if "confirmation" in payload:
        doc.sections += _confirmation_sections(payload["confirmation"])
    if "steps_to_baseline" in payload:
        doc.sections.append(_steps_section(payload["steps_to_baseline"]))
    return doc


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return str(value)


def write_walkforward_report(study: Any, runner: Any, study_dir: str | Path, winner: Any, *,
                             log: Any = lambda line: None, bars: Any = None,
                             workers: int | None = None) -> list[Path]:
    """The gates, the confirmation and the report files of a walk-forward study (the
    dispatch of :func:`fastrl.tune.report_study.write_study_outputs`); returns the paths."""
    folder = Path(study_dir)
    payload = walkforward_payload(study, runner, folder, winner)
    until = runner.settings.select_until
    log(f"confirmation: trial {winner.number}, fast and baseline on the windows from {until}")
    # the study runner's bars (all of them: trials saw only those before the date)
    bars = getattr(runner, "bars", None) if bars is None else bars
    run = run_confirmation(winner, runner, bars=bars, workers=workers, progress=log)
    payload["confirmation"] = confirmation_summary(run, until)
    payload["steps_to_baseline"] = steps_to_score(run)
    payload["verdict"] = f"{payload['confirmation']['verdict']}; {gates_words(payload['gates'])}"
    daily = pd.DataFrame({name: daily_frame(run, name)["agent_return"] for name in run.configs})
    daily[run.rungs[0] if run.rungs else "buy_and_hold"] = \
        daily_frame(run, CANDIDATE)["bh_return"]
    daily.index.name = "time"
    daily.to_csv(folder / "confirmation_daily.csv")
    images, notes = plot_optuna(study, folder)
    writer.write_pages(walkforward_document(payload, images, notes), folder)
    (folder / "report.json").write_text(json.dumps(payload, indent=1, default=_json_default)
                                        + "\n", encoding="utf-8")
    return [folder / "report.md", folder / "report.html", folder / "report.json",
            folder / "confirmation_daily.csv", *images.values()]


__all__ = ["active_series", "gates_words", "selection_rows", "selection_windows", "trial_csv",
           "walkforward_document", "walkforward_gates", "walkforward_payload",
           "window_matrix", "write_walkforward_report"]
