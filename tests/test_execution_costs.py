"""Half-spread and slippage: config keys, preset defaults, and exactly their bps on every
fill in the simulator, the Python backtests, the portfolio env and the walk-forward record."""

from __future__ import annotations

import dataclasses
import types

import numpy as np
import pytest

pytest.importorskip("fastrl._core")

from fastrl.config import ConfigError, build_config  # noqa: E402
from fastrl.costs import (  # noqa: E402
    EXECUTION_DEFAULTS,
    CostModel,
    abdi_ranaldo_half_spread,
    nse_delivery,
    nse_intraday,
    resolve_cost_model,
)
from fastrl.data.block import MarketBlock  # noqa: E402
from fastrl.env_config import (
    EnvConfig,  # noqa: E402
    PortfolioConfig,  # noqa: E402
)
from fastrl.markets.portfolio import portfolio_env_config  # noqa: E402
from fastrl.markets.single.backtest import baseline_backtest, evaluation_config, run_agent  # noqa: E402
from fastrl.markets.single.env import TradingVecEnv  # noqa: E402

WINDOW = 3
NO_EXECUTION = {"half_spread_bps": 0.0, "slippage_bps": 0.0}


def _market(n: int = 60, seed: int = 0) -> MarketBlock:
    rng = np.random.default_rng(seed)
    close = 100.0 * np.cumprod(1.0 + rng.normal(0.0, 0.01, n))
    days = (np.datetime64("2024-01-01") + np.arange(n).astype("timedelta64[D]"))
    return MarketBlock.from_segments([{
        "symbol": "X", "open": close * (1.0 + rng.normal(0.0, 0.003, n)), "close": close,
        "features": rng.normal(size=(n, 2)), "timestamps": days.astype("datetime64[ns]")}],
        meta={"context_rows": WINDOW - 1})


def test_nse_presets_default_to_nonzero_execution_costs_and_others_to_none():
    assert EnvConfig().execution_costs() == EXECUTION_DEFAULTS["nse_delivery"]
    assert EnvConfig(cost="nse_intraday").execution_costs() == EXECUTION_DEFAULTS["nse_intraday"]
    for preset in ("nse_delivery", "nse_intraday"):
        assert EXECUTION_DEFAULTS[preset].half_spread_bps > 0
        assert EXECUTION_DEFAULTS[preset].slippage_bps > 0
    for cost in ("bps", "zero", nse_delivery(), {"buy_rate": 0.001}):
        assert EnvConfig(cost=cost).execution_costs().total_bps == 0.0
    # the model every consumer charges: the preset's charges plus both, on both sides
    for preset, charges in (("nse_delivery", nse_delivery()), ("nse_intraday", nse_intraday())):
        model = EnvConfig(cost=preset).cost_model()
        extra = EXECUTION_DEFAULTS[preset].total_bps * 1e-4
        assert model.buy_rate == pytest.approx(charges.buy_rate + extra, rel=1e-15)
        assert model.sell_rate == pytest.approx(charges.sell_rate + extra, rel=1e-15)
        assert EnvConfig(cost=preset, **NO_EXECUTION).cost_model() == charges


def test_turnover_penalty_default_follows_the_charges_only():
    charges = nse_delivery()
    config = EnvConfig(turnover_penalty=None, slippage_bps=50.0)
    assert config.turnover_penalty == pytest.approx(9.0 * 0.5 * (charges.buy_rate
                                                                 + charges.sell_rate))


@pytest.mark.parametrize("value", [-1.0, float("nan"), float("inf"), "3", True])
def test_bad_execution_costs_are_refused_naming_the_field(value):
    for name in ("slippage_bps", "half_spread_bps"):
        with pytest.raises(ValueError, match=f"EnvConfig.{name} must be a number of bps >= 0"):
            EnvConfig(**{name: value})
        with pytest.raises(ValueError, match=f"PortfolioConfig.{name} must be"):
            PortfolioConfig(**{name: value})


@pytest.mark.parametrize("key", ["env.slippage_bps", "env.half_spread_bps"])
def test_config_keys_set_validate_and_reach_the_portfolio_env(key):
    config = build_config("fast", None, {key: "4.5", "portfolio.enabled": "true"}, [])
    charges = nse_delivery()
    other = {"env.slippage_bps": "half_spread_bps",
             "env.half_spread_bps": "slippage_bps"}[key]
    expected = (4.5 + getattr(EXECUTION_DEFAULTS["nse_delivery"], other)) * 1e-4
    for env in (config.env, portfolio_env_config(config)):
        assert env.cost_model().buy_rate == pytest.approx(charges.buy_rate + expected)
    assert build_config("fast", None, {key: "none"}, []).env.execution_costs() == \
        EXECUTION_DEFAULTS["nse_delivery"]
    with pytest.raises(ConfigError, match=f"config key '{key}' must be >= 0"):
        build_config("fast", None, {key: "-1"}, [])


