"""Validation, explicit repairs and split/bonus adjustment of one symbol's bars.

Every check names file, row and column. Nothing is repaired unless the caller asks with
``on_bad_rows="drop"``, and then the dropped rows are returned so they can be reported;
no value is ever filled or back-filled. Isolated bad ticks (:mod:`fastrl.data.ticks`) are
refused unless the caller asks with ``repair_ticks=True``; then each bad price is clipped
into the range of the closes around it and every change is returned.

Adjustment (documented choice): when the file has ``adj_close`` (the provider's close
back-adjusted for splits, bonus issues and dividends), open/high/low/close are all scaled by
``adj_close / close`` of their row and volume by its inverse, so bonus issues, splits and
ex-dividend drops do not look like crashes and the last bar keeps its traded price. The
provider's ``adj_close`` is preferred over the ``split`` column because it also covers
corporate actions the ``split`` column misses or misdates (TATAMOTORS 2011, TATASTEEL
2022, JSWSTEEL 2005 in the bundled daily set). Without ``adj_close`` a ``split`` column
is applied (prices before a split of factor k divided by k, volume multiplied by k);
without either, prices are used as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from fastrl.data.errors import DataValidationError, RowIssue
from fastrl.data.readers import PRICE_COLUMNS, parse_timestamps
from fastrl.data.ticks import TickRepair, check_ticks

ON_BAD_ROWS = ("raise", "drop")
ADJUST_MODES = ("auto", "adj_close", "split", "none")
FREQS = ("1d", "5min")
BAR_COLUMNS = ("open", "high", "low", "close", "volume")
_REL_TOL = 1e-9  # OHLC consistency tolerance, for prices written by float arithmetic


@dataclass
class ValidatedBars:
    """One symbol's clean bars plus what was done to get them."""

    bars: pd.DataFrame
    dropped: list[RowIssue] = field(default_factory=list)  # issues whose rows were dropped
    adjustment: str = "none"  # "adj_close" | "split" | "none"
    was_sorted: bool = True  # False: rows were not in ascending time order in the file
    repaired: list[TickRepair] = field(default_factory=list)  # bad ticks clipped on request


