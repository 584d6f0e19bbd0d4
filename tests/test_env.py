"""TradingVecEnv behaviour: hand-computed cases, determinism, zero-copy, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fastrl.costs import CostModel, bps, nse_delivery, nse_intraday
from fastrl.data.block import MarketBlock
from fastrl.env_config import EnvConfig
from fastrl.markets.single.env import TradingVecEnv

from sim_markets import constant_market, random_market

FLAT, LONG = 1, 2  # indices into the default levels (-1, 0, 1)


def one_segment_env(market: MarketBlock, **overrides) -> TradingVecEnv:
    config = EnvConfig(**{"window": 2, "episode_length": 0, "random_start": False,
                          "segment_assignment": "round_robin", **overrides})
    return TradingVecEnv(market, 1, config)


# -- hand-computed cases --------------------------------------------------------------------

def test_round_trip_cost_equals_preset_charges_on_known_notional():
    # Price 100 everywhere, so buying 100% of 1,000,000 is a notional of exactly 1,000,000.
    market = constant_market(100.0, length=10)
    for model in (nse_delivery(), nse_intraday(), bps(7.0, 9.0, fixed_fee=3.0)):
        # Long/flat levels (valid under every preset); 1e6 / 100 is a whole number of shares.
        env = one_segment_env(market, cost=model, initial_cash=1e6, position_levels=(0.0, 1.0))
        env.reset(seed=0)
        env.step(np.array([1]))  # buy 1,000,000 notional
        buy_cost = env.episode_costs[0]
        # Intraday on daily bars: the buy at the open is squared off at the same bar's close.
        assert env.shares[0] == (0 if model.square_off else 10_000)
        env.step(np.array([0]))  # sell what was bought (notional = shares x 100)
        notional_sold = (1e6 - buy_cost) * 0 + 1e6  # shares were set to exactly 10,000
        expected = model.order_cost(True, 1e6) + model.order_cost(False, notional_sold)
        assert env.episode_costs[0] == pytest.approx(float(expected), rel=1e-12)
        assert env.equity[0] == pytest.approx(1e6 - float(expected), rel=1e-12)
    # The NSE delivery round trip on Rs 10 lakh, charge by charge (see fastrl.costs).
    stt = 0.001 * 1e6 * 2
    exchange_and_sebi = (0.0000297 + 1e-6) * 1e6 * 2 * 1.18
    stamp = 0.00015 * 1e6
    dp = 13.5 * 1.18
    expected_delivery = stt + exchange_and_sebi + stamp + dp
    assert nse_delivery().round_trip_cost(1e6) == pytest.approx(expected_delivery)
    # Intraday: brokerage hits the Rs 20 cap on each side.
    intraday = 0.00025 * 1e6 + (0.0000297 + 1e-6) * 2e6 * 1.18 + 0.00003 * 1e6 + 2 * 20 * 1.18
    assert nse_intraday().round_trip_cost(1e6) == pytest.approx(intraday)


def test_flat_agent_equity_never_moves():
    env = TradingVecEnv(random_market(3), 32, EnvConfig(window=3, episode_length=30, cost="bps"))
    env.reset(seed=5)
    for _ in range(200):
        _, rewards, terminated, truncated, _ = env.step(np.full(32, FLAT))
        assert np.all(env.equity == 1e6)
        assert np.all(rewards == 0.0)
        assert not terminated.any()
    assert env.episode_costs.max() == 0.0


@pytest.mark.parametrize("execution", ["next_open", "close"])
def test_always_long_without_costs_ends_at_price_ratio(execution):
    market = random_market(7, lengths=(60,))
    env = one_segment_env(market, window=5, cost="zero", equity_floor=0.0, execution=execution)
    env.reset(seed=0)
    start = int(env.bar_index[0])
    fill = market.open[start + 1] if execution == "next_open" else market.close[start]
    log_rewards = 0.0
    while True:
        _, rewards, terminated, truncated, info = env.step(np.array([LONG]))
        log_rewards += rewards[0]
        if truncated[0] or terminated[0]:
            break
    final = info["episode"]["equity"][0]
    assert final == pytest.approx(1e6 * market.close[-1] / fill, rel=1e-12)
    # The sum of log-return rewards is the log of final over initial equity.
    assert log_rewards == pytest.approx(math.log(final / 1e6), abs=1e-12)
    assert info["episode"]["r"][0] == pytest.approx(log_rewards, abs=1e-12)
    assert info["episode"]["l"][0] == len(market.close) - 5


def test_next_open_fills_at_next_open_and_close_fills_at_close():
    market = MarketBlock(symbols=("X",), open=np.array([10.0, 20.0, 30.0, 40.0]),
                         close=np.array([11.0, 22.0, 33.0, 44.0]),
                         features=np.zeros((4, 1), np.float32), offsets=np.array([0, 4]))
    for execution, fill in (("next_open", 20.0), ("close", 11.0)):
        env = one_segment_env(market, window=1, cost="zero", execution=execution)
        env.reset(seed=0)
        env.step(np.array([LONG]))
        assert env.shares[0] == pytest.approx(1e6 / fill)
        assert env.equity[0] == pytest.approx(1e6 / fill * 22.0)


def test_short_position_profits_when_price_falls():
    market = MarketBlock(symbols=("X",), open=np.array([100.0, 100.0, 90.0]),
                         close=np.array([100.0, 100.0, 90.0]),
                         features=np.zeros((3, 1), np.float32), offsets=np.array([0, 3]))
    env = one_segment_env(market, window=1, cost="zero")
    env.reset(seed=0)
    env.step(np.array([0]))  # short at open[1] = 100, marked at close[1] = 100
    _, _, _, truncated, info = env.step(np.array([0]))  # hold to close[2] = 90
    assert truncated[0]  # the data ended; the finished episode's equity is reported
    assert info["episode"]["equity"][0] == pytest.approx(1.1e6, rel=1e-12)
    assert info["episode"]["trades"][0] == 1


def test_equity_floor_terminates_and_auto_resets():
    market = MarketBlock(symbols=("X",), open=np.array([100.0, 100.0, 40.0, 40.0]),
                         close=np.array([100.0, 100.0, 40.0, 40.0]),
                         features=np.zeros((4, 1), np.float32), offsets=np.array([0, 4]))
    env = one_segment_env(market, window=1, cost="zero", equity_floor=0.5)
    env.reset(seed=0)
    env.step(np.array([LONG]))
    obs, _, terminated, truncated, info = env.step(np.array([LONG]))
    assert terminated[0] and not truncated[0]
    assert info["episode"]["equity"][0] == pytest.approx(4e5)
    assert env.bar_index[0] == 0 and env.equity[0] == 1e6  # auto-reset happened
    assert obs[0, -3] == 0.0  # new episode starts flat
    assert info["final_obs"][0, -3] == 1.0  # the final observation still shows the long


# -- determinism and threads ----------------------------------------------------------------

def trajectory(threads: int, seed: int, steps: int = 300, num_envs: int = 37):
    # nse_intraday: shorts allowed, and the square-off and whole-share rules run too.
    config = EnvConfig(window=4, episode_length=25, min_envs_per_thread=1, reward="diff_sharpe",
                       cost="nse_intraday")
    env = TradingVecEnv(random_market(1), num_envs, config, num_threads=threads, seed=seed)
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(0)
    frames = [obs.copy()]
    for _ in range(steps):
        obs, rewards, terminated, truncated, _ = env.step(rng.integers(0, 3, num_envs))
        frames.append(np.concatenate([obs.ravel(), rewards.astype(np.float32), env.equity]))
    return np.concatenate([f.ravel().astype(np.float64) for f in frames])


def test_results_are_bit_identical_for_1_2_4_threads():
    one = trajectory(1, seed=42)
    assert np.array_equal(one, trajectory(2, seed=42))
    assert np.array_equal(one, trajectory(4, seed=42))


def test_same_seed_same_trajectory_other_seed_differs():
    assert np.array_equal(trajectory(2, seed=9), trajectory(2, seed=9))
    assert not np.array_equal(trajectory(2, seed=9), trajectory(2, seed=10))


def test_reset_without_seed_is_deterministic_but_new():
    env = TradingVecEnv(random_market(1), 16, EnvConfig(window=3), seed=3)
    first = env.bar_index.copy()
    env.reset()
    second = env.bar_index.copy()
    env.reset(seed=3)
    assert np.array_equal(env.bar_index, first)
    env.reset()
    assert np.array_equal(env.bar_index, second)


# -- zero-copy ----------------------------------------------------------------------------

def test_step_returns_the_same_memory_every_time():
    env = TradingVecEnv(random_market(1), 8, EnvConfig(window=3, cost="bps"))
    obs0, _ = env.reset(seed=0)
    addresses = {obs0.__array_interface__["data"][0]}
    for _ in range(5):
        obs, rewards, terminated, truncated, info = env.step(np.zeros(8, np.int64))
        addresses.add(obs.__array_interface__["data"][0])
        assert np.shares_memory(rewards, env.buffers["rewards"])
        assert np.shares_memory(info["final_obs"], env.buffers["final_obs"])
    assert len(addresses) == 1
    # State views alias the simulator's own vectors and cannot be written.
    equity = env.equity
    assert not equity.flags.writeable
    env.step(np.full(8, LONG))
    assert np.array_equal(equity, env.equity)


def test_caller_supplied_buffers_are_written_in_place():
    torch = pytest.importorskip("torch")
    num_envs, config = 4, EnvConfig(window=3, cost="bps")
    market = random_market(2)
    obs_dim = 3 * market.num_features + 3
    obs_tensor = torch.zeros(num_envs, obs_dim)
    rewards = np.zeros(num_envs)
    env = TradingVecEnv(market, num_envs, config,
                        buffers={"obs": obs_tensor.numpy(), "rewards": rewards})
    obs, _ = env.reset(seed=0)
    assert np.shares_memory(obs, obs_tensor.numpy())
    assert obs_tensor.abs().sum() > 0  # the simulator wrote into the tensor's memory
    _, r, _, _, _ = env.step(np.full(num_envs, LONG))
    assert r is rewards or np.shares_memory(r, rewards)


@pytest.mark.parametrize("name,bad,message", [
    ("obs", np.zeros((4, 12), np.float64), "dtype float64"),
    ("obs", np.zeros((4, 11), np.float32), "shape"),
    ("obs", np.zeros((12, 4), np.float32).T, "C-contiguous"),
    ("rewards", np.zeros(4, np.float32), "dtype float32"),
    ("terminated", np.zeros(4, np.int8), "dtype int8"),
    ("nonsense", np.zeros(4), "unknown buffer"),
])
def test_bad_buffers_are_refused(name, bad, message):
    market = random_market(2)  # 3 features, window 3 -> obs_dim 12
    with pytest.raises(ValueError, match=message):
        TradingVecEnv(market, 4, EnvConfig(window=3), buffers={name: bad})


def test_read_only_buffer_is_refused():
    buf = np.zeros(4)
    buf.setflags(write=False)
    with pytest.raises(ValueError, match="read-only"):
        TradingVecEnv(random_market(2), 4, EnvConfig(window=3), buffers={"rewards": buf})


# -- no look-ahead --------------------------------------------------------------------------

def test_altering_bars_after_t_leaves_observations_up_to_t_unchanged():
    base = random_market(4, lengths=(80,))
    cut = 40
    rng = np.random.default_rng(1)
    features = base.features.copy()
    features[cut + 1:] = rng.normal(size=features[cut + 1:].shape)
    open_, close = base.open.copy(), base.close.copy()
    open_[cut + 1:] *= 1.3
    close[cut + 1:] *= 0.7
    altered = MarketBlock(symbols=base.symbols, open=open_, close=close, features=features,
                          offsets=base.offsets)
    envs = [one_segment_env(m, window=5, cost="nse_delivery", short_borrow_rate=0.08)
            for m in (base, altered)]
    obs = [env.reset(seed=0)[0].copy() for env in envs]
    actions = rng.integers(0, 3, 200)
    compared = 0
    for a in actions:
        if envs[0].bar_index[0] > cut:
            break
        assert np.array_equal(obs[0], obs[1]), f"observation at bar {envs[0].bar_index[0]}"
        compared += 1
        obs = [env.step(np.array([a]))[0].copy() for env in envs]
    assert compared == cut - 4 + 1


# -- bad input ------------------------------------------------------------------------------

def snapshot(env: TradingVecEnv):
    return [arr.copy() for arr in (env.equity, env.cash, env.positions, env.bar_index,
                                   env.buffers["obs"])]


@pytest.mark.parametrize("actions,message", [
    (np.zeros(5, np.int64), "shape"),
    (np.zeros((8, 2), np.int64), "shape"),
    (np.zeros(8, np.float64), "integer level indices"),
    (np.full(8, 3), "not a level index"),
    (np.full(8, -1), "not a level index"),
    (np.array(["a"] * 8), "integer"),
])
def test_bad_discrete_actions_raise_before_any_state_change(actions, message):
    env = TradingVecEnv(random_market(1), 8, EnvConfig(window=3, cost="bps"))
    env.step(np.full(8, LONG))
    before = snapshot(env)
    with pytest.raises(ValueError, match=message):
        env.step(actions)
    for a, b in zip(before, snapshot(env), strict=True):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("value,message", [
    (np.nan, "NaN"), (1.5, "not a target exposure"), (-2.0, "not a target exposure"),
])
def test_bad_continuous_actions_raise_before_any_state_change(value, message):
    env = TradingVecEnv(random_market(1), 8, EnvConfig(window=3, action="continuous"))
    env.step(np.full(8, 0.5))
    before = snapshot(env)
    actions = np.full(8, 0.25)
    actions[5] = value
    with pytest.raises(ValueError, match=message):
        env.step(actions)
    for a, b in zip(before, snapshot(env), strict=True):
        assert np.array_equal(a, b)
    with pytest.raises(ValueError, match="floats"):
        env.step(np.zeros(8, np.int64))


@pytest.mark.parametrize("field,value,message", [
    ("open", np.nan, "open price is nan"),
    ("close", np.inf, "close price is inf"),
    ("close", 0.0, "close price is 0"),
    ("open", -5.0, "open price is -5"),
    ("features", np.nan, "feature column 1 is nan"),
])
def test_bad_prices_name_segment_and_bar(field, value, message):
    market = random_market(1, lengths=(30, 40))
    arrays = {"open": market.open.copy(), "close": market.close.copy(),
              "features": market.features.copy()}
    if field == "features":
        arrays[field][35, 1] = value
    else:
        arrays[field][35] = value
    bad = MarketBlock(symbols=("GOOD", "BAD"), offsets=market.offsets, **arrays)
    with pytest.raises(ValueError, match=f"segment 'BAD' bar 5 \\(market row 35\\): {message}"):
        TradingVecEnv(bad, 4, EnvConfig(window=3))


def test_short_segment_zero_envs_and_bad_window_are_refused():
    market = random_market(1, lengths=(30, 8))
    with pytest.raises(ValueError, match="segment 'SYM1' has 8 bars; an episode needs at least"):
        TradingVecEnv(market, 4, EnvConfig(window=8))
    with pytest.raises(ValueError, match="num_envs"):
        TradingVecEnv(market, 0, EnvConfig(window=3))
    with pytest.raises(ValueError, match="num_threads"):
        TradingVecEnv(market, 4, EnvConfig(window=3), num_threads=0)
    with pytest.raises(ValueError, match="window must be an integer >= 1"):
        EnvConfig(window=0)


@pytest.mark.parametrize("overrides,message", [
    ({"execution": "vwap"}, "execution"),
    ({"reward": "sortino"}, "reward"),
    ({"cost": "free_lunch"}, "unknown cost model"),
    ({"equity_floor": 1.0}, "equity_floor"),
    ({"min_pos": 1.0, "max_pos": -1.0}, "min_pos"),
    ({"position_levels": ()}, "position_levels"),
    ({"episode_length": -1}, "episode_length"),
])
def test_bad_config_values_name_the_field(overrides, message):
    with pytest.raises(ValueError, match=message):
        EnvConfig(**overrides)


def test_negative_cost_rate_is_refused():
    with pytest.raises(ValueError, match="buy_rate"):
        CostModel(buy_rate=-0.001)


def test_gymnasium_spaces_and_autoreset_mode():
    from gymnasium.vector import AutoresetMode

    env = TradingVecEnv(random_market(1), 6, EnvConfig(window=3, position_levels=(0.0, 1.0)))
    assert env.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    assert env.single_observation_space.shape == (12,)
    assert env.single_action_space.n == 2
    assert env.observation_space.shape == (6, 12)
    actions = env.action_space.sample()
    env.step(actions)
    cont = TradingVecEnv(random_market(1), 6, EnvConfig(window=3, action="continuous"))
    cont.step(cont.action_space.sample())
    env.close()


@pytest.mark.parametrize("execution,bars_since_fill", [("next_open", 0), ("close", 1)])
def test_bars_since_trade_counts_from_the_fill_bar(execution, bars_since_fill):
    env = one_segment_env(random_market(5, lengths=(40,)), window=2, execution=execution,
                          cost="bps")
    env.reset(seed=0)
    obs, *_ = env.step(np.array([LONG]))
    assert obs[0, -1] == pytest.approx(math.log1p(bars_since_fill))


# -- differential Sharpe warm start -------------------------------------------------------

def test_differential_sharpe_rewards_start_on_their_later_scale():
    from fastrl.data import build_synthetic_market

    market = build_synthetic_market("gbm", n_symbols=2, n_bars=1500, test_days=30, window=32,
                                    seed=4).train
    config = EnvConfig(window=32, episode_length=400, reward="diff_sharpe", cost="zero",
                       position_levels=(0.0, 1.0))
    env = TradingVecEnv(market, 64, config, seed=0)
    rewards = np.array([env.step(np.ones(64, np.int64))[1].copy() for _ in range(300)])
    early = np.abs(rewards[:10]).mean()
    late = np.abs(rewards[200:300]).mean()
    assert late / 2 <= early <= 2 * late, (early, late)
    # The moments start from the window's returns, not from zero.
    env.reset(seed=1)
    state = env.get_state()
    t, close = state["bar_index"][0], market.close
    r = close[t - 30:t + 1] / close[t - 31:t] - 1.0
    assert state["dsr_a"][0] == pytest.approx(r.mean(), rel=1e-12)
    assert state["dsr_b"][0] == pytest.approx((r * r).mean(), rel=1e-12)