def test_train_cli_refuses_negative_slippage_with_exit_2(tmp_path, capsys):
    from fastrl.cli.train import main

    code = main(["--set", "env.slippage_bps=-2", "--run-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "config key 'env.slippage_bps' must be >= 0" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_tuned_configs_keep_the_base_configs_costs():
    from fastrl.tune.space import DEFAULT_SPACE, config_for, load_space

    base = build_config("fast", None, {"env.slippage_bps": "6", "env.half_spread_bps": "1"}, [])
    space = load_space(DEFAULT_SPACE)
    params = {name: knob.choices[0] if knob.choices else knob.low
              for name, knob in space.items()}
    tuned = config_for(params, base, 100_000)
    assert (tuned.env.slippage_bps, tuned.env.half_spread_bps) == (6.0, 1.0)


@pytest.mark.parametrize("cost", ["nse_delivery", "nse_intraday", "bps", "zero"])
def test_simulator_pays_exactly_the_extra_bps_on_a_buy_and_a_sell(cost):
    """Open and close at 100 throughout: 1e6 buys 10,000 shares in both envs, so the extra
    cost is exactly (half-spread + slippage) bps of 1e6 on the buy and again on the sell
    (nse_intraday squares off at the same bar's close: both orders in the first step)."""
    n = 8
    market = MarketBlock.from_segments([{
        "symbol": "X", "open": np.full(n, 100.0), "close": np.full(n, 100.0),
        "features": np.zeros((n, 1))}])
    paid = {}
    for extra in (NO_EXECUTION, {"half_spread_bps": 2.5, "slippage_bps": 7.0}):
        config = EnvConfig(window=1, episode_length=0, random_start=False, cost=cost,
                           position_levels=(0.0, 1.0), segment_assignment="round_robin",
                           equity_floor=0.0, **extra)
        env = TradingVecEnv(market, 1, config)
        env.reset(seed=0)
        env.step(np.array([1]))  # buy 1x
        assert env.shares[0] == (0 if cost == "nse_intraday" else 10_000)
        buy = float(env.episode_costs[0])
        env.step(np.array([0]))  # sell it all
        paid[extra["slippage_bps"]] = (buy, float(env.episode_costs[0]) - buy)
    orders = (2, 0) if cost == "nse_intraday" else (1, 1)
    for side, count in zip((0, 1), orders, strict=True):
        assert paid[7.0][side] - paid[0.0][side] == pytest.approx(count * 9.5e-4 * 1e6,
                                                                  rel=1e-12, abs=1e-9)


def test_agent_backtest_charges_every_order_its_charges_plus_the_extra_bps():
    market = _market()
    charges = nse_delivery()
    config = EnvConfig(window=WINDOW, cost="nse_delivery", half_spread_bps=1.5, slippage_bps=4.0)
    [backtest] = run_agent(lambda obs: (obs[:, 0] > 0).astype(np.int64), market, config)
    before = np.concatenate([[0.0], backtest.shares_held[:-1]])
    traded = backtest.shares_held - before
    notional = np.abs(traded) * backtest.fill_prices
    expected = np.where(traded != 0, charges.order_cost(traded > 0, notional)
                        + 5.5e-4 * notional, 0.0)
    last = backtest.shares_held[-1] * backtest.price[-1]  # the final liquidation, at the close
    expected[-1] += float(charges.order_cost(False, last)) + 5.5e-4 * last
    assert backtest.fills.sum() > 5
    np.testing.assert_allclose(backtest.step_costs, expected, rtol=1e-12, atol=1e-9)


def test_buy_and_hold_pays_the_extra_bps_on_its_two_orders():
    market = _market()
    paid = {}
    for slip in (0.0, 8.0):
        config = EnvConfig(window=WINDOW, cost="nse_intraday", half_spread_bps=0.0,
                           slippage_bps=slip)
        paid[slip] = baseline_backtest(market, 0, config, "buy_and_hold")
    hold = paid[8.0]
    assert np.array_equal(hold.shares_held, paid[0.0].shares_held)  # whole shares, same order
    traded = hold.shares_held[0] * (hold.fill_prices[0] + hold.price[-1])
    assert hold.metrics.costs_paid - paid[0.0].metrics.costs_paid == pytest.approx(
        8e-4 * traded, rel=1e-9)


def test_portfolio_env_pays_the_extra_bps():
    model = PortfolioConfig(slippage_bps=3.0, half_spread_bps=1.0).cost_model()
    charges = resolve_cost_model("nse_delivery")
    assert model.buy_rate == pytest.approx(charges.buy_rate + 4e-4)
    assert PortfolioConfig(cost="zero").cost_model() == CostModel(name="zero")


def test_walkforward_record_costs_include_the_execution_costs(monkeypatch):
    """The record the cost sensitivity re-costs carries half-spread and slippage: buy-and-
    hold's entry pays exactly their bps more, and every agent fill pays more."""
    import pandas as pd

    from fastrl.data.loaders import load_bars_report
    from fastrl.walkforward import run as run_module
    from fastrl.walkforward.analysis import cost_sensitivity, pooled
    from fastrl.walkforward.plan import WalkForwardSpec, plan_windows

    bars = dict(load_bars_report(["BPCL"], "1d", "bundled").bars)
    spec = WalkForwardSpec(step=63, start="2022-01-03", val_days=40, min_train_days=120)
    windows = plan_windows(bars, spec)[:2]
    tiny = {"data.symbols": ["BPCL"], "hidden_sizes": [8], "device": "cpu"}
    configs = {slip: build_config("fast", None, {**tiny, "env.slippage_bps": str(slip),
                                                  "env.half_spread_bps": "0"}, [])
               for slip in (0.0, 10.0)}
    state = run_module.train_market(bars, windows[0], configs[0.0], spec) \
        .normaliser.state_dict()
    agent = types.SimpleNamespace(
        act=lambda obs, deterministic: (obs[:, 0] > 0).astype(np.int64),
        feature_normaliser=state)
    monkeypatch.setattr(run_module, "build_agent", lambda config, policy: agent)
    records = {slip: run_module.trade_record(config, bars, windows, [None] * len(windows))
               for slip, config in configs.items()}
    free, slipped = records[0.0], records[10.0]
    first_open = float(bars["BPCL"].loc[pd.Timestamp(slipped["time"].iloc[0]), "open"])
    shares = np.trunc(configs[0.0].env.initial_cash / first_open)
    assert slipped["bh_cost"].iloc[0] - free["bh_cost"].iloc[0] == pytest.approx(
        1e-3 * shares * first_open, rel=1e-9)
    fills = free["cost"] > 0
    assert fills.sum() > 3 and (slipped["cost"][fills] > free["cost"][fills]).all()
    # re-costed at 0x, both records earn the same before costs (to first order)
    at_zero = {slip: next(r for r in cost_sensitivity(pooled(record), "1d")["rows"]
                          if r["multiple"] == 0.0)["active_annual_mean"]
               for slip, record in records.items()}
    at_one = {slip: next(r for r in cost_sensitivity(pooled(record), "1d")["rows"]
                         if r["multiple"] == 1.0)["active_annual_mean"]
              for slip, record in records.items()}
    assert abs(at_zero[10.0] - at_zero[0.0]) < 0.2 * abs(at_one[10.0] - at_one[0.0])


def test_abdi_ranaldo_recovers_a_planted_half_spread():
    """Trades bounce between bid and ask around a random-walk mid: the estimate lands near
    the planted half-spread, and near zero without one."""
    rng = np.random.default_rng(1)
    bars, ticks = 3000, 60
    mid = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 2e-4, bars * ticks))).reshape(bars, ticks)
    side = rng.choice([-1.0, 1.0], size=mid.shape)
    estimates = {}
    for half in (5e-4, 0.0):
        trades = mid * (1.0 + half * side)
        estimates[half] = abdi_ranaldo_half_spread(trades.max(axis=1), trades.min(axis=1),
                                                   trades[:, -1])
    assert estimates[5e-4] == pytest.approx(5e-4, rel=0.25)
    assert estimates[0.0] < 0.4 * estimates[5e-4]  # sampling the path from ticks adds a bit
    with pytest.raises(ValueError, match="1-d of one length"):
        abdi_ranaldo_half_spread([1.0], [1.0], [1.0])


