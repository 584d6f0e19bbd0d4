"""Honest backtests: the deterministic policy on held-out test bars, beside buy-and-hold and flat.

One env per segment (symbol) starts at the segment's first bar with a full observation
window and runs to the segment's end: no random starts, the training config's costs and
execution. Every recorded fill and mark is asserted to lie on a test row (the first
``market.meta["context_rows"]`` rows of each test segment only feed the observation
window). A position still open after the last bar is closed at the last close and pays
its cost, for the agent and for buy-and-hold alike, so both sides count every cost.

Buy-and-hold enters at the agent's first possible fill with the whole equity, through
the same cost model and share accounting as the simulator, and sells at the last close:
its final equity is ``E0 x close_last / fill_price - buy cost - sell cost``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fastrl.data.block import MarketBlock
from fastrl.metrics import PerformanceMetrics, TradeRecords, compute_metrics, extract_trades

if TYPE_CHECKING:
    import pandas as pd

    from fastrl.env import EnvConfig

STRATEGIES = ("agent", "buy_and_hold", "flat")
STRATEGY_LABELS = {"agent": "agent", "buy_and_hold": "buy & hold", "flat": "flat"}
COMBINED = "ALL"
CHECKPOINT_ORDER = ("best.pt", "final.pt", "last.pt")

PolicyFn = Callable[[np.ndarray], Any]


class EvaluationError(ValueError):
    """Bad input for an evaluation: run folder, checkpoint, symbols, test days, data."""


@dataclass
class Backtest:
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

    @property
    def num_steps(self) -> int:
        return int(self.bars.shape[0])

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


@dataclass
class EvalResult:
    """Backtests of every strategy on every segment, plus equal-capital combined metrics."""

    freq: str
    initial_cash: float
    backtests: list[Backtest]
    combined: dict[str, PerformanceMetrics]
    env_config: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)  # checkpoint, symbols, test days, ...

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
        """JSON-ready summary: every metric of every row (infinities as strings)."""
        return {
            "freq": self.freq,
            "initial_cash": self.initial_cash,
            "env_config": self.env_config,
            "info": self.info,
            "metrics": {
                symbol: {
                    strategy: self.metrics(symbol, strategy).to_dict(json_safe=True)
                    for strategy in STRATEGIES
                }
                for symbol in [*self.symbols, COMBINED]
            },
        }


def evaluation_config(env_config: EnvConfig) -> EnvConfig:
    """The training env config with deterministic full-segment episodes, costs unchanged."""
    return dataclasses.replace(
        env_config, random_start=False, episode_length=0, segment_assignment="round_robin"
    )


def _as_policy_fn(policy: Any) -> PolicyFn:
    act = getattr(policy, "act", None)
    if callable(act):
        return lambda obs: act(obs, deterministic=True)
    if callable(policy):
        return policy
    raise TypeError(
        f"policy must be an Agent (with .act) or a function obs -> actions, got {type(policy)}"
    )


def _valid_actions(actions: np.ndarray, config: EnvConfig, num_envs: int) -> np.ndarray:
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


def run_agent(policy: Any, market: MarketBlock, env_config: EnvConfig) -> list[Backtest]:
    """Steps the deterministic policy through every segment once (one env per segment)."""
    from fastrl.env import TradingVecEnv

    policy_fn = _as_policy_fn(policy)
    config = evaluation_config(env_config)
    cost_model = config.cost_model()
    num_envs = market.num_segments
    env = TradingVecEnv(market, num_envs, config, num_threads=1, seed=0)
    try:
        obs, _ = env.reset(seed=0)
        start_bars = env.bar_index.copy()
        seg_ends = market.offsets[1:].copy()
        steps = (seg_ends - 1 - start_bars).astype(np.int64)
        record = {
            key: [[] for _ in range(num_envs)]
            for key in ("decision", "mark", "equity", "position", "shares", "cost", "fill")
        }
        prev_costs = env.episode_costs.copy()
        prev_trades = env.episode_trades.copy()
        terminated_at: list[int | None] = [None] * num_envs
        active = np.ones(num_envs, dtype=bool)
        while active.any():
            actions = _valid_actions(policy_fn(obs), config, num_envs)
            decision = env.bar_index.copy()
            obs, _rewards, terminated, truncated, info = env.step(actions)
            episode = info["episode"]
            for i in np.flatnonzero(active):
                done = bool(terminated[i] or truncated[i])
                if done:
                    equity = float(episode["equity"][i])
                    cum_costs = float(episode["costs"][i])
                    cum_trades = int(episode["trades"][i])
                    # the env has auto-reset: its state is the next episode's
                    position = float(episode["position"][i])
                    shares = float(episode["shares"][i])
                else:
                    equity = float(env.equity[i])
                    cum_costs = float(env.episode_costs[i])
                    cum_trades = int(env.episode_trades[i])
                    position = float(env.positions[i])
                    shares = float(env.shares[i])
                rec_len = len(record["mark"][i])
                record["decision"][i].append(int(decision[i]))
                record["mark"][i].append(int(decision[i]) + 1)
                record["equity"][i].append(equity)
                record["position"][i].append(position)
                record["shares"][i].append(shares)
                record["cost"][i].append(cum_costs - float(prev_costs[i]))
                record["fill"][i].append(cum_trades > int(prev_trades[i]))
                if done:
                    active[i] = False
                    if terminated[i]:
                        terminated_at[i] = rec_len
                else:
                    prev_costs[i], prev_trades[i] = cum_costs, cum_trades
    finally:
        env.close()

    backtests = []
    fill_offset = 1 if config.execution == "next_open" else 0
    for s in range(num_envs):
        decision = np.asarray(record["decision"][s], dtype=np.int64)
        marks = np.asarray(record["mark"][s], dtype=np.int64)
        equity_path = np.asarray(record["equity"][s])
        positions = np.asarray(record["position"][s])
        shares_held = np.asarray(record["shares"][s])
        costs = np.asarray(record["cost"][s])
        fills = np.asarray(record["fill"][s], dtype=bool)
        last_bar = int(marks[-1])
        # close what is still open at the last mark (the floor's close, or the segment end)
        liquidation = 0.0
        if shares_held[-1] != 0:
            notional = abs(shares_held[-1]) * float(market.close[last_bar])
            liquidation = float(cost_model.order_cost(shares_held[-1] < 0, notional))
            equity_path[-1] -= liquidation
            costs[-1] += liquidation
        if terminated_at[s] is not None and marks.shape[0] < steps[s]:
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
        start = int(start_bars[s])
        rows = np.concatenate([[start], marks])
        backtest = Backtest(
            symbol=market.symbols[s],
            strategy="agent",
            freq=market.freq,
            start_bar=start,
            decision_bars=decision,
            fill_bars=decision + fill_offset,
            bars=marks,
            equity=np.concatenate([[config.initial_cash], equity_path]),
            positions=positions,
            shares_held=shares_held,
            step_costs=costs,
            fills=fills,
            fill_prices=_fill_prices(market, decision, config.execution),
            price=np.asarray(market.close)[rows].astype(np.float64),
            timestamps=_timestamps(market, rows),
            liquidation_cost=liquidation,
            terminated_step=terminated_at[s],
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


def _aligned(backtests: list[Backtest]) -> tuple[np.ndarray, np.ndarray, np.ndarray, Any]:
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


def combine(backtests: list[Backtest], freq: str) -> PerformanceMetrics:
    """Metrics of an equal-capital portfolio holding every segment's backtest."""
    if len(backtests) == 1:
        assert backtests[0].metrics is not None
        return backtests[0].metrics
    equity, positions, costs, _ = _aligned(backtests)
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
) -> EvalResult:
    """Backtests the deterministic policy on every test segment with both baselines.

    ``policy`` is an Agent (``agent.act(obs, deterministic=True)``) or a function from an
    observation batch [S, obs_dim] to actions for ``env.step``.
    """
    agent_runs = run_agent(policy, market, env_config)
    backtests: list[Backtest] = []
    for s, agent_run in enumerate(agent_runs):
        backtests.append(agent_run)
        for strategy in ("buy_and_hold", "flat"):
            baseline = baseline_backtest(market, s, env_config, strategy, agent_run.start_bar)
            check_test_rows(market, baseline, s)
            backtests.append(baseline)
    combined = {
        strategy: combine([b for b in backtests if b.strategy == strategy], market.freq)
        for strategy in STRATEGIES
    }
    return EvalResult(
        freq=market.freq,
        initial_cash=float(env_config.initial_cash),
        backtests=backtests,
        combined=combined,
        env_config=evaluation_config(env_config).to_dict(),
        info=dict(info or {}),
    )


