"""A study's trials run in this process: :class:`TrialRunner`.

Storage, the exact trial budget across workers and heartbeats are
:mod:`fastrl.tune.storage`'s; a study's settings are :class:`fastrl.tune.settings.StudySettings`.

A trial runs in this process through :class:`fastrl.ppo.Trainer` with no run folder: the
study storage and a small JSON per trial (``trials/trial_NNNNN.json``: params, per-seed and
per-fold scores, curves) are all it writes. A diverged run fails the trial (recorded with
the reason); a trial the median pruner stops is PRUNED; Ctrl-C marks the running trial FAIL
with ``interrupted`` set (it does not count toward the budget on ``--resume``) and re-raises.

``TrialRunner(batch=B)`` claims B slots at once and trains their trials together
(:meth:`TrialRunner.run_batch`): one population of B rows per (fold, seed) run, whose rows
go to the next trial as soon as a member ends (pruned, diverged or done), so the batch does
not shrink to its last survivor (continuous batching, as LLM servers batch requests). Their
records are those of sequential trials; a point's ``seconds`` is its trial's wall time
since it joined the population.
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from fastrl.config import ConfigError, TrainConfig, build_config
from fastrl.markets import market_for
from fastrl.tune.batched import BatchedTrials
from fastrl.tune.objective import (
    TUNING_SEED_BASE,
    RunResult,
    TrialDiverged,
    build_fold_market,
    combined_val_returns,
    laid_out,
    objective_returns,
    score_se,
    train_run,
    validation_schedule,
)
from fastrl.tune.settings import ConfirmationSettings, StudySettings
from fastrl.tune.space import Knob, config_for, sample
from fastrl.tune.storage import (
    REPORTS_PER_RUN,
    StorageTimer,
    StudyError,
    TrialRecord,
    claim_trial,
    fail_stale_trials,
    heartbeat,
)

Log = Callable[[str], None]


def base_config(settings: StudySettings | dict[str, Any]) -> TrainConfig:
    """The config every trial starts from: base preset, data flags, budget, --set options.

    Its ``data.test_days`` is the search's: the real test days plus the confirmation window
    (``confirm_days``), so fold 0's validation window ends where the confirmation begins
    and no trial steps a bar of either (:func:`confirmation_config` is the other layout).
    """
    settings = StudySettings.parse(settings)
    overrides = {
        "data.symbols": list(settings.symbols),
        "data.freq": settings.freq,
        "data.source": settings.source,
        "data.test_days": settings.test_days + settings.confirm_days,
        "data.val_days": settings.val_days,
        "total_timesteps": settings.timesteps,
        "patience": 0,  # every run uses its whole budget
    }
    config = build_config(settings.base_preset, None, overrides, list(settings.set_options))
    market = market_for(config)
    # the walk-forward objective scores any market's own record against its benchmark
    if not market.tunable and settings.objective != "walkforward":
        # the objective scores the equal-capital single-symbol backtest against buy-and-hold
        raise ConfigError(f"fastrl-tune tunes single-symbol agents: {market.selected_by} is "
                          "not supported yet (its objective backtests each symbol against "
                          "buy-and-hold)")
    return config


def confirmation_config(config: TrainConfig, settings: ConfirmationSettings) -> TrainConfig:
    """``config`` laid out for the confirmation: trained on every bar before the
    confirmation window, validated on it (``confirm_days``), the real test days after it.
    Without a confirmation window (``confirm_days`` 0) it is fold 0."""
    if settings.confirm_days:
        return laid_out(config, (settings.test_days, settings.confirm_days))
    return laid_out(config, (config.data.test_days, config.data.val_days))


@dataclass
class TrialRunner:
    """Runs the trials of one study in this process (one per claimed slot).

    Fold markets are built once per process. ``storage_seconds`` of each record is the time
    spent in storage calls (claim, reports, pruning checks, attributes, tell).
    """

    settings: StudySettings  # a recorded mapping is parsed into one
    space: dict[str, Knob]
    study_dir: Path | None = None
    log: Log = lambda line: None  # noqa: E731
    markets: dict[int, Any] = field(default_factory=dict)
    records: list[TrialRecord] = field(default_factory=list)
    batch: int = 1  # trials claimed and trained at once (:meth:`run_batch`)

    def __post_init__(self) -> None:
        if isinstance(self.batch, bool) or not isinstance(self.batch, int) or self.batch < 1:
            raise StudyError(f"batch must be an integer >= 1, got {self.batch!r}")
        self.settings = StudySettings.parse(self.settings)
        self.base = base_config(self.settings)
        self.worker = f"{socket.gethostname()}:{os.getpid()}"

    def market(self, fold: int) -> Any:
        if fold not in self.markets:
            self.markets[fold] = build_fold_market(self.base, fold)
        return self.markets[fold]

    def confirmation_market(self) -> Any:
        """The splits of the confirmation (:func:`confirmation_config`); fold 0's without
        a confirmation window."""
        if not self.settings.confirm_days:
            return self.market(0)
        if "confirm" not in self.markets:
            self.markets["confirm"] = market_for(
                confirmation_config(self.base, self.settings)).load()
        return self.markets["confirm"]

    def run(self, study: Any, *, deadline: float | None = None) -> int:
        """Claim and run trials until no slot is left (or ``deadline``); returns how many."""
        done = 0
        while deadline is None or time.time() < deadline:
            started = time.perf_counter()
            fail_stale_trials(study)  # a dead machine's trial: its slot is queued again
            trials = []
            for _ in range(self.batch):
                trial = claim_trial(study)
                if trial is None:
                    break
                trials.append(trial)
            claim = time.perf_counter() - started
            if not trials:
                break
            if self.batch == 1:
                self.run_trial(study, trials[0], claim_seconds=claim)
                done += 1
            else:
                done += len(self.run_batch(study, trials, claim_seconds=claim,
                                           deadline=deadline))
        return done

    def run_batch(self, study: Any, trials: list[Any], claim_seconds: float = 0.0,
                  deadline: float | None = None) -> list[TrialRecord]:
        """Run claimed ``trials`` together, and the trials that take their rows as they end
        (continuous batching); returns the records of every trial it ran.

        Each trial's params are drawn in turn (TPE's constant liar sees the running ones),
        the shape knobs (:data:`SHAPE_KNOBS`) once, by the first: every later draw of the
        call keeps them (a population's members must share tensor shapes, and B free draws
        would fall into B populations of one). Trials whose configs still differ in a key
        members must share (:data:`fastrl.ppo.members.MEMBER_KEYS`'s complement: a custom
        space's knob, or a queued trial's own shape) form cohorts of their own, trained one
        after another.

        A cohort runs the plan's (fold, seed) runs in order, each as one population of at
        most B members (:func:`fastrl.tune.objective.train_batch`); each member reports to
        its own trial. When a member ends (pruned, diverged, or its run done), its rows go
        to the next trial of the cohort waiting for that run, and in the first run to a
        newly claimed trial, while the cohort holds fewer than :data:`COHORT_BATCHES` x B
        trials. So B rows stay busy while the study has trials to give, instead of a batch
        shrinking to its last survivor (no new claims after ``deadline``, a ``time.time()``).
        A trial is told to the study the moment it ends
        (the sampler sees it at once). Records, attributes and scores are those of
        :meth:`run_trial`; a trial's ``seconds`` are its own wall time since it joined.
        """
        return BatchedTrials(self, study, deadline).run(trials, claim_seconds)

    def _begin(self, trial: Any, timed: StorageTimer, **attrs: Any) -> dict[str, Any]:
        """Draw a trial's params and record where it runs (storage calls timed)."""
        params = timed(sample, trial, self.space)
        for key, value in {"worker": self.worker, "host": socket.gethostname(),
                           "pid": os.getpid(), **attrs}.items():
            timed(trial.set_user_attr, key, value)
        return params

    def run_trial(self, study: Any, trial: Any, claim_seconds: float = 0.0) -> TrialRecord:
        settings = self.settings
        started = time.perf_counter()
        timed = StorageTimer(claim_seconds)
        params = self._begin(trial, timed)
        runs: list[RunResult] = []
        # the deployable object the gates judge: the first seed's policy per fold (a
        # pruned trial's last validated one), not a mean over seeds no one can trade
        deployed_latest: dict[int, dict[str, Any]] = {}  # fold -> last validated policy
        current_run: dict[str, Any] = {}  # the run in progress: its last validated step
        schedule = validation_schedule(settings)
        seeds = [TUNING_SEED_BASE + s for s in range(settings.seeds)]
        plan = [(fold, seed) for fold in range(settings.folds) for seed in seeds]
        state, score, failure = TrialState.COMPLETE, None, None
        self.log(f"trial {trial.number} ({self.worker}): {json.dumps(params, default=str)}")
        try:
            # a draw the budget cannot hold (a rollout longer than it) fails its trial
            config = config_for(params, self.base, settings.timesteps)
            with heartbeat(study, trial):
                for index, (fold, seed) in enumerate(plan):
                    reported = [0]

                    def report(progress: float, area: float, index: int = index,
                               reported: list[int] = reported) -> None:
                        point = min(REPORTS_PER_RUN, int(progress * REPORTS_PER_RUN + 1e-9))
                        if point <= reported[0]:
                            return
                        reported[0] = point
                        value = float(np.mean([r.score for r in runs] + [area]))
                        timed(trial.report, value, index * REPORTS_PER_RUN + point)
                        if timed(trial.should_prune):
                            raise optuna.TrialPruned(f"pruned at run {index + 1}/{len(plan)}, "
                                                     f"{progress:.0%} of its budget")

                    latest = current_run = {}
                    if seed == seeds[0]:
                        deployed_latest[fold] = latest
                    runs.append(train_run(config, self.market(fold), seed=seed, fold=fold,
                                          report=report, latest=latest, **schedule))
            score = float(np.mean([r.score for r in runs]))
            if not math.isfinite(score):
                raise TrialDiverged(f"non-finite score {score}")
        except optuna.TrialPruned as err:
            state, failure = TrialState.PRUNED, str(err)
        except TrialDiverged as err:
            state, failure = TrialState.FAIL, f"diverged: {err}"
        except ConfigError as err:
            state, failure = TrialState.FAIL, f"invalid config: {err}"
        except KeyboardInterrupt:
            # leave the study consistent: the trial is failed, marked, and not counted
            timed(trial.set_user_attr, "interrupted", True)
            timed(trial.set_user_attr, "failure", "interrupted (Ctrl-C)")
            study.tell(trial, state=TrialState.FAIL)
            raise
        except BaseException as err:
            study.tell(trial, state=TrialState.FAIL)
            raise err
        return self._finish_trial(study, trial, params=params, runs=runs, plan=plan,
                                  state=state, score=score, failure=failure,
                                  deployed_latest=deployed_latest, current_run=current_run,
                                  started=started, timed=timed)

    def _finish_trial(self, study: Any, trial: Any, *, params: dict[str, Any],
                      runs: list[RunResult], plan: list[tuple[int, int]], state: Any,
                      score: float | None, failure: str | None,
                      deployed_latest: dict[int, dict[str, Any]], current_run: dict[str, Any],
                      started: float, timed: StorageTimer,
                      walkforward: dict[str, Any] | None = None) -> TrialRecord:
        """Tell the study a trial's outcome, set its attributes and write its record (the
        sequential and the batched path alike). ``walkforward`` (a walk-forward trial,
        :mod:`fastrl.tune.walkforward_trials`): ``attrs`` (user attributes set before the
        study is told), ``se``, ``env_steps`` and ``windows`` (its window summaries, for
        the record) in place of those of ``runs``."""
        settings = self.settings
        schedule = validation_schedule(settings)
        deployed: dict[str, list[float]] = {}
        for fold, latest in sorted(deployed_latest.items()):
            if latest:
                deployed[str(fold)] = [round(r, 10) for r in objective_returns(
                    latest["val_returns"], latest["bench_returns"], schedule["objective"])]
        se = score_se([r.score for r in runs]) if state == TrialState.COMPLETE else None
        env_steps = sum(r.steps[-1] for r in runs)
        if len(runs) < len(plan) and current_run:  # stopped mid-run: the steps it got to
            env_steps += int(current_run.get("step", 0))
        attrs: dict[str, Any] = {}
        windows = None
        if walkforward is not None:
            attrs, windows = dict(walkforward["attrs"]), walkforward["windows"]
            se = walkforward["se"] if state == TrialState.COMPLETE else None
            env_steps = int(walkforward["env_steps"])
        record = TrialRecord(number=trial.number, state=state.name, params=params, score=score,
                             runs=[r.as_dict() for r in runs], wall_seconds=0.0,
                             storage_seconds=0.0, failure=failure, score_se=se,
                             env_steps=env_steps, windows=windows)
        try:
            if failure:
                timed(trial.set_user_attr, "failure", failure)
            for key, value in attrs.items():
                timed(trial.set_user_attr, key, value)
            if deployed:
                timed(trial.set_user_attr, "deployed_returns", deployed)
            if runs:
                timed(trial.set_user_attr, "run_scores", [r.score for r in runs])
                timed(trial.set_user_attr, "final_sharpes", [r.final_sharpe for r in runs])
                first = runs[0]
                timed(trial.set_user_attr, "curve",
                      {"steps": first.steps, "sharpe": first.sharpe,
                       "excess": first.excess, "objective": first.objective})
            if state == TrialState.COMPLETE:
                timed(trial.set_user_attr, "score_se", se)
                if runs:
                    returns = combined_val_returns(runs, settings.folds)
                    timed(trial.set_user_attr, "val_returns", [round(r, 10) for r in returns])
                timed(study.tell, trial, score)
            else:
                timed(study.tell, trial, state=state)
        except optuna.exceptions.UpdateFinishedTrialError:
            # this worker went silent long enough for another to fail the trial and queue
            # its slot again (fail_stale_trials): that run counts, this result does not
            self.log(f"trial {trial.number}: taken over by another worker after missed "
                     "heartbeats; its result here is dropped")
            record.failure = "taken over after missed heartbeats"
        record.wall_seconds = time.perf_counter() - started
        record.storage_seconds = timed.seconds
        self.records.append(record)
        self._write_record(record)
        shown = f"score {score:+.3f}" if score is not None else failure
        self.log(f"trial {trial.number}: {state.name.lower()}, {shown} "
                 f"({record.wall_seconds:.1f} s)")
        return record

    def _write_record(self, record: TrialRecord) -> None:
        if self.study_dir is None:
            return
        folder = Path(self.study_dir) / "trials"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"trial_{record.number:05d}.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({**record.__dict__, "worker": self.worker}, indent=1,
                                  default=str) + "\n", encoding="utf-8")
        os.replace(tmp, path)


__all__ = ["TrialRunner", "base_config", "confirmation_config"]
