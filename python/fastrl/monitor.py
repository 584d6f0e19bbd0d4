"""Live view of a training run: follows ``metrics.jsonl`` and renders a rich dashboard.

The follower reads only complete lines and remembers its offset, so it works on a file
that is still being written (a half-written last line waits for its newline), on a file
that does not exist yet (the monitor may start before the trainer) and on a finished run.
Rendering returns rich renderables; the CLI (``fastrl-monitor``) owns the terminal.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

METRICS_FILE = "metrics.jsonl"
SPARK_CHARS = "▁▂▃▄▅▆▇█"
STALE_AFTER_S = 600.0  # an unfinished run this long without an update probably died

# series kept for sparklines: metrics.jsonl key -> label shown in the dashboard
SERIES = {
    "charts/episode_return": "episode return",
    "val/sharpe": "val Sharpe",
    "losses/entropy": "entropy",
    "losses/approx_kl": "approx KL",
    "charts/learning_rate": "learning rate",
    "charts/clip_range": "clip range",
    "charts/ent_coef": "entropy coef",
    "losses/value_loss": "value loss",
    "losses/explained_variance": "explained var",
    "charts/SPS": "SPS",
}
TIME_SHARES = {
    "time/env_frac": "env",
    "time/inference_frac": "inference",
    "time/copy_frac": "copy",
    "time/update_frac": "update",
}


def metrics_path(run: str | os.PathLike) -> Path:
    """``metrics.jsonl`` of a run folder, or the file itself when given one."""
    path = Path(run)
    if path.suffix == ".jsonl":
        return path
    return path / METRICS_FILE


@dataclass
class RunState:
    """Everything the dashboard shows, accumulated from metrics.jsonl records."""

    start: dict[str, Any] | None = None
    end: dict[str, Any] | None = None
    latest: dict[str, Any] = field(default_factory=dict)
    series: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    updates: int = 0
    last_checkpoint: str | None = None
    last_checkpoint_step: int | None = None
    best_val_sharpe: float | None = None
    bad_lines: int = 0
    # (time, global_step) of recent updates, for a rate that follows speed changes
    recent_progress: list[tuple[float, int]] = field(default_factory=list)

    @property
    def total_timesteps(self) -> int | None:
        for source in (self.latest, self.start or {}):
            total = source.get("total_timesteps")
            if isinstance(total, (int, float)) and total > 0:
                return int(total)
        return None

    @property
    def finished(self) -> bool:
        return self.end is not None

    def add(self, record: dict[str, Any]) -> None:
        """Fold one parsed metrics.jsonl record into the state."""
        event = record.get("event")
        if event == "start":
            self.start = record
            return
        if event == "end":
            self.end = record
            if record.get("final_checkpoint"):
                self.last_checkpoint = str(record["final_checkpoint"])
                self.last_checkpoint_step = record.get("global_step", self.last_checkpoint_step)
            return
        if event is not None or "global_step" not in record:
            return  # other events carry nothing the dashboard shows
        self.updates += 1
        self.latest = record
        step = int(record["global_step"])
        for key in SERIES:
            value = record.get(key)
            if isinstance(value, (int, float)) and math.isfinite(value):
                self.series.setdefault(key, []).append((step, float(value)))
        sharpe = record.get("val/sharpe")
        if isinstance(sharpe, (int, float)) and math.isfinite(sharpe):
            if self.best_val_sharpe is None or sharpe > self.best_val_sharpe:
                self.best_val_sharpe = float(sharpe)
        if record.get("checkpoint"):
            self.last_checkpoint = str(record["checkpoint"])
            self.last_checkpoint_step = step
        when = record.get("time")
        if isinstance(when, (int, float)):
            self.recent_progress.append((float(when), step))
            del self.recent_progress[:-20]

    def steps_per_second(self) -> float | None:
        """Recent global steps per wall-clock second (falls back to the logged SPS)."""
        if len(self.recent_progress) >= 2:
            (t0, s0), (t1, s1) = self.recent_progress[0], self.recent_progress[-1]
            if t1 > t0 and s1 > s0:
                return (s1 - s0) / (t1 - t0)
        sps = self.latest.get("charts/SPS")
        return float(sps) if isinstance(sps, (int, float)) and sps > 0 else None

    def eta_seconds(self) -> float | None:
        total = self.total_timesteps
        rate = self.steps_per_second()
        if total is None or rate is None or self.finished or not self.latest:
            return None
        return max(0.0, (total - int(self.latest["global_step"])) / rate)


class MetricsFollower:
    """Incremental reader of one metrics.jsonl; call :meth:`poll` as often as you like."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = metrics_path(path)
        self.state = RunState()
        self._offset = 0
        self._pending = b""
        self._inode: int | None = None
        self.last_change: float | None = None  # wall time when new records last arrived

    def poll(self) -> bool:
        """Read what was appended since the last call; True when new records arrived.

        A file that shrank or was replaced (a restarted run) is read again from the start.
        """
        try:
            stat = self.path.stat()
        except (FileNotFoundError, NotADirectoryError):
            return False
        if self._inode is not None and (stat.st_ino != self._inode or stat.st_size < self._offset):
            self.state = RunState()
            self._offset = 0
            self._pending = b""
        self._inode = stat.st_ino
        if stat.st_size == self._offset:
            return False
        with open(self.path, "rb") as handle:
            handle.seek(self._offset)
            chunk = handle.read()
        self._offset += len(chunk)
        lines = (self._pending + chunk).split(b"\n")
        self._pending = lines.pop()  # empty when the chunk ended on a newline
        changed = False
        for raw in lines:
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                self.state.bad_lines += 1
                continue
            if isinstance(record, dict):
                self.state.add(record)
                changed = True
        if changed:
            self.last_change = time.time()
        return changed


