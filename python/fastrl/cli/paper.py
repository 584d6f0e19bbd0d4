"""fastrl-paper RUN --bars PATH --from DATE --journal FILE_OR_URL: paper-trade day by day
(``--rule NAME --symbols ...`` instead of RUN: a classical rule); fastrl-paper --verify
FILE_OR_URL: check a journal's hash chain."""

from __future__ import annotations

import argparse
import sys

from fastrl.cli.errors import cli_errors
from fastrl.cli.live_policy import add_policy_arguments, open_policy

PROG = "fastrl-paper"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Paper-trade a trained run session by session through the live path "
        "fastrl-signal uses: decide at each close, fill at the next open with the run's costs "
        "and market rules, mark at the close. Every session is one transaction in an "
        "append-only journal (SQLite file or postgresql:// URL); run it again, after a kill or "
        "with new bars, and it continues after the last committed session. Each session row "
        "is chained to the one before it by a SHA-256 hash: --verify checks the chain. With "
        "--rule NAME instead of a run, a classical rule trades beside the agent (its replay "
        "equals its backtest, as the agent's does).")
    add_policy_arguments(parser)
    parser.add_argument("--bars",
                        help="CSV/Parquet file or folder of bars, 'bundled', or 'yfinance'")
    parser.add_argument("--from", dest="start",
                        help="first session to trade (YYYY-MM-DD); on a journal that already "
                        "holds sessions, trading continues after its last one")
    parser.add_argument("--to", dest="end", default=None,
                        help="last session (default: the newest bar, and a warning when it is "
                        "older than the last session closed by now); bars must reach the last "
                        "NSE/BSE session up to it (exchange-calendars' XBOM) that has closed "
                        "by now. A session still trading is never traded (its bars are not "
                        "seen until its close, 15:30 IST), with or without --to")
    parser.add_argument("--journal",
                        help="SQLite file path, or an SQLAlchemy URL (postgresql://user@host/db)")
    parser.add_argument("--verify", metavar="JOURNAL", default=None,
                        help="check a journal (file or URL) instead of trading: every session "
                        "row against its hash and the row before it. Exit 0 and one OK line "
                        "naming the head hash (keep it: removing the newest sessions whole "
                        "leaves a shorter chain that still holds); exit 2 naming the first "
                        "edited, deleted or reordered row (a row of the chain with its hash "
                        "removed included); exit 1 for a journal written before the chain "
                        "(schema 1, nothing to check against)")
    parser.add_argument("--quiet", action="store_true", help="no line per session")
    parser.add_argument("--verbose", action="store_true", help="tracebacks on errors")
    return parser


@cli_errors(PROG)
def main(argv: list[str] | None = None) -> int:
    """fastrl-paper: 0 on success, 2 with one stderr line for bad input."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verify is not None:
        return verify(args.verify)
    # RUN or --rule: open_policy names what is missing
    missing = [flag for flag, value in (("--bars", args.bars), ("--from", args.start),
                                        ("--journal", args.journal))
               if value is None]
    if missing:
        parser.error(f"the following arguments are required: {', '.join(missing)}")
    import torch

    torch.set_num_threads(1)
    # lazy: the live path loads pandas and the simulator, which --help must not
    from fastrl.live.bars import load_live_bars
    from fastrl.live.journal import Journal
    from fastrl.live.paper import paper_trade

    run = open_policy(args)
    journal = Journal.open(args.journal)
    journal.check_run(run)  # before loading (or downloading) any bars
    bars = load_live_bars(run, args.bars)

    def progress(session: str, equity: float) -> None:
        if not args.quiet:
            print(f"{session}  equity {equity:,.2f}", flush=True)

    try:
        summary = paper_trade(run, bars, journal, args.start, args.end, on_session=progress)
    finally:
        journal.dispose()
    for warning in summary.warnings:
        print(f"{PROG}: warning: {warning}", file=sys.stderr)
    where = (f"continued after {summary.resumed_after}" if summary.resumed_after
             else "new journal")
    if summary.sessions:
        print(f"{PROG}: traded {len(summary.sessions)} session(s) {summary.sessions[0]} .. "
              f"{summary.sessions[-1]} ({where}) into {summary.journal}; equity "
              f"{summary.equity:,.2f}", file=sys.stderr)
    else:
        print(f"{PROG}: nothing new to trade ({where}) in {summary.journal}", file=sys.stderr)
    return 0


def verify(target: str) -> int:
    """--verify: 0 when the chain holds, 2 naming the first broken row, 1 when the journal
    predates the chain."""
    # lazy: the live path (pandas, the simulator)
    from fastrl.live.journal import Journal, writer

    journal = Journal.open(target)
    try:
        result = journal.verify()
        identity = journal.identity()
    finally:
        journal.dispose()
    if result.problem is not None:
        print(f"{PROG}: error: {result.line()}", file=sys.stderr)
        return 2
    print(result.line())
    if identity:  # who wrote it: a run folder and checkpoint, or a rule and its parameters
        print(f"written by {writer(identity)}")
    return 0 if result.verified or not result.sessions else 1


if __name__ == "__main__":
    raise SystemExit(main())
