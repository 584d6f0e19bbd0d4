"""Causal per-symbol features and the normaliser fitted on training rows only.

Feature row ``t`` is computed from bars ``<= t`` only (rolling windows and exponential
averages that look backwards), so an agent acting at bar ``t`` never sees the future.
Rows before every feature has its full look-back (the warm-up) are dropped, never filled.

Features (all scale-free, so one normaliser serves every symbol):

========================  ============================================================
``ret_1/5/20``            log return of the close over 1, 5 and 20 bars
``hl_range``              log(high / low) of the bar
``vol_20``                standard deviation of 1-bar log returns over 20 bars
``rsi_14``                Wilder's RSI over 14 bars, in [0, 1] (0.5 when the price is flat)
``macd`` / ``macd_hist``  (EMA12 - EMA26) / close and its distance to its 9-bar EMA
``bb_pctb``               Bollinger %b (20 bars, 2 sd); 0.5 when the band has zero width
``volume_z``              z-score of log(1 + volume) over 20 bars (only with volume)
``time_of_day``           intraday only: minutes since the session open / session length
``bars_to_close``         intraday only: bars left before the scheduled session close
========================  ============================================================

Feature sets (``data.features``): the table above is the ``base`` set, the default. The
``momentum``, ``market`` and ``xs_rank`` sets (:mod:`fastrl.features_long`) add longer
horizons and a view of the universe; their columns come after the base columns and before
``extra_columns``. The rows kept are always the base set's, whatever the sets.

Intraday time features use the scheduled NSE session (09:15-15:30) rather than the bars a
day actually has, which would leak whether a session is cut short; bars outside the
schedule (special sessions such as Diwali muhurat trading) get ``bars_to_close = 0``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from fastrl.features_long import (
    DEFAULT_FEATURE_SETS,
    check_feature_sets,
    long_feature_names,
    long_features,
)

RETURN_HORIZONS = (1, 5, 20)
VOL_WINDOW = 20
RSI_WINDOW = 14
MACD_FAST, MACD_SLOW, MACD_SIGNAL = 12, 26, 9
BOLLINGER_WINDOW, BOLLINGER_WIDTH = 20, 2.0
VOLUME_WINDOW = 20
SESSION_OPEN, SESSION_CLOSE = "09:15", "15:30"
BAR_MINUTES = {"1d": None, "5min": 5}
# bars consumed before every feature is defined (the MACD signal line needs the most)
WARMUP_BARS = MACD_SLOW + MACD_SIGNAL - 2


def _sets(feature_sets: Sequence[str]) -> tuple[str, ...]:
    try:
        return check_feature_sets(feature_sets)
    except ValueError as error:
        raise ValueError(f"feature_sets {error}") from None


def _minutes(clock: str) -> int:
    hours, minutes = clock.split(":")
    return int(hours) * 60 + int(minutes)


def feature_names(
    freq: str, with_volume: bool = True, extra_columns: Sequence[str] = (),
    feature_sets: Sequence[str] = DEFAULT_FEATURE_SETS,
) -> list[str]:
    """The feature columns :func:`compute_features` returns, in order."""
    if tuple(feature_sets) != DEFAULT_FEATURE_SETS:
        sets = _sets(feature_sets)
        base = feature_names(freq, with_volume)  # validates freq
        return ((base if "base" in sets else []) + long_feature_names(sets)
                + list(extra_columns))
    if freq not in BAR_MINUTES:
        raise ValueError(f"freq must be '1d' or '5min', got {freq!r}")
    names = [f"ret_{h}" for h in RETURN_HORIZONS]
    names += ["hl_range", f"vol_{VOL_WINDOW}", f"rsi_{RSI_WINDOW}", "macd", "macd_hist", "bb_pctb"]
    if with_volume:
        names.append("volume_z")
    if BAR_MINUTES[freq] is not None:
        names += ["time_of_day", "bars_to_close"]
    names += list(extra_columns)
    return names


def compute_features(
    bars: pd.DataFrame,
    freq: str,
    *,
    with_volume: bool | None = None,
    extra_columns: Sequence[str] = (),
    feature_sets: Sequence[str] = DEFAULT_FEATURE_SETS,
) -> pd.DataFrame:
    """Causal features of one symbol's bars, warm-up rows dropped.

    Args:
        bars: output of :func:`fastrl.data.load_bars` for one symbol (sorted unique
            DatetimeIndex; float columns open, high, low, close, optionally volume).
        freq: "1d" or "5min".
        with_volume: include ``volume_z``; default: when the bars have any volume.
        extra_columns: columns of ``bars`` passed through as features unchanged (they
            must already be known at their bar's close, e.g. a planted signal).
        feature_sets: the sets to compute (:mod:`fastrl.features_long`); the market sets'
            universe is this one symbol (:func:`compute_features_many` of one symbol).

    Returns:
        float64 frame on the bars' index from the first bar with every base feature
        defined (the long sets' columns are NaN until they are defined).
    """
    if tuple(feature_sets) != DEFAULT_FEATURE_SETS:
        _sets(feature_sets)
        with_volume = "volume_z" in _checked_names(bars, freq, with_volume, extra_columns)
        out = compute_features_many({"": bars}, freq, with_volume=with_volume,
                                    extra_columns=extra_columns, feature_sets=feature_sets)[""]
        if isinstance(out, ValueError):
            raise out
        return out
    names = _checked_names(bars, freq, with_volume, extra_columns)
    volume = bars["volume"] if "volume_z" in names else None
    out = _market_features(bars["close"].astype(np.float64), bars["high"], bars["low"], volume)
    out.update(_time_features(bars.index, freq))
    for column in extra_columns:
        out[column] = bars[column].astype(np.float64)
    values = np.column_stack([out[name].to_numpy(dtype=np.float64) for name in names])
    return _complete_rows(values, bars.index, names)


def _checked_names(bars: pd.DataFrame, freq: str, with_volume: bool | None,
                   extra_columns: Sequence[str]) -> list[str]:
    """The feature names of ``bars`` after the input checks (ValueError when they fail)."""
    feature_names(freq, True, extra_columns)  # validates freq
    missing = [c for c in ("open", "high", "low", "close", *extra_columns) if c not in bars]
    if missing:
        raise ValueError(f"compute_features: bars lack column(s) {', '.join(missing)}")
    index = bars.index
    if not isinstance(index, pd.DatetimeIndex):
        raise ValueError("compute_features: bars need a DatetimeIndex (use load_bars)")
    if not (index.is_monotonic_increasing and index.is_unique):
        raise ValueError("compute_features: bars' timestamps must be unique and ascending")
    volume = bars["volume"] if "volume" in bars else None
    if with_volume is None:
        with_volume = volume is not None and bool(volume.notna().any())
    if with_volume and (volume is None or volume.isna().any()):
        raise ValueError("compute_features: with_volume=True but volume is missing or has NaN")
    return feature_names(freq, with_volume, extra_columns)


def _market_features(close, high, low, volume) -> dict:
    """The price and volume features of ``close``/``high``/``low``/``volume`` (``volume``
    None: no ``volume_z``): pandas Series of one symbol, or frames with one symbol per
    column (every operation is elementwise or runs down one column at a time)."""
    log_close = np.log(close)
    out: dict = {}
    for horizon in RETURN_HORIZONS:
        out[f"ret_{horizon}"] = log_close.diff(horizon)
    out["hl_range"] = np.log(high / low)
    ret_1 = out["ret_1"]
    out[f"vol_{VOL_WINDOW}"] = ret_1.rolling(VOL_WINDOW, min_periods=VOL_WINDOW).std()

    delta = close.diff()
    ewm = {"alpha": 1.0 / RSI_WINDOW, "adjust": False, "min_periods": RSI_WINDOW}
    avg_gain = delta.clip(lower=0).ewm(**ewm).mean()
    avg_loss = (-delta).clip(lower=0).ewm(**ewm).mean()
    total = avg_gain + avg_loss
    out[f"rsi_{RSI_WINDOW}"] = (avg_gain / total.where(total > 0)).where(total != 0, 0.5)

    ema_fast = close.ewm(span=MACD_FAST, adjust=False, min_periods=MACD_FAST).mean()
    ema_slow = close.ewm(span=MACD_SLOW, adjust=False, min_periods=MACD_SLOW).mean()
    macd = (ema_fast - ema_slow) / close
    signal = macd.ewm(span=MACD_SIGNAL, adjust=False, min_periods=MACD_SIGNAL).mean()
    out["macd"] = macd
    out["macd_hist"] = macd - signal

    rolling = close.rolling(BOLLINGER_WINDOW, min_periods=BOLLINGER_WINDOW)
    mean, std = rolling.mean(), rolling.std(ddof=0)
    width = 2 * BOLLINGER_WIDTH * std
    lower = mean - BOLLINGER_WIDTH * std
    out["bb_pctb"] = ((close - lower) / width.where(width > 0)).where(width != 0, 0.5)

    if volume is not None:
        log_volume = np.log1p(volume.astype(np.float64))
        vol_roll = log_volume.rolling(VOLUME_WINDOW, min_periods=VOLUME_WINDOW)
        vol_std = vol_roll.std(ddof=0)
        z = (log_volume - vol_roll.mean()) / vol_std.where(vol_std > 0)
        out["volume_z"] = z.where(vol_std != 0, 0.0)
    return out


def _time_features(index: pd.DatetimeIndex, freq: str) -> dict[str, pd.Series]:
    """Intraday: ``time_of_day`` and ``bars_to_close`` of each bar (daily: none)."""
    bar_minutes = BAR_MINUTES[freq]
    if bar_minutes is None:
        return {}
    open_minute, close_minute = _minutes(SESSION_OPEN), _minutes(SESSION_CLOSE)
    minute_of_day = pd.Series(index.hour * 60 + index.minute, index=index, dtype=np.float64)
    bars_left = (close_minute - (minute_of_day + bar_minutes)) / bar_minutes
    return {"time_of_day": (minute_of_day - open_minute) / (close_minute - open_minute),
            "bars_to_close": bars_left.clip(lower=0.0)}


def _complete_rows(values: np.ndarray, index: pd.DatetimeIndex,
                   names: list[str]) -> pd.DataFrame:
    """The feature rows from the first with every feature defined, checked finite."""
    complete = ~np.isnan(values).any(axis=1)
    if not complete.any():
        raise ValueError(
            f"compute_features: {len(index)} bars are too few; the features need at least "
            f"{WARMUP_BARS + 1} bars of warm-up"
        )
    first = int(np.argmax(complete))
    values = values[first:]
    if not np.isfinite(values).all():
        row, col = np.argwhere(~np.isfinite(values))[0]
        raise ValueError(
            f"compute_features: feature {names[col]!r} is {values[row, col]} at "
            f"{index[first + row]} (bad input bars?)"
        )
    return pd.DataFrame(values, index=index[first:], columns=names)


_BATCH_COLUMNS = ("open", "high", "low", "close", "volume")


def compute_features_many(
    bars: Mapping[str, pd.DataFrame],
    freq: str,
    *,
    with_volume: bool,
    extra_columns: Sequence[str] = (),
    feature_sets: Sequence[str] = DEFAULT_FEATURE_SETS,
) -> dict[str, pd.DataFrame | ValueError]:
    """Every symbol's features for ``feature_sets``: the base set's rows and columns (see
    :func:`compute_base_many`), then the long sets' columns (:mod:`fastrl.features_long`)
    computed on every bar and cut to those rows. The universe of the market sets is every
    symbol with well-formed bars and finite positive closes, also one with too few bars
    for features of its own (it gets the ValueError, and is listed all the same)."""
    sets = _sets(feature_sets)
    if sets == DEFAULT_FEATURE_SETS:
        return compute_base_many(bars, freq, with_volume=with_volume,
                                 extra_columns=extra_columns)
    base = compute_base_many(bars, freq, with_volume=with_volume, extra_columns=extra_columns)
    closes = {}
    for symbol, frame in bars.items():
        try:
            _checked_names(frame, freq, with_volume, extra_columns)
        except ValueError:
            continue
        close = frame["close"].to_numpy(dtype=np.float64)
        if np.isfinite(close).all() and (close > 0).all():
            closes[symbol] = frame["close"].astype(np.float64)
    extra = long_features(closes, sets) if closes else {}
    out: dict[str, pd.DataFrame | ValueError] = {}
    for symbol in bars:
        frame = base[symbol]
        if isinstance(frame, ValueError):
            out[symbol] = frame
            continue
        if symbol not in extra:
            out[symbol] = ValueError("compute_features: the long feature sets need finite "
                                     "positive closes on every bar")
            continue
        first = len(bars[symbol]) - len(frame)  # the base set's rows are the last ones
        columns = {name: frame[name].to_numpy() for name in frame.columns}
        columns.update({name: values[first:] for name, values in extra[symbol].items()})
        names = feature_names(freq, "volume_z" in frame.columns, extra_columns, sets)
        values = np.column_stack([columns[name] for name in names])
        bad = np.isinf(values)
        if bad.any():
            row, col = np.argwhere(bad)[0]
            out[symbol] = ValueError(f"compute_features: feature {names[col]!r} is "
                                     f"{values[row, col]} at {frame.index[row]} (bad input "
                                     "bars?)")
            continue
        out[symbol] = pd.DataFrame(values, index=frame.index, columns=names)
    return out


def compute_base_many(
    bars: Mapping[str, pd.DataFrame],
    freq: str,
    *,
    with_volume: bool,
    extra_columns: Sequence[str] = (),
) -> dict[str, pd.DataFrame | ValueError]:
    """:func:`compute_features` (the base set) of every symbol's bars, the same values bit
    for bit, or the ValueError it raises for that symbol.

    Symbols whose bar columns are float64 (what the loader returns) are computed in one
    pass: each price series is a column of one [rows, symbols] frame, padded with NaN after
    its last bar. Every feature is elementwise or runs down one column (diff, rolling,
    ewm), so a column's rows are what the one-symbol computation gives; the padding comes
    after them and never reaches them. Others go one by one through compute_features."""
    out: dict[str, pd.DataFrame | ValueError] = {}
    batch: list[str] = []
    names: dict[str, list[str]] = {}
    for symbol, frame in bars.items():
        try:
            names[symbol] = _checked_names(frame, freq, with_volume, extra_columns)
        except ValueError as error:
            out[symbol] = error
            continue
        used = ("high", "low", "close") + (("volume",) if with_volume else ())
        if all(frame[c].dtype == np.float64 for c in used):
            batch.append(symbol)
    for symbol in bars:
        if symbol in names and symbol not in batch:
            try:
                out[symbol] = compute_features(bars[symbol], freq, with_volume=with_volume,
                                               extra_columns=extra_columns)
            except ValueError as error:
                out[symbol] = error
    if batch:
        lengths = [len(bars[s]) for s in batch]
        rows = max(lengths)

        def stacked(column: str) -> pd.DataFrame:
            values = np.full((len(batch), rows), np.nan)
            for j, symbol in enumerate(batch):
                values[j, : lengths[j]] = bars[symbol][column].to_numpy()
            return pd.DataFrame(values.T, columns=range(len(batch)))

        market = {name: values.to_numpy(dtype=np.float64) for name, values in _market_features(
            stacked("close"), stacked("high"), stacked("low"),
            stacked("volume") if with_volume else None).items()}
        for j, symbol in enumerate(batch):
            frame = bars[symbol]
            listed = names[symbol]
            extra = _time_features(frame.index, freq)
            for column in extra_columns:
                extra[column] = frame[column].astype(np.float64)
            columns = [market[name][: lengths[j], j] if name in market
                       else extra[name].to_numpy(dtype=np.float64) for name in listed]
            try:
                out[symbol] = _complete_rows(np.column_stack(columns), frame.index, listed)
            except ValueError as error:
                out[symbol] = error
    return {symbol: out[symbol] for symbol in bars}


class FeatureNormaliser:
    """Per-feature standardisation, fitted on training rows only and saved with the model.

    ``transform`` returns ``clip((x - mean) / std, -clip, clip)`` as float32. Statistics
    are pooled over every training row of every symbol (the features are scale-free).
    A constant feature gets ``std = 1`` so it maps to 0 instead of blowing up.

    ``warmup`` names the features that are NaN until they are defined (the long feature
    sets', :mod:`fastrl.features_long`): they are fitted on their defined rows and a NaN
    maps to 0 (the training mean). Every other feature must be finite.
    """

    def __init__(
        self,
        feature_names: Sequence[str],
        mean: Sequence[float],
        std: Sequence[float],
        clip: float = 10.0,
        warmup: Sequence[str] = (),
    ) -> None:
        self.feature_names = tuple(str(n) for n in feature_names)
        self.mean = np.asarray(mean, dtype=np.float64)
        self.std = np.asarray(std, dtype=np.float64)
        self.clip = float(clip)
        self.warmup = tuple(str(n) for n in warmup)
        unknown = [n for n in self.warmup if n not in self.feature_names]
        if unknown:
            raise ValueError(f"FeatureNormaliser: warm-up feature(s) {unknown} are not "
                             "among the feature names")
        width = len(self.feature_names)
        if self.mean.shape != (width,) or self.std.shape != (width,):
            raise ValueError(
                f"FeatureNormaliser: {width} feature names but mean shape {self.mean.shape} "
                f"and std shape {self.std.shape}"
            )
        if not (np.isfinite(self.mean).all() and np.isfinite(self.std).all()):
            raise ValueError("FeatureNormaliser: mean and std must be finite")
        if (self.std <= 0).any():
            raise ValueError("FeatureNormaliser: std must be positive")
        if not self.clip > 0:
            raise ValueError(f"FeatureNormaliser: clip must be positive, got {clip}")

    @classmethod
    def fit(
        cls,
        features: pd.DataFrame | np.ndarray,
        feature_names: Sequence[str] | None = None,
        clip: float = 10.0,
        warmup: Sequence[str] = (),
    ) -> FeatureNormaliser:
        """Fit on the training rows (a frame, or an array with ``feature_names``); the
        ``warmup`` features on their defined (non-NaN) rows only."""
        if isinstance(features, pd.DataFrame):
            names = list(features.columns)
            values = features.to_numpy(dtype=np.float64)
        else:
            if feature_names is None:
                raise ValueError("FeatureNormaliser.fit: pass feature_names with an array")
            names = list(feature_names)
            values = np.asarray(features, dtype=np.float64)
        if values.ndim != 2 or values.shape[1] != len(names):
            raise ValueError(
                f"FeatureNormaliser.fit: expected [rows, {len(names)}] values, got {values.shape}"
            )
        if values.shape[0] < 2:
            raise ValueError("FeatureNormaliser.fit: need at least 2 training rows")
        late = np.isin(names, list(warmup))
        if not np.isfinite(values[:, ~late]).all() or np.isinf(values[:, late]).any():
            raise ValueError("FeatureNormaliser.fit: training features contain NaN or inf")
        if late.any():
            mean, std = values.mean(axis=0), values.std(axis=0)
            for col in np.flatnonzero(late):
                defined = values[:, col][~np.isnan(values[:, col])]
                if len(defined) < 2:
                    raise ValueError(
                        f"FeatureNormaliser.fit: feature {names[col]!r} is defined on "
                        f"{len(defined)} training row(s), fewer than 2; it needs a longer "
                        "history (see fastrl.features_long), or drop its feature set")
                mean[col], std[col] = defined.mean(), defined.std()
        else:
            mean = values.mean(axis=0)
            std = values.std(axis=0)
        std = np.where(std > 1e-12 * np.maximum(1.0, np.abs(mean)), std, 1.0)
        return cls(names, mean, std, clip, warmup)

    def transform(self, features: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Normalised float32 copy; a frame is matched by column name."""
        if isinstance(features, pd.DataFrame):
            missing = [n for n in self.feature_names if n not in features.columns]
            if missing:
                raise ValueError(
                    f"FeatureNormaliser.transform: missing feature column(s) {missing}; "
                    f"fitted on {list(self.feature_names)}"
                )
            values = features[list(self.feature_names)].to_numpy(dtype=np.float64)
        else:
            values = np.asarray(features, dtype=np.float64)
            if values.ndim != 2 or values.shape[1] != len(self.feature_names):
                raise ValueError(
                    f"FeatureNormaliser.transform: expected [rows, {len(self.feature_names)}] "
                    f"values, got shape {values.shape}"
                )
        scaled = (values - self.mean) / self.std
        if self.warmup:  # a long feature before it is defined: the training mean
            late = np.isin(self.feature_names, self.warmup)
            scaled[:, late] = np.nan_to_num(scaled[:, late], nan=0.0, posinf=np.inf,
                                            neginf=-np.inf)
        return np.clip(scaled, -self.clip, self.clip).astype(np.float32)

    def state_dict(self) -> dict:
        """Plain JSON-serialisable state (lists and floats) for checkpoints."""
        return {
            "version": 1,
            "feature_names": list(self.feature_names),
            "mean": [float(x) for x in self.mean],
            "std": [float(x) for x in self.std],
            "clip": self.clip,
            **({"warmup": list(self.warmup)} if self.warmup else {}),
        }

    @classmethod
    def from_state_dict(cls, state: dict) -> FeatureNormaliser:
        missing = [k for k in ("feature_names", "mean", "std") if k not in state]
        if missing:
            raise ValueError(f"FeatureNormaliser state lacks key(s) {missing}")
        if state.get("version", 1) != 1:
            raise ValueError(f"FeatureNormaliser state version {state['version']} is unknown")
        return cls(state["feature_names"], state["mean"], state["std"], state.get("clip", 10.0),
                   state.get("warmup", ()))

    def __repr__(self) -> str:
        return f"FeatureNormaliser({len(self.feature_names)} features, clip={self.clip})"
