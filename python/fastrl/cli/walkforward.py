"""fastrl-walkforward: retrain on the past every quarter, trade the next one frozen, and judge
the stitched multi-year out-of-sample record against buy-and-hold.

Data, config and budget flags mean what they mean for fastrl-train. The run folder holds
``walkforward.json`` (the settings), ``inputs.json`` (the resolved configs and the
fingerprints of configs and bars), ``windows/`` (each trained window, written atomically),
``oos_returns.csv``, ``windows.csv`` and the report. Ctrl-C or a kill loses at most the
window in training: ``fastrl-walkforward --resume DIR`` continues and ends bit-identical to
an uninterrupted run, and refuses (exit 2, naming what changed) when a config file or the
bars changed since the run started; a config file that is gone is replaced by the config
saved in ``inputs.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastrl.cli.errors import UsageError, cli_errors
from fastrl.cli.interrupt import ctrl_c_raises_interrupted
from fastrl.cli.train import REPAIR_TICKS_HELP
from fastrl.presets import DEFAULT_PRESET

if TYPE_CHECKING:
    from fastrl.walkforward.plan import WalkForwardSpec
    from fastrl.walkforward.settings import WalkForwardSettings

PROG = "fastrl-walkforward"
SETTINGS = "walkforward.json"
FLAG_KEYS = {"symbols": "data.symbols", "freq": "data.freq", "data": "data.source",
             "timesteps": "total_timesteps", "num_envs": "num_envs", "seed": "seed",
             "device": "device", "ensemble": "ensemble"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Walk-forward: retrain every --step trading days on the past only, trade "
        "the next --step days with the frozen policy, and report the stitched out-of-sample "
        "record against buy-and-hold. Example: fastrl-walkforward --symbols BPCL HDFCLIFE")
    data = parser.add_argument_group("data (as fastrl-train)")
    data.add_argument("--symbols", nargs="+", metavar="SYMBOL", help="symbols to trade")
    data.add_argument("--portfolio", action="store_true",
                      help="one policy allocates weights over all --symbols and cash, judged "
                      "against equal weight bought and held")
    data.add_argument("--freq", choices=("1d", "5min"), help="bar size (default 1d)")
    data.add_argument("--data", metavar="PATH", help="your CSV/Parquet file or folder")
    data.add_argument("--repair-ticks", action="store_true", help=REPAIR_TICKS_HELP)
    data.add_argument("--test-days", type=int, metavar="N",
                      help="the data's last trading days, never traded (default: the "
                      "config's, 30); see --through-test")
    data.add_argument("--through-test", action="store_true",
                      help="trade the test days too (they are then no longer held out)")
    run = parser.add_argument_group("config and budget (as fastrl-train)")
    run.add_argument("--preset", help="anchored (default), fast or baseline")
    run.add_argument("--config", metavar="FILE",
                     help="YAML/TOML config (a tune best.yaml or a PBT winner.yaml)")
    run.add_argument("--set", dest="set_options", nargs="+", action="append", default=[],
                     metavar="KEY=VALUE", help="override any config key")
    run.add_argument("--timesteps", type=int, metavar="N", help="env steps per window")
    run.add_argument("--num-envs", type=int, metavar="N", help="parallel envs")
    run.add_argument("--seed", type=int, help="base seed (default 0)")
    run.add_argument("--device", help="auto (default), cpu, cuda or cuda:N")
    run.add_argument("--run-dir", metavar="DIR", help="run folder (default runs/wf-<name>)")
    wf = parser.add_argument_group("walk-forward")
    wf.add_argument("--start", metavar="DATE",
                    help="first traded day (default: the earliest with enough history)")
    wf.add_argument("--step", type=int, default=63, metavar="N",
                    help="trading days traded per window (default 63, a quarter)")
    wf.add_argument("--train-window", default="expanding", metavar="expanding|N",
                    help="training span: expanding (default) or the last N trading days")
    wf.add_argument("--val-days", type=int, metavar="N",
                    help="the end of each training span, for the best checkpoint and early "
                    "stopping (default: the config's, 120 daily)")
    wf.add_argument("--embargo", type=int, metavar="N",
                    help="trading days between the last bar a window saw and its first traded "
                    "bar (default and minimum: the reward's one-bar horizon, 1 day)")
    wf.add_argument("--min-train-days", type=int, metavar="N",
                    help="training days a window needs (default 252 daily)")
    wf.add_argument("--late-listings", choices=("error", "join"), default="error",
                    help="a symbol without enough history at --start: refuse (default) or "
                    "let it join the first window where it has it")
    wf.add_argument("--warm-start", action="store_true",
                    help="start each window from the previous window's weights")
    wf.add_argument("--compare", nargs="+", metavar="CONFIG",
                    help="configs to compare on the same windows and seeds: presets or files "
                    "(agents, trained), and rules of fastrl.rules (rungs, never trained: "
                    "buy_and_hold voltarget momentum ma10 ma200; with --portfolio ew_hold "
                    "ew_monthly inverse_vol min_variance xs_momentum). The report opens with "
                    "each agent's ladder: the rungs it beats after Holm")
    wf.add_argument("--seeds", type=int, default=1, metavar="K", help="seeds per window")
    wf.add_argument("--ensemble", type=int, metavar="K",
                    help="train K seeds per window side by side as one population and trade "
                    "the mean of their exposures (config key ensemble; default 1)")
    wf.add_argument("--workers", type=int, metavar="W",
                    help="windows trained at once in processes (default: one per core; 1 "
                    "with --warm-start); never changes a result")
    wf.add_argument("--threads", type=int, default=1, metavar="N",
                    help="torch threads per window (fixed, so --workers never changes a result)")
    wf.add_argument("--engine", choices=("auto", "population", "pool"), default="auto",
                    help="population: train the windows and seeds as members of one "
                    "population (the same result per window, several times faster); pool: "
                    "each window its own trainer; auto (default): the population unless "
                    "--warm-start or --ensemble rules it out")
    wf.add_argument("--members", type=int, metavar="N", dest="max_members",
                    help="most windows in one population (default: sized to the memory "
                    "available)")
    wf.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR")
    parser.add_argument("--verbose", action="store_true", help="tracebacks on errors")
    return parser


CONFIG_SUFFIXES = (".yaml", ".yml", ".toml", ".json")
SOURCE_WORDS = ("bundled", "synthetic", "yfinance")  # --data values that are not paths


def _is_file_entry(entry: str) -> bool:
    """Whether a --config/--compare entry names a file (else a preset)."""
    path = Path(entry)
    return path.suffix.lower() in CONFIG_SUFFIXES or path.exists()


def _agents_and_rungs(settings: WalkForwardSettings) -> tuple[list[str], list[str]]:
    """The --compare entries that are agents (presets, files) and rungs (rules); a bad entry
    or a --compare of rules only is a UsageError."""
    # fastrl.walkforward.rungs loads the markets: imported when a run starts, not by --help
    from fastrl.config import PRESETS
    from fastrl.rules import RULES
    from fastrl.walkforward.rungs import split_compare

    if not settings.compare:
        return [settings.config or settings.preset or settings.default_preset], []
    agents, rungs = split_compare(settings.compare)
    for entry in agents:
        if not _is_file_entry(entry) and entry not in PRESETS:
            raise UsageError(f"--compare {entry}: not a preset ({', '.join(PRESETS)}), a rule "
                             f"({', '.join(RULES)}) or a config file")
    if not agents:
        raise UsageError(f"--compare names only rules ({', '.join(rungs)}): add the agent "
                         "config they are rungs for, a preset or a config file (e.g. "
                         f"--compare fast {' '.join(rungs)})")
    return agents, rungs


def _configs(settings: WalkForwardSettings,
             saved: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """name -> TrainConfig for every agent config the run compares (the flags apply to each;
    the rules in --compare are rungs, see :func:`_agents_and_rungs`).

    ``saved`` (a resumed run's configs as trained): a config file that no longer exists is
    replaced by its saved config, so a run resumes without its files; a file that exists is
    read, so an edit shows up as a changed config."""
    # fastrl.config loads pydantic: imported when a run starts, so --help stays quick
    from fastrl.config import build_config, config_from_dict, load_config_file

    overrides = {key: getattr(settings, flag) for flag, key in FLAG_KEYS.items()
                 if getattr(settings, flag) is not None}
    if settings.test_days is not None:
        overrides["data.test_days"] = settings.test_days
    if settings.portfolio:
        # lazy: the markets load pandas and the simulator, which --help must not
        from fastrl.markets import kind_overrides

        overrides.update(kind_overrides("portfolio"))
    if settings.repair_ticks:
        overrides["data.repair_ticks"] = True
    set_options = list(settings.set_options)
    entries, _rungs = _agents_and_rungs(settings)
    configs = {}
    for entry in entries:
        path = Path(entry)
        name = path.stem if _is_file_entry(entry) else entry
        if name in configs:
            name = f"{name}-{len(configs)}"
        if not _is_file_entry(entry):
            configs[name] = build_config(entry, None, overrides, set_options)
        elif path.is_file():
            # a file without a preset key starts from the run's default preset
            preset = (settings.preset or load_config_file(path).get("preset")
                      or settings.default_preset)
            configs[name] = build_config(preset, str(path), overrides, set_options)
        elif saved is not None and name in saved:
            configs[name] = config_from_dict(saved[name])
        else:
            raise UsageError(f"config file {entry} does not exist")
    return configs


def train_window_days(value: str | int | None) -> int | None:
    """``--train-window``: None for an expanding window ('expanding' or unset), else its
    days (a UsageError names the flag for anything else)."""
    if value in (None, "expanding"):
        return None
    try:
        return int(value)  # type: ignore[arg-type]
    except ValueError:
        raise UsageError(f"--train-window must be 'expanding' or a number of days, got "
                         f"{value!r}") from None


def _spec(settings: WalkForwardSettings, config: Any) -> WalkForwardSpec:
    # fastrl.walkforward loads torch: imported when a run starts, not by --help
    from fastrl.walkforward.plan import WalkForwardSpec

    span = train_window_days(settings.train_window)
    val_days = settings.val_days
    return WalkForwardSpec(
        step=settings.step, start=settings.start, train_window=span,
        val_days=int(config.data.val_days if val_days is None else val_days),
        embargo=settings.embargo, min_train_days=settings.min_train_days,
        test_days=int(config.data.test_days), through_test=settings.through_test,
        late_listings=settings.late_listings)


def _settings(args: argparse.Namespace) -> WalkForwardSettings:
    """The settings of a new run from its flags (``--workers`` default filled in)."""
    # fastrl.walkforward loads torch: imported when a run starts, not by --help
    from fastrl.walkforward.settings import WalkForwardSettings

    keys = ("symbols", "portfolio", "freq", "data", "test_days", "through_test", "preset",
            "config", "timesteps", "num_envs", "seed", "device", "start", "step", "train_window",
            "val_days", "embargo", "min_train_days", "late_listings", "warm_start", "compare",
            "seeds", "ensemble", "workers", "threads", "engine", "max_members",
            "repair_ticks")
    settings = {key: getattr(args, key) for key in keys}
    settings["set_options"] = [item for group in args.set_options for item in group]
    settings["default_preset"] = DEFAULT_PRESET
    # files by absolute path: a resume from another working directory reads the same ones
    if settings["config"] and _is_file_entry(settings["config"]):
        settings["config"] = str(Path(settings["config"]).absolute())
    if settings["compare"]:
        settings["compare"] = [str(Path(e).absolute()) if _is_file_entry(e) else e
                               for e in settings["compare"]]
    if settings["data"] not in (None, *SOURCE_WORDS) and Path(settings["data"]).exists():
        settings["data"] = str(Path(settings["data"]).absolute())
    if settings["workers"] is None:
        settings["workers"] = 1 if settings["warm_start"] else (os.cpu_count() or 1)
    return WalkForwardSettings.parse(settings)


def _saved_settings(path: Path) -> WalkForwardSettings:
    """A run's recorded settings (``walkforward.json``); a bad one names the file and key."""
    # fastrl.walkforward loads torch: imported when a run starts, not by --help
    from fastrl.walkforward.settings import WalkForwardSettings

    try:
        return WalkForwardSettings.parse(json.loads(path.read_text()))
    except ValueError as err:  # not JSON, or a key's value is invalid
        raise UsageError(f"{path}: {err}") from None


def _print_summary(payload: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    from fastrl.ladder import ladder_table  # only the summary prints it; keeps --help fast

    console = Console(stderr=False)
    for name, result in payload.get("ladders", {}).items():
        header, rows = ladder_table(result)
        table = Table(title=f"the ladder: {name}")
        for column in header:
            table.add_column(column, justify="left" if column == "rung" else "right")
        for row in rows:
            table.add_row(*(cell.replace("**", "") for cell in row))
        console.print(table)
        console.print(f"{result['verdict']} (P(agent > rung): 1 - the one-sided p, raw and "
                      "Holm-adjusted across the traded rungs)", soft_wrap=True)
    for name, analysis in payload["configs"].items():
        table = Table(title=f"walk-forward record: {name}")
        for column in ("symbol", "days", "agent Sharpe ± SE", "B&H Sharpe ± SE",
                       "agent - B&H a year", "p", "p Holm"):
            table.add_column(column, justify="right")
        rows = list(analysis["per_symbol"].items()) + [("pooled", analysis["pooled"])]
        for symbol, s in rows:
            def cell(x: dict[str, Any]) -> str:
                se = "n/a" if x["se"] is None else f"{x['se']:.2f}"
                if x.get("se_method") == "bootstrap":
                    se += " (bootstrap)"
                return f"{x['sharpe']:+.2f} ± {se}"
            p_value = s["versus"]["p_value"]
            holm = s.get("p_holm")
            table.add_row(symbol, str(s["days"]), cell(s["agent"]), cell(s["buy_and_hold"]),
                          f"{100 * s['active_annual_mean']:+.1f}%",
                          "n/a" if p_value is None else f"{p_value:.3f}",
                          "" if holm is None else f"{holm:.3f}")
        console.print(table)
        console.print(f"costs: {analysis['costs']['text']}")
    for comparison in payload["comparisons"]:
        console.print(comparison["verdict"])
    # one line however long (the terminal wraps it), so it reads and greps as one sentence
    console.print(f"[bold]Verdict: {payload['verdict']}.[/bold]", soft_wrap=True)


@cli_errors(PROG)
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # fastrl.walkforward loads torch: imported when a run starts, so --help stays quick and
    # the thread policy is set before torch loads
    from fastrl.walkforward.inputs import check_run_inputs, load_run_inputs, run_inputs
    from fastrl.walkforward.plan import plan_windows
    from fastrl.walkforward.report import write_walkforward_report
    from fastrl.walkforward.run import check_run_arguments, load_walkforward_bars, run_walkforward

    if args.resume:
        folder = Path(args.resume)
        settings_path = folder / SETTINGS
        if not settings_path.is_file():
            raise UsageError(f"{folder} holds no walk-forward run ({SETTINGS} missing)")
        given = [a for a in (argv if argv is not None else sys.argv[1:])
                 if a.startswith("--") and a not in ("--resume", "--verbose")]
        if given:
            raise UsageError(f"--resume continues the saved settings; drop {', '.join(given)}")
        settings = _saved_settings(settings_path)
        saved = load_run_inputs(folder)
        configs = _configs(settings, saved["configs"] if saved else None)
    else:
        settings = _settings(args)
        configs = _configs(settings)
    _agents, rungs = _agents_and_rungs(settings)
    first = next(iter(configs.values()))
    spec = _spec(settings, first)
    if args.resume:
        folder = Path(args.resume)
    else:
        name = "-".join(configs)[:40] + "-" + "-".join(first.data.symbols)[:40]
        folder = Path(args.run_dir or Path("runs") / f"wf-{name}-{time.strftime('%Y%m%d-%H%M%S')}")
        if (folder / SETTINGS).exists():
            raise UsageError(f"run folder {folder} already holds a walk-forward run; continue "
                             f"it with --resume {folder} or choose another --run-dir")
    check_run_arguments(configs, spec, seeds=settings.seeds, workers=settings.workers,
                        warm_start=settings.warm_start, torch_threads=settings.threads,
                        rungs=rungs, engine=settings.engine, max_members=settings.max_members)
    bars = load_walkforward_bars(first)
    windows = plan_windows(bars, spec, first.data.freq)  # bad input fails before any write
    if folder.exists():  # a resume on changed configs or bars fails before any write
        check_run_inputs(folder, run_inputs(configs, bars, spec.resolved(first.data.freq),
                                            windows, settings.warm_start))
    folder.mkdir(parents=True, exist_ok=True)
    if not args.resume:
        (folder / SETTINGS).write_text(json.dumps(settings.to_dict(), indent=2))
    named = f", rungs {', '.join(rungs)}" if rungs else ""
    print(f"{PROG}: {len(windows)} windows x {len(configs)} config(s) x {settings.seeds} "
          f"seed(s){named}, trading {windows[0].first_traded} to {windows[-1].last_traded}; "
          f"run folder {folder}", flush=True)
    try:
        with ctrl_c_raises_interrupted():
            run = run_walkforward(configs, spec, seeds=settings.seeds,
                                  workers=settings.workers, warm_start=settings.warm_start,
                                  run_dir=folder, bars=bars, torch_threads=settings.threads,
                                  progress=lambda line: print(line, flush=True), rungs=rungs,
                                  engine=settings.engine, max_members=settings.max_members)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; the finished windows are saved. Continue with: "
              f"{PROG} --resume {folder}", file=sys.stderr)
        return 130
    payload = write_walkforward_report(run, folder)
    _print_summary(payload)
    print(f"report: {folder / 'report.md'} (and report.html, oos_returns.csv, windows.csv)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