def find_checkpoint(run_dir_or_checkpoint: str | os.PathLike) -> tuple[Path, Path]:
    """(checkpoint file, run folder): a run folder's best, else final, else last checkpoint.

    "best" means best validation Sharpe. A run trained without validation days keeps its
    best *training* return there, a noisy pick, so its final checkpoint is used instead.
    """
    path = Path(run_dir_or_checkpoint)
    if path.is_file():
        run_dir = path.parent.parent if path.parent.name == "checkpoints" else path.parent
        return path, run_dir
    if not path.is_dir():
        raise EvaluationError(f"no such run folder or checkpoint: {path}")
    order = CHECKPOINT_ORDER
    try:
        validated = json.loads((path / "config.json").read_text())["data"]["val_days"] > 0
    except (OSError, ValueError, KeyError, TypeError):
        validated = True  # no readable config: keep the documented order
    if not validated:
        order = tuple(name for name in CHECKPOINT_ORDER if name != "best.pt") + ("best.pt",)
    for name in order:
        candidate = path / "checkpoints" / name
        if candidate.is_file():
            return candidate, path
    raise EvaluationError(
        f"run folder {path} has no checkpoint (looked for checkpoints/"
        f"{', checkpoints/'.join(CHECKPOINT_ORDER)}); train first or pass a checkpoint file"
    )


