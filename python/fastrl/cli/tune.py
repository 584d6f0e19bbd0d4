"""fastrl-tune: search hyperparameters for learning speed on validation bars (Optuna).

The study folder (``--run-dir``, default ``studies/<study>``) holds the journal storage
(unless ``--storage`` names a database), one small JSON per trial, and at the end
``best.yaml`` (``fastrl-train --config best.yaml``), ``trials.csv`` and the report. With
``--workers W`` this process starts W-1 more worker processes on the same study; with
``--storage postgresql://...`` the same command on other machines joins it. Ctrl-C marks
the running trial failed (not counted) and leaves the study ready for ``--resume``.

``--batch B`` claims B trials at once (TPE's constant liar steers each draw away from the
batch's earlier ones) and trains them as one population (:class:`fastrl.ppo.population.
Population`, one member per trial) for the same budget, seed and fold, each validated and
reported to its own trial as a sequential trial is. The members are independent: each starts
from the network, env streams and sampling generator a sequential trial of that seed has, so a
member's curve is the one it has alone (to float rounding of the fused one-member Adam). A
pruned member leaves the population (it is compacted away before the next update) and a
diverged one fails its own trial only. Shape knobs: trials whose configs differ in a key the
members must share (width, depth, rollout length, minibatches: everything but the
schedules, loss weights, max_grad_norm, target_kl, weight decay, epochs, gamma and GAE
lambda) are grouped, and each group is trained as its own population, one after another.
Grouping was chosen over fixing the shape knobs because it is correct for any space file
without changing what a study searches; a space that searches shapes gets smaller
populations, not other results (fix them with a ``--space`` file for the full speed-up, as
``bench/tune_batch.py`` does). The records, best.yaml, trials.csv and ``--resume`` are those
of a sequential study.

``--objective walkforward --select-until DATE`` scores a trial on its walk-forward record
(:mod:`fastrl.tune.walkforward_trials`): retrained every ``--step`` days on the past, each
window validated on the last ``--val-days`` days of its training span, trading the windows
that end before DATE; the bars from DATE on are dropped before anything is planned or
trained, so the windows after it are left for the confirmation. A batch's trials and their
windows train together in ``--wf-chunks`` chunks (one population per chunk), and the pruner
judges each trial after each chunk. ``--folds`` and ``--confirm-days`` do not apply.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastrl.cli.errors import UsageError, cli_errors
from fastrl.cli.interrupt import ctrl_c_raises_interrupted
from fastrl.cli.pbt import main as pbt_main
from fastrl.cli.train import REPAIR_TICKS_HELP, REPAIR_TICKS_SET
from fastrl.cli.walkforward import train_window_days
from fastrl.threads import set_torch_threads

if TYPE_CHECKING:
    from fastrl.tune.settings import StudySettings

PROG = "fastrl-tune"
WAIT_POLL_S = 2.0
GRID_POINTS = 16  # curve points per run on the default step grid
# default validation window: with fewer bars one run's Sharpe has an SE of about 2 units
VAL_DAYS = {"1d": 120, "5min": 20}
OBJECTIVES = ("excess", "sharpe")  # fastrl.tune.objective.OBJECTIVES (not imported: slow)
WALKFORWARD = "walkforward"  # the objective scored on the walk-forward before --select-until
# walk-forward flags: None unless given (refused without --objective walkforward)
WALKFORWARD_FLAGS = ("select_until", "step", "start", "train_window", "embargo",
                     "min_train_days", "late_listings", "wf_chunks", "window_workers")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Search PPO hyperparameters that learn fastest on validation bars. "
        "Example: fastrl-tune --symbols BPCL HDFCLIFE --trials 8 --timesteps 65536",
    )
    data = parser.add_argument_group("data")
    data.add_argument("--symbols", nargs="+", required=True, metavar="SYMBOL")
    data.add_argument("--freq", choices=("1d", "5min"), default="1d")
    data.add_argument("--val-days", type=int, default=None, metavar="N",
                      help="trading days per validation window (default "
                      f"{VAL_DAYS['1d']} daily bars, {VAL_DAYS['5min']} sessions of 5-minute "
                      "bars: shorter windows leave a trial's score mostly noise)")
    data.add_argument("--confirm-days", type=int, default=None, metavar="N",
                      help="trading days just before the test days that the search never "
                      "sees; the winner and both presets are confirmed on them (default: "
                      "--val-days)")
    data.add_argument("--test-days", type=int, default=30, metavar="N",
                      help="last trading days held out; no trial ever sees them (default 30)")
    data.add_argument("--data", metavar="PATH", default="bundled",
                      help="your CSV/Parquet bars instead of the bundled ones")
    data.add_argument("--repair-ticks", action="store_true", help=REPAIR_TICKS_HELP)
    search = parser.add_argument_group("search")
    search.add_argument("--trials", type=int, required=True, metavar="N",
                        help="trials in the study (all workers together)")
    search.add_argument("--timesteps", type=int, required=True, metavar="T",
                        help="env steps per training run")
    search.add_argument("--seeds", type=int, default=1, metavar="K",
                        help="training seeds per trial and fold (default 1)")
    search.add_argument("--folds", type=int, default=None, metavar="F",
                        help="walk-forward validation folds (default 3; a trial's score is "
                        "the mean of its seeds x folds runs, with its standard error)")
    search.add_argument("--confirm-seeds", type=int, default=5, metavar="K",
                        help="fresh seeds for the winner and each preset on the "
                        "confirmation window (default 5)")
    search.add_argument("--sampler-seed", type=int, default=None, metavar="S",
                        help="seed TPE's draws, so a one-process study repeats its choices "
                        "(default: unseeded; refused with --workers > 1, whose processes "
                        "would then draw alike)")
    search.add_argument("--space", metavar="FILE", help="search space YAML (default: the "
                        "shipped fastrl/tune/space.yaml)")
    search.add_argument("--base-preset", default="fast", help="preset trials start from")
    search.add_argument("--set", dest="set_options", nargs="+", action="append", default=[],
                        metavar="KEY=VALUE", help="fixed config keys for trials and the "
                        "preset comparison alike, e.g. num_envs=32 hidden_sizes=[64,64]")
    search.add_argument("--objective", choices=(*OBJECTIVES, WALKFORWARD), default="excess",
                        help="what a validation point is worth: excess (default), the "
                        "Sharpe of the daily active return over buy-and-hold of the same "
                        "symbols and days; sharpe, the agent's own validation Sharpe; "
                        "walkforward, a trial's walk-forward record before --select-until "
                        "(its annualised mean daily return over buy-and-hold)")
    search.add_argument("--val-every-steps", type=int, default=None, metavar="N",
                        help="curve points every N env steps, one grid for every config "
                        f"(default: --timesteps / {GRID_POINTS})")
    search.add_argument("--val-every", type=int, default=None, metavar="N",
                        help="instead of the step grid, validate after every N updates "
                        "(points then fall where each config's rollouts end)")
    wf = parser.add_argument_group(
        "walk-forward objective (--objective walkforward)",
        "A trial retrains every --step trading days on the past (the last --val-days days "
        "of each training span validate it, as fastrl-walkforward's --val-days) and trades "
        "the windows that end before --select-until; no bar from that day on reaches a "
        "trial. Its score: the annualised mean active return of the record pooled across "
        "symbols and seeds, reported after each of --wf-chunks chunks of windows (the "
        "pruner's steps). The windows after the date stay for the confirmation.")
    wf.add_argument("--select-until", metavar="DATE",
                    help="trials trade only the windows that end before DATE (YYYY-MM-DD); "
                    "required with --objective walkforward")
    wf.add_argument("--start", metavar="DATE",
                    help="first traded day (default: the earliest with enough history)")
    wf.add_argument("--step", type=int, default=None, metavar="N",
                    help="trading days traded per window (default 63, a quarter)")
    wf.add_argument("--train-window", default=None, metavar="expanding|N",
                    help="training span: expanding (default) or the last N trading days")
    wf.add_argument("--embargo", type=int, metavar="N",
                    help="trading days between a window's last seen and first traded bar "
                    "(default and minimum: the reward's horizon, 1 day)")
    wf.add_argument("--min-train-days", type=int, metavar="N",
                    help="training days a window needs (default 252 daily)")
    wf.add_argument("--late-listings", choices=("error", "join"), default=None,
                    help="a symbol without enough history at --start: let it join the first "
                    "window where it has it (join, default for single-symbol agents) or "
                    "refuse (error; a portfolio's only choice)")
    wf.add_argument("--wf-chunks", type=int, default=None, metavar="N",
                    help="chunks of windows trained at once, in time order; a trial reports "
                    "and may be pruned after each (default 4)")
    wf.add_argument("--window-workers", type=int, default=None, metavar="W",
                    help="processes a chunk's population is split across (default: the "
                    "cores over --workers; never changes a result)")
    run = parser.add_argument_group("study")
    run.add_argument("--study", metavar="NAME", help="study name (default from the symbols)")
    run.add_argument("--storage", metavar="URL", help="SQLAlchemy URL shared by many machines "
                     "(postgresql://user@host:5432/db); default: a journal file in --run-dir")
    run.add_argument("--heartbeat", type=int, default=None, metavar="S",
                     help="with --storage: running trials send a heartbeat every S seconds "
                     "(default 60; 0 off); a trial silent for 3 of them belonged to a "
                     "machine that died, and another worker runs its slot again")
    run.add_argument("--workers", type=int, default=1, metavar="W",
                     help="worker processes on this machine (default 1)")
    run.add_argument("--batch", type=int, default=1, metavar="B",
                     help="trials trained at once as one population (default 1: one by one)")
    run.add_argument("--timeout", type=float, metavar="S",
                     help="start no trial after S seconds")
    run.add_argument("--run-dir", metavar="DIR", help="study folder (default studies/<study>)")
    run.add_argument("--resume", action="store_true", help="continue an existing study")
    run.add_argument("--no-report", action="store_true",
                     help="write best.yaml and trials.csv only (no confirmation, no test days)")
    run.add_argument("--verbose", action="store_true", help="tracebacks on errors")
    run.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    return parser


def check_numbers(args: argparse.Namespace) -> None:
    """Fill the frequency-dependent defaults into ``args`` and refuse numbers out of range
    (a UsageError naming the flag)."""
    if args.val_days is None:
        args.val_days = VAL_DAYS[args.freq]
    if args.objective == WALKFORWARD:
        if args.select_until is None:
            raise UsageError("--objective walkforward needs --select-until DATE: trials "
                             "trade only the windows that end before it")
        for flag in ("folds", "confirm_days"):
            if getattr(args, flag) is not None:
                raise UsageError(f"--{flag.replace('_', '-')} applies to the excess and sharpe "
                                 "objectives; --objective walkforward scores the windows "
                                 "before --select-until and confirms on those after it")
        args.folds = 1  # the confirmation runs on the windows after --select-until
    else:
        given = [f for f in WALKFORWARD_FLAGS if getattr(args, f) is not None]
        if given:
            raise UsageError(f"--{given[0].replace('_', '-')} applies to --objective "
                             f"walkforward only (the objective is {args.objective})")
    if args.folds is None:
        args.folds = 3
    if args.confirm_days is None:
        args.confirm_days = args.val_days
    for flag in ("trials", "timesteps", "seeds", "folds", "workers", "batch", "val_days",
                 "test_days", "val_every", "val_every_steps", "confirm_days", "confirm_seeds",
                 "step", "wf_chunks", "min_train_days", "window_workers"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise UsageError(f"--{flag.replace('_', '-')} must be >= 1, got {value}")
    if args.objective == WALKFORWARD:
        args.confirm_days = 0
    if args.sampler_seed is not None and args.workers > 1:
        raise UsageError(f"--sampler-seed {args.sampler_seed} with --workers {args.workers}: "
                         "every worker's TPE would draw the same configs; drop one of them")
    if args.val_every is not None and args.val_every_steps is not None:
        raise UsageError("--val-every and --val-every-steps exclude each other: one grid")
    if args.heartbeat is not None:
        if args.storage is None:
            raise UsageError("--heartbeat applies to a --storage database (the journal file's "
                             "processes all run on this machine; --resume reclaims theirs)")
        if args.heartbeat < 0:
            raise UsageError(f"--heartbeat must be >= 0 seconds, got {args.heartbeat}")
    if args.timeout is not None and not args.timeout > 0:
        raise UsageError(f"--timeout must be > 0 seconds, got {args.timeout}")


def settings_of(args: argparse.Namespace, space: dict[str, Any]) -> StudySettings:
    """What every process of a study must agree on (recorded with the study)."""
    # fastrl.tune loads torch: imported when a study runs, not by --help
    from fastrl.tune.settings import StudySettings
    from fastrl.tune.space import space_to_dict

    set_options = ([item for group in args.set_options for item in group]
                   + [REPAIR_TICKS_SET] * args.repair_ticks)
    return StudySettings.parse({
        "symbols": list(args.symbols), "freq": args.freq, "source": args.data,
        "val_days": args.val_days, "test_days": args.test_days, "timesteps": args.timesteps,
        "seeds": args.seeds, "folds": args.folds, "confirm_days": args.confirm_days,
        "confirm_seeds": args.confirm_seeds, "base_preset": args.base_preset,
        "set_options": set_options,
        "objective": args.objective, "sampler_seed": args.sampler_seed,
        **validation_grid(args),
        "space": space_to_dict(space),
        **(walkforward_settings(args, set_options) if args.objective == WALKFORWARD else {}),
    })


def walkforward_settings(args: argparse.Namespace, set_options: list[str]) -> dict[str, Any]:
    """The walk-forward keys of a study's settings: ``select_until`` (checked to be a date),
    the resolved spec (``dataclasses.asdict``) and ``wf_chunks``. The spec's ``val_days``
    is --val-days and its ``test_days`` --test-days; --late-listings defaults to join where
    the market lets late symbols join (single-symbol agents), else error (portfolios)."""
    # the config and walk-forward modules load torch: imported when a study starts, not
    # by --help
    import dataclasses

    import pandas as pd

    from fastrl.config import build_config
    from fastrl.markets import market_for
    from fastrl.walkforward.plan import WalkForwardSpec

    try:
        day = pd.Timestamp(args.select_until)
    except ValueError:
        raise UsageError(f"--select-until {args.select_until!r} is not a date (use "
                         "YYYY-MM-DD)") from None
    late = args.late_listings
    if late is None:
        config = build_config(args.base_preset, None, {"data.symbols": list(args.symbols),
                                                       "data.freq": args.freq}, set_options)
        late = "join" if market_for(config).joins_late_listings else "error"
    spec = WalkForwardSpec(step=args.step or 63, start=args.start,
                           train_window=train_window_days(args.train_window),
                           val_days=args.val_days, embargo=args.embargo,
                           min_train_days=args.min_train_days, test_days=args.test_days,
                           late_listings=late).resolved(args.freq)
    return {"select_until": day.strftime("%Y-%m-%d"), "walkforward": dataclasses.asdict(spec),
            "wf_chunks": args.wf_chunks}


def validation_grid(args: argparse.Namespace) -> dict[str, int]:
    """The curve's grid: every --val-every-steps env steps (default --timesteps / 16), the
    same places for every config; or, with --val-every, after every N updates."""
    if args.val_every is not None:
        return {"val_every": args.val_every, "val_interval_steps": 0}
    steps = args.val_every_steps or max(1, args.timesteps // GRID_POINTS)
    return {"val_every": 1, "val_interval_steps": steps}


def _worker_argv(argv: list[str]) -> list[str]:
    """This command's arguments for a worker process (it joins; it never resumes)."""
    return [a for a in argv if a != "--resume"] + ["--worker"]


