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
    np.minimum(weights, max_weight, out=weights)
    gross = weights.sum(axis=1)
    over = gross > max_gross
    if over.any():
        weights[over] *= (max_gross / gross[over])[:, None]
    if out is None:
        return weights
    out[...] = weights
    return out


__all__ = ["simplex_weights"]
