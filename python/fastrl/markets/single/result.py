"""Single-symbol backtest results: one :class:`Backtest` per strategy and segment, and the
:class:`EvalResult` that holds them with the equal-capital combined metrics and their error
bars.

Uncertainty (:meth:`EvalResult.uncertainty`) is computed here, once, from the per-bar
returns of each backtest (and of the combined equity for "ALL"), so the report, its JSON,
the CLI tables and the benchmarks print the same numbers. It is computed on first use:
validation never asks for it and pays nothing.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from fastrl.ladder import Ladder, ladder_of, with_matched_volatility
from fastrl.markets.results import BOOTSTRAP_SEED, EquityPath
from fastrl.metrics import (
    PerformanceMetrics,
    TradeRecords,
    compute_metrics,
    extract_trades,
    returns_from_equity,
)
from fastrl.strategies import COMBINED, STRATEGIES, STRATEGY_LABELS

if TYPE_CHECKING:
    import pandas as pd

    from fastrl import stats

# strategies whose Sharpe gets error bars; flat holds cash, its Sharpe is 0 by construction
UNCERTAIN_STRATEGIES = ("agent", "buy_and_hold")


@dataclass
class Backtest(EquityPath):
    """One strategy on one segment, step by step (``n`` steps, ``n + 1`` equity marks).

    ``equity[0]`` is the starting equity at the close of ``start_bar`` (the first decision
    bar); step ``i`` decides at ``decision_bars[i]``, fills at ``fill_bars[i]`` and marks
    equity at the close of ``bars[i]``. ``price`` is the close at ``start_bar`` then at
    each mark, aligned with ``equity``.
    """

    symbol: str
    strategy: str
    freq: str
    start_bar: int
    decision_bars: np.ndarray  # int64 [n]
    fill_bars: np.ndarray  # int64 [n]
    bars: np.ndarray  # int64 [n]
    equity: np.ndarray  # float64 [n + 1]
    positions: np.ndarray  # float64 [n], target exposure held after each step's fill
    step_costs: np.ndarray  # float64 [n], including the final liquidation
    fills: np.ndarray  # bool [n], the position changed in this step
    fill_prices: np.ndarray  # float64 [n], the price an order of this step fills at
    price: np.ndarray  # float64 [n + 1]
    timestamps: np.ndarray | None = None  # datetime64[ns] [n + 1], aligned with equity
    liquidation_cost: float = 0.0
    terminated_step: int | None = None  # step where equity hit the floor (flat after it)
    shares_held: np.ndarray | None = None  # float64 [n], shares held after each step's fill
    metrics: PerformanceMetrics | None = None
    trades: TradeRecords | None = None

    def finish(self) -> Backtest:
        """Fills in the trade records and metrics from the recorded path."""
        liquidated = self.num_steps > 0 and self.positions[-1] != 0
        carry = None
        if self.shares_held is not None and self.num_steps > 0:
            # Under next-open fills the move from the decision close to the fill price is
            # earned by the shares held before the fill, i.e. by the previous trade.
            before = np.concatenate([[0.0], self.shares_held[:-1]])
            carry = before * (self.fill_prices - self.price[:-1])
        self.trades = extract_trades(
            self.positions, self.equity, self.step_costs, liquidated_at_end=liquidated,
            carry_pnl=carry,
        )
        self.metrics = compute_metrics(
            self.equity,
            self.positions,
            self.step_costs,
            self.freq,
            trades=self.trades,
            liquidated_at_end=liquidated,
        )
        return self


@dataclass(frozen=True)
class Uncertainty:
    """Error bars of one symbol's (or the combined portfolio's) headline numbers.

    ``sharpe`` holds a :class:`fastrl.stats.SharpeStats` (Sharpe, its SE and which estimate
    that is, bootstrap interval, PSR) per strategy in ``UNCERTAIN_STRATEGIES``;
    ``vs_buy_and_hold`` the one-sided test of the agent's mean return over buy-and-hold on
    the same bars (:func:`fastrl.stats.prob_agent_beats`); ``verdict`` that test in one
    plain sentence.
    """

    symbol: str
    sharpe: dict[str, stats.SharpeStats]
    vs_buy_and_hold: stats.AgentVsBenchmark
    verdict: str

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (NaN, i.e. not estimable, as None)."""
        return {
            "sharpe": {strategy: value.as_dict() for strategy, value in self.sharpe.items()},
            "agent_vs_buy_and_hold": self.vs_buy_and_hold.as_dict(),
            "verdict": self.verdict,
        }


