"""fastrl-tune --objective walkforward --select-until DATE: no bar from DATE on reaches a
trial (the leak test), a batch's trials x windows x seeds train per chunk in one
train_windows call, pruning between chunks stops a trial's later windows, the flags, and two
workers sharing a study on a real PostgreSQL server.

Budgets are tiny ((8,) networks, 4 envs x 16-step rollouts, 4 updates a window, 4 windows
of 42 days in 2018): these tests check the machinery, not what a search finds.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest

from fastrl.cli.tune import main as tune_main
from fastrl.config import build_config
from fastrl.tune import walkforward_trials as wft
from fastrl.tune.space import load_space
from fastrl.tune.storage import make_storage, open_study
from fastrl.tune.walkforward_trials import (
    WalkForwardTrialRunner,
    cut_bars,
    pooled_record,
    selection_windows,
    walkforward_score,
)
from fastrl.walkforward.plan import WalkForwardSpec, plan_windows
from fastrl.walkforward.run import load_walkforward_bars

from postgres_server import postgres_server

SYMBOLS = ["BPCL", "HDFCLIFE"]
UNTIL = "2019-01-01"
TINY_SET = ["num_envs=4", "num_steps=16", "minibatch_size=32", "hidden_sizes=[8]",
            "device=cpu", "torch_threads=1"]
SPACE = """\
learning_rate: {type: float, low: 1.0e-4, high: 3.0e-3, log: true}
n_epochs: {type: int, low: 1, high: 2}
"""
# HDFCLIFE lists in November 2017: with 60 training and 20 validation days it joins the
# second window; 4 windows of 42 days trade April to December 2018
SPEC = WalkForwardSpec(step=42, start="2018-04-01", val_days=20, min_train_days=60,
                       test_days=20, late_listings="join")
WF_FLAGS = ["--start", "2018-04-01", "--step", "42", "--val-days", "20", "--min-train-days",
            "60", "--test-days", "20", "--wf-chunks", "2"]


@pytest.fixture(autouse=True)
def one_torch_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def space_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("space") / "space.yaml"
    path.write_text(SPACE)
    return path


@pytest.fixture(scope="module")
def bars() -> dict[str, pd.DataFrame]:
    return load_walkforward_bars(build_config("fast", None, {"data.symbols": SYMBOLS}, []))


def study_settings(space_file: Path, **changes: object) -> dict:
    values = {"symbols": SYMBOLS, "freq": "1d", "source": "bundled", "val_days": 20,
              "test_days": 20, "timesteps": 256, "seeds": 1, "folds": 1, "confirm_days": 0,
              "base_preset": "fast", "set_options": TINY_SET, "val_every": 1,
              "objective": "walkforward", "select_until": UNTIL,
              "walkforward": dataclasses.asdict(SPEC.resolved("1d")), "wf_chunks": 2,
              "sampler_seed": 0, "space": str(space_file)}
    values.update(changes)
    return values


def run_study(space_file: Path, folder: Path, bars: dict[str, pd.DataFrame], *,
              trials: int = 6, batch: int = 3) -> optuna.Study:
    runner = WalkForwardTrialRunner(study_settings(space_file), load_space(space_file),
                                    study_dir=folder, batch=batch, bars=bars)
    study = open_study(make_storage(None, folder), "wf", runner.settings, trials)
    runner.run(study)
    return study


def outcome(study: optuna.Study, folder: Path) -> list[tuple]:
    """Everything a trial left that the search acts on, exactly as stored."""
    rows = []
    for t in study.get_trials():
        attrs = {k: v for k, v in t.user_attrs.items() if k.startswith("wf_")}
        record = (folder / "trials" / f"trial_{t.number:05d}_walkforward.csv").read_bytes()
        rows.append((t.number, t.state.name, t.value, t.params, t.intermediate_values,
                     json.dumps(attrs, sort_keys=True), record))
    return rows


def scaled_after(bars: dict[str, pd.DataFrame], day: str, seed: int
                 ) -> dict[str, pd.DataFrame]:
    """``bars`` with every price on or after ``day`` multiplied by a random walk: valid
    bars (high >= close >= low stays) that no model could mistake for the originals."""
    rng = np.random.default_rng(seed)
    out = {}
    for symbol, frame in bars.items():
        frame = frame.copy()
        rows = frame.index.normalize() >= pd.Timestamp(day)
        walk = np.exp(np.cumsum(rng.normal(0.0, 0.03, int(rows.sum()))))
        for column in ("open", "high", "low", "close"):
            frame.loc[rows, column] = frame.loc[rows, column].to_numpy() * walk
        out[symbol] = frame
    return out


# ----------------------------------------------------------------------------- the windows


def test_selection_windows_are_the_full_plans_windows_before_the_date(bars) -> None:
    windows = selection_windows(bars, SPEC, "1d", UNTIL)
    full = plan_windows(bars, SPEC, "1d")
    assert windows == full[:len(windows)] and len(windows) == 4
    assert all(w.last_traded < UNTIL for w in windows)
    assert full[len(windows)].last_traded >= UNTIL  # the next one trades past the date
    cut = cut_bars(bars, UNTIL)
    assert all(frame.index.max() < pd.Timestamp(UNTIL) for frame in cut.values())
    with pytest.raises(ValueError, match="--select-until 2018-05-01: no walk-forward window"):
        selection_windows(bars, SPEC, "1d", "2018-05-01")
    with pytest.raises(ValueError, match="--select-until 2022-12-01: no window trades after"):
        selection_windows(bars, SPEC, "1d", "2022-12-01")


def test_the_score_is_the_annualised_mean_active_return_pooled_over_symbols_and_seeds() -> None:
    times = pd.to_datetime(["2018-01-01", "2018-01-01", "2018-01-02", "2018-01-03"])
    def record(agent: list[float]) -> pd.DataFrame:
        return pd.DataFrame({"time": times, "symbol": ["A", "B", "A", "A"],
                             "window": [0, 0, 0, 1], "agent_return": agent,
                             "bh_return": [0.0, 0.02, 0.01, 0.0],
                             "cost_frac": 0.0, "bh_cost_frac": 0.0})
    pooled = pooled_record([record([0.01, 0.03, 0.0, 0.01]), record([0.03, 0.01, 0.02, 0.03])])
    # per bar: the symbols' mean, then the seeds' mean
    assert pooled["agent_return"].tolist() == pytest.approx([0.02, 0.01, 0.02])
    assert pooled["active"].tolist() == pytest.approx([0.01, 0.0, 0.02])
    assert pooled["window"].tolist() == [0, 0, 1]
    score, se = walkforward_score(pooled, "1d")
    assert score == pytest.approx(0.01 * 252)
    assert se == pytest.approx(252 * np.std([0.01, 0.0, 0.02], ddof=1) / np.sqrt(3))


# ----------------------------------------------------------------------------- the leak test


def test_no_bar_from_the_date_on_reaches_a_trial(space_file: Path, tmp_path: Path,
                                                  bars) -> None:
    """Every bar from DATE on changed: every trial's score, pruning decision, record and the
    winner are bit-identical. A change before DATE (the control) does change them."""
    first = run_study(space_file, tmp_path / "a", bars)
    second = run_study(space_file, tmp_path / "b", scaled_after(bars, UNTIL, seed=1))
    a, b = outcome(first, tmp_path / "a"), outcome(second, tmp_path / "b")
    assert a == b
    assert {row[1] for row in a} == {"COMPLETE", "PRUNED"}  # decisions were made
    assert first.best_trial.number == second.best_trial.number
    # the control: bars the last window trades (from October 2018) changed as well
    control = run_study(space_file, tmp_path / "c", scaled_after(bars, "2018-10-01", seed=1))
    assert [row[6] for row in outcome(control, tmp_path / "c")] != [row[6] for row in a]


# ----------------------------------------------------------------------------- batching, pruning


def test_a_batch_trains_per_chunk_in_one_call_and_a_pruned_trial_no_later_window(
        space_file: Path, tmp_path: Path, bars, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list] = []
    train = wft.train_windows

    def spy(values, jobs, *args, **kwargs):
        calls.append(list(jobs))
        return train(values, jobs, *args, **kwargs)

    monkeypatch.setattr(wft, "train_windows", spy)
    runner = WalkForwardTrialRunner(study_settings(space_file, seeds=2),
                                    load_space(space_file), study_dir=tmp_path, batch=3,
                                    bars=bars)
    study = open_study(make_storage(None, tmp_path), "wf", runner.settings, 6)
    runner.run(study)
    trials = study.get_trials()
    pruned = [t for t in trials if t.state.name == "PRUNED"]
    names = {t.number: f"trial_{t.number:05d}" for t in trials}
    # per batch: one call for the first chunk (every trial), one for the second (the
    # trials not pruned after the first), none when all were
    expected = []
    for batch in ((0, 1, 2), (3, 4, 5)):
        expected.append(({names[n] for n in batch}, [0, 1]))
        alive = {names[n] for n in batch if trials[n].state.name == "COMPLETE"}
        if alive:
            expected.append((alive, [2, 3]))
    assert [({job.name for job in call}, sorted({job.window.index for job in call}))
            for call in calls] == expected
    for call in calls:  # trials x windows x seeds, each once
        assert len(call) == len({job.key for job in call}) == (
            len({job.name for job in call}) * 2 * 2)
    assert pruned
    for t in pruned:
        name = f"trial_{t.number:05d}"
        windows = sorted({job.window.index for call in calls for job in call
                          if job.name == name})
        assert windows == [0, 1]  # pruned after the first chunk: no later window trained
        assert t.user_attrs["wf_windows"] == [0, 1]
        assert "pruned after window 2/4" in t.user_attrs["failure"]
        kept = json.loads((tmp_path / "trials" / f"trial_{t.number:05d}.json").read_text())
        assert len(kept["windows"]) == 2 * 2  # its trained windows x seeds
        assert kept["env_steps"] == t.user_attrs["wf_env_steps"] == 4 * 256
        # what it traded is in its record: the two windows' bars, nothing later
        record = pd.read_csv(tmp_path / "trials" / f"trial_{t.number:05d}_walkforward.csv")
        assert sorted(record["window"].unique()) == [0, 1]
    for t in trials:
        if t.state.name == "COMPLETE":
            assert t.value == t.user_attrs["wf_score"]
            assert t.user_attrs["wf_windows"] == [0, 1, 2, 3]
            record = pd.read_csv(tmp_path / "trials" / f"trial_{t.number:05d}_walkforward.csv")
            assert list(record.columns) == wft.RECORD_COLUMNS
            means = record.groupby("window")["active"].mean().tolist()
            assert t.user_attrs["wf_window_active"] == pytest.approx(means)
            score, _ = walkforward_score(record, "1d")
            assert score == pytest.approx(t.value)


# ----------------------------------------------------------------------------- the flags


def cli(space_file: Path, run_dir: Path, *extra: str, trials: int = 4) -> list[str]:
    return ["--symbols", *SYMBOLS, "--objective", "walkforward", "--trials", str(trials),
            "--timesteps", "256", "--space", str(space_file), "--run-dir", str(run_dir),
            "--set", *TINY_SET, "--no-report", *WF_FLAGS, *extra]


def test_the_flags_are_checked_before_anything_is_written(
        space_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "study"
    assert tune_main(cli(space_file, folder)) == 2
    assert "--select-until" in capsys.readouterr().err
    assert tune_main(cli(space_file, folder, "--select-until", "2018-05-01")) == 2
    assert "--select-until 2018-05-01: no walk-forward window" in capsys.readouterr().err
    assert tune_main(cli(space_file, folder, "--select-until", "not-a-day")) == 2
    assert "--select-until" in capsys.readouterr().err
    assert tune_main(cli(space_file, folder, "--select-until", UNTIL, "--folds", "2")) == 2
    assert "--folds" in capsys.readouterr().err
    assert tune_main(cli(space_file, folder, "--select-until", UNTIL, "--train-window",
                         "week")) == 2
    assert "--train-window must be 'expanding' or a number of days" in capsys.readouterr().err
    assert tune_main(cli(space_file, folder, "--select-until", UNTIL, "--window-workers",
                         "0")) == 2
    assert "--window-workers must be >= 1" in capsys.readouterr().err
    plain = ["--symbols", *SYMBOLS, "--trials", "2", "--timesteps", "256", "--run-dir",
             str(folder), "--select-until", UNTIL]
    assert tune_main(plain) == 2
    assert "--select-until applies to --objective walkforward" in capsys.readouterr().err
    assert not folder.exists()


def test_cli_study_then_resume_with_other_settings_is_refused(
        space_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "study"
    args = cli(space_file, folder, "--select-until", UNTIL, "--batch", "2", trials=2)
    assert tune_main(args) == 0
    recorded = optuna.load_study(storage=make_storage(None, folder),
                                 study_name="fastrl-BPCL-HDFCLIFE").user_attrs
    settings = recorded["fastrl_settings"]
    assert settings["select_until"] == UNTIL and settings["wf_chunks"] == 2
    assert settings["walkforward"] == dataclasses.asdict(SPEC.resolved("1d"))
    assert sorted(p.name for p in (folder / "trials").iterdir()) == [
        "trial_00000.json", "trial_00000_walkforward.csv",
        "trial_00001.json", "trial_00001_walkforward.csv"]
    other = cli(space_file, folder, "--select-until", "2018-12-01", "--resume", trials=2)
    assert tune_main(other) == 2
    assert "select_until" in capsys.readouterr().err


# ----------------------------------------------------------------------------- PostgreSQL


def _importable_fastrl_path(env: dict) -> str:
    import fastrl

    here = str(Path(fastrl.__file__).resolve().parents[1])
    return os.pathsep.join(p for p in (here, env.get("PYTHONPATH", "")) if p)


def test_two_workers_share_a_walkforward_study_on_postgresql(space_file: Path,
                                                             tmp_path: Path) -> None:
    with postgres_server("tuner", "tune") as url:
        env = dict(os.environ)
        env["PYTHONPATH"] = _importable_fastrl_path(env)
        common = cli(space_file, tmp_path / "unused", "--select-until", UNTIL, "--storage",
                     url, "--study", "pg", "--batch", "2", trials=6)
        procs = []
        for machine in ("a", "b"):
            argv = [sys.executable, "-m", "fastrl.cli.tune", *common]
            argv[argv.index("--run-dir") + 1] = str(tmp_path / machine)
            procs.append(subprocess.Popen(argv, env=env, stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT, text=True))
            time.sleep(0.5)  # the same command, a moment later, on "another machine"
        outs = [proc.communicate(timeout=240)[0] for proc in procs]
        assert [proc.returncode for proc in procs] == [0, 0], outs
        trials = optuna.load_study(storage=make_storage(url, "."), study_name="pg").get_trials()
    assert len(trials) == 6 and sorted(t.number for t in trials) == list(range(6))
    assert {t.state.name for t in trials} <= {"COMPLETE", "PRUNED"}
    # each trial ran once, on one machine: its records are in that machine's folder only
    ran = {machine: {int(p.name[6:11]) for p in (tmp_path / machine / "trials").glob("*.json")}
           for machine in ("a", "b")}
    assert ran["a"].isdisjoint(ran["b"]) and ran["a"] | ran["b"] == set(range(6))
    assert all(ran.values()), "both machines should have run trials"
    for t in trials:
        machine = "a" if t.number in ran["a"] else "b"
        assert (tmp_path / machine / "trials" / f"trial_{t.number:05d}_walkforward.csv").is_file()
        assert t.user_attrs["wf_windows"][0] == 0


def test_late_listings_default_to_join_for_single_symbols_and_error_for_a_portfolio() -> None:
    from fastrl.cli.tune import build_parser, check_numbers, walkforward_settings

    def recorded(*extra: str) -> dict:
        args = build_parser().parse_args(["--symbols", *SYMBOLS, "--trials", "1",
                                          "--timesteps", "8192", "--objective", "walkforward",
                                          "--select-until", UNTIL, *extra])
        check_numbers(args)
        set_options = [item for group in args.set_options for item in group]
        return walkforward_settings(args, set_options)["walkforward"]

    assert recorded()["late_listings"] == "join"
    assert recorded()["val_days"] == 120  # --val-days: each window's validation days
    assert recorded("--set", "portfolio.enabled=true")["late_listings"] == "error"
    assert recorded("--late-listings", "error")["late_listings"] == "error"


def test_a_diverged_trial_fails_alone(space_file: Path, tmp_path: Path, bars,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A window of trial 1 diverges inside the batch's call: trial 1 fails, the others'
    windows are trained trial by trial and they end as they would have."""
    from fastrl.ppo.trainer import TrainingDivergedError

    train = wft.train_windows

    def diverging(values, jobs, *args, **kwargs):
        trained = train(values, [j for j in jobs if j.name != "trial_00001"], *args, **kwargs)
        if any(j.name == "trial_00001" for j in jobs):
            raise TrainingDivergedError("non-finite losses")
        return trained

    monkeypatch.setattr(wft, "train_windows", diverging)
    study = run_study(space_file, tmp_path / "a", bars, trials=3, batch=3)
    monkeypatch.setattr(wft, "train_windows", train)
    alone = run_study(space_file, tmp_path / "b", bars, trials=3, batch=3)
    failed = study.trials[1]
    assert failed.state.name == "FAIL" and "diverged" in failed.user_attrs["failure"]
    assert json.loads((tmp_path / "a" / "trials" / "trial_00001.json").read_text())["state"] \
        == "FAIL"
    for number in (0, 2):  # the same draws (seeded TPE's first draws), the same records
        assert study.trials[number].value == alone.trials[number].value
        assert study.trials[number].state.name == "COMPLETE"


