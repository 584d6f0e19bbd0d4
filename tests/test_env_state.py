"""Snapshots (get_state/set_state) and concurrent stepping of one simulator."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from fastrl import _core
from fastrl.env_config import EnvConfig, PortfolioConfig
from fastrl.markets.portfolio.env import PORTFOLIO_STATE_KEYS, PortfolioVecEnv
from fastrl.markets.portfolio.live import PORTFOLIO_STATE
from fastrl.markets.single.env import STATE_KEYS, TradingVecEnv
from fastrl.markets.single.live import SINGLE_STATE
from fastrl.reference import ReferenceVecEnv
from fastrl.reference_portfolio import ReferencePortfolioEnv
from test_env_portfolio import random_panel

from sim_markets import random_market

NUM_ENVS = 256  # with min_envs_per_thread 16, two threads really split the batch


def snapshot_config(action: str, **overrides) -> EnvConfig:
    return EnvConfig(**{"window": 4, "episode_length": 20, "action": action,
                        "reward": "diff_sharpe", "cost": "nse_intraday", "equity_floor": 0.9,
                        "min_envs_per_thread": 16, **overrides})


def action_stream(config: EnvConfig, steps: int, num_envs: int, seed: int = 3) -> list:
    rng = np.random.default_rng(seed)
    if config.action == "discrete":
        return [rng.integers(0, len(config.position_levels), num_envs) for _ in range(steps)]
    return [rng.uniform(config.min_pos, config.max_pos, num_envs) for _ in range(steps)]


def record(env: TradingVecEnv, actions: list) -> list:
    """Everything a caller can see after each step, copied."""
    frames = []
    for a in actions:
        obs, rewards, terminated, truncated, info = env.step(a)
        done = info["_episode"].copy()
        frames.append({
            "obs": obs.copy(), "rewards": rewards.copy(), "terminated": terminated.copy(),
            "truncated": truncated.copy(), "done": done,
            "final_obs": info["final_obs"][done].copy(),
            **{f"ep_{k}": v[done].copy() for k, v in info["episode"].items()},
            **{f"state_{k}": v for k, v in env.get_state().items()},
        })
    return frames


def assert_frames_identical(a: list, b: list) -> None:
    assert len(a) == len(b)
    for k, (x, y) in enumerate(zip(a, b, strict=True)):
        assert x.keys() == y.keys()
        for key in x:
            assert x[key].dtype == y[key].dtype, f"{key} at step {k}"
            # Bit-identical, NaN-safe: compare the raw bytes.
            assert x[key].tobytes() == y[key].tobytes(), f"{key} differs at step {k}"


@pytest.mark.parametrize("action", ["discrete", "continuous"])
@pytest.mark.parametrize("threads_from,threads_to", [(1, 1), (2, 2), (1, 2), (2, 1)])
def test_restored_snapshot_continues_bit_identically(action, threads_from, threads_to):
    config = snapshot_config(action)
    market = random_market(0)
    source = TradingVecEnv(market, NUM_ENVS, config, num_threads=threads_from, seed=11)
    for a in action_stream(config, 37, NUM_ENVS, seed=1):
        source.step(a)
    state = source.get_state()
    obs_at_snapshot = source.buffers["obs"].copy()
    later = action_stream(config, 60, NUM_ENVS, seed=2)
    expected = record(source, later)
    assert sum(f["done"].sum() for f in expected) > NUM_ENVS  # auto-resets inside the replay

    # A different env object built with the same config (how a checkpoint resumes).
    target = TradingVecEnv(market, NUM_ENVS, config, num_threads=threads_to, seed=999)
    target.step(action_stream(config, 1, NUM_ENVS, seed=5)[0])
    target.set_state(state)
    assert target.num_threads == threads_to
    assert np.array_equal(target.buffers["obs"], obs_at_snapshot)
    assert_frames_identical(record(target, later), expected)

    # The same object, rewound.
    source.set_state(state)
    assert_frames_identical(record(source, later), expected)


def test_snapshot_holds_every_key_as_a_copy_and_the_reset_seed_sequence():
    config = snapshot_config("discrete")
    env = TradingVecEnv(random_market(0), 8, config, seed=4)
    env.reset()  # moves the seed sequence on
    state = env.get_state()
    assert tuple(state) == STATE_KEYS
    assert state["rng_state"].dtype == np.uint64 and state["reset_seed"].shape == ()
    before = {k: v.copy() for k, v in state.items()}
    env.step(np.full(8, 2))
    for key in ("bar_index", "episode_steps", "rng_state"):
        assert np.array_equal(state[key], before[key]), f"{key} is a view, not a copy"
    # reset() without a seed continues the same sequence after a restore.
    other = TradingVecEnv(random_market(0), 8, config, seed=77)
    other.set_state(state)
    env.set_state(state)
    env.reset()
    other.reset()
    assert env.get_state()["rng_state"].tobytes() == other.get_state()["rng_state"].tobytes()
    assert np.array_equal(env.bar_index, other.bar_index)


def bad_states(state: dict) -> list:
    n = len(state["cash"])
    cases = []

    def case(message: str, **change):
        bad = dict(state)
        for key, value in change.items():
            if value is None:
                del bad[key]
            else:
                bad[key] = value
        cases.append((bad, message))

    case("missing key 'dsr_b'", dsr_b=None)
    case("missing key 'reset_count'", reset_count=None)
    case("unknown key 'speed'", speed=np.zeros(n))
    case("'cash' must be a float64 array of shape", cash=state["cash"].astype(np.float32))
    case("'bar_index' must be a int64 array of shape", bar_index=state["bar_index"][:-1])
    case("'rng_state' must be a uint64", rng_state=state["rng_state"].astype(np.int64))
    case("'equity' must be a numpy array", equity=list(state["equity"]))
    case("'reset_seed' must be a 0-d uint64", reset_seed=np.array([1], np.uint64))
    segment = state["segment"].copy()
    segment[1] = 7
    case("'segment' of env 1 is 7", segment=segment)
    case("'bar_index' of env 0 is 0", bar_index=np.zeros(n, np.int64))
    return cases


def test_bad_state_raises_naming_the_key_and_changes_nothing():
    config = snapshot_config("discrete")
    env = TradingVecEnv(random_market(0), 4, config, seed=1)
    good = env.get_state()
    for _ in range(5):
        env.step(np.array([2, 0, 1, 2]))
    before, obs_before = env.get_state(), env.buffers["obs"].copy()
    for bad, message in bad_states(good):
        with pytest.raises(ValueError, match=message):
            env.set_state(bad)
        after = env.get_state()
        for key in STATE_KEYS:
            assert after[key].tobytes() == before[key].tobytes(), f"{key} changed ({message})"
        assert np.array_equal(env.buffers["obs"], obs_before)
    reference = ReferenceVecEnv(random_market(0), 4, config, seed=1)
    for bad, _ in bad_states(good):
        with pytest.raises(ValueError):
            reference.set_state(bad)


@pytest.mark.parametrize("action", ["discrete", "continuous"])
def test_snapshots_cross_between_core_and_reference(action):
    from test_sim_reference import assert_same_step

    config = snapshot_config(action, min_envs_per_thread=4)
    market = random_market(2)
    fast = TradingVecEnv(market, 24, config, num_threads=2, seed=5)
    for a in action_stream(config, 30, 24, seed=1):
        fast.step(a)
    ref = ReferenceVecEnv(market, 24, config, seed=123)
    obs = ref.set_state(fast.get_state())
    np.testing.assert_allclose(obs, fast.buffers["obs"], rtol=1e-6, atol=1e-6)
    for k, a in enumerate(action_stream(config, 80, 24, seed=2)):
        assert_same_step(fast.step(a), ref.step(a.copy()), fast, ref, f"core->ref step {k}")
    # And back: the reference's snapshot loaded into a fresh C++ env.
    other = TradingVecEnv(market, 24, config, num_threads=1, seed=0)
    other.set_state(ref.get_state())
    np.testing.assert_allclose(other.buffers["obs"], ref.observe(), rtol=1e-6, atol=1e-6)
    for k, a in enumerate(action_stream(config, 80, 24, seed=3)):
        assert_same_step(other.step(a), ref.step(a.copy()), other, ref, f"ref->core step {k}")


# -- concurrent stepping ------------------------------------------------------------------

def test_two_python_threads_stepping_one_simulator_finish_and_serialise():
    config = EnvConfig(window=4, episode_length=30, cost="nse_intraday")
    market = random_market(0)
    env = TradingVecEnv(market, 4096, config, num_threads=2, seed=0)
    # Both threads send the same actions, so any order of whole steps ends in the state of
    # 600 sequential steps; a torn (interleaved) step would not.
    actions = np.random.default_rng(1).integers(0, 3, 4096)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for k in range(300):
                env.step(actions)
                if k % 50 == 0:
                    env.get_state()
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, daemon=True) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "concurrent step() calls hung"
    assert not errors
    sequential = TradingVecEnv(market, 4096, config, num_threads=2, seed=0)
    for _ in range(600):
        sequential.step(actions)
    got, want = env.get_state(), sequential.get_state()
    for key in STATE_KEYS:
        assert got[key].tobytes() == want[key].tobytes(), key


def test_python_state_key_views_are_the_cores():
    """The state keys are declared once, in C++: every Python view reads them from there."""
    assert STATE_KEYS == (*_core.STATE_KEYS, "reset_seed", "reset_count")
    assert PORTFOLIO_STATE_KEYS == _core.PORTFOLIO_STATE_KEYS
    env = TradingVecEnv(random_market(0), 2, EnvConfig(window=4))
    assert tuple(env.get_state()) == STATE_KEYS
    assert tuple(ReferenceVecEnv(random_market(0), 2, EnvConfig(window=4)).get_state()) \
        == STATE_KEYS
    panel = random_panel(0)
    portfolio = PortfolioVecEnv(panel, 2, PortfolioConfig(window=4))
    assert tuple(portfolio._sim.state_names) == _core.PORTFOLIO_STATE_KEYS
    assert tuple(portfolio.get_state())[:-2] == _core.PORTFOLIO_STATE_KEYS
    assert tuple(ReferencePortfolioEnv(panel, 2, PortfolioConfig(window=4)).get_state()) \
        == _core.PORTFOLIO_STATE_KEYS
    carried = set(_core.STATE_KEYS) - {"bar_index", "segment", "last_trade_bar", "rng_state"}
    assert set(SINGLE_STATE) == carried
    assert set(PORTFOLIO_STATE) == set(_core.PORTFOLIO_STATE_KEYS) - {"bar_index", "rng_state"}
