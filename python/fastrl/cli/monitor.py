"""fastrl-monitor RUN_DIR: a live terminal dashboard following a run's metrics.jsonl."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.live import Live

from fastrl.monitor import MetricsFollower, metrics_path, render_dashboard


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fastrl-monitor",
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


def main(argv: list[str] | None = None, console: Console | None = None) -> int:
    """Run the dashboard; returns the exit code (2 for bad arguments)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.refresh <= 0 or args.width <= 0:
        print("fastrl-monitor: --refresh and --width must be positive", file=sys.stderr)
        return 2
    path = metrics_path(args.run_dir)
    if args.once and not path.parent.is_dir():
        print(f"fastrl-monitor: no such run folder: {path.parent}", file=sys.stderr)
        return 2
    if Path(args.run_dir).is_file() and path.suffix != ".jsonl":
        print(f"fastrl-monitor: {args.run_dir} is a file, expected a run folder", file=sys.stderr)
        return 2
    console = console or Console()
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
            transient=False,
        ) as live:
            while True:
                follower.poll()
                live.update(render_dashboard(follower, spark_width=args.width))
                if follower.state.finished:
                    break
                time.sleep(args.refresh)
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
