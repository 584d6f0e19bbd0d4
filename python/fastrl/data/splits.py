"""Time splits and the market blocks the simulator reads: bars -> features -> train/val/test.

Split rule: the symbols share one calendar, the union of their trading days (calendar dates
on which any symbol has a feature row; for 5-minute bars a day is one calendar trading day),
the calendar of :mod:`fastrl.data.panel` and the walk-forward plan. Its last ``test_days``
days are the test set, the ``val_days`` before them the validation set, everything earlier
the training set, for every symbol: a split starts on the same date for all, so no symbol's
validation (which picks ``best.pt``) covers another's test days. The union, not the
intersection: the test window is the market's last days, so a symbol whose data end early
has fewer test days and moves no other symbol's window. Days, not rows, are split, so no
session is cut in two.

Missing-bar rule: a symbol with no bar on a val/test split's first date (a halt, or a
day only other symbols traded) starts that split with its last bar before the date, the
bar it decides on at that date's close, so the move to its next close is in the split's
record as it is for every other symbol; that bar's own return is the previous split's.

Context rule: a val/test segment starts with the ``window - 1`` feature rows just before
the split (``meta["context_rows"]``). They only fill the first observation window: the
simulator's first decision in a segment is at row ``window - 1``, which is the first row
of the split itself, and its order fills inside the split. So the first test decision
sees a full window, and no row that is traded or evaluated belongs to two splits.
Training segments have no context rows.

Every segment (context included) must hold at least ``window + 1`` rows: one full window
plus one bar to step into; otherwise a ValueError names the symbol and split.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

import numpy as np
import pandas as pd

from fastrl.data.block import MarketBlock
from fastrl.data.loaders import LoadResult, load_bars_report
from fastrl.features import FeatureNormaliser, compute_features_many
from fastrl.features_long import DEFAULT_FEATURE_SETS, warmup_features

SPLITS = ("train", "val", "test")
MAX_LISTED_REPAIRS = 50


BlockT = TypeVar("BlockT")


@dataclass
class Splits(Generic[BlockT]):
    """The train/val/test blocks of one market, the feature normaliser fitted on train rows
    and a summary (:class:`MarketSplits` for one symbol per segment, ``PanelSplits`` for
    an aligned panel)."""

    train: BlockT
    val: BlockT | None
    test: BlockT
    normaliser: FeatureNormaliser
    feature_names: tuple[str, ...]
    summary: dict

    def block(self, split: str) -> BlockT:
        """The block of ``split`` ("train", "val" or "test"); raises if it is absent."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        block = getattr(self, split)
        if block is None:
            raise ValueError(f"this market has no {split!r} split (val_days=0)")
        return block


@dataclass
class MarketSplits(Splits[MarketBlock]):
    """The three read-only blocks of one market, their normaliser and a summary."""


def split_bars(index: pd.DatetimeIndex, test_days: int, val_days: int = 0, *,
               test_start: pd.Timestamp | None = None) -> tuple[int, int]:
    """Row positions ``(train_end, val_end)``: train ``[:train_end]``, val
    ``[train_end:val_end]``, test ``[val_end:]``, cut at calendar-day boundaries.

    ``test_start`` (a date) puts the test split on the days from that date on instead of
    the last ``test_days`` (walk-forward windows end their data there); ``test_days`` is
    then ignored and the test split may be empty (``val_end == len(index)``)."""
    if getattr(index, "tz", None) is not None:
        days = index.normalize()
        unique_days, day_values = days.unique(), days.to_numpy()
    else:
        day_values = day_stamps(index)
        unique_days = pd.DatetimeIndex(pd.unique(day_values))
    if test_start is not None:
        _check_days(1, val_days)
        n_test = int(np.sum(unique_days >= pd.Timestamp(test_start).normalize()))
    else:
        _check_days(test_days, val_days)
        n_test = test_days
    if len(unique_days) <= n_test + val_days:
        raise ValueError(
            f"{len(unique_days)} trading days cannot hold test_days={n_test} + "
            f"val_days={val_days} and a non-empty training split"
        )
    if n_test == 0:
        if val_days == 0:
            return len(index), len(index)
        val_start = unique_days[len(unique_days) - val_days]
        return int(np.searchsorted(day_values, val_start.to_datetime64(), side="left")), len(index)
    test_start = unique_days[len(unique_days) - n_test]
    val_start = unique_days[len(unique_days) - n_test - val_days]
    val_end = int(np.searchsorted(day_values, test_start.to_datetime64(), side="left"))
    train_end = int(np.searchsorted(day_values, val_start.to_datetime64(), side="left"))
    return train_end, val_end


