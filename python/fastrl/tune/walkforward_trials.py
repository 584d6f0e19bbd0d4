"""The walk-forward objective of fastrl-tune (``--objective walkforward --select-until DATE``).

A trial is scored on its pooled walk-forward record over the windows that trade entirely
before DATE (:func:`selection_windows`). Every bar at or after DATE is dropped before
anything is planned, featurised, trained or traded (:func:`cut_bars`), so no trial's score,
pruning decision or draw can depend on one: the windows after DATE stay for the
confirmation, which no trial ever traded.

The score (:func:`walkforward_score`): per bar, the agent's return minus buy-and-hold's
(equal-capital mean over the symbols trading the bar, :func:`fastrl.walkforward.analysis.
pooled`; a portfolio's one book against its equal-weight benchmark), averaged over the
trial's seeds, its mean annualised, with its HAC standard error (:func:`fastrl.stats.
mean_test`).

A batch's trials train together (:class:`WalkForwardBatch`): the windows go in time order in
chunks, and each chunk is ONE call of :func:`fastrl.walkforward.run.train_windows` whose jobs
are every live trial x the chunk's windows x the seeds (one population). After each chunk
every live trial trades the windows finished so far and reports its score to Optuna at step
= windows finished (trading is sequential, so the record of a prefix of windows is that
prefix's record, closed at its end); then the pruner judges each against its peers at that
step, and a pruned trial trains no later window. The record of every trial (pruned ones too:
what they traded) goes to ``trials/trial_NNNNN_walkforward.csv``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from optuna.trial import TrialState

from fastrl import stats
from fastrl.atomic import write_atomic
from fastrl.config import TrainConfig, config_to_dict
from fastrl.metrics import periods_per_year
from fastrl.ppo.trainer import TrainingDivergedError
from fastrl.tune.batched import BatchedTrials, BatchTrial
from fastrl.tune.objective import TUNING_SEED_BASE
from fastrl.tune.storage import StudyError, TrialRecord
from fastrl.tune.study import TrialRunner
from fastrl.walkforward.analysis import pooled
from fastrl.walkforward.plan import WalkForwardSpec, Window, plan_windows
from fastrl.walkforward.run import (
    WindowJob,
    WindowResult,
    check_run_arguments,
    load_walkforward_bars,
    trade_record,
    train_windows,
)

DEFAULT_CHUNKS = 4  # pruning points of a trial: after each chunk of its windows
RECORD_COLUMNS = ["time", "window", "agent_return", "bh_return", "active"]


def cut_bars(bars: Mapping[str, pd.DataFrame], until: str) -> dict[str, pd.DataFrame]:
    """Every symbol's bars before the day ``until`` (copies; symbols with none left out)."""
    limit = pd.Timestamp(until).normalize()
    out = {symbol: frame.loc[frame.index.normalize() < limit].copy()
           for symbol, frame in bars.items()}
    return {symbol: frame for symbol, frame in out.items() if len(frame)}


def selection_windows(bars: Mapping[str, pd.DataFrame], spec: WalkForwardSpec, freq: str,
                      until: str) -> list[Window]:
    """The walk-forward windows that trade entirely before ``until`` (``last_traded <
    until``), planned on the bars cut before it (:func:`cut_bars`, ``test_days`` 0: the
    held-out tail lies after it), so their boundaries depend on no later bar.

    They are checked to be the full plan's first windows (same boundaries and symbols).
    ValueError naming ``--select-until`` when no window trades before ``until`` or none
    would trade after it (nothing left to confirm on).
    """
    spec = spec.resolved(freq)
    day = pd.Timestamp(until).normalize()
    full = plan_windows(bars, spec, freq)
    before = [w for w in full if pd.Timestamp(w.last_traded) < day]
    if not before:
        raise ValueError(f"--select-until {until}: no walk-forward window trades entirely "
                         f"before it (the first trades {full[0].first_traded} to "
                         f"{full[0].last_traded}); choose a later date or an earlier --start")
    if len(before) == len(full):
        raise ValueError(f"--select-until {until}: no window trades after it (the last "
                         f"trades through {full[-1].last_traded}, before the held-out "
                         "--test-days): nothing would be left to confirm the winner on; "
                         "choose an earlier date")
    try:
        planned = plan_windows(cut_bars(bars, until), dataclasses.replace(spec, test_days=0),
                               freq)
    except ValueError as err:
        raise ValueError(f"--select-until {until}: on the bars before it: {err}") from None
    selected = planned[:len(before)]
    if selected != before:
        raise ValueError(f"--select-until {until}: the windows planned on the bars before it "
                         "are not the full plan's first windows (their boundaries or symbols "
                         "differ)")
    return selected


