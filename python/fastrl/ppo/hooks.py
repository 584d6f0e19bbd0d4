"""What runs around :meth:`Trainer.step`: validation, early stopping, the run folder, progress.

A hook sees the trainer before the first step, each step's metrics row (it may add keys,
and returns True to stop training early) and the end. Only :class:`RunFolderHook` writes
files, and only into the run folder it was given:

- ``config.json``, ``metrics.jsonl`` (one flushed line per update, bracketed by start/end
  events) and TensorBoard events in ``tb/``;
- ``checkpoints/{last,best,final}.pt``: the trainer's :meth:`state_dict` plus what
  :func:`fastrl.ppo.checkpoint.load_agent` needs, written atomically.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from fastrl.config import TrainConfig, config_to_dict
from fastrl.ppo.agent import Agent
from fastrl.ppo.checkpoint import ensemble_or_agent, save_checkpoint, to_storable
from fastrl.ppo.network import ActorCritic
from fastrl.ppo.normalize import ObservationNormaliser


class HookedTrainer(Protocol):
    """What a hook reads and writes of :class:`fastrl.ppo.trainer.Trainer` (the trainer
    imports this module, so hooks name its face rather than the class)."""

    config: TrainConfig
    run_dir: Path | None
    callback: Any
    device: torch.device
    amp: bool
    compile: bool
    obs_dim: int
    num_actions: int
    network: ActorCritic
    obs_normaliser: ObservationNormaliser
    agent: Agent
    global_step: int
    update: int
    num_updates: int
    batch_size: int
    elapsed_before: float
    resumed_from: str | None
    best_val_sharpe: float | None
    best_train_return: float | None
    validations_without_improvement: int

    @property
    def has_validation(self) -> bool: ...

    def validate(self) -> dict[str, float]: ...

    def state_dict(self) -> dict[str, Any]: ...


@dataclass
class TrainResult:
    """How a training run ended and where its files are (``run_dir`` None: in memory)."""

    run_dir: Path | None
    reason: str  # "completed" | "interrupted" | "early_stop"
    global_step: int
    updates: int
    best_val_sharpe: float | None
    final_checkpoint: Path | None
    last_metrics: dict[str, Any]


class Hook:
    """No-op base: override what you need."""

    def on_train_start(self, trainer: HookedTrainer) -> None:
        """Before the first step of :meth:`Trainer.train`."""

    def on_step(self, trainer: HookedTrainer, row: dict[str, Any]) -> bool | None:
        """After each step; add keys to ``row``; return True to stop training early."""
        return None

    def on_train_end(self, trainer: HookedTrainer, result: TrainResult,
                     hard_interrupt: bool) -> None:
        """After the last step (``hard_interrupt``: a second Ctrl-C cut an update short)."""


class ValidationHook(Hook):
    """Validation backtest every ``val_every`` updates; best tracking and early stopping.

    Adds ``val/sharpe``, ``val/return`` and ``val/improved`` to the row. Training stops
    after ``patience`` validations without an improvement of more than ``min_delta``.
    """

    def on_step(self, trainer: HookedTrainer, row: dict[str, Any]) -> bool:
        config = trainer.config
        if trainer.update % config.val_every:
            return False
        started = time.perf_counter()
        result = trainer.validate()
        row["val/sharpe"] = result["sharpe"]
        row["val/return"] = result["return"]
        row["time/val_seconds"] = time.perf_counter() - started
        best = trainer.best_val_sharpe
        if best is None or result["sharpe"] > best + config.min_delta:
            trainer.best_val_sharpe = result["sharpe"]
            trainer.validations_without_improvement = 0
            row["val/improved"] = True
            return False
        trainer.validations_without_improvement += 1
        return 0 < config.patience <= trainer.validations_without_improvement


class KeepBestHook(Hook):
    """Keeps, in memory, the policy of the best validation so far (runs without a run folder:
    benches, tuning); put it after :class:`ValidationHook`. :meth:`agent` rebuilds it."""

    def __init__(self) -> None:
        self.state: dict[str, Any] | None = None
        self.update: int | None = None

    def on_step(self, trainer: HookedTrainer, row: dict[str, Any]) -> None:
        if row.get("val/improved"):
            self.update = trainer.update
            self.state = {"policies": policy_states(trainer)}

    def agent(self, trainer: HookedTrainer) -> Any:
        """An :class:`~fastrl.ppo.agent.Agent` with the kept weights (the trainer's own
        network when nothing was kept), on the CPU; an ensemble's
        :class:`~fastrl.ppo.ensemble.EnsembleAgent`."""
        policies = self.state["policies"] if self.state else policy_states(trainer)
        return ensemble_or_agent(trainer.config, trainer.obs_dim, trainer.num_actions,
                                 policies, trainer.agent.feature_normaliser,
                                 trainer.agent.precision)


def policy_states(trainer: HookedTrainer) -> list[tuple[dict, dict]]:
    """Copies of the trainer's policy as (network, observation normaliser) state dicts: one
    pair, or one per ensemble member."""
    engine = getattr(trainer, "engine", None)
    members = int(getattr(trainer, "members", 1))
    if members == 1 or engine is None:
        modules = [(trainer.network, trainer.obs_normaliser)]
    else:
        modules = [(engine.member_network(m), engine.obs_normaliser.member(m))
                   for m in range(members)]
    return [({k: v.detach().clone() for k, v in network.state_dict().items()},
             {k: v.detach().clone() for k, v in normaliser.state_dict().items()})
            for network, normaliser in modules]


class BestTrainingReturnHook(Hook):
    """Without validation data, "best" is the best mean training episode return."""

    def on_step(self, trainer: HookedTrainer, row: dict[str, Any]) -> None:
        value = row.get("charts/episode_return")
        if value is None:
            return
        if trainer.best_train_return is None or value > trainer.best_train_return:
            trainer.best_train_return = value
            row["train/improved"] = True


class CallbackHook(Hook):
    """Calls ``callback(row)`` after each step (the CLI's progress view)."""

    def __init__(self, callback: Any) -> None:
        self.callback = callback

    def on_step(self, trainer: HookedTrainer, row: dict[str, Any]) -> None:
        self.callback(row)


def checkpoint_state(trainer: HookedTrainer) -> dict[str, Any]:
    """What a checkpoint holds: the trainer's state dict, its config and the agent's extras."""
    return {
        "config": config_to_dict(trainer.config),
        "obs_dim": trainer.obs_dim,
        "num_actions": trainer.num_actions,
        "global_step": trainer.global_step,
        "update": trainer.update,
        "elapsed": trainer.elapsed_before,
        "best_val_sharpe": trainer.best_val_sharpe,
        "feature_normaliser": to_storable(trainer.agent.feature_normaliser),
        # the precision validation acted in: load_agent serves the policy in it
        "inference_precision": trainer.agent.precision,
        "trainer": trainer.state_dict(),
    }


class RunFolderHook(Hook):
    """config.json, metrics.jsonl, TensorBoard and atomic checkpoints in ``run_dir``.

    ``best.pt`` follows ``val/improved`` (or ``train/improved`` without validation),
    ``last.pt`` every ``checkpoint_every`` updates and at the end, ``final.pt`` at the end
    unless a hard interrupt cut the last update short (``last.pt`` then stays the last
    consistent state).
    """

    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.run_dir = Path(run_dir)
        self._metrics: Any = None
        self._writer: Any = None
        self._elapsed_at_start = 0.0
        self._started = 0.0

    def _elapsed(self) -> float:
        return self._elapsed_at_start + time.time() - self._started

    def save(self, trainer: HookedTrainer, name: str) -> Path:
        state = checkpoint_state(trainer)
        state["elapsed"] = self._elapsed()
        return save_checkpoint(state, self.run_dir / "checkpoints" / f"{name}.pt")

    def on_train_start(self, trainer: HookedTrainer) -> None:
        from torch.utils.tensorboard import SummaryWriter

        config = trainer.config
        self._started = time.time()
        self._elapsed_at_start = trainer.elapsed_before
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.json").write_text(
            json.dumps(config_to_dict(config), indent=2) + "\n", encoding="utf-8"
        )
        metrics_path = self.run_dir / "metrics.jsonl"
        if trainer.resumed_from:
            # Updates logged after the checkpoint (a hard interrupt) are run again now: drop
            # them from the log, and have TensorBoard purge their events.
            self._drop_rows_after(metrics_path, trainer.update)
            self._writer = SummaryWriter(str(self.run_dir / "tb"),
                                         purge_step=trainer.global_step + 1)
        else:
            self._writer = SummaryWriter(str(self.run_dir / "tb"))
        self._metrics = open(metrics_path, "a", encoding="utf-8")  # noqa: SIM115
        start = {"event": "start", "config": config_to_dict(config),
                 "total_timesteps": trainer.num_updates * trainer.batch_size,
                 "time": self._started, "device": str(trainer.device), "amp": trainer.amp,
                 "compile": trainer.compile}
        if trainer.resumed_from:
            start.update(resumed_from=trainer.resumed_from, global_step=trainer.global_step,
                         update=trainer.update)
        self._write(start)

    def on_step(self, trainer: HookedTrainer, row: dict[str, Any]) -> None:
        if row.get("val/improved") or row.get("train/improved"):
            self.save(trainer, "best")
        if trainer.update % trainer.config.checkpoint_every == 0:
            row["checkpoint"] = str(self.save(trainer, "last"))
        self._write(row)
        for key, value in row.items():
            if "/" in key and isinstance(value, (int, float)) and not isinstance(value, bool):
                self._writer.add_scalar(key, value, trainer.global_step)

    def on_train_end(self, trainer: HookedTrainer, result: TrainResult,
                     hard_interrupt: bool) -> None:
        try:
            if not hard_interrupt:
                result.final_checkpoint = self.save(trainer, "final")
                self.save(trainer, "last")
        finally:
            self._write({"event": "end", "reason": result.reason,
                         "global_step": trainer.global_step, "update": trainer.update,
                         "time": time.time(), "elapsed": self._elapsed(),
                         "best_val_sharpe": trainer.best_val_sharpe,
                         "final_checkpoint": (str(result.final_checkpoint)
                                              if result.final_checkpoint else None)})
            self._metrics.close()
            self._writer.close()

    def _write(self, record: dict[str, Any]) -> None:
        self._metrics.write(json.dumps(record, allow_nan=False, default=str) + "\n")
        self._metrics.flush()

    @staticmethod
    def _drop_rows_after(path: Path, update: int) -> None:
        if not path.is_file():
            return
        kept = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue  # a line cut short by the interrupt
            if "event" not in row and row.get("update", 0) > update:
                continue
            kept.append(line)
        tmp = path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")
        os.replace(tmp, path)


def default_hooks(trainer: HookedTrainer) -> list[Hook]:
    """Validation (or best training return), then the run folder, then the callback."""
    hooks: list[Hook] = [ValidationHook() if trainer.has_validation else BestTrainingReturnHook()]
    if trainer.run_dir is not None:
        hooks.append(RunFolderHook(trainer.run_dir))
    if trainer.callback is not None:
        hooks.append(CallbackHook(trainer.callback))
    return hooks
