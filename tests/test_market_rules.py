"""Indian market rules: delivery long/flat + short borrow fee, intraday square-off, whole shares."""

from __future__ import annotations

import numpy as np
import pytest

from fastrl.costs import bps, nse_delivery, nse_intraday
from fastrl.data.block import MarketBlock
from fastrl.env_config import EnvConfig
from fastrl.markets.single.env import (
    NO_ENTRY_AT_OPEN,
    SESSION_END,
    SQUARE_OFF,
    TradingVecEnv,
    session_flags,
)
from test_env_state import action_stream, assert_frames_identical, record

from sim_markets import constant_market, intraday_market, random_market


def one_segment_env(market: MarketBlock, **overrides) -> TradingVecEnv:
    config = EnvConfig(**{"window": 1, "episode_length": 0, "random_start": False,
                          "segment_assignment": "round_robin", "equity_floor": 0.0, **overrides})
    return TradingVecEnv(market, 1, config)


def five_minute_block(times: list[str], open_: list[float], close: list[float]) -> MarketBlock:
    n = len(times)
    return MarketBlock(symbols=("X",), open=np.array(open_, float), close=np.array(close, float),
                       features=np.zeros((n, 1), np.float32), offsets=np.array([0, n]),
                       timestamps=np.array(times, dtype="datetime64[ns]"), freq="5min")


# -- configuration ------------------------------------------------------------------------

def test_nse_delivery_is_long_flat_unless_a_borrow_rate_is_set():
    delivery = EnvConfig(cost="nse_delivery")
    assert delivery.position_levels == (0.0, 1.0) and delivery.min_pos == 0.0
    assert delivery.integer_shares is True
    assert EnvConfig().position_levels == (0.0, 1.0)  # nse_delivery is the default cost
    borrowed = EnvConfig(cost="nse_delivery", short_borrow_rate=0.06)
    assert borrowed.position_levels == (-1.0, 0.0, 1.0) and borrowed.min_pos == -1.0
    for cost in ("nse_intraday", "bps", "zero"):
        assert EnvConfig(cost=cost).position_levels == (-1.0, 0.0, 1.0)
        # leverage is refused only where it would be financed for free (cash delivery)
        assert EnvConfig(cost=cost, position_levels=(0.0, 3.0)).position_levels == (0.0, 3.0)
    assert EnvConfig(cost="nse_intraday").integer_shares is True
    assert EnvConfig(cost="bps").integer_shares is False
    assert EnvConfig(cost="bps", integer_shares=True).integer_shares is True
    assert EnvConfig(cost=nse_delivery(slippage_bps=5)).position_levels == (0.0, 1.0)


@pytest.mark.parametrize("overrides,message", [
    ({"position_levels": (-1.0, 0.0, 1.0)},
     r"position_levels \(-1.0, 0.0, 1.0\) has a negative level, but cost 'nse_delivery' is "
     r"cash delivery.*Set position_levels=\(0.0, 1.0\).*short_borrow_rate > 0"),
    ({"action": "continuous", "min_pos": -0.5},
     r"min_pos -0.5 is below 0.*Set min_pos=0.0.*short_borrow_rate > 0"),
    ({"position_levels": (0.0, 3.0)},
     r"position_levels \(0.0, 3.0\) has a level above 1, but cost 'nse_delivery' is cash "
     r"delivery.*no margin interest"),
    ({"position_levels": (-1.0, 0.0, 1.5), "short_borrow_rate": 0.06},
     "has a level above 1"),  # a borrow rate prices shorts, not borrowed cash
    ({"action": "continuous", "max_pos": 2.0}, r"max_pos 2.0 is above 1.*no margin interest"),
    ({"short_borrow_rate": -0.1}, "short_borrow_rate must be a finite annual rate >= 0"),
    ({"intraday_cutoff": "3pm"}, "intraday_cutoff must be a time 'HH:MM'"),
    ({"integer_shares": "yes"}, "integer_shares must be true, false or None"),
])
def test_bad_market_rule_settings_are_refused_with_what_to_set(overrides, message):
    with pytest.raises(ValueError, match=message):
        EnvConfig(cost="nse_delivery", **overrides)


def test_defaults_follow_the_cost_until_set_explicitly():
    config = EnvConfig()  # nse_delivery: long/flat
    config.cost = "zero"  # as a CLI override does after construction
    config.validate()
    assert config.position_levels == (-1.0, 0.0, 1.0) and config.integer_shares is False
    config.position_levels = (0.0, 0.5, 1.0)
    config.cost = "nse_delivery"
    config.validate()
    assert config.position_levels == (0.0, 0.5, 1.0)  # explicit levels stay
    config.position_levels = None
    config.validate()
    assert config.position_levels == (0.0, 1.0)
    again = EnvConfig.from_dict(config.to_dict())
    assert again.position_levels == (0.0, 1.0) and again.integer_shares is True


