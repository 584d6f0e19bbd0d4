"""The portfolio policy's action: Gaussian logits over symbols + cash, mapped by a softmax.

Choice: a **logistic-normal** head, not a Dirichlet. The policy samples K = A + 1 logits
``z ~ N(mu(s), diag(sigma^2))`` (A symbols, then cash) and PPO stores ``z`` itself, so the
probability ratio uses the exact log-density of what was sampled (a sum of K Normal
log-densities), as the single-symbol Gaussian head does with its unclipped exposure. The
weights ``softmax(z)`` exist only on the way to the env (:func:`simplex_weights`).

Why not a Dirichlet: its log-density is exact on the simplex too, but PPO then stores the
weights, and a policy that wants a corner (all cash, or one name) pushes concentrations
towards 0 where samples underflow to exact zeros, ``log w`` is -inf and the ratio NaNs
unless weights are clamped, which makes the stored log-probs no longer those of the
action sent. Logits have no boundary: any corner is reachable with finite ``z``, entropy
and KL are closed-form, and the head reuses the Gaussian machinery (state-independent
log-std, fp32 head). What it gives up: the map is not one-to-one (adding a constant to
every logit changes nothing), so the density is over logits rather than weights; PPO only
needs a consistent density of the stored action, which this is. The deterministic action
is ``softmax(mu)`` (the weights at the mean logits, not the mean weights).

Caps: the softmax gives long-only weights summing to 1 with cash. Each symbol's weight is
clipped to ``max_weight`` (the excess goes to cash) and, when the symbols' sum exceeds
``max_gross``, scaled down to it; so the env always receives a valid action.

Anchored actions (env ``action_mode: anchored``, :func:`tilt_weights`): the same K = A + 1
Gaussian numbers, read as a tilt of equal weight. The first A are log-weight tilts: the
symbols' weights are ``softmax(z[:A])``, exactly 1/A each at zero tilt. The last is an
underweight ``u`` clipped to [0, ``max_underweight``]: the fraction of equity kept in cash,
as the single-symbol anchored action is (0 at or below zero, so the benchmark is an
interior-or-boundary point the Gaussian reaches with a zero mean). Weights are
``(1 - u) softmax(z[:A])``, then the caps as above. Why this parametrisation: its zero is
equal weight exactly (bit for bit: the untrained policy's weights are the equal-weight
benchmark's 1/A), every long-only weight vector within the caps is reachable, and it keeps
the logistic-normal head's exact log-density of the stored action.
"""

from __future__ import annotations

import numpy as np


def simplex_weights(
    logits: np.ndarray,
    max_weight: float = 1.0,
    max_gross: float = 1.0,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Symbol weights [N, A] (float64) from logits [N, A + 1] (cash last), within the caps.

    The softmax runs in float64 so the caps hold exactly (the env allows 1e-9 of rounding).
    """
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim != 2 or z.shape[1] < 2:
        raise ValueError(f"logits must have shape (N, A + 1) with A >= 1, got {z.shape}")
    if not (0.0 < max_weight <= 1.0 and 0.0 < max_gross <= 1.0):
        raise ValueError(f"max_weight and max_gross must lie in (0, 1], got {max_weight}, "
                         f"{max_gross}")
    shifted = np.exp(z - z.max(axis=1, keepdims=True))  # stable: the largest term is exp(0)
    weights = shifted[:, :-1] / shifted.sum(axis=1, keepdims=True)
    return _capped(weights, max_weight, max_gross, 0.0, out)


def _capped(weights: np.ndarray, max_weight: float, max_gross: float, slack: float,
            out: np.ndarray | None) -> np.ndarray:
    """``weights`` capped at ``max_weight`` each, then scaled to ``max_gross`` where their
    sum exceeds it by more than ``slack``; into ``out`` when given."""
    np.minimum(weights, max_weight, out=weights)
    gross = weights.sum(axis=1)
    over = gross > max_gross + slack
    if over.any():
        weights[over] *= (max_gross / gross[over])[:, None]
    if out is None:
        return weights
    out[...] = weights
    return out


def tilt_weights(
    tilts: np.ndarray,
    max_underweight: float = 1.0,
    max_weight: float = 1.0,
    max_gross: float = 1.0,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Symbol weights [N, A] (float64) from anchored actions [N, A + 1]: log-weight tilts of
    equal weight, then the underweight (module doc). Zero tilts give exactly 1/A each."""
    z = np.asarray(tilts, dtype=np.float64)
    if z.ndim != 2 or z.shape[1] < 2:
        raise ValueError(f"tilts must have shape (N, A + 1) with A >= 1, got {z.shape}")
    if not (0.0 < max_underweight <= 1.0):
        raise ValueError(f"max_underweight must lie in (0, 1], got {max_underweight}")
    if not (0.0 < max_weight <= 1.0 and 0.0 < max_gross <= 1.0):
        raise ValueError(f"max_weight and max_gross must lie in (0, 1], got {max_weight}, "
                         f"{max_gross}")
    symbols = z[:, :-1]
    shifted = np.exp(symbols - symbols.max(axis=1, keepdims=True))
    weights = shifted / shifted.sum(axis=1, keepdims=True)
    invested = 1.0 - np.clip(z[:, -1], 0.0, max_underweight)
    weights *= invested[:, None]
    # A sum of A copies of 1/A may round a hair above 1: the env accepts 1e-9 of rounding,
    # and scaling it would move the weights off the benchmark's.
    return _capped(weights, max_weight, max_gross, GROSS_ROUNDING, out)


# how far above max_gross a sum of weights may round before tilt_weights scales it down
GROSS_ROUNDING = 1e-12

__all__ = ["GROSS_ROUNDING", "simplex_weights", "tilt_weights"]
