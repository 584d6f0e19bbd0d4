"""Portfolio backtests: the deterministic allocation policy on held-out panel rows, beside
equal-weight and single-name buy-and-hold, all through one cost model and one execution.

The portfolio counterpart of :mod:`fastrl.markets.single.backtest`, and likewise the one
evaluation path: validation during training (:meth:`fastrl.ppo.trainer.Trainer.validate`) and the
test-days report both call :func:`evaluate_portfolio`, so the Sharpe that picks the best
checkpoint is the one the report prints.

Every strategy starts at the panel's first decision row (``window - 1``: a full
observation window) with the same cash and runs to the last row:

- ``agent``: the policy's weights each row, in a one-env env (no random start, one episode
  to the end);
- ``ew_monthly``: equal weights, rebalanced on the first trading day of each month (the
  first fill, then every fill row whose calendar month differs from the previous row's);
- ``ew_hold``: equal weights bought at the first fill and never rebalanced;
- ``bh:<SYMBOL>``: all equity in one symbol, bought at the first fill.

Every strategy is stepped through the C++ simulator (a
:class:`~fastrl.markets.portfolio.env.PortfolioVecEnv`; the baselines together, one env each,
sending orders only on their rebalance steps), so the agent and the baselines share one
accounting: orders decided at row t fill at the open of t + 1 (or the close of t), a name
untradable at the fill row is not traded, each executed leg pays the cost model,
``integer_shares`` and ``trade_band`` apply, equity is marked at each close with the last
traded close. Whatever is still held after the last row is sold at the last mark at the
simulator's liquidation cost, for every strategy alike. If the agent's equity reaches the env's
floor, it is sold there and holds cash to the end (as the env ends the episode).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from fastrl.data.months import BARS_PER_MONTH, month_ends
from fastrl.data.panel import PanelBlock
from fastrl.env_config import PortfolioConfig
from fastrl.ladder import Ladder, ladder_of
from fastrl.markets.portfolio.env import PortfolioVecEnv
from fastrl.markets.results import BOOTSTRAP_SEED, EquityPath, EvaluationError, as_policy_fn
from fastrl.metrics import PerformanceMetrics, compute_metrics
from fastrl.strategies import AGENT, BENCHMARK, EW_HOLD, EW_MONTHLY, strategy_label

if TYPE_CHECKING:
    import pandas as pd

    from fastrl import stats

@dataclass(frozen=True)
class PortfolioHolding:
    """Shares [A] and cash carried from one portfolio backtest into the next; anchored
    actions also carry ``target``, the weights of the last rebalance, so that an unchanged
    target goes on holding in the next one (PortfolioConfig.action_mode)."""

    shares: np.ndarray
    cash: float
    target: np.ndarray | None = None


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
    final_target: np.ndarray | None = None  # anchored: [A], the last rebalance's weights

    @property
    def holding(self) -> PortfolioHolding:
        """What this backtest hands to the next window (shares and cash before liquidation)."""
        if self.final_shares is None or self.final_cash is None:
            raise EvaluationError(f"{self.strategy}: this backtest kept no final holding")
        target = None if self.final_target is None else self.final_target.copy()
        return PortfolioHolding(shares=self.final_shares.copy(), cash=float(self.final_cash),
                                target=target)

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


# ----------------------------------------------------------------------------- stepping


def _fill_rows(decision_rows: np.ndarray, execution: str) -> np.ndarray:
    return decision_rows + 1 if execution == "next_open" else decision_rows.copy()


Decide = Callable[[int, np.ndarray], tuple[np.ndarray, np.ndarray]]


def _step_backtests(env: PortfolioVecEnv, panel: PanelBlock, strategies: Sequence[str],
                    decide: Decide, num_steps: int, *, liquidate: bool = True
                    ) -> list[PortfolioBacktest]:
    """Steps ``env`` (every env at the first decision row) ``num_steps`` times and records
    env i as one backtest of ``strategies[i]``.

    ``decide(k, obs)`` gives step k's target weights [N, A] and which envs send an order
    [N] (the others hold). A holding still open after the last step is sold at the
    simulator's liquidation cost (``info["episode"]["liquidation"]``) unless ``liquidate``
    is False. An env whose equity reaches the floor is sold there at that cost, whatever
    ``liquidate`` says, and holds that cash to the end (as the env ends the episode).
    """
    config = env.config
    N, A = env.num_envs, panel.num_assets
    start = int(env.bar_index[0])
    mark = env.mark
    equity = np.empty((N, num_steps + 1))
    equity[:, 0] = env.equity
    weights = np.zeros((N, num_steps, A + 1))
    costs = np.zeros((N, num_steps))
    legs = np.zeros((N, num_steps), dtype=np.int64)
    turnover = np.zeros((N, num_steps))
    rebalanced = np.zeros((N, num_steps), dtype=bool)
    prev_trades = env.episode_trades.copy()
    liquidation = np.zeros(N)
    terminated_at: list[int | None] = [None] * N
    final_cash = np.zeros(N)
    final_shares = np.zeros((N, A))
    active = np.ones(N, dtype=bool)
    # anchored: the env's last rebalance target, which an order to the same weights holds
    anchored = config.action_mode == "anchored"
    final_target = env.get_state()["last_target"] if anchored else None
    obs = env.buffers["obs"]
    for k in range(num_steps):
        if not active.any():
            break
        targets, orders = decide(k, obs)
        obs, _, terminated, truncated, info = env.step_orders(targets, orders & active)
        if final_target is not None:
            sent = orders & active
            final_target[sent] = np.asarray(targets, dtype=np.float64)[sent]
        episode = info["episode"]
        done = terminated | truncated
        trades = np.where(done, episode["trades"], env.episode_trades)
        value = np.where(done, episode["equity"], env.equity)
        shares = np.where(done[:, None], episode["shares"], env.shares)
        cash = np.where(done, episode["cash"], env.cash)
        row = mark[start + k + 1]
        for i in np.flatnonzero(active):
            equity[i, k + 1] = value[i]
            costs[i, k] = env.step_costs[i]
            legs[i, k] = trades[i] - prev_trades[i]
            turnover[i, k] = env.step_turnover[i]
            rebalanced[i, k] = orders[i]
            if value[i] > 0:
                weights[i, k, :A] = shares[i] * row / value[i]
                weights[i, k, A] = cash[i] / value[i]
            if not done[i]:
                continue
            active[i] = False
            final_shares[i], final_cash[i] = shares[i], cash[i]
            if terminated[i]:  # sold at the floor's marks: cash from here on
                terminated_at[i] = k
                if final_target is not None:  # the reset env's: no rebalance target yet
                    final_target[i] = env.get_state()["last_target"][i]
                final_shares[i] = 0.0
                weights[i, k] = 0.0
                weights[i, k, A] = 1.0
            if terminated[i] or liquidate:
                liquidation[i] = float(episode["liquidation"][i])
                equity[i, k + 1] -= liquidation[i]
                costs[i, k] += liquidation[i]
            if terminated[i]:
                final_cash[i] = equity[i, k + 1]
                equity[i, k + 2:] = final_cash[i]
                if final_cash[i] > 0:
                    weights[i, k + 1:, A] = 1.0
        prev_trades = trades
    if liquidate and active.any():
        raise EvaluationError("a backtest that closes its books must run to the panel's end")
    for i in np.flatnonzero(active):  # still open: what it holds now
        final_shares[i], final_cash[i] = env.shares[i], env.cash[i]
    decision = np.arange(start, start + num_steps, dtype=np.int64)
    rows = np.concatenate([[start], decision + 1])
    stamps = None if panel.timestamps is None else np.asarray(panel.timestamps)[rows]
    return [PortfolioBacktest(
        strategy=strategy, symbols=panel.symbols, freq=panel.freq, decision_rows=decision,
        fill_rows=_fill_rows(decision, config.execution), equity=equity[i],
        weights=weights[i], step_costs=costs[i], legs=legs[i], turnover=turnover[i],
        rebalanced=rebalanced[i], timestamps=stamps, liquidation_cost=float(liquidation[i]),
        terminated_step=terminated_at[i], final_cash=float(final_cash[i]),
        final_shares=final_shares[i].copy(),
        final_target=None if final_target is None else final_target[i].copy(),
    ).finish() for i, strategy in enumerate(strategies)]


# ----------------------------------------------------------------------------- strategies


def evaluation_config(config: PortfolioConfig) -> PortfolioConfig:
    """The training config with one deterministic episode over the whole panel."""
    return dataclasses.replace(config, random_start=False, episode_length=0)


def baseline_config(config: PortfolioConfig) -> PortfolioConfig:
    """The env the baselines step: the evaluation's fills, costs, ``integer_shares`` and
    ``trade_band``, without the policy's weight caps (a baseline may hold one name whole),
    without an equity floor, and with absolute actions (a schedule's orders say when it
    rebalances, also to an unchanged target)."""
    return dataclasses.replace(evaluation_config(config), max_weight=1.0, max_gross=1.0,
                               equity_floor=0.0, action_mode="absolute")


def decision_steps(panel: PanelBlock, config: PortfolioConfig, start_row: int | None = None
                   ) -> tuple[int, int]:
    """(first decision row, number of steps): from ``start_row`` (default ``window - 1``,
    the first full observation window; a later row leaves the rows before it as history a
    rule may read) to the last row."""
    first = config.window - 1
    start = first if start_row is None else int(start_row)
    if start < first:
        raise EvaluationError(f"start row {start} is before the first decision row {first} "
                              f"(window {config.window})")
    n = panel.num_bars - 1 - start
    if n < 1:
        raise EvaluationError(f"the panel has {panel.num_bars} rows: no step after the "
                              f"first decision row {start} (window {config.window})")
    return start, n


def rebalance_steps(panel: PanelBlock, config: PortfolioConfig, start_row: int | None = None
                    ) -> np.ndarray:
    """Steps whose fill lands on the first trading day of a month (and the first fill),
    counted from ``start_row`` (see :func:`decision_steps`).

    Without timestamps a "month" is BARS_PER_MONTH steps.
    """
    start, n = decision_steps(panel, config, start_row)
    if panel.timestamps is None:
        return np.flatnonzero(np.arange(n) % BARS_PER_MONTH == 0)
    new_month = fills_open_month(month_ends(panel.timestamps, panel.num_bars),
                                 np.arange(start, start + n, dtype=np.int64), config.execution)
    new_month[0] = True
    return np.flatnonzero(new_month)


def fills_open_month(month_end: np.ndarray, decision_rows: np.ndarray, execution: str
                     ) -> np.ndarray:
    """Whether the fill of the decision at each of ``decision_rows`` is a month's first
    (bool): the row before the fill ended a month (``month_end``, as
    :func:`fastrl.data.months.month_ends` marks the rows). Next-open fills: the decision
    row itself ended one; close fills: the row before it did. The one definition of a
    monthly rebalance, for the backtest and the live path. A fill on the first row has no
    row before it: False."""
    fill = _fill_rows(np.asarray(decision_rows, dtype=np.int64), execution)
    ended = np.asarray(month_end, dtype=bool)[np.maximum(fill - 1, 0)]
    return ended & (fill >= 1)


def baseline_backtests(panel: PanelBlock, config: PortfolioConfig, strategies: Sequence[str]
                       ) -> list[PortfolioBacktest]:
    """``ew_monthly``, ``ew_hold`` or ``bh:<SYMBOL>`` each, stepped together through one
    PortfolioVecEnv (one env per strategy, see :func:`baseline_config`): target weights on
    their rebalance steps, no order on the others."""
    config = evaluation_config(config)
    _, n = decision_steps(panel, config)
    A = panel.num_assets
    targets = np.zeros((len(strategies), A))
    orders = np.zeros((n, len(strategies)), dtype=bool)
    for j, strategy in enumerate(strategies):
        if strategy in (EW_MONTHLY, EW_HOLD):
            targets[j] = 1.0 / A
            orders[rebalance_steps(panel, config) if strategy == EW_MONTHLY else 0, j] = True
        elif strategy.startswith("bh:") and strategy[3:] in panel.symbols:
            targets[j, panel.symbols.index(strategy[3:])] = 1.0
            orders[0, j] = True
        else:
            raise ValueError(f"unknown baseline {strategy!r}: use {EW_MONTHLY}, {EW_HOLD} or "
                             f"bh:<one of {list(panel.symbols)}>")
    return plan_backtests(panel, config, strategies,
                          np.broadcast_to(targets, (n, len(strategies), A)), orders)


def plan_backtests(panel: PanelBlock, config: PortfolioConfig, strategies: Sequence[str],
                   targets: np.ndarray, orders: np.ndarray, start_row: int | None = None
                   ) -> list[PortfolioBacktest]:
    """Weight schedules stepped together through one PortfolioVecEnv (one env per strategy,
    see :func:`baseline_config`), from the first decision row (``start_row``, see
    :func:`decision_steps`) to the panel's end.

    ``targets`` [n, N, A]: step k's target weights per strategy, sent only where ``orders``
    [n, N] is True (the others hold); ``n`` is the number of steps (the first decision row
    to the last row).
    """
    config = evaluation_config(config)
    start, n = decision_steps(panel, config, start_row)
    shape = (n, len(strategies), panel.num_assets)
    if np.shape(targets) != shape or np.shape(orders) != shape[:2]:
        raise EvaluationError(f"targets {np.shape(targets)} and orders {np.shape(orders)} "
                              f"do not match (steps, strategies, assets) = {shape}")
    if not np.all(np.isfinite(targets)):
        raise EvaluationError("the target weights must be finite")
    env = PortfolioVecEnv(panel, len(strategies), baseline_config(config), num_threads=1,
                          seed=0)
    try:
        env.reset(seed=0)
        if start != config.window - 1:  # every env starts at the later row, holding cash
            state = env.get_state()
            state["bar_index"][:] = start
            env.set_state(state)
        return _step_backtests(env, panel, strategies,
                               lambda k, _obs: (targets[k], orders[k]), n)
    finally:
        env.close()


def baseline_backtest(panel: PanelBlock, config: PortfolioConfig, strategy: str
                      ) -> PortfolioBacktest:
    """One baseline: see :func:`baseline_backtests`."""
    (backtest,) = baseline_backtests(panel, config, [strategy])
    return backtest


def _agent_env(panel: PanelBlock, config: PortfolioConfig, holding: PortfolioHolding | None,
               row: int | None = None) -> PortfolioVecEnv:
    """A one-env PortfolioVecEnv at ``row`` (default: the first decision row) holding
    ``holding`` (default: the initial cash), its equity marked at that row's close."""
    env = PortfolioVecEnv(panel, 1, config, num_threads=1, seed=0)
    env.reset(seed=0)
    if holding is None and row is None:
        return env
    state = env.get_state()
    if row is not None:
        state["bar_index"][0] = row
    if holding is not None:
        state["shares"][0] = holding.shares
        state["cash"][0] = holding.cash
        if holding.target is not None and config.action_mode == "anchored":
            state["last_target"][0] = holding.target
        value = holding.cash + float(np.sum(holding.shares * np.nan_to_num(
            panel.mark[int(state["bar_index"][0])])))
        state["equity"][0] = value
        state["peak_equity"][0] = value
    try:
        env.set_state(state)
    except ValueError:
        env.close()
        raise
    return env


