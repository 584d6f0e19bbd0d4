"""fastrl-tune --pbt: population-based training of P members in one process.

``fastrl-tune --pbt --population 8 --symbols BPCL HDFCLIFE --timesteps 262144`` trains 8
members for 262,144 env steps each on the bars before window A, exploits/explores every
``--ready`` steps on window A's Sharpe (``--val-days``), picks the winner on window B
(``--pick-days``, after A, never seen by a round), deflates its Sharpe over the population
(DSR), and replays its schedule from scratch on ``--replay-seeds`` fresh seeds beside both
presets on window C (``--confirm-days``), then the test days once (``--test-days``, last).
The run folder holds schedules.png, hparams.csv, lineage.csv, winner.yaml
(``fastrl-train --config``), winner/ (``fastrl-eval``), summary.json and report.md/.html.
Ctrl-C keeps the run as of its last finished round: ``fastrl-tune --pbt --resume DIR``
continues it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from fastrl.cli.errors import UsageError, cli_errors
from fastrl.cli.interrupt import ctrl_c_raises_interrupted
from fastrl.cli.train import REPAIR_TICKS_HELP, REPAIR_TICKS_SET
from fastrl.threads import set_torch_threads

PROG = "fastrl-tune"
REPLAY_SEEDS = 3  # fastrl.tune.pbt_winner.REPLAY_SEEDS (not imported: it loads torch)
TEST_DAYS = 30
OBJECTIVES = ("excess", "sharpe")  # fastrl.tune.objective.OBJECTIVES


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"{PROG} --pbt",
        description="Population-based training: P PPO members in one process, exploit/explore "
        "on window A's Sharpe, the winner picked on window B, replayed on fresh seeds against "
        "both presets on window C. Example: fastrl-tune --pbt --population 8 --symbols BPCL "
        "HDFCLIFE --timesteps 262144",
    )
    parser.add_argument("--pbt", action="store_true", required=True, help="population mode")
    parser.add_argument("--resume", metavar="DIR", help="continue an interrupted run from its "
                        "last finished round (DIR/pbt_state.pt), with its saved settings")
    parser.add_argument("--population", type=int, metavar="P",
                        help="members trained together (>= 2; exploit needs a bottom and a top)")
    parser.add_argument("--ready", type=int, metavar="N", help="env steps per member between "
                        "exploit/explore rounds (a multiple of num_envs x num_steps; default: "
                        "the budget in 8 rounds)")
    parser.add_argument("--timesteps", type=int, metavar="T",
                        help="env steps per member")
    parser.add_argument("--symbols", nargs="+", metavar="SYMBOL")
    parser.add_argument("--freq", choices=("1d", "5min"), default="1d")
    parser.add_argument("--val-days", type=int, metavar="N",
                        help="window A: the days every exploit/explore round ranks members "
                        "on (default: 120 daily bars, 20 sessions of 5-minute bars)")
    parser.add_argument("--pick-days", type=int, metavar="N",
                        help="window B, after A: the days the winner is picked on, never seen "
                        "by a round (default: 120 daily bars, 20 sessions of 5-minute bars)")
    parser.add_argument("--confirm-days", type=int, metavar="N",
                        help="window C, after B: the days the replay and the presets are "
                        "scored on (default: 120 daily bars, 20 sessions of 5-minute bars)")
    parser.add_argument("--test-days", type=int, metavar="N",
                        help="last days, after C: the replay's test, touched once (default 30)")
    parser.add_argument("--replay-seeds", type=int, metavar="K",
                        help=f"fresh seeds the winner's schedule is retrained on from scratch, "
                        f"beside both presets (default {REPLAY_SEEDS}; costs 3 x K single "
                        "runs of --timesteps)")
    parser.add_argument("--no-replay", action="store_true",
                        help="skip the replay (the report then calls the winner unconfirmed)")
    parser.add_argument("--objective", choices=OBJECTIVES, default=None,
                        help="the replay's score on window C, as fastrl-tune's: excess "
                        "(default; Sharpe of the daily active return over buy-and-hold) or "
                        "sharpe")
    parser.add_argument("--data", metavar="PATH", default="bundled",
                        help="bundled, synthetic or a data folder")
    parser.add_argument("--repair-ticks", action="store_true", help=REPAIR_TICKS_HELP)
    parser.add_argument("--base-preset", default="fast", help="the seed config's preset")
    parser.add_argument("--config", metavar="FILE", help="seed config file (YAML/TOML/JSON)")
    parser.add_argument("--set", dest="set_options", nargs="+", action="append", default=[],
                        metavar="KEY=VALUE", help="seed config overrides")
    parser.add_argument("--space", metavar="FILE", help="search space whose bounds explore "
                        "stays in (default: fastrl/tune/space.yaml)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--run-dir", metavar="DIR", help="default runs/pbt-<symbols>-<time>")
    parser.add_argument("--verbose", action="store_true", help="tracebacks on errors")
    return parser


def _default_ready(config: Any) -> int:
    updates = config.total_timesteps // config.batch_size
    return max(1, updates // 8) * config.batch_size


@cli_errors(PROG)
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    with ctrl_c_raises_interrupted():
        return _run(args)


def _check_args(args: argparse.Namespace) -> None:
    if args.resume is not None:
        given = [flag for flag, value in (("--population", args.population),
                                          ("--timesteps", args.timesteps),
                                          ("--symbols", args.symbols), ("--ready", args.ready),
                                          ("--config", args.config), ("--run-dir", args.run_dir),
                                          ("--device", args.device),
                                          ("--val-days", args.val_days),
                                          ("--pick-days", args.pick_days),
                                          ("--confirm-days", args.confirm_days),
                                          ("--test-days", args.test_days),
                                          ("--replay-seeds", args.replay_seeds),
                                          ("--objective", args.objective))
                 if value is not None] + (["--set"] if args.set_options else []) \
            + (["--no-replay"] if args.no_replay else []) \
            + (["--repair-ticks"] if args.repair_ticks else [])
        if given:
            raise UsageError(f"--resume continues with the run's saved settings; drop "
                             f"{', '.join(given)}")
        return
    missing = [flag for flag, value in (("--population", args.population),
                                        ("--timesteps", args.timesteps),
                                        ("--symbols", args.symbols)) if value is None]
    if missing:
        raise UsageError(f"{', '.join(missing)} required (or --resume DIR)")
    if args.population < 2:
        raise UsageError(f"--population must be >= 2 (PBT copies the bottom quarter from the "
                         f"top quarter), got {args.population}")
    if args.timesteps < 1:
        raise UsageError(f"--timesteps must be >= 1, got {args.timesteps}")
    for flag in ("val_days", "pick_days", "confirm_days", "test_days", "replay_seeds"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            name = "--" + flag.replace("_", "-")
            raise UsageError(f"{name} must be >= 1, got {value}"
                             + (" (--no-replay skips the replay)" if flag == "replay_seeds"
                                else ""))
    if args.no_replay and args.replay_seeds is not None:
        raise UsageError(f"--no-replay and --replay-seeds {args.replay_seeds} exclude each "
                         "other")


def _run(args: argparse.Namespace) -> int:
    _check_args(args)
    # the PBT engine loads torch and fastrl.config pydantic: imported when a run starts, so
    # --help stays quick and the thread policy is set before torch loads
    from fastrl.config import build_config, resolve_defaults
    from fastrl.ppo.members import PopulationError
    from fastrl.tune.pbt import PBT, STATE_NAME, verdict

    def progress(row: dict[str, Any]) -> None:
        if "val_sharpe" not in row:
            return
        scores = row["val_sharpe"]
        best = max(range(len(scores)), key=lambda m: scores[m] if scores[m] == scores[m]
                   else -float("inf"))
        copies = ", ".join(f"{t}<-{s}" for t, s in sorted(row["copies"].items())) or "none"
        print(f"step {row['global_step']:>9,}  best member {best} window-A Sharpe "
              f"{scores[best]:+.2f}  copies {copies}  {row['elapsed']:.0f}s", flush=True)

    def log(line: str) -> None:
        print(line, flush=True)

    if args.resume is not None:
        run_dir = Path(args.resume)
        runner = PBT.resume(run_dir, callback=progress, log=log)
        config = runner.pop.config
    else:
        overrides: dict[str, Any] = {
            "total_timesteps": args.timesteps, "seed": args.seed,
            "data.symbols": list(args.symbols), "data.freq": args.freq,
            "data.source": args.data,
            "data.test_days": TEST_DAYS if args.test_days is None else args.test_days,
        }
        if args.val_days is not None:
            overrides["data.val_days"] = args.val_days
        if args.device is not None:
            overrides["device"] = args.device
        set_options = [item for group in args.set_options for item in group]
        set_options += [REPAIR_TICKS_SET] * args.repair_ticks
        config = resolve_defaults(build_config(args.base_preset, args.config, overrides,
                                               set_options))
        if not config.data.val_days:
            raise UsageError("--val-days must be >= 1: PBT ranks members on the validation "
                             "bars")
        ready = args.ready if args.ready is not None else _default_ready(config)
        run_dir = Path(args.run_dir or Path("runs") / "pbt-{}-{}".format(
            "-".join(args.symbols)[:60], time.strftime("%Y%m%d-%H%M%S")))
        if (run_dir / STATE_NAME).exists():
            raise UsageError(f"{run_dir} holds an unfinished PBT run; continue it with "
                             f"--resume {run_dir} or choose another --run-dir")
        try:  # a window that does not fit the data: named by its flag, nothing written
            runner = PBT(config, args.population, ready, pick_days=args.pick_days,
                         confirm_days=args.confirm_days,
                         replay_seeds=0 if args.no_replay else (
                             REPLAY_SEEDS if args.replay_seeds is None else args.replay_seeds),
                         objective=args.objective or "excess", set_options=set_options,
                         run_dir=run_dir, space=args.space, callback=progress, log=log)
        except PopulationError as err:
            raise UsageError(str(err)) from None
    pop = runner.pop
    set_torch_threads(config.torch_threads)
    start = (f"; resumed at step {pop.global_step:,} of {pop.num_updates * pop.batch_size:,}"
             if args.resume is not None else "")
    w = runner.windows
    replay = (f"replay on {runner.replay_seeds} fresh seeds" if runner.replay_seeds
              else "no replay")
    print(f"{PROG} --pbt: {pop.population} members x {pop.n} envs on {pop.device} "
          f"(amp {pop.amp}, compile {pop.compile}); exploit/explore every {runner.ready:,} "
          f"steps{start}; windows: A {w.val_days} | B {w.pick_days} | C {w.confirm_days} | "
          f"test {w.test_days} days, {replay} -> {run_dir}", flush=True)
    try:
        result = runner.run()
    except KeyboardInterrupt:
        if (run_dir / STATE_NAME).exists():
            print(f"interrupted: continue from the last finished round with: {PROG} --pbt "
                  f"--resume {run_dir}", file=sys.stderr)
        else:
            print("interrupted before the first exploit/explore round: nothing to resume",
                  file=sys.stderr)
        return 130
    (run_dir / STATE_NAME).unlink(missing_ok=True)  # finished: the outputs replace it
    print(f"winner: member {result.winner}, window-B Sharpe {result.winner_pick_sharpe:+.2f} "
          f"(window A {result.winner_val_sharpe:+.2f}); {result.env_steps_per_second:,.0f} env "
          "steps/s over the population")
    print(f"DSR over the {pop.population} members: {result.dsr['reading']}")
    print(f"verdict: {verdict(result)}")
    for name in ("report", "plot", "lineage", "hparams", "winner_config", "winner_checkpoint"):
        print(f"  {name:>17}: {result.files[name]}")
    # the checkpoint's own "test" split is everything after window A (B, C and the test
    # days); on real bars --test-days narrows it to the test days (a synthetic market
    # regenerates its split, so there it is all of them)
    narrow = ("" if runner.config.data.source == "synthetic"
              else f" --test-days {runner.windows.test_days}")
    print(f"evaluate: fastrl-eval {run_dir / 'winner'}{narrow}   train again: fastrl-train "
          f"--config {result.files['winner_config']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
