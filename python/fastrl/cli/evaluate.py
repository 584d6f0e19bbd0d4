"""fastrl-eval RUN_DIR|CHECKPOINT: backtest a trained agent on its held-out test days."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.columns import Columns
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from fastrl.cli.errors import UsageError, cli_errors
from fastrl.reports.format import ensemble_line, format_policy_setup

if TYPE_CHECKING:
    from fastrl.markets.base import ConsoleTable, Market

PROG = "fastrl-eval"
RUNGS_HELP = ("classical rules backtested beside the agent on the same days and costs, the "
              "ladder it must climb (default: every rule of the run's kind: buy_and_hold "
              "voltarget momentum ma10 ma200, or for --portfolio ew_hold ew_monthly "
              "inverse_vol min_variance xs_momentum; 'none': no rungs)")


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
    parser.add_argument("--rungs", nargs="+", metavar="RULE", default=None,
                        help=RUNGS_HELP)
    parser.add_argument("--out", default=None, help="report folder (default: the run folder)")
    parser.add_argument("--no-report", action="store_true", help="print the table only")
    return parser


def render(tables: list[ConsoleTable]) -> Columns:
    """The market's console tables side by side."""
    rendered = []
    for spec in tables:
        table = Table(title=spec.title, header_style="bold", title_style="bold")
        table.add_column(spec.columns[0])
        for column in spec.columns[1:]:
            table.add_column(column, justify="right")
        for row in spec.rows:
            table.add_row(*row)
        rendered.append(table)
    return Columns(rendered, padding=(1, 2))


def show(market: Market, result: Any, console: Console) -> None:
    """The backtest's heading, tables and one-line verdict."""
    console.print(f"{market.title} on held-out test days, after costs", style="bold")
    console.print(f"setup: {format_policy_setup(result.env_config)}", highlight=False)
    console.print(render(market.tables(result)))
    console.print(f"[bold]verdict:[/] {escape(result.verdict)}", highlight=False)
    for line in ensemble_line(result.info):
        console.print(escape(line), highlight=False)
    if result.rungs:
        console.print(f"[bold]ladder:[/] {escape(result.ladder().line)}", highlight=False)


def run(argv: list[str] | None, console: Console) -> int:
    """The command without the error wrapper (raises on bad input); tests call it."""
    args = build_parser().parse_args(argv)
    if args.test_days is not None and args.test_days < 1:
        raise UsageError(f"--test-days must be >= 1, got {args.test_days}")
    # lazy: loading a checkpoint imports torch, which --help must not
    from fastrl.evaluate import evaluate_run, load_run

    trained = load_run(args.run)
    result = evaluate_run(trained, symbols=args.symbols, test_days=args.test_days,
                          data=args.data, rungs=args.rungs)
    show(trained.market, result, console)
    console.print(f"checkpoint: {result.info.get('checkpoint')}")
    if not args.no_report:
        out = write_run_report(trained.market, result, Path(args.out) if args.out else None)
        console.print(f"report: {out / 'report.md'}, {out / 'report.html'}")
    return 0


def write_run_report(market: Market, result: Any, out_dir: Path | None = None) -> Path:
    """The report of ``result`` into ``out_dir`` (default: its run folder), with the run's
    training curves; returns the folder."""
    run_dir = Path(result.info.get("run_dir", "."))
    out = out_dir if out_dir is not None else run_dir
    market.report(result, out, training_metrics=run_dir / "metrics.jsonl")
    return out


@cli_errors(PROG)
def main(argv: list[str] | None = None) -> int:
    """fastrl-eval: 0 on success, 2 with one stderr line for bad input."""
    return run(argv, Console())


if __name__ == "__main__":
    raise SystemExit(main())