def window_chunks(windows: list[Window], chunks: int) -> list[list[Window]]:
    """``windows`` in time order in ``chunks`` consecutive groups (fewer if fewer windows),
    as even as possible."""
    if chunks < 1:
        raise ValueError(f"--wf-chunks must be >= 1, got {chunks}")
    parts = np.array_split(np.arange(len(windows)), min(int(chunks), len(windows)))
    return [[windows[i] for i in part] for part in parts]


def pooled_record(records: list[pd.DataFrame]) -> pd.DataFrame:
    """Per bar: ``time``, ``window``, ``agent_return``, ``bh_return`` and ``active`` (agent
    minus buy-and-hold): each seed's record pooled across the symbols trading the bar (a
    portfolio's one row as it is), then the mean over seeds."""
    if not records:
        raise ValueError("no record to pool")
    frames = []
    for record in records:
        pool = pooled(record)[["agent_return", "bh_return"]]
        pool.insert(0, "window", record.groupby("time", sort=True)["window"].first())
        frames.append(pool)
    first = frames[0]
    for frame in frames[1:]:  # the bars traded are the windows', not the policies'
        if not frame.index.equals(first.index) or not frame["window"].equals(first["window"]):
            raise ValueError("the seeds' walk-forward records cover different bars")
    out = pd.DataFrame({
        "time": first.index,
        "window": first["window"].to_numpy(),
        "agent_return": np.mean([f["agent_return"].to_numpy() for f in frames], axis=0),
        "bh_return": np.mean([f["bh_return"].to_numpy() for f in frames], axis=0)})
    out["active"] = out["agent_return"] - out["bh_return"]
    return out[RECORD_COLUMNS]


def walkforward_score(record: pd.DataFrame, freq: str) -> tuple[float, float | None]:
    """The annualised mean active return of a pooled record (:func:`pooled_record`) and its
    HAC standard error (:func:`fastrl.stats.mean_test`; None without one)."""
    active = record["active"].to_numpy(dtype=np.float64)
    scale = periods_per_year(freq)
    score = float(np.mean(active)) * scale if active.size else math.nan
    se = stats.mean_test(active).se if active.size else math.nan
    return score, (float(se) * scale if math.isfinite(se) else None)


@dataclass
class TrialWalk:
    """One trial's walk-forward so far: its trained windows, its record and score."""

    name: str  # the trial's config name in train_windows' jobs
    results: dict[tuple[int, int], WindowResult] = field(default_factory=dict)  # (seed, w)
    record: pd.DataFrame | None = None  # pooled over symbols and seeds (pooled_record)
    score: float | None = None
    se: float | None = None

    def windows_done(self, windows: list[Window], seeds: int) -> list[Window]:
        """The leading windows every seed of the trial has trained."""
        done = []
        for window in windows:
            if not all((k, window.index) in self.results for k in range(seeds)):
                break
            done.append(window)
        return done

    def trade(self, config: TrainConfig, bars: Mapping[str, pd.DataFrame],
              windows: list[Window], seeds: int, freq: str) -> None:
        """Trade ``windows`` (a prefix of the plan) with each seed's policies; score it."""
        records = [trade_record(config, bars, windows,
                                [self.results[(k, w.index)].policy for w in windows])
                   for k in range(seeds)]
        self.record = pooled_record(records)
        self.score, self.se = walkforward_score(self.record, freq)

    def summary(self) -> dict[str, Any]:
        """What :meth:`TrialRunner._finish_trial` records (its ``walkforward`` argument)."""
        attrs: dict[str, Any] = {}
        if self.record is not None:
            by_window = self.record.groupby("window", sort=True)["active"].mean()
            attrs = {"wf_score": _finite(self.score), "wf_se": self.se,
                     "wf_windows": [int(w) for w in by_window.index],
                     "wf_window_active": [float(v) for v in by_window.to_numpy()]}
        env_steps = sum(r.env_steps for r in self.results.values())
        attrs["wf_env_steps"] = int(env_steps)
        windows = [self.results[key].summary() for key in sorted(self.results)]
        return {"attrs": attrs, "se": self.se, "env_steps": env_steps, "windows": windows}


