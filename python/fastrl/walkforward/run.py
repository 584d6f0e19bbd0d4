"""Run a walk-forward: train every window on its past, then trade the windows in order.

Phase 1 trains each (config, seed, window) on the bars :func:`~fastrl.walkforward.plan.
window_bars` hands it (through ``last_seen`` only), picks its policy on the window's own
validation slice exactly as ``fastrl-train`` does (validation backtest after every update,
early stopping, the best-validation weights), and, with a run folder, saves it atomically
as ``<config>/seed<k>/window_NNN.pt``: a resumed run skips the windows on disk, and an
interrupted window is trained again from its seed, so the result is bit-identical to an
uninterrupted run. Without ``warm_start`` windows are independent and ``workers`` processes
train them side by side, each with ``torch_threads`` threads, so ``workers`` never changes
a result.

Phase 2 trades the frozen deterministic policies window after window through the simulator
with the training config's costs and market rules (equity floor off: a record keeps going).
Each symbol's holding (shares, cash, exposure, last fill) carries from one window into the
next, so the policy's change at a boundary is traded and costed like any other; the last
window closes the position and pays for it, as buy-and-hold does.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from fastrl.config import TrainConfig, config_from_dict, config_to_dict
from fastrl.data.block import MarketBlock
from fastrl.data.loaders import load_bars_report
from fastrl.markets import market_for
from fastrl.ppo.checkpoint import (
    atomic_torch_save,
    ensemble_or_agent,
    from_storable,
    read_torch_file,
    to_storable,
)
from fastrl.ppo.hooks import Hook, KeepBestHook, ValidationHook
from fastrl.ppo.trainer import Trainer
from fastrl.walkforward.inputs import check_run_inputs, run_inputs, save_run_inputs
from fastrl.walkforward.members import train_members, train_members_parallel
from fastrl.walkforward.plan import WalkForwardSpec, Window, plan_windows, window_bars
from fastrl.walkforward.rungs import check_rungs, ladder_rungs, rung_records
from fastrl.walkforward.window import (
    WindowJob,
    WindowResult,
    train_market,
    training_bars,
    training_config,
    window_seed,
)

Progress = Callable[[str], None]
ENGINES = ("auto", "population", "pool")  # how train_windows trains its jobs


def trade_market(bars: Mapping[str, pd.DataFrame], window: Window, config: TrainConfig,
                 feature_normaliser: dict) -> Any:
    """The block the window trades, featurised with the window's normaliser.

    Each symbol's rows start at its last bar at or before the close of the decision day
    (the bar the first decision is made at; its close the previous window's last mark) and
    run through ``last_traded``, after the observation window's context rows. So every bar
    after the decision point is traded exactly once across the windows, for 5-minute bars
    too, and a symbol without a bar on the decision day starts from its previous bar.
    """
    traded = window_bars(bars, window, "trade")
    decided = window.decision_end
    # the earliest day any symbol's decision bar lies on: the split keeps every bar from it
    first_day = min(frame.index[frame.index < decided][-1] for frame in traded.values())
    try:
        market = market_for(config).from_bars(
            traded, val_days=0, test_start=pd.Timestamp(first_day).normalize(),
            normaliser_state=feature_normaliser, source=f"walk-forward window {window.index}")
    except ValueError as error:
        raise ValueError(f"window {window.index} (trading {window.first_traded} to "
                         f"{window.last_traded}): {error}") from None
    return _from_decision(market.test, decided, int(config.env.window) - 1)


def _from_decision(block: Any, decided: pd.Timestamp, context: int) -> Any:
    """``block`` with every segment cut to start ``context`` rows before its last bar before
    ``decided`` (the rows dropped are bars an earlier window traded)."""
    limit = decided.to_datetime64()
    if not isinstance(block, MarketBlock):  # a portfolio panel: one calendar for all symbols
        row = int(np.searchsorted(block.timestamps, limit, side="left")) - 1
        return block.rows(row - context, block.timestamps.shape[0], block.meta.get("split"))
    segments = []
    for s, symbol in enumerate(block.symbols):
        rows = block.segment(s)
        stamps = block.timestamps[rows]
        start = rows.start + int(np.searchsorted(stamps, limit, side="left")) - 1 - context
        cut = slice(start, rows.stop)
        segments.append({"symbol": symbol, "open": block.open[cut], "close": block.close[cut],
                         "features": block.features[cut], "timestamps": block.timestamps[cut],
                         "high": None if block.high is None else block.high[cut],
                         "low": None if block.low is None else block.low[cut]})
    return MarketBlock.from_segments(segments, block.feature_names, block.freq, block.meta)


def train_window(config_values: dict, window: Window, bars: Mapping[str, pd.DataFrame],
                 spec: WalkForwardSpec, *, name: str, seed_index: int,
                 warm: dict[str, Any] | None = None, torch_threads: int = 1) -> WindowResult:
    """Trains one window (in this process or a worker) and returns its policy."""
    torch.set_num_threads(int(torch_threads))
    base = config_from_dict(config_values)
    seed = window_seed(base.seed, seed_index, window.index)
    config = training_config(base, window, seed, spec.val_days)
    market = train_market(bars, window, config, spec)
    started = time.perf_counter()
    trainer = Trainer(config, market=market)
    engine = trainer.engine
    # an ensemble's members: each its own network and normaliser (views of the engine's)
    modules = [(trainer.network, trainer.obs_normaliser)] if trainer.members == 1 else [
        (engine.member_network(m, view=True), engine.obs_normaliser.member(m, copy=False))
        for m in range(trainer.members)]
    if warm is not None:
        for (network, normaliser), state in zip(modules, warm.get("members", [warm]),
                                                strict=True):
            network.load_state_dict(state["network"])
            normaliser.load_state_dict(state["obs_normaliser"])
    keep = KeepBestHook()
    curve = CurveHook()
    hooks = [ValidationHook(), keep, curve] if spec.val_days > 0 else []
    outcome = trainer.train(hooks)
    agent = keep.agent(trainer)

    def cpu_state(module: Any) -> dict[str, Any]:
        return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}

    def states(pairs: list[tuple[Any, Any]]) -> dict[str, Any]:
        """One policy's network and normaliser; an ensemble's as ``members`` besides."""
        out = {"network": cpu_state(pairs[0][0]), "obs_normaliser": cpu_state(pairs[0][1])}
        if len(pairs) > 1:
            out["members"] = [{"network": cpu_state(network),
                               "obs_normaliser": cpu_state(normaliser)}
                              for network, normaliser in pairs]
        return out

    chosen = [(agent.network, agent.obs_normaliser)] if trainer.members == 1 else [
        (member.network, member.obs_normaliser) for member in agent.members]
    return WindowResult(
        config=name, seed=seed_index, window=window.index,
        policy={**states(chosen),
                "feature_normaliser": to_storable(agent.feature_normaliser),
                "obs_dim": int(trainer.obs_dim), "num_actions": int(trainer.num_actions),
                "inference_precision": agent.precision},
        final=states(modules),
        chosen_update=keep.update if spec.val_days > 0 else trainer.update,
        best_val_sharpe=trainer.best_val_sharpe, updates=int(trainer.update),
        env_steps=int(trainer.global_step), seconds=time.perf_counter() - started,
        reason=outcome.reason, val_curve=curve.points)


class CurveHook(Hook):
    """Records [env step, validation Sharpe] of each validation (after ValidationHook)."""

    def __init__(self) -> None:
        self.points: list[list[float]] = []

    def on_step(self, trainer: Any, row: dict[str, Any]) -> None:
        if "val/sharpe" in row:
            self.points.append([trainer.global_step, float(row["val/sharpe"])])


def build_agent(config: TrainConfig, policy: dict[str, Any]) -> Any:
    """The frozen deterministic Agent of a window's saved policy (on the CPU; an ensemble's
    :class:`~fastrl.ppo.ensemble.EnsembleAgent` where it saved ``members``), acting in
    the precision its window's validation chose it in. A policy saved before the field was
    validated under the config's ``amp`` (bf16 when it was set true, else fp32), the rule of
    :func:`~fastrl.ppo.checkpoint.checkpoint_precision`."""
    members = policy.get("members") or [policy]
    return ensemble_or_agent(
        config, int(policy["obs_dim"]), int(policy["num_actions"]),
        [(m["network"], m["obs_normaliser"]) for m in members],
        from_storable(policy["feature_normaliser"]),
        policy.get("inference_precision") or ("bf16" if config.amp is True else "fp32"))


def member_agents(config: TrainConfig, policy: dict[str, Any]) -> list[Any]:
    """Each member of a window's saved ensemble as its own frozen Agent (one policy: itself)."""
    agent = build_agent(config, policy)
    return list(getattr(agent, "members", [agent]))