def _agent_obs_dim(agent: Any) -> int | None:
    for owner in (agent, getattr(agent, "network", None), getattr(agent, "model", None)):
        value = getattr(owner, "obs_dim", None) if owner is not None else None
        if isinstance(value, (int, np.integer)):
            return int(value)
    return None


def evaluate_run(
    run_dir_or_checkpoint: str | os.PathLike,
    symbols: list[str] | tuple[str, ...] | None = None,
    test_days: int | None = None,
    data: str | os.PathLike | None = None,
    *,
    out_dir: str | os.PathLike | None = None,
    write_report: bool = True,
) -> EvalResult:
    """Loads a trained agent, rebuilds its test split and backtests it; writes the report.

    ``symbols`` (default: the training symbols) must be symbols the agent trained on.
    ``test_days`` defaults to the training config's and may not exceed it on the training
    data: more days would reach back into bars the agent trained or was tuned on. ``data``
    (a CSV/Parquet path) replaces the training data source, keeping the training feature
    normaliser; its last ``test_days`` days must then be bars the agent never saw. The
    report lands in ``out_dir`` (default: the run folder).
    """
    checkpoint, run_dir = find_checkpoint(run_dir_or_checkpoint)
    from fastrl.ppo.checkpoint import load_agent

    try:
        agent = load_agent(checkpoint, device="cpu")
    except ValueError as exc:  # CheckpointError names the file and what is wrong with it
        raise EvaluationError(str(exc)) from exc
    except (OSError, RuntimeError, KeyError) as exc:
        raise EvaluationError(f"cannot load checkpoint {checkpoint}: {exc}") from exc
    config = agent.config
    data_config = config.data
    trained_days = int(data_config.test_days)
    days = trained_days if test_days is None else int(test_days)
    if days < 1:
        raise EvaluationError(f"--test-days must be >= 1, got {days}")
    if data is not None and not Path(data).exists():
        raise EvaluationError(f"data path {data} does not exist")
    if data is None and days > trained_days:
        raise EvaluationError(
            f"--test-days {days} exceeds the {trained_days} test days held out in training: "
            f"the extra days were used for training or validation; use at most {trained_days} "
            "(or --data with newer bars)"
        )
    market = _test_block(agent, symbols, days, data)
    expected = _agent_obs_dim(agent)
    obs_dim = config.env.window * market.num_features + 3
    if expected is not None and expected != obs_dim:
        raise EvaluationError(
            f"checkpoint {checkpoint} expects observations of {expected} values but the "
            f"rebuilt test data gives {obs_dim} ({market.num_features} features x window "
            f"{config.env.window} + 3); was it trained on other features?"
        )
    context = int(market.meta.get("context_rows", 0))
    info = {
        "checkpoint": str(checkpoint),
        "run_dir": str(run_dir),
        "symbols": list(market.symbols),
        "test_days": days,
        "data": str(data) if data is not None else data_config.source,
        "held_out_check": market.meta.get(
            "held_out_check", "test days lie inside the training run's held-out test split"
        ),
        "test_bars": {
            market.symbols[s]: [
                _stamp(market, int(market.offsets[s]) + context),
                _stamp(market, int(market.offsets[s + 1]) - 1),
            ]
            for s in range(market.num_segments)
        },
    }
    result = evaluate_agent(agent, market, config.env, info=info)
    if write_report:
        from fastrl.report import write_report as write

        target = Path(out_dir) if out_dir is not None else run_dir
        write(result, target, training_metrics=run_dir / "metrics.jsonl")
    return result