def test_walkforward_settings_read_back_and_other_studies_record_no_walkforward_key(
        space_file: Path) -> None:
    from fastrl.config import ConfigError
    from fastrl.tune.settings import StudySettings

    recorded = StudySettings.parse(study_settings(space_file)).to_dict()
    assert StudySettings.parse(recorded).to_dict() == recorded
    assert recorded["select_until"] == UNTIL and recorded["wf_chunks"] == 2
    plain = study_settings(space_file, objective="excess", select_until=None,
                           walkforward=None, wf_chunks=None)
    assert not {"select_until", "walkforward", "wf_chunks"} & set(
        StudySettings.parse(plain).to_dict())
    with pytest.raises(ConfigError, match="'walkforward' is set with select_until"):
        StudySettings.parse(study_settings(space_file, select_until=None))
    with pytest.raises(ConfigError, match="'walkforward' is set with select_until"):
        StudySettings.parse({**plain, "select_until": UNTIL})
    with pytest.raises(ConfigError, match="'select_until' must be a date"):
        StudySettings.parse(study_settings(space_file, select_until="2019-13-01"))


def test_ctrl_c_marks_the_batchs_trials_and_resume_runs_their_slots(
        space_file: Path, tmp_path: Path, bars, monkeypatch: pytest.MonkeyPatch) -> None:
    train = wft.train_windows
    calls = []

    def interrupted(values, jobs, *args, **kwargs):
        calls.append(jobs)
        if len(calls) == 2:  # the second chunk: Ctrl-C
            raise KeyboardInterrupt
        return train(values, jobs, *args, **kwargs)

    monkeypatch.setattr(wft, "train_windows", interrupted)
    runner = WalkForwardTrialRunner(study_settings(space_file), load_space(space_file),
                                    study_dir=tmp_path, batch=2, bars=bars)
    storage = make_storage(None, tmp_path)
    study = open_study(storage, "wf", runner.settings, 2)
    with pytest.raises(KeyboardInterrupt):
        runner.run(study)
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["FAIL", "FAIL"]
    assert all(t.user_attrs["interrupted"] for t in trials)
    monkeypatch.setattr(wft, "train_windows", train)
    resumed = open_study(storage, "wf", runner.settings, 2, resume=True)
    runner.run(resumed)
    finished = [t for t in resumed.get_trials() if not t.user_attrs.get("interrupted")]
    assert len(finished) == 2 and all(t.state.name == "COMPLETE" for t in finished)
