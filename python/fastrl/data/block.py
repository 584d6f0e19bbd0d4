"""MarketBlock: the read-only bar data every env and every simulator thread shares."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


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
