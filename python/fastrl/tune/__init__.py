"""Hyperparameter search for learning speed (Optuna): the library behind ``fastrl-tune``.

Start here: :mod:`fastrl.tune.space` (the knobs, from ``space.yaml``),
:mod:`fastrl.tune.objective` (a trial's score: the time-average of its validation-Sharpe
curve, median over seeds x walk-forward folds), :mod:`fastrl.tune.study` (storage, exact
trial budget across workers, one trial in process) and :mod:`fastrl.tune.report_study` (best.yaml,
trials.csv, overfitting gates, confirmation on fresh seeds, the test days once at the end).
Population-based training: :mod:`fastrl.tune.population` (P members in one process) and
:mod:`fastrl.tune.population_based` (exploit/explore, lineage, winner; :func:`pbt` runs it).
Both load torch, so they are imported on first use, not with this package.
"""

from __future__ import annotations

from typing import Any

from fastrl.tune.objective import CONFIRM_SEED_BASE, TUNING_SEED_BASE, curve_area, train_run
from fastrl.tune.space import config_for, load_space
from fastrl.tune.study import TrialRunner, make_storage, open_study

_LAZY = {"PBT": "fastrl.tune.population_based", "PBTResult": "fastrl.tune.population_based",
         "Population": "fastrl.tune.population"}


def pbt(config: Any, population: int, ready: int, **kwargs: Any) -> Any:
    """Population-based training (:func:`fastrl.tune.population_based.pbt`)."""
    from fastrl.tune.population_based import pbt as run_pbt

    return run_pbt(config, population, ready, **kwargs)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fastrl.tune' has no attribute {name!r}")


__all__ = ["CONFIRM_SEED_BASE", "PBT", "PBTResult", "Population", "TUNING_SEED_BASE",
           "TrialRunner", "config_for", "curve_area", "load_space", "make_storage",
           "open_study", "pbt", "train_run"]
