"""What a trial is worth: how fast a config learns, on validation bars only.

A run trains for the budget and backtests its deterministic policy on the validation slice
(:meth:`Trainer.validate`, the report's combined Sharpe) before the first update and after
every ``val_every`` updates. Its score is the area under that step curve divided by the env
steps trained: the time-average of the validation Sharpe, so a run that held its final
score from step 0 scores exactly that score, and a run that gets there sooner scores more.

A trial's score is the median over K seeds x F walk-forward folds. Fold ``f`` moves the
validation window ``f x val_days`` trading days back: it is
``build_market(test_days=test_days + f x val_days, val_days=val_days)``, so it trains only
on bars before its validation window. Bars after a fold's validation window (the real test
days included) are never stepped: trials build envs on ``train`` and ``val`` blocks only.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fastrl.config import TrainConfig

TUNING_SEED_BASE = 0  # the search trains seeds 0 .. K-1
CONFIRM_SEED_BASE = 1000  # the winner is confirmed on seeds 1000 .. 1000+K-1, never searched


class TrialDiverged(ValueError):
    """A run of the trial diverged or scored NaN (the trial is recorded as failed)."""


def curve_area(steps: list[int], values: list[float]) -> float:
    """Time-average of the step curve ``values[i]`` held from ``steps[i]`` to ``steps[i+1]``.

    ``steps`` starts at 0 and rises; the curve ends at ``steps[-1]`` (the env steps trained).
    A single point is its own average.
    """
    if len(steps) != len(values) or not steps:
        raise ValueError(f"curve_area needs matching non-empty steps and values, got "
                         f"{len(steps)} and {len(values)}")
    if len(steps) == 1:
        return float(values[0])
    spans = np.diff(np.asarray(steps, dtype=np.float64))
    if np.any(spans <= 0):
        raise ValueError("curve_area: steps must rise strictly")
    return float(np.dot(spans, np.asarray(values[:-1], dtype=np.float64)) / (steps[-1] - steps[0]))


def fold_days(test_days: int, val_days: int, fold: int) -> tuple[int, int]:
    """(test_days, val_days) that put fold ``fold``'s validation window f x val_days back."""
    return test_days + fold * val_days, val_days


def build_fold_market(config: TrainConfig, fold: int) -> Any:
    """The train/val splits of fold ``fold`` for the config's data section."""
    from fastrl.data.market import load_market

    fold_config = copy.deepcopy(config)
    fold_config.data.test_days, fold_config.data.val_days = fold_days(
        config.data.test_days, config.data.val_days, fold)
    return load_market(fold_config)


@dataclass
class RunResult:
    """One training run of a trial: its validation curve, score and final-policy returns."""

    seed: int
    fold: int
    steps: list[int]
    sharpe: list[float]
    score: float
    final_sharpe: float
    val_returns: list[float]  # per-bar returns of the final policy on the validation slice
    seconds: list[float] = field(default_factory=list)  # wall time at each curve point
    agent: Any = None  # kept only when asked for (confirmation runs are tested later)

    def as_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "fold": self.fold, "score": self.score,
                "final_sharpe": self.final_sharpe, "curve": {"steps": self.steps,
                "sharpe": self.sharpe, "seconds": self.seconds}}


def validation_result(trainer: Any) -> Any:
    """The trainer's validation backtest as an EvalResult (what ``validate()`` reads)."""
    from fastrl.backtest import evaluate_agent

    trainer.network.eval()
    try:
        return evaluate_agent(trainer.agent, trainer.market.val, trainer.config.env,
                              baselines=False)
    finally:
        trainer.network.train()


# report(progress in [0, 1] of this run, running area so far); may raise to prune
Reporter = Callable[[float, float], None]


def train_run(config: TrainConfig, market: Any, *, seed: int, fold: int, val_every: int = 1,
              val_interval_steps: int = 0, report: Reporter | None = None,
              keep_agent: bool = False) -> RunResult:
    """Train one run to the budget, validating as it goes; raises TrialDiverged.

    Validation runs after every ``val_every`` updates, or, with ``val_interval_steps``, at
    the first update at or past each multiple of that many env steps (so configs with short
    rollouts are not validated, and slowed, more often than others); always at the end.
    """
    from fastrl.backtest import COMBINED
    from fastrl.ppo.trainer import Trainer, TrainingDivergedError

    config = copy.deepcopy(config)
    config.seed = int(seed)
    config.data.test_days, config.data.val_days = fold_days(
        config.data.test_days, config.data.val_days, fold)
    trainer = Trainer(config, market=market)
    started = time.perf_counter()
    steps, values, seconds = [0], [trainer.validate()["sharpe"]], [0.0]
    total = trainer.num_updates * trainer.batch_size
    try:
        while trainer.update < trainer.num_updates:
            trainer.step()
            last = trainer.update >= trainer.num_updates
            if val_interval_steps > 0:
                if trainer.global_step < steps[-1] // val_interval_steps * val_interval_steps \
                        + val_interval_steps and not last:
                    continue
            elif trainer.update % val_every and not last:
                continue
            sharpe = trainer.validate()["sharpe"]
            if not math.isfinite(sharpe):
                raise TrialDiverged(f"seed {seed} fold {fold}: validation Sharpe {sharpe} at "
                                    f"step {trainer.global_step}")
            steps.append(trainer.global_step)
            values.append(sharpe)
            seconds.append(time.perf_counter() - started)
            if report is not None:
                report(trainer.global_step / total, curve_area(steps, values))
    except TrainingDivergedError as err:
        raise TrialDiverged(f"seed {seed} fold {fold}: {err}") from None
    result = validation_result(trainer)
    returns = result.returns(COMBINED, "agent")
    return RunResult(seed=seed, fold=fold, steps=steps, sharpe=values,
                     score=curve_area(steps, values), final_sharpe=values[-1],
                     val_returns=[float(r) for r in returns], seconds=seconds,
                     agent=trainer.agent if keep_agent else None)


def validation_schedule(settings: dict[str, Any]) -> dict[str, int]:
    """The ``train_run`` keywords of a study's validation schedule."""
    return {"val_every": int(settings.get("val_every", 1)),
            "val_interval_steps": int(settings.get("val_interval_steps", 0))}


def combined_val_returns(runs: list[RunResult], folds: int) -> list[float]:
    """One per-bar validation return series per trial: the mean over seeds of each fold's
    final-policy returns, folds oldest first (their windows follow each other in time)."""
    series = []
    for fold in reversed(range(folds)):
        of_fold = [r.val_returns for r in runs if r.fold == fold]
        if of_fold:
            length = min(len(r) for r in of_fold)
            series.extend(np.mean([r[:length] for r in of_fold], axis=0).tolist())
    return series


__all__ = ["CONFIRM_SEED_BASE", "TUNING_SEED_BASE", "RunResult", "TrialDiverged",
           "build_fold_market", "combined_val_returns", "curve_area", "fold_days",
           "train_run", "validation_result", "validation_schedule"]
