"""Studies: where trials are stored, how workers share them, and how one trial runs.

Storage. By default a JournalStorage file (``study.journal``) in the study folder: no server,
and local worker processes share it safely (the journal's file lock). Any SQLAlchemy URL
(``postgresql://user@host:port/db``) uses Optuna's RDB storage, so the same command on many
machines joins one study. SQLite is refused for more than one worker, as Optuna advises.

Exactly ``n_trials``. The process that creates (or resumes) a study enqueues one WAITING
slot per trial still to run; a worker claims a slot by moving it WAITING -> RUNNING, which
the storage does atomically (the same call ``Study.ask`` uses to pop enqueued trials), and
stops when none is left. So W workers on M machines run exactly ``n_trials`` trials; no
trial number is ever run twice.

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

import contextlib
import json
import math
import os
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fastrl.config import ConfigError, TrainConfig
from fastrl.dburl import redact, with_driver
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
from fastrl.tune.space import Knob, config_for, sample

JOURNAL_NAME = "study.journal"
SETTINGS_ATTR = "fastrl_settings"
# knobs that set tensor shapes (network, rollout, minibatch): one value per batch
SHAPE_KNOBS = ("width", "depth", "num_steps", "minibatches")
REPORTS_PER_RUN = 4  # intermediate values per training run (at 1/4, 1/2, 3/4 and the end)
# a batched study's cohort: its first run takes new trials into freed rows until it holds
# this many batches' worth (bounded: a cohort's survivors run the later folds and seeds,
# and Ctrl-C fails the cohort's running trials)
COHORT_BATCHES = 4
HEARTBEAT_S = 60  # a database study's running trials say they are alive this often
STALE_AFTER = 3  # heartbeats missed before another worker takes the trial's slot over

Log = Callable[[str], None]


class StudyError(ValueError):
    """A study cannot be created, resumed or joined as asked (the message says why)."""


def _quiet_optuna() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # experimental features (journal storage, constant liar) are used deliberately
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def make_storage(url: str | None, study_dir: str | Path, workers: int = 1,
                 heartbeat: int = HEARTBEAT_S) -> Any:
    """The study's Optuna storage: a journal file in ``study_dir`` or an SQLAlchemy URL.

    On a database each running trial sends a heartbeat every ``heartbeat`` seconds (0: off);
    a trial silent for ``STALE_AFTER`` heartbeats belonged to a machine that died: the next
    worker to look fails it, marks it ``interrupted`` and queues a slot in its place
    (:func:`fail_stale_trials`). The journal file needs none: its processes all run on
    one machine, and ``--resume`` there reclaims what a killed process left running.
    """
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    _quiet_optuna()
    if url is None:
        path = Path(study_dir) / JOURNAL_NAME
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    if "://" not in url:
        raise StudyError(f"--storage needs an SQLAlchemy URL such as "
                         f"postgresql://user@host:5432/db, got {url!r}")
    if url.startswith("sqlite") and workers > 1:
        raise StudyError("SQLite cannot be shared safely by parallel workers (Optuna advises "
                         "against it): drop --storage for the journal file, or use "
                         "postgresql://...")
    engine_url = with_driver(url)  # DriverError (a ValueError) names the extra to install
    for attempt in range(3):
        try:
            beats = {"heartbeat_interval": int(heartbeat),
                     "grace_period": STALE_AFTER * int(heartbeat)} if heartbeat else {}
            return optuna.storages.RDBStorage(engine_url,
                                              engine_kwargs={"pool_pre_ping": True}, **beats)
        except Exception as err:  # SQLAlchemy/driver errors: bad URL, server down, no db
            # two machines starting at once race to create Optuna's tables: try again
            racing = ("already exists", "duplicate key", "UniqueViolation")
            if attempt < 2 and any(word in str(err) for word in racing):
                time.sleep(1.0 + attempt)
                continue
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise StudyError(f"cannot open storage {redact(url)}: {first}") from None
    raise AssertionError("unreachable")


def storage_label(url: str | None, study_dir: str | Path) -> str:
    """What optuna-dashboard takes to open this study's storage (a database URL with its
    driver spelled out, :func:`fastrl.dburl.with_driver`)."""
    return with_driver(url) if url is not None else str(Path(study_dir) / JOURNAL_NAME)


def peer_median_prune(study: Any, trial: Any, n_startup_trials: int,
                      n_warmup_steps: int) -> bool:
    """Optuna's MedianPruner rule, judged against every other trial that reached this step:
    the completed ones, as MedianPruner does, and the running ones.

    A batch's members reach each step together. Against completed trials alone, nothing in
    a study's first batch could be pruned (none has completed) and later batches would be
    judged against the first batch's unpruned members; measured on the planted market
    (bench/tune_batch.py, 64 trials, B = 16) the median pruner stopped 13 batched trials
    against 50 sequential ones. Counting the running trials at the step judges a member
    against its peers, as ASHA does with parallel workers. In a one-process sequential
    study no other trial is running, so this is MedianPruner exactly.
    """
    from optuna.trial import TrialState

    step = trial.last_step
    if step is None or step < n_warmup_steps:
        return False
    others = [t for t in study.get_trials(deepcopy=False,
                                          states=(TrialState.COMPLETE, TrialState.RUNNING))
              if t.number != trial.number
              and (t.state == TrialState.COMPLETE or step in t.intermediate_values)]
    if not others or len(others) < n_startup_trials:
        return False
    # MedianPruner's check runs once per step (interval 1): the trial's best value so far
    # against the median of the others' values at this step
    best = np.asarray(list(trial.intermediate_values.values()), dtype=float)
    if best.size == 0 or np.isnan(best).all():
        return True
    at_step = np.array([t.intermediate_values[step] for t in others
                        if step in t.intermediate_values], dtype=float)
    if at_step.size == 0 or np.isnan(at_step).all():
        return False
    sign = 1.0 if study.direction.name == "MAXIMIZE" else -1.0
    best_value = np.nanmax(sign * best)
    return bool(best_value < np.nanpercentile(sign * at_step, 50.0))


def _sampler_and_pruner(seed: int | None = None) -> tuple[Any, Any]:
    """TPE and the median pruner over completed and running trials
    (:func:`peer_median_prune`). ``seed`` (the settings' ``sampler_seed``) makes a
    one-process study repeatable (tests, benchmarks); workers sharing it would draw alike."""
    import optuna

    class PeerMedianPruner(optuna.pruners.BasePruner):
        def prune(self, study: Any, trial: Any) -> bool:
            return peer_median_prune(study, trial, n_startup_trials=3,
                                     n_warmup_steps=REPORTS_PER_RUN // 2)

    _quiet_optuna()
    # constant_liar: parallel workers do not all sample next to the same running trial
    sampler = optuna.samplers.TPESampler(constant_liar=True, seed=seed)
    return sampler, PeerMedianPruner()


def study_exists(storage: Any, name: str) -> bool:
    try:
        storage.get_study_id_from_name(name)
    except KeyError:
        return False
    return True


def _differences(recorded: dict[str, Any], settings: dict[str, Any]) -> list[str]:
    keys = sorted(set(recorded) | set(settings))
    return [f"{k} {recorded.get(k)!r} != {settings.get(k)!r}" for k in keys
            if json.dumps(recorded.get(k), sort_keys=True) !=
            json.dumps(settings.get(k), sort_keys=True)]


def counted_trials(study: Any) -> list[Any]:
    """Trials that count toward the budget: every trial but those Ctrl-C interrupted."""
    return [t for t in study.get_trials(deepcopy=False)
            if not t.user_attrs.get("interrupted")]


def open_study(storage: Any, name: str, settings: dict[str, Any], n_trials: int, *,
               resume: bool = False, join: bool = False, worker: bool = False,
               reclaim_running: bool = False) -> Any:
    """Create the study, or resume or join it; creating or resuming tops the queue up to
    ``n_trials`` slots that count (interrupted trials do not).

    ``settings`` (data, budget, seeds, folds, base config, space) are recorded with the
    study; resuming or joining with different settings is an error naming them. ``join``: an
    existing study may be joined (another machine on a shared storage); ``worker``: the
    study must exist (a worker process of this machine). Neither enqueues.
    ``reclaim_running`` (resuming a journal study, whose processes all ran on this machine
    and have ended): trials left RUNNING by a killed process are marked failed and
    ``interrupted``, so they do not count and their slots run again.
    """
    import optuna
    from optuna.trial import TrialState

    sampler, pruner = _sampler_and_pruner(settings.get("sampler_seed"))
    created = False
    if not study_exists(storage, name):
        if resume or worker:
            raise StudyError(f"no study named {name!r} in the storage to "
                             f"{'resume' if resume else 'join'}")
        try:
            study = optuna.create_study(storage=storage, study_name=name, direction="maximize",
                                        sampler=sampler, pruner=pruner)
            study.set_user_attr(SETTINGS_ATTR, settings)
            created = True
        except optuna.exceptions.DuplicatedStudyError:
            pass  # another machine created it a moment ago: join it
    if not created:
        if not (resume or join or worker):
            raise StudyError(f"study {name!r} already exists; continue it with --resume or "
                             "choose another --study or --run-dir")
        study = optuna.load_study(storage=storage, study_name=name, sampler=sampler,
                                  pruner=pruner)
        recorded = study.user_attrs.get(SETTINGS_ATTR)
        for _ in range(20):  # created a moment ago by another process: settings follow
            if recorded is not None:
                break
            time.sleep(0.5)
            recorded = study.user_attrs.get(SETTINGS_ATTR)
        diffs = _differences(recorded or {}, settings)
        if diffs:
            raise StudyError(f"study {name!r} was created with other settings: "
                             f"{'; '.join(diffs)}")
        for _ in range(20):  # its creator enqueues the slots just after the settings
            if study.get_trials(deepcopy=False):
                break
            time.sleep(0.5)
        if join and not (resume or worker) and not any(
                t.state in (TrialState.WAITING, TrialState.RUNNING)
                for t in study.get_trials(deepcopy=False)):
            raise StudyError(f"study {name!r} already exists and has run all its trials; "
                             "continue it with --resume (and a larger --trials)")
    if resume and reclaim_running:
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            study._storage.set_trial_user_attr(trial._trial_id, "interrupted", True)
            study._storage.set_trial_user_attr(trial._trial_id, "failure",
                                               "left running by a process that ended")
            study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
    if created or resume:
        for _ in range(max(0, n_trials - len(counted_trials(study)))):
            study.enqueue_trial({}, user_attrs={"slot": True})
    return study


@contextlib.contextmanager
def heartbeat(study: Any, trial: Any) -> Iterator[None]:
    """Send ``trial``'s heartbeat from a thread while the block runs (database storage with
    heartbeats on; elsewhere nothing). The training loop never waits on the database."""
    storage = study._storage  # Optuna's cache around the RDBStorage: it forwards beats
    interval = _heartbeat_interval(storage)
    if not interval:
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(interval):
            try:
                storage.record_heartbeat(trial._trial_id)
            except Exception:  # a database hiccup: the next beat tries again
                continue

    storage.record_heartbeat(trial._trial_id)
    thread = threading.Thread(target=beat, name=f"heartbeat-trial-{trial.number}",
                              daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def fail_stale_trials(study: Any) -> int:
    """Fail the trials of dead machines (heartbeat silent for ``STALE_AFTER`` beats), mark
    them ``interrupted`` so they do not count, and queue a slot in the place of each, so the
    budget still runs in full; returns how many. A no-op without heartbeats.

    Optuna's own ``fail_stale_trials`` cannot be used: a finished trial takes no more
    attributes, and the mark must be on it before it fails. Two workers may find the same
    trial; only the one whose state change succeeds queues its slot.
    """
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    storage = study._storage
    if not _heartbeat_interval(storage):
        return 0
    requeued = 0
    for trial_id in storage._get_stale_trial_ids(study._study_id):
        try:
            storage.set_trial_user_attr(trial_id, "interrupted", True)
            storage.set_trial_user_attr(trial_id, "failure", "its worker stopped sending "
                                        "heartbeats (killed, or its machine was lost)")
            if storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                study.enqueue_trial({}, user_attrs={"slot": True})
                requeued += 1
        except UpdateFinishedTrialError:
            continue  # another worker failed it first (or it finished after all)
    return requeued


def _heartbeat_interval(storage: Any) -> int | None:
    from optuna.storages._heartbeat import BaseHeartbeat

    return storage.get_heartbeat_interval() if isinstance(storage, BaseHeartbeat) else None


def claim_trial(study: Any) -> Any | None:
    """Claim one WAITING slot of ``study`` (atomically) as a running trial, or None."""
    import optuna
    from optuna.trial import TrialState

    storage = study._storage  # the storage Study.ask pops enqueued trials from
    for frozen in storage.get_all_trials(study._study_id, deepcopy=False,
                                         states=(TrialState.WAITING,)):
        try:
            if storage.set_trial_state_values(frozen._trial_id, state=TrialState.RUNNING):
                return optuna.Trial(study, frozen._trial_id)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
    return None


def base_config(settings: dict[str, Any]) -> TrainConfig:
    """The config every trial starts from: base preset, data flags, budget, --set options.

    Its ``data.test_days`` is the search's: the real test days plus the confirmation window
    (``confirm_days``), so fold 0's validation window ends where the confirmation begins
    and no trial steps a bar of either (:func:`confirmation_config` is the other layout).
    """
    from fastrl.config import build_config

    overrides = {
        "data.symbols": list(settings["symbols"]),
        "data.freq": settings["freq"],
        "data.source": settings.get("source", "bundled"),
        "data.test_days": settings["test_days"] + int(settings.get("confirm_days", 0)),
        "data.val_days": settings["val_days"],
        "total_timesteps": settings["timesteps"],
        "patience": 0,  # every run uses its whole budget
    }
    config = build_config(settings["base_preset"], None, overrides,
                          list(settings.get("set_options", [])))
    if config.portfolio.enabled:
        # the objective scores the equal-capital single-symbol backtest against buy-and-hold
        # (fastrl.backtest); a portfolio is backtested by fastrl.markets.portfolio.backtest
        raise ConfigError("fastrl-tune tunes single-symbol agents: portfolio.enabled is not "
                          "supported yet (its objective backtests each symbol against "
                          "buy-and-hold)")
    return config


def confirmation_config(config: TrainConfig, settings: dict[str, Any]) -> TrainConfig:
    """``config`` laid out for the confirmation: trained on every bar before the
    confirmation window, validated on it (``confirm_days``), the real test days after it.
    Without a confirmation window (``confirm_days`` 0, older studies) it is fold 0."""
    confirm_days = int(settings.get("confirm_days", 0))
    if confirm_days:
        return laid_out(config, (settings["test_days"], confirm_days))
    return laid_out(config, (config.data.test_days, config.data.val_days))


@dataclass
class TrialRecord:
    """What a finished trial left: for the per-trial JSON and the runner's statistics."""

    number: int
    state: str
    params: dict[str, Any]
    score: float | None
    runs: list[dict[str, Any]]
    wall_seconds: float
    storage_seconds: float
    failure: str | None = None
    score_se: float | None = None  # SE of the score (the mean) over its seeds x folds
    env_steps: int = 0  # env steps the trial trained, a pruned run's partial one included


