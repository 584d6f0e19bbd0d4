"""Market data: bundled NSE/BSE bars, validated loaders, time splits and synthetic markets.

Start here:

- :func:`available` / :func:`load_bars`: the bundled sets (see ``bundled/PROVENANCE.md``)
  or your own CSV/Parquet files, validated (errors name file, row and column) and
  split/bonus-adjusted.
- :func:`build_market`: bars -> causal features -> train/val/test
  :class:`~fastrl.data.block.MarketBlock` s with a normaliser fitted on train rows only.
- :mod:`fastrl.data.synthetic`: seeded GBM, regime-switching and planted-signal markets,
  and :func:`build_synthetic_market` through the same feature/split path.
- A run config's ``data`` section -> its splits: ``market_for(config).load()``
  (:mod:`fastrl.markets`), the one loader the trainer, evaluation and tuning share.

Names load lazily so that ``from fastrl.data.block import MarketBlock`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "MarketBlock": "fastrl.data.block",
    "available": "fastrl.data.loaders",
    "load_bars": "fastrl.data.loaders",
    "load_bars_report": "fastrl.data.loaders",
    "LoadResult": "fastrl.data.loaders",
    "DataValidationError": "fastrl.data.errors",
    "RowIssue": "fastrl.data.errors",
    "build_market": "fastrl.data.splits",
    "build_market_from_bars": "fastrl.data.splits",
    "split_bars": "fastrl.data.splits",
    "MarketSplits": "fastrl.data.splits",
    "PanelBlock": "fastrl.data.panel",
    "build_panel": "fastrl.data.panel",
    "build_synthetic_market": "fastrl.data.synthetic",
    "download_bars": "fastrl.data.download",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fastrl.data' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
