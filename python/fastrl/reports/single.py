"""The single-symbol backtest report: PNG plots, report.md and a self-contained report.html
(embedded PNGs), report.json, and the per-bar data behind them as CSV (test_returns.csv,
test_trades.csv).

Every Sharpe comes with its error bars and the agent with its chance of beating
buy-and-hold, all read from :meth:`fastrl.markets.single.result.EvalResult.uncertainty`
(computed once there), so report, JSON and the CLI tables (:func:`uncertainty_rows`) print
the same numbers.

Plots (:mod:`fastrl.reports.plots`): ``equity.png`` agent against buy-and-hold and flat,
``drawdown.png``, ``positions.png`` (position over the price, fills marked) and
``training.png`` (the training curves from ``metrics.jsonl``).
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
from fastrl.reports.plots import COLORS, panel_grid, save_png, time_axis
from fastrl.reports.writer import Document, Section, Table
from fastrl.strategies import COMBINED, STRATEGIES

if TYPE_CHECKING:
    from fastrl.ladder import Ladder
    from fastrl.markets.single.result import Backtest, EvalResult


def plot_equity(result: EvalResult, path: Path) -> Path:
    """Equity of each strategy relative to the start, one panel per symbol."""
    symbols = result.symbols
    fig, axes = panel_grid(len(symbols))
    for ax, symbol in zip(axes, symbols, strict=True):
        for strategy in ("buy_and_hold", "flat", "agent"):
            backtest = result.get(symbol, strategy)
            ax.plot(
                time_axis(backtest),
                backtest.equity / backtest.equity[0],
                label=_label(strategy, backtest),
                color=COLORS[strategy],
                linewidth=1.8 if strategy == "agent" else 1.2,
            )
        ax.set_title(f"{symbol}: equity (start = 1, after costs)")
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    save_png(fig, path)
    return path


def _label(strategy: str, backtest: Backtest) -> str:
    names = {"agent": "agent", "buy_and_hold": "buy & hold", "flat": "flat"}
    total = backtest.metrics.total_return if backtest.metrics else 0.0
    return f"{names[strategy]} ({100 * total:+.2f}%)"


def plot_drawdown(result: EvalResult, path: Path) -> Path:
    """Drawdown from the running peak, agent against buy-and-hold, one panel per symbol."""
    symbols = result.symbols
    fig, axes = panel_grid(len(symbols))
    for ax, symbol in zip(axes, symbols, strict=True):
        for strategy in ("buy_and_hold", "agent"):
            backtest = result.get(symbol, strategy)
            peaks = np.maximum.accumulate(backtest.equity)
            drawdown = 100.0 * (backtest.equity / peaks - 1.0)
            ax.fill_between(time_axis(backtest), drawdown, 0.0, color=COLORS[strategy], alpha=0.3)
            ax.plot(time_axis(backtest), drawdown, color=COLORS[strategy],
                    label=_label(strategy, backtest))
        ax.set_title(f"{symbol}: drawdown (%)")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    save_png(fig, path)
    return path


def plot_positions(result: EvalResult, path: Path) -> Path:
    """The agent's position (shaded, right axis) over the close, buys and sells marked."""
    symbols = result.symbols
    fig, axes = panel_grid(len(symbols))
    for ax, symbol in zip(axes, symbols, strict=True):
        backtest = result.get(symbol, "agent")
        x = time_axis(backtest)
        ax.plot(x, backtest.price, color="black", linewidth=1.2, label="close")
        held = np.concatenate([[0.0], backtest.positions])
        previous = np.concatenate([[0.0], backtest.positions[:-1]])
        steps = np.flatnonzero(backtest.fills)
        # fills show at their own bar and price (the next open, or the decision close)
        fill_x = x[steps + np.where(backtest.fill_bars[steps] == backtest.bars[steps], 1, 0)]
        is_buy = backtest.positions[steps] > previous[steps]
        ax.scatter(
            fill_x[is_buy],
            backtest.fill_prices[steps][is_buy],
            marker="^",
            color="green",
            s=40,
            label=f"buy ({int(is_buy.sum())})",
            zorder=3,
        )
        ax.scatter(
            fill_x[~is_buy],
            backtest.fill_prices[steps][~is_buy],
            marker="v",
            color="red",
            s=40,
            label=f"sell ({int((~is_buy).sum())})",
            zorder=3,
        )
        twin = ax.twinx()
        twin.step(x, held, where="pre", color=COLORS["agent"], alpha=0.6, linewidth=1.0)
        twin.fill_between(x, held, 0.0, step="pre", color=COLORS["agent"], alpha=0.15)
        low = min(-1.0, float(held.min()))
        high = max(1.0, float(held.max()))
        twin.set_ylim(low * 1.1, high * 1.1)
        twin.set_ylabel("position (x equity)")
        ax.set_title(f"{symbol}: agent position over the close")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    save_png(fig, path)
    return path


