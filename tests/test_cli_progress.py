"""fastrl-train's progress: plain lines for logs (at least every interval, and at the end,
never after), and a rich bar whose key fields survive an 80-column terminal."""

from __future__ import annotations

import io
import threading
import time

from rich.console import Console

from fastrl.cli.train import ProgressView, format_duration


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _row(step: int, val: float | None = None, sps: float = 4096.0) -> dict:
    row = {"global_step": step, "update": step // 8192, "charts/SPS": sps,
           "charts/episode_return": 0.0123, "losses/entropy": 1.0, "losses/approx_kl": 0.01,
           "charts/learning_rate": 3e-4}
    if val is not None:
        row["val/sharpe"] = val
    return row


def _log_console() -> Console:
    return Console(file=io.StringIO(), width=80)  # a file: not a terminal


def _lines(console: Console) -> list[str]:
    return console.file.getvalue().splitlines()


def test_format_duration():
    assert format_duration(0) == "0:00" and format_duration(65.4) == "1:05"
    assert format_duration(3723) == "1:02:03"
    assert format_duration(None) == "?" and format_duration(float("inf")) == "?"


def test_log_gets_a_line_per_interval_on_updates_and_one_at_the_end():
    console, clock = _log_console(), FakeClock()
    view = ProgressView(False, console=console, interval=30.0, clock=clock)
    assert view.plain and view.progress is None
    view.start(total=100_000, done=0)
    try:
        clock.now += 10
        view(_row(10_000, sps=1000.0))  # 10 s after the last line: nothing yet
        assert _lines(console) == []
        clock.now += 25
        view(_row(30_000, val=0.42, sps=900.0))  # 35 s: a line
        lines = _lines(console)
        assert lines == ["progress: 30,000/100,000 steps (30.0%), 900 SPS, ETA 1:22, "
                         "val Sharpe +0.42, 0:35 elapsed"]  # 70,000 steps at 30,000 / 35 s
        clock.now += 5
        view(_row(35_000))  # 5 s after the line: nothing; the val score is kept
        assert len(_lines(console)) == 1
    finally:
        view.stop()
    lines = _lines(console)
    assert lines[-1] == ("ended: 35,000/100,000 steps (35.0%), 4,096 SPS, val Sharpe +0.42, "
                         "0:40 elapsed")
    assert len(lines) == 2
    view.stop()  # idempotent, prints nothing more
    assert len(_lines(console)) == 2


def test_timer_prints_during_a_long_update_and_stops_cleanly():
    console = _log_console()
    view = ProgressView(False, console=console, interval=0.05)
    view.start(total=1000, done=200)  # a resumed run: the ETA counts this session only
    time.sleep(0.4)  # one long first update: no callback at all
    before_stop = len(_lines(console))
    assert before_stop >= 3, console.file.getvalue()
    assert _lines(console)[0].startswith("progress: 200/1,000 steps (20.0%), ? SPS, ETA ?, "
                                         "val Sharpe n/a, ")
    view.stop()
    assert not any(t.name == "fastrl-progress" for t in threading.enumerate())
    lines = _lines(console)
    assert lines[-1].startswith("ended: 200/1,000 steps")
    time.sleep(0.2)
    assert _lines(console) == lines  # nothing after the run ended


def test_rich_bar_keeps_steps_sps_eta_and_val_in_80_columns():
    console, clock = Console(file=io.StringIO(), width=80, force_terminal=True), FakeClock()
    view = ProgressView(False, console=console, clock=clock)
    assert not view.plain
    view.start(total=1_000_000, done=0)
    try:
        clock.now += 100
        view(_row(250_000, val=-1.23, sps=12_345.0))
        screen = Console(file=io.StringIO(), width=80, force_terminal=True)
        screen.print(view.progress.get_renderable())
    finally:
        view.stop()
    rendered = screen.file.getvalue()
    for text in ("250,000/1,000,000", "12,345 SPS", "ETA 5:00", "val Sharpe -1.23"):
        assert text in rendered, rendered
    wide = ProgressView(False, console=Console(file=io.StringIO(), width=160,
                                               force_terminal=True))
    assert len(wide.progress.columns) > len(view.progress.columns)  # the extras when room