def common_split_days(indexes: Iterable[pd.DatetimeIndex], test_days: int,
                      val_days: int = 0, *, test_start: pd.Timestamp | None = None
                      ) -> tuple[pd.Timestamp, pd.Timestamp]:
    """``(val_start, test_start)``: the first days of the validation and test splits on the
    union of ``indexes``' trading days (``val_start == test_start`` without validation).

    With ``test_start`` the test split starts on that date (``test_days`` ignored; a date
    past every bar leaves no test split) and validation is the ``val_days`` union days
    before it."""
    days = pd.DatetimeIndex(np.unique(np.concatenate([_day_values(i) for i in indexes])))
    try:
        train_end, val_end = split_bars(days, test_days, val_days, test_start=test_start)
    except ValueError as error:
        raise ValueError(f"the symbols' common calendar: {error}") from None
    test_day = days[val_end] if val_end < len(days) else pd.Timestamp(test_start).normalize()
    return (days[train_end] if train_end < val_end else test_day), test_day


def _day_values(index: pd.DatetimeIndex) -> np.ndarray:
    """The date of each bar as naive datetime64[ns] midnights (the local date if tz-aware)."""
    if getattr(index, "tz", None) is not None:
        return index.tz_localize(None).normalize().to_numpy(dtype="datetime64[ns]")
    return day_stamps(index)


def day_stamps(index: pd.DatetimeIndex) -> np.ndarray:
    """``index.normalize()`` as datetime64[ns] values (midnight of each bar's date), without
    pandas inferring the result's frequency (the slow part). Naive timestamps only."""
    values = np.asarray(index, dtype="datetime64[ns]")
    return values.astype("datetime64[D]").astype("datetime64[ns]")


def _check_days(test_days: int, val_days: int) -> None:
    if not isinstance(test_days, (int, np.integer)) or test_days < 1:
        raise ValueError(f"test_days must be a positive integer, got {test_days!r}")
    if not isinstance(val_days, (int, np.integer)) or val_days < 0:
        raise ValueError(f"val_days must be a non-negative integer, got {val_days!r}")


def _iso(stamp) -> str:
    return pd.Timestamp(stamp).isoformat()