def _wait_until_ready(study_dir: Path, procs: list[subprocess.Popen],
                      limit_s: float = 300.0) -> None:
    """Wait until every worker process has loaded its data and joined the study (or
    exited), so that the work is shared from the first trial on."""
    started = time.time()
    pids = {f"ready_{proc.pid}" for proc in procs}
    while time.time() - started < limit_s:
        ready = {path.name for path in study_dir.glob("ready_*")} & pids
        if all(f"ready_{p.pid}" in ready or p.poll() is not None for p in procs):
            break
        time.sleep(0.2)
    for name in pids:
        (study_dir / name).unlink(missing_ok=True)


@cli_errors(PROG)
def main(argv: list[str] | None = None) -> int:
    """Run (or resume, or join) a study, then write best.yaml, trials.csv and the report."""
    raw = list(sys.argv[1:] if argv is None else argv)
    if "--pbt" in raw and any(a == "--batch" or a.startswith("--batch=") for a in raw):
        raise UsageError("--batch trains a study's trials together; --pbt is population-based "
                         "training, which has its own population: drop one of them")
    if "--pbt" in raw:  # population-based training: its own flags (fastrl/cli/pbt.py)
        return pbt_main(raw)
    with ctrl_c_raises_interrupted():
        return _run_study(raw)