def sparkline(values: list[float], width: int = 40) -> str:
    """Unicode block sparkline of the last ``width`` values (flat series: a flat line)."""
    finite = [v for v in values if math.isfinite(v)][-width:]
    if not finite:
        return ""
    low, high = min(finite), max(finite)
    if high - low <= 1e-12 * max(1.0, abs(high)):
        return SPARK_CHARS[len(SPARK_CHARS) // 2 - 1] * len(finite)
    scale = (len(SPARK_CHARS) - 1) / (high - low)
    return "".join(SPARK_CHARS[int(round((v - low) * scale))] for v in finite)


def format_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours:d}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:d}:{secs:02d}"


def _number(value: Any) -> str:
    """Compact number: four significant digits, thousands separators for large values."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "-"
    if not math.isfinite(value):
        return str(value)
    if value == 0:
        return "0"
    if abs(value) < 1e-3:
        return f"{value:.2e}"
    if abs(value) < 1000:
        return f"{value:.4g}"
    return f"{value:,.0f}"


def _bar(fraction: float, width: int = 24) -> str:
    fraction = min(1.0, max(0.0, fraction))
    filled = int(round(fraction * width))
    return "█" * filled + "░" * (width - filled)


def render_dashboard(
    follower: MetricsFollower, *, now: float | None = None, spark_width: int = 40
) -> Group:
    """One dashboard frame: header, progress/ETA, time shares, metric sparklines."""
    state = follower.state
    now = time.time() if now is None else now
    run_name = follower.path.parent.name or str(follower.path.parent)
    header = Text(f"fastrl run: {run_name}", style="bold")
    if not follower.path.exists():
        return Group(
            header,
            Text(f"waiting for {follower.path} (the run has not written metrics yet)"),
        )
    if state.finished:
        reason = state.end.get("reason", "finished") if state.end else "finished"
        status = Text(f"finished ({reason})", style="bold green")
    elif state.updates == 0:
        status = Text("started, waiting for the first update", style="yellow")
    else:
        quiet_for = now - float(state.latest.get("time", now))
        if quiet_for > STALE_AFTER_S:
            status = Text(
                f"no update for {format_duration(quiet_for)}: stopped without an end record?",
                style="bold red",
            )
        else:
            status = Text(f"training, last update {format_duration(quiet_for)} ago", style="cyan")

    progress = Table.grid(padding=(0, 2))
    progress.add_column(style="bold")
    progress.add_column()
    step = int(state.latest.get("global_step", 0)) if state.latest else 0
    total = state.total_timesteps
    fraction = step / total if total else 0.0
    progress.add_row("status", status)
    progress.add_row(
        "progress",
        f"{_bar(fraction)} {100 * fraction:5.1f}%  {step:,} / {total:,} steps"
        if total
        else f"{step:,} steps",
    )
    progress.add_row("update", f"{state.latest.get('update', '-')}")
    progress.add_row("elapsed", format_duration(state.latest.get("elapsed")))
    progress.add_row("ETA", format_duration(state.eta_seconds()))
    progress.add_row("SPS", _number(state.latest.get("charts/SPS")))
    checkpoint = state.last_checkpoint or "-"
    if state.last_checkpoint_step is not None:
        checkpoint += f" (step {state.last_checkpoint_step:,})"
    progress.add_row("checkpoint", checkpoint)
    if state.best_val_sharpe is not None:
        progress.add_row("best val Sharpe", _number(state.best_val_sharpe))
    if state.bad_lines:
        progress.add_row("unreadable lines", str(state.bad_lines))

    shares = Table(title="time per phase", show_header=False, box=None, padding=(0, 1))
    for key, label in TIME_SHARES.items():
        value = state.latest.get(key)
        if isinstance(value, (int, float)):
            shares.add_row(label, _bar(float(value), 20), f"{100 * float(value):5.1f}%")

    charts = Table(title="metrics", header_style="bold", box=None, padding=(0, 1))
    charts.add_column("metric")
    charts.add_column("last", justify="right")
    charts.add_column("min", justify="right")
    charts.add_column("max", justify="right")
    charts.add_column("history")
    for key, label in SERIES.items():
        points = state.series.get(key)
        if not points:
            continue
        values = [v for _, v in points]
        charts.add_row(
            label,
            _number(values[-1]),
            _number(min(values)),
            _number(max(values)),
            sparkline(values, spark_width),
        )
    parts: list[Any] = [header, progress]
    if shares.row_count:
        parts.append(shares)
    if charts.row_count:
        parts.append(charts)
    return Group(Panel(Group(*parts), title="fastrl-monitor", expand=False))