def uncertainty_rows(result: EvalResult, symbol: str) -> list[list[str]]:
    """Table rows [label, agent, buy & hold, flat] of the Sharpe's error bars and the agent's
    mean return over buy-and-hold with its one-sided p; flat (cash, Sharpe 0 by
    construction) gets none."""
    uncertainty = result.uncertainty(symbol)
    level = next(iter(uncertainty.sharpe.values())).level

    def row(label: str, cell: Any) -> list[str]:
        return [label, *(cell(uncertainty.sharpe[s]) if s in uncertainty.sharpe else "-"
                         for s in STRATEGIES)]

    return [
        row("Sharpe std. error", format_se),
        row(f"Sharpe {100 * level:g}% interval", lambda x: format_interval(x.ci_low, x.ci_high)),
        row("P(Sharpe > 0) (PSR)", lambda x: format_probability(x.psr)),
        ["Mean return over buy & hold", format_active(uncertainty.vs_buy_and_hold),
         *("-" for _ in STRATEGIES[1:])],
    ]


def _table_rows(result: EvalResult, symbol: str) -> list[list[str]]:
    rows = []
    for key in REPORT_METRICS:
        label, kind = METRIC_LABELS[key]
        values = [result.metrics(symbol, s).to_dict()[key] for s in STRATEGIES]
        rows.append([label, *(format_metric(v, kind) for v in values)])
        if key == "sharpe":
            rows += uncertainty_rows(result, symbol)
    return rows


def _sections(result: EvalResult) -> list[tuple[str, list[list[str]], str]]:
    """(heading, table rows, verdict) per symbol, then the combined portfolio."""
    sections = [(symbol, _table_rows(result, symbol), result.uncertainty(symbol).verdict)
                for symbol in result.symbols]
    if len(result.symbols) > 1:
        sections.append(("Combined (equal capital per symbol)", _table_rows(result, COMBINED),
                         result.uncertainty(COMBINED).verdict))
    return sections


def _uncertainty_lines(result: EvalResult) -> list[str]:
    # deferred: fastrl.stats imports arch, which takes seconds; importing a report must not pay it
    from fastrl.stats import DEFAULT_REPS

    headline = result.uncertainty(COMBINED)
    level = headline.sharpe["agent"].level
    return [
        "Uncertainty: the Sharpe's standard error is the larger of Lo (2002) / Mertens "
        "(2002), with the returns' skewness and kurtosis, and the spread of the Sharpe over "
        "a stationary bootstrap of the per-bar returns (the table names the one shown: "
        "Lo/Mertens understates it on strongly skewed records); the "
        f"{100 * level:g}% interval is that bootstrap's percentile interval "
        f"({DEFAULT_REPS} resamples, fixed seed); PSR is the probability that the true "
        "Sharpe is above 0 from that SE (Bailey & Lopez de Prado 2012). The verdict rests "
        "on the mean return over buy-and-hold (agent minus buy-and-hold, bar by bar) and "
        "its one-sided p: a t-test with a Newey-West standard error never below the i.i.d. "
        "one, and as many degrees of freedom as bars where the two differ, less one; it "
        f"needs p <= {1 - level:.2f}. Over a few weeks of bars these intervals are wide: "
        "read them before the point estimates.",
        "Per-bar data: test_returns.csv (every step of every strategy and symbol: close, "
        "position, cost, equity, return) and test_trades.csv (round trips); the return "
        "column's mean over its standard deviation (ddof=1) x sqrt(252 x bars per day) is "
        "the Sharpe in the tables. The combined rows sum the symbols' equity on their "
        "shared timestamps.",
    ]


def _action_range(config: dict[str, Any]) -> str:
    """The levels or the range the actions take: anchored, underweights (the exposure is
    1 - the underweight)."""
    if config.get("action_mode") == "anchored":
        low = 1.0 - float(config.get("max_pos", 1.0))
        high = min(float(config.get("max_underweight", 1.0)),
                   1.0 - float(config.get("min_pos", 0.0)))
        levels = tuple(config.get("position_levels", ()))
        if config.get("action") == "discrete":
            exposures = tuple(1.0 - u for u in levels)
            return f" underweights {levels} (exposures {exposures})"
        return f" underweight in [{low}, {high}] (exposure in [{1.0 - high}, {1.0 - low}])"
    if config.get("action") == "discrete":
        return f" {tuple(config.get('position_levels', ()))}"
    return f" in [{config.get('min_pos')}, {config.get('max_pos')}]"


