"""The C++ core against reference.py: same actions -> same state, costs and rewards."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastrl import _core
from fastrl.env_config import EnvConfig
from fastrl.markets.single.env import TradingVecEnv
from fastrl.reference import ReferenceVecEnv

from sim_markets import intraday_market, random_market

# every per-env state array but the RNG stream, which the reference steps identically
STATE = tuple(key for key in _core.STATE_KEYS if key != "rng_state")


def assert_same_step(fast_out, ref_out, fast: TradingVecEnv, ref: ReferenceVecEnv, where: str):
    obs, rew, term, trunc, info = fast_out
    r_obs, r_rew, r_term, r_trunc, r_info = ref_out
    np.testing.assert_array_equal(term, r_term, err_msg=f"terminated {where}")
    np.testing.assert_array_equal(trunc, r_trunc, err_msg=f"truncated {where}")
    np.testing.assert_allclose(rew, r_rew, rtol=1e-9, atol=1e-9, err_msg=f"rewards {where}")
    np.testing.assert_allclose(obs, r_obs, rtol=1e-5, atol=1e-6, err_msg=f"obs {where}")
    for name in STATE:
        np.testing.assert_allclose(getattr(fast._sim, name), getattr(ref, name), rtol=1e-9,
                                   atol=1e-9, err_msg=f"{name} {where}")
    np.testing.assert_array_equal(fast._sim.rng_state, ref.rng_state, err_msg=f"rng {where}")
    done = info["_episode"]
    np.testing.assert_array_equal(done, r_info["_episode"])
    for key in ("r", "l", "equity", "costs", "trades", "position", "shares", "liquidation"):
        np.testing.assert_allclose(info["episode"][key][done], r_info["episode"][key][done],
                                   rtol=1e-9, atol=1e-9, err_msg=f"episode {key} {where}")
    np.testing.assert_allclose(info["final_obs"][done], r_info["final_obs"][done], rtol=1e-5,
                               atol=1e-6, err_msg=f"final_obs {where}")


def run_pair(config: EnvConfig, seed: int, steps: int, num_envs: int, threads: int,
             market_seed: int = 0, action_seed: int = 1, intraday: bool = False):
    market = intraday_market(market_seed) if intraday else random_market(market_seed)
    fast = TradingVecEnv(market, num_envs, config, num_threads=threads, seed=seed)
    ref = ReferenceVecEnv(market, num_envs, config, seed=seed)
    obs, _ = fast.reset(seed=seed)
    r_obs, _ = ref.reset(seed=seed)
    np.testing.assert_allclose(obs, r_obs, rtol=1e-5, atol=1e-6)
    rng = np.random.default_rng(action_seed)
    resets = 0
    last = None
    for k in range(steps):
        if config.action == "discrete":
            # Sticky actions so positions are held for a while as well as flipped.
            actions = rng.integers(0, len(config.position_levels), num_envs)
            if last is not None and rng.random() < 0.5:
                actions = last
        else:
            actions = rng.uniform(config.min_pos, config.max_pos, num_envs)
            actions[rng.random(num_envs) < 0.3] = 0.0
        last = actions
        out = fast.step(actions)
        r_out = ref.step(actions.copy())
        assert_same_step(out, r_out, fast, ref, f"at step {k}")
        resets += int(out[4]["_episode"].sum())
    return resets


@st.composite
def configs(draw) -> EnvConfig:
    values = dict(
        window=draw(st.integers(1, 6)),
        episode_length=draw(st.sampled_from([0, 7, 25])),
        action=draw(st.sampled_from(["discrete", "continuous"])),
        position_levels=draw(st.sampled_from(
            [None, (-1.0, 0.0, 1.0), (0.0, 1.0), (-0.5, 0.0, 0.5, 1.0)])),
        min_pos=draw(st.sampled_from([None, -1.0])),
        max_pos=draw(st.sampled_from([1.0, 2.0])),
        execution=draw(st.sampled_from(["next_open", "close"])),
        cost=draw(st.sampled_from(["nse_delivery", "nse_intraday", "bps", "zero"])),
        half_spread_bps=draw(st.sampled_from([None, 0.0, 2.5])),
        slippage_bps=draw(st.sampled_from([None, 0.0, 7.0])),
        reward=draw(st.sampled_from(["log_return", "pnl", "diff_sharpe"])),
        drawdown_penalty=draw(st.sampled_from([0.0, 0.1])),
        turnover_penalty=draw(st.sampled_from([0.0, 0.01])),
        initial_cash=draw(st.sampled_from([1e5, 1e6, 3e3])),  # 3e3: a few dozen shares
        equity_floor=draw(st.sampled_from([0.0, 0.5, 0.95])),
        random_start=draw(st.booleans()),
        segment_assignment=draw(st.sampled_from(["random", "round_robin"])),
        short_borrow_rate=draw(st.sampled_from([0.0, 0.0, 0.08, 3.0])),  # 3.0: visible fees
        integer_shares=draw(st.sampled_from([None, True, False])),
        intraday_cutoff=draw(st.sampled_from(["15:20", "15:22", "14:00", "09:40"])),
    )
    if values["cost"] == "nse_delivery" and values["short_borrow_rate"] == 0.0:
        values["position_levels"] = None  # long/flat: shorts need a borrow rate here
        values["min_pos"] = None
    if values["cost"] == "nse_delivery":
        values["max_pos"] = 1.0  # cash delivery is paid in full: no leverage
    return EnvConfig(**values)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=configs(), seed=st.integers(0, 2**64 - 1), threads=st.sampled_from([1, 2, 3]),
       intraday=st.booleans())
def test_core_matches_reference_on_random_streams(config, seed, threads, intraday):
    config.min_envs_per_thread = 1
    run_pair(config, seed, steps=150, num_envs=9, threads=threads, intraday=intraday)


@pytest.mark.parametrize("execution", ["next_open", "close"])
@pytest.mark.parametrize("cost", ["nse_delivery", "nse_intraday"])
@pytest.mark.parametrize("action", ["discrete", "continuous"])
def test_thousands_of_steps_with_resets(execution, cost, action):
    # Delivery shorts with a borrow fee; intraday on 5-minute bars (square-offs every session).
    config = EnvConfig(window=4, episode_length=40, execution=execution, cost=cost, action=action,
                       equity_floor=0.8, min_envs_per_thread=4,
                       short_borrow_rate=0.5 if cost == "nse_delivery" else 0.0)
    resets = run_pair(config, seed=123, steps=2000, num_envs=16, threads=2,
                      intraday=cost == "nse_intraday")
    assert resets > 500  # auto-reset exercised many times


def test_round_robin_fixed_start_runs_whole_segments():
    config = EnvConfig(window=3, episode_length=0, random_start=False,
                       segment_assignment="round_robin", cost="zero")
    run_pair(config, seed=0, steps=400, num_envs=3, threads=1)
