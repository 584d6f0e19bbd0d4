"""fastrl-signal RUN --bars PATH: the trained agent's target for the next session's open;
fastrl-signal --rule NAME --symbols ... --bars PATH: a classical rule's."""

from __future__ import annotations

import argparse
import sys

from fastrl.cli.errors import cli_errors
from fastrl.cli.live_policy import add_policy_arguments, open_policy

PROG = "fastrl-signal"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Decide at the latest close with a trained run: read the newest bars with "
        "the training loader, build each symbol's features with the run's normaliser and its "
        "observation with the current position, and print the target for the next session's "
        "open (exposure or portfolio weight, whole shares and expected costs). With --rule "
        "NAME instead of a run, a classical rule decides from the feed's history (e.g. "
        "fastrl-signal --rule momentum --symbols BPCL HDFCLIFE --bars bundled). Stale, "
        "missing, duplicated, out-of-order or invalid bars are refused (exit 2).")
    add_policy_arguments(parser)
    parser.add_argument("--bars", required=True,
                        help="CSV/Parquet file or folder of bars (the training loader's "
                        "layout), 'bundled', or 'yfinance' (refresh the download cache)")
    parser.add_argument("--asof", default=None,
                        help="move the clock back to the end of this day (YYYY-MM-DD; "
                        "'today', or a day not over yet: now, so a bar still forming is never "
                        "seen): the decision is at the newest bar up to it, which must be the "
                        "last session the NSE/BSE calendar (exchange-calendars' XBOM) has "
                        "closed by then, and every symbol needs a bar on it (default: now in "
                        "Asia/Kolkata, so a feed that stopped before the last closed session "
                        "is refused as stale; 5-minute bars may be one bar behind)")
    parser.add_argument("--positions", default=None,
                        help="CSV or JSON of current holdings: symbol, shares[, entry_price, "
                        "bars_since_trade] (default: flat); every symbol must be one the run "
                        "trades (else exit 2 naming the file and row). Limit: the agent "
                        "observes its position as an exposure, so for single-symbol runs the "
                        "shares are valued at the last close against the symbol's share of "
                        "the capital and mapped to the nearest position level (discrete "
                        "actions) or clipped to [min_pos, max_pos] (continuous); the order "
                        "takes the exact share count to the target's shares (a target of 0 "
                        "sells them all, even when the holding maps to level 0; in portfolio "
                        "runs, unless the order is under trade_band x equity, which the "
                        "simulator does not send either). Without "
                        "entry_price the last close is taken as the entry price (the "
                        "unrealised P&L the agent sees is then 0), without bars_since_trade 0")
    parser.add_argument("--capital", type=float, default=None,
                        help="account equity for share counts (default: the run's initial_cash "
                        "per symbol, or for the portfolio)")
    parser.add_argument("--out", default=None, help="write the signal as .json or .csv")
    parser.add_argument("--verbose", action="store_true", help="tracebacks on errors")
    return parser


def format_signal(signal) -> str:
    """The signal as a plain table (what the command prints)."""
    who = signal.policy or f"run {signal.run_id[:12]}"
    head = (f"{signal.kind} {who} decided at the {signal.decided_at} close "
            f"for the {signal.fill}; capital {signal.capital:,.2f}, costs {signal.cost_model}")
    header = (f"{'symbol':<12}{'close':>11}{'held':>10}{'target':>9}{'shares':>10}"
              f"{'order':>10}{'exp. cost':>12}")
    rows = [f"{line.symbol:<12}{line.close:>11.2f}{line.shares_held:>10.0f}"
            f"{line.target:>9.3f}{line.target_shares:>10.0f}{line.order_shares:>+10.0f}"
            f"{line.expected_cost:>12.2f}" for line in signal.lines]
    total = f"{'total':<12}{'':>50}{signal.expected_cost:>12.2f}"
    return "\n".join([head, header, *rows, total, *(f"note: {n}" for n in signal.notes)])


@cli_errors(PROG)
def main(argv: list[str] | None = None) -> int:
    """fastrl-signal: 0 on success, 2 with one stderr line for bad input."""
    args = build_parser().parse_args(argv)
    import torch

    torch.set_num_threads(1)  # one small forward pass: threads cost more than they save
    # lazy: the live path loads pandas and the simulator, which --help must not
    from fastrl.live.bars import load_live_bars
    from fastrl.live.signal import make_signal, read_positions, write_signal

    run = open_policy(args)
    bars = load_live_bars(run, args.bars)
    positions = read_positions(args.positions, run.symbols) if args.positions else None
    signal = make_signal(run, bars, asof=args.asof, positions=positions, capital=args.capital)
    print(format_signal(signal))
    if args.out:
        path = write_signal(signal, args.out)
        print(f"written: {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
