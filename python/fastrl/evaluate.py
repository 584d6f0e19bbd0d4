"""Backtest a trained run on its held-out test days (``fastrl-eval``, and after training).

Loads the run's checkpoint, rebuilds the test split with the training feature normaliser
and runs :func:`fastrl.markets.single.backtest.evaluate_agent` (the same path validation
uses). Writing
the report is the caller's job (:func:`fastrl.report.write_report`); nothing here writes
files.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from fastrl.data.block import MarketBlock
from fastrl.markets.results import EvaluationError  # noqa: F401  (re-exported: the public API)
from fastrl.markets.single.backtest import (  # noqa: F401  (re-exported: the public API)
    baseline_backtest,
    check_test_rows,
    evaluate_agent,
    evaluation_config,
    run_agent,
)
from fastrl.markets.single.result import (  # noqa: F401  (re-exported: the public API)
    COMBINED,
    STRATEGIES,
    STRATEGY_LABELS,
    Backtest,
    EvalResult,
    combine,
)

CHECKPOINT_ORDER = ("best.pt", "final.pt", "last.pt")

def find_checkpoint(run_dir_or_checkpoint: str | os.PathLike) -> tuple[Path, Path]:
    """(checkpoint file, run folder): a run folder's best, else final, else last checkpoint.

    "best" means best validation Sharpe. A run trained without validation days keeps its
    best *training* return there, a noisy pick, so its final checkpoint is used instead.
    """
    path = Path(run_dir_or_checkpoint)
    if path.is_file():
        run_dir = path.parent.parent if path.parent.name == "checkpoints" else path.parent
        return path, run_dir
    if not path.is_dir():
        raise EvaluationError(f"no such run folder or checkpoint: {path}")
    order = CHECKPOINT_ORDER
    try:
        validated = json.loads((path / "config.json").read_text())["data"]["val_days"] > 0
    except (OSError, ValueError, KeyError, TypeError):
        validated = True  # no readable config: keep the documented order
    if not validated:
        order = tuple(name for name in CHECKPOINT_ORDER if name != "best.pt") + ("best.pt",)
    for name in order:
        candidate = path / "checkpoints" / name
        if candidate.is_file():
            return candidate, path
    raise EvaluationError(
        f"run folder {path} has no checkpoint (looked for checkpoints/"
        f"{', checkpoints/'.join(CHECKPOINT_ORDER)}); train first or pass a checkpoint file"
    )


def checkpoint_reason(checkpoint: Path, agent: Any) -> str:
    """Why the backtest uses this checkpoint, in words (the report prints it)."""
    meta = getattr(agent, "checkpoint_info", {}) or {}
    val_days = agent.config.data.val_days or 0
    where = (f"update {meta['update']}, {meta['global_step']:,} env steps"
             if meta.get("update") is not None else "")
    if checkpoint.name == "best.pt" and val_days > 0 and meta.get("best_val_sharpe") is not None:
        return (f"best.pt: the highest validation Sharpe ({meta['best_val_sharpe']:+.2f} on the "
                f"{val_days} validation days, {where}); chosen on validation, never on test days")
    if checkpoint.name == "final.pt" and val_days == 0:
        return (f"final.pt ({where}): trained without validation days (--val-days 0), so no "
                "checkpoint was chosen on held-out data")
    return f"{checkpoint.name} ({where})" if where else checkpoint.name


def _agent_obs_dim(agent: Any) -> int | None:
    for owner in (agent, getattr(agent, "network", None), getattr(agent, "model", None)):
        value = getattr(owner, "obs_dim", None) if owner is not None else None
        if isinstance(value, (int, np.integer)):
            return int(value)
    return None


def evaluate_run(
    run_dir_or_checkpoint: str | os.PathLike,
    symbols: list[str] | tuple[str, ...] | None = None,
    test_days: int | None = None,
    data: str | os.PathLike | None = None,
) -> EvalResult:
    """Loads a trained agent, rebuilds its test split and backtests it (writes nothing).

    ``symbols`` (default: the training symbols) must be symbols the agent trained on.
    ``test_days`` defaults to the training config's and may not exceed it on the training
    data: more days would reach back into bars the agent trained or was tuned on. ``data``
    (a CSV/Parquet path) replaces the training data source, keeping the training feature
    normaliser; its last ``test_days`` days must then be bars the agent never saw.
    ``result.info["run_dir"]`` names the run folder, where the CLI writes the report.
    """
    checkpoint, run_dir = find_checkpoint(run_dir_or_checkpoint)
    from fastrl.ppo.checkpoint import load_agent

    try:
        agent = load_agent(checkpoint, device="cpu")
    except ValueError as exc:  # CheckpointError names the file and what is wrong with it
        raise EvaluationError(str(exc)) from exc
    except (OSError, RuntimeError, KeyError) as exc:
        raise EvaluationError(f"cannot load checkpoint {checkpoint}: {exc}") from exc
    config = agent.config
    if config.portfolio.enabled:
        raise EvaluationError(f"checkpoint {checkpoint} is a portfolio run: evaluate it with "
                              "evaluate_portfolio_run (fastrl-eval does so by itself)")
    data_config = config.data
    trained_days = int(data_config.test_days)
    days = trained_days if test_days is None else int(test_days)
    if days < 1:
        raise EvaluationError(f"--test-days must be >= 1, got {days}")
    if data is not None and not Path(data).exists():
        raise EvaluationError(f"data path {data} does not exist")
    if data is None and days > trained_days:
        raise EvaluationError(
            f"--test-days {days} exceeds the {trained_days} test days held out in training: "
            f"the extra days were used for training or validation; use at most {trained_days} "
            "(or --data with newer bars)"
        )
    market = build_test_block(agent, symbols, days, data)
    expected = _agent_obs_dim(agent)
    obs_dim = config.env.window * market.num_features + 3
    if expected is not None and expected != obs_dim:
        raise EvaluationError(
            f"checkpoint {checkpoint} expects observations of {expected} values but the "
            f"rebuilt test data gives {obs_dim} ({market.num_features} features x window "
            f"{config.env.window} + 3); was it trained on other features?"
        )
    context = int(market.meta.get("context_rows", 0))
    info = {
        "checkpoint": str(checkpoint),
        "checkpoint_reason": checkpoint_reason(checkpoint, agent),
        "run_dir": str(run_dir),
        "symbols": list(market.symbols),
        "test_days": days,
        "data": str(data) if data is not None else data_config.source,
        "held_out_check": market.meta.get(
            "held_out_check", "test days lie inside the training run's held-out test split"
        ),
        "test_bars": {
            market.symbols[s]: [
                _stamp(market, int(market.offsets[s]) + context),
                _stamp(market, int(market.offsets[s + 1]) - 1),
            ]
            for s in range(market.num_segments)
        },
    }
    return evaluate_agent(agent, market, config.env, info=info)


def build_test_block(
    agent: Any,
    symbols: list[str] | tuple[str, ...] | None,
    days: int,
    data: str | os.PathLike | None,
) -> MarketBlock:
    """The test split the agent's config describes, with its training feature normaliser."""
    config = agent.config
    data_config = config.data
    if data is None and data_config.source == "synthetic":
        if symbols:
            raise EvaluationError("a run on the synthetic market evaluates all its symbols")
        if days != data_config.test_days:
            # another split would refit the feature normaliser on other training rows
            raise EvaluationError(
                f"a synthetic-market run is evaluated on its own {data_config.test_days} "
                f"test days, not {days}"
            )
        from fastrl.data.market import load_market

        # the same seed regenerates the same bars, split and normaliser as in training
        try:
            return load_market(config).test
        except ValueError as exc:
            raise EvaluationError(str(exc)) from exc
    trained_symbols = tuple(data_config.symbols)
    chosen = tuple(symbols) if symbols else trained_symbols
    unknown = [s for s in chosen if s not in trained_symbols]
    if unknown:
        raise EvaluationError(
            f"the checkpoint was trained on symbols {list(trained_symbols)}, not {unknown}"
        )
    from fastrl.data import build_market

    normaliser = agent.feature_normaliser
    state = normaliser.state_dict() if hasattr(normaliser, "state_dict") else normaliser
    # on the training data every symbol splits on the training symbols' common calendar, so a
    # subset is evaluated on the same test days it was held out on
    try:
        splits = build_market(
            list(chosen if data is not None else trained_symbols),
            freq=data_config.freq,
            source=str(data) if data is not None else data_config.source,
            test_days=days,
            val_days=0 if data is not None else data_config.val_days,
            window=config.env.window,
            normaliser_state=state,
            repair_ticks=data_config.repair_ticks,
        )
    except (ValueError, OSError) as exc:  # data errors name the file, row and column
        raise EvaluationError(str(exc)) from exc
    if data is not None:
        _check_held_out(agent, splits.test, state)
        return splits.test
    return _segments_of(splits.test, chosen)


