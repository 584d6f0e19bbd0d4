"""Feature sets with a longer memory and a view of the market (``data.features``).

The base set (:mod:`fastrl.features`) looks back at most 33 bars. These sets add, per
symbol, what has beaten simple benchmarks out of sample (Lim, Zohren and Roberts 2019,
*Enhancing Time Series Momentum Strategies Using Deep Neural Networks*; Baz et al. 2015,
*Dissecting Investment Strategies in the Cross Section and Time Series*):

Horizons count bars: trading days for daily bars, 5-minute bars for intraday ones. EWMs are
pandas' (``adjust=True``; the std bias-corrected), rolling stds have ``ddof=1``.

``momentum`` (one symbol's closes ``p``; ``r_t = p_t / p_{t-1} - 1`` its 1-bar simple return):

========================  ============================================================
``mom_h`` (h = 21, 63,    ``(p_t / p_{t-h} - 1) / (sigma_t * sqrt(h))``: the return over
126, 252)                 ``h`` bars scaled by the ex-ante daily volatility ``sigma_t``, the
                          exponentially weighted std of ``r`` (span 60, at least 60 returns),
                          as Lim et al. do
``macd_S_L`` ((8, 24),    Baz et al.'s normalised MACD: ``m_S - m_L`` with ``m_S`` the EWM
(16, 48), (32, 96))       mean of ``p`` with ``alpha = 1/S`` (half-life
                          ``log 0.5 / log(1 - 1/S)``, at least ``S`` bars), divided by the
                          63-bar rolling std of ``p`` (``q``), then by the 252-bar rolling std
                          of ``q``
========================  ============================================================

``market`` (the universe = every symbol of the run, i.e. every symbol handed to
:func:`fastrl.features.compute_features_many`, on the union of their timestamps):

========================  ============================================================
``mkt_ret_h``             the universe's return over ``h`` rows of the union calendar,
                          ``I_t / I_{t-h} - 1``, scaled by ``sigma^U_t * sqrt(h)``. ``I`` is
                          the equal-weight index: ``I_t = prod (1 + u_k)`` over rows
                          ``k <= t``, ``u_k`` the mean 1-bar return of the symbols with a bar
                          at row ``k`` and one before it (a symbol not listed yet, halted that
                          day or delisted is out of that row's mean; a row with none is 0)
``mkt_vol``               ``sigma^U_t``: EWM std of ``u`` (span 60, at least 60 rows)
``rel_ret_h``             the symbol's return over its last ``h`` bars minus the universe's
                          over the same dates, ``(p_t / p_{t-h} - 1) - (I_t / I_{t-h} - 1)``
                          (``I`` read at the symbol's own bars; the universe includes the
                          symbol), scaled by the symbol's ``sigma_t * sqrt(h)``
========================  ============================================================

``xs_rank``: for each per-symbol feature of the momentum and market sets chosen with it
(``mom_h``, ``macd_S_L``, ``rel_ret_h``), ``rank_<name>``: its cross-sectional rank among the
symbols with a bar and that feature defined at the same timestamp, in [0, 1] (``(rank - 1) /
(n - 1)``, ties averaged; 0.5 when the symbol is alone). Useful with and without
``--portfolio``; it is never added implicitly.

Causality: every value at a timestamp reads bars at or before it only (returns, EWMs and
rolling windows look backwards; the universe's row ``t`` reads every symbol's bars up to
``t``; a rank compares values at one timestamp). Changing or dropping any bar after ``t``
leaves every row ``<= t`` unchanged (tests/test_features_long.py).

Warm-up: these features consume up to 346 bars of history (``LONG_WARMUP_BARS``). The rows
kept are the base set's (its warm-up, 33 bars, is dropped as always), so splits, walk-forward
windows and first trade days do not depend on the sets chosen. Until a long feature is
defined its value is NaN; the normaliser is fitted on its defined training rows and maps NaN
to 0 (the training mean) after normalisation (``FeatureNormaliser(..., warmup=...)``).
A zero volatility (a flat price) gives 0 rather than a division by zero.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

FEATURE_SETS = ("base", "momentum", "market", "xs_rank")
DEFAULT_FEATURE_SETS = ("base",)
LONG_HORIZONS = (21, 63, 126, 252)
VOL_SPAN = 60  # Lim et al.'s ex-ante volatility: EWM std of daily returns, span 60
MACD_PAIRS = ((8, 24), (16, 48), (32, 96))
MACD_PRICE_STD, MACD_SIGNAL_STD = 63, 252
# bars consumed before the slowest long feature (macd_32_96) is defined: its slow EWM (96
# bars) or the price std (63 bars) gives the first q, then 252 values of q
LONG_WARMUP_BARS = (max(max(slow, MACD_PRICE_STD) for _, slow in MACD_PAIRS) - 1
                    + MACD_SIGNAL_STD - 1)


def has_long_sets(sets: Sequence[str]) -> bool:
    """Whether ``sets`` adds a set beyond the base one (features needing
    ``LONG_WARMUP_BARS`` of history)."""
    return any(s != "base" for s in sets)


def check_feature_sets(sets: Sequence[str]) -> tuple[str, ...]:
    """``sets`` as a tuple, or a ValueError saying what they must be (the message reads
    after the key's name: "data.features must ...")."""
    sets = tuple(sets)
    known = ", ".join(FEATURE_SETS)
    unknown = [str(s) for s in sets if s not in FEATURE_SETS]
    if unknown:
        raise ValueError(f"must name known feature sets ({known}); unknown: "
                         f"{', '.join(map(repr, unknown))}")
    if not sets:
        raise ValueError(f"must name at least one feature set ({known})")
    if len(set(sets)) != len(sets):
        raise ValueError("must not name a feature set twice")
    if "xs_rank" in sets and not ({"momentum", "market"} & set(sets)):
        raise ValueError("must add momentum or market with xs_rank (it ranks their "
                         "features)")
    return sets


def _per_symbol_names(sets: Sequence[str]) -> list[str]:
    names = []
    if "momentum" in sets:
        names += [f"mom_{h}" for h in LONG_HORIZONS]
        names += [f"macd_{fast}_{slow}" for fast, slow in MACD_PAIRS]
    if "market" in sets:
        names += [f"rel_ret_{h}" for h in LONG_HORIZONS]
    return names


def long_feature_names(sets: Sequence[str]) -> list[str]:
    """The columns the non-base sets in ``sets`` add, in their order."""
    names: list[str] = []
    for feature_set in sets:
        if feature_set == "momentum":
            names += [f"mom_{h}" for h in LONG_HORIZONS]
            names += [f"macd_{fast}_{slow}" for fast, slow in MACD_PAIRS]
        elif feature_set == "market":
            names += [f"mkt_ret_{h}" for h in LONG_HORIZONS] + ["mkt_vol"]
            names += [f"rel_ret_{h}" for h in LONG_HORIZONS]
        elif feature_set == "xs_rank":
            names += [f"rank_{name}" for name in _per_symbol_names(sets)]
    return names


# The computations run on a [rows, symbols] frame: column j holds symbol j's closes on its
# own bars, top-aligned and padded with NaN after its last bar (as the base features do):
# every operation is elementwise or runs down one column, so the padding never reaches a
# symbol's rows. The universe and the ranks read the union calendar through ``positions``
# (each symbol's rows there).


def _returns(close: pd.DataFrame) -> pd.DataFrame:
    return close / close.shift(1) - 1.0


def _ex_ante_vol(returns: pd.DataFrame | pd.Series) -> pd.DataFrame | pd.Series:
    return returns.ewm(span=VOL_SPAN, min_periods=VOL_SPAN).std()


def _ratio(value: pd.DataFrame, scale: pd.DataFrame) -> pd.DataFrame:
    """``value / scale``; 0 where the scale is 0 (a flat price), NaN where it is NaN."""
    return (value / scale.where(scale > 0)).where(~(scale == 0), 0.0)


def _scaled(value: pd.DataFrame, vol: pd.DataFrame, horizon: int) -> pd.DataFrame:
    return _ratio(value, vol * math.sqrt(horizon))


def _momentum(close: pd.DataFrame, vol: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """``mom_h`` and ``macd_S_L`` (NaN in their warm-up)."""
    out = {f"mom_{h}": _scaled(close / close.shift(h) - 1.0, vol, h) for h in LONG_HORIZONS}
    price_std = close.rolling(MACD_PRICE_STD, min_periods=MACD_PRICE_STD).std()
    for fast, slow in MACD_PAIRS:
        macd = (close.ewm(alpha=1.0 / fast, min_periods=fast).mean()
                - close.ewm(alpha=1.0 / slow, min_periods=slow).mean())
        q = _ratio(macd, price_std)
        q_std = q.rolling(MACD_SIGNAL_STD, min_periods=MACD_SIGNAL_STD).std()
        out[f"macd_{fast}_{slow}"] = _ratio(q, q_std)
    return out


def _on_calendar(values: np.ndarray, positions: list[np.ndarray], rows: int) -> np.ndarray:
    """[calendar rows, symbols]: each symbol's values at its rows of the union calendar,
    NaN where it has no bar."""
    out = np.full((rows, len(positions)), np.nan)
    for j, where in enumerate(positions):
        out[where, j] = values[: len(where), j]
    return out


def _market(close: pd.DataFrame, vol: pd.DataFrame, positions: list[np.ndarray],
            calendar_rows: int) -> dict[str, pd.DataFrame]:
    """``mkt_ret_h``, ``mkt_vol`` and ``rel_ret_h``, the universe being every column."""
    returns = _on_calendar(_returns(close).to_numpy(), positions, calendar_rows)
    defined = ~np.isnan(returns)
    count = defined.sum(axis=1)
    total = np.where(defined, returns, 0.0).sum(axis=1)
    mean = pd.Series(np.where(count > 0, total / np.maximum(count, 1), np.nan))
    index = (1.0 + mean.fillna(0.0)).cumprod()
    market_vol = _ex_ante_vol(mean.dropna()).reindex(mean.index).ffill()
    universe = {f"mkt_ret_{h}": _scaled(index / index.shift(h) - 1.0, market_vol, h)
                for h in LONG_HORIZONS}
    universe["mkt_vol"] = market_vol

    def own_rows(series: pd.Series) -> pd.DataFrame:
        values = np.full(close.shape, np.nan)
        for j, where in enumerate(positions):
            values[: len(where), j] = series.to_numpy()[where]
        return pd.DataFrame(values, columns=close.columns)

    out = {name: own_rows(values) for name, values in universe.items()}
    at_own = own_rows(index)
    for h in LONG_HORIZONS:
        active = (close / close.shift(h) - 1.0) - (at_own / at_own.shift(h) - 1.0)
        out[f"rel_ret_{h}"] = _scaled(active, vol, h)
    return out


def _ranks(values: pd.DataFrame, positions: list[np.ndarray], calendar_rows: int
           ) -> pd.DataFrame:
    """Each symbol's rank in [0, 1] among the symbols with a defined value at the same
    timestamp (``(rank - 1) / (n - 1)``, ties averaged; 0.5 alone; NaN where undefined)."""
    frame = pd.DataFrame(_on_calendar(values.to_numpy(), positions, calendar_rows))
    defined = frame.notna().to_numpy()
    count = defined.sum(axis=1)[:, None]
    ranks = frame.rank(axis=1, method="average").to_numpy()
    scaled = np.where(count > 1, (ranks - 1.0) / np.maximum(count - 1, 1), 0.5)
    scaled = np.where(defined, scaled, np.nan)
    out = np.full(values.shape, np.nan)
    for j, where in enumerate(positions):
        out[: len(where), j] = scaled[where, j]
    return pd.DataFrame(out, columns=values.columns)


def long_features(closes: Mapping[str, pd.Series], sets: Sequence[str]
                  ) -> dict[str, dict[str, np.ndarray]]:
    """The non-base features of ``sets`` for every symbol on every one of its bars, as
    float64 arrays by name (NaN where not yet defined); the universe is ``closes`` (each a
    close series on its own ascending DatetimeIndex)."""
    symbols = list(closes)
    lengths = [len(closes[s]) for s in symbols]
    packed = np.full((max(lengths, default=0), len(symbols)), np.nan)
    for j, symbol in enumerate(symbols):
        packed[: lengths[j], j] = closes[symbol].to_numpy(dtype=np.float64)
    close = pd.DataFrame(packed)
    stamps = [closes[s].index.asi8 for s in symbols]
    calendar = np.unique(np.concatenate(stamps)) if stamps else np.array([], np.int64)
    positions = [np.searchsorted(calendar, own) for own in stamps]
    vol = _ex_ante_vol(_returns(close))
    features: dict[str, pd.DataFrame] = {}
    if "momentum" in sets:
        features.update(_momentum(close, vol))
    if "market" in sets:
        features.update(_market(close, vol, positions, len(calendar)))
    if "xs_rank" in sets:
        for name in _per_symbol_names(sets):
            features[f"rank_{name}"] = _ranks(features[name], positions, len(calendar))
    names = long_feature_names(sets)
    arrays = {name: features[name].to_numpy(dtype=np.float64) for name in names}
    return {symbol: {name: arrays[name][: lengths[j], j] for name in names}
            for j, symbol in enumerate(symbols)}


def warmup_features(names: Sequence[str]) -> list[str]:
    """The columns of ``names`` that belong to a long set (NaN until defined)."""
    known = set(long_feature_names(FEATURE_SETS))
    return [name for name in names if name in known]


__all__ = ["DEFAULT_FEATURE_SETS", "FEATURE_SETS", "LONG_HORIZONS", "LONG_WARMUP_BARS",
           "MACD_PAIRS", "VOL_SPAN", "check_feature_sets", "has_long_sets",
           "long_feature_names", "long_features", "warmup_features"]
