"""fastrl-monitor RUN_DIR: a live terminal dashboard following a run's metrics.jsonl."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rich.console import Console
from rich.live import Live

from fastrl.cli.errors import UsageError, cli_errors
from fastrl.monitor import MetricsFollower, metrics_path, render_dashboard

PROG = "fastrl-monitor"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Live dashboard of a training run (follows RUN_DIR/metrics.jsonl). "
        "It may be started before or during the run; Ctrl-C leaves.",
    )
    parser.add_argument("run_dir", help="run folder (or its metrics.jsonl)")
    parser.add_argument("--once", action="store_true", help="print one frame and exit")
    parser.add_argument(
        "--refresh", type=float, default=1.0, help="seconds between reads (default 1)"
    )
    parser.add_argument(
        "--width", type=int, default=40, help="sparkline width in characters (default 40)"
    )
    return parser


def run(argv: list[str] | None, console: Console) -> int:
    """The command without the error wrapper (raises on bad input); tests call it."""
    args = build_parser().parse_args(argv)
    if args.refresh <= 0 or args.width <= 0:
        raise UsageError("--refresh and --width must be positive")
    path = metrics_path(args.run_dir)
    if Path(args.run_dir).is_file() and Path(args.run_dir).suffix != ".jsonl":
        raise UsageError(f"{args.run_dir} is a file, expected a run folder or its metrics.jsonl")
    if args.once and not path.parent.is_dir():
        raise FileNotFoundError(f"no such run folder: {path.parent}")
    follower = MetricsFollower(path)
    follower.poll()
    if args.once:
        console.print(render_dashboard(follower, spark_width=args.width))
        return 0
    try:
        with Live(
            render_dashboard(follower, spark_width=args.width),
            console=console,
            refresh_per_second=4,
        ) as live:
            while True:
                follower.poll()
                live.update(render_dashboard(follower, spark_width=args.width))
                if follower.state.finished:
                    break
                time.sleep(args.refresh)
    except KeyboardInterrupt:
        pass  # Ctrl-C is how a user leaves a live view: not an error
    return 0


@cli_errors(PROG)
def main(argv: list[str] | None = None) -> int:
    """fastrl-monitor: 0 when done or interrupted, 2 with one stderr line for bad input."""
    return run(argv, Console())


if __name__ == "__main__":
    raise SystemExit(main())