def _segments_of(block: MarketBlock, symbols: tuple[str, ...]) -> MarketBlock:
    """The segments of ``symbols`` from ``block``, in that order."""
    if tuple(symbols) == block.symbols:
        return block
    keep = [block.segment(block.symbols.index(symbol)) for symbol in symbols]
    segments = [{"symbol": symbol, **{key: None if getattr(block, key) is None
                                      else getattr(block, key)[rows]
                                      for key in ("open", "close", "features", "timestamps",
                                                  "high", "low")}}
                for symbol, rows in zip(symbols, keep, strict=True)]
    return MarketBlock.from_segments(segments, block.feature_names, block.freq, block.meta)


def _check_held_out(agent: Any, market: MarketBlock, normaliser_state: Any) -> None:
    """Raises when replacement data's test rows start before the training test split did.

    The training split is rebuilt from the training source; rows before its first test
    day were trained or validated on. Without the training source nothing can be checked
    and ``market.meta["held_out_check"]`` says so.
    """
    from fastrl.data import build_market

    config = agent.config
    data_config = config.data
    try:
        training = build_market(
            list(data_config.symbols),  # the training split: the trained symbols' calendar
            freq=data_config.freq,
            source=data_config.source,
            test_days=data_config.test_days,
            val_days=data_config.val_days,
            window=config.env.window,
            normaliser_state=normaliser_state,
            repair_ticks=data_config.repair_ticks,
        )
    except (ValueError, OSError) as exc:
        market.meta["held_out_check"] = f"not verified: training data unavailable ({exc})"
        return
    held_out = training.summary["date_ranges"]["test"]
    context = int(market.meta.get("context_rows", 0))
    for s, symbol in enumerate(market.symbols):
        first = np.datetime64(_stamp(market, int(market.offsets[s]) + context))
        since = np.datetime64(held_out[symbol][0])
        if first < since:
            raise EvaluationError(
                f"the test days of {symbol} in the given data start on {str(first)[:10]}, but "
                f"the agent trained or was validated on bars up to the day before "
                f"{str(since)[:10]}; use fewer --test-days or newer data"
            )
    market.meta["held_out_check"] = "test days start on or after the training test split"