def _setup_lines(result: EvalResult) -> list[str]:
    config = result.env_config
    cost = config.get("cost")
    cost_name = cost.get("name", "custom") if isinstance(cost, dict) else cost
    lines = [
        f"Bar size: {result.freq}; initial cash per symbol: {result.initial_cash:,.0f}",
        f"Execution: {config.get('execution')}; costs: {cost_name}, "
        f"{describe_execution(cost, config.get('half_spread_bps'), config.get('slippage_bps'))}; "
        f"actions: {config.get('action')}" + _action_range(config),
        format_policy_setup(config),
    ]
    info = result.info
    if info.get("checkpoint"):
        lines.append(f"Checkpoint: {info['checkpoint']}")
    if info.get("checkpoint_reason"):
        lines.append(f"Why this checkpoint: {info['checkpoint_reason']}")
    for symbol, (first, last) in (info.get("test_bars") or {}).items():
        lines.append(f"Test bars of {symbol}: {first} .. {last}")
    if info.get("test_days") is not None:
        lines.append(f"Test days per symbol: {info['test_days']} (never trained or tuned on)")
    if info.get("held_out_check"):
        lines.append(f"Held-out check: {info['held_out_check']}")
    lines += ensemble_line(info)
    for symbol in result.symbols:
        agent = result.get(symbol, "agent")
        if agent.terminated_step is not None:
            lines.append(
                f"{symbol}: equity hit the floor at step {agent.terminated_step}; flat from there"
            )
    lines.append(
        "The deterministic policy (argmax / mean action) trades every test bar of each symbol "
        "once, no random starts. Every fill pays the cost model; a position open at the end "
        "is closed at the last close and pays its cost, for the agent and buy-and-hold alike."
    )
    lines.append(
        "Ratios are annualised with 252 trading days (75 five-minute bars a day), risk-free "
        "rate 0. A ratio with no measurable risk is 0; profit factor without a losing "
        "trade is inf."
    )
    return lines


def report_document(result: EvalResult, images: dict[str, Path], title: str) -> Document:
    """The report's content for :mod:`fastrl.reports.writer`: the verdict, setup, per-symbol
    and combined tables, the plots."""
    header = ["metric", "agent", "buy & hold", "flat"]
    sections = []
    keys = [*result.symbols, COMBINED] if len(result.symbols) > 1 else result.symbols
    for key, (name, rows, verdict) in zip(keys, _sections(result), strict=True):
        sections.append(Section(name, table=Table(header, rows),
                                closing=[f"Verdict: {verdict}."]))
        if result.rungs:
            sections.append(ladder_section(result.ladder(key), f"Ladder: {name}"))
    return Document(
        title=title, verdict=result.verdict,
        paragraphs=[f"Ladder: {result.ladder().line}."] if result.rungs else [],
        bullets=_setup_lines(result) + _uncertainty_lines(result)
        + ([LADDER_NOTE] if result.rungs else []),
        sections=sections, images=images)


LADDER_NOTE = (
    "Ladder: each rung is a classical rule (fastrl.rules; its parameters from the run's "
    "rules section) traded through the same simulator on the agent's test days, with the "
    "same costs and market rules: it decides at each close from the bars up to it (the "
    "symbol's earlier bars are its history) and starts at the agent's first decision. "
    "Buy & hold's rung is the buy-and-hold column. " + columns_note() + ". Their "
    "bars: test_returns.csv.")


def ladder_section(ladder: Ladder, heading: str) -> Section:
    """A ladder as a report section: the rung table, then its one-line summary."""
    return Section(heading, table=Table(list(LADDER_HEADER), ladder.table_rows()),
                   closing=[f"{ladder.line}."], level=3)


def markdown_report(result: EvalResult, images: dict[str, Path], title: str) -> str:
    """report.md: the verdict, setup, per-symbol and combined tables, linked plots."""
    return writer.markdown(report_document(result, images, title))


def html_report(result: EvalResult, images: dict[str, Path], title: str) -> str:
    """report.html: the same content with the PNGs embedded (one file to mail around)."""
    return writer.html_page(report_document(result, images, title))


def write_report(
    result: EvalResult,
    out_dir: str | os.PathLike,
    *,
    training_metrics: str | os.PathLike | None = None,
    title: str | None = None,
) -> ReportFiles:
    """Writes the plots, report.md, report.html, report.json, test_returns.csv and
    test_trades.csv into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    images = {
        "equity": plot_equity(result, out / "equity.png"),
        "drawdown": plot_drawdown(result, out / "drawdown.png"),
        "positions": plot_positions(result, out / "positions.png"),
    }
    title = title or f"fastrl backtest: {', '.join(result.symbols)} ({result.freq})"
    return write_result_files(
        result, out, images, lambda shown: report_document(result, shown, title),
        training_metrics, lambda path: result.trades_frame().to_csv(path, index=False))


__all__ = ["LADDER_NOTE", "html_report", "ladder_section", "markdown_report", "plot_drawdown",
           "plot_equity", "plot_positions", "report_document", "uncertainty_rows", "write_report"]
