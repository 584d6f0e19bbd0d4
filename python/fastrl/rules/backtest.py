"""A rule's schedule and its backtest through the same C++ simulator as the agent.

Single-symbol rules: the exposure decided at every row of each segment (from that
segment's bars up to the row) is a plan for
:func:`fastrl.markets.single.backtest.plan_backtests`, stepped in the env of
:func:`~fastrl.markets.single.backtest.rule_config`: the agent's costs, fills (next open by
default), whole shares and intraday square-off, exposures in [0, 1] (long/flat, never
above the whole equity). Portfolio rules: weights decided at each rebalance step's row
(the monthly steps of :func:`fastrl.markets.portfolio.backtest.rebalance_steps`, whose
fill is a month's first session: decided at the month's last close under next-open
fills, at the first session's close under close fills; or the first step only) from
the marks up to that row, stepped by
:func:`fastrl.markets.portfolio.backtest.plan_backtests` with the equal-weight baselines'
fills, costs, ``integer_shares`` and ``trade_band``. Either way the backtests are the
objects the agent's backtest returns, under the rule's name.

Rows before a backtest's first decision are history the rule may read (a block built
with more context rows gives it a warm start); it never reads a row after its decision.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from threadpoolctl import threadpool_limits

from fastrl.data.block import MarketBlock
from fastrl.data.months import month_ends
from fastrl.data.panel import PanelBlock
from fastrl.env_config import EnvConfig, PortfolioConfig
from fastrl.markets.portfolio.backtest import (
    PortfolioBacktest,
    decision_steps,
    evaluation_config,
    plan_backtests,
    rebalance_steps,
)
from fastrl.markets.single.backtest import plan_backtests as plan_single_backtests
from fastrl.markets.single.backtest import rule_config
from fastrl.markets.single.result import Backtest
from fastrl.rules.registry import Rule


def exposure_schedule(rule: Rule, market: MarketBlock) -> np.ndarray:
    """The single rule's exposure decided at the close of every row [T], each segment
    from its own bars only."""
    rule.require("single", "a single-symbol market block")
    exposure = np.zeros(market.num_bars)
    for s in range(market.num_segments):
        seg = market.segment(s)
        stamps = None if market.timestamps is None else np.asarray(market.timestamps)[seg]
        close = np.asarray(market.close, dtype=np.float64)[seg]
        exposure[seg] = rule.spec.decide(rule.params, close, month_ends(stamps, len(close)),
                                         market.freq)
    return exposure


def backtest_single(rules: Sequence[Rule], market: MarketBlock, env_config: EnvConfig,
                    start_bars: Sequence[int] | None = None) -> list[Backtest]:
    """Every rule on every segment (a rule's segments stepped together in one batched env):
    one Backtest per (rule, segment), the rules in order, each over its segment from
    ``start_bars[s]`` (default: the segment's first decision bar under
    ``env_config.window``, as the baselines) to its end."""
    starts = ([market.segment(s).start + env_config.window - 1
               for s in range(market.num_segments)] if start_bars is None
              else [int(b) for b in start_bars])
    if len(starts) != market.num_segments:
        raise ValueError(f"{len(starts)} start bars for {market.num_segments} segments")
    config = rule_config(env_config)
    backtests: list[Backtest] = []
    for rule in rules:
        exposure = exposure_schedule(rule, market)
        plans = [(s, rule.name, start) for s, start in enumerate(starts)]
        # every segment's env reads its own rows of the one schedule (a view, no copies)
        targets = np.broadcast_to(exposure, (len(plans), market.num_bars))
        backtests += plan_single_backtests(market, config, plans, targets)
    return backtests


def weight_schedule(rule: Rule, panel: PanelBlock, config: PortfolioConfig,
                    start_row: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The portfolio rule's (target weights [n, A], orders [n]) over the backtest's n
    steps; step k decides at row ``start_row + k`` (default ``start_row``: ``window - 1``)
    from the marks up to that row."""
    rule.require("portfolio", "a portfolio panel")
    config = evaluation_config(config)
    start, n = decision_steps(panel, config, start_row)
    orders = np.zeros(n, dtype=bool)
    if rule.spec.schedule == "once":
        orders[:1] = True
    else:
        orders[rebalance_steps(panel, config, start_row)] = True
    targets = np.zeros((n, panel.num_assets))
    marks = panel.mark
    # one BLAS thread: a covariance fit or solve summed in another order would round
    # otherwise, and a rule's decisions must not depend on the machine's thread count
    with threadpool_limits(limits=1):
        for k in np.flatnonzero(orders):
            row = start + int(k)
            targets[k] = rule.spec.decide(rule.params, marks[:row + 1], panel.tradable[row])
    return targets, orders


def backtest_portfolio(rules: Sequence[Rule], panel: PanelBlock, config: PortfolioConfig,
                       start_row: int | None = None) -> list[PortfolioBacktest]:
    """Every rule over the panel, stepped together from ``start_row`` (default: the first
    full observation window; the rows before it are history): one PortfolioBacktest per
    rule."""
    if not rules:
        return []
    schedules = [weight_schedule(rule, panel, config, start_row) for rule in rules]
    targets = np.stack([t for t, _ in schedules], axis=1)  # [n, N, A]
    orders = np.stack([o for _, o in schedules], axis=1)  # [n, N]
    return plan_backtests(panel, config, [rule.name for rule in rules], targets, orders,
                          start_row)


def backtest_rule(rule: Rule, block: MarketBlock | PanelBlock,
                  config: EnvConfig | PortfolioConfig) -> list[Backtest] | PortfolioBacktest:
    """One rule on a block: a single rule's Backtest per segment of a MarketBlock, or a
    portfolio rule's PortfolioBacktest on a PanelBlock; a clear ConfigError when the rule's
    kind does not fit the block."""
    if isinstance(block, PanelBlock):
        rule.require("portfolio", "a portfolio panel")
        if not isinstance(config, PortfolioConfig):
            raise TypeError(f"a portfolio panel needs a PortfolioConfig, got "
                            f"{type(config).__name__}")
        (backtest,) = backtest_portfolio([rule], block, config)
        return backtest
    rule.require("single", "a single-symbol market block")
    if not isinstance(config, EnvConfig):
        raise TypeError(f"a single-symbol market block needs an EnvConfig, got "
                        f"{type(config).__name__}")
    return backtest_single([rule], block, config)


__all__ = ["backtest_portfolio", "backtest_rule", "backtest_single", "exposure_schedule",
           "weight_schedule"]
