"""Portfolio backtests: the deterministic allocation policy on held-out panel rows, beside
equal-weight and single-name buy-and-hold, all through one cost model and one execution.

The portfolio counterpart of :mod:`fastrl.backtest`, and likewise the one evaluation path:
validation during training (:meth:`fastrl.ppo.trainer.Trainer.validate`) and the
test-days report both call :func:`evaluate_portfolio`, so the Sharpe that picks the best
checkpoint is the one the report prints.

Every strategy starts at the panel's first decision row (``window - 1``: a full
observation window) with the same cash and runs to the last row:

- ``agent``: the policy's weights each row, stepped through a one-env
  :class:`~fastrl.env_portfolio.PortfolioVecEnv` (no random start, one episode to the end);
- ``ew_monthly``: equal weights, rebalanced on the first trading day of each month (the
  first fill, then every fill row whose calendar month differs from the previous row's);
- ``ew_hold``: equal weights bought at the first fill and never rebalanced;
- ``bh:<SYMBOL>``: all equity in one symbol, bought at the first fill.

Accounting (:func:`simulate`) follows the simulator exactly (``cpp/src/sim_portfolio.cpp`` and
:mod:`fastrl.reference_portfolio`): orders decided at row t fill at the open of t + 1 (or
the close of t), a name untradable at the fill row is not traded, each executed leg pays
the cost model, ``integer_shares`` and ``trade_band`` apply, equity is marked at each
close with the last traded close. The agent's weights are replayed through it and its
equity is checked against the env's at every step, so the env and the baselines cannot
drift apart. Whatever is still held after the last row is sold at the last mark and pays
its cost, for every strategy alike. If the agent's equity reaches the env's floor, it is
sold there and holds cash to the end (as the env ends the episode).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from fastrl.backtest import BOOTSTRAP_SEED, EquityPath, EvaluationError, as_policy_fn
from fastrl.data.panel import PanelBlock
from fastrl.env_portfolio import PortfolioConfig
from fastrl.metrics import PerformanceMetrics, compute_metrics

if TYPE_CHECKING:
    import pandas as pd

    from fastrl import stats

AGENT = "agent"
EW_MONTHLY = "ew_monthly"
EW_HOLD = "ew_hold"
BENCHMARK = EW_HOLD  # the verdict's benchmark: equal-weight buy-and-hold
LABELS = {AGENT: "agent", EW_MONTHLY: "equal weight, monthly", EW_HOLD: "equal weight, held"}
EQUITY_CHECK_RTOL = 1e-9  # agent equity: replayed accounting vs the C++ env


def strategy_label(strategy: str) -> str:
    """Table heading of a strategy ("buy & hold BPCL" for ``bh:BPCL``)."""
    if strategy.startswith("bh:"):
        return f"buy & hold {strategy[3:]}"
    return LABELS.get(strategy, strategy)


@dataclass(frozen=True)
class PortfolioHolding:
    """Shares [A] and cash carried from one portfolio backtest into the next."""

    shares: np.ndarray
    cash: float


@dataclass
class PortfolioBacktest(EquityPath):
    """One strategy over the panel, step by step (``n`` steps, ``n + 1`` equity marks).

    Step ``i`` decides at ``decision_rows[i]``, fills at ``fill_rows[i]`` and marks equity
    and ``weights`` (symbols, then cash) at the close of ``decision_rows[i] + 1``.
    ``equity[0]`` is the initial cash at the first decision row's close.
    """

    strategy: str
    symbols: tuple[str, ...]
    freq: str
    decision_rows: np.ndarray  # int64 [n]
    fill_rows: np.ndarray  # int64 [n]
    equity: np.ndarray  # float64 [n + 1]
    weights: np.ndarray  # float64 [n, A + 1], cash last, marked at each step's close
    step_costs: np.ndarray  # float64 [n], the final liquidation included
    legs: np.ndarray  # int64 [n], orders executed in the step
    turnover: np.ndarray  # float64 [n], traded notional / equity before the step
    rebalanced: np.ndarray  # bool [n], the strategy sent an order this step
    timestamps: np.ndarray | None = None  # datetime64[ns] [n + 1], aligned with equity
    liquidation_cost: float = 0.0
    terminated_step: int | None = None
    metrics: PerformanceMetrics | None = None
    final_cash: float | None = None  # held after the last step, before any liquidation
    final_shares: np.ndarray | None = None  # float64 [A], likewise

    @property
    def holding(self) -> PortfolioHolding:
        """What this backtest hands to the next window (shares and cash before liquidation)."""
        if self.final_shares is None or self.final_cash is None:
            raise EvaluationError(f"{self.strategy}: this backtest kept no final holding")
        return PortfolioHolding(shares=self.final_shares.copy(), cash=float(self.final_cash))

    def finish(self) -> PortfolioBacktest:
        """Metrics: compute_metrics on the equity, with portfolio-level trade counts (legs
        executed), turnover (traded notional / equity) and exposure (the symbols' weight)."""
        base = compute_metrics(self.equity, None, self.step_costs, self.freq)
        gross = self.weights[:, :-1].sum(axis=1) if self.num_steps else np.zeros(0)
        fills = int(self.legs.sum()) + int(self.liquidation_cost > 0)
        years = base.days / 252.0
        turnover = float(self.turnover.sum())
        self.metrics = dataclasses.replace(
            base,
            num_trades=fills,
            trades_per_day=fills / base.days if base.days > 0 else 0.0,
            turnover=turnover,
            annual_turnover=turnover / years if years > 0 else 0.0,
            exposure=float(gross.mean()) if gross.size else 0.0,
            time_in_market=float(np.mean(gross > 1e-12)) if gross.size else 0.0,
        )
        return self


# ----------------------------------------------------------------------------- accounting


def _fill_rows(decision_rows: np.ndarray, execution: str) -> np.ndarray:
    return decision_rows + 1 if execution == "next_open" else decision_rows.copy()


def simulate(
    panel: PanelBlock,
    config: PortfolioConfig,
    start: int,
    orders: Sequence[np.ndarray | None],
    strategy: str,
    *,
    floor: bool = False,
    holding: PortfolioHolding | None = None,
    liquidate: bool = True,
) -> PortfolioBacktest:
    """Replays target weights through the simulator's accounting (see the module doc).

    ``orders[i]`` are the target weights [A] decided at row ``start + i`` (None: hold, no
    order at all). ``floor``: stop at the env's equity floor as the env does. ``holding``:
    start from shares and cash carried over (walk-forward windows) instead of the initial
    cash; ``liquidate=False`` leaves the last holding open, unpaid.
    """
    A = panel.num_assets
    n = len(orders)
    if start < 0 or start + n >= panel.num_bars:
        raise EvaluationError(f"{n} steps from row {start} run past the panel's "
                              f"{panel.num_bars} rows")
    cost_model = config.cost_model()
    next_open = config.execution == "next_open"
    prices = panel.open if next_open else panel.close
    mark, tradable = panel.mark, panel.tradable
    decision = np.arange(start, start + n, dtype=np.int64)
    shares = np.zeros(A) if holding is None else np.array(holding.shares, dtype=np.float64)
    cash = float(config.initial_cash) if holding is None else float(holding.cash)
    equity = np.empty(n + 1)
    equity[0] = cash + float(np.sum(shares * np.nan_to_num(mark[start]))) if shares.any() \
        else cash
    weights = np.zeros((n, A + 1))
    costs = np.zeros(n)
    legs = np.zeros(n, dtype=np.int64)
    turnover = np.zeros(n)
    rebalanced = np.array([order is not None for order in orders], dtype=bool)
    terminated: int | None = None
    liquidation = 0.0
    floor_equity = config.equity_floor * config.initial_cash
    for i, order in enumerate(orders):
        t = int(decision[i])
        if order is not None and terminated is None:
            fill = t + 1 if next_open else t
            # the same summation order as the C++ core (cash first, then symbol 0, 1, ...),
            # so whole-share and no-trade-band decisions round the same way
            equity_at_fill = cash
            for a in range(A):
                value_px = prices[fill, a] if tradable[fill, a] else mark[fill, a]
                equity_at_fill += shares[a] * value_px
            band = config.trade_band * equity_at_fill
            notional_sum = 0.0
            for a in range(A):
                if not tradable[fill, a]:
                    continue
                price = float(prices[fill, a])
                target = order[a] * equity_at_fill / price if equity_at_fill > 0.0 else 0.0
                traded = target - shares[a]
                if config.integer_shares:
                    traded = float(np.trunc(traded))
                notional = abs(traded) * price
                if traded == 0.0 or notional < band:
                    continue
                cost = float(cost_model.order_cost(traded > 0.0, notional))
                cash -= traded * price + cost
                shares[a] += traded
                costs[i] += cost
                notional_sum += notional
                legs[i] += 1
            turnover[i] = notional_sum / equity[i]
        value = cash
        for a in range(A):
            value += shares[a] * mark[t + 1, a]
        equity[i + 1] = value
        if value > 0:
            weights[i, :A] = shares * mark[t + 1] / value
            weights[i, A] = cash / value
        if floor and terminated is None and value <= floor_equity:
            # sold at the floor's marks: cash from here on, like the env's ended episode
            terminated = i
            liquidation = _liquidation(cost_model, shares, mark[t + 1])
            cash = value - liquidation
            costs[i] += liquidation
            equity[i + 1] = cash
            shares[:] = 0.0
            weights[i] = 0.0
            weights[i, A] = 1.0
    final_shares = shares.copy()
    if n and terminated is None and liquidate:
        liquidation = _liquidation(cost_model, shares, mark[int(decision[-1]) + 1])
        equity[-1] -= liquidation
        costs[-1] += liquidation
    rows = np.concatenate([[start], decision + 1])
    return PortfolioBacktest(
        strategy=strategy, symbols=panel.symbols, freq=panel.freq, decision_rows=decision,
        fill_rows=_fill_rows(decision, config.execution), equity=equity, weights=weights,
        step_costs=costs, legs=legs, turnover=turnover, rebalanced=rebalanced,
        timestamps=None if panel.timestamps is None else np.asarray(panel.timestamps)[rows],
        liquidation_cost=liquidation, terminated_step=terminated,
        final_cash=cash, final_shares=final_shares,
    ).finish()


def _liquidation(cost_model: Any, shares: np.ndarray, mark: np.ndarray) -> float:
    held = shares != 0
    if not held.any():
        return 0.0
    notional = np.abs(shares[held]) * mark[held]
    return float(np.sum(cost_model.order_cost(shares[held] < 0, notional)))


# ----------------------------------------------------------------------------- strategies


def evaluation_config(config: PortfolioConfig) -> PortfolioConfig:
    """The training config with one deterministic episode over the whole panel."""
    return dataclasses.replace(config, random_start=False, episode_length=0)


def _steps(panel: PanelBlock, config: PortfolioConfig) -> tuple[int, int]:
    """(first decision row, number of steps): from ``window - 1`` to the last row."""
    start = config.window - 1
    n = panel.num_bars - 1 - start
    if n < 1:
        raise EvaluationError(f"the panel has {panel.num_bars} rows: no step after the "
                              f"first decision row {start} (window {config.window})")
    return start, n


def rebalance_steps(panel: PanelBlock, config: PortfolioConfig) -> np.ndarray:
    """Steps whose fill lands on the first trading day of a month (and the first fill).

    Without timestamps a "month" is 21 rows.
    """
    start, n = _steps(panel, config)
    fill = _fill_rows(np.arange(start, start + n, dtype=np.int64), config.execution)
    if panel.timestamps is None:
        return np.flatnonzero(np.arange(n) % 21 == 0)
    months = np.asarray(panel.timestamps).astype("datetime64[M]")
    new_month = months[fill] != months[fill - 1]
    new_month[0] = True
    return np.flatnonzero(new_month)


def baseline_backtest(panel: PanelBlock, config: PortfolioConfig, strategy: str
                      ) -> PortfolioBacktest:
    """``ew_monthly``, ``ew_hold`` or ``bh:<SYMBOL>`` through :func:`simulate`."""
    config = evaluation_config(config)
    start, n = _steps(panel, config)
    A = panel.num_assets
    orders: list[np.ndarray | None] = [None] * n
    if strategy in (EW_MONTHLY, EW_HOLD):
        equal = np.full(A, 1.0 / A)
        steps = rebalance_steps(panel, config) if strategy == EW_MONTHLY else [0]
        for i in steps:
            orders[int(i)] = equal
    elif strategy.startswith("bh:") and strategy[3:] in panel.symbols:
        orders[0] = np.eye(A)[panel.symbols.index(strategy[3:])]
    else:
        raise ValueError(f"unknown baseline {strategy!r}: use {EW_MONTHLY}, {EW_HOLD} or "
                         f"bh:<one of {list(panel.symbols)}>")
    return simulate(panel, config, start, orders, strategy)


def run_agent(policy: Any, panel: PanelBlock, config: PortfolioConfig, *,
              holding: PortfolioHolding | None = None,
              liquidate: bool = True) -> PortfolioBacktest:
    """The deterministic policy through a one-env PortfolioVecEnv, then :func:`simulate`.

    ``holding`` starts the env and the accounting from carried shares and cash;
    ``liquidate=False`` leaves the last holding open (walk-forward windows). Raises
    EvaluationError if the policy's weights are malformed or the replayed equity differs
    from the env's (which would mean the baselines are not comparable).
    """
    from fastrl.env_portfolio import PortfolioVecEnv

    policy_fn = as_policy_fn(policy, "weights")
    config = evaluation_config(config)
    start, n = _steps(panel, config)
    A = panel.num_assets
    env = PortfolioVecEnv(panel, 1, config, num_threads=1, seed=0)
    orders: list[np.ndarray | None] = []
    env_equity: list[float] = []
    terminated = False
    try:
        obs, _ = env.reset(seed=0)
        if holding is not None:
            state = env.get_state()
            state["shares"][0] = holding.shares
            state["cash"][0] = holding.cash
            value = holding.cash + float(np.sum(holding.shares * np.nan_to_num(
                panel.mark[int(state["bar_index"][0])])))
            state["equity"][0] = value
            state["peak_equity"][0] = value
            env.set_state(state)
            obs = env.buffers["obs"]
        while True:
            weights = np.asarray(policy_fn(obs), dtype=np.float64)
            if weights.shape != (1, A) or not np.all(np.isfinite(weights)):
                raise EvaluationError(f"the policy returned weights of shape {weights.shape} "
                                      f"(need (1, {A}), finite)")
            orders.append(weights[0].copy())
            obs, _, term, trunc, info = env.step(weights)
            done = bool(term[0] or trunc[0])
            env_equity.append(float(info["episode"]["equity"][0] if done else env.equity[0]))
            if done:
                terminated = bool(term[0])
                break
    except ValueError as exc:  # the env refuses weights outside its caps
        raise EvaluationError(f"the policy's weights are not a valid action: {exc}") from None
    finally:
        env.close()
    if terminated:  # the env's episode ended at the floor: cash from there on
        orders += [None] * (n - len(orders))
    backtest = simulate(panel, config, start, orders, AGENT, floor=True, holding=holding,
                        liquidate=liquidate)
    # the env reports equity before the final sale (at the end or at the floor)
    replayed = backtest.equity[1:len(env_equity) + 1].copy()
    replayed[-1] += backtest.liquidation_cost
    if len(env_equity) != (n if backtest.terminated_step is None
                           else backtest.terminated_step + 1) or \
            not np.allclose(replayed, env_equity, rtol=EQUITY_CHECK_RTOL, atol=0.0):
        raise EvaluationError(
            f"the replayed accounting differs from the env's: {len(env_equity)} env steps "
            f"ending at equity {env_equity[-1]!r}, replayed {replayed[-1]!r}")
    return backtest


# ----------------------------------------------------------------------------- results


@dataclass(frozen=True)
class PortfolioUncertainty:
    """Sharpe error bars per strategy, and the paired agent-vs-benchmark comparisons."""

    sharpe: dict[str, stats.SharpeStats]
    vs: dict[str, stats.AgentVsBenchmark]  # EW_HOLD and EW_MONTHLY
    verdict: str

    def as_dict(self) -> dict[str, Any]:
        return {"sharpe": {k: v.as_dict() for k, v in self.sharpe.items()},
                "agent_vs": {k: v.as_dict() for k, v in self.vs.items()},
                "verdict": self.verdict}


@dataclass
class PortfolioResult:
    """Every strategy's backtest on one panel; the agent first."""

    freq: str
    symbols: tuple[str, ...]
    initial_cash: float
    backtests: list[PortfolioBacktest]
    env_config: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    _uncertainty: PortfolioUncertainty | None = field(default=None, init=False, repr=False,
                                                      compare=False)

    @property
    def strategies(self) -> list[str]:
        return [b.strategy for b in self.backtests]

    def get(self, strategy: str) -> PortfolioBacktest:
        for backtest in self.backtests:
            if backtest.strategy == strategy:
                return backtest
        raise KeyError(f"no backtest for strategy {strategy!r}; have {self.strategies}")

    def metrics(self, strategy: str) -> PerformanceMetrics:
        metrics = self.get(strategy).metrics
        assert metrics is not None
        return metrics

    def uncertainty(self) -> PortfolioUncertainty:
        """Sharpe SE, bootstrap interval and PSR per strategy; the agent's mean return over
        equal-weight held / monthly with its one-sided p (``stats.prob_agent_beats``);
        computed once."""
        if self._uncertainty is not None:
            return self._uncertainty
        from fastrl import stats

        if BENCHMARK not in self.strategies:
            raise ValueError("uncertainty needs the baselines (evaluate_portfolio(baselines=True))")
        agent = self.get(AGENT).returns
        sharpe = {b.strategy: stats.sharpe_stats(b.returns, self.freq, seed=BOOTSTRAP_SEED)
                  for b in self.backtests}
        vs = {name: stats.prob_agent_beats(agent, self.get(name).returns, self.freq)
              for name in (EW_HOLD, EW_MONTHLY)}
        verdict = stats.verdict(vs[BENCHMARK], agent="the portfolio agent",
                                benchmark="equal-weight buy-and-hold")
        self._uncertainty = PortfolioUncertainty(sharpe=sharpe, vs=vs, verdict=verdict)
        return self._uncertainty

    @property
    def verdict(self) -> str:
        return self.uncertainty().verdict

    def steps_frame(self) -> pd.DataFrame:
        """One row per step per strategy: equity, return, cost, turnover, weights."""
        import pandas as pd

        frames = []
        for b in self.backtests:
            frame = pd.DataFrame(b.step_columns(
                {"strategy": b.strategy},
                {"decision_row": b.decision_rows, "fill_row": b.fill_rows,
                 "rebalanced": b.rebalanced, "legs": b.legs, "cost": b.step_costs,
                 "turnover": b.turnover}))
            for a, symbol in enumerate(self.symbols):
                frame[f"w_{symbol}"] = b.weights[:, a]
            frame["w_cash"] = b.weights[:, -1]
            frames.append(frame)
        return pd.concat(frames, ignore_index=True)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (infinities as strings); with baselines, the error bars."""
        out: dict[str, Any] = {
            "kind": "portfolio", "freq": self.freq, "symbols": list(self.symbols),
            "initial_cash": self.initial_cash, "env_config": self.env_config,
            "info": self.info,
            "metrics": {s: self.metrics(s).to_dict(json_safe=True) for s in self.strategies},
        }
        if BENCHMARK in self.strategies:
            out["verdict"] = self.verdict
            out["uncertainty"] = self.uncertainty().as_dict()
        return out


def evaluate_portfolio(
    policy: Any,
    panel: PanelBlock,
    config: PortfolioConfig,
    *,
    info: dict[str, Any] | None = None,
    baselines: bool = True,
) -> PortfolioResult:
    """Backtests the deterministic policy on ``panel`` (and, with ``baselines``, the
    equal-weight and single-name buy-and-holds). ``policy`` is an Agent or a function from
    observations [1, obs_dim] to weights [1, A]. Validation passes ``baselines=False``."""
    backtests = [run_agent(policy, panel, config)]
    if baselines:
        names = [EW_MONTHLY, EW_HOLD, *(f"bh:{s}" for s in panel.symbols)]
        backtests += [baseline_backtest(panel, config, name) for name in names]
    return PortfolioResult(freq=panel.freq, symbols=panel.symbols,
                           initial_cash=float(config.initial_cash), backtests=backtests,
                           env_config=evaluation_config(config).to_dict(),
                           info=dict(info or {}))


__all__ = ["AGENT", "EW_HOLD", "EW_MONTHLY", "PortfolioBacktest", "PortfolioResult",
           "baseline_backtest", "evaluate_portfolio", "evaluation_config", "rebalance_steps",
           "run_agent", "simulate", "strategy_label"]