def check_choice(name: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")
    return value


def _numeric(
    frame: pd.DataFrame, column: str, file_label: str, csv_lines: bool, issues: list[RowIssue]
) -> np.ndarray:
    raw = frame[column]
    if pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_bool_dtype(raw):
        return raw.to_numpy(dtype=np.float64, na_value=np.nan)
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    text = raw.astype("string").str.strip()
    not_number = np.isnan(values) & (text.notna() & (text != "")).to_numpy()
    issues.extend(
        RowIssue(file_label, int(i) + 1, column, f"not a number: {raw.iloc[i]!r}", csv_lines)
        for i in np.flatnonzero(not_number)
    )
    return values


def _flag(
    mask: np.ndarray,
    column: str,
    describe,
    file_label: str,
    csv_lines: bool,
    issues: list[RowIssue],
) -> None:
    issues.extend(
        RowIssue(file_label, int(i) + 1, column, describe(int(i)), csv_lines)
        for i in np.flatnonzero(mask)
    )


def validate_bars(
    frame: pd.DataFrame,
    *,
    file_label: str,
    freq: str = "1d",
    tz: str = "Asia/Kolkata",
    on_bad_rows: str = "raise",
    adjust: str = "auto",
    csv_lines: bool = True,
    extra_columns: tuple[str, ...] = (),
    repair_ticks: bool = False,
    check_ticks: bool = True,
) -> ValidatedBars:
    """Check one symbol's canonical frame (see :func:`readers.canonical_columns`).

    Returns float64 columns open, high, low, close (adjusted), volume (NaN when the file
    has none) and any ``extra_columns`` on a sorted, unique DatetimeIndex named
    ``timestamp`` (naive exchange-local time; daily bars at midnight).

    Bad ticks (:func:`fastrl.data.ticks.find_bad_ticks`, on the adjusted prices in time
    order, after any dropped rows are gone) are refused, or with ``repair_ticks`` clipped
    and listed in ``repaired``. ``check_ticks=False`` skips that check, for a caller that
    runs it on more bars than this frame holds.
    """
    check_choice("freq", freq, FREQS)
    check_choice("on_bad_rows", on_bad_rows, ON_BAD_ROWS)
    check_choice("adjust", adjust, ADJUST_MODES)
    if len(frame) == 0:
        raise DataValidationError([RowIssue(file_label, None, None, "no data rows", csv_lines)])
    frame = frame.reset_index(drop=True)
    issues: list[RowIssue] = []

    def flag(mask: np.ndarray, column: str, describe) -> None:
        _flag(mask, column, describe, file_label, csv_lines, issues)

    stamps, stamp_issues = parse_timestamps(
        frame["timestamp"], tz, file_label, "timestamp", csv_lines
    )
    issues.extend(stamp_issues)
    if freq == "1d":
        stamps = stamps.astype("datetime64[D]").astype("datetime64[ns]")
    elif len(stamps) > 1 and np.all(
        stamps[~np.isnat(stamps)].astype("datetime64[D]") == stamps[~np.isnat(stamps)]
    ):
        raise DataValidationError(
            [
                RowIssue(
                    file_label,
                    None,
                    "timestamp",
                    "freq='5min' but every timestamp is a bare date: these look like daily "
                    "bars (use freq='1d')",
                    csv_lines,
                )
            ]
        )

    values: dict[str, np.ndarray] = {}
    for column in PRICE_COLUMNS:
        price = _numeric(frame, column, file_label, csv_lines, issues)
        values[column] = price
        flag(np.isnan(price) & ~_already_flagged(frame[column]), column, lambda i: "missing price")
        flag(np.isinf(price), column, lambda i, p=price: f"infinite price {p[i]}")
        flag(price <= 0, column, lambda i, p=price: f"non-positive price {p[i]}")
    o, h, lo, c = (values[k] for k in PRICE_COLUMNS)
    tol_h = h * (1 + _REL_TOL)
    tol_lo = lo * (1 - _REL_TOL)
    # range checks only where all four prices are valid (bad prices are reported above)
    valid = np.isfinite(o) & np.isfinite(h) & np.isfinite(lo) & np.isfinite(c)
    valid &= (o > 0) & (h > 0) & (lo > 0) & (c > 0)
    flag(valid & (h < lo), "high", lambda i: f"high {h[i]} is below low {lo[i]}")
    consistent = valid & (h >= lo)
    flag(
        consistent & ((o > tol_h) | (o < tol_lo)),
        "open",
        lambda i: f"open {o[i]} outside [low {lo[i]}, high {h[i]}]",
    )
    flag(
        consistent & ((c > tol_h) | (c < tol_lo)),
        "close",
        lambda i: f"close {c[i]} outside [low {lo[i]}, high {h[i]}]",
    )

    if "volume" in frame.columns:
        volume = _numeric(frame, "volume", file_label, csv_lines, issues)
        if np.isnan(volume).all():
            volume = None  # a volume column with no values: treat as absent
        else:
            flag(
                np.isnan(volume) & ~_already_flagged(frame["volume"]),
                "volume",
                lambda i: "missing volume",
            )
            flag(np.isinf(volume), "volume", lambda i, v=volume: f"infinite volume {v[i]}")
            flag(volume < 0, "volume", lambda i, v=volume: f"negative volume {v[i]}")
    else:
        volume = None
    if "adj_close" in frame.columns:
        adj = _numeric(frame, "adj_close", file_label, csv_lines, issues)
        flag(
            ~np.isfinite(adj) & ~_already_flagged(frame["adj_close"]),
            "adj_close",
            lambda i, a=adj: f"invalid adjusted close {a[i]}",
        )
        flag(adj <= 0, "adj_close", lambda i, a=adj: f"non-positive adjusted close {a[i]}")
        values["adj_close"] = adj
    if "split" in frame.columns:
        split = _numeric(frame, "split", file_label, csv_lines, issues)
        split = np.where(split == 0, 1.0, split)  # yfinance writes 0 for "no split"
        flag(
            ~np.isfinite(split) & ~_already_flagged(frame["split"]),
            "split",
            lambda i, s=split: f"invalid split factor {s[i]}",
        )
        flag(split < 0, "split", lambda i, s=split: f"negative split factor {s[i]}")
        values["split"] = split
    for column in extra_columns:
        if column not in frame.columns:
            raise DataValidationError(
                [RowIssue(file_label, None, column, "missing extra feature column", csv_lines)]
            )
        extra = _numeric(frame, column, file_label, csv_lines, issues)
        flag(~np.isfinite(extra), column, lambda i, x=extra: f"invalid value {x[i]}")
        values[column] = extra
    if volume is not None:
        values["volume"] = volume

    # duplicates: exact copies of a row (the later copies) and conflicting rows sharing a time
    table = pd.DataFrame(values)
    table.insert(0, "timestamp", stamps)
    exact_later = table.duplicated(keep="first").to_numpy()
    if exact_later.any():
        group = table.groupby(list(table.columns), sort=False, dropna=False).ngroup().to_numpy()
        _, first_index = np.unique(group, return_index=True)
        flag(
            exact_later,
            "timestamp",
            lambda i: f"exact duplicate of row {first_index[group[i]] + 1}",
        )
    candidates = np.flatnonzero(~np.isnat(stamps) & ~exact_later)
    conflicting = np.zeros(len(table), dtype=bool)
    conflicting[candidates[pd.Series(stamps[candidates]).duplicated(keep=False).to_numpy()]] = True
    if conflicting.any():
        when = "date" if freq == "1d" else "timestamp"
        hint = " (several bars on one date: intraday data? use freq='5min')" if freq == "1d" else ""
        flag(
            conflicting,
            "timestamp",
            lambda i: f"duplicate {when} {pd.Timestamp(stamps[i])} with different values{hint}",
        )

    dropped: list[RowIssue] = []
    if issues:
        if on_bad_rows == "raise":
            raise DataValidationError(
                sorted(issues, key=_issue_order),
                "Nothing was changed. Pass on_bad_rows='drop' to drop the rows at fault "
                "(they are then listed in the summary); no value is ever filled in.",
            )
        bad_rows = {issue.row for issue in issues if issue.row is not None}
        dropped = sorted(issues, key=_issue_order)
        keep = np.ones(len(table), dtype=bool)
        keep[[r - 1 for r in bad_rows]] = False
        table = table[keep]
        if len(table) == 0:
            raise DataValidationError(
                [
                    RowIssue(
                        file_label,
                        None,
                        None,
                        "no valid rows left after dropping bad rows",
                        csv_lines,
                    )
                ]
            )

    stamps_kept = table["timestamp"].to_numpy()
    was_sorted = bool(np.all(stamps_kept[1:] > stamps_kept[:-1]))
    if not was_sorted:
        table = table.sort_values("timestamp", kind="stable")
    adjustment, factor = _adjust_factor(table, adjust, file_label, csv_lines)
    repaired = (_bad_ticks(table, factor, file_label, csv_lines, repair_ticks)
                if check_ticks else [])
    _apply_factor(table, factor)
    bars = pd.DataFrame(
        {
            "open": table["open"].to_numpy(),
            "high": table["high"].to_numpy(),
            "low": table["low"].to_numpy(),
            "close": table["close"].to_numpy(),
            "volume": table["volume"].to_numpy()
            if "volume" in table
            else np.full(len(table), np.nan),
            **{column: table[column].to_numpy() for column in extra_columns},
        },
        index=pd.DatetimeIndex(table["timestamp"].to_numpy(), name="timestamp"),
    )
    return ValidatedBars(bars=bars, dropped=dropped, adjustment=adjustment, was_sorted=was_sorted,
                         repaired=repaired)


def _already_flagged(raw: pd.Series) -> np.ndarray:
    """Rows whose text was present but not a number (already reported as such)."""
    if pd.api.types.is_numeric_dtype(raw):
        return np.zeros(len(raw), dtype=bool)
    text = raw.astype("string").str.strip()
    return (text.notna() & (text != "")).to_numpy() & pd.to_numeric(
        raw, errors="coerce"
    ).isna().to_numpy()


def _issue_order(issue: RowIssue) -> tuple[int, str]:
    return (issue.row if issue.row is not None else 0, issue.column or "")


def _bad_ticks(table: pd.DataFrame, factor: np.ndarray | None, file_label: str,
               csv_lines: bool, repair: bool) -> list[TickRepair]:
    """Refuse the bad ticks of the (sorted, clean, unadjusted) ``table``, judged on the
    adjusted prices; with ``repair``, clip them in ``table`` (file units) and list every
    price changed."""
    scale = np.ones(len(table)) if factor is None else factor
    adjusted = {c: table[c].to_numpy() * scale for c in PRICE_COLUMNS}
    check = check_ticks(adjusted["open"], adjusted["high"], adjusted["low"], adjusted["close"])
    if not check.bad:
        return []
    rows = table.index.to_numpy()  # positions in the file (the frame was reset to 0..n-1)
    stamps = table["timestamp"].to_numpy()

    def when(i: int) -> str:
        stamp = pd.Timestamp(stamps[i])
        return str(stamp.date()) if stamp == stamp.normalize() else str(stamp)

    if not repair:
        issues = []
        for t in check.bad:
            around, moved = (("neighbouring closes", "the next close reverses it")
                             if t.column == "close" else
                             ("previous and own close", "the close is in line"))
            issues.append(RowIssue(
                file_label, int(rows[t.index]) + 1, t.column,
                f"bad tick on {when(t.index)}: {t.column} "
                f"{float(table[t.column].iat[t.index])!r} is {t.ratio:.2f}x "
                f"{'above' if t.value > t.range_high else 'below'} the closes around it "
                f"[{t.range_low / scale[t.index]:.6g}, {t.range_high / scale[t.index]:.6g}]"
                f" ({around}; limit {t.limit:.2f}x) and {moved}", csv_lines))
        raise DataValidationError(
            issues,
            "Nothing was changed. If these prices are feed errors, fix the file, or pass "
            "--repair-ticks to fastrl-train, -walkforward, -tune (config "
            "data.repair_ticks=true; repair_ticks=True in Python) to clip each into the range "
            "of the closes around it and list every change (live bars are never repaired).",
        )
    repaired = []
    changed = {c: check.repaired[c] != adjusted[c] for c in PRICE_COLUMNS}
    for i in np.flatnonzero(np.logical_or.reduce(list(changed.values()))):
        for column in PRICE_COLUMNS:
            if not changed[column][i]:
                continue
            position = table.columns.get_loc(column)
            old = float(table.iat[i, position])
            new = float(check.repaired[column][i] / scale[i])
            table.iat[i, position] = new
            repaired.append(TickRepair(file_label, int(rows[i]) + 1, column, when(i), old, new,
                                       csv_lines))
    return repaired


def _adjust_factor(table: pd.DataFrame, adjust: str, file_label: str,
                   csv_lines: bool) -> tuple[str, np.ndarray | None]:
    """The adjustment method and its per-row price factor (None: prices as they are)."""
    if adjust == "auto":
        adjust = "adj_close" if "adj_close" in table else "split" if "split" in table else "none"
    if adjust in ("adj_close", "split") and adjust not in table:
        raise DataValidationError(
            [
                RowIssue(
                    file_label,
                    None,
                    adjust,
                    f"adjust={adjust!r} but the file has no such column",
                    csv_lines,
                )
            ]
        )
    if adjust == "none":
        return adjust, None
    if adjust == "adj_close":
        factor = table["adj_close"].to_numpy() / table["close"].to_numpy()
    else:
        split = table["split"].to_numpy()
        product_from_here = np.cumprod(split[::-1])[::-1]  # prod of factors at rows >= t
        factor = 1.0 / np.append(product_from_here[1:], 1.0)  # splits strictly after row t
    return adjust, factor


def _apply_factor(table: pd.DataFrame, factor: np.ndarray | None) -> None:
    """Scale prices (in place) by ``factor`` and volume by its inverse."""
    if factor is None:
        return
    for column in PRICE_COLUMNS:
        table[column] = table[column].to_numpy() * factor
    if "volume" in table:
        table["volume"] = table["volume"].to_numpy() / factor
