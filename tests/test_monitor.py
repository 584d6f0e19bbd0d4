"""fastrl-monitor renders frames from recorded and still-growing metrics.jsonl files."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from rich.console import Console

from fastrl.cli import monitor as monitor_cli
from fastrl.monitor import SPARK_CHARS, MetricsFollower, render_dashboard, sparkline

TOTAL = 4096


def _update(i: int, t0: float) -> dict:
    record = {
        "global_step": 512 * (i + 1),
        "update": i + 1,
        "time": t0 + 2.0 * (i + 1),
        "elapsed": 2.0 * (i + 1),
        "total_timesteps": TOTAL,
        "charts/SPS": 256.0 + i,
        "charts/learning_rate": 1e-3 * (1 - i / 8),
        "charts/ent_coef": 0.1 - 0.01 * i,
        "charts/clip_range": 0.3 - 0.02 * i,
        "charts/episode_return": 0.01 * i if i % 3 else None,
        "charts/episode_length": 252.0,
        "losses/value_loss": 1.0 / (i + 1),
        "losses/policy_loss": -0.01,
        "losses/entropy": 1.09 - 0.05 * i,
        "losses/approx_kl": 0.01 + 0.001 * i,
        "losses/clipfrac": 0.1,
        "losses/explained_variance": 0.1 * i,
        "losses/epochs": 20,
        "time/env_frac": 0.25,
        "time/inference_frac": 0.15,
        "time/copy_frac": 0.05,
        "time/update_frac": 0.55,
    }
    if i % 2 == 1:
        record["val/sharpe"] = 0.5 * i
    if i == 5:
        record["checkpoint"] = "runs/demo/checkpoints/last.pt"
    return record


def _lines(updates: int, end: bool, t0: float = 1_700_000_000.0) -> list[str]:
    lines = [json.dumps({"event": "start", "config": {}, "total_timesteps": TOTAL, "time": t0})]
    lines += [json.dumps(_update(i, t0)) for i in range(updates)]
    if end:
        end = {"event": "end", "reason": "completed", "time": t0 + 100, "global_step": TOTAL}
        end["final_checkpoint"] = "runs/demo/checkpoints/final.pt"
        lines.append(json.dumps(end))
    return lines


def _render(follower: MetricsFollower, now: float | None = None) -> str:
    console = Console(file=io.StringIO(), width=140, color_system=None)
    console.print(render_dashboard(follower, now=now))
    return console.file.getvalue()


def test_sparkline():
    assert sparkline([]) == ""
    assert sparkline([1.0, 2.0, 3.0]) == SPARK_CHARS[0] + SPARK_CHARS[4] + SPARK_CHARS[-1]
    assert len(set(sparkline([5.0] * 6))) == 1
    assert len(sparkline(list(range(100)), width=10)) == 10
    assert sparkline([float("nan"), 1.0]) == SPARK_CHARS[3]


def test_once_renders_a_recorded_finished_run(tmp_path: Path):
    run = tmp_path / "demo"
    run.mkdir()
    (run / "metrics.jsonl").write_text("\n".join(_lines(8, end=True)) + "\n")
    console = Console(file=io.StringIO(), width=140, color_system=None)
    assert monitor_cli.run([str(run), "--once"], console) == 0
    frame = console.file.getvalue()
    assert "finished (completed)" in frame
    assert "4,096 / 4,096 steps" in frame and "100.0%" in frame
    assert "runs/demo/checkpoints/final.pt (step 4,096)" in frame
    for label in ("episode return", "val Sharpe", "entropy", "approx KL", "learning rate"):
        assert label in frame
    assert "clip range" in frame and "update" in frame and "inference" in frame
    assert any(ch in frame for ch in SPARK_CHARS[1:])
    assert "best val Sharpe" in frame and "3.5" in frame


def test_follows_a_file_still_being_written(tmp_path: Path):
    path = tmp_path / "live" / "metrics.jsonl"
    follower = MetricsFollower(path.parent)
    assert not follower.poll()
    assert "waiting for" in _render(follower)
    path.parent.mkdir()
    lines = _lines(3, end=False)
    # the trainer is in the middle of writing the fourth update
    partial = json.dumps(_update(3, 1_700_000_000.0))
    path.write_text("\n".join(lines) + "\n" + partial[:40])
    assert follower.poll()
    assert follower.state.updates == 3 and follower.state.bad_lines == 0
    frame = _render(follower, now=1_700_000_000.0 + 10.0)
    assert "training, last update 0:04 ago" in frame
    assert "1,536 / 4,096 steps" in frame
    assert "runs/demo" not in frame  # no checkpoint written yet
    assert "ETA" in frame and "0:10" in frame  # 2560 steps left at 256 steps/s
    with open(path, "a") as handle:
        handle.write(partial[40:] + "\n")
    assert follower.poll()
    assert follower.state.updates == 4
    assert follower.state.latest["global_step"] == 2048
    assert not follower.poll()  # nothing new


def test_eta_from_recent_rate(tmp_path: Path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("\n".join(_lines(3, end=False)) + "\n")
    follower = MetricsFollower(path)
    follower.poll()
    # 512 steps every 2 s, 4096 - 1536 left
    assert follower.state.eta_seconds() == pytest.approx((TOTAL - 1536) / 256.0)


def test_restarted_run_is_read_again(tmp_path: Path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("\n".join(_lines(6, end=True)) + "\n")
    follower = MetricsFollower(path)
    follower.poll()
    assert follower.state.finished
    path.write_text("\n".join(_lines(1, end=False)) + "\n")
    follower.poll()
    assert not follower.state.finished and follower.state.updates == 1


def test_live_mode_follows_a_concurrent_writer_and_stops_at_the_end(tmp_path: Path):
    run = tmp_path / "run"
    run.mkdir()
    lines = _lines(5, end=True)

    def write_slowly() -> None:
        with open(run / "metrics.jsonl", "a") as handle:
            for line in lines:
                handle.write(line + "\n")
                handle.flush()
                time.sleep(0.03)

    writer = threading.Thread(target=write_slowly)
    writer.start()
    console = Console(file=io.StringIO(), width=140, color_system=None)
    try:
        code = monitor_cli.run([str(run), "--refresh", "0.02"], console)
    finally:
        writer.join()
    assert code == 0
    assert "finished (completed)" in console.file.getvalue()


def test_ctrl_c_exits_cleanly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("\n".join(_lines(2, end=False)) + "\n")

    def interrupt(_seconds: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(monitor_cli.time, "sleep", interrupt)
    console = Console(file=io.StringIO(), width=140, color_system=None)
    assert monitor_cli.run([str(run)], console) == 0


def test_bad_arguments_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert monitor_cli.main([str(tmp_path / "nope"), "--once"]) == 2
    assert capsys.readouterr().err.startswith("fastrl-monitor: error: no such run folder")
    assert monitor_cli.main([str(tmp_path), "--refresh", "0"]) == 2
    assert "--refresh and --width must be positive" in capsys.readouterr().err
    (tmp_path / "notes.txt").write_text("x")
    assert monitor_cli.main([str(tmp_path / "notes.txt")]) == 2
    assert "expected a run folder" in capsys.readouterr().err


def test_command_line_once(tmp_path: Path):
    run = tmp_path / "cli"
    run.mkdir()
    (run / "metrics.jsonl").write_text("\n".join(_lines(4, end=False)) + "\n")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1] / "python"))
    done = subprocess.run(
        [sys.executable, "-m", "fastrl.cli.monitor", str(run), "--once"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "2,048 / 4,096 steps" in done.stdout
    assert "stopped without an end record?" in done.stdout  # recorded long ago