def _stamp(market: MarketBlock, row: int) -> str | None:
    if market.timestamps is None:
        return None
    return str(np.asarray(market.timestamps)[int(row)])


def is_portfolio_run(run_dir_or_checkpoint: str | os.PathLike) -> bool:
    """Whether a run folder (or checkpoint) was trained with ``portfolio.enabled``."""
    _, run_dir = find_checkpoint(run_dir_or_checkpoint)
    try:
        config = json.loads((run_dir / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return bool((config.get("portfolio") or {}).get("enabled", False))


def evaluate_portfolio_run(
    run_dir_or_checkpoint: str | os.PathLike,
    test_days: int | None = None,
) -> Any:
    """A portfolio run's deterministic agent on its held-out test days, beside the
    equal-weight and single-name baselines (:func:`fastrl.markets.portfolio.backtest.
    evaluate_portfolio`); writes nothing. ``test_days`` may not exceed the training's."""
    from fastrl.config import portfolio_env_config
    from fastrl.data.panel import build_panel
    from fastrl.env_portfolio import portfolio_obs_dim
    from fastrl.markets.portfolio.backtest import evaluate_portfolio
    from fastrl.ppo.checkpoint import load_agent

    checkpoint, run_dir = find_checkpoint(run_dir_or_checkpoint)
    try:
        agent = load_agent(checkpoint, device="cpu")
    except ValueError as exc:
        raise EvaluationError(str(exc)) from exc
    config = agent.config
    if not config.portfolio.enabled:
        raise EvaluationError(f"checkpoint {checkpoint} is not a portfolio run; use "
                              "evaluate_run")
    data = config.data
    days = int(data.test_days) if test_days is None else int(test_days)
    if not 1 <= days <= data.test_days:
        raise EvaluationError(f"test_days must lie in [1, {data.test_days}] (the days held "
                              f"out in training), got {days}")
    normaliser = agent.feature_normaliser
    state = normaliser.state_dict() if hasattr(normaliser, "state_dict") else normaliser
    try:
        panel = build_panel(list(data.symbols), freq=data.freq, source=data.source,
                            test_days=days, window=config.env.window,
                            normaliser_state=state, repair_ticks=data.repair_ticks).test
    except (ValueError, OSError) as exc:
        raise EvaluationError(str(exc)) from exc
    obs_dim = portfolio_obs_dim(panel, config.env.window)
    if obs_dim != agent.network.obs_dim:
        raise EvaluationError(f"checkpoint {checkpoint} expects observations of "
                              f"{agent.network.obs_dim} values but the test panel gives "
                              f"{obs_dim}; was it trained on other features?")
    stamps = panel.timestamps
    first = config.env.window - 1
    info = {"checkpoint": str(checkpoint), "run_dir": str(run_dir), "test_days": days,
            "data": data.source,
            "test_rows": None if stamps is None else [str(stamps[first])[:10],
                                                      str(stamps[-1])[:10]]}
    return evaluate_portfolio(agent, panel, portfolio_env_config(config), info=info)