# ----------------------------------------------------------------------------- storage


def _window_path(run_dir: Path, name: str, seed_index: int, window: int) -> Path:
    return run_dir / "windows" / name / f"seed{seed_index}" / f"window_{window:03d}.pt"


def _save(result: WindowResult, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_torch_save(dataclasses.asdict(result), path)


def _load(path: Path) -> WindowResult | None:
    if not path.is_file():
        return None
    return WindowResult(**read_torch_file(path))


# ----------------------------------------------------------------------------- training


def train_windows(values: Mapping[str, dict], jobs: Sequence[WindowJob],
                  bars: Mapping[str, pd.DataFrame], spec: WalkForwardSpec, *,
                  workers: int = 1, torch_threads: int = 1, warm_start: bool = False,
                  trained: dict[tuple[str, int, int], WindowResult] | None = None,
                  on_result: Callable[[WindowResult], None] | None = None,
                  engine: str = "auto", max_members: int | None = None,
                  ) -> dict[tuple[str, int, int], WindowResult]:
    """Trains every job (``values``: config name -> its config dict; ``spec`` resolved) and
    returns ``trained`` (created when None) with each result added under
    :attr:`WindowJob.key`. ``on_result`` hears each result as it is added. With
    ``warm_start`` a window starts from the final weights of the window before it (in
    ``trained`` or trained earlier in ``jobs``), so jobs then train in order, one at a time.

    ``engine``: ``population`` trains the jobs as members of populations
    (:mod:`fastrl.walkforward.members`: at most ``max_members`` each, default sized to the
    memory available; ``workers`` processes split them), ``pool`` each job as its own
    Trainer (in ``workers`` processes), ``auto`` the population wherever it applies: every
    config one policy (an ensemble is itself a population of members validated together)
    and no ``warm_start`` (a window then starts from the one before it).
    """
    if engine not in ENGINES:
        raise ValueError(f"--engine must be one of {ENGINES}, got {engine!r}")
    trained = {} if trained is None else trained

    def finished(result: WindowResult) -> None:
        trained[(result.config, result.seed, result.window)] = result
        if on_result is not None:
            on_result(result)

    def job(item: WindowJob) -> dict[str, Any]:
        warm = None
        if warm_start and item.window.index > 0:
            warm = trained[(item.name, item.seed_index, item.window.index - 1)].final
        return {"config_values": values[item.name], "window": item.window,
                "bars": training_bars(bars, item.window, spec), "spec": spec,
                "name": item.name, "seed_index": item.seed_index, "warm": warm,
                "torch_threads": torch_threads}

    ensembles = any(int(config_from_dict(values[name]).ensemble) > 1
                    for name in {j.name for j in jobs})
    if engine == "population" and (warm_start or ensembles):
        raise ValueError("--engine population trains independent one-policy windows: it "
                         "does not apply to --warm-start or --ensemble; use --engine pool")
    together = not warm_start and not ensembles
    if together and engine != "pool" and jobs:
        if workers == 1 or len(jobs) <= 1:
            train_members(values, jobs, bars, spec, torch_threads=torch_threads,
                          max_members=max_members, on_result=finished)
        else:
            train_members_parallel(values, jobs, bars, spec, workers=int(workers),
                                   torch_threads=torch_threads, max_members=max_members,
                                   on_result=finished)
        return trained
    if workers == 1 or len(jobs) <= 1:
        for item in jobs:
            finished(train_window(**job(item)))
        return trained
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=int(workers), mp_context=context) as pool:
        pending = {pool.submit(train_window, **job(item)) for item in jobs}
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    finished(future.result())
        except BaseException:
            for future in pending:
                future.cancel()
            raise
    return trained


