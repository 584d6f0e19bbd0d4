"""The default anchored levels and bounds tilt either way where the cost preset finances
leverage, and stay underweights under cash delivery."""

from __future__ import annotations

import numpy as np
import pytest

from fastrl.config import build_config
from fastrl.data.splits import build_market
from fastrl.env_config import EnvConfig
from fastrl.markets.single.env import TradingVecEnv

pytest.importorskip("fastrl._core")


@pytest.mark.parametrize("cost", ["bps", "nse_intraday"])
def test_anchored_defaults_overweight_and_underweight_where_leverage_is_priced(cost):
    config = EnvConfig(action_mode="anchored", cost=cost)
    assert config.max_pos == 2.0 and config.position_levels == (-1.0, -0.5, 0.0, 0.5, 1.0)
    exposures = config.exposure_of(range(len(config.position_levels)))
    assert exposures.max() == 2.0 and exposures.min() == 0.0 and 1.0 in exposures
    continuous = EnvConfig(action_mode="anchored", cost=cost, action="continuous")
    low, high = continuous.action_bounds()
    assert low == -1.0 and high == 1.0  # exposure 1 - u in [0, 2]
    trained = build_config(overrides={"env.cost": cost, "env.action_mode": "anchored"})
    assert trained.env.max_pos == 2.0 and trained.env.position_levels == config.position_levels


def test_anchored_overweight_level_trades_a_leveraged_book():
    config = EnvConfig(window=4, episode_length=0, random_start=False, action_mode="anchored",
                       cost="bps")
    market = build_market(["BPCL"], test_days=30, window=4).test
    env = TradingVecEnv(market, 1, config, num_threads=1, seed=0)
    env.reset(seed=0)
    for _ in range(3):
        env.step(np.array([config.position_levels.index(-1.0)]))
    assert env.get_state()["position"][0] == pytest.approx(2.0, rel=1e-2)


def test_delivery_and_explicit_bounds_keep_their_levels():
    assert EnvConfig(action_mode="anchored").position_levels == (0.0, 0.5, 1.0)
    assert EnvConfig(action_mode="anchored").max_pos == 1.0
    assert EnvConfig(action_mode="anchored", short_borrow_rate=0.05).max_pos == 1.0
    bps = EnvConfig(cost="bps")  # absolute: unchanged
    assert bps.max_pos == 1.0 and bps.position_levels == (-1.0, 0.0, 1.0)
    explicit = EnvConfig(action_mode="anchored", cost="bps", max_pos=1.0)
    assert explicit.position_levels == (0.0, 0.5, 1.0)
    partial = EnvConfig(action_mode="anchored", cost="bps", max_pos=1.5)
    assert partial.position_levels == (-0.5, -0.25, 0.0, 0.5, 1.0)
    switched = EnvConfig(action_mode="anchored", cost="bps")
    switched.cost = "nse_delivery"
    switched.validate()  # a default follows the cost
    assert switched.max_pos == 1.0 and switched.position_levels == (0.0, 0.5, 1.0)
