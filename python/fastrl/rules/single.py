"""Single-symbol rules: target exposures in [0, 1] decided at each bar's close.

Each function maps one segment's closes (and its month-end rows, see
:func:`fastrl.data.months.month_ends`) to the exposure decided at the close of every row,
from that row's close and earlier ones only (pandas rolling windows and shifts look back,
never forward). Before a rule has enough history it is **flat** (exposure 0): its warm-up
position. A monthly rule decides on month-end rows and holds that exposure until the next month end.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from fastrl.metrics import periods_per_year
from fastrl.rule_params import (
    DailyAverageParams,
    MomentumParams,
    MonthlyAverageParams,
    RuleParams,
    VolTargetParams,
)


def held_monthly(decided: np.ndarray, month_end: np.ndarray) -> np.ndarray:
    """``decided`` taken on month-end rows and held until the next one; flat before the
    first month end and wherever the decision is undefined (NaN: warm-up)."""
    on_ends = np.where(month_end, np.nan_to_num(decided, nan=0.0), np.nan)
    return pd.Series(on_ends).ffill().fillna(0.0).to_numpy()


def _rebalanced(decided: np.ndarray, month_end: np.ndarray, rebalance: str) -> np.ndarray:
    if rebalance == "monthly":
        return held_monthly(decided, month_end)
    return np.nan_to_num(decided, nan=0.0)


def buy_and_hold(_params: RuleParams, close: np.ndarray, _month_end: np.ndarray,
                 _freq: str) -> np.ndarray:
    """Fully invested from the first decision on."""
    return np.ones(len(close))


def voltarget(params: VolTargetParams, close: np.ndarray, month_end: np.ndarray,
              freq: str) -> np.ndarray:
    """``min(max_exposure, target_vol / vol)``, vol the sample standard deviation of the
    last ``window`` simple returns, annualised with the bar's periods per year; flat until
    ``window`` returns exist; a zero vol takes ``max_exposure``."""
    returns = pd.Series(close).pct_change()
    vol = returns.rolling(params.window).std(ddof=1).to_numpy() * math.sqrt(
        periods_per_year(freq))
    with np.errstate(divide="ignore"):
        exposure = np.minimum(params.max_exposure, params.target_vol / vol)
    return _rebalanced(exposure, month_end, params.rebalance)


def momentum(params: MomentumParams, close: np.ndarray, month_end: np.ndarray,
             _freq: str) -> np.ndarray:
    """1 when ``close[t - skip] / close[t - lookback] - 1 > 0``, else 0; flat for the first
    ``lookback`` rows."""
    series = pd.Series(close)
    ret = series.shift(params.skip) / series.shift(params.lookback) - 1.0
    signal = np.where(ret.isna(), np.nan, (ret > 0).astype(np.float64))
    return _rebalanced(signal, month_end, params.rebalance)


def ma10(params: MonthlyAverageParams, close: np.ndarray, month_end: np.ndarray,
         _freq: str) -> np.ndarray:
    """At each month end: 1 when its close is above the mean of the last ``months``
    month-end closes, else 0; flat until ``months`` month ends have passed."""
    ends = pd.Series(close[month_end])
    average = ends.rolling(params.months).mean()
    signal = np.where(average.isna(), np.nan, (ends > average).astype(np.float64))
    decided = np.full(len(close), np.nan)
    decided[month_end] = signal
    return held_monthly(decided, month_end)


def ma200(params: DailyAverageParams, close: np.ndarray, _month_end: np.ndarray,
          _freq: str) -> np.ndarray:
    """1 when the close is above its ``window``-bar mean, else 0, every bar; flat for the
    first ``window - 1`` rows."""
    series = pd.Series(close)
    average = series.rolling(params.window).mean()
    return np.where(average.isna(), 0.0, (series > average).astype(np.float64))


__all__ = ["buy_and_hold", "held_monthly", "ma10", "ma200", "momentum", "voltarget"]