def build_market_from_bars(
    bars: dict[str, pd.DataFrame],
    freq: str = "1d",
    *,
    test_days: int = 30,
    val_days: int = 0,
    window: int = 32,
    normaliser_state: dict | None = None,
    extra_columns: Sequence[str] = (),
    source: str = "memory",
    load_result: LoadResult | None = None,
    meta: dict | None = None,
    test_start: pd.Timestamp | str | None = None,
    feature_sets: Sequence[str] = DEFAULT_FEATURE_SETS,
    train_start: pd.Timestamp | str | None = None,
) -> MarketSplits:
    """Featurise, split and pack already validated bars (see :func:`build_market`).

    ``train_start`` (a date): the train split starts at each symbol's first feature row
    on or after it; the bars before only warm the features up (a walk-forward window's
    ``--train-window``, whose long feature sets need more history than the base set drops).

    ``feature_sets``: the feature sets (``data.features``, :mod:`fastrl.features_long`);
    the market sets' universe is every symbol in ``bars``.

    ``test_start`` (a date): the test split is every bar from that date on, per symbol,
    instead of the last ``test_days`` days of the common calendar; with no bar from that date
    on there is no test split (``test`` is None: a walk-forward window's training market).
    Validation is the ``val_days`` days of the symbols' common calendar before the test
    split, the same dates for every symbol."""
    if test_start is None:
        _check_days(test_days, val_days)
    else:
        test_start = pd.Timestamp(test_start)
        _check_days(1, val_days)
    if not isinstance(window, (int, np.integer)) or window < 1:
        raise ValueError(f"window must be a positive integer, got {window!r}")
    if not bars:
        raise ValueError("build_market: no symbols")
    with_volume = all(
        "volume" in frame and bool(frame["volume"].notna().all()) for frame in bars.values()
    )
    context_rows = window - 1
    per_symbol = {}
    computed = compute_features_many(bars, freq, with_volume=with_volume,
                                     extra_columns=extra_columns, feature_sets=feature_sets)
    for symbol, features in computed.items():
        if isinstance(features, ValueError):
            raise ValueError(f"symbol {symbol}: {features}") from None
    # one calendar for every symbol: the union of their days
    common = common_split_days((features.index for features in computed.values()),
                               test_days, val_days, test_start=test_start)
    for symbol, frame in bars.items():
        features = computed[symbol]
        days = _day_values(features.index)
        train_end, val_end = (int(np.searchsorted(days, d.to_datetime64(), side="left"))
                              for d in common)
        if val_end == len(features) and test_start is None:
            raise ValueError(
                f"symbol {symbol}: no bars in the test split (the last {test_days} days of "
                f"the symbols' common calendar, from {common[1].date()}); its bars end "
                f"on {features.index[-1].date()}")
        if train_end == 0 and val_days > 0:
            raise ValueError(
                f"symbol {symbol}: no bars to train on: its features start on "
                f"{features.index[0].date()}, after the validation split's first day "
                f"{common[0].date()} (the symbols' common calendar); every symbol needs "
                "history before it, so drop the symbol or lower val_days")
        # a symbol with no bar on a split's first date makes its first decision of the
        # split at its last bar before it (what it has at that date's close), so the move
        # to its next close is in the split; that bar's own return stays in the split
        # before, where it is the last row
        back = [int(0 < end and (end == len(days) or days[end] != day.to_datetime64()))
                for end, day in zip((train_end, val_end), common, strict=True)]
        if test_start is not None:  # as documented: the bars from that date on
            back[1] = 0
        aligned = frame.iloc[len(frame) - len(features):]  # the rows features has
        train_first = 0 if train_start is None else min(train_end, int(np.searchsorted(
            days, pd.Timestamp(train_start).to_datetime64(), side="left")))
        bounds = {"train": (train_first, train_end), "val": (train_end - back[0], val_end),
                  "test": (val_end - back[1], None)}
        if val_days == 0:
            del bounds["val"]
        if val_end == len(features):
            del bounds["test"]
        for split, (start, stop) in bounds.items():
            stop = len(features) if stop is None else stop
            context = 0 if split == "train" else context_rows
            length = stop - start + context
            if stop - start < 1 or length < window + 1:
                raise ValueError(
                    f"symbol {symbol}: the {split} split would have {stop - start} bar(s) "
                    f"({length} with {context} context rows), fewer than window + 1 = "
                    f"{window + 1}; lower window or change test_days/val_days"
                )
        per_symbol[symbol] = (aligned, features, bounds, len(frame) - len(features))

    feature_names = tuple(next(iter(per_symbol.values()))[1].columns)
    if normaliser_state is not None:
        normaliser = FeatureNormaliser.from_state_dict(normaliser_state)
        if normaliser.feature_names != feature_names:
            raise ValueError(
                f"normaliser_state was fitted on features {list(normaliser.feature_names)} "
                f"but this data gives {list(feature_names)} (volume present in one and not "
                "the other, or a different freq?)"
            )
    else:
        train_rows = [
            features.iloc[b["train"][0] : b["train"][1]]
            for _, features, b, _ in per_symbol.values()
        ]
        normaliser = FeatureNormaliser.fit(pd.concat(train_rows, ignore_index=True),
                                           warmup=warmup_features(feature_names))

    summary = {
        "freq": freq,
        "source": source,
        "symbols": list(bars),
        "window": int(window),
        "test_days": int(test_days),
        "val_days": int(val_days),
        "context_rows": context_rows,
        "split_dates": ({} if common is None else
                        {"val": str(common[0].date()) if val_days else None,
                         "test": str(common[1].date())}),
        "feature_names": list(feature_names),
        "normaliser": "restored" if normaliser_state is not None else "fitted on train rows",
        "rows": {split: {} for split in SPLITS if split != "val" or val_days},
        "days": {split: {} for split in SPLITS if split != "val" or val_days},
        "date_ranges": {split: {} for split in SPLITS if split != "val" or val_days},
        "warmup_rows_dropped": {},
        "adjustment": {},
        "repairs": {},
        "tick_repairs": {},
        "resorted": [],
        "files": {},
    }
    segments: dict[str, list[dict]] = {split: [] for split in SPLITS}
    for symbol, (aligned, features, bounds, warmup) in per_symbol.items():
        values = features.to_numpy(dtype=np.float64)  # columns in feature_names' order
        stamps = aligned.index.to_numpy(dtype="datetime64[ns]")
        for split, (start, stop) in bounds.items():
            stop = len(features) if stop is None else stop
            first = start if split == "train" else start - context_rows
            rows = slice(first, stop)
            normalised = normaliser.transform(values[rows])  # elementwise: only these rows
            segments[split].append(
                {
                    "symbol": symbol,
                    "open": aligned["open"].to_numpy()[rows],
                    "close": aligned["close"].to_numpy()[rows],
                    "high": aligned["high"].to_numpy()[rows],
                    "low": aligned["low"].to_numpy()[rows],
                    "timestamps": stamps[rows],
                    "features": normalised,
                }
            )
            own_days = stamps[start:stop].astype("datetime64[D]")  # ascending
            summary["rows"][split][symbol] = int(stop - start)
            summary["days"][split][symbol] = int(np.count_nonzero(own_days[1:] != own_days[:-1])
                                                 + (len(own_days) > 0))
            summary["date_ranges"][split][symbol] = [_iso(stamps[start]), _iso(stamps[stop - 1])]
        summary["warmup_rows_dropped"][symbol] = int(warmup)
    if load_result is not None:
        summary["adjustment"] = dict(load_result.adjustment)
        summary["files"] = dict(load_result.files)
        summary["resorted"] = list(load_result.resorted)
        summary["repairs"] = {
            symbol: {
                "rows_dropped": len({i.row for i in issues}),
                "issues": [i.as_dict() for i in issues[:MAX_LISTED_REPAIRS]],
            }
            for symbol, issues in load_result.dropped.items()
        }
        summary["tick_repairs"] = {symbol: [r.as_dict() for r in repairs]
                                   for symbol, repairs in load_result.repaired.items()}

    state = normaliser.state_dict()
    blocks = {}
    for split, split_segments in segments.items():
        if not split_segments:
            blocks[split] = None
            continue
        blocks[split] = MarketBlock.from_segments(
            split_segments,
            feature_names=feature_names,
            freq=freq,
            meta={
                **(meta or {}),
                "split": split,
                "context_rows": 0 if split == "train" else context_rows,
                "window": int(window),
                "source": source,
                "normaliser": state,
            },
        )
    return MarketSplits(
        train=blocks["train"],
        val=blocks["val"],
        test=blocks["test"],
        normaliser=normaliser,
        feature_names=feature_names,
        summary=summary,
    )


