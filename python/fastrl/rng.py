"""splitmix64 in numpy: the twin of ``cpp/include/fastrl/rng.hpp``, one stream per env.

The numpy references (:mod:`fastrl.reference`, :mod:`fastrl.reference_portfolio`) draw
episode starts from these streams, so that the same seed gives the same episodes as the
C++ core, whatever the thread count.
"""

from __future__ import annotations

from typing import Any

import numpy as np

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_SEED_XOR = np.uint64(0x5851F42D4C957F2D)


def mix64(z: np.ndarray) -> np.ndarray:
    """splitmix64's output function (rng.hpp's mix64), elementwise on uint64."""
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def env_stream_seeds(seed: int, num_envs: int) -> np.ndarray:
    """Initial splitmix64 state of every env's stream (as rng.hpp's env_stream_seed)."""
    index = np.arange(1, num_envs + 1, dtype=np.uint64)
    return mix64((np.uint64(seed) ^ _SEED_XOR) + GOLDEN * index)


def next_below(state: np.ndarray, rows: np.ndarray, bound: Any) -> np.ndarray:
    """Advance the streams ``state[rows]`` and draw from each a uniform integer in
    [0, bound) (rng.hpp's next_below; ``bound`` a scalar or one per row)."""
    state[rows] += GOLDEN
    return (mix64(state[rows]) % np.asarray(bound).astype(np.uint64)).astype(np.int64)


__all__ = ["GOLDEN", "env_stream_seeds", "mix64", "next_below"]
