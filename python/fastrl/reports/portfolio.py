"""The portfolio backtest report: report.md/html/json, test_returns.csv and PNG plots.

Built on the shared helpers of :mod:`fastrl.reports` (fixed-size Agg figures, the training
curves, the number formats and strict JSON, the run folder), fed by
:class:`fastrl.markets.portfolio.backtest.PortfolioResult`. Plots: ``equity.png`` (the agent
against equal weight monthly and held, and each symbol's buy-and-hold, thin), ``weights.png``
(the agent's weights over time, symbols and cash stacked to 1) and ``training.png`` when the
run logged metrics.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fastrl.costs import describe_execution
from fastrl.ladder import LADDER_HEADER, columns_note
from fastrl.metrics import METRIC_LABELS, format_metric
from fastrl.reports import writer
from fastrl.reports.files import ReportFiles, write_result_files
from fastrl.reports.format import (
    REPORT_METRICS,
    ensemble_line,
    format_active,
    format_interval,
    format_policy_setup,
    format_probability,
    format_se,
)
from fastrl.reports.plots import COLORS, DPI, figure_size_px, pyplot, save_png, time_axis
from fastrl.reports.writer import Document, Section, Table
from fastrl.strategies import AGENT, EW_HOLD, EW_MONTHLY, strategy_label

if TYPE_CHECKING:
    from fastrl.markets.portfolio.backtest import PortfolioResult

WEIGHTS_PANELS = 1.5  # the weights plot is one and a half panels tall
STRATEGY_COLORS = {AGENT: COLORS["agent"], EW_MONTHLY: COLORS["buy_and_hold"],
                   EW_HOLD: "#2ca02c"}


def plot_equity(result: PortfolioResult, path: Path) -> Path:
    """Equity relative to the start: the agent and the equal-weight baselines bold, each
    symbol's buy-and-hold thin."""
    plt = pyplot()
    width, height = figure_size_px(1)
    fig, ax = plt.subplots(figsize=(width / DPI, height / DPI), dpi=DPI)
    palette = plt.get_cmap("tab10")
    for j, b in enumerate(result.backtests):
        single = b.strategy.startswith("bh:")
        # single names take tab10 from red on, clear of the agent's and baselines' colours
        color = palette(3 + (j - 3) % 7) if single else STRATEGY_COLORS.get(b.strategy)
        ax.plot(time_axis(b), b.equity / b.equity[0], label=strategy_label(b.strategy), color=color,
                linewidth=0.8 if single else 1.8, alpha=0.55 if single else 1.0)
    ax.axhline(1.0, color="#999999", linewidth=0.6)
    ax.set_title(f"Equity on the test days (start = 1): {', '.join(result.symbols)}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="best")
    fig.autofmt_xdate()
    fig.tight_layout()
    save_png(fig, path)
    return path


def plot_weights(result: PortfolioResult, path: Path) -> Path:
    """The agent's weights after each step (marked at the close), stacked: symbols, cash."""
    plt = pyplot()
    agent = result.get(AGENT)
    width, height = figure_size_px(1)
    fig, ax = plt.subplots(figsize=(width / DPI, height * WEIGHTS_PANELS / DPI), dpi=DPI)
    x = time_axis(agent)[1:]
    layers = np.clip(agent.weights, 0.0, None).T  # [A + 1, n]; tiny negatives are rounding
    labels = [*result.symbols, "cash"]
    colors = [plt.get_cmap("tab10")(i % 10) for i in range(len(result.symbols))] + ["#d9d9d9"]
    if agent.num_steps:
        ax.stackplot(x, layers, labels=labels, colors=colors, step="post")
    ax.set_ylim(0.0, max(1.0, float(layers.sum(axis=0).max(initial=1.0))))
    ax.set_ylabel("weight (fraction of equity)")
    ax.set_title("Agent weights on the test days")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    fig.tight_layout()
    save_png(fig, path)
    return path


def uncertainty_rows(result: PortfolioResult) -> list[list[str]]:
    """Rows [label, one cell per strategy]: Sharpe SE, interval, PSR, the mean return over
    each equal-weight benchmark with its one-sided p."""
    u = result.uncertainty()
    level = u.sharpe[AGENT].level

    def row(label: str, cell: Any) -> list[str]:
        return [label, *(cell(u.sharpe[s]) for s in result.strategies)]

    def beats(name: str) -> list[str]:
        return [f"Mean return over {strategy_label(name)}", format_active(u.vs[name]),
                *("-" for _ in result.strategies[1:])]

    return [
        row("Sharpe std. error", format_se),
        row(f"Sharpe {100 * level:g}% interval", lambda x: format_interval(x.ci_low, x.ci_high)),
        row("P(Sharpe > 0) (PSR)", lambda x: format_probability(x.psr)),
        beats(EW_HOLD),
        beats(EW_MONTHLY),
    ]


def table_rows(result: PortfolioResult) -> list[list[str]]:
    """Every report metric per strategy, the error bars after the Sharpe."""
    rows = []
    for key in REPORT_METRICS:
        if key in ("win_rate_trades", "profit_factor", "num_round_trips", "avg_holding_days"):
            continue  # round trips are single-symbol notions
        label, kind = METRIC_LABELS[key]
        label = "Orders (legs)" if key == "num_trades" else label
        rows.append([label, *(format_metric(result.metrics(s).to_dict()[key], kind)
                              for s in result.strategies)])
        if key == "sharpe":
            rows += uncertainty_rows(result)
    return rows


def setup_lines(result: PortfolioResult) -> list[str]:
    config, info = result.env_config, result.info
    cost = config.get("cost")
    cost_name = cost.get("name", "custom") if isinstance(cost, dict) else cost
    lines = [
        f"Symbols: {', '.join(result.symbols)}; bar size {result.freq}; initial cash "
        f"{result.initial_cash:,.0f} for the whole portfolio",
        f"Execution: {config.get('execution')}; costs: {cost_name}, "
        f"{describe_execution(cost, config.get('half_spread_bps'), config.get('slippage_bps'))} "
        "(per order leg); caps: "
        f"max weight {config.get('max_weight')}, max gross {config.get('max_gross')}, "
        f"long only; whole shares: {config.get('integer_shares')}; trade band "
        f"{config.get('trade_band')}",
        format_policy_setup(config),
    ]
    if info.get("checkpoint"):
        lines.append(f"Checkpoint: {info['checkpoint']}")
    lines += ensemble_line(info)
    if info.get("test_rows"):
        first, last = info["test_rows"]
        lines.append(f"Test days: {info.get('test_days')} ({first} .. {last}), never trained "
                     "or tuned on")
    agent = result.get(AGENT)
    if agent.terminated_step is not None:
        lines.append(f"The agent's equity hit the floor at step {agent.terminated_step}; "
                     "cash from there")
    lines += [
        "The deterministic policy (softmax of the mean logits, within the caps) sets target "
        "weights every test day. Equal weight monthly rebalances on the first trading day of "
        "each month; equal weight held buys once; buy & hold SYMBOL puts everything in one "
        "name. All pay the same costs and fill the same way; whatever is held at the end is "
        "sold at the last close and pays its cost.",
        "Uncertainty: the Sharpe standard error is the larger of Lo (2002) / Mertens (2002) "
        "and the spread over a stationary bootstrap of the per-bar returns (the table names "
        "the one shown); the interval is that bootstrap's (fixed seed); PSR = P(true Sharpe "
        "> 0) from that SE. The mean return over a benchmark is agent minus benchmark, bar "
        "by bar, with a one-sided t-test (Newey-West SE, never below the i.i.d. one). The "
        "verdict is that test against equal weight held. Ratios are annualised with 252 "
        "days, risk-free 0.",
        "Per-bar data: test_returns.csv (every step of every strategy: costs, turnover, "
        "equity, return and the weights of every symbol and cash).",
    ]
    return lines


def report_document(result: PortfolioResult, images: dict[str, Path], title: str) -> Document:
    """The report's content for :mod:`fastrl.reports.writer`: the verdict, the setup, one
    table with a column per strategy, the plots."""
    header = ["metric", *(strategy_label(s) for s in result.strategies)]
    sections = [Section("Portfolio", table=Table(header, table_rows(result)))]
    if result.rungs:
        ladder = result.ladder()
        sections.append(Section("Ladder", table=Table(list(LADDER_HEADER), ladder.table_rows()),
                                closing=[f"{ladder.line}."]))
    return Document(title=title, verdict=result.verdict,
                    paragraphs=[f"Ladder: {result.ladder().line}."] if result.rungs else [],
                    bullets=setup_lines(result) + ([PORTFOLIO_LADDER_NOTE] if result.rungs
                                                   else []),
                    sections=sections, images=images)


PORTFOLIO_LADDER_NOTE = (
    "Ladder: each rung is a classical portfolio rule (fastrl.rules; its parameters from the "
    "run's rules section) traded through the same simulator on the agent's test days, with "
    "the baselines' fills, costs, whole shares and trade band: it decides from the marks up "
    "to each decision row (every earlier row of the data is its history) and starts at the "
    "agent's first decision. Equal weight held and monthly are the baseline columns. "
    + columns_note() + ".")


def markdown_report(result: PortfolioResult, images: dict[str, Path], title: str) -> str:
    return writer.markdown(report_document(result, images, title))


def html_report(result: PortfolioResult, images: dict[str, Path], title: str) -> str:
    return writer.html_page(report_document(result, images, title))


def write_portfolio_report(
    result: PortfolioResult,
    out_dir: str | os.PathLike,
    *,
    training_metrics: str | os.PathLike | None = None,
    title: str | None = None,
) -> ReportFiles:
    """Writes equity.png, weights.png (and training.png), report.md, report.html,
    report.json and test_returns.csv into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    images = {"equity": plot_equity(result, out / "equity.png"),
              "weights": plot_weights(result, out / "weights.png")}
    title = title or f"fastrl portfolio backtest: {', '.join(result.symbols)} ({result.freq})"

    def write_legs(path: Path) -> None:
        # no round trips in a portfolio; the file is kept so every run folder has the same files
        path.write_text("strategy,step,legs,cost\n" + "".join(
            f"{b.strategy},{i},{b.legs[i]},{b.step_costs[i]!r}\n"
            for b in result.backtests for i in np.flatnonzero(b.legs)), encoding="utf-8")

    return write_result_files(result, out, images,
                              lambda shown: report_document(result, shown, title),
                              training_metrics, write_legs)


__all__ = ["plot_equity", "plot_weights", "table_rows", "write_portfolio_report"]