# ----------------------------------------------------------------------------- the run


@dataclass
class WalkForwardRun:
    """Every trained window and the traded record of each config and seed."""

    spec: WalkForwardSpec
    windows: list[Window]
    configs: dict[str, Any]
    seeds: int
    trained: dict[tuple[str, int, int], WindowResult]
    records: dict[tuple[str, int], pd.DataFrame] = field(default_factory=dict)
    rungs: list[str] = field(default_factory=list)  # the ladder: the benchmark, then the rules
    # (config, rung) -> the rule's record on the config's days (seed 0's), under its env
    rung_records: dict[tuple[str, str], pd.DataFrame] = field(default_factory=dict)
    # config -> each ensemble member's own record (seed 0's windows, member m's policies):
    # the spread the ensemble's record is read against; configs with one policy absent
    member_records: dict[str, list[pd.DataFrame]] = field(default_factory=dict)
    freq: str = "1d"
    seconds: float = 0.0  # wall time of this call: training (or loading) and trading
    train_seconds: float = 0.0  # of which phase 1, training the windows not on disk yet
    resumed: int = 0  # windows loaded from the run folder instead of trained

    def record(self, name: str | None = None, seed: int = 0) -> pd.DataFrame:
        return self.records[(name or next(iter(self.configs)), seed)]

    def windows_frame(self) -> pd.DataFrame:
        """windows.csv: per window (and config, seed), its dates, choice and cost."""
        rows = []
        for name in self.configs:
            for seed in range(self.seeds):
                for window in self.windows:
                    result = self.trained[(name, seed, window.index)]
                    rows.append({**result.summary(), "train_start": window.train_start,
                                 "val_start": window.val_start, "last_seen": window.last_seen,
                                 "first_traded": window.first_traded,
                                 "last_traded": window.last_traded, "traded_days": window.days,
                                 "symbols": " ".join(window.symbols)})
        return pd.DataFrame(rows)