def _test_block(
    agent: Any,
    symbols: list[str] | tuple[str, ...] | None,
    days: int,
    data: str | os.PathLike | None,
) -> MarketBlock:
    """The test split the agent's config describes, with its training feature normaliser."""
    config = agent.config
    data_config = config.data
    if data is None and data_config.source == "synthetic":
        if symbols:
            raise EvaluationError("a run on the synthetic market evaluates all its symbols")
        if days != data_config.test_days:
            # another split would refit the feature normaliser on other training rows
            raise EvaluationError(
                f"a synthetic-market run is evaluated on its own {data_config.test_days} "
                f"test days, not {days}"
            )
        from fastrl.ppo.trainer import load_market

        # the same seed regenerates the same bars, split and normaliser as in training
        try:
            return load_market(config).test
        except ValueError as exc:
            raise EvaluationError(str(exc)) from exc
    trained_symbols = tuple(data_config.symbols)
    chosen = tuple(symbols) if symbols else trained_symbols
    unknown = [s for s in chosen if s not in trained_symbols]
    if unknown:
        raise EvaluationError(
            f"the checkpoint was trained on symbols {list(trained_symbols)}, not {unknown}"
        )
    from fastrl.data import build_market

    normaliser = agent.feature_normaliser
    state = normaliser.state_dict() if hasattr(normaliser, "state_dict") else normaliser
    try:
        splits = build_market(
            list(chosen),
            freq=data_config.freq,
            source=str(data) if data is not None else data_config.source,
            test_days=days,
            val_days=0 if data is not None else data_config.val_days,
            window=config.env.window,
            normaliser_state=state,
        )
    except (ValueError, OSError) as exc:  # data errors name the file, row and column
        raise EvaluationError(str(exc)) from exc
    if data is not None:
        _check_held_out(agent, splits.test, state)
    return splits.test


def _check_held_out(agent: Any, market: MarketBlock, normaliser_state: Any) -> None:
    """Raises when replacement data's test rows start before the training test split did.

    The training split is rebuilt from the training source; rows before its first test
    day were trained or validated on. Without the training source nothing can be checked
    and ``market.meta["held_out_check"]`` says so.
    """
    from fastrl.data import build_market

    config = agent.config
    data_config = config.data
    try:
        training = build_market(
            list(market.symbols),
            freq=data_config.freq,
            source=data_config.source,
            test_days=data_config.test_days,
            val_days=data_config.val_days,
            window=config.env.window,
            normaliser_state=normaliser_state,
        )
    except (ValueError, OSError) as exc:
        market.meta["held_out_check"] = f"not verified: training data unavailable ({exc})"
        return
    held_out = training.summary["date_ranges"]["test"]
    context = int(market.meta.get("context_rows", 0))
    for s, symbol in enumerate(market.symbols):
        first = np.datetime64(_stamp(market, int(market.offsets[s]) + context))
        since = np.datetime64(held_out[symbol][0])
        if first < since:
            raise EvaluationError(
                f"the test days of {symbol} in the given data start on {str(first)[:10]}, but "
                f"the agent trained or was validated on bars up to the day before "
                f"{str(since)[:10]}; use fewer --test-days or newer data"
            )
    market.meta["held_out_check"] = "test days start on or after the training test split"


def _stamp(market: MarketBlock, row: int) -> str | None:
    if market.timestamps is None:
        return None
    return str(np.asarray(market.timestamps)[int(row)])
