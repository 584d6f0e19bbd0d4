"""Caller-supplied output buffers: numpy arrays only, no two overlapping."""

from __future__ import annotations

import numpy as np
import pytest

from fastrl.env_config import EnvConfig
from fastrl.markets.single.env import TradingVecEnv

from sim_markets import random_market

# -- buffers ------------------------------------------------------------------------------

@pytest.mark.parametrize("buffers,message", [
    ({"rewards": [0.0] * 4}, "buffer 'rewards' must be a numpy array"),
    ({"ep_length": (0, 0, 0, 0)}, "buffer 'ep_length' must be a numpy array"),
])
def test_buffers_that_are_not_numpy_arrays_are_refused(buffers, message):
    with pytest.raises(ValueError, match=message):
        TradingVecEnv(random_market(2), 4, EnvConfig(window=3), buffers=buffers)


def test_aliasing_buffers_are_refused():
    market, config = random_market(2), EnvConfig(window=3)
    shared = np.zeros(8)
    with pytest.raises(ValueError, match="'rewards' and 'ep_return' overlap"):
        TradingVecEnv(market, 4, config, buffers={"rewards": shared[:4], "ep_return": shared[2:6]})
    same = np.zeros(4)
    with pytest.raises(ValueError, match="'ep_equity' and 'ep_costs' overlap"):
        TradingVecEnv(market, 4, config, buffers={"ep_equity": same, "ep_costs": same})
    flags = np.zeros(4, bool)
    with pytest.raises(ValueError, match="'terminated' and 'done' overlap"):
        TradingVecEnv(market, 4, config, buffers={"terminated": flags, "done": flags[:]})
    # Adjacent, non-overlapping slices of one array are fine.
    TradingVecEnv(market, 4, config, buffers={"rewards": shared[:4], "ep_return": shared[4:]})
