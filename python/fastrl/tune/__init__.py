"""Hyperparameter search for learning speed (Optuna): the library behind ``fastrl-tune``.

Start here: :mod:`fastrl.tune.space` (the knobs, from ``space.yaml``),
:mod:`fastrl.tune.objective` (a trial's score: the time-average of its validation-Sharpe
curve, median over seeds x walk-forward folds), :mod:`fastrl.tune.study` (storage, exact
trial budget across workers, one trial in process) and :mod:`fastrl.tune.report` (best.yaml,
trials.csv, overfitting gates, confirmation on fresh seeds, the test days once at the end).
Population-based training: :mod:`fastrl.tune.population` (P members in one process) and
:func:`fastrl.tune.pbt` (exploit/explore, lineage, winner).
"""

from __future__ import annotations

from fastrl.tune.objective import CONFIRM_SEED_BASE, TUNING_SEED_BASE, curve_area, train_run
from fastrl.tune.pbt import PBT, PBTResult, pbt
from fastrl.tune.population import Population
from fastrl.tune.space import config_for, load_space
from fastrl.tune.study import TrialRunner, make_storage, open_study

__all__ = ["CONFIRM_SEED_BASE", "PBT", "PBTResult", "Population", "TUNING_SEED_BASE",
           "TrialRunner", "config_for", "curve_area", "load_space", "make_storage",
           "open_study", "pbt", "train_run"]