def test_session_flags_of_daily_and_five_minute_bars():
    daily = session_flags(random_market(0))
    assert np.all(daily == SQUARE_OFF | SESSION_END)
    times = ["2024-01-01T15:05", "2024-01-01T15:10", "2024-01-01T15:15", "2024-01-01T15:20",
             "2024-01-01T15:25", "2024-01-02T09:15", "2024-01-02T09:20", "2024-01-02T15:10"]
    block = five_minute_block(times, [100.0] * 8, [100.0] * 8)
    expected = [0, 0, SQUARE_OFF, SQUARE_OFF | NO_ENTRY_AT_OPEN,
                SQUARE_OFF | NO_ENTRY_AT_OPEN | SESSION_END, 0, 0, SQUARE_OFF | SESSION_END]
    assert session_flags(block, "15:20").tolist() == expected
    # The last bar closing at or before 15:22 is still the one closing at 15:20.
    assert session_flags(block, "15:22").tolist() == expected
    early = session_flags(block, "15:10")  # the 15:05 bar closes at 15:10
    assert early[0] == SQUARE_OFF and early[1] == SQUARE_OFF | NO_ENTRY_AT_OPEN
    no_stamps = MarketBlock(symbols=("X",), open=np.ones(5), close=np.ones(5),
                            features=np.zeros((5, 1), np.float32), offsets=np.array([0, 5]),
                            freq="5min")
    with pytest.raises(ValueError, match="5min bars need timestamps"):
        TradingVecEnv(no_stamps, 1, EnvConfig(window=1, cost="nse_intraday"))


# -- short borrow -------------------------------------------------------------------------

def test_borrow_fee_by_hand_on_daily_bars():
    # 0.0504 a year = 0.0002 per session close; short notional 1,000,000 -> Rs 200 a night.
    market = constant_market(100.0, length=6, num_features=1)
    env = one_segment_env(market, cost="zero", short_borrow_rate=0.0504)
    env.reset(seed=0)
    for night in range(1, 4):
        env.step(np.array([0]))  # short 1x at open 100, marked at close 100
        assert env.shares[0] == -10_000
        assert env.equity[0] == pytest.approx(1e6 - 200.0 * night, abs=1e-6)
        assert env.episode_costs[0] == pytest.approx(200.0 * night, abs=1e-9)
    env.step(np.array([1]))  # covered at the next open: no fee for this night
    assert env.equity[0] == pytest.approx(1e6 - 600.0, abs=1e-6)
    assert env.cash[0] == env.equity[0]

    # nse_delivery with a borrow rate: order charges plus the same nightly fee.
    env = one_segment_env(market, cost="nse_delivery", short_borrow_rate=0.0504,
                          half_spread_bps=0.0, slippage_bps=0.0)
    env.reset(seed=0)
    env.step(np.array([0]))
    model = nse_delivery()
    sell_cost = float(model.order_cost(False, 1e6))
    assert env.shares[0] == -10_000  # 1e6 / 100 is whole
    assert env.episode_costs[0] == pytest.approx(sell_cost + 200.0, rel=1e-12)
    assert env.equity[0] == pytest.approx(1e6 - sell_cost - 200.0, rel=1e-12)


def test_borrow_fee_is_charged_only_at_session_closes_of_intraday_bars():
    times = ["2024-01-01T15:15", "2024-01-01T15:20", "2024-01-01T15:25",
             "2024-01-02T09:15", "2024-01-02T09:20", "2024-01-02T09:25"]
    block = five_minute_block(times, [100.0] * 6, [100.0] * 6)
    env = one_segment_env(block, cost="bps", short_borrow_rate=2.52)  # 1% per night
    env.reset(seed=0)
    fees = []
    for _ in range(4):
        before = env.episode_costs[0]
        env.step(np.array([0]))  # stay short
        fees.append(env.episode_costs[0] - before)
    buy_sell = float(bps().order_cost(False, 1e6))
    assert fees[0] == pytest.approx(buy_sell)  # 15:15 -> 15:20: the order only
    assert fees[1] == pytest.approx(0.01 * float(-env.shares[0]) * 100.0)  # held over 15:25
    assert fees[2] == 0.0 and fees[3] == 0.0  # the next morning's bars


# -- whole shares -------------------------------------------------------------------------

def test_whole_shares_round_toward_zero_and_keep_cash_exact():
    market = MarketBlock(symbols=("X",), open=np.array([300.0, 300.0, 310.0, 290.0]),
                         close=np.array([300.0, 310.0, 290.0, 295.0]),
                         features=np.zeros((4, 1), np.float32), offsets=np.array([0, 4]))
    env = one_segment_env(market, cost="zero", integer_shares=True)
    env.reset(seed=0)
    env.step(np.array([2]))  # long 1e6 / 300 = 3333.33 -> 3333 shares at 300
    assert env.shares[0] == 3333 and env.cash[0] == 1e6 - 3333 * 300.0
    assert env.equity[0] == 100.0 + 3333 * 310.0
    env.step(np.array([0]))  # to short at 310: equity 1,033,330 -> -3333.32 -> -3333 shares
    assert env.shares[0] == -3333
    assert env.cash[0] == 100.0 + 2 * 3333 * 310.0
    assert env.equity[0] == env.cash[0] - 3333 * 290.0
    # An order that rounds to zero shares is not sent: no trade, no fixed fee, still flat.
    tiny = one_segment_env(market, cost=bps(10.0, fixed_fee=20.0), integer_shares=True,
                           initial_cash=250.0)
    tiny.reset(seed=0)
    tiny.step(np.array([2]))
    assert tiny.shares[0] == 0 and tiny.episode_trades[0] == 0 and tiny.positions[0] == 0
    assert tiny.equity[0] == 250.0


