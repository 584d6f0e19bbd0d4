"""Feature sets with a longer memory and a view of the market (``data.features``).

The base set (:mod:`fastrl.features`) looks back at most 33 bars. These sets add, per
symbol, what has beaten simple benchmarks out of sample (Lim, Zohren and Roberts 2019,
*Enhancing Time Series Momentum Strategies Using Deep Neural Networks*; Baz et al. 2015,
*Dissecting Investment Strategies in the Cross Section and Time Series*):

Horizons count bars: trading days for daily bars, 5-minute bars for intraday ones. Rolling
stds have ``ddof=1``. EWMs are pandas' ``adjust=True`` form (weight ``(1 - alpha) ** i`` on
the value ``i`` bars back, divided by the sum of the weights; the std bias-corrected by
``W^2 / (W^2 - sum w^2)``) **truncated**: each keeps only its newest ``L`` weights, ``L =
ewm_length(alpha)`` the fewest bars whose dropped weights would carry at most
``EWM_TAIL`` = 1% of the untruncated weight, and is defined only once all ``L`` values
exist (it is exactly pandas' EWM of those ``L`` values). So: the ex-ante vol (span 60)
reads 139 returns; the MACD means 35/109 (8, 24), 72/219 (16, 48), 146/440 (32, 96) closes.
Nothing else is truncated (the returns, the 63-bar and 252-bar stds and the ranks are
finite windows by definition).

``momentum`` (one symbol's closes ``p``; ``r_t = p_t / p_{t-1} - 1`` its 1-bar simple return):

========================  ============================================================
``mom_h`` (h = 21, 63,    ``(p_t / p_{t-h} - 1) / (sigma_t * sqrt(h))``: the return over
126, 252)                 ``h`` bars scaled by the ex-ante daily volatility ``sigma_t``, the
                          exponentially weighted std of ``r`` (span 60, truncated at 139
                          returns), as Lim et al. do
``macd_S_L`` ((8, 24),    Baz et al.'s normalised MACD: ``m_S - m_L`` with ``m_S`` the EWM
(16, 48), (32, 96))       mean of ``p`` with ``alpha = 1/S`` (half-life
                          ``log 0.5 / log(1 - 1/S)``, truncated as above), divided by the
                          63-bar rolling std of ``p`` (``q``), then by the 252-bar rolling std
                          of ``q``
========================  ============================================================

``market`` (the universe = every symbol of the run, i.e. every symbol handed to
:func:`fastrl.features.compute_features_many`, on the union of their timestamps):

========================  ============================================================
``mkt_ret_h``             the universe's return over ``h`` rows of the union calendar,
                          ``I_t / I_{t-h} - 1``, scaled by ``sigma^U_t * sqrt(h)``. ``I`` is
                          the equal-weight index: ``I_t / I_{t-h} = prod (1 + u_k)`` over
                          rows ``t-h < k <= t``, ``u_k`` the mean 1-bar return of the
                          symbols with a bar at row ``k`` and one before it (a symbol not
                          listed yet, halted that day or delisted is out of that row's mean;
                          a row with none is 0)
``mkt_vol``               ``sigma^U_t``: EWM std of ``u`` (span 60, truncated at 139 rows
                          with a return)
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

Bounded look-back and warm-up: a long feature at row ``t`` reads at most the
``LONG_WARMUP_BARS`` (690) bars before ``t`` (macd_32_96: 440 closes for the slow EWM, then
252 values of ``q``), and is NaN until that many exist. Given the same bars over those rows
(for the market set: every symbol's), it is identical, bit for bit, whatever history precedes
them: each trailing sum or product is accumulated over its fixed window in one fixed order
(tests/test_features_long.py). So the live path's minimum feed and a walk-forward
``--train-window`` window see the features the backtest on the whole history sees. The rows
kept are the base set's (its warm-up, 33 bars, is dropped as always), so splits,
walk-forward windows and first trade days do not depend on the sets chosen. The normaliser
is fitted on a feature's defined training rows and maps NaN to 0 (the training mean) after
normalisation (``FeatureNormaliser(..., warmup=...)``).
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
# Every EWM keeps its newest weights only, cut where the dropped ones would carry at most
# this share of the untruncated EWM's total weight (see ewm_length).
EWM_TAIL = 0.01
VOL_ALPHA = 2.0 / (VOL_SPAN + 1)


def _ewm_bars(alpha: float) -> int:
    return math.ceil(math.log(EWM_TAIL) / math.log(1.0 - alpha))


# Bars before row t that a long feature at t reads (its look-back; the first row where it is
# defined): the slowest is macd_32_96, whose q needs the slow EWM's 440 closes (or the
# 63-bar price std), then 252 values of q; mom_h/rel_ret_h read 252 bars back, the ex-ante
# vol 139 returns (140 closes).
LONG_WARMUP_BARS = max(
    *(max(_ewm_bars(1.0 / slow), MACD_PRICE_STD) - 1 + MACD_SIGNAL_STD - 1
      for _, slow in MACD_PAIRS),
    max(LONG_HORIZONS), _ewm_bars(VOL_ALPHA))


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


# The computations run on a [rows, symbols] array: column j holds symbol j's closes on its
# own bars, top-aligned and padded with NaN after its last bar (as the base features do):
# every operation is elementwise or runs down one column, so the padding never reaches a
# symbol's rows. The universe and the ranks read the union calendar through ``positions``
# (each symbol's rows there).
#
# Bounded look-back: every trailing statistic below (EWM, rolling std, product over h bars)
# is a sum or product over a fixed number of rows ending at t, accumulated lag by lag in one
# fixed order (lag 0, 1, 2, ...) with elementwise numpy operations; a row's value is
# therefore a function of its own window alone, bit for bit, whatever came before it.


def ewm_length(alpha: float) -> int:
    """The bars an EWM with smoothing ``alpha`` keeps: the fewest ``L`` with
    ``(1 - alpha) ** L <= EWM_TAIL``, i.e. the weights it drops would carry at most
    ``EWM_TAIL`` of the untruncated EWM's total weight."""
    return _ewm_bars(alpha)


