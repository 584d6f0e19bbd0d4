"""Single-symbol backtests: the deterministic policy on held-out bars, beside buy-and-hold
and flat, every one of them stepped through the C++ simulator.

This is the one policy-evaluation path: validation during training and the test-days
backtest both call :func:`evaluate_agent`, so the validation score that picks the best
checkpoint is the combined figure the report prints. The result types live in
:mod:`fastrl.markets.single.result`.

One env per segment (symbol) starts at the segment's first bar with a full observation
window and runs to the segment's end: no random starts, the training config's costs and
execution. Every recorded fill and mark is asserted to lie on an evaluated row (the first
``market.meta["context_rows"]`` rows of each segment only feed the observation window). A
position still open after the last bar is closed at the last close at the simulator's
liquidation cost (``info["episode"]["liquidation"]``), for the agent and for buy-and-hold
alike, so both sides count every cost.

Buy-and-hold and flat are constant exposures (1 and 0) stepped through the same simulator
with the agent's costs, fills and share rounding (:func:`baseline_config`); buy-and-hold
enters at the agent's first possible fill with the whole equity and sells at the last close.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fastrl.data.block import MarketBlock
from fastrl.env_config import EnvConfig
from fastrl.markets.results import EvaluationError, acting_env_config, as_policy_fn
from fastrl.markets.single.env import TradingVecEnv
from fastrl.markets.single.result import Backtest, EvalResult, combine
from fastrl.strategies import STRATEGIES


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
    exposure = np.clip(actions.astype(np.float64), *config.action_bounds())
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
    policy_fn = as_policy_fn(policy)
    # the env the policy acts in (an ensemble of discrete members: the continuous twin)
    config = evaluation_config(acting_env_config(policy, env_config))
    num_segments = market.num_segments
    if copies < 1:
        raise EvaluationError(f"copies must be at least 1, got {copies}")
    num_envs = copies * num_segments  # round robin: env i trades segment i % S
    if holdings is not None and (len(holdings) != num_segments or copies != 1):
        raise EvaluationError(f"{len(holdings)} holdings for {num_segments} segments"
                              + (f" and {copies} copies" if copies != 1 else ""))
    env = TradingVecEnv(market, num_envs, config, num_threads=1, seed=0)
    try:
        env.reset(seed=0)
        if holdings is not None:
            _apply_holdings(env, market, holdings)
        backtests = _step_backtests(
            env, market, lambda obs: valid_actions(policy_fn(obs), config, num_envs),
            ["agent"] * num_envs, liquidate=liquidate)
    finally:
        env.close()
    for i, backtest in enumerate(backtests):
        check_test_rows(market, backtest, i % num_segments)
    return backtests


def _step_backtests(env: TradingVecEnv, market: MarketBlock, act: Callable[[np.ndarray], Any],
                    strategies: Sequence[str], *, liquidate: bool) -> list[Backtest]:
    """Steps ``env`` (every env at its first decision bar) until each env's episode has
    ended, and records env i as one Backtest of ``strategies[i]`` on the segment it trades.

    ``act`` maps the observations to the actions of one step. A position still open after
    the last mark is closed there at the simulator's liquidation cost (``liquidate``); an
    env that hit the equity floor stays flat from there to its segment's end, so every
    strategy spans the same bars.
    """
    config = env.config
    num_envs = env.num_envs
    segments = env.segment.copy()
    start_bars = env.bar_index.copy()
    start_equity = env.equity.copy()
    steps = (market.offsets[1:][segments] - 1 - start_bars).astype(np.int64)
    # one row of every env per step; env i's records are its first counts[i] rows (an env
    # stays inactive once its episode ended)
    columns: dict[str, list[np.ndarray]] = {
        key: [] for key in ("decision", "equity", "position", "shares", "cost", "fill",
                            "liquidation")}
    counts = np.zeros(num_envs, dtype=np.int64)
    prev_costs = env.episode_costs.copy()
    prev_trades = env.episode_trades.copy()
    terminated_at = np.full(num_envs, -1, dtype=np.int64)
    active = np.ones(num_envs, dtype=bool)
    obs = env.buffers["obs"]
    while active.any():
        actions = act(obs)
        decision = env.bar_index.copy()
        obs, _rewards, terminated, truncated, info = env.step(actions)
        episode = info["episode"]
        done = np.logical_or(terminated, truncated)
        # a finished env has auto-reset: its state is the next episode's, so its episode's
        # final values come from info["episode"]
        cum_costs = np.where(done, episode["costs"], env.episode_costs)
        cum_trades = np.where(done, episode["trades"], env.episode_trades)
        columns["decision"].append(decision)
        columns["equity"].append(np.where(done, episode["equity"], env.equity))
        columns["position"].append(np.where(done, episode["position"], env.positions))
        columns["shares"].append(np.where(done, episode["shares"], env.shares))
        columns["cost"].append(cum_costs - prev_costs)
        columns["fill"].append(cum_trades > prev_trades)
        columns["liquidation"].append(np.where(done, episode["liquidation"], 0.0))
        ruined = active & np.asarray(terminated, dtype=bool)
        terminated_at[ruined] = counts[ruined]
        counts += active
        going = active & ~done
        prev_costs = np.where(going, cum_costs, prev_costs)
        prev_trades = np.where(going, cum_trades, prev_trades)
        active &= ~done
    record = {key: np.stack(value) for key, value in columns.items()}  # [T, num_envs]

    backtests = []
    fill_offset = 1 if config.execution == "next_open" else 0
    for i in range(num_envs):
        s, n = int(segments[i]), int(counts[i])
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
        liquidation = float(record["liquidation"][n - 1, i]) if liquidate else 0.0
        if liquidation:
            equity_path[-1] -= liquidation
            costs[-1] += liquidation
        if ruined is not None and marks.shape[0] < steps[i]:
            # ruined: flat from here to the segment end, so every strategy spans the same bars
            pad = int(steps[i] - marks.shape[0])
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
        backtests.append(Backtest(
            symbol=market.symbols[s],
            strategy=strategies[i],
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
        ).finish())
    return backtests


def _fill_prices(market: MarketBlock, decision_bars: np.ndarray, execution: str) -> np.ndarray:
    if execution == "next_open":
        return np.asarray(market.open)[decision_bars + 1].astype(np.float64)
    return np.asarray(market.close)[decision_bars].astype(np.float64)


BASELINE_EXPOSURE = {"buy_and_hold": 1.0, "flat": 0.0}


def baseline_config(env_config: EnvConfig, *, square_off: bool = False) -> EnvConfig:
    """The env the baselines step: the evaluation's fills, charges and share rounding, a
    continuous exposure in [0, 1], one-row observations (a baseline reads none), no equity
    floor and no intraday square-off (the passive benchmark holds across sessions) unless
    ``square_off`` keeps the cost model's own."""
    config = evaluation_config(env_config)
    charges = config.cost_model()
    if not square_off:
        charges = dataclasses.replace(charges, square_off=False)
    # the folded cost model already holds the execution costs: none are added twice
    return dataclasses.replace(
        config, window=1, action="continuous", action_mode="absolute", min_pos=0.0, max_pos=1.0,
        equity_floor=0.0,
        cost=charges, half_spread_bps=0.0, slippage_bps=0.0, short_borrow_rate=0.0)