def _run_study(raw: list[str]) -> int:
    args = build_parser().parse_args(raw)
    check_numbers(args)
    # fastrl.tune loads torch and fastrl.config pydantic: imported when a study runs, so
    # --help stays quick and the thread policy is set before torch loads
    from fastrl.config import ConfigError
    from fastrl.tune.report_study import write_study_outputs
    from fastrl.tune.space import load_space
    from fastrl.tune.storage import (
        JOURNAL_NAME,
        make_storage,
        open_study,
        running_trials,
        storage_label,
    )
    from fastrl.tune.study import TrialRunner

    walkforward = args.objective == WALKFORWARD
    space = load_space(args.space)
    settings = settings_of(args, space)
    name = args.study or "fastrl-" + "-".join(args.symbols)
    study_dir = Path(args.run_dir or Path("studies") / name)
    journal = study_dir / JOURNAL_NAME
    if args.storage is None and not args.worker and not args.resume and journal.exists():
        raise UsageError(f"study folder {study_dir} already holds a study; continue it with "
                         "--resume or choose another --run-dir")
    if args.storage is None and (args.resume or args.worker) and not journal.exists():
        raise UsageError(f"no study to {'resume' if args.resume else 'join'} in {study_dir} "
                         f"({journal} not found)")
    # a database URL is checked before the slow data loading; the journal is made after it
    storage = (make_storage(args.storage, study_dir, args.workers,
                            **({} if args.heartbeat is None else {"heartbeat": args.heartbeat}))
               if args.storage else None)

    try:
        if walkforward:  # loads the bars and plans the windows: bad input fails here
            # with the study modules above: loaded only for a walk-forward study
            from fastrl.tune.walkforward_trials import WalkForwardTrialRunner as Runner
        else:
            Runner = TrialRunner  # noqa: N806
        runner = Runner(settings, space, study_dir=study_dir, batch=args.batch,
                        log=lambda line: print(f"{time.strftime('%H:%M:%S')} {line}",
                                               flush=True))
        if walkforward:
            runner.window_workers = int(args.window_workers
                                        or max(1, (os.cpu_count() or 1) // args.workers))
        # process-wide state is the command's: the cores are shared by this machine's workers
        set_torch_threads(runner.base.torch_threads, share=args.workers)
        if not walkforward:
            for fold in range(args.folds):  # unknown symbols, too few days: fail before
                runner.market(fold)
            runner.confirmation_market()
    except ConfigError as err:
        raise UsageError(str(err)) from None
    if storage is None:
        storage = make_storage(None, study_dir)
    # a journal study's processes all ran here: on --resume, trials a killed process left
    # RUNNING are failed and run again (on a shared database another machine may own them)
    study = open_study(storage, name, settings, args.trials, resume=args.resume,
                       join=args.storage is not None, worker=args.worker,
                       reclaim_running=args.storage is None)
    deadline = time.time() + args.timeout if args.timeout else None
    if args.worker:
        (study_dir / f"ready_{os.getpid()}").touch()  # the launcher starts when all are in
        try:
            runner.run(study, deadline=deadline)
        except KeyboardInterrupt:  # its running trial is already marked failed
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C: still a clean exit
            return 130
        return 0

    label = storage_label(args.storage, study_dir)
    runs = (f"{len(runner.windows)} windows before {settings.select_until}" if walkforward
            else f"{args.folds} fold(s)")
    print(f"{PROG}: study {name!r} in {label}: {args.trials} trials x {args.seeds} seed(s) x "
          f"{runs} x {args.timesteps:,} steps, {args.workers} worker(s) on this "
          f"machine; dashboard: optuna-dashboard {label}", flush=True)
    workers = []
    study_dir.mkdir(parents=True, exist_ok=True)
    for index in range(1, args.workers):
        log = open(study_dir / f"worker_{index}.log", "a", encoding="utf-8")  # noqa: SIM115
        workers.append((subprocess.Popen([sys.executable, "-m", "fastrl.cli.tune",
                                          *_worker_argv(raw)], stdout=log,
                                         stderr=subprocess.STDOUT), log))
    try:
        _wait_until_ready(study_dir, [proc for proc, _ in workers])
        runner.run(study, deadline=deadline)
        codes = [proc.wait() for proc, _ in workers]
        while running_trials(study) and (deadline is None or time.time() < deadline):
            time.sleep(WAIT_POLL_S)  # trials of other machines still running
            runner.run(study, deadline=deadline)  # unless one died: its slot runs here
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C: still a clean exit
        for proc, _ in workers:  # a terminal's Ctrl-C reached them too; make sure
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc, _ in workers:
            proc.wait()
        print("interrupted: the running trial(s) are marked failed and will run again; "
              "continue with the same command and --resume", file=sys.stderr)
        return 130
    finally:
        for _, log in workers:
            log.close()
    failed = [c for c in codes if c]
    if failed:
        print(f"{PROG}: {len(failed)} worker process(es) failed; see {study_dir}/worker_*.log",
              file=sys.stderr)
    files = write_study_outputs(study, runner, study_dir, report=not args.no_report,
                                log=lambda line: print(line, flush=True))
    print(f"{PROG}: wrote {', '.join(str(f) for f in files)}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
