"""Where bars come from: the bundled NSE/BSE sets, a user folder or file, or the yfinance cache.

``source="bundled"`` reads the gzip CSVs shipped in ``fastrl/data/bundled`` (see
PROVENANCE.md there). A path may be a folder holding one file per symbol
(``<SYMBOL>.csv``, ``.csv.gz``, ``.parquet``; optionally inside a ``daily/`` or
``intraday_5min/`` sub-folder chosen by ``freq``), or one file (its name is the symbol,
or it has a ``symbol``/``ticker`` column holding several symbols).
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from fastrl.data.download import cache_folder, download_bars
from fastrl.data.errors import DataValidationError, RowIssue
from fastrl.data.readers import (
    PARQUET_SUFFIXES,
    bar_file_suffix,
    canonical_columns,
    read_csv_bytes,
    read_table,
    symbol_of,
)
from fastrl.data.ticks import TickRepair, find_bad_ticks
from fastrl.data.validate import FREQS, ValidatedBars, check_choice, validate_bars

LOG = logging.getLogger("fastrl.data")
BUNDLED_DIR = Path(__file__).resolve().parent / "bundled"
BARS_CACHE_VERSION = 3  # bump when reading, validation or adjustment changes what they return
BAR_COLUMNS = ("open", "high", "low", "close", "volume")
FREQ_FOLDERS = {"1d": ("daily", "1d", "day"), "5min": ("intraday_5min", "5min", "5m")}


@dataclass
class LoadResult:
    """Validated bars per symbol plus everything done on the way (for summaries)."""

    bars: dict[str, pd.DataFrame]
    files: dict[str, str]
    dropped: dict[str, list[RowIssue]] = field(default_factory=dict)
    adjustment: dict[str, str] = field(default_factory=dict)
    resorted: list[str] = field(default_factory=list)  # symbols whose rows were out of order
    repaired: dict[str, list[TickRepair]] = field(default_factory=dict)  # bad ticks clipped


def _freq_folder(root: Path, freq: str) -> Path:
    for name in FREQ_FOLDERS[freq]:
        if (root / name).is_dir():
            return root / name
    return root


def _index_source(source: str | Path, freq: str) -> dict[str, tuple[Path, str | None]]:
    """Map each available symbol to (file, value of its symbol column or None)."""
    if isinstance(source, str) and source == "bundled":
        root = BUNDLED_DIR / FREQ_FOLDERS[freq][0]
    elif isinstance(source, str) and source == "yfinance":

        root = cache_folder(freq)
    else:
        root = Path(source).expanduser()
        if not root.exists():
            raise FileNotFoundError(f"data source {str(root)!r} does not exist")
    if root.is_file():
        if bar_file_suffix(root) is None:
            raise ValueError(f"{str(root)!r} is not a CSV or Parquet bar file")
        return _index_file(root)
    folder = _freq_folder(root, freq)
    files = sorted(p for p in folder.iterdir() if p.is_file() and bar_file_suffix(p))
    index: dict[str, tuple[Path, str | None]] = {}
    for path in files:
        symbol = symbol_of(path)
        if symbol.upper() in (s.upper() for s in index):
            other = next(index[s][0] for s in index if s.upper() == symbol.upper())
            raise ValueError(f"two files hold symbol {symbol!r}: {other} and {path}")
        index[symbol] = (path, None)
    return index


def _index_file(path: Path) -> dict[str, tuple[Path, str | None]]:
    table = read_table(path)
    lowered = {str(c).replace("\ufeff", "").strip().lower(): c for c in table.columns}
    symbol_column = lowered.get("symbol", lowered.get("ticker"))
    if symbol_column is None:
        return {symbol_of(path): (path, None)}
    symbols = table[symbol_column].dropna().astype(str).str.strip().unique()
    return {str(s): (path, str(s)) for s in sorted(symbols)}


def available(freq: str | None = None, source: str | Path = "bundled"):
    """Symbols a source holds: a sorted list for one ``freq``, else a dict freq -> list."""
    if freq is None:
        return {f: available(f, source) for f in FREQS}
    check_choice("freq", freq, FREQS)
    try:
        return sorted(_index_source(source, freq))
    except FileNotFoundError:
        if source in ("bundled", "yfinance"):
            return []
        raise


def _as_symbol_list(symbols: str | Iterable[str]) -> list[str]:
    if isinstance(symbols, str):
        symbols = symbols.split(",")
    names = [str(s).strip() for s in symbols if str(s).strip()]
    if not names:
        raise ValueError("no symbols given")
    duplicates = sorted({s for s in names if names.count(s) > 1})
    if duplicates:
        raise ValueError(f"symbols listed twice: {', '.join(duplicates)}")
    return names


def load_bars_report(
    symbols: str | Iterable[str],
    freq: str = "1d",
    source: str | Path = "bundled",
    on_bad_rows: str = "raise",
    *,
    adjust: str = "auto",
    tz: str = "Asia/Kolkata",
    cache: str | Path | None = None,
    repair_ticks: bool = False,
) -> LoadResult:
    """:func:`load_bars` plus the record of repairs, adjustments and re-sorting.

    ``repair_ticks``: clip isolated bad ticks (:mod:`fastrl.data.ticks`) instead of
    refusing them; each change is in ``repaired`` and logged as a warning on the
    ``fastrl.data`` logger (printed to stderr when logging is not configured).

    ``cache`` (a folder): reuse the validated bars of a file whose bytes are unchanged since
    they were last parsed with these options (keyed by the file's SHA-256), so a call after
    new bars arrived parses only the files that changed; a one-symbol CSV that only grew
    (new lines appended after the cached text) is extended by reading and validating just
    the new lines (:func:`_appended_bars`). The result is the same arrays."""
    check_choice("freq", freq, FREQS)
    names = _as_symbol_list(symbols)
    if isinstance(source, str) and source == "yfinance":

        download_bars(names, freq=freq)
    index = _index_source(source, freq)
    by_upper = {s.upper(): s for s in index}
    unknown = [s for s in names if s.upper() not in by_upper]
    if unknown:
        shown = ", ".join(sorted(index)) or "none"
        raise ValueError(
            f"unknown symbol{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} for "
            f"freq={freq!r} in source {str(source)!r}; available: {shown}"
        )
    result = LoadResult(bars={}, files={})
    tables: dict[Path, pd.DataFrame] = {}
    raw: dict[Path, bytes] = {}
    for requested in names:
        symbol = by_upper[requested.upper()]
        path, symbol_value = index[symbol]
        label = path.name if source == "bundled" else str(path)
        csv_lines = bar_file_suffix(path) not in PARQUET_SUFFIXES
        growable = csv_lines and symbol_value is None  # one symbol's CSV: may grow by appends
        entry = None
        if cache is not None:
            if path not in raw:
                raw[path] = path.read_bytes()
            entry = _CacheEntry(Path(cache), path, symbol_value,
                                hashlib.sha256(raw[path]).hexdigest(),
                                (freq, tz, on_bad_rows, adjust, label, repair_ticks))
            hit = entry.read()
            grown = None
            if hit is None and growable:
                grown = entry.grow(_csv_content(path, raw[path]), label, freq, tz, adjust)
                if grown is not None:
                    hit = (grown[0], grown[1], True)
            if hit is not None:
                bars, adjustment, was_sorted = hit
                if symbol_value is not None:
                    label = f"{label} [{symbol_value}]"
                bars.attrs = {"symbol": symbol, "file": label, "adjustment": adjustment}
                result.bars[symbol] = bars
                result.files[symbol] = label
                result.adjustment[symbol] = adjustment
                if not was_sorted:
                    result.resorted.append(symbol)
                if grown is not None:
                    entry.write(bars, adjustment, True, grown[2])
                continue
        if path not in tables:
            tables[path] = read_table(path)
        frame = canonical_columns(tables[path], label, csv_lines)
        if symbol_value is not None:
            # rows keep their file numbering through the index of the selection
            mask = frame["symbol"].astype(str).str.strip() == symbol_value
            frame = frame[mask]
            label = f"{label} [{symbol_value}]"
        validated = _validate_with_file_rows(frame, label, freq, tz, on_bad_rows, adjust, csv_lines,
                                             repair_ticks)
        bars = validated.bars
        bars.attrs = {"symbol": symbol, "file": label, "adjustment": validated.adjustment}
        result.bars[symbol] = bars
        result.files[symbol] = label
        result.adjustment[symbol] = validated.adjustment
        if validated.dropped:
            result.dropped[symbol] = validated.dropped
        if not validated.was_sorted:
            result.resorted.append(symbol)
        if validated.repaired:
            result.repaired[symbol] = validated.repaired
            for repair in validated.repaired:
                LOG.warning("%s (--repair-ticks)", repair.describe())
        # only clean files are kept, so a repair is reported on every load
        if entry is not None and not validated.dropped and not validated.repaired:
            content = _csv_content(path, raw[path]) if growable else None
            entry.write(bars, validated.adjustment, validated.was_sorted,
                        _growth_meta(content, frame) if content is not None else {})
    return result


def _csv_content(path: Path, data: bytes) -> bytes | None:
    """A CSV file's text bytes (decompressed for .gz), or None when they cannot be read."""
    if not path.name.lower().endswith(".gz"):
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, ValueError):
        return None