def step_holding(panel: PanelBlock, config: PortfolioConfig, row: int,
                 holding: PortfolioHolding, weights: np.ndarray | None) -> PortfolioBacktest:
    """One step of the agent's accounting from ``holding`` at ``row``: rebalanced to
    ``weights`` (None: no order), filled and marked by the simulator, the floor applied as
    in :func:`run_agent`, nothing liquidated. The live path's fill and mark."""
    A = panel.num_assets
    order = np.array([weights is not None])
    targets = np.zeros((1, A)) if weights is None else np.asarray(weights, np.float64)[None]
    env = _agent_env(panel, config, holding, row)
    try:
        (backtest,) = _step_backtests(env, panel, [AGENT], lambda _k, _obs: (targets, order), 1,
                                      liquidate=False)
    finally:
        env.close()
    return backtest


def run_agent(policy: Any, panel: PanelBlock, config: PortfolioConfig, *,
              holding: PortfolioHolding | None = None,
              liquidate: bool = True) -> PortfolioBacktest:
    """The deterministic policy's weights each row, stepped through a one-env
    PortfolioVecEnv.

    ``holding`` starts the env from carried shares and cash; ``liquidate=False`` leaves the
    last holding open (walk-forward windows). Raises EvaluationError if the policy's
    weights are malformed.
    """
    policy_fn = as_policy_fn(policy, "weights")
    config = evaluation_config(config)
    _, n = decision_steps(panel, config)
    A = panel.num_assets
    order = np.ones(1, dtype=bool)

    def decide(_k: int, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        weights = np.asarray(policy_fn(obs), dtype=np.float64)
        if weights.shape != (1, A) or not np.all(np.isfinite(weights)):
            raise EvaluationError(f"the policy returned weights of shape {weights.shape} "
                                  f"(need (1, {A}), finite)")
        return weights, order

    env = _agent_env(panel, config, holding)
    try:
        (backtest,) = _step_backtests(env, panel, [AGENT], decide, n, liquidate=liquidate)
    except ValueError as exc:
        if isinstance(exc, EvaluationError):
            raise
        # the env refuses weights outside its caps
        raise EvaluationError(f"the policy's weights are not a valid action: {exc}") from None
    finally:
        env.close()
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
    # the ladder's rungs (portfolio rules of fastrl.rules) in order; their backtests are in
    # ``backtests`` under the rule's name (ew_hold's and ew_monthly's are the baselines')
    rungs: list[str] = field(default_factory=list)
    _uncertainty: PortfolioUncertainty | None = field(default=None, init=False, repr=False,
                                                      compare=False)
    _ladder: Ladder | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def strategies(self) -> list[str]:
        return [b.strategy for b in self.backtests]

    def get(self, strategy: str) -> PortfolioBacktest:
        for backtest in self.backtests:
            if backtest.strategy == strategy:
                return backtest
        raise KeyError(f"no backtest for strategy {strategy!r}; have {self.strategies}")

    def metrics(self, strategy: str = AGENT) -> PerformanceMetrics:
        """The portfolio metrics of ``strategy`` (default: the agent)."""
        metrics = self.get(strategy).metrics
        assert metrics is not None
        return metrics

    def uncertainty(self) -> PortfolioUncertainty:
        """Sharpe SE, bootstrap interval and PSR per strategy; the agent's mean return over
        equal-weight held / monthly with its one-sided p (``stats.prob_agent_beats``);
        computed once."""
        if self._uncertainty is not None:
            return self._uncertainty
        from fastrl import stats  # arch takes seconds to import; validation never needs it

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

    def ladder(self) -> Ladder:
        """The agent against each rung on the same steps, the p-values Holm-adjusted across
        the rungs; computed once."""
        if self._ladder is None:
            self._ladder = ladder_of(
                self.get(AGENT).returns,
                {rung: (self.get(rung).returns, self.metrics(rung).total_return)
                 for rung in self.rungs}, self.freq, agent="the portfolio agent",
                seed=BOOTSTRAP_SEED)
        return self._ladder

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
        if self.rungs:
            out["rungs"] = list(self.rungs)
            out["ladder"] = self.ladder().as_dict()
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
        backtests += baseline_backtests(panel, config, names)
    return PortfolioResult(freq=panel.freq, symbols=panel.symbols,
                           initial_cash=float(config.initial_cash), backtests=backtests,
                           env_config=evaluation_config(config).to_dict(),
                           info=dict(info or {}))


__all__ = ["AGENT", "EW_HOLD", "EW_MONTHLY", "PortfolioBacktest", "PortfolioResult",
           "baseline_backtest", "baseline_backtests", "baseline_config", "evaluate_portfolio",
           "evaluation_config", "fills_open_month", "plan_backtests", "rebalance_steps",
           "run_agent", "step_holding", "strategy_label"]
