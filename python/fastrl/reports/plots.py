"""The plotting helpers every report shares: matplotlib on the Agg backend, fixed pixel sizes
(so tests can check them), the strategy colours, and the training curves (``training.png``
from a run's ``metrics.jsonl``: episode return, validation Sharpe, entropy, approx KL,
learning rate and clip range).
"""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from fastrl.markets.results import EquityPath

DPI = 100
FIG_WIDTH_IN = 11.0
PANEL_HEIGHT_IN = 3.2
COLORS = {"agent": "#1f77b4", "buy_and_hold": "#ff7f0e", "flat": "#7f7f7f"}
TRAINING_PANELS = (
    ("charts/episode_return", "episode return"),
    ("val/sharpe", "validation Sharpe"),
    ("losses/entropy", "entropy"),
    ("losses/approx_kl", "approx KL"),
    ("charts/learning_rate", "learning rate"),
    ("charts/clip_range", "clip range"),
)


def figure_size_px(panels: int, columns: int = 1) -> tuple[int, int]:
    """(width, height) in pixels of a report figure with ``panels`` panels."""
    rows = math.ceil(panels / columns)
    return int(round(FIG_WIDTH_IN * DPI)), int(round(PANEL_HEIGHT_IN * rows * DPI))


def pyplot():
    """matplotlib.pyplot on the Agg backend (files only, no display)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def time_axis(backtest: EquityPath) -> np.ndarray:
    """Time axis aligned with ``equity``: bar timestamps when known, else the step number."""
    if backtest.timestamps is not None:
        return np.asarray(backtest.timestamps)
    return np.arange(backtest.num_steps + 1)


def save_png(fig: Any, path: Path) -> None:
    """Write ``fig`` as a PNG at the report DPI and close it."""
    fig.savefig(path, dpi=DPI, format="png")
    pyplot().close(fig)


def panel_grid(panels: int, columns: int = 1) -> tuple[Any, np.ndarray]:
    """A figure of ``panels`` panels in ``columns`` columns at the report size, and its axes
    as one flat array."""
    plt = pyplot()
    rows = math.ceil(panels / columns)
    width, height = figure_size_px(panels, columns)
    fig, axes = plt.subplots(
        rows, columns, figsize=(width / DPI, height / DPI), dpi=DPI, squeeze=False
    )
    return fig, axes.reshape(-1)


def read_training_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Update records of a metrics.jsonl (start/end events and unreadable lines skipped)."""
    records = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and "event" not in record and "global_step" in record:
                records.append(record)
    return records


def plot_training(records: list[dict[str, Any]], path: Path) -> Path:
    """Training curves against global step; a panel without data says so."""
    fig, axes = panel_grid(len(TRAINING_PANELS), columns=2)
    for ax, (key, title) in zip(axes, TRAINING_PANELS, strict=True):
        points = [
            (r["global_step"], r[key])
            for r in records
            if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])
        ]
        if points:
            steps, values = zip(*points, strict=True)
            ax.plot(steps, values, marker="." if len(points) < 50 else None, color="#1f77b4")
        else:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(title)
        ax.set_xlabel("global step")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    save_png(fig, path)
    return path




def plot_optuna(study: Any, folder: Path) -> tuple[dict[str, Path], list[str]]:
    """Optimisation history and parameter importances (when they can be computed)."""
    import optuna

    plt = pyplot()
    images, notes = {}, []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        ax = optuna.visualization.matplotlib.plot_optimization_history(study)
        ax.figure.tight_layout()
        images["history"] = folder / "optimization_history.png"
        save_png(ax.figure, images["history"])
        try:
            # with few trials the evaluator may warn that its quantiles pick the same trials
            # (equal importances); the plot still says so, so the warning adds nothing
            warnings.filterwarnings("ignore", message="Target and region quantiles",
                                    category=UserWarning)
            ax = optuna.visualization.matplotlib.plot_param_importances(study)
            ax.figure.tight_layout()
            images["importances"] = folder / "param_importances.png"
            save_png(ax.figure, images["importances"])
        except (ValueError, RuntimeError) as err:
            # needs >= 2 completed trials whose parameters vary
            notes.append(f"parameter importances not computed: {err}")
            plt.close("all")
    return images, notes


__all__ = ["COLORS", "DPI", "FIG_WIDTH_IN", "PANEL_HEIGHT_IN", "TRAINING_PANELS",
           "figure_size_px", "panel_grid", "plot_optuna", "plot_training", "pyplot",
           "read_training_metrics", "save_png", "time_axis"]