def rule_config(env_config: EnvConfig) -> EnvConfig:
    """The env a rule steps: :func:`baseline_config` with the env's own intraday square-off
    (a rule is a policy under the agent's market rules, not a passive benchmark)."""
    return baseline_config(env_config, square_off=True)


def continuous_twin(env_config: EnvConfig) -> EnvConfig:
    """A discrete env config as the continuous env that takes its level values (index i ->
    ``position_levels[i]``) instead of indices; a continuous one unchanged.

    The simulator maps an index to its level value and then steps exactly as a continuous
    action of that value, so the twin trades a level as the discrete env trades its index.
    Anchored levels are underweights, validated inside the anchored action range the twin
    keeps; absolute levels are exposures, so the twin's range is widened to hold every level
    (min_pos/max_pos bound only continuous actions)."""
    if env_config.action != "discrete":
        return env_config
    if env_config.anchored:
        return dataclasses.replace(env_config, action="continuous")
    levels = [float(x) for x in env_config.position_levels]
    return dataclasses.replace(env_config, action="continuous",
                               min_pos=min(float(env_config.min_pos), *levels),
                               max_pos=max(float(env_config.max_pos), *levels))


def _check_plans(market: MarketBlock, plans: Sequence[tuple[int, str, int]]) -> None:
    for segment, _strategy, start in plans:
        seg = market.segment(segment)
        if not seg.start <= start < seg.stop - 1:
            raise EvaluationError(
                f"segment {market.symbols[segment]!r} rows [{seg.start}, {seg.stop}) leave no "
                f"step after start bar {start}")


