"""Backtest a trained run on its held-out test days (``fastrl-eval``, and after training).

Loads the run's checkpoint, has the run's market rebuild its test block with the training
feature normaliser (``market.test_block``) and backtest the agent there
(``market.evaluate``, the same path validation uses). Writing the report is the caller's
job (``market.report``); nothing here writes files.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fastrl.markets import Market, market_for
from fastrl.markets.results import EvaluationError  # noqa: F401  (re-exported: the public API)
from fastrl.markets.single.backtest import (  # noqa: F401  (re-exported: the public API)
    baseline_backtest,
    check_test_rows,
    evaluate_agent,
    evaluation_config,
    run_agent,
)
from fastrl.markets.single.result import (  # noqa: F401  (re-exported: the public API)
    Backtest,
    EvalResult,
    combine,
)
from fastrl.rungs import add_rungs, check_rungs
from fastrl.strategies import (  # noqa: F401  (re-exported: the public API)
    COMBINED,
    STRATEGIES,
    STRATEGY_LABELS,
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


@dataclass
class TrainedRun:
    """A run's checkpoint loaded for evaluation: the ``agent``, the ``checkpoint`` file, the
    ``run_dir`` and the run's ``market``."""

    agent: Any
    checkpoint: Path
    run_dir: Path
    market: Market


def load_run(run_dir_or_checkpoint: str | os.PathLike) -> TrainedRun:
    """The checkpoint the backtest uses (:func:`find_checkpoint`), loaded on the CPU."""
    # lazy: torch, which a command's --help must not import
    from fastrl.ppo.checkpoint import load_agent

    checkpoint, run_dir = find_checkpoint(run_dir_or_checkpoint)
    try:
        agent = load_agent(checkpoint, device="cpu")
    except ValueError as exc:  # CheckpointError names the file and what is wrong with it
        raise EvaluationError(str(exc)) from exc
    except (OSError, RuntimeError, KeyError) as exc:
        raise EvaluationError(f"cannot load checkpoint {checkpoint}: {exc}") from exc
    return TrainedRun(agent, checkpoint, run_dir, market_for(agent.config))


def evaluate_run(
    run_dir_or_checkpoint: str | os.PathLike | TrainedRun,
    symbols: list[str] | tuple[str, ...] | None = None,
    test_days: int | None = None,
    data: str | os.PathLike | None = None,
    rungs: Sequence[str] | None = None,
) -> Any:
    """Loads a trained agent, rebuilds its test block and backtests it (writes nothing): an
    EvalResult for a single-symbol run, a PortfolioResult for a portfolio.

    ``symbols`` (default: the training symbols) must be symbols the agent trained on.
    ``test_days`` defaults to the training config's and may not exceed it on the training
    data: more days would reach back into bars the agent trained or was tuned on. ``data``
    (a CSV/Parquet path) replaces the training data source, keeping the training feature
    normaliser; its last ``test_days`` days must then be bars the agent never saw. A
    portfolio is evaluated on its own symbols and data only.
    ``rungs`` names the rules (:mod:`fastrl.rules`, of the run's kind) backtested beside
    the agent on the same days with the same costs (default: every rule of the kind;
    ``["none"]``: none), their parameters from the run's ``rules`` section; the result's
    ``ladder()`` compares the agent with each.
    ``result.info["run_dir"]`` names the run folder, where the CLI writes the report.
    """
    run = (run_dir_or_checkpoint if isinstance(run_dir_or_checkpoint, TrainedRun)
           else load_run(run_dir_or_checkpoint))
    agent, checkpoint, market = run.agent, run.checkpoint, run.market
    names = check_rungs(rungs, market.kind)  # before any work: a bad name fails at once
    block, held_out = market.test_block(agent, symbols=symbols, test_days=test_days,
                                        data=data)
    expected = _agent_obs_dim(agent)
    obs_dim = market.obs_dim(block)
    if expected is not None and expected != obs_dim:
        raise EvaluationError(
            f"checkpoint {checkpoint} expects observations of {expected} values but the "
            f"rebuilt test data gives {obs_dim} ({block.num_features} features, window "
            f"{agent.config.env.window}); was it trained on other features?"
        )
    info = {
        "checkpoint": str(checkpoint),
        "checkpoint_reason": checkpoint_reason(checkpoint, agent),
        "run_dir": str(run.run_dir),
        **held_out,
    }
    members = getattr(agent, "members", None)
    if members:
        info["ensemble"] = ensemble_spread(market, agent, members, block)
    result = market.evaluate(agent, block, info=info)
    return add_rungs(market, result, agent, block, names, data=data)


def ensemble_spread(market: Any, agent: Any, members: Sequence[Any], block: Any
                    ) -> dict[str, Any]:
    """An ensemble's backtest Sharpe on ``block`` beside each member's own (each member
    trading alone): the record of the members the ensemble's mean exposure is read against.
    The Sharpe is the market's validation score (single symbols: the equal-capital combined
    Sharpe; a portfolio: the portfolio's)."""
    sharpes = [float(market.validation_scores(m, block)["sharpe"]) for m in members]
    return {"members": len(sharpes), "ensemble": float(market.validation_scores(agent, block)
                                                       ["sharpe"]),
            "sharpes": sharpes, "min": float(np.min(sharpes)),
            "median": float(np.median(sharpes)), "max": float(np.max(sharpes))}

