"""Classical rules as policies (fastrl.rules): each rule's schedule against a plain pandas
implementation, causality, the simulator stepping, Ledoit-Wolf, dividends and bad input."""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
from functools import cache

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("fastrl._core")

from sklearn.covariance import LedoitWolf  # noqa: E402

from fastrl.config import ConfigError  # noqa: E402
from fastrl.costs import bps  # noqa: E402
from fastrl.data.block import MarketBlock  # noqa: E402
from fastrl.data.loaders import load_bars  # noqa: E402
from fastrl.data.months import month_ends  # noqa: E402
from fastrl.data.panel import PanelBlock  # noqa: E402
from fastrl.env_config import EnvConfig, PortfolioConfig  # noqa: E402
from fastrl.markets.portfolio.backtest import baseline_backtest as portfolio_baseline  # noqa: E402
from fastrl.markets.portfolio.backtest import baseline_config as portfolio_baseline_config  # noqa: E402
from fastrl.markets.portfolio.backtest import rebalance_steps  # noqa: E402
from fastrl.markets.portfolio.env import PortfolioVecEnv  # noqa: E402
from fastrl.markets.results import EvaluationError  # noqa: E402
from fastrl.markets.single.backtest import baseline_backtest, rule_config  # noqa: E402
from fastrl.markets.single.env import TradingVecEnv  # noqa: E402
from fastrl.rules import (  # noqa: E402
    RULES,
    backtest_portfolio,
    backtest_rule,
    backtest_single,
    exposure_schedule,
    rule_for,
    rule_names,
    weight_schedule,
)
from fastrl.rules.portfolio import long_only_min_variance  # noqa: E402

SINGLE = rule_names("single")
PORTFOLIO = rule_names("portfolio")
BUNDLED = ("BPCL", "HDFCLIFE")


# ----------------------------------------------------------------------------- blocks


@cache
def bundled_bars() -> dict[str, pd.DataFrame]:
    return load_bars(list(BUNDLED))


def market_from(frames: dict[str, pd.DataFrame]) -> MarketBlock:
    return MarketBlock.from_bars(frames)


