"""Typed study and walk-forward settings: what the commands recorded reads back unchanged,
and a bad value is refused naming its key (exit 2 at the command line)."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

from fastrl.cli.walkforward import SETTINGS
from fastrl.cli.walkforward import main as walkforward_main
from fastrl.config import ConfigError
from fastrl.tune.settings import ConfirmationSettings, StudySettings
from fastrl.tune.storage import SETTINGS_ATTR, make_storage, open_study
from fastrl.walkforward.settings import WalkForwardSettings

# a study's settings as fastrl-tune recorded them (cli/tune.py settings_of, every key)
RECORDED_STUDY = {
    "symbols": ["BPCL", "HDFCLIFE"], "freq": "1d", "source": "bundled", "val_days": 120,
    "test_days": 30, "timesteps": 65536, "seeds": 1, "folds": 3, "confirm_days": 120,
    "confirm_seeds": 5, "base_preset": "fast", "set_options": ["num_envs=8"],
    "objective": "excess", "sampler_seed": None, "val_every": 1, "val_interval_steps": 4096,
    "space": {"learning_rate": {"type": "float", "low": 1e-05, "high": 0.003, "log": True}},
}

# walkforward.json as fastrl-walkforward wrote it (cli/walkforward.py _settings, in order)
RECORDED_WALKFORWARD = {
    "symbols": ["BPCL"], "portfolio": False, "freq": None, "data": None, "test_days": None,
    "through_test": False, "preset": None, "default_preset": "anchored", "config": None,
    "timesteps": 2048, "num_envs": 4,
    "seed": None, "device": None, "start": "2023-01-02", "step": 63,
    "train_window": "expanding", "val_days": 20, "embargo": None, "min_train_days": 60,
    "late_listings": "error", "warm_start": False, "compare": None, "seeds": 1,
    "ensemble": None, "workers": 1, "threads": 1, "engine": "auto", "max_members": None,
    "repair_ticks": False, "set_options": ["hidden_sizes=[8]"],
}


def test_recorded_study_settings_read_back_unchanged() -> None:
    settings = StudySettings.parse(RECORDED_STUDY)
    assert settings.to_dict() == RECORDED_STUDY
    assert settings.confirmation_seeds == 5 and settings.timesteps == 65536


def test_a_study_recorded_by_the_command_resumes(tmp_path: Path) -> None:
    """A study whose settings were written as a plain mapping resumes with the typed
    settings of the same flags: nothing differs, and its budget is topped up."""
    storage = make_storage(None, tmp_path)
    study = optuna.create_study(storage=storage, study_name="old", direction="maximize")
    study.set_user_attr(SETTINGS_ATTR, RECORDED_STUDY)
    study.enqueue_trial({}, user_attrs={"slot": True})
    resumed = open_study(storage, "old", StudySettings.parse(RECORDED_STUDY), 2, resume=True)
    assert len(resumed.get_trials(deepcopy=False)) == 2
    with pytest.raises(ValueError, match="other settings: timesteps 65536 != 1024"):
        open_study(storage, "old", StudySettings.parse(RECORDED_STUDY).replaced(timesteps=1024),
                   2, resume=True)


def test_settings_a_study_recorded_before_a_key_existed_take_its_default() -> None:
    older = {k: v for k, v in RECORDED_STUDY.items()
             if k not in ("confirm_days", "confirm_seeds", "objective", "sampler_seed",
                          "val_every", "val_interval_steps", "source", "set_options")}
    settings = StudySettings.parse(older)
    assert (settings.confirm_days, settings.objective, settings.source) == (0, "excess",
                                                                            "bundled")
    assert settings.confirmation_seeds == settings.seeds and settings.set_options == []


@pytest.mark.parametrize(("change", "message"), [
    ({"timesteps": 0}, "study setting 'timesteps' must be >= 1, got 0"),
    ({"objective": "sortino"}, "study setting 'objective' must be one of 'excess', "
                               "'sharpe' or 'walkforward', got 'sortino'"),
    ({"freq": "1h"}, "study setting 'freq' must be one of '1d' or '5min', got '1h'"),
    ({"seeds": "two"}, "study setting 'seeds' needs an integer, got 'two'"),
    ({"confirm_days": -1}, "study setting 'confirm_days' must be >= 0, got -1"),
    ({"budget": 5}, "study setting 'budget' is not a known key, got 5"),
    ({"symbols": None}, "study setting 'symbols' needs a list, got None"),
])
def test_bad_study_settings_are_refused_naming_the_key(change: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        StudySettings.parse({**RECORDED_STUDY, **change})
    assert str(info.value) == message


def test_a_missing_study_setting_is_named() -> None:
    with pytest.raises(ConfigError, match="study setting 'folds' is missing"):
        StudySettings.parse({k: v for k, v in RECORDED_STUDY.items() if k != "folds"})


def test_confirmation_settings_refuse_the_searchs_keys() -> None:
    with pytest.raises(ConfigError, match="'folds' is not a known key"):
        ConfirmationSettings.parse(RECORDED_STUDY)


def test_recorded_walkforward_settings_read_back_unchanged() -> None:
    settings = WalkForwardSettings.parse(RECORDED_WALKFORWARD)
    # the same file, byte for byte: the keys in the order the command writes them
    assert json.dumps(settings.to_dict(), indent=2) == json.dumps(RECORDED_WALKFORWARD,
                                                                  indent=2)


def test_walkforward_settings_recorded_before_a_key_existed_take_the_flags_default() -> None:
    older = {k: v for k, v in RECORDED_WALKFORWARD.items()
             if k not in ("portfolio", "through_test", "late_listings", "repair_ticks",
                          "test_days", "ensemble", "default_preset", "engine", "max_members")}
    settings = WalkForwardSettings.parse(older)
    assert (settings.portfolio, settings.through_test, settings.late_listings,
            settings.repair_ticks, settings.test_days, settings.ensemble,
            settings.default_preset, settings.engine, settings.max_members) == (
        False, False, "error", False, None, None, "fast", "auto", None)


@pytest.mark.parametrize(("change", "words"), [
    ({"threads": "many"}, "walk-forward setting 'threads' needs an integer, got 'many'"),
    ({"late_listings": "later"}, "walk-forward setting 'late_listings' must be one of "
                                 "'error' or 'join', got 'later'"),
    ({"stepp": 5}, "walk-forward setting 'stepp' is not a known key, got 5"),
    ({"warm_start": "sometimes"}, "walk-forward setting 'warm_start' needs true or false"),
])
def test_resume_with_a_bad_saved_setting_exits_2_naming_file_and_key(
        tmp_path: Path, capsys: pytest.CaptureFixture, change: dict, words: str) -> None:
    (tmp_path / SETTINGS).write_text(json.dumps({**RECORDED_WALKFORWARD, **change}))
    assert walkforward_main(["--resume", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / SETTINGS}: {words}" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == [SETTINGS]  # nothing written


def test_a_walkforward_recorded_when_fast_was_the_default_resumes_as_fast(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A run started without --preset before the default became anchored recorded
    ``preset: null`` and no ``default_preset``: it resumes as the fast run it trained."""
    run = tmp_path / "run"
    argv = ["--symbols", "BPCL", "--start", "2022-06-01", "--val-days", "40",
            "--min-train-days", "120", "--timesteps", "256", "--run-dir", str(run),
            "--workers", "1", "--preset", "fast", "--set", "num_envs=8", "num_steps=32",
            "minibatch_size=128", "n_epochs=1", "hidden_sizes=[8]", "device=cpu"]
    assert walkforward_main(argv) == 0
    recorded = json.loads((run / SETTINGS).read_text())
    assert recorded["default_preset"] == "anchored"  # what a new run records
    old = {k: v for k, v in recorded.items() if k != "default_preset"} | {"preset": None}
    (run / SETTINGS).write_text(json.dumps(old))
    capsys.readouterr()
    assert walkforward_main(["--resume", str(run)]) == 0
    out = capsys.readouterr().out
    assert "fast" in out and "trained on other inputs" not in out
