"""Optional downloader: NSE bars from Yahoo Finance (``yfinance``, ``.NS`` suffix) into a cache.

Install with ``pip install 'fastrl[download]'``. Files land in
``$FASTRL_DATA_CACHE`` (default ``~/.cache/fastrl/yfinance``) as
``daily/<SYMBOL>.csv`` or ``intraday_5min/<SYMBOL>.csv``, are reused until ``refresh=True``,
and are read back through the same validating loader as any user file
(``load_bars(..., source="yfinance")``). Yahoo serves 5-minute bars for the last 60 days only.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from fastrl.data.validate import FREQS, check_choice

CACHE_ENV = "FASTRL_DATA_CACHE"
INTERVALS = {"1d": "1d", "5min": "5m"}
FOLDERS = {"1d": "daily", "5min": "intraday_5min"}


class DownloadError(RuntimeError):
    """A download failed (offline, unknown ticker, or Yahoo returned nothing)."""


def cache_root() -> Path:
    """Where downloads are cached: ``$FASTRL_DATA_CACHE`` or ``~/.cache/fastrl/yfinance``."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "fastrl" / "yfinance"


def cache_folder(freq: str) -> Path:
    check_choice("freq", freq, FREQS)
    return cache_root() / FOLDERS[freq]


def _import_yfinance():
    try:
        return importlib.import_module("yfinance")
    except ImportError as error:
        raise ImportError(
            "the downloader needs yfinance: pip install 'fastrl[download]' "
            "(or use source='bundled' or your own CSV/Parquet files)"
        ) from error


def _flatten(frame: pd.DataFrame, ticker: str) -> pd.DataFrame:
    """yfinance >= 0.2.48 returns (field, ticker) column pairs even for one ticker."""
    if isinstance(frame.columns, pd.MultiIndex):
        levels = [frame.columns.get_level_values(i) for i in range(frame.columns.nlevels)]
        keep = next(
            (i for i, level in enumerate(levels) if ticker not in set(map(str, level))), 0
        )
        frame = frame.copy()
        frame.columns = levels[keep]
    return frame


def download_bars(
    symbols: str | Iterable[str],
    freq: str = "1d",
    *,
    start: str | None = None,
    end: str | None = None,
    refresh: bool = False,
    suffix: str = ".NS",
) -> dict[str, Path]:
    """Download each symbol's bars (``symbol + suffix`` on Yahoo) into the cache.

    Cached files are reused unless ``refresh``. Returns symbol -> cached CSV path. Raises
    :class:`DownloadError` naming the ticker when Yahoo cannot be reached or returns no rows.
    """
    check_choice("freq", freq, FREQS)
    names = [symbols] if isinstance(symbols, str) else list(symbols)
    folder = cache_folder(freq)
    paths: dict[str, Path] = {}
    missing = []
    for symbol in names:
        path = folder / f"{symbol.upper()}.csv"
        paths[symbol] = path
        if refresh or not path.exists():
            missing.append(symbol)
    if not missing:
        return paths
    yfinance = _import_yfinance()
    folder.mkdir(parents=True, exist_ok=True)
    for symbol in missing:
        ticker = f"{symbol.upper()}{suffix}"
        window = {"start": start, "end": end} if start or end else {}
        if not window:
            window = {"period": "max" if freq == "1d" else "60d"}
        try:
            frame = yfinance.download(
                ticker,
                interval=INTERVALS[freq],
                auto_adjust=False,
                actions=True,
                progress=False,
                **window,
            )
        except Exception as error:  # yfinance raises many network error types
            raise DownloadError(
                f"could not download {ticker} from Yahoo Finance ({type(error).__name__}: "
                f"{error}); are you offline? Cached files in {folder} are used when present"
            ) from error
        if frame is None or len(frame) == 0:
            raise DownloadError(
                f"Yahoo Finance returned no {freq} bars for {ticker} (offline, unknown "
                f"symbol, or a range without data); nothing was written to {folder}"
            )
        frame = _flatten(frame, ticker).reset_index()
        temporary = paths[symbol].with_suffix(".csv.tmp")
        frame.to_csv(temporary, index=False)
        temporary.replace(paths[symbol])  # atomic: a failed write never leaves half a file
    return paths