def load_walkforward_bars(config: TrainConfig) -> dict[str, pd.DataFrame]:
    """Every symbol's validated bars from the config's data section (loaded once)."""
    data = config.data
    if data.source == "synthetic":
        raise ValueError("walk-forward needs dated bars: use the bundled data or --data PATH")
    return dict(load_bars_report(list(data.symbols), data.freq, data.source,
                                 repair_ticks=data.repair_ticks).bars)


def check_run_arguments(configs: Mapping[str, Any], spec: WalkForwardSpec, *, seeds: int = 1,
                        workers: int = 1, warm_start: bool = False,
                        torch_threads: int = 1, rungs: Sequence[str] = (),
                        engine: str = "auto", max_members: int | None = None) -> None:
    """The checks of :func:`run_walkforward`'s arguments that need no bars (ValueError naming
    the flag), so a command can make them before it writes anything."""
    if not configs:
        raise ValueError("walk-forward needs at least one config")
    if engine not in ENGINES:
        raise ValueError(f"--engine must be one of {ENGINES}, got {engine!r}")
    if max_members is not None and int(max_members) < 1:
        raise ValueError(f"--members must be >= 1, got {max_members}")
    if engine == "population" and (warm_start or any(int(c.ensemble) > 1
                                                     for c in configs.values())):
        raise ValueError("--engine population trains independent one-policy windows: it "
                         "does not apply to --warm-start or --ensemble; use --engine pool")
    if int(seeds) < 1:
        raise ValueError(f"--seeds must be >= 1, got {seeds}")
    if int(workers) < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    if int(torch_threads) < 1:
        raise ValueError(f"--threads must be >= 1, got {torch_threads}")
    if warm_start and workers > 1:
        raise ValueError("--warm-start trains each window from the one before: use --workers 1")
    first = next(iter(configs.values()))
    for name, config in configs.items():
        if not market_for(config).joins_late_listings and spec.late_listings != "error":
            raise ValueError(f"config {name}: a portfolio trades every symbol in every window, "
                             "so --late-listings join does not apply; choose a --start where "
                             "every symbol has enough history")
        if (config.data.freq, tuple(config.data.symbols)) != (first.data.freq,
                                                               tuple(first.data.symbols)):
            raise ValueError(f"config {name} trades {config.data.symbols} at "
                             f"{config.data.freq}; every compared config must trade the same "
                             "symbols at the same frequency (set them with the flags)")
    check_rungs(rungs, market_for(first).kind)