def _plain_numbers(frame: pd.DataFrame) -> bool:
    """Every value column was read as numbers by the CSV parser (no text to coerce)."""
    return all(getattr(dtype, "kind", "O") in "iuf"
               for column, dtype in frame.dtypes.items() if column != "timestamp")


def _growth_meta(content: bytes, frame: pd.DataFrame) -> dict:
    """What a later call needs to extend these bars by rows appended to the file: the
    length and SHA-256 of the text they were parsed from, its columns, and whether every
    value column was plain numbers."""
    return {"content_len": len(content), "content_sha": hashlib.sha256(content).hexdigest(),
            "columns": [str(c) for c in frame.columns], "plain": _plain_numbers(frame)}


def _appended_bars(cached: pd.DataFrame, meta: dict, content: bytes, label: str, freq: str,
                   tz: str, adjust: str) -> tuple[pd.DataFrame, str, dict] | None:
    """The cached bars extended by the rows appended to their file, or None: then the file
    is parsed whole (and any bad row refused there, with the full parse's message).

    Only when the file grew by whole lines after the cached text (its first ``content_len``
    bytes hash to the cached SHA-256), the cached bars were in order and every value column
    plain numbers. The appended lines are read with the header and the file's first data
    row (which fixes the date format and time-zone rule, as for the whole file) and
    validated by :func:`validate_bars` with the same options; they are taken only if they
    are clean, in order and strictly after the cached last bar (so no row can duplicate an
    earlier one), give plain numbers, the same columns and the same adjustment (a ``split``
    column: no split among them, so no earlier row's factor changes). Each row's values
    depend on its own line only, so the result equals the full parse bit for bit. The
    bad-tick check depends on neighbouring bars: it runs on the whole grown series, and
    any bad tick leaves the decision (refusal or repair) to the full parse."""
    length, sha = meta.get("content_len"), meta.get("content_sha")
    if not (meta.get("plain") and meta.get("was_sorted") and isinstance(length, int)
            and length > 0 and len(content) > length and content[length - 1:length] == b"\n"
            and len(cached)):
        return None
    if hashlib.sha256(content[:length]).hexdigest() != sha:  # history rewritten
        return None
    header_end = content.find(b"\n") + 1
    first_end = content.find(b"\n", header_end) + 1
    if header_end == 0 or first_end == 0 or first_end > length:
        return None
    try:
        frame = canonical_columns(read_csv_bytes(content[:first_end] + content[length:]),
                                  label, True)
        if [str(c) for c in frame.columns] != meta.get("columns") or not _plain_numbers(frame):
            return None
        validated = validate_bars(frame, file_label=label, freq=freq, tz=tz,
                                  on_bad_rows="raise", adjust=adjust, csv_lines=True,
                                  check_ticks=False)
    except Exception:  # anything unusual: the full parse decides
        return None
    bars = validated.bars
    if (not validated.was_sorted or validated.adjustment != meta.get("adjustment")
            or bars.index[0] != cached.index[0]):
        return None
    new = bars.iloc[1:]
    if len(new) and new.index[0] <= cached.index[-1]:
        return None
    if validated.adjustment == "split":
        split = frame["split"].to_numpy(dtype=np.float64)[1:]
        if not np.all((split == 1.0) | (split == 0.0)):  # 0: yfinance's "no split"
            return None
    stamps = np.concatenate([cached.index.to_numpy(dtype="datetime64[ns]"),
                             new.index.to_numpy(dtype="datetime64[ns]")])
    grown = pd.DataFrame({c: np.concatenate([cached[c].to_numpy(np.float64),
                                             new[c].to_numpy(np.float64)])
                          for c in BAR_COLUMNS},
                         index=pd.DatetimeIndex(stamps, name="timestamp"))
    if find_bad_ticks(*(grown[c].to_numpy() for c in ("open", "high", "low", "close"))):
        return None
    return grown, validated.adjustment, _growth_meta(content, frame)


