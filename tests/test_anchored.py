"""Anchored actions and benchmark-relative rewards: the C++ sims against the references,
the shadow benchmark book against the baselines' records, an untrained anchored agent
against its benchmark, the config's checks and tiny training runs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastrl.config import ConfigError, build_config
from fastrl.data.panel import build_panel
from fastrl.data.splits import build_market
from fastrl.env_config import EnvConfig, PortfolioConfig
from fastrl.markets import market_for
from fastrl.markets.portfolio import portfolio_env_config
from fastrl.markets.portfolio.backtest import baseline_backtest as portfolio_baseline
from fastrl.markets.portfolio.backtest import run_agent as run_portfolio_agent
from fastrl.markets.portfolio.env import PortfolioVecEnv
from fastrl.markets.single.backtest import (
    baseline_backtest,
    baseline_config,
    run_agent,
    valid_actions,
)
from fastrl.markets.single.env import TradingVecEnv
from fastrl.ppo.agent import Agent
from fastrl.ppo.checkpoint import build_network
from fastrl.ppo.ensemble import EnsembleAgent
from fastrl.ppo.normalize import ObservationNormaliser
from fastrl.ppo.simplex import tilt_weights
from fastrl.reference import ReferenceVecEnv
from fastrl.reference_portfolio import ReferencePortfolioEnv
from fastrl.strategies import EW_HOLD
from test_env_portfolio import assert_same_step as assert_same_portfolio_step
from test_env_portfolio import random_panel, random_weights
from test_sim_reference import assert_same_step

from sim_markets import intraday_market, random_market

pytest.importorskip("fastrl._core")

SYMBOLS = ["BPCL", "HDFCLIFE", "INFY"]


# ----------------------------------------------------------------------------- single: parity


@st.composite
def single_configs(draw) -> EnvConfig:
    cost = draw(st.sampled_from(["nse_delivery", "nse_intraday", "bps", "zero"]))
    reward = draw(st.sampled_from(["log_return", "active", "vol_scaled", "diff_sharpe"]))
    values = dict(
        window=draw(st.integers(1, 6)),
        episode_length=draw(st.sampled_from([0, 7, 25])),
        action=draw(st.sampled_from(["discrete", "continuous"])),
        action_mode=draw(st.sampled_from(["absolute", "anchored", "anchored"])),
        execution=draw(st.sampled_from(["next_open", "close"])),
        cost=cost, reward=reward,
        reward_base=(draw(st.sampled_from(["absolute", "active"]))
                     if reward in ("vol_scaled", "diff_sharpe") else "absolute"),
        vol_window=draw(st.sampled_from([2, 5, 60])),
        turnover_penalty=draw(st.sampled_from([0.0, 0.01])),
        drawdown_penalty=draw(st.sampled_from([0.0, 0.1])),
        initial_cash=draw(st.sampled_from([1e5, 3e3])),
        equity_floor=draw(st.sampled_from([0.0, 0.5])),
        random_start=draw(st.booleans()),
        integer_shares=draw(st.sampled_from([None, True, False])),
    )
    if cost != "nse_delivery":  # shorts (and leverage off delivery) priced: a tilt either way
        values["max_pos"] = draw(st.sampled_from([1.0, 1.5]))
        values["max_underweight"] = draw(st.sampled_from([0.5, 1.0, 2.0]))
    else:
        values["max_underweight"] = draw(st.sampled_from([0.25, 1.0]))
    return EnvConfig(**values)


def draw_actions(rng: np.random.Generator, config: EnvConfig, n: int) -> np.ndarray:
    if config.action == "discrete":
        return rng.integers(0, len(config.position_levels), n)
    low, high = config.action_bounds()
    actions = rng.uniform(low, high, n)
    actions[rng.random(n) < 0.4] = 0.0 if low <= 0.0 <= high else low
    return actions


def run_single_pair(config: EnvConfig, seed: int, steps: int, threads: int,
                    intraday: bool = False) -> None:
    market = intraday_market(0) if intraday else random_market(0)
    fast = TradingVecEnv(market, 9, config, num_threads=threads, seed=seed)
    ref = ReferenceVecEnv(market, 9, config, seed=seed)
    np.testing.assert_allclose(fast.reset(seed=seed)[0], ref.reset(seed=seed)[0], rtol=1e-5,
                               atol=1e-6)
    rng = np.random.default_rng(1)
    last = None
    for k in range(steps):
        actions = draw_actions(rng, config, 9)
        if last is not None and rng.random() < 0.5:
            actions = last  # held: the benchmark and the agent side by side for a while
        last = actions
        assert_same_step(fast.step(actions), ref.step(actions.copy()), fast, ref,
                         f"at step {k}")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=single_configs(), seed=st.integers(0, 2**64 - 1),
       threads=st.sampled_from([1, 2, 3]), intraday=st.booleans())
def test_single_core_matches_reference_with_anchored_actions_and_active_rewards(
        config, seed, threads, intraday):
    config.min_envs_per_thread = 1
    run_single_pair(config, seed, steps=80, threads=threads, intraday=intraday)


def test_thread_count_changes_nothing_with_active_rewards():
    config = EnvConfig(window=4, episode_length=30, action_mode="anchored", reward="vol_scaled",
                       reward_base="active", vol_window=10, min_envs_per_thread=1)
    market = random_market(3)
    outs = []
    for threads in (1, 3):
        env = TradingVecEnv(market, 12, config, num_threads=threads, seed=5)
        env.reset(seed=5)
        rng = np.random.default_rng(0)
        rewards = [env.step(draw_actions(rng, config, 12))[1].copy() for _ in range(80)]
        outs.append((np.array(rewards), env.get_state()))
    np.testing.assert_array_equal(outs[0][0], outs[1][0])
    for key, value in outs[0][1].items():
        np.testing.assert_array_equal(value, outs[1][1][key], err_msg=key)


# ------------------------------------------------------------- single: the benchmark's book


@pytest.mark.parametrize("integer_shares", [None, False])
def test_sim_benchmark_return_matches_buy_and_hold_record_step_by_step(integer_shares):
    # The agent trades at random; the shadow book beside it must be buy-and-hold's record.
    market = build_market(["BPCL"], test_days=60, window=8).test
    config = EnvConfig(window=8, episode_length=0, random_start=False, reward="active",
                       segment_assignment="round_robin", integer_shares=integer_shares)
    record = baseline_backtest(market, 0, config, "buy_and_hold")
    env = TradingVecEnv(market, 1, config, num_threads=1, seed=0)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    close = np.asarray(market.close)
    bench = [float(env._sim.bench_cash[0])]
    for k in range(record.num_steps):
        t = int(env.bar_index[0])
        agent_before = float(env.equity[0])
        _, reward, _, _, info = env.step(rng.integers(0, 2, 1))
        state = env.get_state()
        if k < record.num_steps - 1:
            after = float(state["bench_cash"][0] + state["bench_shares"][0] * close[t + 1])
            # the active reward is the log return minus the book's over the same bar
            want = np.log(float(state["equity"][0]) / agent_before) - np.log(after / bench[-1])
            assert reward[0] == pytest.approx(want, rel=1e-9, abs=1e-12)
        else:  # the episode ended and the env reset: the book's last value via the reward
            assert info["_episode"][0]
            agent_log = np.log(info["episode"]["equity"][0] / agent_before)
            after = bench[-1] * np.exp(agent_log - reward[0])
        bench.append(after)
    # the record sells at the last close (its liquidation cost); the book still holds
    np.testing.assert_allclose(np.subtract(bench, np.eye(len(bench))[-1]
                                           * record.liquidation_cost),
                               record.equity, rtol=1e-12, atol=0)
    assert record.equity[-1] != record.equity[0]  # a real path, not a flat line


def test_active_reward_of_the_benchmark_action_is_exactly_zero():
    market = build_market(["HDFCLIFE"], test_days=40, window=4).test
    config = EnvConfig(window=4, episode_length=0, random_start=False, reward="active",
                       action_mode="anchored")
    env = TradingVecEnv(market, 1, config, num_threads=1, seed=0)
    env.reset(seed=0)
    level = config.position_levels.index(0.0)
    rewards = [env.step(np.array([level]))[1][0] for _ in range(30)]
    assert rewards == [0.0] * 30
    assert env.get_state()["position"][0] == 1.0


# ----------------------------------------------------------------------- untrained agents


def untrained_agent(overrides: dict, market) -> Agent:
    config = build_config(overrides={"hidden_sizes": (16, 16), "device": "cpu", **overrides})
    kind = market_for(config)
    spec = kind.action_spec()
    obs_dim = kind.obs_dim(market)
    network = build_network(config, obs_dim, spec.size if spec.distribution == "categorical"
                            else 0, generator=torch.Generator().manual_seed(7))
    return Agent(network, ObservationNormaliser(obs_dim), config)


@pytest.mark.parametrize("action", ["discrete", "continuous"])
def test_untrained_anchored_single_agent_is_buy_and_hold_exactly(action):
    market = build_market(["BPCL", "HDFCLIFE"], test_days=80, window=8).test
    agent = untrained_agent({"data.symbols": ["BPCL", "HDFCLIFE"], "env.window": 8,
                             "env.action": action, "env.action_mode": "anchored"}, market)
    runs = run_agent(agent, market, agent.config.env)
    for segment, run in enumerate(runs):
        bh = baseline_backtest(market, segment, agent.config.env, "buy_and_hold")
        np.testing.assert_array_equal(run.equity, bh.equity)
        np.testing.assert_array_equal(run.positions, bh.positions)
        assert run.liquidation_cost == bh.liquidation_cost


def test_untrained_absolute_agent_is_not_buy_and_hold():
    # the test above can fail: an unanchored policy starts as a coin flip, not the benchmark
    market = build_market(["BPCL"], test_days=80, window=8).test
    agent = untrained_agent({"data.symbols": ["BPCL"], "env.window": 8,
                             "env.action_mode": "absolute"}, market)
    (run,) = run_agent(agent, market, agent.config.env)
    assert not np.array_equal(run.equity, baseline_backtest(market, 0, agent.config.env,
                                                           "buy_and_hold").equity)


def test_untrained_anchored_portfolio_agent_is_equal_weight_held_exactly():
    panel = build_panel(SYMBOLS, test_days=60, window=4).test
    agent = untrained_agent({"data.symbols": SYMBOLS, "portfolio.enabled": True,
                             "env.window": 4, "env.action_mode": "anchored"}, panel)
    config = market_for(agent.config).env_config
    run = run_portfolio_agent(agent, panel, config)
    held = portfolio_baseline(panel, config, EW_HOLD)
    np.testing.assert_array_equal(run.equity, held.equity)
    np.testing.assert_array_equal(run.step_costs, held.step_costs)
    np.testing.assert_array_equal(run.legs, held.legs)
    assert run.legs[0] == 3 and run.legs[1:].sum() == 0  # bought once, then held


TEN = ["BPCL", "HDFCLIFE", "INFY", "ITC", "TCS", "SBIN", "LT", "NTPC", "ONGC", "TITAN"]


@pytest.mark.parametrize("assets", [3, 5, 10])
def test_untrained_anchored_portfolio_ensemble_is_equal_weight_held_exactly(assets):
    # three copies of 1/A summed and divided by three need not be 1/A (A = 10: 0.1 + 2 ulp)
    symbols = TEN[:assets]
    panel = build_panel(symbols, test_days=30, window=4).test
    agent = EnsembleAgent([untrained_agent({"data.symbols": symbols, "portfolio.enabled": True,
                                            "env.window": 4, "env.action_mode": "anchored"},
                                           panel) for _ in range(3)])
    config = market_for(agent.config).env_config
    run = run_portfolio_agent(agent, panel, config)
    held = portfolio_baseline(panel, config, EW_HOLD)
    np.testing.assert_array_equal(run.equity, held.equity)
    np.testing.assert_array_equal(run.legs, held.legs)
    assert run.legs[1:].sum() == 0


def test_anchored_portfolio_holding_carries_its_target_into_the_next_backtest():
    # a walk-forward window hands its holding on: the untilted agent keeps holding there
    panel = build_panel(SYMBOLS, test_days=40, window=4).test
    agent = untrained_agent({"data.symbols": SYMBOLS, "portfolio.enabled": True,
                             "env.window": 4, "env.action_mode": "anchored"}, panel)
    config = market_for(agent.config).env_config
    first = run_portfolio_agent(agent, panel, config, liquidate=False)
    assert first.holding.target is not None and np.all(first.holding.target == 1 / 3)
    second = run_portfolio_agent(agent, panel, config, holding=first.holding, liquidate=False)
    assert second.legs.sum() == 0
    untargeted = dataclasses.replace(first.holding, target=None)
    assert run_portfolio_agent(agent, panel, config, holding=untargeted,
                               liquidate=False).legs[0] > 0  # without it: a drift rebalance


# -------------------------------------------------------------------- portfolio: parity


def _anchored_portfolio(**values) -> PortfolioConfig:
    if values["cost"] == "nse_delivery":
        values.update(long_only=True, max_gross=1.0)
    if values["reward"] not in ("vol_scaled", "diff_sharpe"):
        values["reward_base"] = "absolute"
    return PortfolioConfig(**values)


portfolio_configs = st.builds(
    _anchored_portfolio,
    window=st.integers(1, 4),
    episode_length=st.sampled_from([0, 7, 25]),
    execution=st.sampled_from(["next_open", "close"]),
    max_weight=st.sampled_from([0.4, 1.0]),
    integer_shares=st.booleans(),
    trade_band=st.sampled_from([0.0, 0.02]),
    cost=st.sampled_from(["nse_delivery", "bps", "zero"]),
    reward=st.sampled_from(["log_return", "active", "vol_scaled", "diff_sharpe"]),
    reward_base=st.sampled_from(["absolute", "active"]),
    vol_window=st.sampled_from([2, 7]),
    turnover_penalty=st.sampled_from([0.0, 0.01]),
    equity_floor=st.sampled_from([0.0, 0.5]),
    random_start=st.booleans(),
    action_mode=st.sampled_from(["absolute", "anchored"]),
)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=portfolio_configs, seed=st.integers(0, 2**64 - 1),
       threads=st.sampled_from([1, 2, 3]), panel_seed=st.integers(0, 1000),
       assets=st.integers(1, 4))
def test_portfolio_core_matches_reference_with_anchored_holds_and_active_rewards(
        config, seed, threads, panel_seed, assets):
    config.min_envs_per_thread = 1
    panel = random_panel(panel_seed, assets=assets)
    fast = PortfolioVecEnv(panel, 6, config, num_threads=threads, seed=seed)
    ref = ReferencePortfolioEnv(panel, 6, config, seed=seed)
    np.testing.assert_allclose(fast.reset(seed=seed)[0], ref.reset(seed=seed)[0], rtol=1e-5,
                               atol=1e-6)
    rng = np.random.default_rng(1)
    last = None
    for k in range(60):
        w = random_weights(rng, config, 6, assets)
        if last is not None and rng.random() < 0.5:
            w = last.copy()  # unchanged targets: an anchored env holds
        last = w
        if k % 3 == 2:  # some envs send no order: an anchored one keeps its last target
            orders = rng.random(6) < 0.5
            assert_same_portfolio_step(fast.step_orders(w, orders), ref.step(w.copy(), orders),
                                       fast, ref, f"at step {k}")
        else:
            assert_same_portfolio_step(fast.step(w), ref.step(w.copy()), fast, ref,
                                       f"at step {k}")


def test_portfolio_benchmark_book_is_the_equal_weight_held_record():
    panel = build_panel(SYMBOLS, test_days=50, window=4).test
    config = PortfolioConfig(window=4, episode_length=0, random_start=False, reward="active",
                             integer_shares=True)
    held = portfolio_baseline(panel, config, EW_HOLD)
    env = PortfolioVecEnv(panel, 1, config, num_threads=1, seed=0)
    env.reset(seed=0)
    rng = np.random.default_rng(2)
    bench = [float(env.get_state()["bench_cash"][0])]
    for _ in range(held.num_steps):
        t = int(env.get_state()["bar_index"][0])
        env.step(random_weights(rng, config, 1, len(SYMBOLS)))
        state = env.get_state()
        bench.append(float(state["bench_cash"][0]
                           + np.sum(state["bench_shares"][0] * np.nan_to_num(panel.mark[t + 1]))))
    held_open = held.equity.copy()
    held_open[-1] += held.liquidation_cost  # the record sells at the last close
    np.testing.assert_allclose(bench[:-1], held_open[:-1], rtol=1e-12, atol=0)


def test_portfolio_active_reward_of_untilted_weights_is_exactly_zero():
    panel = build_panel(SYMBOLS, test_days=40, window=4).test
    config = PortfolioConfig(window=4, episode_length=0, random_start=False, reward="active",
                             action_mode="anchored", integer_shares=True)
    env = PortfolioVecEnv(panel, 1, config, num_threads=1, seed=0)
    env.reset(seed=0)
    equal = tilt_weights(np.zeros((1, len(SYMBOLS) + 1)))
    rewards = [env.step(equal)[1][0] for _ in range(30)]
    assert rewards == [0.0] * 30 and env.get_state()["episode_trades"][0] == 3


# ------------------------------------------------------------------------- tilt and init


# -------------------------------------------------- states saved before the benchmark book

# the simulator state keys a portfolio snapshot saved before issue 33 lacks
PORTFOLIO_LATER = ("bench_shares", "bench_cash", "last_target")


def stepped_portfolio(config: PortfolioConfig, state=None, steps: int = 12):
    """Outputs of ``steps`` steps of random weights from ``state`` (or a seeded reset)."""
    panel = random_panel(seed=3, bars=80)
    env = PortfolioVecEnv(panel, 3, config, num_threads=1, seed=5)
    if state is not None:
        env.set_state(state)
    rng = np.random.default_rng(4)
    out = [env.step(random_weights(rng, config, 3, panel.num_assets))[:4]
           for _ in range(steps)]
    return env, [np.array(a, copy=True) for step in out for a in step]


def test_a_portfolio_state_saved_before_the_benchmark_book_steps_bit_for_bit():
    config = PortfolioConfig(window=4, episode_length=20)  # absolute, log_return: the default
    env, _ = stepped_portfolio(config)
    state = env.get_state()
    old = {k: v for k, v in state.items() if k not in PORTFOLIO_LATER}
    full_env, full = stepped_portfolio(config, state)
    old_env, outputs = stepped_portfolio(config, old)
    for a, b in zip(full, outputs, strict=True):
        np.testing.assert_array_equal(a, b)
    for key, value in full_env.get_state().items():
        np.testing.assert_array_equal(value, old_env.get_state()[key], err_msg=key)


@pytest.mark.parametrize("values, keys", [
    ({"action_mode": "anchored"}, "'last_target'"),
    ({"reward": "active"}, "'bench_shares', 'bench_cash'"),
])
def test_a_portfolio_state_without_what_its_config_reads_is_refused(values, keys):
    config = PortfolioConfig(window=4, episode_length=20, **values)
    env, _ = stepped_portfolio(config)
    state = env.get_state()
    old = {k: v for k, v in state.items() if k not in PORTFOLIO_LATER}
    with pytest.raises(ValueError, match=f"state is missing {keys} \\(saved by an older"):
        env.set_state(old)
    for key, value in env.get_state().items():  # nothing written
        np.testing.assert_array_equal(value, state[key], err_msg=key)


def test_tilt_weights_zero_is_equal_weight_and_respects_the_caps():
    for assets in (1, 3, 7, 30):
        w = tilt_weights(np.zeros((2, assets + 1)))
        assert np.all(w == 1.0 / assets)
    w = tilt_weights(np.array([[5.0, 0.0, 0.0, 0.25]]), max_underweight=0.5, max_weight=0.6)
    assert w[0, 0] == 0.6 and w.sum() <= 0.75 + 1e-12 and np.all(w >= 0)
    w = tilt_weights(np.array([[0.0, 0.0, 3.0]]), max_underweight=0.5)  # cash clipped to 0.5
    np.testing.assert_allclose(w, [[0.25, 0.25]])
    w = tilt_weights(np.array([[0.0, 0.0, -3.0]]))  # a negative underweight is none
    np.testing.assert_array_equal(w, [[0.5, 0.5]])


@pytest.mark.parametrize("overrides", [
    {"env.action_mode": "anchored"},
    {"env.action_mode": "anchored", "env.action": "continuous"},
    {"env.action_mode": "anchored", "env.position_levels": (0.5, 0.0, 1.0)},
])
def test_anchored_policy_starts_at_the_benchmark_for_any_observation(overrides):
    config = build_config(overrides={"hidden_sizes": (8, 8), "device": "cpu", **overrides})
    spec = market_for(config).action_spec()
    network = build_network(config, 12, spec.size if spec.distribution == "categorical" else 0)
    out, _ = network(torch.randn(64, 12) * 10)
    if spec.distribution == "categorical":
        assert torch.all(out.argmax(-1) == config.env.position_levels.index(0.0))
        assert torch.softmax(out, -1)[0, spec.anchor_level].item() == pytest.approx(0.75)
    else:
        assert torch.all(out == 0.0)


# --------------------------------------------------------------------------- config checks


@pytest.mark.parametrize("values, message", [
    ({"max_underweight": 0.0}, "max_underweight must be > 0"),
    ({"action_mode": "anchored", "max_underweight": 1.5}, "above 1 - min_pos"),
    ({"action_mode": "relative"}, "action_mode must be one of"),
    ({"action_mode": "anchored", "position_levels": (0.5, 1.0)}, "must include 0"),
    ({"action_mode": "anchored", "position_levels": (0.0, -0.5)}, "must lie in"),
    ({"action_mode": "anchored", "max_pos": 0.8}, "holds 0"),
    ({"reward": "log_return", "reward_base": "active"}, "reward_base 'active' applies"),
    ({"reward": "vol_scaled", "vol_window": 1}, "vol_window must be an integer >= 2"),
    ({"reward": "excess"}, "reward must be one of"),
])
def test_bad_anchored_and_reward_settings_raise_one_clear_error(values, message):
    with pytest.raises(ValueError, match=message):
        EnvConfig(**values)


@pytest.mark.parametrize("caps, named", [
    ({"portfolio.max_weight": 0.24}, r"portfolio.max_weight 0.24 is below 1/4;"),
    ({"portfolio.max_gross": 0.9}, r"portfolio.max_gross 0.9 is below 1;"),
    ({"portfolio.max_weight": 0.2, "portfolio.max_gross": 0.5},
     r"max_weight 0.2 is below 1/4 and portfolio.max_gross 0.5 is below 1;"),
])
def test_an_anchored_portfolio_whose_caps_bind_is_refused_by_name(caps, named):
    # its untilted policy would be capped while its benchmark buys 1/A uncapped
    base = {"data.symbols": [*SYMBOLS, "ITC"], "portfolio.enabled": True}
    with pytest.raises(ConfigError, match=r"config key 'env.action_mode' 'anchored' tilts "
                                          r"equal weight \(1/4 .*" + named):
        build_config(overrides={**base, "env.action_mode": "anchored", **caps})
    build_config(overrides={**base, "env.action_mode": "absolute", **caps})  # may be capped
    build_config(overrides={**base, "env.action_mode": "anchored",
                            "portfolio.max_weight": 0.25})  # 1/4 itself fits


def test_portfolio_max_underweight_is_a_fraction_and_defaults_stay_absolute():
    with pytest.raises(ValueError, match="max_underweight must lie in"):
        PortfolioConfig(max_underweight=1.5)
    with pytest.raises(ValueError, match="max_underweight must lie in"):  # from env.*
        portfolio_env_config(build_config(overrides={
            "data.symbols": SYMBOLS, "portfolio.enabled": True, "env.cost": "bps",
            "env.action_mode": "anchored", "env.max_underweight": 2.0}))
    for config in (EnvConfig(), PortfolioConfig()):
        assert (config.action_mode, config.reward, config.reward_base) == (
            "absolute", "log_return", "absolute")
    assert EnvConfig().position_levels == (0.0, 1.0)
    assert EnvConfig(action_mode="anchored").position_levels == (0.0, 0.5, 1.0)
    assert EnvConfig(action_mode="anchored", max_underweight=0.5).position_levels == (
        0.0, 0.25, 0.5)


def test_backtest_clips_continuous_anchored_actions_to_the_underweight_range():
    config = EnvConfig(action="continuous", action_mode="anchored", max_underweight=0.5)
    np.testing.assert_array_equal(valid_actions(np.array([-0.2, 0.3, 0.8]), config, 3),
                                  [0.0, 0.3, 0.5])


def test_baselines_step_absolute_actions_under_an_anchored_config():
    config = baseline_config(EnvConfig(action_mode="anchored"))
    assert config.action_mode == "absolute" and config.action_bounds() == (0.0, 1.0)
    np.testing.assert_array_equal(EnvConfig(action_mode="anchored").exposure_of([0, 1, 2]),
                                  [1.0, 0.5, 0.0])


# ------------------------------------------------------------------------------- training


@pytest.mark.parametrize("portfolio", [False, True])
def test_tiny_anchored_active_training_runs_complete(tmp_path, capsys, portfolio):
    from fastrl.cli.train import main

    symbols = ["BPCL", "HDFCLIFE"] if portfolio else ["BPCL"]
    code = main(["--symbols", *symbols, *(["--portfolio"] if portfolio else []),
                 "--test-days", "30", "--val-days", "20", "--run-dir", str(tmp_path / "run"),
                 "--timesteps", "4096", "--num-envs", "16", "--device", "cpu", "--no-eval",
                 "--set", "env.action_mode=anchored", "env.reward=active",
                 "hidden_sizes=[16,16]", "num_steps=64", "minibatch_size=256", "n_epochs=1",
                 "env.window=8", "torch_threads=1"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "ended: 4,096/4,096 steps (100.0%)" in err
    assert (tmp_path / "run" / "checkpoints" / "final.pt").is_file()
