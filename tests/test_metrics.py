"""Metrics against hand-computed values, against empyrical, and on the defined edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastrl import metrics as m

# equity 100 -> 110 -> 99 -> 108.9: returns +10%, -10%, +10%
EQUITY = np.array([100.0, 110.0, 99.0, 108.9])


def test_bar_sizes_annualise_by_nse_session():
    assert m.periods_per_year("1d") == 252
    assert m.bars_per_day("5min") == 75
    assert m.periods_per_year("5min") == 252 * 75
    assert m.bars_per_day("15min") == 25
    assert m.bars_per_day("1min") == 375
    for bad in ("2d", "weekly", "0min", "400min"):
        with pytest.raises(ValueError, match="freq"):
            m.bars_per_day(bad)


def test_returns_and_ratios_by_hand():
    returns = m.returns_from_equity(EQUITY)
    np.testing.assert_allclose(returns, [0.1, -0.1, 0.1], rtol=0, atol=1e-12)
    assert m.total_return(EQUITY) == pytest.approx(0.089, abs=1e-12)
    assert m.annualised_return(EQUITY) == pytest.approx(1.089 ** (252 / 3) - 1, rel=1e-12)
    # sample variance of (0.1, -0.1, 0.1) is 1/75
    assert m.annualised_volatility(returns) == pytest.approx(math.sqrt(252 / 75), rel=1e-12)
    assert m.sharpe_ratio(returns) == pytest.approx(math.sqrt(75 * 252) / 30, rel=1e-12)
    # downside deviation sqrt(0.01 / 3) -> Sortino (1/30) / (0.1/sqrt 3) * sqrt 252
    assert m.sortino_ratio(returns) == pytest.approx(math.sqrt(84.0), rel=1e-12)
    assert m.sharpe_ratio(returns, "5min") == pytest.approx(
        m.sharpe_ratio(returns) * math.sqrt(75), rel=1e-12
    )


def test_drawdown_by_hand():
    np.testing.assert_allclose(m.drawdown_series(EQUITY), [0.0, -0.1, -0.01], atol=1e-12)
    assert m.max_drawdown(EQUITY) == pytest.approx(-0.1, abs=1e-12)
    assert m.max_drawdown_duration(EQUITY) == 2
    # a fall from the starting equity is a drawdown too
    assert m.max_drawdown(np.array([100.0, 90.0, 95.0])) == pytest.approx(-0.1)
    assert m.max_drawdown_duration(np.array([100.0, 90.0, 101.0, 100.0, 102.0])) == 1
    assert m.calmar_ratio(EQUITY) == pytest.approx(m.annualised_return(EQUITY) / 0.1)


def test_trades_by_hand_with_cost_attribution():
    # long 2 bars, flat 1 bar, short 2 bars, then flat; costs in the fill steps
    positions = np.array([1.0, 1.0, 0.0, -1.0, -1.0, 0.0])
    step_pnl = np.array([4.0, 3.0, -1.0, -2.0, -5.0, -1.0])  # after costs
    step_costs = np.array([1.0, 0.0, 1.0, 1.0, 0.0, 1.0])
    equity = np.concatenate([[100.0], 100.0 + np.cumsum(step_pnl)])
    trades = m.extract_trades(positions, equity, step_costs)
    assert len(trades) == 2
    np.testing.assert_array_equal(trades.entry_step, [0, 3])
    np.testing.assert_array_equal(trades.exit_step, [1, 4])
    np.testing.assert_array_equal(trades.direction, [1, -1])
    np.testing.assert_array_equal(trades.bars_held, [2, 2])
    # the exit step's cost (closing a position to flat) belongs to the trade it closes
    np.testing.assert_allclose(trades.pnl, [4 + 3 - 1, -2 - 5 - 1])
    np.testing.assert_allclose(trades.returns, [6 / 100, -8 / 106])
    assert trades.closed.all()

    metrics = m.compute_metrics(equity, positions, step_costs)
    assert metrics.num_trades == 4
    assert metrics.num_round_trips == 2
    assert metrics.win_rate_trades == 0.5
    assert metrics.profit_factor == pytest.approx(6 / 8)
    assert metrics.avg_holding_bars == 2.0
    assert metrics.turnover == 4.0
    assert metrics.annual_turnover == pytest.approx(4.0 / (6 / 252))
    assert metrics.exposure == pytest.approx(4 / 6)
    assert metrics.time_in_market == pytest.approx(4 / 6)
    # bars in the market: 100->104, 104->107, 106->104, 104->99: two of four positive
    assert metrics.win_rate_bars == 0.5
    assert metrics.costs_paid == 4.0
    assert metrics.cost_fraction == pytest.approx(0.04)
    assert metrics.trades_per_day == pytest.approx(4 / 6)
    assert metrics.final_equity == pytest.approx(98.0)


def test_flip_splits_the_cost_by_notional():
    # long then flip to short: the flip trades 2 units, half of its cost closes the long
    positions = np.array([1.0, -1.0])
    step_costs = np.array([0.0, 2.0])
    equity = np.array([100.0, 110.0, 104.0])
    trades = m.extract_trades(positions, equity, step_costs)
    np.testing.assert_allclose(trades.pnl, [10.0 - 1.0, -6.0 + 1.0])
    np.testing.assert_array_equal(trades.closed, [True, False])
    liquidated = m.extract_trades(positions, equity, step_costs, liquidated_at_end=True)
    np.testing.assert_array_equal(liquidated.closed, [True, True])
    metrics = m.compute_metrics(equity, positions, step_costs, liquidated_at_end=True)
    assert metrics.num_trades == 3
    assert metrics.turnover == 4.0


def test_resizing_keeps_one_trade():
    positions = np.array([0.5, 1.0, 0.25, 0.0])
    equity = np.array([100.0, 101.0, 103.0, 102.0, 102.0])
    trades = m.extract_trades(positions, equity)
    assert len(trades) == 1
    assert trades.bars_held[0] == 3
    assert trades.pnl[0] == pytest.approx(2.0)
    assert m.compute_metrics(equity, positions).num_trades == 4


def _assert_all_defined(metrics: m.PerformanceMetrics) -> None:
    for key, value in metrics.to_dict().items():
        assert not (isinstance(value, float) and math.isnan(value)), key


def test_edge_no_trades_and_constant_equity():
    equity = np.full(11, 1000.0)
    metrics = m.compute_metrics(equity, np.zeros(10), np.zeros(10))
    _assert_all_defined(metrics)
    assert metrics.sharpe == metrics.sortino == metrics.calmar == 0.0
    assert metrics.annual_volatility == metrics.max_drawdown == 0.0
    assert metrics.num_trades == metrics.num_round_trips == 0
    assert metrics.win_rate_trades == metrics.win_rate_bars == metrics.profit_factor == 0.0
    assert metrics.avg_holding_bars == metrics.turnover == metrics.exposure == 0.0
    # constant positive returns have no dispersion: no measurable risk, not infinite Sharpe
    growing = 100.0 * 1.001 ** np.arange(20)
    assert m.sharpe_ratio(m.returns_from_equity(growing)) == 0.0
    assert m.sortino_ratio(m.returns_from_equity(growing)) == 0.0


def test_edge_one_bar_and_zero_bars():
    one = m.compute_metrics(np.array([100.0, 90.0]), np.array([1.0]), np.array([0.5]))
    _assert_all_defined(one)
    assert one.total_return == pytest.approx(-0.1)
    assert one.annual_return == one.sharpe == one.sortino == one.calmar == 0.0
    assert one.max_drawdown == pytest.approx(-0.1)
    assert one.num_round_trips == 0  # still open: no closed trade
    none = m.compute_metrics(np.array([100.0]), np.zeros(0), np.zeros(0))
    _assert_all_defined(none)
    assert none.bars == 0 and none.total_return == 0.0 and none.trades_per_day == 0.0


def test_edge_all_losing_trades_and_all_winning():
    positions = np.array([1.0, 0.0, 1.0, 0.0])
    losing = np.array([100.0, 98.0, 98.0, 95.0, 95.0])
    metrics = m.compute_metrics(losing, positions)
    assert metrics.num_round_trips == 2
    assert metrics.win_rate_trades == 0.0
    assert metrics.profit_factor == 0.0
    winning = np.array([100.0, 102.0, 102.0, 105.0, 105.0])
    metrics = m.compute_metrics(winning, positions)
    assert metrics.win_rate_trades == 1.0
    assert metrics.profit_factor == math.inf
    assert metrics.to_dict(json_safe=True)["profit_factor"] == "inf"
    assert m.format_metric(metrics.profit_factor, "ratio") == "inf"


def test_ruin_gives_minus_one_annual_return():
    equity = np.array([100.0, 50.0, 0.0, 0.0])
    assert m.annualised_return(equity) == -1.0
    np.testing.assert_allclose(m.returns_from_equity(equity), [-0.5, -1.0, 0.0])


def test_bad_input_names_the_problem():
    with pytest.raises(ValueError, match="starting equity"):
        m.total_return(np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="non-finite value at index 2"):
        m.total_return(np.array([1.0, 1.0, np.nan]))
    with pytest.raises(ValueError, match="positions has 2 entries, expected 3"):
        m.compute_metrics(EQUITY, np.zeros(2))


@pytest.mark.parametrize("freq,annualization", [("1d", 252), ("5min", 18900)])
def test_matches_empyrical_on_a_long_random_series(freq, annualization):
    empyrical = pytest.importorskip("empyrical")
    rng = np.random.default_rng(7)
    returns = rng.normal(0.0004, 0.012, size=2000)
    equity = 1e6 * np.concatenate([[1.0], np.cumprod(1.0 + returns)])
    ours = m.returns_from_equity(equity)
    np.testing.assert_allclose(ours, returns, rtol=0, atol=1e-12)
    kw = {"annualization": annualization}
    pairs = [
        (m.sharpe_ratio(ours, freq), empyrical.sharpe_ratio(returns, **kw)),
        (m.sortino_ratio(ours, freq), empyrical.sortino_ratio(returns, **kw)),
        (m.annualised_volatility(ours, freq), empyrical.annual_volatility(returns, **kw)),
        (m.annualised_return(equity, freq), empyrical.annual_return(returns, **kw)),
        (m.max_drawdown(equity), empyrical.max_drawdown(returns)),
        (m.calmar_ratio(equity, freq), empyrical.calmar_ratio(returns, **kw)),
        (m.total_return(equity), empyrical.cum_returns_final(returns)),
    ]
    for ours_value, theirs in pairs:
        assert ours_value == pytest.approx(float(theirs), rel=1e-9, abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(-0.3, 0.3), min_size=0, max_size=40),
    st.lists(st.sampled_from([-1.0, 0.0, 0.5, 1.0]), min_size=40, max_size=40),
)
def test_every_metric_is_defined(step_returns, levels):
    equity = 100.0 * np.concatenate([[1.0], np.cumprod(1.0 + np.asarray(step_returns))])
    n = len(step_returns)
    metrics = m.compute_metrics(equity, np.asarray(levels[:n]), np.full(n, 0.01))
    for key, value in metrics.to_dict().items():
        if key != "profit_factor":
            assert math.isfinite(value), key
        assert not math.isnan(value), key


def test_overnight_gap_before_an_exit_fill_belongs_to_the_closed_trade():
    # Long for step 0 (+10), then an exit filled at the next open after a -10 gap: the
    # round trip made nothing. Without the carry the gap would be booked to "flat".
    from fastrl.metrics import extract_trades

    equity = np.array([100.0, 110.0, 100.0])
    positions = np.array([1.0, 0.0])
    assert extract_trades(positions, equity).pnl.tolist() == [10.0]
    trades = extract_trades(positions, equity, carry_pnl=np.array([0.0, -10.0]))
    assert trades.pnl.tolist() == [0.0]
    # A flip: the gap before the flip's fill belongs to the long, the rest to the short.
    equity = np.array([100.0, 105.0, 103.0, 101.0])
    positions = np.array([1.0, -1.0, -1.0])
    trades = extract_trades(positions, equity, carry_pnl=np.array([0.0, -3.0, 0.0]))
    assert trades.pnl.tolist() == [2.0, -1.0]
    assert trades.pnl.sum() == equity[-1] - equity[0]