def _ewm_weights(alpha: float) -> np.ndarray:
    """pandas' ``adjust=True`` weights ``(1 - alpha) ** i`` for lags ``i < ewm_length``."""
    return (1.0 - alpha) ** np.arange(ewm_length(alpha), dtype=np.float64)


def _trailing_mean(x: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Row ``t``: ``sum_i weights[i] * x[t - i] / sum(weights)`` over ``i < len(weights)``
    (down axis 0); NaN where the window reaches before row 0 or holds a NaN."""
    rows, n = len(x), len(weights)
    acc = x * weights[0]
    for i in range(1, min(n, rows)):
        acc[i:] += x[: rows - i] * weights[i]
    out = acc / float(weights.sum())
    out[: n - 1] = np.nan
    return out


def _trailing_std(x: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The bias-corrected weighted std of the window of :func:`_trailing_mean` (pandas'
    ``ewm(...).std()`` correction ``W^2 / (W^2 - sum w^2)``; ``ddof=1`` for unit weights),
    computed about the window's mean (two passes, so a flat window gives exactly 0)."""
    rows, n = len(x), len(weights)
    mean = _trailing_mean(x, weights)
    total, squares = float(weights.sum()), float((weights * weights).sum())
    unit = bool((weights == 1.0).all())
    acc, dev = np.zeros_like(x), np.empty_like(x)
    for i in range(min(n, rows)):
        d = dev[i:]
        np.subtract(x[: rows - i], mean[i:], out=d)
        np.multiply(d, d, out=d)
        if not unit:
            d *= weights[i]
        acc[i:] += d
    return np.sqrt(acc * (total / (total * total - squares)))


def _window_product(growth: np.ndarray, h: int) -> np.ndarray:
    """Row ``t``: ``growth[t] * growth[t-1] * ... * growth[t-h+1]`` (in that order); NaN
    for rows ``t < h`` (as ``I_t / I_{t-h}`` needs row ``t - h``)."""
    rows = len(growth)
    acc = growth.copy()
    for i in range(1, min(h, rows)):
        acc[i:] *= growth[: rows - i]
    acc[:h] = np.nan
    return acc


def _returns(close: np.ndarray) -> np.ndarray:
    out = np.full_like(close, np.nan)
    out[1:] = close[1:] / close[:-1] - 1.0
    return out


def _ex_ante_vol(returns: np.ndarray) -> np.ndarray:
    return _trailing_std(returns, _ewm_weights(VOL_ALPHA))


def _ratio(value: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``value / scale``; 0 where the scale is 0 (a flat price), NaN where it is NaN."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = value / np.where(scale > 0, scale, np.nan)
    return np.where(scale == 0, 0.0, out)


def _scaled(value: np.ndarray, vol: np.ndarray, horizon: int) -> np.ndarray:
    return _ratio(value, vol * math.sqrt(horizon))


def _lagged(x: np.ndarray, h: int) -> np.ndarray:
    out = np.full_like(x, np.nan)
    out[h:] = x[: len(x) - h]
    return out


def _momentum(close: np.ndarray, vol: np.ndarray) -> dict[str, np.ndarray]:
    """``mom_h`` and ``macd_S_L`` (NaN in their warm-up)."""
    out = {f"mom_{h}": _scaled(close / _lagged(close, h) - 1.0, vol, h)
           for h in LONG_HORIZONS}
    price_std = _trailing_std(close, np.ones(MACD_PRICE_STD))
    signal = np.ones(MACD_SIGNAL_STD)
    for fast, slow in MACD_PAIRS:
        macd = (_trailing_mean(close, _ewm_weights(1.0 / fast))
                - _trailing_mean(close, _ewm_weights(1.0 / slow)))
        q = _ratio(macd, price_std)
        out[f"macd_{fast}_{slow}"] = _ratio(q, _trailing_std(q, signal))
    return out


def _on_calendar(values: np.ndarray, positions: list[np.ndarray], rows: int) -> np.ndarray:
    """[calendar rows, symbols]: each symbol's values at its rows of the union calendar,
    NaN where it has no bar."""
    out = np.full((rows, len(positions)), np.nan)
    for j, where in enumerate(positions):
        out[where, j] = values[: len(where), j]
    return out


def _own_growth(growth: np.ndarray, positions: list[np.ndarray], shape: tuple[int, int]
                ) -> np.ndarray:
    """[own rows, symbols]: the universe's growth between each symbol's bar and its previous
    one, ``prod (1 + u_k)`` over the calendar rows after the previous bar through this one
    (newest first); NaN at its first bar."""
    out = np.full(shape, np.nan)
    for j, where in enumerate(positions):
        if len(where) < 2:
            continue
        now, gap = where[1:], np.diff(where)
        step = growth[now]
        for back in range(1, int(gap.max())):
            more = gap > back
            step[more] *= growth[now[more] - back]
        out[1: len(where), j] = step
    return out


def _market(close: np.ndarray, vol: np.ndarray, positions: list[np.ndarray],
            calendar_rows: int) -> dict[str, np.ndarray]:
    """``mkt_ret_h``, ``mkt_vol`` and ``rel_ret_h``, the universe being every column."""
    returns = _on_calendar(_returns(close), positions, calendar_rows)
    defined = ~np.isnan(returns)
    count = defined.sum(axis=1)
    total = np.where(defined, returns, 0.0).sum(axis=1)
    mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    growth = 1.0 + np.where(np.isnan(mean), 0.0, mean)
    some = ~np.isnan(mean)
    market_vol = np.full(calendar_rows, np.nan)
    market_vol[some] = _ex_ante_vol(mean[some])  # over the rows with a return
    market_vol = pd.Series(market_vol).ffill().to_numpy()
    universe = {f"mkt_ret_{h}": _scaled(_window_product(growth, h) - 1.0, market_vol, h)
                for h in LONG_HORIZONS}
    universe["mkt_vol"] = market_vol

    def own_rows(series: np.ndarray) -> np.ndarray:
        values = np.full(close.shape, np.nan)
        for j, where in enumerate(positions):
            values[: len(where), j] = series[where]
        return values

    out = {name: own_rows(values) for name, values in universe.items()}
    own_growth = _own_growth(growth, positions, close.shape)
    for h in LONG_HORIZONS:
        active = (close / _lagged(close, h) - 1.0) - (_window_product(own_growth, h) - 1.0)
        out[f"rel_ret_{h}"] = _scaled(active, vol, h)
    return out


def _ranks(values: np.ndarray, positions: list[np.ndarray], calendar_rows: int
           ) -> np.ndarray:
    """Each symbol's rank in [0, 1] among the symbols with a defined value at the same
    timestamp (``(rank - 1) / (n - 1)``, ties averaged; 0.5 alone; NaN where undefined)."""
    frame = pd.DataFrame(_on_calendar(values, positions, calendar_rows))
    defined = frame.notna().to_numpy()
    count = defined.sum(axis=1)[:, None]
    ranks = frame.rank(axis=1, method="average").to_numpy()
    scaled = np.where(count > 1, (ranks - 1.0) / np.maximum(count - 1, 1), 0.5)
    scaled = np.where(defined, scaled, np.nan)
    out = np.full(values.shape, np.nan)
    for j, where in enumerate(positions):
        out[: len(where), j] = scaled[where, j]
    return out


def long_features(closes: Mapping[str, pd.Series], sets: Sequence[str]
                  ) -> dict[str, dict[str, np.ndarray]]:
    """The non-base features of ``sets`` for every symbol on every one of its bars, as
    float64 arrays by name (NaN where not yet defined); the universe is ``closes`` (each a
    close series on its own ascending DatetimeIndex)."""
    symbols = list(closes)
    lengths = [len(closes[s]) for s in symbols]
    close = np.full((max(lengths, default=0), len(symbols)), np.nan)
    for j, symbol in enumerate(symbols):
        close[: lengths[j], j] = closes[symbol].to_numpy(dtype=np.float64)
    stamps = [closes[s].index.asi8 for s in symbols]
    calendar = np.unique(np.concatenate(stamps)) if stamps else np.array([], np.int64)
    positions = [np.searchsorted(calendar, own) for own in stamps]
    vol = _ex_ante_vol(_returns(close))
    features: dict[str, np.ndarray] = {}
    if "momentum" in sets:
        features.update(_momentum(close, vol))
    if "market" in sets:
        features.update(_market(close, vol, positions, len(calendar)))
    if "xs_rank" in sets:
        for name in _per_symbol_names(sets):
            features[f"rank_{name}"] = _ranks(features[name], positions, len(calendar))
    names = long_feature_names(sets)
    return {symbol: {name: features[name][: lengths[j], j] for name in names}
            for j, symbol in enumerate(symbols)}


def warmup_features(names: Sequence[str]) -> list[str]:
    """The columns of ``names`` that belong to a long set (NaN until defined)."""
    known = set(long_feature_names(FEATURE_SETS))
    return [name for name in names if name in known]


__all__ = ["DEFAULT_FEATURE_SETS", "EWM_TAIL", "FEATURE_SETS", "LONG_HORIZONS",
           "LONG_WARMUP_BARS", "MACD_PAIRS", "VOL_SPAN", "check_feature_sets", "ewm_length",
           "has_long_sets", "long_feature_names", "long_features", "warmup_features"]
