"""Where a study's trials are stored, how workers share them, and what a trial leaves.

Storage. By default a JournalStorage file (``study.journal``) in the study folder: no server,
and local worker processes share it safely (the journal's file lock). Any SQLAlchemy URL
(``postgresql://user@host:port/db``) uses Optuna's RDB storage, so the same command on many
machines joins one study. SQLite is refused for more than one worker, as Optuna advises.

Exactly ``n_trials``. The process that creates (or resumes) a study enqueues one WAITING
slot per trial still to run; a worker claims a slot by moving it WAITING -> RUNNING, which
the storage does atomically (the same call ``Study.ask`` uses to pop enqueued trials), and
stops when none is left. So W workers on M machines run exactly ``n_trials`` trials; no
trial number is ever run twice.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fastrl.dburl import redact, with_driver
from fastrl.tune.settings import StudySettings

JOURNAL_NAME = "study.journal"
SETTINGS_ATTR = "fastrl_settings"
REPORTS_PER_RUN = 4  # intermediate values per training run (at 1/4, 1/2, 3/4 and the end)
HEARTBEAT_S = 60  # a database study's running trials say they are alive this often
STALE_AFTER = 3  # heartbeats missed before another worker takes the trial's slot over

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
    judged against the first batch's unpruned members, so a batched study would prune far
    fewer trials than a sequential one (bench/tune_batch.py measures both). Counting the
    running trials at the step judges a member
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


def open_study(storage: Any, name: str, settings: StudySettings | dict[str, Any],
               n_trials: int, *,
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

    settings = StudySettings.parse(settings)
    sampler, pruner = _sampler_and_pruner(settings.sampler_seed)
    created = False
    if not study_exists(storage, name):
        if resume or worker:
            raise StudyError(f"no study named {name!r} in the storage to "
                             f"{'resume' if resume else 'join'}")
        try:
            study = optuna.create_study(storage=storage, study_name=name, direction="maximize",
                                        sampler=sampler, pruner=pruner)
            study.set_user_attr(SETTINGS_ATTR, settings.to_dict())
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
        diffs = _differences(recorded or {}, settings.to_dict())
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
    windows: list[dict[str, Any]] | None = None  # a walk-forward trial's window summaries


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


def running_trials(study: Any) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))


__all__ = ["JOURNAL_NAME", "REPORTS_PER_RUN", "SETTINGS_ATTR", "StorageTimer", "StudyError",
           "TrialRecord", "claim_trial", "counted_trials", "fail_stale_trials", "heartbeat",
           "make_storage", "open_study", "peer_median_prune", "running_trials",
           "storage_label", "study_exists"]
