"""PanelBlock: A symbols on one calendar, the read-only market of the portfolio simulator.

Calendar rule: the panel's rows are the union of the symbols' trading dates (after each
symbol's feature warm-up). A cell ``(t, a)`` is **tradable** when symbol ``a`` has a bar and a
feature row on date ``t``. Nothing is back-filled: an untradable cell has features 0 and
prices NaN, and no order is executed in it (a symbol not yet listed, or not traded that day,
keeps whatever shares the agent holds). To value a held name on a day it did not trade,
the simulator uses its **mark**: the close of its last tradable row at or before ``t``
(:attr:`PanelBlock.mark`). That is a valuation rule, not filled-in data: features and
fills never see it.

Split rule: the last ``test_days`` dates of the union calendar are the test panel, the
``val_days`` before them the validation panel, everything earlier the training panel. As in
:mod:`fastrl.data.splits`, a val/test panel starts with the ``window - 1`` rows just before
the split as context, so its first decision (row ``window - 1``) is the split's first row.
The feature normaliser is fitted on the training rows of every symbol only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from fastrl.data.block import bars_through
from fastrl.data.loaders import available, load_bars_report
from fastrl.data.splits import Splits, split_bars
from fastrl.features import FeatureNormaliser, compute_features_many
from fastrl.features_long import DEFAULT_FEATURE_SETS, warmup_features


@dataclass(frozen=True, eq=False)
class PanelBlock:
    """One split of a multi-symbol market as [T, A] / [T, A, F] read-only arrays."""

    symbols: tuple[str, ...]  # A columns
    open: np.ndarray  # float64 [T, A]; NaN where untradable
    close: np.ndarray  # float64 [T, A]; NaN where untradable
    features: np.ndarray  # float32 [T, A, F]; 0 where untradable
    tradable: np.ndarray  # bool [T, A]
    feature_names: tuple[str, ...] = ()
    timestamps: np.ndarray | None = None  # datetime64[ns] [T]
    freq: str = "1d"
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        def frozen(name: str, dtype, ndim: int) -> np.ndarray:
            arr = np.ascontiguousarray(getattr(self, name), dtype=dtype)
            if arr.ndim != ndim:
                raise ValueError(f"PanelBlock.{name} must be {ndim}-D, got shape {arr.shape}")
            if arr is getattr(self, name):
                arr = arr.copy()  # never freeze (or alias) the caller's array
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)
            return arr

        features = frozen("features", np.float32, 3)
        shape = features.shape[:2]
        for name, dtype in (("open", np.float64), ("close", np.float64), ("tradable", np.bool_)):
            arr = frozen(name, dtype, 2)
            if arr.shape != shape:
                raise ValueError(f"PanelBlock.{name} has shape {arr.shape}, expected {shape}")
        object.__setattr__(self, "symbols", tuple(self.symbols))
        object.__setattr__(self, "feature_names", tuple(self.feature_names))
        if len(self.symbols) != shape[1]:
            raise ValueError(f"PanelBlock has {shape[1]} columns but {len(self.symbols)} symbols")
        if self.feature_names and len(self.feature_names) != features.shape[2]:
            raise ValueError(f"PanelBlock has {features.shape[2]} feature columns but "
                             f"{len(self.feature_names)} feature names")
        if self.timestamps is not None:
            ts = np.array(self.timestamps)
            if ts.shape != (shape[0],):
                raise ValueError(f"PanelBlock.timestamps has shape {ts.shape}, "
                                 f"expected ({shape[0]},)")
            ts.setflags(write=False)
            object.__setattr__(self, "timestamps", ts)

    @property
    def num_bars(self) -> int:
        return int(self.features.shape[0])

    @property
    def num_assets(self) -> int:
        return int(self.features.shape[1])

    @property
    def num_features(self) -> int:
        return int(self.features.shape[2])

    @cached_property
    def mark(self) -> np.ndarray:
        """[T, A] close of the last tradable row <= t (0 before a symbol's first one)."""
        last = np.where(self.tradable, np.arange(self.num_bars)[:, None], -1)
        last = np.maximum.accumulate(last, axis=0)
        cols = np.broadcast_to(np.arange(self.num_assets), last.shape)
        mark = np.where(last >= 0, self.close[np.maximum(last, 0), cols], 0.0)
        mark.setflags(write=False)
        return mark

    @classmethod
    def from_bars(cls, frames: Mapping[str, pd.DataFrame], freq: str = "1d", *,
                  through: pd.Timestamp | str | None = None,
                  meta: dict | None = None) -> PanelBlock:
        """The symbols of ``frames`` (symbol -> bars; columns in the mapping's order) on
        their union calendar, as raw bars for the classical rules (:mod:`fastrl.rules`),
        which read marks only: the features are one zero column (no names).

        Invariants: the rows are the union of the symbols' bar timestamps, sorted and
        unique (datetime64[ns]); a cell is **tradable** exactly where the symbol has a bar
        that day, and holds that bar's ``open`` and ``close``; elsewhere (before a late
        listing, a day the symbol did not trade) the prices are NaN, nothing is filled in,
        and the simulator values a holding at :attr:`mark` (the last tradable close).
        Unlike :func:`build_panel_from_bars` nothing is featurised, so no warm-up row is
        dropped: a symbol is tradable from its first bar. ``through`` (a day) keeps only
        the rows of days on or before it. Each frame is checked
        (:func:`fastrl.data.block.check_bar_frame`); ValueError naming the symbol for a
        bad frame or one with no bar through ``through``."""
        if not frames:
            raise ValueError("PanelBlock.from_bars: no symbols")
        frames = {s: bars_through(s, f, through) for s, f in frames.items()}
        close = pd.concat({s: f["close"] for s, f in frames.items()}, axis=1, sort=True)
        open_ = pd.concat({s: f["open"] for s, f in frames.items()}, axis=1, sort=True
                          ).reindex(close.index)
        return cls(symbols=tuple(frames), open=open_.to_numpy(np.float64),
                   close=close.to_numpy(np.float64),
                   features=np.zeros((*close.shape, 1), np.float32),
                   tradable=close.notna().to_numpy(),
                   timestamps=close.index.to_numpy(dtype="datetime64[ns]"), freq=freq,
                   meta=dict(meta or {}))

    def rows(self, start: int, stop: int, split: str | None = None) -> PanelBlock:
        """Rows ``[start, stop)`` as a new block (copies; the result owns its arrays)."""
        cut = slice(start, stop)
        return PanelBlock(
            symbols=self.symbols, open=self.open[cut], close=self.close[cut],
            features=self.features[cut], tradable=self.tradable[cut],
            feature_names=self.feature_names,
            timestamps=None if self.timestamps is None else self.timestamps[cut],
            freq=self.freq, meta={**self.meta, **({"split": split} if split else {})})


@dataclass
class PanelSplits(Splits[PanelBlock]):
    """Train/val/test panels of one market and the normaliser fitted on train rows."""


def build_panel_from_bars(
    bars: Mapping[str, pd.DataFrame],
    freq: str = "1d",
    *,
    test_days: int = 30,
    val_days: int = 0,
    window: int = 32,
    normaliser_state: dict | None = None,
    source: str = "memory",
    test_start: pd.Timestamp | str | None = None,
    feature_sets: Sequence[str] = DEFAULT_FEATURE_SETS,
    train_start: pd.Timestamp | str | None = None,
) -> PanelSplits:
    """Featurise validated bars per symbol, align them on the union calendar and split.

    ``train_start`` (a date): the train panel starts at the first row on or after it; the
    rows before only warm the features up (see :func:`fastrl.data.splits.
    build_market_from_bars`).

    ``feature_sets``: the feature sets (``data.features``, :mod:`fastrl.features_long`);
    the market sets' universe is every symbol in ``bars``.

    ``test_start`` (a date): the test panel is the rows from that date on instead of the
    last ``test_days``; with no row from that date on there is no test panel (``test`` is
    None: a walk-forward window's training market)."""
    if not bars:
        raise ValueError("build_panel: no symbols")
    if not isinstance(window, (int, np.integer)) or window < 1:
        raise ValueError(f"window must be a positive integer, got {window!r}")
    with_volume = all(
        "volume" in frame and bool(frame["volume"].notna().all()) for frame in bars.values())
    featured: dict[str, pd.DataFrame] = {}
    for symbol, features in compute_features_many(bars, freq, with_volume=with_volume,
                                                       feature_sets=feature_sets).items():
        if isinstance(features, ValueError):
            raise ValueError(f"symbol {symbol}: {features}") from None
        featured[symbol] = features
    calendar = featured[next(iter(featured))].index
    for frame in featured.values():
        calendar = calendar.union(frame.index)
    train_end, val_end = split_bars(calendar, test_days, val_days,
                                    test_start=None if test_start is None
                                    else pd.Timestamp(test_start))
    feature_names = tuple(next(iter(featured.values())).columns)
    train_first = 0 if train_start is None else min(train_end, int(calendar.searchsorted(
        pd.Timestamp(train_start), side="left")))

    if normaliser_state is not None:
        normaliser = FeatureNormaliser.from_state_dict(normaliser_state)
        if normaliser.feature_names != feature_names:
            raise ValueError(f"normaliser_state was fitted on {list(normaliser.feature_names)} "
                             f"but this data gives {list(feature_names)}")
    else:
        def train_part(frame: pd.DataFrame) -> pd.DataFrame:
            rows = calendar.get_indexer(frame.index)  # the calendar is their union
            return frame[(rows >= train_first) & (rows < train_end)]

        train_rows = [train_part(f) for f in featured.values()]
        normaliser = FeatureNormaliser.fit(pd.concat(train_rows, ignore_index=True),
                                           warmup=warmup_features(feature_names))

    symbols = tuple(featured)
    T, A, F = len(calendar), len(symbols), len(feature_names)
    open_ = np.full((T, A), np.nan)
    close = np.full((T, A), np.nan)
    features = np.zeros((T, A, F), np.float32)
    tradable = np.zeros((T, A), bool)
    for a, symbol in enumerate(symbols):
        frame = featured[symbol]
        rows = calendar.get_indexer(frame.index)
        aligned = bars[symbol].iloc[len(bars[symbol]) - len(frame):]  # the rows frame has
        open_[rows, a] = aligned["open"].to_numpy()
        close[rows, a] = aligned["close"].to_numpy()
        features[rows, a] = normaliser.transform(frame)
        tradable[rows, a] = True

    full = PanelBlock(symbols=symbols, open=open_, close=close, features=features,
                      tradable=tradable, feature_names=feature_names,
                      timestamps=calendar.to_numpy(dtype="datetime64[ns]"), freq=freq,
                      meta={"source": source, "window": int(window),
                            "normaliser": normaliser.state_dict()})
    context = window - 1
    bounds = {"train": (train_first, train_end), "val": (train_end - context, val_end),
              "test": (val_end - context, T)}
    if val_days == 0:
        del bounds["val"]
    if val_end == T:
        del bounds["test"]
    blocks: dict[str, PanelBlock | None] = {"val": None, "test": None}
    summary: dict = {"freq": freq, "source": source, "symbols": list(symbols),
                     "window": int(window), "calendar_rows": T, "rows": {}, "tradable_share": {}}
    for split, (start, stop) in bounds.items():
        if stop - max(start, 0) < window + 1 or start < 0:
            raise ValueError(f"the {split} panel would have {stop - start} rows, fewer than "
                             f"window + 1 = {window + 1}; lower window or change "
                             "test_days/val_days")
        block = full.rows(start, stop, split)
        blocks[split] = block
        summary["rows"][split] = block.num_bars
        summary["tradable_share"][split] = float(block.tradable.mean())
    return PanelSplits(train=blocks["train"], val=blocks["val"], test=blocks["test"],
                       normaliser=normaliser, feature_names=feature_names, summary=summary)


def build_panel(
    symbols: str | Iterable[str] | None = None,
    freq: str = "1d",
    source: str | Path = "bundled",
    test_days: int = 30,
    val_days: int = 0,
    window: int = 32,
    on_bad_rows: str = "raise",
    normaliser_state: dict | None = None,
    repair_ticks: bool = False,
    feature_sets: Sequence[str] = DEFAULT_FEATURE_SETS,
) -> PanelSplits:
    """Load, validate, featurise, align and split a panel; ``symbols=None`` takes every
    symbol the source holds for ``freq``."""
    if symbols is None:

        symbols = available(freq, source)
    loaded = load_bars_report(symbols, freq, source, on_bad_rows, repair_ticks=repair_ticks)
    return build_panel_from_bars(loaded.bars, freq, test_days=test_days, val_days=val_days,
                                 window=window, normaliser_state=normaliser_state,
                                 source=str(source), feature_sets=feature_sets)