def synthetic_frame(n: int = 700, seed: int = 0, start: str = "2019-01-01") -> pd.DataFrame:
    """A random walk with drift regimes, so every rule switches several times."""
    rng = np.random.default_rng(seed)
    drift = np.repeat(rng.choice([-0.002, 0.002], size=n // 100 + 1), 100)[:n]
    close = 100.0 * np.exp(np.cumsum(drift + rng.normal(0.0, 0.015, n)))
    open_ = close * np.exp(rng.normal(0.0, 0.004, n))
    return pd.DataFrame({"open": open_, "close": close},
                        index=pd.bdate_range(start, periods=n, name="date"))


def bundled_market() -> MarketBlock:
    return market_from(bundled_bars())


def panel_from(frames: dict[str, pd.DataFrame]) -> PanelBlock:
    """Union calendar, NaN where a symbol has no bar (as build_panel aligns them)."""
    return PanelBlock.from_bars(frames)


def bundled_panel() -> PanelBlock:
    # from 2016: BPCL trades alone until HDFCLIFE lists in November 2017
    return panel_from({s: f.loc["2016-01-01":] for s, f in bundled_bars().items()})


def synthetic_panel(num_assets: int = 4, n: int = 600) -> PanelBlock:
    return panel_from({f"S{a}": synthetic_frame(n, seed=10 + a) for a in range(num_assets)})


# ----------------------------------------------------------------------------- plain pandas


def month_end_rows(close: pd.Series) -> pd.Series:
    """True on each month's last row of the series, except the series' last row."""
    last = close.index.to_series().groupby(close.index.to_period("M")).transform("max")
    ends = pd.Series(close.index == last.to_numpy(), index=close.index)
    ends.iloc[-1] = False
    return ends


def monthly(decided: pd.Series, ends: pd.Series) -> pd.Series:
    return decided.where(ends).dropna().reindex(decided.index, method="ffill").fillna(0.0)


def pandas_exposure(name: str, close: pd.Series) -> pd.Series:
    """The rules with their default parameters, written directly with pandas."""
    ends = month_end_rows(close)
    if name == "buy_and_hold":
        return pd.Series(1.0, index=close.index)
    if name == "voltarget":
        vol = close.pct_change().rolling(60).std() * math.sqrt(252)
        return monthly((0.10 / vol).clip(upper=1.0).fillna(0.0), ends)
    if name == "momentum":
        ret = close.pct_change(231).shift(21)  # close[t-21] / close[t-252] - 1
        return monthly((ret > 0).astype(float).where(ret.notna(), 0.0), ends)
    if name == "ma10":
        month_close = close[ends]
        above = (month_close > month_close.rolling(10).mean()).astype(float)
        return monthly(above.reindex(close.index), ends)
    if name == "ma200":
        return (close > close.rolling(200).mean()).astype(float)
    raise AssertionError(name)


def pandas_weights(name: str, marks: pd.DataFrame, tradable: pd.Series) -> np.ndarray:
    """A portfolio rule's weights at the last row of ``marks``, written with pandas."""
    cols = marks.columns
    if name in ("ew_hold", "ew_monthly"):
        return np.full(len(cols), 1.0 / len(cols))
    prices = marks.replace(0.0, np.nan)
    if name == "inverse_vol":
        window = prices.iloc[-61:]
        ok = window.notna().all() & tradable & (len(window) == 61)
        inverse = 1.0 / window.loc[:, ok].pct_change().iloc[1:].std()
        return (inverse / inverse.sum()).reindex(cols).fillna(0.0).to_numpy()
    if name == "xs_momentum":
        if len(prices) <= 252:
            return np.zeros(len(cols))
        score = (prices.shift(21) / prices.shift(252) - 1.0).iloc[-1]
        score = score[tradable & score.notna()]
        top = score.sort_values(ascending=False, kind="stable").index[:10]
        return pd.Series(1.0 / len(top), index=top).reindex(cols).fillna(0.0).to_numpy()
    raise AssertionError(name)


# ----------------------------------------------------------------------------- schedules


@pytest.mark.parametrize("name", SINGLE)
@pytest.mark.parametrize("source", ["bundled", "synthetic"])
def test_single_rule_exposure_equals_a_plain_pandas_rule(name, source):
    frames = (bundled_bars() if source == "bundled"
              else {"SYN": synthetic_frame(800, seed=1), "SYN2": synthetic_frame(700, seed=3)})
    market = market_from(frames)
    exposure = exposure_schedule(rule_for(name), market)
    for s, frame in enumerate(frames.values()):
        expected = pandas_exposure(name, frame["close"]).to_numpy()
        got = exposure[market.segment(s)]
        # the last row decides nothing (no bar to fill on)
        np.testing.assert_allclose(got[:-1], expected[:-1], rtol=1e-12, atol=0)
        if name != "buy_and_hold":
            assert 0.0 < got.mean() < 1.0 and got[0] == 0.0  # switches; flat in warm-up


def test_daily_rebalancing_and_month_ends_without_timestamps():
    close = synthetic_frame(600, seed=4)["close"]
    market = market_from({"X": close.to_frame().assign(open=close)})
    vol = close.pct_change().rolling(30).std() * math.sqrt(252)
    voltarget = exposure_schedule(rule_for("voltarget", window=30, target_vol=0.2,
                                           rebalance="daily"), market)
    np.testing.assert_allclose(voltarget, (0.2 / vol).clip(upper=1.0).fillna(0.0), rtol=1e-12)
    ret = close.pct_change(90).shift(10)
    momentum = exposure_schedule(rule_for("momentum", lookback=100, skip=10,
                                          rebalance="daily"), market)
    np.testing.assert_array_equal(momentum, (ret > 0).astype(float))
    # no timestamps: a "month" is 21 rows, as for the portfolio baselines
    plain = dataclasses.replace(market, timestamps=None)
    assert np.flatnonzero(month_ends(None, 50)).tolist() == [20, 41]
    monthly = exposure_schedule(rule_for("momentum", lookback=100, skip=10), plain)
    decided = (ret > 0).astype(float).to_numpy()
    ends = np.flatnonzero(month_ends(None, 600))
    np.testing.assert_array_equal(monthly[ends], decided[ends])
    assert np.all(np.diff(monthly)[np.setdiff1d(np.arange(599), ends - 1)] == 0)  # held


@pytest.mark.parametrize("name", ["inverse_vol", "xs_momentum", "ew_monthly", "ew_hold"])
@pytest.mark.parametrize("source", ["bundled", "synthetic"])
def test_portfolio_rule_weights_equal_a_plain_pandas_rule(name, source):
    panel = bundled_panel() if source == "bundled" else synthetic_panel(12, 400)
    config = PortfolioConfig(window=1)
    targets, orders = weight_schedule(rule_for(name, **(
        {"top_k": 10} if name == "xs_momentum" else {})), panel, config)
    expected_orders = (np.arange(len(orders)) == 0 if name == "ew_hold" else
                       np.isin(np.arange(len(orders)), rebalance_steps(panel, config)))
    np.testing.assert_array_equal(orders, expected_orders)
    marks = pd.DataFrame(panel.mark, columns=panel.symbols)
    for k in np.flatnonzero(orders):
        tradable = pd.Series(panel.tradable[k], index=panel.symbols)
        expected = pandas_weights(name, marks.iloc[:k + 1], tradable)
        np.testing.assert_allclose(targets[k], expected, rtol=1e-12, atol=1e-15)
    assert np.allclose(targets[orders].sum(axis=1)[-1], 1.0)


@pytest.mark.parametrize("name", SINGLE)
def test_single_rules_are_causal(name):
    frame = synthetic_frame(600, seed=5)
    rule = rule_for(name)
    base = exposure_schedule(rule, market_from({"X": frame}))
    rng = np.random.default_rng(1)
    changed_later = 0
    for t in range(0, 599, 23):
        changed = frame.copy()
        shock = np.exp(rng.normal(0.0, 0.2, 600 - t - 1))
        changed.iloc[t + 1:, :] = changed.iloc[t + 1:, :].mul(shock, axis=0)
        after = exposure_schedule(rule, market_from({"X": changed}))
        np.testing.assert_array_equal(after[:t + 1], base[:t + 1])
        changed_later += not np.array_equal(after, base)
    assert changed_later > 5 or name == "buy_and_hold"  # the shocks do move later decisions


@pytest.mark.parametrize("name", PORTFOLIO)
def test_portfolio_rules_are_causal(name):
    panel = synthetic_panel(4, 420)
    config = PortfolioConfig(window=1)
    rule = rule_for(name, **({"window": 60} if name == "min_variance" else {}))
    base, _ = weight_schedule(rule, panel, config)
    rng = np.random.default_rng(2)
    for k in (40, 150, 260, 300, 380):
        shock = np.exp(rng.normal(0.0, 0.2, (panel.num_bars - k - 1, panel.num_assets)))
        close = panel.close.copy()
        open_ = panel.open.copy()
        close[k + 1:] *= shock
        open_[k + 1:] *= shock
        changed = dataclasses.replace(panel, close=close, open=open_)
        after, _ = weight_schedule(rule, changed, config)
        np.testing.assert_array_equal(after[:k + 1], base[:k + 1])


# ----------------------------------------------------------------------------- simulator


def step_single_by_hand(market: MarketBlock, config: EnvConfig, segment: int, start: int,
                        exposure: np.ndarray) -> tuple[list[float], list[bool], float, float]:
    """TradingVecEnv stepped with ``exposure[bar]``: (equity marks, whether each step
    traded, costs, liquidation) of its one episode."""
    env = TradingVecEnv(market, 1, config, num_threads=1, seed=0)
    env.reset(seed=0)
    state = env.get_state()
    state["segment"][:] = segment
    state["bar_index"][:] = start
    env.set_state(state)
    marks, traded, trades = [], [], 0
    while True:
        _, _, terminated, truncated, info = env.step(np.array([exposure[env.bar_index[0]]]))
        if terminated[0] or truncated[0]:
            episode = info["episode"]
            marks.append(float(episode["equity"][0]))
            traded.append(int(episode["trades"][0]) > trades)
            result = (marks, traded, float(episode["costs"][0]),
                      float(episode["liquidation"][0]))
            env.close()
            return result
        marks.append(float(env.equity[0]))
        traded.append(int(env.episode_trades[0]) > trades)
        trades = int(env.episode_trades[0])


@pytest.mark.parametrize("cost", ["nse_delivery", "nse_intraday"])
@pytest.mark.parametrize("name", ["voltarget", "momentum", "ma200"])
def test_rule_backtest_equals_stepping_the_env_by_hand(name, cost):
    market = bundled_market()
    config = EnvConfig(window=1, cost=cost)
    rule = rule_for(name)
    exposure = exposure_schedule(rule, market)
    for backtest, s in zip(backtest_rule(rule, market, config), range(2), strict=True):
        start = market.segment(s).start
        marks, traded, costs, liquidation = step_single_by_hand(
            market, rule_config(config), s, start, exposure)
        assert backtest.strategy == name and backtest.symbol == BUNDLED[s]
        np.testing.assert_array_equal(backtest.equity[1:-1], marks[:-1])
        assert backtest.equity[-1] == marks[-1] - liquidation
        assert backtest.step_costs.sum() == pytest.approx(costs + liquidation, rel=1e-12)
        np.testing.assert_array_equal(backtest.fills, traded)
        assert backtest.fills.sum() > 5
        # long/flat and whole shares: the simulator's market rules, not the schedule's
        assert backtest.positions.min() >= 0.0 and backtest.positions.max() <= 1.0
        # the intraday product is squared off at every session's end, as for the agent
        # (the passive baselines alone skip it); delivery holds across sessions
        assert backtest.positions.any() == (cost == "nse_delivery")
        np.testing.assert_array_equal(backtest.shares_held, np.trunc(backtest.shares_held))


@pytest.mark.parametrize("cost", ["nse_delivery", bps(5.0)])
def test_buy_and_hold_rule_is_the_buy_and_hold_baseline_bit_for_bit(cost):
    market = bundled_market()
    config = EnvConfig(window=5, cost=cost)
    rules = backtest_single([rule_for("buy_and_hold")], market, config)
    for s, rule in enumerate(rules):
        baseline = baseline_backtest(market, s, config, "buy_and_hold")
        assert rule.strategy == "buy_and_hold"
        for key in ("equity", "positions", "shares_held", "step_costs", "fills", "bars"):
            np.testing.assert_array_equal(getattr(rule, key), getattr(baseline, key), key)
        assert rule.metrics == baseline.metrics


def test_portfolio_rule_backtest_equals_stepping_the_env_by_hand():
    panel = bundled_panel()
    config = PortfolioConfig(window=1, integer_shares=True, trade_band=0.01)
    rules = [rule_for("inverse_vol"), rule_for("xs_momentum", top_k=1)]
    backtests = backtest_portfolio(rules, panel, config)
    for rule, backtest in zip(rules, backtests, strict=True):
        targets, orders = weight_schedule(rule, panel, config)
        env = PortfolioVecEnv(panel, 1, portfolio_baseline_config(config), num_threads=1,
                              seed=0)
        env.reset(seed=0)
        equity = [float(env.equity[0])]
        for k in range(len(orders)):
            _, _, terminated, truncated, info = env.step_orders(targets[k][None],
                                                                orders[k:k + 1])
            done = bool(terminated[0] or truncated[0])
            equity.append(float(info["episode"]["equity"][0] if done else env.equity[0]))
        liquidation = float(info["episode"]["liquidation"][0])
        env.close()
        assert backtest.strategy == rule.name
        np.testing.assert_array_equal(backtest.equity[:-1], equity[:-1])
        assert backtest.equity[-1] == equity[-1] - liquidation
        np.testing.assert_array_equal(backtest.rebalanced, orders)
        assert backtest.legs.sum() > 4


@pytest.mark.parametrize("name", ["ew_hold", "ew_monthly"])
def test_equal_weight_rules_are_the_baselines_bit_for_bit(name):
    panel = bundled_panel()
    config = PortfolioConfig(window=3, integer_shares=True)
    rule = backtest_rule(rule_for(name), panel, config)
    baseline = portfolio_baseline(panel, config, name)
    for key in ("equity", "weights", "step_costs", "legs", "turnover", "rebalanced"):
        np.testing.assert_array_equal(getattr(rule, key), getattr(baseline, key), key)
    assert rule.metrics == baseline.metrics


# ----------------------------------------------------------------------------- min variance


def enumerated_min_variance(cov: np.ndarray) -> np.ndarray:
    """Long-only minimum variance by enumeration: the best unconstrained minimum-variance
    portfolio (w = C^-1 1 / 1' C^-1 1) over the supports whose weights are all >= 0."""
    best, best_var = None, math.inf
    m = cov.shape[0]
    for size in range(1, m + 1):
        for support in itertools.combinations(range(m), size):
            sub = cov[np.ix_(support, support)]
            w_sub = np.linalg.solve(sub, np.ones(size))
            w_sub /= w_sub.sum()
            if np.any(w_sub < -1e-12):
                continue
            w = np.zeros(m)
            w[list(support)] = w_sub
            if w @ cov @ w < best_var:
                best, best_var = w, float(w @ cov @ w)
    assert best is not None
    return best


def test_min_variance_weights_are_ledoit_wolf_and_a_long_only_solve():
    panel = synthetic_panel(4, 300)
    config = PortfolioConfig(window=1)
    targets, orders = weight_schedule(rule_for("min_variance", window=120), panel, config)
    marks = pd.DataFrame(panel.mark)
    checked = 0
    for k in np.flatnonzero(orders):
        if k < 120:
            assert not targets[k].any()  # warm-up: cash
            continue
        returns = marks.iloc[k - 120:k + 1].pct_change().iloc[1:].to_numpy()
        lw = LedoitWolf().fit(returns)
        assert lw.shrinkage_ > 0
        expected = enumerated_min_variance(lw.covariance_)
        np.testing.assert_allclose(targets[k], expected, atol=1e-6)
        # the sample covariance gives other weights: the shrinkage is what is used
        sample = enumerated_min_variance(np.cov(returns, rowvar=False, ddof=0))
        assert np.abs(sample - expected).max() > 1e-4
        checked += 1
    assert checked >= 5


def test_long_only_solve_drops_a_dominated_asset():
    # asset 2 is asset 0 plus extra noise: never in the minimum-variance portfolio
    cov = np.array([[0.04, 0.0, 0.04], [0.0, 0.09, 0.0], [0.04, 0.0, 0.05]])
    weights = long_only_min_variance(cov)
    np.testing.assert_allclose(weights, enumerated_min_variance(cov), atol=1e-7)
    assert weights[2] == pytest.approx(0.0, abs=1e-9)


# ----------------------------------------------------------------------------- dividends


def test_bars_are_total_return_adjusted_closes_and_every_rule_earns_the_dividend():
    # The bundled daily bars are Alpha Vantage's adjusted series: the loader scales
    # open..close by adj_close / close, so close IS adj_close, back-adjusted for splits,
    # bonus issues and dividends. On an ex-dividend day the adjusted return is
    # close_t / (close_{t-1} - dividend) - 1 on the raw prices: the dividend is in the price.
    raw = pd.read_csv("python/fastrl/data/bundled/daily/BPCL.csv.gz", parse_dates=["date"],
                      index_col="date")
    bars = bundled_bars()["BPCL"]
    np.testing.assert_allclose(bars["close"].to_numpy(), raw["adj_close"].to_numpy(),
                               rtol=1e-12)
    ex = np.flatnonzero(raw["dividend"].to_numpy() > 0)
    assert ex.size > 20
    # the dividend column is per share of today's count (after BPCL's bonus issues of 2012,
    # 2016 and 2017), the raw close per share of its own day: both in the previous day's
    # shares (2012-07-13 is a bonus and an ex-dividend day at once)
    split = raw["split"].to_numpy()
    splits_from = np.cumprod(split[::-1])[::-1]  # the bonus factor from each day on
    raw_close = raw["close"].to_numpy()
    dividend = raw["dividend"].to_numpy() * splits_from
    adjusted = bars["close"].to_numpy()
    with_dividend = raw_close[ex] * split[ex] / (raw_close[ex - 1] - dividend[ex]) - 1.0
    np.testing.assert_allclose(adjusted[ex] / adjusted[ex - 1] - 1.0, with_dividend,
                               rtol=0, atol=1e-5)
    price_only = raw_close[ex] * split[ex] / raw_close[ex - 1] - 1.0
    assert np.all(adjusted[ex] / adjusted[ex - 1] - 1.0 > price_only + 1e-4)

    # The simulator pays no dividend cash of its own: every rule and buy-and-hold mark the
    # same adjusted closes, and while shares are held the equity moves by shares x the
    # adjusted close change, the dividend included once (no double counting).
    market = market_from({"BPCL": bars.loc["2019-01-01":]})
    config = EnvConfig(window=1, cost="zero", integer_shares=False)
    backtests = backtest_single([rule_for(n) for n in SINGLE], market, config)
    close = np.asarray(market.close)
    for backtest in backtests:
        np.testing.assert_array_equal(backtest.price, close[np.r_[backtest.start_bar,
                                                                  backtest.bars]])
        held = np.flatnonzero(~backtest.fills[1:]) + 1  # no fill in step i: shares unchanged
        change = np.diff(backtest.equity)[held]
        expected = backtest.shares_held[held] * np.diff(backtest.price)[held]
        np.testing.assert_allclose(change, expected, rtol=1e-9, atol=1e-6)


# ----------------------------------------------------------------------------- bad input


def test_unknown_rule_lists_the_known_ones():
    with pytest.raises(ConfigError, match="unknown rule 'momentun'; known rules: buy_and_hold"):
        rule_for("momentun")
    assert set(RULES) == set(SINGLE) | set(PORTFOLIO)


@pytest.mark.parametrize(("name", "params", "message"), [
    ("ma200", {"window": -5}, "ma200 setting 'window' must be >= 1, got -5"),
    ("voltarget", {"target_vol": float("nan")},
     "voltarget setting 'target_vol' must be a finite number, got nan"),
    ("voltarget", {"max_exposure": 2.0}, "'max_exposure' must be <= 1"),
    ("momentum", {"skip": 300}, "momentum setting 'skip' .*must be < lookback \\(252\\)"),
    ("momentum", {"lookbak": 100}, "'lookbak' is not a known key"),
    ("momentum", {"rebalance": "weekly"}, "'rebalance' must be one of"),
    ("xs_momentum", {"top_k": 0}, "'top_k' must be >= 1"),
    ("ew_hold", {"window": 3}, "rule 'ew_hold' takes no parameters"),
])
def test_bad_rule_parameters_name_the_key(name, params, message):
    with pytest.raises(ConfigError, match=message):
        rule_for(name, **params)


def test_a_rule_of_the_wrong_kind_is_refused():
    with pytest.raises(ConfigError, match="'momentum' is a single-symbol rule; it cannot run "
                                          "on a portfolio panel"):
        backtest_rule(rule_for("momentum"), synthetic_panel(2, 60), PortfolioConfig(window=1))
    with pytest.raises(ConfigError, match="'min_variance' is a portfolio rule; it cannot run "
                                          "on a single-symbol market block"):
        backtest_rule(rule_for("min_variance"), market_from({"X": synthetic_frame(60)}),
                      EnvConfig(window=1))


def test_a_later_start_reads_the_earlier_rows_as_history():
    # a backtest that starts at row 300 of each segment holds the rule's decisions there,
    # warmed up on the 300 rows before it (momentum needs 252)
    market = bundled_market()
    rule = rule_for("momentum")
    exposure = exposure_schedule(rule, market)
    starts = [market.segment(s).start + 300 for s in range(2)]
    for s, backtest in enumerate(backtest_single([rule], market, EnvConfig(window=1),
                                                 start_bars=starts)):
        assert backtest.decision_bars[0] == starts[s]
        np.testing.assert_array_equal(backtest.positions, exposure[backtest.decision_bars])
        assert backtest.positions.any()


def test_short_blocks_and_wrong_configs_are_refused():
    with pytest.raises(EvaluationError, match="the panel has 3 rows: no step"):
        weight_schedule(rule_for("inverse_vol"), synthetic_panel(2, 3), PortfolioConfig(window=3))
    with pytest.raises(TypeError, match="a portfolio panel needs a PortfolioConfig"):
        backtest_rule(rule_for("ew_hold"), synthetic_panel(2, 30), EnvConfig(window=1))


def test_portfolio_rules_do_not_depend_on_the_blas_thread_count():
    """A covariance fit or solve run on more BLAS threads sums in another order; the rules
    decide in one, so their weights are the same whatever the machine's thread count."""
    from threadpoolctl import threadpool_limits

    panel = synthetic_panel(30, 400)
    config = PortfolioConfig(window=1)
    rule = rule_for("min_variance")
    with threadpool_limits(limits=1):
        one = weight_schedule(rule, panel, config)
    with threadpool_limits(limits=2):
        two = weight_schedule(rule, panel, config)
    np.testing.assert_array_equal(one[0], two[0])
    np.testing.assert_array_equal(one[1], two[1])


def test_rule_parameters_live_in_the_config():
    from fastrl.config import build_config, config_from_dict, config_to_dict
    from fastrl.rules import RULES, rule_from_config

    config = build_config("fast", None, {}, ["rules.momentum.lookback=126",
                                             "rules.xs_momentum.top_k=5"])
    assert rule_from_config("momentum", config).params.lookback == 126
    assert rule_from_config("xs_momentum", config).params.top_k == 5
    assert rule_from_config("ma10", config) == rule_for("ma10")  # the literature's default
    assert rule_from_config("ew_hold", config) == rule_for("ew_hold")
    # saved and read back with the config (a run folder, a checkpoint)
    assert config_from_dict(config_to_dict(config)).rules == config.rules
    # every rule with parameters has its section, of the rule's own model
    for name, spec in RULES.items():
        assert type(config.rules.params(name)) is spec.params


@pytest.mark.parametrize(("option", "message"), [
    ("rules.momentum.lookback=1", "config key 'rules.momentum.lookback' must be >= 2, got 1"),
    ("rules.momentum.skip=300", "config key 'rules.momentum.skip' must be < lookback (252)"),
    ("rules.nope.window=3", "unknown config key 'rules.nope.window'"),
    ("rules.ma10.weeks=3", "known keys of rule 'ma10': rules.ma10.months"),
    ("rules.voltarget.target_vol=inf", "config key 'rules.voltarget.target_vol'"),
])
def test_bad_rule_settings_in_a_config_name_the_key(option, message):
    from fastrl.config import build_config

    with pytest.raises(ConfigError, match=re.escape(message)):
        build_config("fast", None, {}, [option])


def test_a_config_file_sets_rule_parameters(tmp_path):
    from fastrl.config import build_config

    path = tmp_path / "rules.yaml"
    path.write_text("rules:\n  ma10: {months: 12}\n  voltarget: {target_vol: 0.15}\n")
    config = build_config(None, str(path))
    assert (config.rules.ma10.months, config.rules.voltarget.target_vol) == (12, 0.15)
    path.write_text("rules:\n  ma10: 12\n")
    with pytest.raises(ConfigError, match="'rules.ma10' needs a mapping"):
        build_config(None, str(path))


def test_every_rule_has_a_table_label():
    from fastrl.rules import RULES
    from fastrl.strategies import RULE_LABELS, STRATEGY_LABELS, strategy_label

    assert set(RULE_LABELS) == set(RULES)
    for name in RULES:
        assert STRATEGY_LABELS[name] == strategy_label(name) == RULE_LABELS[name]


def test_a_portfolio_rule_started_later_reads_the_earlier_rows_as_history():
    panel, config = synthetic_panel(3, 600), PortfolioConfig(window=4, initial_cash=1e6)
    # equal weight reads no history: started at row 400 it is the backtest of the panel cut
    # to begin there (its first decision row window - 1 = 3 rows in)
    (late,) = backtest_portfolio([rule_for("ew_monthly")], panel, config, start_row=400)
    (cut,) = backtest_portfolio([rule_for("ew_monthly")], panel.rows(397, 600), config)
    np.testing.assert_array_equal(late.equity, cut.equity)
    np.testing.assert_array_equal(late.weights, cut.weights)
    assert late.decision_rows[0] == 400
    # inverse vol reads 60 rows before each decision: warm at row 400, cash on the cut panel
    # until 60 rows have passed
    (warm,) = backtest_portfolio([rule_for("inverse_vol")], panel, config, start_row=400)
    targets, orders = weight_schedule(rule_for("inverse_vol"), panel, config, start_row=400)
    assert orders[0] and targets[0].sum() == pytest.approx(1.0)
    assert warm.weights[0, :3].sum() > 0.9
    with pytest.raises(EvaluationError, match="start row 2 is before the first decision row 3"):
        backtest_portfolio([rule_for("ew_hold")], panel, config, start_row=2)