def test_evaluation_config_keeps_the_execution_costs():
    config = EnvConfig(slippage_bps=4.0, half_spread_bps=1.0)
    assert evaluation_config(config).cost_model() == config.cost_model()
    assert dataclasses.replace(config, cost="zero").execution_costs().total_bps == 5.0


def test_report_states_the_execution_costs_charged():
    from fastrl.evaluate import evaluate_agent
    from fastrl.reports.single import markdown_report

    market = _market(n=20)
    for config, text in (
            (EnvConfig(window=WINDOW), "costs: nse_delivery, half-spread 2 + slippage 3 bps"),
            (EnvConfig(window=WINDOW, cost="bps", slippage_bps=1.5),
             "costs: bps, half-spread 0 + slippage 1.5 bps")):
        result = evaluate_agent(lambda obs: np.ones(obs.shape[0], dtype=np.int64), market,
                                config)
        assert text in markdown_report(result, {}, "t")


def test_portfolio_replay_matches_the_env_and_its_report_states_the_execution_costs():
    from fastrl.data.panel import PanelBlock
    from fastrl.markets.portfolio.backtest import evaluate_portfolio
    from fastrl.reports.portfolio import markdown_report

    rng = np.random.default_rng(4)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.02, (30, 2)), axis=0))
    days = np.datetime64("2024-03-01") + np.arange(30).astype("timedelta64[D]")
    panel = PanelBlock(symbols=("A", "B"), open=close * np.exp(rng.normal(0, 0.005, (30, 2))),
                       close=close, features=rng.normal(size=(30, 2, 1)).astype(np.float32),
                       tradable=np.ones((30, 2), bool), timestamps=days.astype("datetime64[ns]"))
    config = PortfolioConfig(window=1, half_spread_bps=1.0, slippage_bps=6.0)
    # the Python replay raises if its costs differ from the simulator's
    result = evaluate_portfolio(lambda obs: rng.uniform(0.0, 0.5, (1, 2)), panel, config)
    assert result.get("agent").step_costs.sum() > 0
    assert "costs: nse_delivery, half-spread 1 + slippage 6 bps per side" in markdown_report(
        result, {}, "t")
