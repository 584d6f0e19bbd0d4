"""The run folder every backtest report writes, whatever its kind: training.png (when the
run logged metrics), report.md, report.html, report.json, test_returns.csv and
test_trades.csv. The kinds' document builders (:mod:`fastrl.reports.single`,
:mod:`fastrl.reports.portfolio`) add their own plots and content.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastrl.reports.format import json_safe
from fastrl.reports.plots import plot_training, read_training_metrics
from fastrl.reports.writer import Document, write_pages


@dataclass
class ReportFiles:
    """Paths of everything a backtest report wrote."""

    markdown: Path
    html: Path
    json: Path
    images: dict[str, Path]
    returns_csv: Path
    trades_csv: Path


def write_result_files(
    result: Any,
    out: Path,
    images: dict[str, Path],
    document: Callable[[dict[str, Path]], Document],
    training_metrics: str | os.PathLike | None,
    write_trades: Callable[[Path], Any],
) -> ReportFiles:
    """What every backtest report writes once its own plots are in ``images``: training.png
    (when the run logged metrics), report.md and report.html (``document(images)``),
    report.json (``result.to_dict()``), test_returns.csv (``result.steps_frame()``) and
    test_trades.csv (``write_trades(path)``)."""
    if training_metrics is not None and Path(training_metrics).is_file():
        records = read_training_metrics(training_metrics)
        if records:
            images["training"] = plot_training(records, out / "training.png")
    markdown_path, html_path = write_pages(document(images), out)
    json_path = out / "report.json"
    json_path.write_text(
        json.dumps(json_safe(result.to_dict()), indent=2, allow_nan=False), encoding="utf-8"
    )
    # full float precision (pandas writes repr): the CSV reproduces the table's Sharpe
    returns_path = out / "test_returns.csv"
    result.steps_frame().to_csv(returns_path, index=False)
    trades_path = out / "test_trades.csv"
    write_trades(trades_path)
    return ReportFiles(markdown=markdown_path, html=html_path, json=json_path, images=images,
                       returns_csv=returns_path, trades_csv=trades_path)


__all__ = ["ReportFiles", "write_result_files"]
