"""Backtests: the deterministic policy on held-out bars, beside buy-and-hold and flat.

This is the one policy-evaluation path: validation during training and the test-days
backtest both call :func:`evaluate_agent`, so the validation score that picks the best
checkpoint is the combined figure the report prints. The result types live here too, so
``fastrl.report`` and ``fastrl.evaluate`` both depend on this module and not on each other.

One env per segment (symbol) starts at the segment's first bar with a full observation
window and runs to the segment's end: no random starts, the training config's costs and
execution. Every recorded fill and mark is asserted to lie on an evaluated row (the first
``market.meta["context_rows"]`` rows of each segment only feed the observation window). A
position still open after the last bar is closed at the last close and pays its cost, for
the agent and for buy-and-hold alike, so both sides count every cost.

Buy-and-hold enters at the agent's first possible fill with the whole equity, through
the same cost model and share accounting as the simulator, and sells at the last close:
its final equity is ``E0 x close_last / fill_price - buy cost - sell cost``.

Uncertainty (:meth:`EvalResult.uncertainty`) is computed here, once, from the per-bar
returns of each backtest (and of the combined equity for "ALL"), so the report, its JSON,
the CLI tables and the benchmarks print the same numbers. It is computed on first use:
validation never asks for it and pays nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from fastrl.data.block import MarketBlock
from fastrl.metrics import (
    PerformanceMetrics,
    TradeRecords,
    compute_metrics,
    extract_trades,
    returns_from_equity,
)

if TYPE_CHECKING:
    import pandas as pd

    from fastrl import stats
    from fastrl.env import EnvConfig

STRATEGIES = ("agent", "buy_and_hold", "flat")
STRATEGY_LABELS = {"agent": "agent", "buy_and_hold": "buy & hold", "flat": "flat"}
COMBINED = "ALL"
# strategies whose Sharpe gets error bars; flat holds cash, its Sharpe is 0 by construction
UNCERTAIN_STRATEGIES = ("agent", "buy_and_hold")
BOOTSTRAP_SEED = 0  # fixed: the same backtest always prints the same Sharpe interval
PolicyFn = Callable[[np.ndarray], Any]


class EvaluationError(ValueError):
    """Bad input for an evaluation: run folder, checkpoint, symbols, test days, data."""


class EquityPath:
    """What every backtest result is, single-symbol (:class:`Backtest`) or portfolio
    (:class:`fastrl.backtest_portfolio.PortfolioBacktest`): one ``strategy``'s ``equity``
    marked at the start and after each of its ``n`` steps (``n + 1`` marks, ``timestamps``
    aligned with them), the ``step_costs`` paid (a final ``liquidation_cost`` included), the
    ``terminated_step`` where equity hit the floor, and the ``metrics`` that ``finish()``
    computes from them. Subclasses are dataclasses that add what they trade."""

    strategy: str
    freq: str
    equity: np.ndarray  # float64 [n + 1]
    step_costs: np.ndarray  # float64 [n]
    timestamps: np.ndarray | None
    liquidation_cost: float
    terminated_step: int | None
    metrics: PerformanceMetrics | None

    @property
    def num_steps(self) -> int:
        return int(self.equity.shape[0]) - 1

    @property
    def returns(self) -> np.ndarray:
        """Per-bar simple returns ``equity[1:] / equity[:-1] - 1``, the Sharpe's input."""
        return returns_from_equity(self.equity)

    def step_columns(self, head: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        """The columns of one step-by-step table (a results frame's rows for this path):
        the mark's timestamp, ``head``, the step number, ``body``, then equity and return."""
        return {
            "timestamp": (self.timestamps[1:] if self.timestamps is not None
                          else np.full(self.num_steps, None)),
            **head,
            "step": np.arange(self.num_steps),
            **body,
            "equity": self.equity[1:],
            "return": self.returns,
        }


def as_policy_fn(policy: Any, output: str = "actions") -> PolicyFn:
    """An Agent's deterministic action (``policy.act``) or a plain function of observations."""
    act = getattr(policy, "act", None)
    if callable(act):
        return lambda obs: act(obs, deterministic=True)
    if callable(policy):
        return policy
    raise TypeError(
        f"policy must be an Agent (with .act) or a function obs -> {output}, got {type(policy)}"
    )


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
    _uncertainty: dict[str, Uncertainty] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @property
    def symbols(self) -> list[str]:
        seen: list[str] = []
        for backtest in self.backtests:
            if backtest.symbol not in seen:
                seen.append(backtest.symbol)
        return seen

    def get(self, symbol: str, strategy: str) -> Backtest:
        for backtest in self.backtests:
            if backtest.symbol == symbol and backtest.strategy == strategy:
                return backtest
        raise KeyError(f"no backtest for symbol {symbol!r} and strategy {strategy!r}")

    def metrics(self, symbol: str, strategy: str) -> PerformanceMetrics:
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
            for strategy in STRATEGIES:
                values = self.metrics(symbol, strategy).to_dict()
                rows.append({"symbol": symbol, "strategy": strategy, **values})
        return pd.DataFrame(rows).set_index(["symbol", "strategy"])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary: every metric of every row (infinities as strings), and with
        the buy-and-hold baseline the uncertainty of every row and the headline verdict."""
        symbols = [*self.symbols, COMBINED]
        strategies = sorted({b.strategy for b in self.backtests}, key=STRATEGIES.index)
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
        return out


def evaluation_config(env_config: EnvConfig) -> EnvConfig:
    """The training env config with deterministic full-segment episodes, costs unchanged."""
    return dataclasses.replace(
        env_config, random_start=False, episode_length=0, segment_assignment="round_robin"
    )


def valid_actions(actions: np.ndarray, config: EnvConfig, num_envs: int) -> np.ndarray:
    """The policy's actions, checked (and continuous ones clipped) for env.step."""
    actions = np.asarray(actions)
    if actions.ndim == 2 and actions.shape[1] == 1:
        actions = actions[:, 0]
    if actions.shape != (num_envs,):
        raise EvaluationError(
            f"the policy returned actions of shape {actions.shape}, expected ({num_envs},)"
        )
    if config.action == "discrete":
        if actions.dtype.kind not in "iu":
            raise EvaluationError(f"discrete policy returned dtype {actions.dtype}, need integers")
        levels = np.asarray(config.position_levels, dtype=np.float64)
        if np.any((actions < 0) | (actions >= levels.shape[0])):
            raise EvaluationError(
                f"the policy returned level indices {actions.tolist()} "
                f"outside [0, {levels.shape[0]})"
            )
        return actions.astype(np.int64)
    exposure = np.clip(actions.astype(np.float64), config.min_pos, config.max_pos)
    if not np.all(np.isfinite(exposure)):
        raise EvaluationError("the policy returned non-finite continuous actions")
    return exposure


def _timestamps(market: MarketBlock, rows: np.ndarray) -> np.ndarray | None:
    if market.timestamps is None:
        return None
    return np.asarray(market.timestamps)[rows]


def check_test_rows(market: MarketBlock, backtest: Backtest, segment: int) -> None:
    """Raises unless every fill and mark of ``backtest`` lies on a test row of its segment."""
    context = int(market.meta.get("context_rows", 0))
    seg = market.segment(segment)
    first_test = seg.start + context
    for name, rows in (("fill", backtest.fill_bars), ("mark", backtest.bars)):
        bad = rows[(rows < first_test) | (rows >= seg.stop)]
        if bad.size:
            raise EvaluationError(
                f"{backtest.strategy} on {backtest.symbol}: {name} rows {bad[:5].tolist()} are "
                f"outside the test rows [{first_test}, {seg.stop}) (context_rows={context}); "
                "the evaluation would use bars the agent may have trained on"
            )


@dataclass(frozen=True)
class Holding:
    """What one segment's backtest hands to the next one on the same symbol (walk-forward
    windows): the shares and cash held at the close of the last mark, the exposure the
    simulator holds as its position, the last fill's price and how many bars ago it was."""

    shares: float
    cash: float
    position: float
    entry_price: float
    bars_since_trade: int

    @classmethod
    def after(cls, backtest: Backtest, before: Holding | None = None) -> Holding:
        """The holding at the end of ``backtest`` (run without liquidation), given the one
        it started from (None: flat)."""
        shares = float(backtest.shares_held[-1]) if backtest.shares_held is not None else 0.0
        equity = float(backtest.equity[-1])
        filled = np.flatnonzero(backtest.fills)
        if filled.size:
            j = int(filled[-1])
            entry = float(backtest.fill_prices[j]) if backtest.positions[j] != 0 else 0.0
            since = int(backtest.bars[-1] - backtest.fill_bars[j])
        else:
            entry = before.entry_price if before is not None else 0.0
            since = (before.bars_since_trade if before is not None else 0) + backtest.num_steps
        return cls(shares=shares, cash=equity - shares * float(backtest.price[-1]),
                   position=float(backtest.positions[-1]), entry_price=entry,
                   bars_since_trade=since)


def _apply_holdings(env: Any, market: MarketBlock, holdings: list[Holding | None]) -> None:
    """Start each env from its segment's carried holding (None: flat, as reset left it)."""
    state = env.get_state()
    for i, holding in enumerate(holdings):
        if holding is None:
            continue
        bar = int(state["bar_index"][i])
        equity = holding.cash + holding.shares * float(market.close[bar])
        state["shares"][i] = holding.shares
        state["cash"][i] = holding.cash
        state["equity"][i] = equity
        state["peak_equity"][i] = equity
        state["position"][i] = holding.position
        state["entry_price"][i] = holding.entry_price
        state["last_trade_bar"][i] = bar - holding.bars_since_trade
    env.set_state(state)


def run_agent(policy: Any, market: MarketBlock, env_config: EnvConfig, *,
              holdings: list[Holding | None] | None = None,
              liquidate: bool = True, copies: int = 1) -> list[Backtest]:
    """Steps the deterministic policy through every segment once (one env per segment).

    ``holdings`` (one per segment) start segments from a position carried over from an
    earlier backtest instead of flat cash; ``liquidate=False`` leaves the last position
    open (no closing cost), for a record that goes on in a later backtest.

    ``copies`` C > 1 backtests C policies at once (a population's members): env row
    ``c * S + s`` trades segment s for policy c, the policy function maps the [C * S, D]
    observations to C * S actions, and the backtests come back in that order. Each copy's
    backtests are the ones it would get alone: the rows do not interact.
    """
    from fastrl.env import TradingVecEnv

    policy_fn = as_policy_fn(policy)
    config = evaluation_config(env_config)
    cost_model = config.cost_model()
    num_segments = market.num_segments
    if copies < 1:
        raise EvaluationError(f"copies must be at least 1, got {copies}")
    num_envs = copies * num_segments  # round robin: env i trades segment i % S
    if holdings is not None and (len(holdings) != num_segments or copies != 1):
        raise EvaluationError(f"{len(holdings)} holdings for {num_segments} segments"
                              + (f" and {copies} copies" if copies != 1 else ""))
    env = TradingVecEnv(market, num_envs, config, num_threads=1, seed=0)
    try:
        obs, _ = env.reset(seed=0)
        if holdings is not None:
            _apply_holdings(env, market, holdings)
            obs = env.buffers["obs"]
        start_bars = env.bar_index.copy()
        start_equity = env.equity.copy()
        seg_ends = market.offsets[1:].copy()
        steps = (seg_ends - 1 - start_bars[:num_segments]).astype(np.int64)
        # one row of every env per step; env i's records are its first counts[i] rows (an
        # env stays inactive once its segment ended)
        columns: dict[str, list[np.ndarray]] = {
            key: [] for key in ("decision", "equity", "position", "shares", "cost", "fill")}
        counts = np.zeros(num_envs, dtype=np.int64)
        prev_costs = env.episode_costs.copy()
        prev_trades = env.episode_trades.copy()
        terminated_at = np.full(num_envs, -1, dtype=np.int64)
        active = np.ones(num_envs, dtype=bool)
        while active.any():
            actions = valid_actions(policy_fn(obs), config, num_envs)
            decision = env.bar_index.copy()
            obs, _rewards, terminated, truncated, info = env.step(actions)
            episode = info["episode"]
            done = np.logical_or(terminated, truncated)
            # a finished env has auto-reset: its state is the next episode's, so its
            # episode's final values come from info["episode"]
            cum_costs = np.where(done, episode["costs"], env.episode_costs)
            cum_trades = np.where(done, episode["trades"], env.episode_trades)
            columns["decision"].append(decision)
            columns["equity"].append(np.where(done, episode["equity"], env.equity))
            columns["position"].append(np.where(done, episode["position"], env.positions))
            columns["shares"].append(np.where(done, episode["shares"], env.shares))
            columns["cost"].append(cum_costs - prev_costs)
            columns["fill"].append(cum_trades > prev_trades)
            ruined = active & np.asarray(terminated, dtype=bool)
            terminated_at[ruined] = counts[ruined]
            counts += active
            going = active & ~done
            prev_costs = np.where(going, cum_costs, prev_costs)
            prev_trades = np.where(going, cum_trades, prev_trades)
            active &= ~done
    finally:
        env.close()
    record = {key: np.stack(value) for key, value in columns.items()}  # [T, num_envs]

    backtests = []
    fill_offset = 1 if config.execution == "next_open" else 0
    for i in range(num_envs):
        s, n = i % num_segments, int(counts[i])
        decision = record["decision"][:n, i].astype(np.int64)
        marks = decision + 1
        equity_path = record["equity"][:n, i].astype(np.float64)
        positions = record["position"][:n, i].astype(np.float64)
        shares_held = record["shares"][:n, i].astype(np.float64)
        costs = record["cost"][:n, i].astype(np.float64)
        fills = record["fill"][:n, i].astype(bool)
        ruined = int(terminated_at[i]) if terminated_at[i] >= 0 else None
        last_bar = int(marks[-1])
        # close what is still open at the last mark (the floor's close, or the segment end)
        liquidation = 0.0
        if liquidate and shares_held[-1] != 0:
            notional = abs(shares_held[-1]) * float(market.close[last_bar])
            liquidation = float(cost_model.order_cost(shares_held[-1] < 0, notional))
            equity_path[-1] -= liquidation
            costs[-1] += liquidation
        if ruined is not None and marks.shape[0] < steps[s]:
            # ruined: flat from here to the segment end, so every strategy spans the same bars
            pad = int(steps[s] - marks.shape[0])
            more = np.arange(last_bar, last_bar + pad, dtype=np.int64)
            decision = np.concatenate([decision, more])
            marks = np.concatenate([marks, more + 1])
            equity_path = np.concatenate([equity_path, np.full(pad, equity_path[-1])])
            positions = np.concatenate([positions, np.zeros(pad)])
            shares_held = np.concatenate([shares_held, np.zeros(pad)])
            costs = np.concatenate([costs, np.zeros(pad)])
            fills = np.concatenate([fills, np.zeros(pad, dtype=bool)])
        start = int(start_bars[i])
        rows = np.concatenate([[start], marks])
        backtest = Backtest(
            symbol=market.symbols[s],
            strategy="agent",
            freq=market.freq,
            start_bar=start,
            decision_bars=decision,
            fill_bars=decision + fill_offset,
            bars=marks,
            equity=np.concatenate([[float(start_equity[i])], equity_path]),
            positions=positions,
            shares_held=shares_held,
            step_costs=costs,
            fills=fills,
            fill_prices=_fill_prices(market, decision, config.execution),
            price=np.asarray(market.close)[rows].astype(np.float64),
            timestamps=_timestamps(market, rows),
            liquidation_cost=liquidation,
            terminated_step=ruined,
        ).finish()
        check_test_rows(market, backtest, s)
        backtests.append(backtest)
    return backtests


def _fill_prices(market: MarketBlock, decision_bars: np.ndarray, execution: str) -> np.ndarray:
    if execution == "next_open":
        return np.asarray(market.open)[decision_bars + 1].astype(np.float64)
    return np.asarray(market.close)[decision_bars].astype(np.float64)


def baseline_backtest(
    market: MarketBlock,
    segment: int,
    env_config: EnvConfig,
    strategy: str,
    start_bar: int | None = None,
) -> Backtest:
    """Buy-and-hold or flat on one segment, through the simulator's cost model and fills.

    Buy-and-hold buys ``E0 / fill`` shares at the first fill (rounded down to whole shares
    under ``integer_shares``; cost paid from cash, as the simulator does for a target
    exposure of 1.0), holds, and sells at the last close. It ignores the intraday square-off:
    the passive benchmark holds across sessions.
    """
    if strategy not in ("buy_and_hold", "flat"):
        raise ValueError(f"strategy must be 'buy_and_hold' or 'flat', got {strategy!r}")
    seg = market.segment(segment)
    start = seg.start + env_config.window - 1 if start_bar is None else int(start_bar)
    if not seg.start <= start < seg.stop - 1:
        raise EvaluationError(
            f"segment {market.symbols[segment]!r} rows [{seg.start}, {seg.stop}) leave no step "
            f"after start bar {start}"
        )
    decision = np.arange(start, seg.stop - 1, dtype=np.int64)
    marks = decision + 1
    n = decision.shape[0]
    fill_offset = 1 if env_config.execution == "next_open" else 0
    rows = np.concatenate([[start], marks])
    close = np.asarray(market.close)
    initial = float(env_config.initial_cash)
    costs = np.zeros(n)
    fills = np.zeros(n, dtype=bool)
    if strategy == "flat":
        equity = np.full(n + 1, initial)
        positions = np.zeros(n)
        shares_held = np.zeros(n)
        liquidation = 0.0
    else:
        cost_model = env_config.cost_model()
        fill_price = float(market.open[start + 1] if fill_offset else close[start])
        shares = initial / fill_price
        buy_cost = float(cost_model.order_cost(True, initial))
        cash = -buy_cost
        if env_config.integer_shares:  # whole shares, as the simulator rounds the order
            shares = float(np.trunc(shares))
            buy_cost = float(cost_model.order_cost(True, shares * fill_price))
            cash = initial - (shares * fill_price + buy_cost)
        liquidation = float(cost_model.order_cost(False, shares * close[marks[-1]]))
        equity = np.concatenate([[initial], cash + shares * close[marks]])
        equity[-1] -= liquidation
        positions = np.ones(n)
        shares_held = np.full(n, shares)
        costs[0] += buy_cost
        costs[-1] += liquidation
        fills[0] = True
    return Backtest(
        symbol=market.symbols[segment],
        strategy=strategy,
        freq=market.freq,
        start_bar=start,
        decision_bars=decision,
        fill_bars=decision + fill_offset,
        bars=marks,
        equity=equity,
        positions=positions,
        shares_held=shares_held,
        step_costs=costs,
        fills=fills,
        fill_prices=_fill_prices(market, decision, env_config.execution),
        price=close[rows].astype(np.float64),
        timestamps=_timestamps(market, rows),
        liquidation_cost=liquidation,
    ).finish()


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


def evaluate_agent(
    policy: Any,
    market: MarketBlock,
    env_config: EnvConfig,
    *,
    info: dict[str, Any] | None = None,
    baselines: bool = True,
) -> EvalResult:
    """Backtests the deterministic policy on every segment of ``market`` in one batched env.

    ``policy`` is an Agent (``agent.act(obs, deterministic=True)``) or a function from an
    observation batch [S, obs_dim] to actions for ``env.step``. With ``baselines``,
    buy-and-hold and flat run beside it; validation skips them (they do not change).
    """
    (result,) = evaluate_agents(policy, market, env_config, copies=1, baselines=baselines)
    result.info.update(info or {})
    return result


def evaluate_agents(policy: Any, market: MarketBlock, env_config: EnvConfig, *, copies: int,
                    baselines: bool = False) -> list[EvalResult]:
    """:func:`evaluate_agent` for C policies in one batched env (``run_agent(copies=C)``):
    ``policy`` maps [C * S, obs_dim] observations (policy c's rows ``c * S .. c * S + S``)
    to actions. One EvalResult per policy, each the one it gets alone; one policy call per
    bar instead of C (a population's validation)."""
    agent_runs = run_agent(policy, market, env_config, copies=copies)
    num_segments = market.num_segments
    strategies = STRATEGIES if baselines else ("agent",)
    # buy-and-hold and flat do not depend on the policy: one backtest per segment, shared
    shared: list[list[Backtest]] = [[] for _ in range(num_segments)]
    if baselines:
        for s, agent_run in enumerate(agent_runs[:num_segments]):
            for strategy in ("buy_and_hold", "flat"):
                baseline = baseline_backtest(market, s, env_config, strategy,
                                             agent_run.start_bar)
                check_test_rows(market, baseline, s)
                shared[s].append(baseline)
    settings = evaluation_config(env_config).to_dict()
    results = []
    for c in range(copies):
        backtests: list[Backtest] = []
        for s, agent_run in enumerate(agent_runs[c * num_segments:(c + 1) * num_segments]):
            backtests += [agent_run, *shared[s]]
        combined = {
            strategy: combine([b for b in backtests if b.strategy == strategy], market.freq)
            for strategy in strategies
        }
        results.append(EvalResult(
            freq=market.freq,
            initial_cash=float(env_config.initial_cash),
            backtests=backtests,
            combined=combined,
            env_config=dict(settings),
            info={},
        ))
    return results
