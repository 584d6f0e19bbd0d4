"""The report of a walk-forward study: the selection table, the gates (DSR over every trial,
PBO over the windows), the confirmation after --select-until and its verdict.

The gates and tables run on a synthetic study: an in-memory optuna study whose trials carry
the walk-forward attributes, with their records written in a temporary study folder. The
confirmation trains for real on two bundled symbols with a tiny budget (two windows).
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import optuna
import pandas as pd
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from fastrl import selection
from fastrl.metrics import sharpe_per_bar
from fastrl.rules import rule_names
from fastrl.tune import confirm_walkforward as cw
from fastrl.tune import report_walkforward as rw
from fastrl.tune.report_study import write_study_outputs
from fastrl.tune.settings import StudySettings
from fastrl.tune.study import base_config
from fastrl.walkforward.plan import WalkForwardSpec
from fastrl.walkforward.run import window_seed

DAYS = 20  # trading days a synthetic window
WINDOWS = 6
SELECT_UNTIL = "2022-06-01"
SPEC = WalkForwardSpec(step=63, val_days=40, min_train_days=120, test_days=30)
TINY_SET = ["hidden_sizes=[8]", "num_envs=4", "num_steps=16", "minibatch_size=32",
            "device=cpu", "torch_threads=1"]

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _trial(study: optuna.Study, folder: Path, rng: np.random.Generator, state: TrialState,
           windows: int, edge: float) -> None:
    """One trial with the contracted attributes and, unless it failed, its record."""
    params = {"learning_rate": float(rng.uniform(1e-4, 1e-2))}
    distributions = {"learning_rate": FloatDistribution(1e-4, 1e-2)}
    attrs: dict = {}
    if state != TrialState.FAIL:
        times = pd.bdate_range("2012-01-02", periods=WINDOWS * DAYS)[:windows * DAYS]
        bh = rng.normal(0.0004, 0.01, times.size)
        active = rng.normal(edge, 0.01, times.size)
        frame = pd.DataFrame({"time": times, "window": np.repeat(np.arange(windows), DAYS),
                              "agent_return": bh + active, "bh_return": bh, "active": active})
        number = len(study.trials)
        rw.trial_csv(folder, number).parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(rw.trial_csv(folder, number), index=False)
        per_window = frame.groupby("window")["active"].mean()
        attrs = {"wf_score": float(active.mean() * 252),
                 "wf_se": float(active.std(ddof=1) / math.sqrt(active.size) * 252),
                 "wf_windows": list(range(windows)),
                 "wf_window_active": [float(x) for x in per_window],
                 "wf_env_steps": 1024 * windows}
    value = attrs["wf_score"] if state == TrialState.COMPLETE else None
    study.add_trial(optuna.trial.create_trial(params=params, distributions=distributions,
                                              value=value, state=state, user_attrs=attrs))


def synthetic_study(folder: Path, edges: list[float], seed: int = 0) -> optuna.Study:
    """Completed trials with the given daily edges, then one pruned after 3 windows and one
    failed before its first."""
    rng = np.random.default_rng(seed)
    study = optuna.create_study(direction="maximize", study_name="wf")
    for edge in edges:
        _trial(study, folder, rng, TrialState.COMPLETE, WINDOWS, edge)
    _trial(study, folder, rng, TrialState.PRUNED, 3, 0.0)
    _trial(study, folder, rng, TrialState.FAIL, 0, 0.0)
    return study


def _winner(study: optuna.Study):
    return max((t for t in study.trials if t.state == TrialState.COMPLETE),
               key=lambda t: t.value)


def test_dsr_counts_every_trial_and_pbo_leaves_the_pruned_out(tmp_path: Path) -> None:
    study = synthetic_study(tmp_path, [0.0, 0.0005, -0.0005, 0.001])
    winner = _winner(study)
    gates = rw.walkforward_gates(study.trials, winner, tmp_path)
    assert (gates["n_trials"], gates["n_pruned"], gates["n_failed"]) == (6, 1, 1)
    assert gates["n_with_records"] == 5  # the failed trial wrote none
    records = [rw.active_series(tmp_path, t.number) for t in study.trials[:5]]
    sharpes = np.array([sharpe_per_bar(r) for r in records])
    expected = selection.deflated_sharpe_ratio(records[winner.number], sharpes, n_trials=6)
    assert gates["dsr"] == pytest.approx(expected)
    # N = 6, not the 4 completed: more tries buy more luck, so the deflation is harsher
    assert gates["dsr"] < selection.deflated_sharpe_ratio(records[winner.number], sharpes,
                                                          n_trials=4)
    pruned = study.trials[4].number
    assert gates["pbo_trials"] == [0, 1, 2, 3] and pruned not in gates["pbo_trials"]
    assert gates["pbo_windows"] == list(range(WINDOWS))
    matrix = np.array([t.user_attrs["wf_window_active"] for t in study.trials[:4]]).T
    assert gates["pbo"] == pytest.approx(selection.probability_of_backtest_overfitting(
        matrix, n_blocks=WINDOWS, metric="mean").pbo)
    assert gates["pbo_blocks"] == WINDOWS


def test_gates_separate_a_real_edge_from_noise(tmp_path: Path) -> None:
    edge = rw.walkforward_gates(*(lambda s: (s.trials, _winner(s)))(
        synthetic_study(tmp_path / "edge", [0.0, 0.0, 0.0, 0.006])), tmp_path / "edge")
    assert edge["dsr"] > 0.95 and edge["pbo"] == 0.0
    null = rw.walkforward_gates(*(lambda s: (s.trials, _winner(s)))(
        synthetic_study(tmp_path / "null", [0.0] * 8, seed=3)), tmp_path / "null")
    assert null["dsr"] < 0.95
    assert "within what luck buys" in rw.gates_words(null)


def test_selection_table_lists_every_trial_best_first(tmp_path: Path) -> None:
    study = synthetic_study(tmp_path, [0.0, 0.001, -0.001])
    rows = rw.selection_rows(study.trials)
    assert [r["state"] for r in rows][-1] == "fail"
    scored = [r["score"] for r in rows if r["score"] is not None]
    assert scored == sorted(scored, reverse=True)
    assert {r["state"]: r["windows"] for r in rows}["pruned"] == 3
    assert rw.selection_windows(study.trials) == list(range(WINDOWS))


def test_a_malformed_record_is_named(tmp_path: Path) -> None:
    path = rw.trial_csv(tmp_path, 7)
    path.parent.mkdir(parents=True)
    path.write_text("time,window,agent_return,bh_return\n2020-01-01,0,0.1,0.0\n")
    with pytest.raises(ValueError, match=r"trial_00007_walkforward.csv: missing column\(s\) "
                       "active"):
        rw.active_series(tmp_path, 7)
    bad = SimpleNamespace(number=3, user_attrs={"wf_windows": [0, 1], "wf_window_active": [0.1]})
    with pytest.raises(ValueError, match="trial 3: wf_windows has 2 entries"):
        rw.window_matrix([bad], [0, 1])


def _row(config: str, ci: list[float] | None, p: float | None = 0.5) -> dict:
    return {"config": config, "vs_candidate": {"mean": 0.0, "ci": ci, "p": p}}


def test_the_verdict_never_claims_an_edge_an_interval_does_not_show() -> None:
    rows = [{"config": "tuned", "vs_candidate": None}, _row("fast", [-0.01, 0.02], 0.3),
            _row("baseline", [0.01, 0.03], 0.001), _row("momentum", [-0.05, -0.01], 0.999),
            _row("ma10", [0.001, 0.03], 0.04), _row("buy_and_hold", None, None)]
    cw.adjust_for_comparisons([r["vs_candidate"] for r in rows[1:]])
    text = cw.confirmation_verdict(rows)
    assert "the tuned config beats baseline, ma10 (not after Holm's adjustment" in text
    assert "fast" not in text.split("no edge")[0]
    assert "no edge over fast (the intervals include 0)" in text
    assert "; momentum beats the tuned config" in text
    assert "too few days to compare with buy_and_hold" in text


def test_steps_to_the_baseline_score() -> None:
    curves = {  # window -> (baseline's curve, tuned's)
        0: ([[0, -1.0], [100, 0.5], [200, 0.8], [300, 0.7]], [[0, -1.0], [50, 0.9]]),
        1: ([[0, 0.1], [100, 0.4]], [[0, 0.0], [50, 0.2], [200, 0.4]]),
        2: ([[0, 0.1], [100, 0.3]], [[0, 0.0], [400, 0.2]]),  # never reached
        3: ([[0, 0.9], [100, 0.3]], [[0, 0.0]]),  # the baseline's best at step 0
        4: (None, [[0, 0.0]]),  # no curve recorded
    }
    trained = {}
    for w, (base, tuned) in curves.items():
        trained[("baseline", 0, w)] = SimpleNamespace(val_curve=base)
        trained[("tuned", 0, w)] = SimpleNamespace(val_curve=tuned)
    run = SimpleNamespace(seeds=1, windows=[SimpleNamespace(index=w) for w in curves],
                          trained=trained)
    out = cw.steps_to_score(run)
    assert [r["ratio"] for r in out["rows"]] == [0.25, 2.0, math.inf]
    assert (out["never_reached"], out["reference_best_at_step_0"],
            out["missing_curves"]) == (1, 1, 1)
    assert out["median_ratio"] == 2.0
    low, high = out["ci"]
    assert low == 0.25 and high == math.inf  # an unreached window stays infinite, not NaN


# ----------------------------------------------------------------------------- real bars


@pytest.fixture(scope="module")
def tiny_runner() -> SimpleNamespace:
    settings = StudySettings.parse({
        "symbols": ["BPCL", "HDFCLIFE"], "freq": "1d", "val_days": 20, "test_days": 20,
        "timesteps": 256, "seeds": 2, "confirm_seeds": 2, "folds": 1, "base_preset": "fast",
        "set_options": TINY_SET, "objective": "walkforward", "select_until": SELECT_UNTIL,
        "walkforward": dataclasses.asdict(SPEC)})
    return SimpleNamespace(settings=settings, base=base_config(settings))


@pytest.fixture(scope="module")
def confirmed(tiny_runner: SimpleNamespace):
    winner = SimpleNamespace(number=0, params={"learning_rate": 3e-4})
    return cw.run_confirmation(winner, tiny_runner)


def test_the_confirmation_trades_only_after_the_date_on_fresh_seeds(confirmed) -> None:
    day = pd.Timestamp(SELECT_UNTIL)
    run = confirmed
    assert 1 <= len(run.windows) <= 2
    assert all(pd.Timestamp(w.first_traded) >= day for w in run.windows)
    # every trained window is one of those: none that trades before the date was trained
    assert {key[2] for key in run.trained} == {w.index for w in run.windows}
    assert set(run.configs) == {"tuned", "fast", "baseline"}
    for record in [*run.records.values(), *run.rung_records.values()]:
        assert record["time"].min() >= day
    # the search's seeds: window_seed(0, k, w) for k < 2; the confirmation's: none of them
    search = {window_seed(0, k, w) for k in range(2) for w in range(100)}
    assert not search & {window_seed(run.configs["tuned"].seed, k, w.index)
                         for k in range(run.seeds) for w in run.windows}
    assert run.seeds == 2


def test_the_confirmation_table(confirmed) -> None:
    summary = cw.confirmation_summary(confirmed, SELECT_UNTIL)
    names = [row["config"] for row in summary["rows"]]
    rungs = [r for r in rule_names("single") if r != "buy_and_hold"]
    assert names == ["tuned", "fast", "baseline", *rungs, "buy_and_hold"]
    rows = {row["config"]: row for row in summary["rows"]}
    # tuned minus buy-and-hold is the tuned config's own active return
    versus_hold = rows["buy_and_hold"]["vs_candidate"]
    assert {k: versus_hold[k] for k in rows["tuned"]["active"]} == rows["tuned"]["active"]
    for row in summary["rows"]:
        for entry in (row["active"], row["vs_candidate"]):
            if entry is None or entry["ci"] is None:
                continue
            low, high = entry["ci"]
            assert low <= entry["mean"] <= high
            # the two-sided 90% interval's lower end is the one-sided 95% bound
            assert (low > 0) == (entry["p"] < 0.05)
            if "p_holm" in entry:  # adjusted across the comparisons: never below the raw p
                assert entry["p_holm"] >= entry["p"]
    with pytest.raises(ValueError, match="before --select-until 2022-09-15"):
        cw.confirmation_summary(confirmed, "2022-09-15")


def test_the_study_report_dispatches_on_the_walkforward_objective(
        tiny_runner, confirmed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    study = synthetic_study(tmp_path, [0.0, 0.0005, -0.0005])
    monkeypatch.setattr(rw, "run_confirmation", lambda *a, **k: confirmed)
    written = write_study_outputs(study, tiny_runner, tmp_path)
    assert {p.name for p in written} >= {"best.yaml", "trials.csv", "report.md", "report.json",
                                         "confirmation_daily.csv"}
    payload = json.loads((tmp_path / "report.json").read_text())
    assert payload["gates"]["n_trials"] == 5 and payload["objective"] == "walkforward"
    text = (tmp_path / "report.md").read_text()
    for heading in ("Selection: the windows trading before 2022-06-01", "Overfitting gates",
                    "Confirmation: the windows trading on or after 2022-06-01",
                    "Steps to the baseline's validation score"):
        assert heading in text
    # "no edge" exactly for the configs whose interval includes 0
    verdict = payload["confirmation"]["verdict"]
    for row in payload["confirmation"]["rows"]:
        ci = (row["vs_candidate"] or {}).get("ci")
        if ci is not None and ci[0] <= 0 <= ci[1]:
            assert row["config"] in verdict.split("no edge over ")[1].split(" (")[0]
    assert "walk-forward score" in (tmp_path / "best.yaml").read_text()
    daily = pd.read_csv(tmp_path / "confirmation_daily.csv", index_col="time")
    assert list(daily.columns) == ["tuned", "fast", "baseline", "buy_and_hold"]