def _finite(value: float | None) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


class WalkForwardBatch(BatchedTrials):
    """One batch of walk-forward trials (:class:`BatchedTrials`' drawing, heartbeats,
    shape knobs and Ctrl-C handling; its training and records are the walk-forward's)."""

    runner: WalkForwardTrialRunner

    def __init__(self, runner: WalkForwardTrialRunner, study: Any,
                 deadline: float | None) -> None:
        super().__init__(runner, study, deadline)
        self.walks: dict[int, TrialWalk] = {}  # trial number -> its walk-forward
        self.plan = []  # no (fold, seed) runs: _finish_trial counts none

    def walk(self, entry: BatchTrial) -> TrialWalk:
        number = entry.trial.number
        if number not in self.walks:
            self.walks[number] = TrialWalk(name=f"trial_{number:05d}")
        return self.walks[number]

    def train(self) -> None:
        """Train the drawn trials' windows chunk by chunk; report, then prune, after each."""
        runner = self.runner
        seeds = runner.settings.seeds
        chunks = runner.chunks
        total = len(runner.windows)
        for c, chunk in enumerate(chunks):
            live = [e for e in self.entries if e.config is not None and e.still_to_run]
            if not live:
                return
            started = time.perf_counter()
            self.train_chunk(live, chunk)
            live = [e for e in live if e.still_to_run]  # a diverged trial has ended
            for entry in live:
                walk = self.walk(entry)
                done = walk.windows_done(runner.windows, seeds)
                if len(done) != chunk[-1].index + 1:  # train_windows returns every job
                    raise RuntimeError(f"trial {entry.trial.number}: windows through "
                                       f"{chunk[-1].index} trained, but only {len(done)} "
                                       "came back for every seed")
                walk.trade(entry.config, runner.cut, done, seeds, runner.settings.freq)
                if walk.score is None or not math.isfinite(walk.score):
                    entry.state = TrialState.FAIL
                    entry.failure = f"diverged: non-finite walk-forward score {walk.score}"
                    self.finalize(entry)
                    continue
                entry.timed(entry.trial.report, walk.score, len(done))
            runner.log(f"windows {chunk[0].index + 1}-{chunk[-1].index + 1}/{total} of "
                       f"{len(live)} trial(s) x {seeds} seed(s): "
                       f"{time.perf_counter() - started:.1f} s")
            if c == len(chunks) - 1:
                break  # every window trained: nothing left to save by pruning
            # each trial is judged once every peer has reported the step (peer_median_prune)
            for entry in live:
                if entry.still_to_run and entry.timed(entry.trial.should_prune):
                    done = chunk[-1].index + 1
                    entry.state = TrialState.PRUNED
                    entry.failure = f"pruned after window {done}/{total}"
                    self.finalize(entry)

    def train_chunk(self, live: list[BatchTrial], chunk: list[Window]) -> None:
        """One train_windows call: every live trial x the chunk's windows x the seeds. A run
        that diverges ends its trial only: the chunk's other jobs are then trained trial by
        trial (the finished ones kept; a window's result depends on its seed alone)."""
        runner = self.runner
        seeds = runner.settings.seeds
        values, jobs = {}, []
        for entry in live:
            name = self.walk(entry).name
            values[name] = {**config_to_dict(entry.config), "seed": TUNING_SEED_BASE}
            jobs += [WindowJob(name, k, window) for window in chunk for k in range(seeds)]
        trained: dict[tuple[str, int, int], WindowResult] = {}

        def run(todo: list[WindowJob]) -> None:
            train_windows(values, todo, runner.cut, runner.train_spec,
                          workers=runner.window_workers,
                          torch_threads=torch.get_num_threads(), trained=trained)

        try:
            run(jobs)
        except TrainingDivergedError:
            for entry in live:
                name = self.walk(entry).name
                try:
                    run([j for j in jobs if j.name == name and j.key not in trained])
                except TrainingDivergedError as err:
                    entry.state, entry.failure = TrialState.FAIL, f"diverged: {err}"
        for entry in live:
            walk = self.walk(entry)
            for (name, k, w), result in trained.items():
                if name == walk.name:
                    walk.results[(k, w)] = result
            if entry.state == TrialState.FAIL:
                self.finalize(entry)

    def finalize(self, entry: BatchTrial) -> None:
        """Tell the study how the trial ended, write its record and its walk-forward
        record (once)."""
        if entry.record is not None:
            return
        walk = self.walk(entry)
        if entry.state == TrialState.COMPLETE:
            entry.score = walk.score
        entry.beat.close()
        if walk.record is not None and self.runner.study_dir is not None:
            path = (Path(self.runner.study_dir) / "trials"
                    / f"trial_{entry.trial.number:05d}_walkforward.csv")
            frame = walk.record
            write_atomic(path, lambda stream: frame.to_csv(stream, index=False), binary=False)
        entry.record = self.runner._finish_trial(
            self.study, entry.trial, params=entry.params, runs=[], plan=[],
            state=entry.state, score=entry.score, failure=entry.failure,
            deployed_latest={}, current_run={}, started=entry.started, timed=entry.timed,
            walkforward=walk.summary())