def run_walkforward(
    configs: Mapping[str, Any],
    spec: WalkForwardSpec,
    *,
    seeds: int = 1,
    workers: int = 1,
    warm_start: bool = False,
    run_dir: str | Path | None = None,
    bars: Mapping[str, pd.DataFrame] | None = None,
    torch_threads: int = 1,
    progress: Progress | None = None,
    rungs: Sequence[str] = (),
    engine: str = "auto",
    max_members: int | None = None,
) -> WalkForwardRun:
    """Trains and trades every config on the same windows and seeds.

    ``configs`` maps a name to a TrainConfig; all share the first one's data section.
    ``bars`` defaults to loading that data section. With ``run_dir``, finished windows
    are saved there and a rerun with the same folder resumes from them; the folder's
    ``inputs.json`` (:mod:`fastrl.walkforward.inputs`) makes a rerun on other configs, bars
    or windows fail (:class:`~fastrl.walkforward.inputs.RunInputsChanged`) before anything
    trains.

    ``rungs``: rules (names in :data:`fastrl.rules.RULES`) traded on every config's days
    beside it (:mod:`fastrl.walkforward.rungs`); the record's benchmark is always one. They
    are not trained and are not part of the run's inputs.
    """
    check_run_arguments(configs, spec, seeds=seeds, workers=workers, warm_start=warm_start,
                        torch_threads=torch_threads, rungs=rungs, engine=engine,
                        max_members=max_members)
    first = next(iter(configs.values()))
    freq = first.data.freq
    bars = dict(bars) if bars is not None else load_walkforward_bars(first)
    windows = plan_windows(bars, spec, freq)
    spec = spec.resolved(freq)
    say = progress or (lambda _message: None)
    folder = Path(run_dir) if run_dir is not None else None
    if folder is not None:  # the saved windows must come from these very inputs
        inputs = run_inputs(configs, bars, spec, windows, warm_start)
        check_run_inputs(folder, inputs)
        save_run_inputs(folder, inputs)
    started = time.perf_counter()

    trained: dict[tuple[str, int, int], WindowResult] = {}
    todo: list[tuple[str, int, Window]] = []
    for name in configs:
        for seed_index in range(int(seeds)):
            for window in windows:
                saved = (_load(_window_path(folder, name, seed_index, window.index))
                         if folder is not None else None)
                if saved is not None:
                    trained[(name, seed_index, window.index)] = saved
                else:
                    todo.append((name, seed_index, window))
    resumed = len(trained)
    if resumed:
        say(f"resuming: {resumed} of {resumed + len(todo)} windows already trained")
    values = {name: config_to_dict(config) for name, config in configs.items()}

    def finished(result: WindowResult) -> None:
        if folder is not None:
            _save(result, _window_path(folder, result.config, result.seed, result.window))
        window = windows[result.window]
        say(f"{result.config} seed {result.seed} window {result.window + 1}/{len(windows)} "
            f"(trades {window.first_traded} to {window.last_traded}): "
            f"{result.env_steps:,} steps, {result.seconds:.1f} s, chosen update "
            f"{result.chosen_update}")

    train_windows(values, [WindowJob(*item) for item in todo], bars, spec, workers=workers,
                  torch_threads=torch_threads, warm_start=warm_start, trained=trained,
                  on_result=finished, engine=engine, max_members=max_members)

    run = WalkForwardRun(spec=spec, windows=windows, configs=dict(configs), seeds=int(seeds),
                         trained=trained, freq=freq)
    run.train_seconds = time.perf_counter() - started
    run.resumed = resumed
    for name, config in configs.items():
        for seed_index in range(int(seeds)):
            run.records[(name, seed_index)] = trade_record(
                config, bars, windows,
                [trained[(name, seed_index, w.index)].policy for w in windows])
    for name, config in configs.items():
        if int(config.ensemble) > 1:
            policies = [trained[(name, 0, w.index)].policy for w in windows]
            run.member_records[name] = [
                trade_record(config, bars, windows, policies, member=m)
                for m in range(int(config.ensemble))]
    run.rungs = ladder_rungs(rungs, market_for(first).kind)
    for name, config in configs.items():
        for rung, record in rung_records(config, first, bars, windows, run.records[(name, 0)],
                                         run.rungs).items():
            run.rung_records[(name, rung)] = record
    run.seconds = time.perf_counter() - started
    return run


# ----------------------------------------------------------------------------- phase 2


def trade_record(config: TrainConfig, bars: Mapping[str, pd.DataFrame], windows: list[Window],
                 policies: list[dict[str, Any]], *, member: int | None = None) -> pd.DataFrame:
    """The out-of-sample record of one config and seed: every window's frozen policy trades
    its days in turn, the holding carried across the boundaries, beside the market's
    buy-and-hold (``market.walkforward_record``: one row per bar and symbol, or per bar for
    a portfolio's one book). ``member``: an ensemble's member m trades alone instead."""

    def agent_for(policy: dict[str, Any]) -> Any:
        if member is None:
            return build_agent(config, policy)
        return member_agents(config, policy)[member]

    return market_for(config).walkforward_record(
        bars, windows, policies, agent_for=agent_for,
        block_for=lambda window, agent: trade_market(bars, window, config,
                                                     agent.feature_normaliser))
