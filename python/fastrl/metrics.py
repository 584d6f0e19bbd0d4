"""Trading metrics on plain numpy arrays: returns, risk ratios, drawdowns, trades, costs.

Conventions (one backtest of ``n`` bars):

- ``equity`` has ``n + 1`` entries: the starting equity, then the equity marked at the
  close of each bar. Per-bar simple returns are ``equity[t + 1] / equity[t] - 1``.
- ``positions`` has ``n`` entries: the exposure (fraction of equity, sign = direction)
  held during bar ``t``, i.e. after that step's fill.
- ``step_costs`` has ``n`` entries: costs paid in that step (currency), already deducted
  from ``equity``.

Annualisation knows the bar size: 252 trading days a year; an NSE session is 375
minutes, so a day has 75 five-minute bars. Risk-free rate is zero.

Every metric is defined for every input; none is NaN. Where a ratio has no risk to divide
by (constant equity, fewer than two bars, no losing bar, no drawdown) it is 0.0, since
such a run measured no risk rather than infinite skill. The one exception is the profit
factor of a run whose closed trades never lost: ``math.inf`` (``format_metric`` prints it
and ``PerformanceMetrics.to_dict(json_safe=True)`` turns it into the string "inf").

Definitions match empyrical (tests check to 1e-9) for total/annual return (CAGR),
annual volatility (ddof=1), Sharpe (ddof=1), Sortino (downside deviation over all bars,
ddof=0), max drawdown (peak includes the starting equity) and Calmar (CAGR / |max DD|),
except that empyrical returns NaN where this module returns 0.0 as described above.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, fields

import numpy as np

TRADING_DAYS_PER_YEAR = 252
NSE_SESSION_MINUTES = 375
EPS = 1e-12  # a standard deviation below this is treated as no risk at all


def bars_per_day(freq: str) -> float:
    """Bars in one NSE trading day for a bar size like "1d", "5min", "15min", "1h"."""
    if not isinstance(freq, str):
        raise TypeError(f"freq must be a string like '1d' or '5min', got {freq!r}")
    match = re.fullmatch(r"\s*(\d*)\s*(d|day|min|m|t|h|hour)\s*", freq.lower())
    if match is None:
        raise ValueError(f"unknown bar size freq={freq!r}; expected e.g. '1d', '5min', '1h'")
    count = int(match.group(1) or 1)
    if count <= 0:
        raise ValueError(f"bar size must be positive, got freq={freq!r}")
    unit = match.group(2)
    if unit in ("d", "day"):
        if count != 1:
            raise ValueError(f"multi-day bars are not supported, got freq={freq!r}")
        return 1.0
    minutes = count * (60 if unit in ("h", "hour") else 1)
    if minutes > NSE_SESSION_MINUTES:
        raise ValueError(
            f"bar size freq={freq!r} is longer than one {NSE_SESSION_MINUTES}-minute NSE session"
        )
    return NSE_SESSION_MINUTES / minutes


def periods_per_year(freq: str) -> float:
    """Bars per year: 252 for daily bars, 252 * 75 = 18900 for five-minute bars."""
    return TRADING_DAYS_PER_YEAR * bars_per_day(freq)


def _as_equity(equity: np.ndarray) -> np.ndarray:
    values = np.asarray(equity, dtype=np.float64)
    if values.ndim != 1 or values.shape[0] < 1:
        raise ValueError(
            f"equity must be a 1-D array with the starting value first, got shape {values.shape}"
        )
    if not np.all(np.isfinite(values)):
        bad = int(np.flatnonzero(~np.isfinite(values))[0])
        raise ValueError(f"equity has a non-finite value at index {bad}: {values[bad]}")
    if values[0] <= 0:
        raise ValueError(f"starting equity must be positive, got {values[0]}")
    return values


def _as_per_bar(name: str, values: np.ndarray | None, n: int) -> np.ndarray | None:
    if values is None:
        return None
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} entries, expected {n} (one per bar)")
    if not np.all(np.isfinite(arr)):
        bad = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise ValueError(f"{name} has a non-finite value at index {bad}: {arr[bad]}")
    return arr


def returns_from_equity(equity: np.ndarray) -> np.ndarray:
    """Per-bar simple returns; a bar that starts at non-positive equity returns 0."""
    values = _as_equity(equity)
    previous = values[:-1]
    out = np.zeros(previous.shape[0], dtype=np.float64)
    alive = previous > 0
    out[alive] = values[1:][alive] / previous[alive] - 1.0
    return out


def total_return(equity: np.ndarray) -> float:
    values = _as_equity(equity)
    return float(values[-1] / values[0] - 1.0)


def annualised_return(equity: np.ndarray, freq: str = "1d") -> float:
    """Compound annual growth rate; 0.0 with fewer than two bars, -1.0 after ruin."""
    values = _as_equity(equity)
    n = values.shape[0] - 1
    if n < 2:
        return 0.0
    growth = values[-1] / values[0]
    if growth <= 0:
        return -1.0
    exponent = math.log(growth) * periods_per_year(freq) / n
    if exponent > 700.0:  # exp would overflow: report the largest float, not inf
        return float(np.finfo(np.float64).max)
    return math.expm1(exponent)


def annualised_volatility(returns: np.ndarray, freq: str = "1d") -> float:
    """Sample standard deviation (ddof=1) of per-bar returns times sqrt(bars per year)."""
    r = np.asarray(returns, dtype=np.float64)
    if r.shape[0] < 2:
        return 0.0
    return float(np.std(r, ddof=1) * math.sqrt(periods_per_year(freq)))


def sharpe_per_bar(returns: np.ndarray) -> float:
    """Sharpe ratio of one bar (mean over ddof=1 std, risk-free 0); 0.0 without measurable risk."""
    r = np.asarray(returns, dtype=np.float64)
    if r.shape[0] < 2:
        return 0.0
    std = float(np.std(r, ddof=1))
    if std <= EPS:
        return 0.0
    return float(np.mean(r) / std)


def sharpe_ratio(returns: np.ndarray, freq: str = "1d") -> float:
    """Annualised Sharpe ratio (risk-free 0, ddof=1); 0.0 without measurable risk."""
    return sharpe_per_bar(returns) * math.sqrt(periods_per_year(freq))


def sortino_ratio(returns: np.ndarray, freq: str = "1d") -> float:
    """Annualised Sortino ratio: mean return over the downside deviation of all bars."""
    r = np.asarray(returns, dtype=np.float64)
    if r.shape[0] < 2:
        return 0.0
    downside = float(np.sqrt(np.mean(np.square(np.minimum(r, 0.0)))))
    if downside <= EPS:
        return 0.0
    return float(np.mean(r) / downside * math.sqrt(periods_per_year(freq)))


def drawdown_series(equity: np.ndarray) -> np.ndarray:
    """Drawdown after each bar, ``equity / running peak - 1`` (<= 0), peak includes the start."""
    values = _as_equity(equity)
    peaks = np.maximum.accumulate(values)
    return (values / peaks - 1.0)[1:]


def max_drawdown(equity: np.ndarray) -> float:
    """Deepest drawdown as a negative fraction (-0.2 = 20% below the peak); 0.0 if none."""
    drawdowns = drawdown_series(equity)
    return float(min(0.0, drawdowns.min())) if drawdowns.shape[0] else 0.0


def max_drawdown_duration(equity: np.ndarray) -> int:
    """Longest run of bars spent below a previous peak (to recovery, or to the end)."""
    values = _as_equity(equity)
    peaks = np.maximum.accumulate(values)
    underwater = values[1:] < peaks[1:]
    longest = current = 0
    for below in underwater:
        current = current + 1 if below else 0
        longest = max(longest, current)
    return int(longest)


def calmar_ratio(equity: np.ndarray, freq: str = "1d") -> float:
    """CAGR over the absolute max drawdown; 0.0 when there was no drawdown."""
    depth = max_drawdown(equity)
    if depth >= -EPS:
        return 0.0
    return annualised_return(equity, freq) / abs(depth)


@dataclass(frozen=True)
class TradeRecords:
    """Round trips: maximal runs of bars holding a position of one sign.

    A run may change size (continuous actions) without ending. P&L of a step belongs to
    the position held after that step's fill, except its ``carry_pnl`` part (with next-open
    fills: the gap from the decision close to the fill, earned by the shares held before the
    fill), which belongs to the position held before it; the cost of a fill that closes (or flips)
    a position is split by traded notional, and the closing share is charged to the
    trade it closes. ``closed`` is False for a position still open after the last bar.
    """

    entry_step: np.ndarray  # int64 [k], first bar held
    exit_step: np.ndarray  # int64 [k], last bar held
    direction: np.ndarray  # int8 [k], +1 long, -1 short
    pnl: np.ndarray  # float64 [k], currency, after costs
    returns: np.ndarray  # float64 [k], pnl / equity before the entry step
    bars_held: np.ndarray  # int64 [k]
    closed: np.ndarray  # bool [k]

    def __len__(self) -> int:
        return int(self.entry_step.shape[0])


def extract_trades(
    positions: np.ndarray,
    equity: np.ndarray,
    step_costs: np.ndarray | None = None,
    *,
    liquidated_at_end: bool = False,
    carry_pnl: np.ndarray | None = None,
) -> TradeRecords:
    """Round trips from a position path; ``liquidated_at_end`` closes the last one.

    ``carry_pnl[t]`` is the part of step t's P&L earned by the position held *before* the
    step's fill (see :class:`TradeRecords`); zero when omitted.
    """
    values = _as_equity(equity)
    n = values.shape[0] - 1
    pos = _as_per_bar("positions", positions, n)
    costs = _as_per_bar("step_costs", step_costs, n)
    if costs is None:
        costs = np.zeros(n)
    carry = _as_per_bar("carry_pnl", carry_pnl, n)
    if carry is None:
        carry = np.zeros(n)
    signs = np.sign(pos).astype(np.int8)
    step_pnl = np.diff(values) - carry  # what the position after each fill earned
    previous_pos = np.concatenate([[0.0], pos[:-1]])
    traded = np.abs(pos - previous_pos)
    # share of each step's cost that closes the position held before the step
    closing_share = np.zeros(n)
    ends_run = (np.sign(previous_pos) != signs) & (previous_pos != 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        closing_share[ends_run] = np.minimum(1.0, np.abs(previous_pos[ends_run]) / traded[ends_run])
    closing_cost = costs * closing_share

    # runs of one nonzero sign, found with array operations (no Python loop over bars or
    # runs: validation calls this per member per point); the sums stay per run
    flips = signs[1:] != signs[:-1]
    held_sign = signs != 0
    starts = np.flatnonzero(np.r_[True, flips][:n] & held_sign)
    ends = np.flatnonzero(np.r_[flips, True][:n] & held_sign)
    # gross P&L of each run's steps [start, end] and of the gaps its shares carried into the
    # next fills (carry[start + 1 .. end + 1]), plus the closing share owed by the previous
    # run, minus the one this run owes the next. Segment sums by reduceat over
    # [start, end + 1) pairs (zero-padded so end + 2 stays an index)
    def run_sums(values: np.ndarray, first: np.ndarray, stop: np.ndarray) -> np.ndarray:
        if first.size == 0:
            return np.zeros(0)
        bounds = np.empty(2 * first.size, dtype=np.int64)
        bounds[0::2], bounds[1::2] = first, stop
        return np.add.reduceat(np.r_[values, 0.0, 0.0], bounds)[0::2]

    pnl = run_sums(step_pnl, starts, ends + 1) + run_sums(carry, starts + 1, ends + 2) \
        + closing_cost[starts]
    inside = ends + 1 < n
    pnl[inside] -= closing_cost[ends[inside] + 1]
    start_equity = values[starts]
    with np.errstate(divide="ignore", invalid="ignore"):
        rets = np.where(start_equity > 0, pnl / start_equity, 0.0)
    return TradeRecords(
        entry_step=starts.astype(np.int64),
        exit_step=ends.astype(np.int64),
        direction=signs[starts].astype(np.int8),
        pnl=pnl.astype(np.float64),
        returns=rets.astype(np.float64),
        bars_held=(ends - starts + 1).astype(np.int64),
        closed=inside | bool(liquidated_at_end),
    )


@dataclass(frozen=True)
class PerformanceMetrics:
    """Every number of one backtest; ratios annualised by the bar size, fractions not %."""

    bars: int
    days: float
    start_equity: float
    final_equity: float
    total_return: float
    annual_return: float
    annual_volatility: float
    sharpe: float
    sortino: float
    calmar: float
    max_drawdown: float
    max_drawdown_bars: int
    max_drawdown_days: float
    win_rate_trades: float  # winning closed trades / closed trades
    win_rate_bars: float  # bars with a positive return / bars holding a position
    profit_factor: float  # gross profit / gross loss of closed trades
    num_trades: int  # fills: steps where the held position changed
    num_round_trips: int  # closed trades
    trades_per_day: float
    avg_holding_bars: float  # mean length of closed trades
    avg_holding_days: float
    turnover: float  # sum of |position change|, in multiples of equity
    annual_turnover: float
    exposure: float  # mean |position|
    time_in_market: float  # share of bars holding a position
    costs_paid: float  # currency
    cost_fraction: float  # costs over starting equity

    def to_dict(self, json_safe: bool = False) -> dict[str, float | int | str]:
        """Plain dict; ``json_safe`` writes infinities as the strings "inf"/"-inf"."""
        out = asdict(self)
        if json_safe:
            for key, value in out.items():
                if isinstance(value, float) and math.isinf(value):
                    out[key] = "inf" if value > 0 else "-inf"
        return out

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


def compute_metrics(
    equity: np.ndarray,
    positions: np.ndarray | None = None,
    step_costs: np.ndarray | None = None,
    freq: str = "1d",
    *,
    trades: TradeRecords | None = None,
    liquidated_at_end: bool = False,
) -> PerformanceMetrics:
    """All metrics of one backtest. Without ``positions`` the trade metrics are 0.

    ``liquidated_at_end`` says the final position was sold at the last close (its cost is
    already in ``equity`` and ``step_costs``): it counts as a fill and closes the last trade.
    """
    values = _as_equity(equity)
    n = values.shape[0] - 1
    pos = _as_per_bar("positions", positions, n)
    costs = _as_per_bar("step_costs", step_costs, n)
    returns = returns_from_equity(values)
    per_day = bars_per_day(freq)
    days = n / per_day
    years = days / TRADING_DAYS_PER_YEAR

    if pos is not None:
        if trades is None:
            trades = extract_trades(pos, values, costs, liquidated_at_end=liquidated_at_end)
        changes = np.abs(np.diff(np.concatenate([[0.0], pos])))
        num_fills = int(np.count_nonzero(changes))
        turnover = float(changes.sum())
        if liquidated_at_end and n > 0 and pos[-1] != 0:
            num_fills += 1
            turnover += abs(float(pos[-1]))
        in_market = pos != 0
        time_in_market = float(in_market.mean()) if n else 0.0
        exposure = float(np.abs(pos).mean()) if n else 0.0
        bars_in_market = int(in_market.sum())
        win_rate_bars = (
            float(np.count_nonzero(returns[in_market] > 0) / bars_in_market)
            if bars_in_market
            else 0.0
        )
    else:
        num_fills, turnover, time_in_market, exposure = 0, 0.0, 0.0, 0.0
        moving = returns != 0
        win_rate_bars = (
            float(np.count_nonzero(returns > 0) / np.count_nonzero(moving)) if moving.any() else 0.0
        )

    if trades is not None and len(trades):
        closed_pnl = trades.pnl[trades.closed]
        closed_bars = trades.bars_held[trades.closed]
    else:
        closed_pnl = np.zeros(0)
        closed_bars = np.zeros(0, dtype=np.int64)
    num_round_trips = int(closed_pnl.shape[0])
    win_rate_trades = float(np.mean(closed_pnl > 0)) if num_round_trips else 0.0
    gross_profit = float(closed_pnl[closed_pnl > 0].sum())
    gross_loss = float(-closed_pnl[closed_pnl < 0].sum())
    if gross_loss > 0:
        profit_factor = gross_profit / gross_loss
    else:
        profit_factor = math.inf if gross_profit > 0 else 0.0
    avg_holding_bars = float(closed_bars.mean()) if num_round_trips else 0.0

    costs_paid = float(costs.sum()) if costs is not None else 0.0
    dd_bars = max_drawdown_duration(values)
    return PerformanceMetrics(
        bars=int(n),
        days=float(days),
        start_equity=float(values[0]),
        final_equity=float(values[-1]),
        total_return=total_return(values),
        annual_return=annualised_return(values, freq),
        annual_volatility=annualised_volatility(returns, freq),
        sharpe=sharpe_ratio(returns, freq),
        sortino=sortino_ratio(returns, freq),
        calmar=calmar_ratio(values, freq) if n >= 2 else 0.0,
        max_drawdown=max_drawdown(values),
        max_drawdown_bars=dd_bars,
        max_drawdown_days=float(dd_bars / per_day),
        win_rate_trades=win_rate_trades,
        win_rate_bars=win_rate_bars,
        profit_factor=float(profit_factor),
        num_trades=num_fills,
        num_round_trips=num_round_trips,
        trades_per_day=float(num_fills / days) if days > 0 else 0.0,
        avg_holding_bars=avg_holding_bars,
        avg_holding_days=float(avg_holding_bars / per_day),
        turnover=turnover,
        annual_turnover=float(turnover / years) if years > 0 else 0.0,
        exposure=exposure,
        time_in_market=time_in_market,
        costs_paid=costs_paid,
        cost_fraction=float(costs_paid / values[0]),
    )


# how each metric reads in a table: (label, kind), kind "pct", "ratio", "int", "money", "days"
METRIC_LABELS: dict[str, tuple[str, str]] = {
    "total_return": ("Total return", "pct"),
    "annual_return": ("Annual return", "pct"),
    "annual_volatility": ("Annual volatility", "pct"),
    "sharpe": ("Sharpe", "ratio"),
    "sortino": ("Sortino", "ratio"),
    "calmar": ("Calmar", "ratio"),
    "max_drawdown": ("Max drawdown", "pct"),
    "max_drawdown_days": ("Max DD duration (days)", "days"),
    "win_rate_trades": ("Win rate (trades)", "pct"),
    "win_rate_bars": ("Win rate (bars)", "pct"),
    "profit_factor": ("Profit factor", "ratio"),
    "num_trades": ("Trades (fills)", "int"),
    "num_round_trips": ("Round trips", "int"),
    "trades_per_day": ("Trades per day", "ratio"),
    "avg_holding_days": ("Avg holding (days)", "days"),
    "turnover": ("Turnover (x equity)", "ratio"),
    "exposure": ("Exposure", "pct"),
    "time_in_market": ("Time in market", "pct"),
    "costs_paid": ("Costs paid", "money"),
    "cost_fraction": ("Costs / start equity", "pct"),
    "final_equity": ("Final equity", "money"),
}


def format_metric(value: float | int | str, kind: str) -> str:
    """Human form of one metric value for tables (percent, ratio, integer, currency)."""
    if isinstance(value, str):
        return value
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if kind == "pct":
        return f"{100.0 * value:.2f}%"
    if kind == "int":
        return f"{int(value):d}"
    if kind == "money":
        return f"{value:,.2f}"
    if kind == "days":
        return f"{value:.1f}"
    return f"{value:.3f}"
