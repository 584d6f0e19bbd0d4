"""The report files exist, the PNGs are images of the expected size and not blank."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastrl._core")

from fastrl.data.block import MarketBlock  # noqa: E402
from fastrl.env import EnvConfig  # noqa: E402
from fastrl.evaluate import evaluate_agent  # noqa: E402
from fastrl.report import figure_size_px, read_training_metrics, write_report  # noqa: E402

WINDOW = 4


def _market(timestamps: bool = True) -> MarketBlock:
    rng = np.random.default_rng(3)
    segments = []
    for k, n in enumerate((45, 35)):
        close = 100.0 * np.cumprod(1.0 + rng.normal(0.0, 0.01, n))
        segment = {
            "symbol": f"SYM{k}",
            "open": close * (1.0 + rng.normal(0.0, 0.003, n)),
            "close": close,
            "features": rng.normal(size=(n, 2)),
        }
        if timestamps:
            days = np.datetime64("2024-03-01") + np.arange(n).astype("timedelta64[D]")
            segment["timestamps"] = days.astype("datetime64[ns]")
        segments.append(segment)
    return MarketBlock.from_segments(segments, meta={"context_rows": WINDOW - 1})


def _training_metrics(path: Path) -> Path:
    lines = [json.dumps({"event": "start", "config": {}, "total_timesteps": 1000, "time": 0.0})]
    for i in range(10):
        record = {
            "global_step": 100 * (i + 1),
            "update": i + 1,
            "charts/episode_return": 0.01 * i,
            "losses/entropy": 1.0 - 0.05 * i,
            "losses/approx_kl": 0.01,
            "charts/learning_rate": 1e-3 / (i + 1),
            "charts/clip_range": 0.3 - 0.01 * i,
        }
        if i % 3 == 0:
            record["val/sharpe"] = 0.1 * i
        lines.append(json.dumps(record))
    lines.append('{"global_step": 11')  # a line cut off mid-write is skipped
    path.write_text("\n".join(lines) + "\n")
    return path


def _check_png(path: Path, size: tuple[int, int]) -> None:
    import matplotlib.image as mpimg

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = mpimg.imread(path)
    assert (pixels.shape[1], pixels.shape[0]) == size
    rgb = pixels[..., :3]
    assert float(rgb.std()) > 0.01  # not a blank canvas
    # plotted lines: a fair share of pixels is neither white nor near-white
    assert float(np.mean(rgb.min(axis=2) < 0.9)) > 0.01


@pytest.mark.parametrize("timestamps", [True, False])
def test_report_files_and_images(tmp_path: Path, timestamps: bool):
    market = _market(timestamps)
    policy = lambda obs: (obs[:, 0] > 0).astype(np.int64)  # noqa: E731 (long/flat: nse_delivery)
    result = evaluate_agent(policy, market, EnvConfig(window=WINDOW), info={"test_days": 30})
    files = write_report(
        result, tmp_path / "run", training_metrics=_training_metrics(tmp_path / "metrics.jsonl")
    )
    assert set(files.images) == {"equity", "drawdown", "positions", "training"}
    for name, path in files.images.items():
        panels, columns = (6, 2) if name == "training" else (2, 1)
        _check_png(path, figure_size_px(panels, columns))

    markdown = files.markdown.read_text()
    for text in ("## SYM0", "## SYM1", "## Combined", "| Sharpe |", "buy & hold", "equity.png"):
        assert text in markdown
    assert "Test days per symbol: 30" in markdown
    sharpe = result.metrics("SYM0", "agent").sharpe
    assert f"| Sharpe | {sharpe:.3f} |" in markdown

    page = files.html.read_text()
    embedded = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(embedded) == 4
    assert "<img" in page and 'src="equity.png"' not in page  # nothing to fetch
    assert page.count("<table>") == 3

    data = json.loads(files.json.read_text())
    assert data["metrics"]["SYM0"]["agent"]["sharpe"] == pytest.approx(sharpe)
    assert data["env_config"]["random_start"] is False


def test_report_without_training_metrics(tmp_path: Path):
    result = evaluate_agent(lambda obs: np.full(obs.shape[0], 1), _market(), EnvConfig(window=4))
    files = write_report(result, tmp_path, training_metrics=tmp_path / "missing.jsonl")
    assert set(files.images) == {"equity", "drawdown", "positions"}
    assert not (tmp_path / "training.png").exists()
    assert files.markdown.exists() and files.html.exists()


def test_read_training_metrics_skips_events_and_broken_lines(tmp_path: Path):
    records = read_training_metrics(_training_metrics(tmp_path / "m.jsonl"))
    assert [r["update"] for r in records] == list(range(1, 11))
