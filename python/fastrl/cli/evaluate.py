"""fastrl-eval RUN_DIR|CHECKPOINT: backtest a trained agent on its held-out test days."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.columns import Columns
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from fastrl.cli.errors import UsageError, cli_errors
from fastrl.markets.single.result import COMBINED, STRATEGIES, STRATEGY_LABELS, EvalResult
from fastrl.metrics import METRIC_LABELS, format_metric

PROG = "fastrl-eval"
CONSOLE_METRICS = (
    "total_return",
    "annual_return",
    "sharpe",
    "sortino",
    "max_drawdown",
    "win_rate_trades",
    "profit_factor",
    "num_trades",
    "trades_per_day",
    "costs_paid",
    "final_equity",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Backtest the deterministic policy of a trained run on the held-out test "
        "days of each symbol, next to buy-and-hold and staying flat, with the training costs. "
        "Writes report.md, report.html, report.json and PNG plots into the run folder.",
    )
    parser.add_argument(
        "run",
        help="run folder (uses checkpoints/best.pt, final.pt or last.pt) or a checkpoint file",
    )
    parser.add_argument(
        "--symbols",
        nargs="+",
        default=None,
        help="symbols to evaluate (default: the training symbols)",
    )
    parser.add_argument(
        "--test-days",
        type=int,
        default=None,
        help="last trading days per symbol to test on (default: as in training; "
        "at most that on the training data)",
    )
    parser.add_argument(
        "--data", default=None, help="CSV/Parquet file or folder replacing the training data source"
    )
    parser.add_argument("--out", default=None, help="report folder (default: the run folder)")
    parser.add_argument("--no-report", action="store_true", help="print the table only")
    return parser


def metrics_tables(result: EvalResult) -> Columns:
    """Console tables, one per symbol (and the combined portfolio): metrics x strategies,
    the Sharpe with its error bars (the report's numbers, from ``result.uncertainty``)."""
    from fastrl.report import uncertainty_rows

    tables = []
    symbols = result.symbols + ([COMBINED] if len(result.symbols) > 1 else [])
    for symbol in symbols:
        title = "combined (equal capital)" if symbol == COMBINED else symbol
        table = Table(title=title, header_style="bold", title_style="bold")
        table.add_column("metric")
        for strategy in STRATEGIES:
            table.add_column(STRATEGY_LABELS[strategy], justify="right")
        per_strategy = [result.metrics(symbol, s).to_dict() for s in STRATEGIES]
        for key in CONSOLE_METRICS:
            label, kind = METRIC_LABELS[key]
            table.add_row(label, *(format_metric(values[key], kind) for values in per_strategy))
            if key == "sharpe":
                for row in uncertainty_rows(result, symbol):
                    table.add_row(*row)
        tables.append(table)
    return Columns(tables, padding=(1, 2))


def print_verdict(result: EvalResult, console: Console) -> None:
    """The one-line verdict (combined portfolio), after the tables."""
    console.print(f"[bold]verdict:[/] {escape(result.verdict)}", highlight=False)


def run(argv: list[str] | None, console: Console) -> int:
    """The command without the error wrapper (raises on bad input); tests call it."""
    args = build_parser().parse_args(argv)
    if args.test_days is not None and args.test_days < 1:
        raise UsageError(f"--test-days must be >= 1, got {args.test_days}")
    from fastrl.evaluate import evaluate_run, is_portfolio_run

    if is_portfolio_run(args.run):
        if args.symbols or args.data:
            raise UsageError("a portfolio run is evaluated on its own symbols and data; drop "
                             "--symbols/--data")
        report_portfolio(args.run, args.test_days, console,
                         out_dir=Path(args.out) if args.out else None,
                         write=not args.no_report)
        return 0
    result = evaluate_run(args.run, symbols=args.symbols, test_days=args.test_days,
                          data=args.data)
    console.print("Backtest on held-out test days, after costs", style="bold")
    console.print(metrics_tables(result))
    print_verdict(result, console)
    info = result.info
    console.print(f"checkpoint: {info.get('checkpoint')}")
    if not args.no_report:
        out = write_run_report(result, Path(args.out) if args.out else None)
        console.print(f"report: {out / 'report.md'}, {out / 'report.html'}")
    return 0


def portfolio_table(result: Any) -> Table:
    """The portfolio metrics x strategies table, with the Sharpe's error bars."""
    from fastrl.markets.portfolio.backtest import strategy_label
    from fastrl.report_portfolio import table_rows

    table = Table(title="portfolio", header_style="bold", title_style="bold")
    table.add_column("metric")
    for strategy in result.strategies:
        table.add_column(strategy_label(strategy), justify="right")
    keep = {METRIC_LABELS[k][0] for k in CONSOLE_METRICS} | {"Orders (legs)"}
    for row in table_rows(result):
        if row[0] in keep or row[0].startswith(("Sharpe ", "P(")):
            table.add_row(*row)
    return table


def report_portfolio(run: str | Path, test_days: int | None, console: Console, *,
                     out_dir: Path | None = None, write: bool = True) -> Any:
    """Backtest a portfolio run on its test days, print the table and verdict and (with
    ``write``) write the report into ``out_dir`` (default: the run folder)."""
    from fastrl.evaluate import evaluate_portfolio_run
    from fastrl.report_portfolio import write_portfolio_report

    result = evaluate_portfolio_run(run, test_days=test_days)
    console.print("Portfolio backtest on held-out test days, after costs", style="bold")
    console.print(portfolio_table(result))
    console.print(f"[bold]verdict:[/] {escape(result.verdict)}", highlight=False)
    if write:
        run_dir = Path(result.info["run_dir"])
        out = out_dir if out_dir is not None else run_dir
        write_portfolio_report(result, out, training_metrics=run_dir / "metrics.jsonl")
        console.print(f"report: {out / 'report.md'}, {out / 'report.html'}")
    return result


def write_run_report(result: EvalResult, out_dir: Path | None = None) -> Path:
    """The report of ``result`` into ``out_dir`` (default: its run folder), with the run's
    training curves; returns the folder."""
    from fastrl.report import write_report

    run_dir = Path(result.info.get("run_dir", "."))
    out = out_dir if out_dir is not None else run_dir
    write_report(result, out, training_metrics=run_dir / "metrics.jsonl")
    return out


@cli_errors(PROG)
def main(argv: list[str] | None = None) -> int:
    """fastrl-eval: 0 on success, 2 with one stderr line for bad input."""
    return run(argv, Console())


if __name__ == "__main__":
    raise SystemExit(main())
