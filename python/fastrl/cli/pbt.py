"""fastrl-tune --pbt: population-based training of P members in one process.

``fastrl-tune --pbt --population 8 --symbols BPCL HDFCLIFE --timesteps 262144`` trains 8
members for 262,144 env steps each, exploits/explores every ``--ready`` steps on the
validation Sharpe, and leaves in the run folder: schedules.png, hparams.csv, lineage.csv,
winner.yaml (``fastrl-train --config``) and winner/ (``fastrl-eval``). Ctrl-C keeps the run
as of its last finished round: ``fastrl-tune --pbt --resume DIR`` continues it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from fastrl.cli.errors import UsageError, cli_errors
from fastrl.cli.interrupt import ctrl_c_raises_interrupted

PROG = "fastrl-tune"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"{PROG} --pbt",
        description="Population-based training: P PPO members in one process, exploit/explore "
        "on validation Sharpe. Example: fastrl-tune --pbt --population 8 --symbols BPCL "
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
                        help="validation days that rank members (default: 120 daily)")
    parser.add_argument("--test-days", type=int, default=30, metavar="N")
    parser.add_argument("--data", metavar="PATH", default="bundled",
                        help="bundled, synthetic or a data folder")
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
                                          ("--device", args.device))
                 if value is not None] + (["--set"] if args.set_options else [])
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


def _run(args: argparse.Namespace) -> int:
    _check_args(args)
    import torch

    from fastrl.config import build_config, resolve_defaults
    from fastrl.tune.pbt import PBT, STATE_NAME

    def progress(row: dict[str, Any]) -> None:
        if "val_sharpe" not in row:
            return
        scores = row["val_sharpe"]
        best = max(range(len(scores)), key=lambda m: scores[m] if scores[m] == scores[m]
                   else -float("inf"))
        copies = ", ".join(f"{t}<-{s}" for t, s in sorted(row["copies"].items())) or "none"
        print(f"step {row['global_step']:>9,}  best member {best} val Sharpe "
              f"{scores[best]:+.2f}  copies {copies}  {row['elapsed']:.0f}s", flush=True)

    if args.resume is not None:
        run_dir = Path(args.resume)
        runner = PBT.resume(run_dir, callback=progress)
        config = runner.pop.config
    else:
        overrides: dict[str, Any] = {
            "total_timesteps": args.timesteps, "seed": args.seed,
            "data.symbols": list(args.symbols), "data.freq": args.freq,
            "data.source": args.data, "data.test_days": args.test_days,
        }
        if args.val_days is not None:
            overrides["data.val_days"] = args.val_days
        if args.device is not None:
            overrides["device"] = args.device
        set_options = [item for group in args.set_options for item in group]
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
        runner = PBT(config, args.population, ready, run_dir=run_dir, space=args.space,
                     callback=progress)
    torch.set_num_threads(config.torch_threads or os.cpu_count() or 1)
    pop = runner.pop
    start = (f"; resumed at step {pop.global_step:,} of {pop.num_updates * pop.batch_size:,}"
             if args.resume is not None else "")
    print(f"{PROG} --pbt: {pop.population} members x {pop.n} envs on {pop.device} "
          f"(amp {pop.amp}, compile {pop.compile}); exploit/explore every {runner.ready:,} "
          f"steps{start} -> {run_dir}", flush=True)
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
    print(f"winner: member {result.winner}, validation Sharpe {result.winner_val_sharpe:+.2f}; "
          f"{result.env_steps_per_second:,.0f} env steps/s over the population")
    for name in ("plot", "lineage", "hparams", "winner_config", "winner_checkpoint"):
        print(f"  {name:>17}: {result.files[name]}")
    print(f"evaluate: fastrl-eval {run_dir / 'winner'}   replay: fastrl-train --config "
          f"{result.files['winner_config']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
