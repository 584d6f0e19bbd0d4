"""make_env on the bundled bars: the one-liner users start from."""

from __future__ import annotations

import numpy as np
import pytest

import fastrl
from fastrl.env_config import EnvConfig


def test_make_env_on_bundled_daily_bars_steps_and_splits():
    env = fastrl.make_env(["BPCL", "HDFCLIFE"], freq="1d", split="train", num_envs=8,
                          config=EnvConfig(window=16), seed=0)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (8, env.obs_dim) and obs.dtype == np.float32
    assert np.isfinite(obs).all()
    rng = np.random.default_rng(0)
    for _ in range(50):
        obs, rewards, terminated, truncated, info = env.step(
            rng.integers(0, len(env.config.position_levels), 8))
    assert np.isfinite(rewards).all()
    test_env = fastrl.make_env(["BPCL"], split="test", num_envs=1, test_days=30,
                               config=EnvConfig(window=16, random_start=False, episode_length=0))
    # The test block holds the 30 test days plus window - 1 context rows.
    assert test_env.market.num_bars == 30 + 15


def test_make_env_refuses_unknown_symbol_and_split():
    with pytest.raises(ValueError, match="NOSUCH"):
        fastrl.make_env(["NOSUCH"], num_envs=2)
    with pytest.raises(ValueError, match="split"):
        fastrl.make_env(["BPCL"], split="holdout", num_envs=2)
    with pytest.raises(ValueError, match="val_days"):
        fastrl.make_env(["BPCL"], split="val", num_envs=2)


def test_make_env_drops_bad_rows_only_when_asked():
    with pytest.raises(ValueError, match="HDFCBANK"):
        fastrl.make_env(["HDFCBANK"], freq="5min", num_envs=2, config=EnvConfig(window=8))
    env = fastrl.make_env(["HDFCBANK"], freq="5min", num_envs=2, config=EnvConfig(window=8),
                          on_bad_rows="drop")
    assert env.market.num_bars > 1000
