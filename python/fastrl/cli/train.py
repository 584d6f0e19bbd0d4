"""fastrl-train: train a PPO trading agent, then backtest it on the held-out test days.

Values resolve as preset -> --config file -> flags -> --set key=value (see
:mod:`fastrl.config`). The run lands in runs/<name>/ (config.json, metrics.jsonl, tb/,
checkpoints/, report). Ctrl-C once finishes the current update and writes the final
checkpoint; a second Ctrl-C aborts at once (checkpoints/last.pt stays valid).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from fastrl.cli.errors import UsageError, cli_errors

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
    "device": "device",
    "run_dir": "run_dir",
}
RESUMABLE_FLAGS = {"timesteps": "total_timesteps", "device": "device", "threads": "env_threads"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Train a PPO trading agent on bar data and backtest it on the last "
        "--test-days trading days. Example: fastrl-train --symbols BPCL HDFCLIFE --test-days 30",
    )
    data = parser.add_argument_group("data")
    data.add_argument("--symbols", nargs="+", metavar="SYMBOL", help="symbols to trade")
    data.add_argument("--freq", choices=("1d", "5min"), help="bar size (default 1d)")
    data.add_argument("--test-days", type=int, metavar="N",
                      help="last trading days held out for the backtest (default 30)")
    data.add_argument("--val-days", type=int, metavar="N",
                      help="trading days before the test slice for validation and early "
                      "stopping (default 0: off)")
    data.add_argument("--data", metavar="PATH",
                      help="your CSV/Parquet file or folder instead of the bundled bars")
    run = parser.add_argument_group("training")
    run.add_argument("--preset", help="hyperparameter preset: fast (default) or baseline")
    run.add_argument("--config", metavar="FILE", help="YAML or TOML file of config keys")
    run.add_argument("--set", dest="set_options", nargs="+", action="append", default=[],
                     metavar="KEY=VALUE", help="override any config key, e.g. env.window=16 "
                     "learning_rate=3e-4 hidden_sizes=[256,256]")
    run.add_argument("--timesteps", type=int, metavar="N", help="env steps to train for")
    run.add_argument("--num-envs", type=int, metavar="N", help="parallel envs")
    run.add_argument("--threads", type=int, metavar="N", help="simulator threads")
    run.add_argument("--seed", type=int, help="random seed (default 0)")
    run.add_argument("--device", help="auto (default), cpu, cuda or cuda:N")
    run.add_argument("--run-dir", metavar="DIR", help="run folder (default runs/<name>)")
    run.add_argument("--resume", metavar="RUN_DIR",
                     help="continue the run in RUN_DIR from its last checkpoint")
    run.add_argument("--no-compile", action="store_true", help="do not torch.compile (CUDA)")
    run.add_argument("--no-amp", action="store_true", help="no bf16 autocast (CUDA)")
    run.add_argument("--no-eval", action="store_true",
                     help="skip the backtest report on the test days after training")
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
    return overrides


def _make_trainer(args: argparse.Namespace, callback: Any) -> Any:
    from fastrl.config import build_config
    from fastrl.ppo.trainer import Trainer, default_run_dir

    set_options = [item for group in args.set_options for item in group]
    if args.resume:
        extra = [f"--{dest.replace('_', '-')}" for dest in FLAG_KEYS
                 if getattr(args, dest) is not None and dest not in RESUMABLE_FLAGS]
        extra += ["--preset"] * (args.preset is not None) + ["--config"] * bool(args.config)
        extra += ["--set"] * bool(set_options)
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
        _set_process_state(trainer.config)
        return trainer
    config = build_config(args.preset, args.config, _given_overrides(args), set_options)
    if config.run_dir and (Path(config.run_dir) / "metrics.jsonl").exists():
        raise UsageError(f"run folder {config.run_dir} already holds a run; continue it with "
                         f"--resume {config.run_dir} or choose another --run-dir")
    _set_process_state(config)
    return Trainer(config, run_dir=default_run_dir(config), callback=callback)


def _set_process_state(config: Any) -> None:
    """Process-wide settings belong to the command, not the trainer library: torch's CPU
    threads, and torch's global seed (for code outside the trainer that samples, such as
    ``Agent.act(deterministic=False)``; the trainer draws from its own generator)."""
    import torch

    torch.set_num_threads(config.torch_threads or os.cpu_count() or 1)
    torch.manual_seed(config.seed)


class ProgressView:
    """A rich progress bar fed by the trainer's per-update callback."""

    def __init__(self, verbose: bool) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self.console = Console(stderr=True)
        self.verbose = verbose
        self.progress = Progress(
            BarColumn(bar_width=20),
            TextColumn("{task.completed:,.0f}/{task.total:,.0f}"),
            TextColumn("{task.fields[sps]:>7,.0f} SPS"),
            TextColumn("ep.rew {task.fields[reward]}"),
            TextColumn("ent {task.fields[entropy]:.3f}"),
            TextColumn("kl {task.fields[kl]:.4f}"),
            TextColumn("lr {task.fields[lr]:.2e}"),
            TextColumn("{task.fields[val]}"),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
        )
        self.task: Any = None

    def start(self, total: int, done: int) -> None:
        self.progress.start()
        self.task = self.progress.add_task("train", total=total, completed=done, sps=0.0,
                                           reward="  n/a", entropy=0.0, kl=0.0, lr=0.0, val="")

    def __call__(self, row: dict[str, Any]) -> None:
        reward = row.get("charts/episode_return")
        val = row.get("val/sharpe")
        fields = {
            "sps": row["charts/SPS"],
            "reward": f"{reward:+.4f}" if reward is not None else "  n/a",
            "entropy": row["losses/entropy"],
            "kl": row["losses/approx_kl"],
            "lr": row["charts/learning_rate"],
        }
        if val is not None:
            fields["val"] = f"val Sharpe {val:+.2f}"
        self.progress.update(self.task, completed=row["global_step"], **fields)
        if self.verbose:
            keys = ("charts/episode_return", "losses/value_loss", "losses/policy_loss",
                    "losses/entropy", "losses/approx_kl", "losses/clipfrac",
                    "losses/explained_variance", "losses/epochs", "val/sharpe")
            shown = " ".join(f"{k.split('/')[1]}={row[k]:.4g}" for k in keys
                             if isinstance(row.get(k), (int, float)))
            self.progress.console.print(f"update {row['update']} step {row['global_step']} "
                                        f"{shown}")

    def stop(self) -> None:
        self.progress.stop()


@cli_errors(PROG)
def main(argv: list[str] | None = None) -> int:
    """Train (or resume), write the run folder and the test-days report; returns the exit code."""
    args = build_parser().parse_args(argv)
    view = ProgressView(args.verbose)
    trainer = _make_trainer(args, view)
    console = view.console
    config = trainer.config
    console.print(f"[bold]{PROG}[/]: {', '.join(config.data.symbols)} ({config.data.freq}), "
                  f"preset {config.preset}, {trainer.num_updates * trainer.batch_size:,} steps "
                  f"on {trainer.device} (amp {'on' if trainer.amp else 'off'}, compile "
                  f"{'on' if trainer.compile else 'off'}) -> {trainer.run_dir}")

    def on_sigint(signum: int, frame: Any) -> None:
        if trainer._stop_requested:
            raise KeyboardInterrupt
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
    from fastrl.cli.evaluate import metrics_tables, print_verdict, write_run_report
    from fastrl.evaluate import evaluate_run

    evaluation = evaluate_run(result.run_dir)
    console.print(metrics_tables(evaluation))
    print_verdict(evaluation, console)
    write_run_report(evaluation)
    console.print(f"test-days backtest (report.md, report.html, plots) in {result.run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