def build_market(
    symbols: str | Iterable[str] = ("BPCL", "HDFCLIFE"),
    freq: str = "1d",
    source: str | Path = "bundled",
    test_days: int = 30,
    val_days: int = 0,
    window: int = 32,
    on_bad_rows: str = "raise",
    normaliser_state: dict | None = None,
    *,
    adjust: str = "auto",
    tz: str = "Asia/Kolkata",
    repair_ticks: bool = False,
    feature_sets: Sequence[str] = DEFAULT_FEATURE_SETS,
) -> MarketSplits:
    """Load, validate, featurise and split a market into read-only blocks.

    The normaliser is fitted on the training rows of every symbol, or restored from
    ``normaliser_state`` (a :meth:`FeatureNormaliser.state_dict` saved with a trained
    model) so a model is evaluated on the features it was trained on. ``summary`` records
    rows/days/date ranges per split and symbol, warm-up rows, adjustments, every repair
    made under ``on_bad_rows="drop"`` and every bad tick clipped under ``repair_ticks``.
    """
    loaded = load_bars_report(symbols, freq, source, on_bad_rows, adjust=adjust, tz=tz,
                              repair_ticks=repair_ticks)
    return build_market_from_bars(
        loaded.bars,
        freq,
        test_days=test_days,
        val_days=val_days,
        window=window,
        normaliser_state=normaliser_state,
        source=str(source),
        load_result=loaded,
        feature_sets=feature_sets,
    )