@dataclass
class WalkForwardTrialRunner(TrialRunner):
    """A :class:`TrialRunner` whose trials are scored on the walk-forward before
    ``settings.select_until`` (:mod:`fastrl.tune.walkforward_trials`).

    ``bars``: every symbol's bars (default: loaded from the settings' data), kept whole for
    the confirmation; ``cut`` are those before ``select_until``, the only ones trials see;
    ``windows`` the selection windows, ``spec`` the resolved spec (the real ``test_days``),
    ``train_spec`` the one the windows are trained under (``test_days`` 0).
    """

    bars: Mapping[str, pd.DataFrame] | None = None
    window_workers: int = 1  # processes a chunk's population is split across

    def __post_init__(self) -> None:
        super().__post_init__()
        settings = self.settings
        if settings.objective != "walkforward" or settings.walkforward is None \
                or settings.select_until is None:
            raise StudyError("a walk-forward trial runner needs the walkforward objective, "
                             "select_until and the walk-forward spec in its settings")
        self.spec = WalkForwardSpec(**settings.walkforward).resolved(settings.freq)
        check_run_arguments({"trial": self.base}, self.spec, seeds=settings.seeds)
        self.bars = dict(self.bars) if self.bars is not None else \
            load_walkforward_bars(self.base)
        self.windows = selection_windows(self.bars, self.spec, settings.freq,
                                         settings.select_until)
        self.cut = cut_bars(self.bars, settings.select_until)
        self.train_spec = dataclasses.replace(self.spec, test_days=0)
        self.chunks = window_chunks(self.windows, settings.wf_chunks or DEFAULT_CHUNKS)

    def run_trial(self, study: Any, trial: Any, claim_seconds: float = 0.0) -> TrialRecord:
        return self.run_batch(study, [trial], claim_seconds)[0]

    def run_batch(self, study: Any, trials: list[Any], claim_seconds: float = 0.0,
                  deadline: float | None = None) -> list[TrialRecord]:
        """Train ``trials`` together through the selection windows (:class:`WalkForwardBatch`);
        their records. No trial joins a running batch: its windows have started."""
        return WalkForwardBatch(self, study, deadline).run(trials, claim_seconds)


__all__ = ["DEFAULT_CHUNKS", "RECORD_COLUMNS", "TrialWalk", "WalkForwardBatch",
           "WalkForwardTrialRunner", "cut_bars", "pooled_record", "selection_windows",
           "walkforward_score", "window_chunks"]
