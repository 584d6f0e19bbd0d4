"""Portfolio rules: target weights over the panel's symbols decided at a row's close.

Each function maps the marks up to the decision row ([t + 1, A]: each symbol's last
traded close, 0 before its first, :attr:`fastrl.data.panel.PanelBlock.mark`) and which
symbols trade on that row to long-only weights summing to 1, or all zero (cash). A symbol
is **eligible** when it trades on the decision row and has a mark on every row its window
reads; the others get weight 0, and with no eligible symbol the rule holds cash: its
warm-up position. A stale mark (a day a symbol did not trade) counts as a zero return.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from sklearn.covariance import LedoitWolf

from fastrl.rule_params import (
    CrossSectionalMomentumParams,
    InverseVolParams,
    MinVarianceParams,
    RuleParams,
)


def equal_weight(_params: RuleParams, marks: np.ndarray, _tradable: np.ndarray) -> np.ndarray:
    """1/A in every symbol, traded or not (the equal-weight baselines' target)."""
    return np.full(marks.shape[1], 1.0 / marks.shape[1])


def _window_returns(marks: np.ndarray, tradable: np.ndarray, window: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(eligible symbols [A] bool, their last ``window`` simple returns [window, m])."""
    if marks.shape[0] < window + 1:
        return np.zeros(marks.shape[1], dtype=bool), np.zeros((window, 0))
    last = marks[-(window + 1):]
    eligible = tradable & np.all(last > 0, axis=0)
    prices = last[:, eligible]
    return eligible, prices[1:] / prices[:-1] - 1.0


def inverse_vol(params: InverseVolParams, marks: np.ndarray, tradable: np.ndarray
                ) -> np.ndarray:
    """Weights proportional to 1 / the sample standard deviation of the last ``window``
    returns (symbols with zero vol are left out)."""
    eligible, returns = _window_returns(marks, tradable, params.window)
    weights = np.zeros(marks.shape[1])
    if not eligible.any():
        return weights
    vol = returns.std(axis=0, ddof=1)
    inverse = np.where(vol > 0, 1.0 / np.where(vol > 0, vol, 1.0), 0.0)
    if inverse.sum() == 0:
        return weights
    weights[eligible] = inverse / inverse.sum()
    return weights


def long_only_min_variance(covariance: np.ndarray) -> np.ndarray:
    """argmin w' C w subject to sum(w) = 1, w >= 0 (SLSQP from equal weights)."""
    m = covariance.shape[0]
    if m == 1:
        return np.ones(1)
    scale = float(np.mean(np.diag(covariance)))  # a well-scaled objective for the solver
    c = covariance / scale
    result = minimize(lambda w: w @ c @ w, np.full(m, 1.0 / m), jac=lambda w: 2.0 * c @ w,
                      method="SLSQP", bounds=[(0.0, 1.0)] * m,
                      constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0,
                                    "jac": lambda w: np.ones_like(w)}],
                      options={"ftol": 1e-15, "maxiter": 1000})
    if not result.success:
        raise RuntimeError(f"min_variance: the long-only solve failed ({result.message})")
    weights = np.clip(result.x, 0.0, None)
    return weights / weights.sum()


def min_variance(params: MinVarianceParams, marks: np.ndarray, tradable: np.ndarray
                 ) -> np.ndarray:
    """Long-only minimum variance on scikit-learn's Ledoit-Wolf covariance of the last
    ``window`` returns."""
    eligible, returns = _window_returns(marks, tradable, params.window)
    weights = np.zeros(marks.shape[1])
    if eligible.any():
        covariance = LedoitWolf().fit(returns).covariance_
        weights[eligible] = long_only_min_variance(covariance)
    return weights


def xs_momentum(params: CrossSectionalMomentumParams, marks: np.ndarray,
                tradable: np.ndarray) -> np.ndarray:
    """Equal weight in the ``top_k`` eligible symbols (all of them when fewer) with the
    highest ``mark[t - skip] / mark[t - lookback] - 1``; ties go to the earlier column."""
    weights = np.zeros(marks.shape[1])
    t = marks.shape[0] - 1
    if t < params.lookback:
        return weights
    past, recent = marks[t - params.lookback], marks[t - params.skip]
    eligible = np.flatnonzero(tradable & (past > 0) & (recent > 0))
    if eligible.size == 0:
        return weights
    score = recent[eligible] / past[eligible] - 1.0
    top = eligible[np.argsort(-score, kind="stable")[:params.top_k]]
    weights[top] = 1.0 / top.size
    return weights


__all__ = ["equal_weight", "inverse_vol", "long_only_min_variance", "min_variance",
           "xs_momentum"]