def uncertainty_of(
    symbol: str,
    agent_returns: np.ndarray,
    bench_returns: np.ndarray,
    freq: str,
    *,
    agent_label: str = "the agent",
) -> Uncertainty:
    """Sharpe error bars of both series and the test of the agent's mean active return."""
    from fastrl import stats  # arch takes seconds to import; validation never needs it

    per_strategy = {
        "agent": stats.sharpe_stats(agent_returns, freq, seed=BOOTSTRAP_SEED),
        "buy_and_hold": stats.sharpe_stats(bench_returns, freq, seed=BOOTSTRAP_SEED),
    }
    comparison = stats.prob_agent_beats(agent_returns, bench_returns, freq)
    return Uncertainty(
        symbol=symbol,
        sharpe=per_strategy,
        vs_buy_and_hold=comparison,
        verdict=stats.verdict(comparison, agent=agent_label),
    )


@dataclass
class EvalResult:
    """Backtests of every strategy on every segment, plus equal-capital combined metrics."""

    freq: str
    initial_cash: float
    backtests: list[Backtest]
    combined: dict[str, PerformanceMetrics]
    env_config: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)  # checkpoint, symbols, test days, ...
    # the ladder's rungs (rules of fastrl.rules) in order; their backtests are in
    # ``backtests`` under the rule's name (buy_and_hold's is the baseline's)
    rungs: list[str] = field(default_factory=list)
    _uncertainty: dict[str, Uncertainty] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    _ladder: dict[str, Ladder] = field(default_factory=dict, init=False, repr=False,
                                       compare=False)

    @property
    def symbols(self) -> list[str]:
        seen: list[str] = []
        for backtest in self.backtests:
            if backtest.symbol not in seen:
                seen.append(backtest.symbol)
        return seen

    @property
    def strategies(self) -> list[str]:
        """The strategies backtested: those of ``STRATEGIES`` present, then the rungs."""
        have = {b.strategy for b in self.backtests}
        return [s for s in dict.fromkeys([*STRATEGIES, *self.rungs, *sorted(have)])
                if s in have]

    def get(self, symbol: str, strategy: str) -> Backtest:
        for backtest in self.backtests:
            if backtest.symbol == symbol and backtest.strategy == strategy:
                return backtest
        raise KeyError(f"no backtest for symbol {symbol!r} and strategy {strategy!r}")

    def metrics(self, symbol: str = COMBINED, strategy: str = "agent") -> PerformanceMetrics:
        """Metrics of ``strategy`` on ``symbol`` (default: the agent on the equal-capital
        combined portfolio, the :class:`fastrl.markets.base.Result` headline)."""
        if symbol == COMBINED:
            return self.combined[strategy]
        metrics = self.get(symbol, strategy).metrics
        assert metrics is not None
        return metrics

    def returns(self, symbol: str, strategy: str) -> np.ndarray:
        """Per-bar returns of one backtest, or for ``COMBINED`` of the equal-capital
        portfolio's summed equity on the common clock (the series its Sharpe comes from)."""
        if symbol != COMBINED:
            return self.get(symbol, strategy).returns
        return combined_returns([b for b in self.backtests if b.strategy == strategy])

    def uncertainty(self, symbol: str = COMBINED) -> Uncertainty:
        """Error bars of ``symbol`` (default: the combined portfolio), computed once.

        Needs the buy-and-hold baseline (``evaluate_agent(..., baselines=True)``).
        """
        cached = self._uncertainty.get(symbol)
        if cached is not None:
            return cached
        if symbol == COMBINED and len(self.symbols) == 1:
            # one symbol: the portfolio is that symbol, its numbers are the same
            value = dataclasses.replace(self.uncertainty(self.symbols[0]), symbol=COMBINED)
        elif symbol == COMBINED:
            agent = [b for b in self.backtests if b.strategy == "agent"]
            bench = [b for b in self.backtests if b.strategy == "buy_and_hold"]
            if not bench:
                raise ValueError("uncertainty needs the buy-and-hold baseline (baselines=True)")
            # both portfolios on one clock, so the active return pairs the same bars
            equity = aligned_paths(agent + bench)[0]
            totals = [equity[: len(agent)].sum(axis=0), equity[len(agent) :].sum(axis=0)]
            value = uncertainty_of(
                COMBINED, *(returns_from_equity(t) for t in totals), self.freq,
                agent_label="the agent (all symbols, equal capital)",
            )
        else:
            value = uncertainty_of(
                symbol, self.get(symbol, "agent").returns,
                self.get(symbol, "buy_and_hold").returns, self.freq,
                agent_label=f"the agent on {symbol}",
            )
        self._uncertainty[symbol] = value
        return value

    @property
    def verdict(self) -> str:
        """The headline sentence: agent against buy-and-hold on the combined portfolio."""
        return self.uncertainty(COMBINED).verdict

    def ladder(self, symbol: str = COMBINED) -> Ladder:
        """The agent against each rung on ``symbol`` (default: the combined portfolio), the
        p-values Holm-adjusted across the rungs; computed once."""
        cached = self._ladder.get(symbol)
        if cached is not None:
            return cached
        agent = ("the agent (all symbols, equal capital)" if symbol == COMBINED
                 else f"the agent on {symbol}")
        rungs = {rung: (self.returns(symbol, rung), self.metrics(symbol, rung).total_return)
                 for rung in self.rungs}
        # vol targeting also at buy-and-hold's volatility: a paper row, shown, not tested
        paper = with_matched_volatility(rungs, "buy_and_hold")
        value = ladder_of(self.returns(symbol, "agent"), rungs, self.freq, agent=agent,
                          seed=BOOTSTRAP_SEED, paper=paper)
        self._ladder[symbol] = value
        return value

    def steps_frame(self) -> pd.DataFrame:
        """One row per step per strategy per symbol: what ``test_returns.csv`` holds.

        ``step`` counts from 0 (as ``TradeRecords`` does); ``equity`` is marked at the close
        of ``bar`` after that step, ``return`` = equity / previous equity - 1 (the first
        step's previous equity is the initial cash), ``position`` the exposure held after
        the step's fill, ``cost`` what the step paid (the final liquidation included).
        """
        import pandas as pd

        frames = [pd.DataFrame(b.step_columns(
            {"symbol": b.symbol, "strategy": b.strategy},
            {"bar": b.bars, "close": b.price[1:], "position": b.positions, "fill": b.fills,
             "cost": b.step_costs})) for b in self.backtests]
        return pd.concat(frames, ignore_index=True)

    def trades_frame(self) -> pd.DataFrame:
        """One row per round trip of every backtest: what ``test_trades.csv`` holds.

        ``entry_step``/``exit_step`` are the first and last steps held (as in
        ``test_returns.csv``), the times those steps' marks; ``pnl`` is after costs.
        """
        import pandas as pd

        columns = ["symbol", "strategy", "direction", "entry_step", "exit_step", "entry_time",
                   "exit_time", "bars_held", "pnl", "return", "closed"]
        frames = []
        for b in self.backtests:
            trades = b.trades
            if trades is None or not len(trades):
                continue
            stamps = b.timestamps
            frames.append(pd.DataFrame({
                "symbol": b.symbol,
                "strategy": b.strategy,
                "direction": np.where(trades.direction > 0, "long", "short"),
                "entry_step": trades.entry_step,
                "exit_step": trades.exit_step,
                # a step's mark is equity/timestamp index step + 1
                "entry_time": stamps[trades.entry_step + 1] if stamps is not None else None,
                "exit_time": stamps[trades.exit_step + 1] if stamps is not None else None,
                "bars_held": trades.bars_held,
                "pnl": trades.pnl,
                "return": trades.returns,
                "closed": trades.closed,
            }))
        if not frames:
            return pd.DataFrame(columns=columns)
        return pd.concat(frames, ignore_index=True)[columns]

    def table(self) -> pd.DataFrame:
        """One row per (symbol, strategy), the combined portfolio last as symbol "ALL"."""
        import pandas as pd

        rows = []
        for symbol in [*self.symbols, COMBINED]:
            for strategy in self.strategies:
                values = self.metrics(symbol, strategy).to_dict()
                rows.append({"symbol": symbol, "strategy": strategy, **values})
        return pd.DataFrame(rows).set_index(["symbol", "strategy"])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary: every metric of every row (infinities as strings), and with
        the buy-and-hold baseline the uncertainty of every row and the headline verdict."""
        symbols = [*self.symbols, COMBINED]
        strategies = self.strategies
        out: dict[str, Any] = {
            "freq": self.freq,
            "initial_cash": self.initial_cash,
            "env_config": self.env_config,
            "info": self.info,
            "metrics": {
                symbol: {
                    strategy: self.metrics(symbol, strategy).to_dict(json_safe=True)
                    for strategy in strategies
                }
                for symbol in symbols
            },
        }
        if "buy_and_hold" in strategies:
            out["verdict"] = self.verdict
            out["uncertainty"] = {symbol: self.uncertainty(symbol).as_dict()
                                  for symbol in symbols}
        if self.rungs:
            out["rungs"] = list(self.rungs)
            out["ladder"] = {symbol: self.ladder(symbol).as_dict() for symbol in symbols}
        return out


def aligned_paths(backtests: list[Backtest]) -> tuple[np.ndarray, np.ndarray, np.ndarray, Any]:
    """Equity [K, n + 1], positions [K, n], costs [K, n] of several segments on one clock.

    With timestamps the clock is the union of their bar times (a segment holds its cash
    before it starts and its final equity after it ends); without, it is the step count.
    """
    stamped = all(b.timestamps is not None for b in backtests)
    if stamped:
        clock = np.unique(np.concatenate([b.timestamps for b in backtests]))
    else:
        clock = np.arange(max(b.num_steps for b in backtests) + 1)
    k, length = len(backtests), clock.shape[0]
    equity = np.empty((k, length))
    positions = np.zeros((k, length))
    costs = np.zeros((k, length))
    slots = np.arange(length)
    for j, b in enumerate(backtests):
        where = np.searchsorted(clock, b.timestamps) if stamped else np.arange(b.num_steps + 1)
        # index of this segment's latest mark at or before each clock slot (-1: not started)
        latest = np.searchsorted(where, slots, side="right") - 1
        equity[j] = b.equity[np.maximum(latest, 0)]
        # a step's position and costs belong to the slot of its mark; between two of its
        # marks a segment has no bar, its equity stands still and it holds no exposure
        positions[j, where[1:]] = b.positions
        costs[j, where[1:]] = b.step_costs
    return equity, positions[:, 1:], costs[:, 1:], clock


def combined_returns(backtests: list[Backtest]) -> np.ndarray:
    """Per-bar returns of the equal-capital portfolio of ``backtests`` (one strategy)."""
    if len(backtests) == 1:
        return backtests[0].returns
    return returns_from_equity(aligned_paths(backtests)[0].sum(axis=0))


def combine(backtests: list[Backtest], freq: str) -> PerformanceMetrics:
    """Metrics of an equal-capital portfolio holding every segment's backtest."""
    if len(backtests) == 1:
        assert backtests[0].metrics is not None
        return backtests[0].metrics
    equity, positions, costs, _ = aligned_paths(backtests)
    total = equity.sum(axis=0)
    # exposure of the portfolio: positions weighted by each segment's equity before the bar
    weights = equity[:, :-1] / np.maximum(total[:-1], 1e-300)
    portfolio_positions = (positions * weights).sum(axis=0)
    records = [b.trades for b in backtests if b.trades is not None]
    trades = TradeRecords(
        *(
            np.concatenate([getattr(r, f.name) for r in records])
            for f in dataclasses.fields(TradeRecords)
        )
    )
    metrics = compute_metrics(total, portfolio_positions, costs.sum(axis=0), freq, trades=trades)
    start_equity = np.array([b.equity[0] for b in backtests])
    per_segment = [b.metrics for b in backtests]
    num_fills = sum(m.num_trades for m in per_segment if m is not None)
    turnover = float(
        sum(m.turnover * e for m, e in zip(per_segment, start_equity, strict=True) if m is not None)
        / start_equity.sum()
    )
    years = metrics.days / 252.0
    return dataclasses.replace(
        metrics,
        num_trades=num_fills,
        trades_per_day=num_fills / metrics.days if metrics.days > 0 else 0.0,
        turnover=turnover,
        annual_turnover=turnover / years if years > 0 else 0.0,
        time_in_market=float(np.mean(np.any(positions != 0, axis=0))) if positions.size else 0.0,
    )


__all__ = ["COMBINED", "STRATEGIES", "STRATEGY_LABELS", "UNCERTAIN_STRATEGIES", "Backtest",
           "EvalResult", "Uncertainty", "aligned_paths", "combine", "combined_returns",
           "uncertainty_of"]