class StorageTimer:
    """Calls study-storage methods and adds up the seconds they take (a trial's
    ``storage_seconds``, the overhead bench/tune_payoff.py reports)."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.seconds = float(seconds)

    def __call__(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return call(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - t0


@dataclass
class TrialRunner:
    """Runs the trials of one study in this process (one per claimed slot).

    Fold markets are built once per process. ``storage_seconds`` of each record is the time
    spent in storage calls (claim, reports, pruning checks, attributes, tell).
    """

    settings: dict[str, Any]
    space: dict[str, Knob]
    study_dir: Path | None = None
    log: Log = lambda line: None  # noqa: E731
    markets: dict[int, Any] = field(default_factory=dict)
    records: list[TrialRecord] = field(default_factory=list)
    batch: int = 1  # trials claimed and trained at once (:meth:`run_batch`)

    def __post_init__(self) -> None:
        if isinstance(self.batch, bool) or not isinstance(self.batch, int) or self.batch < 1:
            raise StudyError(f"batch must be an integer >= 1, got {self.batch!r}")
        self.base = base_config(self.settings)
        self.worker = f"{socket.gethostname()}:{os.getpid()}"

    def market(self, fold: int) -> Any:
        if fold not in self.markets:
            self.markets[fold] = build_fold_market(self.base, fold)
        return self.markets[fold]

    def confirmation_market(self) -> Any:
        """The splits of the confirmation (:func:`confirmation_config`); fold 0's without
        a confirmation window."""
        if not int(self.settings.get("confirm_days", 0)):
            return self.market(0)
        if "confirm" not in self.markets:
            from fastrl.data.market import load_market

            self.markets["confirm"] = load_market(confirmation_config(self.base,
                                                                      self.settings))
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
        members must share (:data:`fastrl.ppo.population.MEMBER_KEYS`'s complement: a custom
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
        from fastrl.tune.batched import BatchedTrials

        return BatchedTrials(self, study, deadline).run(trials, claim_seconds)

    def _begin(self, trial: Any, timed: StorageTimer, **attrs: Any) -> dict[str, Any]:
        """Draw a trial's params and record where it runs (storage calls timed)."""
        params = timed(sample, trial, self.space)
        for key, value in {"worker": self.worker, "host": socket.gethostname(),
                           "pid": os.getpid(), **attrs}.items():
            timed(trial.set_user_attr, key, value)
        return params

    def run_trial(self, study: Any, trial: Any, claim_seconds: float = 0.0) -> TrialRecord:
        import optuna
        from optuna.trial import TrialState

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
        seeds = [TUNING_SEED_BASE + s for s in range(settings["seeds"])]
        plan = [(fold, seed) for fold in range(settings["folds"]) for seed in seeds]
        state, score, failure = TrialState.COMPLETE, None, None
        self.log(f"trial {trial.number} ({self.worker}): {json.dumps(params, default=str)}")
        try:
            # a draw the budget cannot hold (a rollout longer than it) fails its trial
            config = config_for(params, self.base, settings["timesteps"])
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
                      started: float, timed: StorageTimer) -> TrialRecord:
        """Tell the study a trial's outcome, set its attributes and write its record (the
        sequential and the batched path alike)."""
        import optuna
        from optuna.trial import TrialState

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
        record = TrialRecord(number=trial.number, state=state.name, params=params, score=score,
                             runs=[r.as_dict() for r in runs], wall_seconds=0.0,
                             storage_seconds=0.0, failure=failure, score_se=se,
                             env_steps=env_steps)
        try:
            if failure:
                timed(trial.set_user_attr, "failure", failure)
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
                returns = combined_val_returns(runs, settings["folds"])
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


def running_trials(study: Any) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))


__all__ = ["JOURNAL_NAME", "StudyError", "TrialRecord", "TrialRunner", "base_config",
           "claim_trial", "confirmation_config", "counted_trials", "make_storage", "open_study",
           "running_trials", "storage_label", "study_exists"]
