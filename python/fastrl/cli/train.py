"""fastrl-train: train a PPO trading agent, then backtest it on the held-out test days.

Values resolve as preset -> --config file -> flags -> --set key=value (see
:mod:`fastrl.config`). The run lands in runs/<name>/ (config.json, metrics.jsonl, tb/,
checkpoints/, report). Ctrl-C once finishes the current update and writes the final
checkpoint; a second Ctrl-C aborts at once (checkpoints/last.pt stays valid).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastrl.cli.errors import UsageError, cli_errors
from fastrl.cli.evaluate import RUNGS_HELP
from fastrl.cli.interrupt import Interrupted
from fastrl.threads import set_torch_threads

if TYPE_CHECKING:
    from rich.console import Console

PROG = "fastrl-train"

# flag dest -> config key (only flags the user actually gave are applied)
FLAG_KEYS = {
    "symbols": "data.symbols",
    "freq": "data.freq",
    "test_days": "data.test_days",
    "val_days": "data.val_days",
    "data": "data.source",
    "timesteps": "total_timesteps",
    "num_envs": "num_envs",
    "threads": "env_threads",
    "seed": "seed",
    "ensemble": "ensemble",
    "device": "device",
    "run_dir": "run_dir",
}
REPAIR_TICKS_HELP = ("clip isolated bad ticks (an open, high or low far outside the closes "
                     "around it) into that range and list every change, instead of refusing "
                     "the data (data.repair_ticks=true)")
REPAIR_TICKS_SET = "data.repair_ticks=true"  # what --repair-ticks sets (a --set option)
RESUMABLE_FLAGS = {"timesteps": "total_timesteps", "device": "device", "threads": "env_threads"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Train a PPO trading agent on bar data and backtest it on the last "
        "--test-days trading days. Example: fastrl-train --symbols BPCL HDFCLIFE --test-days 30",
    )
    data = parser.add_argument_group("data")
    data.add_argument("--symbols", nargs="+", metavar="SYMBOL", help="symbols to trade")
    data.add_argument("--portfolio", action="store_true",
                      help="one policy allocates weights over all --symbols and cash "
                      "(the config's portfolio section on; caps: --set portfolio.max_weight=0.4)")
    data.add_argument("--freq", choices=("1d", "5min"), help="bar size (default 1d)")
    data.add_argument("--test-days", type=int, metavar="N",
                      help="last trading days held out for the backtest (default 30)")
    data.add_argument("--val-days", type=int, metavar="N",
                      help="trading days before the test slice for validation, early stopping "
                      "and the best checkpoint (default 120 daily, 20 sessions for 5min; "
                      "0: off)")
    data.add_argument("--data", metavar="PATH",
                      help="your CSV/Parquet file or folder instead of the bundled bars")
    data.add_argument("--repair-ticks", action="store_true",
                      help=REPAIR_TICKS_HELP)
    run = parser.add_argument_group("training")
    run.add_argument("--preset", help="hyperparameter preset: anchored (default), fast or baseline")
    run.add_argument("--config", metavar="FILE", help="YAML or TOML file of config keys")
    run.add_argument("--set", dest="set_options", nargs="+", action="append", default=[],
                     metavar="KEY=VALUE", help="override any config key, e.g. env.window=16 "
                     "learning_rate=3e-4 hidden_sizes=[256,256]")
    run.add_argument("--timesteps", type=int, metavar="N", help="env steps to train for")
    run.add_argument("--num-envs", type=int, metavar="N", help="parallel envs")
    run.add_argument("--threads", type=int, metavar="N", help="simulator threads")
    run.add_argument("--seed", type=int, help="random seed (default 0)")
    run.add_argument("--ensemble", type=int, metavar="K",
                     help="train K seeds (seed, seed+1, ...) side by side as one population; "
                     "the policy acts with the mean of their exposures (config key ensemble; "
                     "default 1)")
    run.add_argument("--device", help="auto (default), cpu, cuda or cuda:N")
    run.add_argument("--run-dir", metavar="DIR", help="run folder (default runs/<name>)")
    run.add_argument("--resume", metavar="RUN_DIR",
                     help="continue the run in RUN_DIR from its last checkpoint")
    run.add_argument("--no-compile", action="store_true", help="do not torch.compile (CUDA)")
    run.add_argument("--no-amp", action="store_true",
                     help="no bf16 autocast (on by default on CUDA and CPUs with native bf16); "
                          "checkpoints act in the precision they were validated in")
    run.add_argument("--no-eval", action="store_true",
                     help="skip the backtest report on the test days after training")
    run.add_argument("--rungs", nargs="+", metavar="RULE", default=None, help=RUNGS_HELP)
    run.add_argument("--verbose", action="store_true",
                     help="print every update's metrics (and tracebacks on errors)")
    return parser


def _given_overrides(args: argparse.Namespace) -> dict[str, Any]:
    overrides = {key: getattr(args, dest) for dest, key in FLAG_KEYS.items()
                 if getattr(args, dest) is not None}
    if args.no_compile:
        overrides["compile"] = False
    if args.no_amp:
        overrides["amp"] = False
    if args.portfolio:
        # lazy: the markets load pandas and the simulator, which --help must not
        from fastrl.markets import kind_overrides

        overrides.update(kind_overrides("portfolio"))
    if args.repair_ticks:
        overrides["data.repair_ticks"] = True
    return overrides


def make_trainer(args: argparse.Namespace, callback: Any) -> Any:
    """The Trainer fastrl-train builds from its parsed ``args`` (new or resumed); benches
    that must train exactly as the command does (bench/calibration.py) call it too."""
    # lazy: pydantic and torch, which --help must not import
    from fastrl.config import build_config
    from fastrl.ppo.trainer import Trainer, default_run_dir

    set_options = [item for group in args.set_options for item in group]
    if args.resume:
        extra = [f"--{dest.replace('_', '-')}" for dest in FLAG_KEYS
                 if getattr(args, dest) is not None and dest not in RESUMABLE_FLAGS]
        extra += ["--preset"] * (args.preset is not None) + ["--config"] * bool(args.config)
        extra += ["--set"] * bool(set_options) + ["--portfolio"] * args.portfolio
        extra += ["--repair-ticks"] * args.repair_ticks
        if extra:
            raise UsageError(f"--resume continues the saved configuration; drop {', '.join(extra)}"
                             f" (only --timesteps, --device, --threads, --no-compile, "
                             f"--no-amp may change)")
        overrides = {RESUMABLE_FLAGS[dest]: getattr(args, dest) for dest in RESUMABLE_FLAGS
                     if getattr(args, dest) is not None}
        if args.no_compile:
            overrides["compile"] = False
        if args.no_amp:
            overrides["amp"] = False
        trainer = Trainer.resume(args.resume, overrides=overrides, callback=callback)
        _set_process_state(trainer)
        return trainer
    config = build_config(args.preset, args.config, _given_overrides(args), set_options)
    if config.run_dir and (Path(config.run_dir) / "metrics.jsonl").exists():
        raise UsageError(f"run folder {config.run_dir} already holds a run; continue it with "
                         f"--resume {config.run_dir} or choose another --run-dir")
    trainer = Trainer(config, run_dir=default_run_dir(config), callback=callback)
    _set_process_state(trainer)
    return trainer


def _set_process_state(trainer: Any) -> None:
    """Process-wide settings belong to the command, not the trainer library: torch's CPU
    threads (:func:`fastrl.threads.torch_threads`), and torch's
    global seed (for code outside the trainer that samples, such as
    ``Agent.act(deterministic=False)``; the trainer draws from its own generator)."""
    import torch

    config = trainer.config
    set_torch_threads(config.torch_threads)  # 0: governed by the free cores
    torch.manual_seed(config.seed)


PLAIN_INTERVAL_S = 30.0  # a log (not a terminal) gets a progress line at least this often
WIDE_COLUMNS = 130  # a terminal this wide also shows episode return, entropy, KL and lr


def format_duration(seconds: float | None) -> str:
    """'1:02:03' or '4:05'; '?' when unknown."""
    if seconds is None or not seconds >= 0 or seconds == float("inf"):
        return "?"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class ProgressView:
    """Training progress fed by the trainer's per-update callback.

    On a terminal: a rich progress bar whose key fields (steps, SPS, ETA, last validation
    Sharpe) come first and fit 80 columns; wider terminals add episode return, entropy,
    KL and learning rate. Anywhere else (a log file, CI, nohup) a bar prints nothing
    useful, so a plain line goes out at least every ``interval`` seconds and at the end:
    on an update when the last line is that old, and from a timer thread between updates
    (one update of a big network can take longer than ``interval``).

    SPS is the last update's ``charts/SPS``; the ETA divides the steps left by this
    session's steps per wall second, validations and checkpoints included.
    """

    def __init__(
        self,
        verbose: bool,
        *,
        console: Console | None = None,
        interval: float = PLAIN_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        from rich.console import Console

        self.console = console if console is not None else Console(stderr=True)
        self.verbose = verbose
        self.plain = not self.console.is_terminal
        self.interval = float(interval)
        self.clock = clock
        self.progress: Any = None if self.plain else self._make_progress()
        self.task: Any = None
        self.total = self.done = self.done_at_start = 0
        self.started = self.last_line = 0.0
        self.sps: float | None = None
        self.val: float | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._timer: threading.Thread | None = None
        self._running = False

    def _make_progress(self) -> Any:
        from rich.progress import BarColumn, Progress, TextColumn

        wide = self.console.width >= WIDE_COLUMNS
        columns: list[Any] = [
            BarColumn(bar_width=20 if wide else 12),
            TextColumn("{task.completed:,.0f}/{task.total:,.0f}"),
            TextColumn("{task.fields[sps]} SPS"),
            TextColumn("ETA {task.fields[eta]}"),
            TextColumn("{task.fields[val]}"),
        ]
        if wide:
            columns += [
                TextColumn("ep.rew {task.fields[reward]}"),
                TextColumn("ent {task.fields[entropy]:.3f}"),
                TextColumn("kl {task.fields[kl]:.4f}"),
                TextColumn("lr {task.fields[lr]:.2e}"),
            ]
        return Progress(*columns, console=self.console)

    # ------------------------------------------------------------------ shared state

    def _eta_seconds(self) -> float | None:
        elapsed = self.clock() - self.started
        steps = self.done - self.done_at_start
        if steps <= 0 or elapsed <= 0:
            return None
        return max(self.total - self.done, 0) / (steps / elapsed)

    def _sps_text(self) -> str:
        return "?" if self.sps is None else f"{self.sps:,.0f}"

    def _val_text(self) -> str:
        return "val Sharpe n/a" if self.val is None else f"val Sharpe {self.val:+.2f}"

    def plain_line(self, final: bool = False) -> str:
        """The log line: steps done/total, SPS, ETA, last validation score, elapsed."""
        share = 100.0 * self.done / self.total if self.total else 0.0
        eta = "" if final else f", ETA {format_duration(self._eta_seconds())}"
        return (f"{'ended' if final else 'progress'}: {self.done:,}/{self.total:,} steps "
                f"({share:.1f}%), {self._sps_text()} SPS{eta}, {self._val_text()}, "
                f"{format_duration(self.clock() - self.started)} elapsed")

    def _print_line(self, final: bool = False) -> None:
        # called with the lock held; soft_wrap: one physical line per record in a log
        self.console.print(self.plain_line(final), markup=False, highlight=False,
                           soft_wrap=True)
        self.last_line = self.clock()

    def _tick(self) -> None:
        """Timer thread: a line whenever ``interval`` passed without one; quits on stop."""
        while True:
            with self._lock:
                wait = self.last_line + self.interval - self.clock()
            if self._stop.wait(max(wait, 0.0)):
                return
            with self._lock:
                if not self._running:
                    return
                if self.clock() - self.last_line >= self.interval:
                    self._print_line()

    # ------------------------------------------------------------------ callback API

    def start(self, total: int, done: int) -> None:
        with self._lock:
            self.total, self.done, self.done_at_start = int(total), int(done), int(done)
            self.started = self.last_line = self.clock()
            self._running = True
        if self.plain:
            self._timer = threading.Thread(target=self._tick, name="fastrl-progress",
                                           daemon=True)
            self._timer.start()
            return
        self.progress.start()
        self.task = self.progress.add_task("train", total=total, completed=done, sps="?",
                                           eta="?", reward="  n/a", entropy=0.0, kl=0.0,
                                           lr=0.0, val="")

    def __call__(self, row: dict[str, Any]) -> None:
        with self._lock:
            self.done = int(row["global_step"])
            self.sps = row.get("charts/SPS")
            if row.get("val/sharpe") is not None:
                self.val = float(row["val/sharpe"])
            if self.plain and self._running and self.clock() - self.last_line >= self.interval:
                self._print_line()
        if not self.plain:
            reward = row.get("charts/episode_return")
            self.progress.update(
                self.task, completed=self.done, sps=self._sps_text(),
                eta=format_duration(self._eta_seconds()),
                reward=f"{reward:+.4f}" if reward is not None else "  n/a",
                entropy=row["losses/entropy"], kl=row["losses/approx_kl"],
                lr=row["charts/learning_rate"], val=self._val_text() if self.val is not None
                else "",
            )
        if self.verbose:
            keys = ("charts/episode_return", "losses/value_loss", "losses/policy_loss",
                    "losses/entropy", "losses/approx_kl", "losses/clipfrac",
                    "losses/explained_variance", "losses/epochs", "val/sharpe")
            shown = " ".join(f"{k.split('/')[1]}={row[k]:.4g}" for k in keys
                             if isinstance(row.get(k), (int, float)))
            self.console.print(f"update {row['update']} step {row['global_step']} {shown}",
                               markup=False, highlight=False)

    def stop(self) -> None:
        """Ends the display: the last plain line; nothing prints after this returns."""
        self._stop.set()
        if self._timer is not None:
            self._timer.join()
            self._timer = None
        with self._lock:
            was_running, self._running = self._running, False
            if was_running and self.plain:
                self._print_line(final=True)
        if was_running and not self.plain:
            self.progress.stop()


@cli_errors(PROG)
def main(argv: list[str] | None = None) -> int:
    """Train (or resume), write the run folder and the test-days report; returns the exit code."""
    args = build_parser().parse_args(argv)
    view = ProgressView(args.verbose)
    trainer = make_trainer(args, view)
    console = view.console
    config = trainer.config
    # lazy: the markets and rules load pandas and the simulator, which --help must not
    from fastrl.markets import market_for
    from fastrl.rungs import check_rungs

    market = market_for(config)
    rungs = check_rungs(args.rungs, market.kind)  # a bad name fails before any training
    console.print(f"[bold]{PROG}[/]: {market.describe()} ({config.data.freq}; "
                  f"{config.data.val_days} validation + {config.data.test_days} test days "
                  f"held out), preset {config.preset}, "
                  f"{trainer.num_updates * trainer.batch_size:,} steps "
                  f"on {trainer.device} (amp {'on' if trainer.amp else 'off'}, compile "
                  f"{'on' if trainer.compile else 'off'}) -> {trainer.run_dir}")

    if config.data.val_days == 0:
        console.print("--val-days 0: no validation days, so no early stopping, and the backtest "
                      "uses the final checkpoint instead of one chosen on held-out days")

    def on_sigint(signum: int, frame: Any) -> None:
        if trainer.stop_requested:
            raise Interrupted
        trainer.request_stop()
        console.print("Stopping after this update (Ctrl-C again to abort now)...")

    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGINT, on_sigint)
    started = time.time()
    view.start(trainer.num_updates * trainer.batch_size, trainer.global_step)
    try:
        result = trainer.train()
    finally:
        view.stop()
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    best = (f", best validation Sharpe {result.best_val_sharpe:+.3f}"
            if result.best_val_sharpe is not None else "")
    console.print(f"{result.reason}: {result.global_step:,} steps in "
                  f"{time.time() - started:,.0f} s{best}; checkpoints in "
                  f"{result.run_dir / 'checkpoints'}")
    if result.reason == "interrupted":
        console.print(f"continue with: {PROG} --resume {result.run_dir}")
        return 130
    if args.no_eval:
        return 0
    # lazy: the evaluation path (pandas, the simulator) is not needed by --help
    from fastrl.cli.evaluate import show, write_run_report
    from fastrl.evaluate import evaluate_run, load_run

    trained = load_run(result.run_dir)
    evaluation = evaluate_run(trained, rungs=rungs or ["none"])
    show(trained.market, evaluation, console)
    write_run_report(trained.market, evaluation)
    console.print(f"test-days backtest (report.md, report.html, plots) in {result.run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
