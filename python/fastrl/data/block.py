"""MarketBlock: the read-only bar data every env and every simulator thread shares."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

# the columns a bar frame needs to become a rules' block: fills at open/close, marks at close
BAR_COLUMNS = ("open", "close")


@dataclass(frozen=True, eq=False)
class MarketBlock:
    """All segments of one split, concatenated into contiguous read-only arrays.

    Segment ``s`` (one symbol's bars of one split) occupies rows
    ``offsets[s]:offsets[s + 1]``. Feature row ``t`` uses bars ``<= t`` only, so an
    observation built at bar ``t`` never sees the future. The simulator fills orders at
    ``open``/``close`` and marks equity to ``close``; features are already normalised.
    The arrays are made read-only here and shared without copies by every env.
    """

    symbols: tuple[str, ...]  # one per segment
    open: np.ndarray  # float64 [T]
    close: np.ndarray  # float64 [T]
    features: np.ndarray  # float32 [T, F], C-contiguous
    offsets: np.ndarray  # int64 [S + 1], offsets[0] == 0, offsets[-1] == T
    feature_names: tuple[str, ...] = ()
    timestamps: np.ndarray | None = None  # datetime64[ns] [T], for reports and splits
    high: np.ndarray | None = None  # float64 [T], optional (plots, checks)
    low: np.ndarray | None = None  # float64 [T], optional
    freq: str = "1d"  # "1d" or "5min": bar size, used for annualisation
    meta: dict = field(default_factory=dict)  # provenance, split name, normaliser, ...

    def __post_init__(self) -> None:
        def as_array(name: str, value, dtype, ndim: int) -> np.ndarray:
            arr = np.ascontiguousarray(value, dtype=dtype)
            if arr.ndim != ndim:
                raise ValueError(f"MarketBlock.{name} must be {ndim}-D, got shape {arr.shape}")
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)
            return arr

        open_ = as_array("open", self.open, np.float64, 1)
        close = as_array("close", self.close, np.float64, 1)
        features = as_array("features", self.features, np.float32, 2)
        offsets = as_array("offsets", self.offsets, np.int64, 1)
        n = open_.shape[0]
        if close.shape[0] != n or features.shape[0] != n:
            raise ValueError(
                f"MarketBlock arrays disagree in length: open {n}, close {close.shape[0]}, "
                f"features {features.shape[0]}"
            )
        for name in ("high", "low"):
            if getattr(self, name) is not None:
                arr = as_array(name, getattr(self, name), np.float64, 1)
                if arr.shape[0] != n:
                    raise ValueError(f"MarketBlock.{name} has {arr.shape[0]} rows, expected {n}")
        if self.timestamps is not None:
            ts = np.asarray(self.timestamps)
            if ts.shape != (n,):
                raise ValueError(f"MarketBlock.timestamps has shape {ts.shape}, expected ({n},)")
            ts = ts.copy()
            ts.setflags(write=False)
            object.__setattr__(self, "timestamps", ts)
        object.__setattr__(self, "symbols", tuple(self.symbols))
        object.__setattr__(self, "feature_names", tuple(self.feature_names))
        if len(self.symbols) == 0:
            raise ValueError("MarketBlock has no segments (empty split?)")
        if offsets.shape[0] != len(self.symbols) + 1:
            raise ValueError(
                f"MarketBlock.offsets has {offsets.shape[0]} entries for {len(self.symbols)} "
                "segments; expected one more than the number of segments"
            )
        if offsets[0] != 0 or offsets[-1] != n or np.any(np.diff(offsets) <= 0):
            raise ValueError(
                f"MarketBlock.offsets must rise strictly from 0 to {n}, got {offsets.tolist()}"
            )
        if self.feature_names and len(self.feature_names) != features.shape[1]:
            raise ValueError(
                f"MarketBlock has {features.shape[1]} feature columns but "
                f"{len(self.feature_names)} feature names"
            )

    @property
    def num_bars(self) -> int:
        return int(self.open.shape[0])

    @property
    def num_features(self) -> int:
        return int(self.features.shape[1])

    @property
    def num_segments(self) -> int:
        return len(self.symbols)

    def segment(self, s: int) -> slice:
        """Rows of segment ``s``."""
        return slice(int(self.offsets[s]), int(self.offsets[s + 1]))

    def segment_lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @classmethod
    def from_segments(
        cls,
        segments: list[dict],
        feature_names: tuple[str, ...] = (),
        freq: str = "1d",
        meta: dict | None = None,
    ) -> MarketBlock:
        """Concatenate per-symbol dicts with keys symbol, open, close, features and
        optionally timestamps, high, low."""
        if not segments:
            raise ValueError("MarketBlock.from_segments got no segments (empty split?)")
        lengths = [len(seg["open"]) for seg in segments]
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)

        def cat(key: str):
            if any(seg.get(key) is None for seg in segments):
                return None
            return np.concatenate([np.asarray(seg[key]) for seg in segments])

        return cls(
            symbols=tuple(seg["symbol"] for seg in segments),
            open=cat("open"),
            close=cat("close"),
            features=np.concatenate([np.asarray(seg["features"], np.float32) for seg in segments]),
            offsets=offsets,
            feature_names=tuple(feature_names),
            timestamps=cat("timestamps"),
            high=cat("high"),
            low=cat("low"),
            freq=freq,
            meta=dict(meta or {}),
        )

    @classmethod
    def from_bars(
        cls,
        frames: Mapping[str, pd.DataFrame],
        freq: str = "1d",
        *,
        through: pd.Timestamp | str | None = None,
        meta: dict | None = None,
    ) -> MarketBlock:
        """One segment per symbol of ``frames`` (symbol -> bars), in the mapping's order: a
        block of raw bars for the classical rules (:mod:`fastrl.rules`), which read
        closes only, so the features are one zero column (no names, no normalisation).

        Invariants: each segment holds the symbol's bars in time order, its timestamps
        (datetime64[ns], the frame's index) strictly increasing; ``open`` and ``close`` are
        the frame's (finite, > 0); high and low are not carried (neither the simulator nor
        a rule reads them). ``through`` (a day) keeps only the bars of days on or before it.
        Each frame is checked (:func:`check_bar_frame`); ValueError naming the symbol for a
        bad frame or one with no bar through ``through``."""
        if not frames:
            raise ValueError("MarketBlock.from_bars: no symbols")
        segments = []
        for symbol, frame in frames.items():
            frame = bars_through(symbol, frame, through)
            segments.append({"symbol": symbol, "open": frame["open"].to_numpy(np.float64),
                             "close": frame["close"].to_numpy(np.float64),
                             "features": np.zeros((len(frame), 1), np.float32),
                             "timestamps": frame.index.to_numpy(dtype="datetime64[ns]")})
        return cls.from_segments(segments, freq=freq, meta=meta)


def check_bar_frame(symbol: str, frame: pd.DataFrame) -> None:
    """ValueError naming ``symbol`` unless ``frame`` is bars a rule can trade: a DataFrame
    with a time-zone-naive DatetimeIndex (local exchange time), strictly increasing (sorted,
    no duplicate), and finite, positive ``open`` and ``close`` columns."""
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"symbol {symbol}: bars must be a DataFrame, got "
                         f"{type(frame).__name__}")
    missing = [c for c in BAR_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"symbol {symbol}: bars lack the column(s) {', '.join(missing)} "
                         f"(have {', '.join(map(str, frame.columns)) or 'none'})")
    index = frame.index
    if not isinstance(index, pd.DatetimeIndex):
        raise ValueError(f"symbol {symbol}: bars need a DatetimeIndex, got "
                         f"{type(index).__name__}")
    if index.tz is not None:
        raise ValueError(f"symbol {symbol}: bar timestamps must be local exchange time "
                         f"without a zone, got tz={index.tz}")
    if index.hasnans:
        raise ValueError(f"symbol {symbol}: a bar has no timestamp (NaT)")
    if not index.is_monotonic_increasing:
        row = int(np.argmax(np.diff(index.to_numpy(dtype="datetime64[ns]"))
                            < np.timedelta64(0, "ns"))) + 1
        raise ValueError(f"symbol {symbol}: bars are not in time order ({index[row]} comes "
                         f"after {index[row - 1]})")
    if not index.is_unique:
        raise ValueError(f"symbol {symbol}: duplicate bar timestamp "
                         f"{index[index.duplicated()][0]}")
    for column in BAR_COLUMNS:
        values = frame[column].to_numpy(np.float64)
        bad = ~(np.isfinite(values) & (values > 0))
        if bad.any():
            row = int(np.argmax(bad))
            raise ValueError(f"symbol {symbol}: {column} is {values[row]} at {index[row]}; "
                             "prices must be finite and positive")


def bars_through(symbol: str, frame: pd.DataFrame,
                 through: pd.Timestamp | str | None) -> pd.DataFrame:
    """``frame`` checked (:func:`check_bar_frame`) and cut to the bars of days on or before
    ``through`` (all of them for None); ValueError naming ``symbol`` if none is left."""
    check_bar_frame(symbol, frame)
    if through is not None:
        day = pd.Timestamp(through).normalize()
        frame = frame.loc[frame.index.normalize() <= day]
    if frame.empty:
        raise ValueError(f"symbol {symbol}: no bars"
                         + ("" if through is None else f" on or before {day.date()}"))
    return frame