def plan_backtests(market: MarketBlock, config: EnvConfig,
                   plans: Sequence[tuple[int, str, int]], targets: np.ndarray
                   ) -> list[Backtest]:
    """Target-exposure schedules stepped together through the simulator, one env per
    ``(segment, strategy, start bar)`` of ``plans``.

    ``targets`` [len(plans), market.num_bars] is each plan's target exposure decided at the
    close of every row (only its segment's rows from its start bar are read; a broadcast
    view is not copied); ``config``
    is the env they step (continuous actions, e.g. :func:`baseline_config` or
    :func:`rule_config`). A position still open after the last bar is sold at the last
    close at the simulator's liquidation cost.
    """
    _check_plans(market, plans)
    targets = np.asarray(targets, dtype=np.float64)
    if targets.shape != (len(plans), market.num_bars):
        raise EvaluationError(f"targets have shape {targets.shape}, expected "
                              f"({len(plans)}, {market.num_bars})")
    if not np.all(np.isfinite(targets)):
        raise EvaluationError("the target exposures must be finite")
    env = TradingVecEnv(market, len(plans), config, num_threads=1, seed=0)
    try:
        env.reset(seed=0)
        state = env.get_state()
        state["segment"][:] = [segment for segment, _, _ in plans]
        state["bar_index"][:] = [start for _, _, start in plans]
        env.set_state(state)
        envs = np.arange(len(plans))
        # a finished env has auto-reset to a row of its own segment: still a valid index
        return _step_backtests(env, market, lambda _obs: targets[envs, env.bar_index],
                               [strategy for _, strategy, _ in plans], liquidate=True)
    finally:
        env.close()


def baseline_backtests(market: MarketBlock, env_config: EnvConfig,
                       plans: Sequence[tuple[int, str, int]]) -> list[Backtest]:
    """Buy-and-hold or flat per ``(segment, strategy, start bar)`` of ``plans``, stepped
    together through the simulator (one env each, see :func:`baseline_config`).

    Buy-and-hold targets an exposure of 1.0 at its first decision bar: it buys with the
    whole equity at the first fill (whole shares under ``integer_shares``, the cost paid
    from cash), holds, and sells at the last close at the simulator's liquidation cost.
    Flat holds cash.
    """
    for _segment, strategy, _start in plans:
        if strategy not in BASELINE_EXPOSURE:
            raise ValueError(f"strategy must be 'buy_and_hold' or 'flat', got {strategy!r}")
    _check_plans(market, plans)
    exposure = np.array([BASELINE_EXPOSURE[strategy] for _, strategy, _ in plans])
    targets = np.broadcast_to(exposure[:, None], (len(plans), market.num_bars))
    return plan_backtests(market, baseline_config(env_config), plans, targets)


def baseline_backtest(
    market: MarketBlock,
    segment: int,
    env_config: EnvConfig,
    strategy: str,
    start_bar: int | None = None,
) -> Backtest:
    """Buy-and-hold or flat on one segment from ``start_bar`` (default: the segment's first
    decision bar under ``env_config.window``); see :func:`baseline_backtests`."""
    start = (market.segment(segment).start + env_config.window - 1 if start_bar is None
             else int(start_bar))
    (backtest,) = baseline_backtests(market, env_config, [(segment, strategy, start)])
    return backtest


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
        plans = [(s, strategy, run.start_bar) for s, run in enumerate(agent_runs[:num_segments])
                 for strategy in ("buy_and_hold", "flat")]
        for baseline, (s, _, _) in zip(baseline_backtests(market, env_config, plans), plans,
                                       strict=True):
            check_test_rows(market, baseline, s)
            shared[s].append(baseline)
    # the env the policy traded in (an ensemble of discrete members: the continuous twin)
    settings = evaluation_config(acting_env_config(policy, env_config)).to_dict()
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


__all__ = ["BASELINE_EXPOSURE", "Holding", "baseline_backtest",
           "baseline_backtests", "baseline_config", "check_test_rows", "continuous_twin",
           "evaluate_agent",
           "evaluate_agents", "evaluation_config", "plan_backtests", "rule_config", "run_agent",
           "valid_actions"]