# -- intraday square-off ------------------------------------------------------------------

def test_intraday_square_off_at_the_last_close_before_the_cutoff_by_hand():
    times = ["2024-01-01T15:05", "2024-01-01T15:10", "2024-01-01T15:15", "2024-01-01T15:20",
             "2024-01-01T15:25", "2024-01-02T09:15", "2024-01-02T09:20", "2024-01-02T09:25"]
    open_ = [100.0, 100.0, 101.0, 102.0, 103.0, 104.0, 105.0, 106.0]
    close = [100.0, 101.0, 102.0, 103.0, 104.0, 105.0, 106.0, 107.0]
    block = five_minute_block(times, open_, close)
    model = nse_intraday()
    env = one_segment_env(block, cost=model)
    env.reset(seed=0)
    env.step(np.array([2]))  # long at open[1] = 100: 10,000 shares
    assert env.shares[0] == 10_000
    cost_in = env.episode_costs[0]
    env.step(np.array([2]))  # hold to close[2] = 102 (the 15:15 bar, closing at 15:20): out
    exit_cost = float(model.order_cost(False, 10_000 * 102.0))
    assert env.shares[0] == 0 and env.positions[0] == 0
    assert env.episode_costs[0] == pytest.approx(cost_in + exit_cost, rel=1e-12)
    assert env.cash[0] == pytest.approx(1e6 + 10_000 * 2.0 - cost_in - exit_cost, rel=1e-12)
    assert env.episode_trades[0] == 2
    for _ in range(2):  # the 15:20 and 15:25 opens: no new position
        env.step(np.array([2]))
        assert env.shares[0] == 0
    cash = env.cash[0]
    env.step(np.array([2]))  # the next session's first open (104): long again, whole shares
    assert env.shares[0] == np.trunc(cash / 104.0) > 0


@pytest.mark.parametrize("execution", ["next_open", "close"])
@pytest.mark.parametrize("action", ["discrete", "continuous"])
@pytest.mark.parametrize("cutoff", ["15:20", "13:02"])
def test_no_intraday_position_survives_a_session_close(execution, action, cutoff):
    market = intraday_market(3, sessions=(4, 3, 5))
    flags = session_flags(market, cutoff)
    config = EnvConfig(window=3, episode_length=120, action=action, execution=execution,
                       cost="nse_intraday", intraday_cutoff=cutoff, min_envs_per_thread=8)
    env = TradingVecEnv(market, 64, config, num_threads=2, seed=7)
    checked = traded = 0
    ended_flat = 0
    for a in action_stream(config, 600, 64, seed=11):
        last_bar = env.bar_index + 1  # where this step ends, before any auto-reset
        _, _, _, _, info = env.step(a)
        at = (flags[env.bar_index] & SQUARE_OFF) != 0
        assert np.all(env.shares[at] == 0) and np.all(env.positions[at] == 0)
        checked += int(at.sum())
        assert np.all(np.trunc(env.shares) == env.shares)  # whole shares throughout
        traded += int((env.shares != 0).sum())
        # Episodes that ended on a square-off bar (every session close is one) ended flat.
        ended = info["_episode"] & ((flags[last_bar] & SQUARE_OFF) != 0)
        assert np.all(info["episode"]["shares"][ended] == 0)
        assert np.all(info["episode"]["position"][ended] == 0)
        ended_flat += int(ended.sum())
    assert checked > 500 and traded > 1000 and ended_flat > 0


# -- snapshots still hold everything --------------------------------------------------------

@pytest.mark.parametrize("cost,borrow", [("nse_intraday", 0.0), ("nse_delivery", 0.9)])
def test_snapshots_restore_bit_identically_under_market_rules(cost, borrow):
    market = intraday_market(1, sessions=(3, 2, 4))
    config = EnvConfig(window=3, episode_length=50, cost=cost, short_borrow_rate=borrow,
                       reward="diff_sharpe", min_envs_per_thread=16)
    source = TradingVecEnv(market, 256, config, num_threads=2, seed=2)
    for a in action_stream(config, 45, 256, seed=1):
        source.step(a)
    state = source.get_state()
    later = action_stream(config, 70, 256, seed=2)
    expected = record(source, later)
    target = TradingVecEnv(market, 256, config, num_threads=1, seed=0)
    target.set_state(state)
    assert_frames_identical(record(target, later), expected)
