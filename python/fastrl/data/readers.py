"""Reading one bar file (CSV or Parquet) into a frame with canonical column names.

User files come in many spellings: ``Date``/``timestamp``/``datetime``, ``Adj Close``,
``;`` or ``,`` separators, a UTF-8 byte-order mark, day-first or ISO dates, time-zone
offsets. This module maps all of them onto one layout and parses timestamps; it does not
judge the values (that is :mod:`fastrl.data.validate`).
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import numpy as np
import pandas as pd

from fastrl.data.errors import DataValidationError, RowIssue

# canonical name -> accepted spellings after lower-casing and turning spaces/dashes/dots into "_"
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "timestamp": ("timestamp", "date", "datetime", "date_time", "time_stamp", "dt"),
    "open": ("open", "open_price"),
    "high": ("high", "high_price"),
    "low": ("low", "low_price"),
    "close": ("close", "close_price", "last"),
    "adj_close": ("adj_close", "adjclose", "adjusted_close", "adj_close_price"),
    "volume": ("volume", "vol", "shares", "shares_traded", "qty"),
    "split": ("split", "split_coefficient", "split_factor", "stock_splits"),
    "symbol": ("symbol", "ticker"),
}
REQUIRED_COLUMNS = ("timestamp", "open", "high", "low", "close")
PRICE_COLUMNS = ("open", "high", "low", "close")
CSV_SUFFIXES = (".csv", ".csv.gz", ".txt", ".txt.gz")
PARQUET_SUFFIXES = (".parquet", ".pq")

_ISO_START = re.compile(r"^\d{4}-\d{1,2}-\d{1,2}")
_DAY_FIRST = re.compile(r"^(\d{1,2})([-/.])(\d{1,2})\2(\d{4})(?:[ T](\d{1,2}:\d{2}(?::\d{2})?))?$")
_TZ_SUFFIX = re.compile(r"(?:Z|[+-]\d{2}:?\d{2})$")


def bar_file_suffix(path: Path) -> str | None:
    """The recognised suffix of a bar file (".csv.gz", ".parquet", ...) or None."""
    name = path.name.lower()
    for suffix in CSV_SUFFIXES + PARQUET_SUFFIXES:
        if name.endswith(suffix):
            return suffix
    return None


def symbol_of(path: Path) -> str:
    """The symbol a file holds by default: its name without the bar-file suffix."""
    suffix = bar_file_suffix(path) or path.suffix
    return path.name[: len(path.name) - len(suffix)]


def _normalise_name(name: object) -> str:
    text = str(name).replace("\ufeff", "").strip().lower()
    return re.sub(r"[\s\-.]+", "_", text)


def _sniff_separator(path: Path) -> str:
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8-sig", errors="replace") as handle:
        header = handle.readline()
    counts = {sep: header.count(sep) for sep in (",", ";", "\t", "|")}
    best = max(counts, key=counts.__getitem__)
    return best if counts[best] > 0 else ","


def read_table(path: Path) -> pd.DataFrame:
    """Read a CSV (any of , ; tab |, optional BOM, optional gzip) or Parquet file as is.

    Errors from the parsers (an empty file, bytes that are not UTF-8, a broken gzip or
    Parquet file) come back as a ValueError that names the file."""
    try:
        return _read_table(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, EOFError,
            gzip.BadGzipFile) as exc:
        raise ValueError(f"{path}: cannot read this file as bars: {exc}") from exc


def _read_table(path: Path) -> pd.DataFrame:
    suffix = bar_file_suffix(path)
    if suffix in PARQUET_SUFFIXES:
        frame = pd.read_parquet(path)
        if not isinstance(frame.index, pd.RangeIndex):
            frame = frame.reset_index()  # a timestamp index written by pandas becomes a column
        return frame
    sep = _sniff_separator(path)
    frame = pd.read_csv(path, sep=sep, encoding="utf-8-sig", skipinitialspace=True)
    if sep == ";" and _has_decimal_commas(frame):
        frame = pd.read_csv(path, sep=sep, encoding="utf-8-sig", decimal=",", skipinitialspace=True)
    return frame


def read_csv_bytes(data: bytes) -> pd.DataFrame:
    """A CSV file's (decompressed) bytes read as :func:`read_table` reads the file: the
    separator sniffed from the first line, the same options, the decimal-comma re-read."""
    import io

    header = data.split(b"\n", 1)[0].decode("utf-8-sig", errors="replace")
    counts = {sep: header.count(sep) for sep in (",", ";", "\t", "|")}
    best = max(counts, key=counts.__getitem__)
    sep = best if counts[best] > 0 else ","
    frame = pd.read_csv(io.BytesIO(data), sep=sep, encoding="utf-8-sig", skipinitialspace=True)
    if sep == ";" and _has_decimal_commas(frame):
        frame = pd.read_csv(io.BytesIO(data), sep=sep, encoding="utf-8-sig", decimal=",",
                            skipinitialspace=True)
    return frame


def _has_decimal_commas(frame: pd.DataFrame) -> bool:
    """True when ';'-separated prices are written with a decimal comma (1234,5)."""
    for column in frame.columns:
        if _normalise_name(column) in ("open", "close"):
            values = frame[column]
            if not pd.api.types.is_numeric_dtype(values):
                sample = values.dropna().astype(str).head(20)
                return bool(len(sample)) and sample.str.fullmatch(r"-?\d+,\d*").all()
    return False


def canonical_columns(frame: pd.DataFrame, file_label: str, csv_lines: bool) -> pd.DataFrame:
    """Rename known spellings to canonical names; drop everything else.

    A separate ``date`` + ``time`` pair is joined into ``timestamp``. Raises when a
    required column is missing or two columns map onto the same canonical name.
    """
    lookup = {
        alias: canonical for canonical, aliases in COLUMN_ALIASES.items() for alias in aliases
    }
    normalised = {column: _normalise_name(column) for column in frame.columns}
    names = set(normalised.values())
    if "timestamp" not in names and "datetime" not in names and {"date", "time"} <= names:
        date_col = next(c for c, n in normalised.items() if n == "date")
        time_col = next(c for c, n in normalised.items() if n == "time")
        frame = frame.assign(
            __timestamp=frame[date_col].astype(str).str.strip()
            + " "
            + frame[time_col].astype(str).str.strip()
        )
        normalised = {c: n for c, n in normalised.items() if c not in (date_col, time_col)}
        normalised["__timestamp"] = "timestamp"
    renamed: dict[object, str] = {}
    for column, name in normalised.items():
        canonical = lookup.get(name)
        if canonical is None and name == "time":
            canonical = "timestamp"
        if canonical is None:
            continue
        if canonical in renamed.values():
            other = next(c for c, n in renamed.items() if n == canonical)
            raise DataValidationError(
                [
                    RowIssue(
                        file_label,
                        None,
                        str(column),
                        f"both {other!r} and {column!r} look like the {canonical!r} column; "
                        "keep only one",
                        csv_lines,
                    )
                ]
            )
        renamed[column] = canonical
    missing = [name for name in REQUIRED_COLUMNS if name not in renamed.values()]
    if missing:
        found = ", ".join(repr(str(c)) for c in frame.columns)
        raise DataValidationError(
            [
                RowIssue(
                    file_label,
                    None,
                    name,
                    f"missing required column {name!r} (accepted spellings: "
                    f"{', '.join(COLUMN_ALIASES[name])}); the file has columns {found}",
                    csv_lines,
                )
                for name in missing
            ]
        )
    out = frame[list(renamed)].rename(columns=renamed)
    return out.reset_index(drop=True)


def _day_first_format(sample: str) -> str | None:
    match = _DAY_FIRST.match(sample)
    if match is None:
        return None
    sep = match.group(2)
    fmt = f"%d{sep}%m{sep}%Y"
    clock = match.group(5)
    if clock:
        fmt += " %H:%M:%S" if clock.count(":") == 2 else " %H:%M"
    return fmt


def parse_timestamps(
    values: pd.Series, tz: str, file_label: str, column: str, csv_lines: bool
) -> tuple[np.ndarray, list[RowIssue]]:
    """Parse a timestamp column to naive exchange-local ``datetime64[ns]``.

    Accepts ISO 8601 (with or without a time-zone offset) and day-first dates
    (dd-mm-yyyy, dd/mm/yyyy, dd.mm.yyyy, optionally with a time). Time-zone-aware values
    are converted to ``tz`` and the zone dropped, so every timestamp is exchange-local
    wall-clock time. Rows that do not parse become NaT and are returned as issues.
    """

    def issue(row: int, problem: str) -> RowIssue:
        return RowIssue(file_label, row + 1, column, problem, csv_lines)

    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = pd.Series(values).reset_index(drop=True)
        problem = "missing timestamp"
    else:
        text = values.astype("string").str.strip().reset_index(drop=True)
        present = (text.notna() & (text != "")).to_numpy()
        rows_present = np.flatnonzero(present)
        first = str(text.iloc[rows_present[0]]) if rows_present.size else ""
        fmt = _day_first_format(first)
        if fmt is None and first and not _ISO_START.match(first):
            raise DataValidationError(
                [
                    issue(
                        int(rows_present[0]),
                        f"unrecognised date format {first!r}; use ISO (2024-06-28 or "
                        "2024-06-28 09:15:00+05:30) or day-first (28-06-2024)",
                    )
                ]
            )
        if fmt is None:
            fmt = "ISO8601"
            zoned = text.str.contains(_TZ_SUFFIX.pattern, regex=True).fillna(False).to_numpy()
            differs = rows_present[zoned[rows_present] != zoned[rows_present[0]]]
            if differs.size:
                row = int(differs[0])
                raise DataValidationError(
                    [
                        issue(
                            row,
                            "timestamps mix time-zone-aware and naive values "
                            f"(first value {first!r}, this one {text.iloc[row]!r})",
                        )
                    ]
                )
        try:
            parsed = pd.to_datetime(text, format=fmt, errors="coerce")
        except ValueError:  # several UTC offsets in one column: compare them in UTC
            parsed = pd.to_datetime(text, format=fmt, errors="coerce", utc=True)
        problem = "unparseable timestamp"
    bad = np.flatnonzero(parsed.isna().to_numpy())
    issues = [issue(int(i), f"{problem} {values.iloc[i]!r}") for i in bad]
    return _to_local_naive(parsed, tz).to_numpy(dtype="datetime64[ns]"), issues


def _to_local_naive(parsed: pd.Series, tz: str) -> pd.Series:
    if isinstance(parsed.dtype, pd.DatetimeTZDtype):
        parsed = parsed.dt.tz_convert(tz).dt.tz_localize(None)
    return parsed.astype("datetime64[ns]")
