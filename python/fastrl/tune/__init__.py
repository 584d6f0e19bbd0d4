"""Hyperparameter search for learning speed (Optuna): the library behind ``fastrl-tune``.

Start here: :mod:`fastrl.tune.space` (the knobs, from ``space.yaml``),
:mod:`fastrl.tune.settings` (what a study records), :mod:`fastrl.tune.objective` (a trial's
score: the time-average of its validation-Sharpe curve, median over seeds x walk-forward
folds), :mod:`fastrl.tune.storage` (storage, exact trial budget across workers),
:mod:`fastrl.tune.study` (one trial in process, or B at once as one population:
``TrialRunner(batch=B)``, :func:`train_batch`) and :mod:`fastrl.tune.report_study` (best.yaml,
trials.csv, overfitting gates, confirmation on fresh seeds, the test days once at the end).
The walk-forward objective (``--objective walkforward``): :mod:`fastrl.tune.walkforward_trials`
(a trial's score on the windows before ``--select-until``, its windows trained with its batch's).
Population-based training: :mod:`fastrl.tune.pbt` (exploit/explore, lineage, winner;
:func:`run_pbt` runs it) over :class:`fastrl.ppo.population.Population`, the PPO engine's
P members in one process. The package loads torch: commands import it when they run.
"""

from __future__ import annotations

from typing import Any

from fastrl.ppo.population import Population
from fastrl.tune.objective import (
    CONFIRM_SEED_BASE,
    TUNING_SEED_BASE,
    curve_area,
    train_batch,
    train_run,
)
from fastrl.tune.pbt import PBT, PBTResult
from fastrl.tune.space import config_for, load_space
from fastrl.tune.storage import make_storage, open_study
from fastrl.tune.study import TrialRunner


def run_pbt(config: Any, population: int, ready: int, **kwargs: Any) -> Any:
    """Population-based training (:func:`fastrl.tune.pbt.pbt`). Not named ``pbt``: that
    name is the :mod:`fastrl.tune.pbt` module."""
    return PBT(config, population, ready, **kwargs).run()


__all__ = ["CONFIRM_SEED_BASE", "PBT", "PBTResult", "Population", "TUNING_SEED_BASE",
           "TrialRunner", "config_for", "curve_area", "load_space", "make_storage",
           "open_study", "run_pbt", "train_batch", "train_run"]