class _CacheEntry:
    """One file's (one symbol's) validated bars in the bars cache: ``<slot>.npz``, where the
    slot names the file, the symbol and the loader's options, and the entry holds the
    SHA-256 of the file's bytes it was parsed from. A changed file (new bars appended, a
    revised history) misses and overwrites its slot; so the cache holds one entry per file
    and symbol. A one-symbol CSV's entry also holds the length and SHA-256 of the text it
    was parsed from, so a file that only grew by appended lines is extended, not re-parsed.
    Written atomically (a temporary file, then ``os.replace``); an unreadable entry is a
    miss."""

    def __init__(self, folder: Path, path: Path, symbol_value: str | None, digest: str,
                 options: tuple) -> None:
        slot = json.dumps([str(Path(path).resolve()), symbol_value, *options])
        self.folder = folder
        self.path = folder / (hashlib.sha256(slot.encode()).hexdigest()[:32] + ".npz")
        self.key = f"{BARS_CACHE_VERSION}:{digest}"

    def _load(self) -> tuple[dict, pd.DataFrame] | None:
        try:
            with np.load(self.path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                index = pd.DatetimeIndex(data["index"].view("datetime64[ns]"), name="timestamp")
                frame = pd.DataFrame({c: data[c] for c in BAR_COLUMNS}, index=index)
        except (OSError, ValueError, KeyError):
            return None
        return meta, frame

    def read(self) -> tuple[pd.DataFrame, str, bool] | None:
        """The bars when the file is unchanged since they were cached."""
        self._loaded = self._load()
        if self._loaded is None or self._loaded[0].get("key") != self.key:
            return None
        meta, frame = self._loaded
        return frame, meta["adjustment"], meta["was_sorted"]

    def grow(self, content: bytes | None, label: str, freq: str, tz: str,
             adjust: str) -> tuple[pd.DataFrame, str, dict] | None:
        """After a :meth:`read` miss: the cached bars extended by the rows appended to the
        file since (see :func:`_appended_bars`), or None."""
        loaded = getattr(self, "_loaded", None)
        if loaded is None or content is None:
            return None
        meta, frame = loaded
        if meta.get("version") != BARS_CACHE_VERSION:
            return None
        return _appended_bars(frame, meta, content, label, freq, tz, adjust)

    def write(self, bars: pd.DataFrame, adjustment: str, was_sorted: bool,
              growth: dict | None = None) -> None:
        if list(bars.columns) != list(BAR_COLUMNS):
            return
        meta = json.dumps({"key": self.key, "version": BARS_CACHE_VERSION,
                           "adjustment": adjustment, "was_sorted": was_sorted, **(growth or {})})
        arrays = {c: bars[c].to_numpy(np.float64) for c in BAR_COLUMNS}
        arrays["index"] = bars.index.to_numpy("datetime64[ns]").view(np.int64)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            handle, tmp = tempfile.mkstemp(prefix=".bars.", suffix=".npz", dir=self.folder)
            try:
                with os.fdopen(handle, "wb") as stream:
                    np.savez(stream, meta=np.array(meta), **arrays)
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError:  # a read-only or full disk: the cache is only an optimisation
            pass


def bars_cache_dir() -> Path | None:
    """Where the live path caches validated bars: ``$FASTRL_BARS_CACHE`` (``off``: no
    cache), default ``~/.cache/fastrl/bars``."""
    value = os.environ.get("FASTRL_BARS_CACHE")
    if value is not None and value.strip().lower() in ("", "0", "off", "no", "false"):
        return None
    return Path(value).expanduser() if value else Path.home() / ".cache" / "fastrl" / "bars"


def _validate_with_file_rows(
    frame: pd.DataFrame,
    label: str,
    freq: str,
    tz: str,
    on_bad_rows: str,
    adjust: str,
    csv_lines: bool,
    repair_ticks: bool = False,
) -> ValidatedBars:
    """Validate a (possibly filtered) frame and report row numbers of the original file."""
    file_rows = frame.index.to_numpy()
    contiguous = len(file_rows) == 0 or (file_rows[0] == 0 and file_rows[-1] == len(file_rows) - 1)
    try:
        validated = validate_bars(
            frame.drop(columns=["symbol"], errors="ignore"),
            file_label=label,
            freq=freq,
            tz=tz,
            on_bad_rows=on_bad_rows,
            adjust=adjust,
            csv_lines=csv_lines,
            repair_ticks=repair_ticks,
        )
    except ValueError as error:
        issues = getattr(error, "issues", None)
        if contiguous or issues is None:
            raise
        raise DataValidationError(
            [_renumber(issue, file_rows) for issue in issues], getattr(error, "hint", "")
        ) from None
    if not contiguous:
        validated.dropped = [_renumber(issue, file_rows) for issue in validated.dropped]
        validated.repaired = [dataclasses.replace(r, row=int(file_rows[r.row - 1]) + 1)
                              for r in validated.repaired]
    return validated


def _renumber(issue: RowIssue, file_rows) -> RowIssue:
    if issue.row is None:
        return issue
    return RowIssue(
        issue.file, int(file_rows[issue.row - 1]) + 1, issue.column, issue.problem, issue.csv_lines
    )


def load_bars(
    symbols: str | Iterable[str],
    freq: str = "1d",
    source: str | Path = "bundled",
    on_bad_rows: str = "raise",
    *,
    adjust: str = "auto",
    tz: str = "Asia/Kolkata",
    repair_ticks: bool = False,
) -> dict[str, pd.DataFrame]:
    """Load validated, split-adjusted bars for each symbol.

    Args:
        symbols: one symbol, a comma-separated string, or a list (case-insensitive).
        freq: "1d" (daily) or "5min".
        source: "bundled" (shipped with fastrl), "yfinance" (download into the local cache,
            needs the ``download`` extra), or a folder/file path of CSV or Parquet files.
        on_bad_rows: "raise" (default) refuses bad rows with an error naming file, row and
            column; "drop" drops them (use :func:`load_bars_report` to see which).
        adjust: "auto" (adj_close if present, else split factors, else none), or force one.
        tz: exchange time zone; time-zone-aware timestamps are converted to it, then stored
            as naive local time.
        repair_ticks: False (default) refuses isolated bad ticks (an open, high or low far
            outside the closes around it, see :mod:`fastrl.data.ticks`) naming file, row,
            column and value; True clips them into that range (use
            :func:`load_bars_report` to see every change).

    Returns:
        symbol -> DataFrame with a sorted unique DatetimeIndex and float64 columns open,
        high, low, close (adjusted) and volume (NaN when the source has none).
    """
    return load_bars_report(symbols, freq, source, on_bad_rows, adjust=adjust, tz=tz,
                            repair_ticks=repair_ticks).bars
