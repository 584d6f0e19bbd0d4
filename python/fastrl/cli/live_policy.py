"""What fastrl-signal and fastrl-paper trade: a run folder (RUN) or a classical rule
(``--rule NAME`` with its symbols and config); the flags and their checks, shared."""

from __future__ import annotations

import argparse
from typing import Any

from fastrl.cli.errors import UsageError

RULE_ONLY = (("--symbols", "symbols"), ("--portfolio", "portfolio"), ("--preset", "preset"),
             ("--config", "config"), ("--set", "set_options"))


def add_policy_arguments(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    """RUN (positional, optional) and the ``--rule`` group."""
    parser.add_argument("run", nargs="?", default=None,
                        help="run folder (its best/final/last checkpoint) or a checkpoint; "
                        "or leave it out and give --rule")
    group = parser.add_argument_group(
        "a classical rule instead of a run",
        "Trade a rule of the ladder (fastrl.rules) through the same live path: its decisions "
        "at each close from the feed's history, the rule's backtest env (the config's costs "
        "and market rules), so a paper replay equals the rule's backtest bit for bit.")
    group.add_argument("--rule", metavar="NAME", default=None,
                       help="single-symbol rules: buy_and_hold, voltarget, momentum, ma10, "
                       "ma200; with --portfolio: ew_hold, ew_monthly, inverse_vol, "
                       "min_variance, xs_momentum")
    group.add_argument("--symbols", nargs="+", default=None,
                       help="the symbols the rule trades (default: the config's data.symbols)")
    group.add_argument("--portfolio", action="store_true",
                       help="one portfolio over the symbols (a portfolio rule); without it each "
                       "symbol trades its own equal share of the capital")
    group.add_argument("--preset", default=None,
                       help="the config preset whose env, costs and frequency the rule trades "
                       "under: anchored (default), fast or baseline")
    group.add_argument("--config", metavar="FILE", default=None,
                       help="YAML or TOML file of config keys (after the preset)")
    group.add_argument("--set", dest="set_options", nargs="+", action="append", default=[],
                       metavar="KEY=VALUE",
                       help="config keys, last: e.g. rules.momentum.lookback=126, "
                       "env.cost=nse_intraday, data.freq=5min")


def open_policy(args: argparse.Namespace) -> Any:
    """The run (:func:`fastrl.live.run.open_run`) or the rule
    (:func:`fastrl.live.rule.open_rule`) the arguments name; UsageError for a bad
    combination."""
    given = [flag for flag, name in RULE_ONLY if getattr(args, name)]
    if args.run is not None and args.rule is not None:
        raise UsageError(f"give a run folder or --rule {args.rule}, not both (got run "
                         f"{args.run})")
    if args.rule is None:
        if given:
            raise UsageError(f"{', '.join(given)} go with --rule NAME; a run folder carries its "
                             "own config")
        if args.run is None:
            raise UsageError("give a run folder (RUN) or --rule NAME")
        from fastrl.live.run import open_run  # lazy: torch, pandas

        return open_run(args.run)
    from fastrl.live.rule import open_rule  # lazy: pandas, the simulator

    sets = [option for group in args.set_options for option in group]
    return open_rule(args.rule, symbols=args.symbols, portfolio=args.portfolio,
                     preset=args.preset, config_file=args.config, set_options=sets)


__all__ = ["add_policy_arguments", "open_policy"]
