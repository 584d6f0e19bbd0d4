"""A batched study's trials trained together (:meth:`fastrl.tune.study.TrialRunner.run_batch`).

One call claims B trials, trains each (fold, seed) run of a cohort as one population of B
rows, and gives a member's rows to the next trial as soon as it ends (continuous batching).
:class:`BatchTrial` is one trial's state through that, :class:`BatchedTrials` one call, and
:class:`CohortRun` one (fold, seed) run of a cohort: its members, and the trials waiting
for or claimed into its rows.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
from optuna.trial import TrialState

from fastrl.config import ConfigError, TrainConfig
from fastrl.ppo.members import shared_key
from fastrl.tune.objective import (
    TUNING_SEED_BASE,
    BatchMember,
    RunResult,
    TrialDiverged,
    train_batch,
    validation_schedule,
)
from fastrl.tune.space import config_for
from fastrl.tune.storage import (
    REPORTS_PER_RUN,
    StorageTimer,
    TrialRecord,
    claim_trial,
    heartbeat,
)

if TYPE_CHECKING:
    from fastrl.tune.study import TrialRunner

# knobs that set tensor shapes (network, rollout, minibatch): one value per batch
SHAPE_KNOBS = ("width", "depth", "num_steps", "minibatches")
# a batched study's cohort: its first run takes new trials into freed rows until it holds
# this many batches' worth (bounded: a cohort's survivors run the later folds and seeds,
# and Ctrl-C fails the cohort's running trials)
COHORT_BATCHES = 4


@dataclass(eq=False)
class BatchTrial:
    """One trial of a batched call: its draw, its runs so far and how it ended."""

    trial: Any  # optuna.Trial
    params: dict[str, Any]
    timed: StorageTimer
    started: float  # perf_counter when it was drawn: its record's wall seconds count from it
    state: Any  # optuna TrialState: COMPLETE while it runs (or once its plan is done)
    config: TrainConfig | None = None  # None: an invalid draw, failed at once
    runs: list[RunResult] = field(default_factory=list)
    deployed_latest: dict[int, dict[str, Any]] = field(default_factory=dict)  # fold -> policy
    current_run: dict[str, Any] = field(default_factory=dict)  # the run's last validation
    score: float | None = None
    failure: str | None = None
    record: TrialRecord | None = None  # set once, when the study is told
    beat: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)  # heartbeat

    @property
    def still_to_run(self) -> bool:
        """Still to run (not pruned, failed or told)."""
        return self.state == TrialState.COMPLETE and self.record is None


class BatchedTrials:
    """One call of :meth:`TrialRunner.run_batch`: the trials it drew, in draw order."""

    def __init__(self, runner: TrialRunner, study: Any, deadline: float | None) -> None:
        self.runner, self.study, self.deadline = runner, study, deadline
        settings = runner.settings
        self.seeds = [TUNING_SEED_BASE + s for s in range(settings.seeds)]
        self.plan = [(fold, seed) for fold in range(settings.folds) for seed in self.seeds]
        self.schedule = validation_schedule(settings)
        self.entries: list[BatchTrial] = []

    def draw(self, trial: Any, timed: StorageTimer, mates: list[int]) -> BatchTrial:
        """Draw ``trial``'s params (``mates``: the trials it runs with) and start its
        heartbeat; an invalid draw fails the trial at once."""
        runner = self.runner
        started = time.perf_counter()
        params = runner._begin(trial, timed, batch=mates)
        runner.log(f"trial {trial.number} ({runner.worker}, batch of {len(mates)}): "
                   f"{json.dumps(params, default=str)}")
        entry = BatchTrial(trial, params, timed, started, state=TrialState.COMPLETE)
        try:
            entry.config = config_for(params, runner.base, runner.settings.timesteps)
        except ConfigError as err:
            entry.state, entry.failure = TrialState.FAIL, f"invalid config: {err}"
        self.entries.append(entry)
        entry.beat.enter_context(heartbeat(self.study, trial))
        if entry.config is None:
            self.finalize(entry)
        return entry

    def finalize(self, entry: BatchTrial) -> None:
        """Tell the study how the trial ended and write its record (once)."""
        if entry.record is not None:
            return
        if entry.state == TrialState.COMPLETE:
            score = float(np.mean([r.score for r in entry.runs]))
            if math.isfinite(score):
                entry.score = score
            else:
                entry.state = TrialState.FAIL
                entry.failure = f"diverged: non-finite score {score}"
        entry.beat.close()
        entry.record = self.runner._finish_trial(
            self.study, entry.trial, params=entry.params, runs=entry.runs, plan=self.plan,
            state=entry.state, score=entry.score, failure=entry.failure,
            deployed_latest=entry.deployed_latest, current_run=entry.current_run,
            started=entry.started, timed=entry.timed)

    def run(self, trials: list[Any], claim_seconds: float = 0.0) -> list[TrialRecord]:
        """Train ``trials`` and the trials claimed into their freed rows; every record."""
        study, batch = self.study, self.runner.batch
        base_sampler = study.sampler
        try:
            numbers = [t.number for t in trials]
            for position, trial in enumerate(trials):
                entry = self.draw(trial, StorageTimer(claim_seconds / len(trials)), numbers)
                if position == 0 and batch > 1:
                    shape = {k: entry.params[k] for k in SHAPE_KNOBS if k in entry.params}
                    study.sampler = optuna.samplers.PartialFixedSampler(shape, base_sampler)
            self.train()
            for entry in self.entries:  # a cohort's last run finalizes its survivors
                self.finalize(entry)
        except BaseException as err:
            interrupted = isinstance(err, KeyboardInterrupt)
            for entry in self.entries:
                if entry.record is not None:
                    continue
                if interrupted:
                    entry.trial.set_user_attr("interrupted", True)
                    entry.trial.set_user_attr("failure", "interrupted (Ctrl-C)")
                study.tell(entry.trial, state=TrialState.FAIL, skip_if_finished=True)
                entry.beat.close()
            raise
        finally:
            study.sampler = base_sampler
        return [entry.record for entry in self.entries]

    def train(self) -> None:
        """Train the drawn trials: cohort after cohort, each through the plan."""
        pending = _by_shared_key(e for e in self.entries if e.config is not None)
        claims = True  # the first cohort's first run takes newly claimed trials
        while pending:
            cohort = pending.pop(0)
            deferred = self.run_cohort(cohort, shared_key(cohort[0].config), claims)
            claims = False
            pending.extend(_by_shared_key(deferred))

    def run_cohort(self, cohort: list[BatchTrial], key: str, claims: bool
                   ) -> list[BatchTrial]:
        """Train one cohort (shared key ``key``) through the plan, each (fold, seed) run as
        one population; returns the trials claimed on the way whose shared key differs
        (a cohort of their own). ``claims``: the first run may claim new trials."""
        cohort = list(cohort)
        deferred: list[BatchTrial] = []
        for index, (fold, seed) in enumerate(self.plan):
            waiting = [e for e in cohort if e.still_to_run]
            if not waiting:
                break
            run = CohortRun(self, index, fold, seed, key, cohort, deferred, waiting,
                            claims=claims and index == 0,
                            cap=COHORT_BATCHES * self.runner.batch)
            members = run.take(min(self.runner.batch, len(waiting)))
            train_batch([m.config for m in members], self.runner.market(fold),
                        seed=[m.seed for m in members], fold=fold,
                        reports=[m.report for m in members],
                        latests=[m.latest for m in members], refill=run.take,
                        on_end=run.on_end, slots=self.runner.batch, **self.schedule)
        return deferred


@dataclass(eq=False)
class CohortRun:
    """Run ``index`` (``fold``, ``seed``) of a cohort: ``running[m]`` is train_batch's
    member m; freed rows go to the ``waiting`` trials, then (``claims``) to newly claimed
    ones while the cohort and its deferred trials are fewer than ``cap``."""

    batch: BatchedTrials
    index: int
    fold: int
    seed: int
    key: str  # the cohort's shared key: a claimed trial with another waits in ``deferred``
    cohort: list[BatchTrial]
    deferred: list[BatchTrial]
    waiting: list[BatchTrial]
    claims: bool
    cap: int
    running: list[BatchTrial] = field(default_factory=list)

    def take(self, free: int) -> list[BatchMember]:
        """Up to ``free`` runs for free rows (train_batch's ``refill``)."""
        taken = [self.waiting.pop(0) for _ in range(min(free, len(self.waiting)))]
        while len(taken) < free and self._may_claim():
            entry = self._claim()
            if entry is None:
                break
            if entry.config is None:
                continue  # an invalid draw: failed at once
            if shared_key(entry.config) != self.key:
                self.deferred.append(entry)  # a cohort of its own, after this one
                continue
            self.cohort.append(entry)
            taken.append(entry)
        self.running.extend(taken)
        return [self._member(e) for e in taken]

    def _may_claim(self) -> bool:
        deadline = self.batch.deadline
        return (self.claims and len(self.cohort) + len(self.deferred) < self.cap
                and (deadline is None or time.time() < deadline))

    def _claim(self) -> BatchTrial | None:
        """A newly claimed and drawn trial (None: no slot left)."""
        started = time.perf_counter()
        trial = claim_trial(self.batch.study)
        if trial is None:
            return None
        mates = [e.trial.number for e in self.running if e.record is None]
        return self.batch.draw(trial, StorageTimer(time.perf_counter() - started),
                               [*mates, trial.number])

    def _member(self, entry: BatchTrial) -> BatchMember:
        latest = entry.current_run = {}
        if self.seed == self.batch.seeds[0]:
            entry.deployed_latest[self.fold] = latest
        return BatchMember(entry.config, self.seed, self._reporter(entry), latest)

    def _reporter(self, entry: BatchTrial) -> Callable[[float, float], Callable[[], None] | None]:
        """``entry``'s report for this run (:meth:`TrialRunner.run_trial`'s): its value at
        each of ``REPORTS_PER_RUN`` points, and the pruning verdict train_batch asks for."""
        trial, timed, runs = entry.trial, entry.timed, entry.runs
        index, runs_in_plan = self.index, len(self.batch.plan)
        reported = 0

        def report(progress: float, area: float) -> Callable[[], None] | None:
            nonlocal reported
            point = min(REPORTS_PER_RUN, int(progress * REPORTS_PER_RUN + 1e-9))
            if point <= reported:
                return None
            reported = point
            value = float(np.mean([r.score for r in runs] + [area]))
            timed(trial.report, value, index * REPORTS_PER_RUN + point)

            def verdict() -> None:
                if timed(trial.should_prune):
                    raise optuna.TrialPruned(f"pruned at run {index + 1}/{runs_in_plan}, "
                                             f"{progress:.0%} of its budget")

            # train_batch asks once every member has reported this step, so each is judged
            # against all its peers at the step (peer_median_prune)
            return verdict

        return report

    def on_end(self, m: int, outcome: Any) -> None:
        """Member ``m`` ended (train_batch's ``on_end``): record its run, or end its trial."""
        entry = self.running[m]
        if isinstance(outcome, RunResult):
            entry.runs.append(outcome)
            if self.index == len(self.batch.plan) - 1:
                self.batch.finalize(entry)
            return
        if isinstance(outcome, optuna.TrialPruned):
            entry.state, entry.failure = TrialState.PRUNED, str(outcome)
        elif isinstance(outcome, TrialDiverged):
            entry.state, entry.failure = TrialState.FAIL, f"diverged: {outcome}"
        else:
            raise outcome
        self.batch.finalize(entry)


def _by_shared_key(entries: Iterable[BatchTrial]) -> list[list[BatchTrial]]:
    """``entries`` grouped by their configs' shared key, groups in first-seen order."""
    groups: dict[str, list[BatchTrial]] = {}
    for entry in entries:
        groups.setdefault(shared_key(entry.config), []).append(entry)
    return list(groups.values())

