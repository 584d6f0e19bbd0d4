"""A trained run as the live path sees it: the agent, its config and its identity.

:func:`open_run` loads the checkpoint the backtest would use (:func:`fastrl.evaluate.
find_checkpoint`), refuses a run folder whose checkpoint does not match its ``config.json``
(a hand-edited or mixed-up folder would trade another model than the one the user
believes), and names the run by a hash of its checkpoint file: a journal records that
identity and refuses to be continued by another run.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastrl.config import TrainConfig, config_to_dict
from fastrl.evaluate import find_checkpoint
from fastrl.features_long import has_long_sets
from fastrl.live.book import LiveInputError
from fastrl.live.config_view import ConfigView
from fastrl.markets.results import acting_env_config


@dataclass
class LiveRun(ConfigView):
    """A loaded run: ``agent`` (an :class:`~fastrl.ppo.agent.Agent`), its ``config``,
    ``checkpoint`` file and ``run_dir``, and ``run_id``, the checkpoint file's hash."""

    agent: Any
    config: TrainConfig
    checkpoint: Path
    run_dir: Path
    run_id: str

    @property
    def long_features(self) -> bool:
        """Whether the agent observes a long feature set (``LONG_WARMUP_BARS`` of history
        before a decision)."""
        return has_long_sets(self.config.data.features)

    @property
    def normaliser_state(self) -> dict:
        return self.agent.feature_state

    def env_config(self) -> Any:
        """The backtest's env config (deterministic full-segment episodes, the run's costs),
        as the agent acts in it (an ensemble of discrete members: the continuous twin)."""
        return acting_env_config(self.agent, self.market.evaluation_env_config())

    def act(self, env: Any) -> Any:
        """The agent's deterministic actions at the live env's observations (the
        backtest's policy call)."""
        return self.agent.act(env.env.buffers["obs"], deterministic=True)

    def describe(self) -> str:
        return f"run {self.run_id[:12]}"

    def notes(self, env: Any, bars: Any, stamp: Any) -> list[str]:
        """What a signal notes about the policy (a rule notes its warm-up)."""
        return []

    def warmup_notes(self, bars: Any, stamp: Any) -> list[str]:
        """Symbols too short of history at ``stamp`` (a rule's warm-up; an agent's
        features refuse a short history themselves)."""
        return []

    def identity(self) -> dict[str, Any]:
        """What a journal records about the run that writes it."""
        return {"run_id": self.run_id, "run_dir": str(self.run_dir),
                "checkpoint": self.checkpoint.name, "symbols": list(self.symbols),
                "freq": self.freq, "kind": self.market.kind}


def file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _differences(saved: Any, loaded: Any, prefix: str = "") -> list[str]:
    if isinstance(saved, dict) and isinstance(loaded, dict):
        keys = sorted(set(saved) | set(loaded))
        return [d for k in keys for d in _differences(saved.get(k), loaded.get(k),
                                                       f"{prefix}{k}.")]
    return [prefix.rstrip(".")] if saved != loaded else []


def open_run(run_dir_or_checkpoint: str | os.PathLike) -> LiveRun:
    """Loads a run for signal and paper trading; refuses a mismatched folder (LiveInputError)."""
    from fastrl.ppo.checkpoint import load_agent  # lazy: torch, not needed by --help

    checkpoint, run_dir = find_checkpoint(run_dir_or_checkpoint)
    try:
        agent = load_agent(checkpoint, device="cpu")
    except (OSError, RuntimeError, KeyError) as exc:
        raise LiveInputError(f"cannot load checkpoint {checkpoint}: {exc}") from exc
    config_path = run_dir / "config.json"
    if config_path.is_file():
        try:
            saved = json.loads(config_path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise LiveInputError(f"{config_path} is not valid JSON: {exc}") from None
        # round-trip through JSON so tuples and lists compare alike
        loaded = json.loads(json.dumps(config_to_dict(agent.config)))
        changed = _differences(saved, loaded)
        if changed:
            shown = ", ".join(changed[:5]) + (" ..." if len(changed) > 5 else "")
            raise LiveInputError(
                f"checkpoint {checkpoint} does not match its run folder's config "
                f"{config_path}: they differ in {shown}; the checkpoint would trade another "
                "model than the config describes (restore config.json or pass the matching "
                "checkpoint file)")
    if agent.feature_normaliser is None:
        raise LiveInputError(f"checkpoint {checkpoint} holds no feature normaliser: it cannot "
                             "build live features as in training")
    if agent.config.data.source == "synthetic":
        raise LiveInputError(f"run {run_dir} trained on the synthetic market: there are no "
                             "real bars to trade it on")
    return LiveRun(agent=agent, config=agent.config, checkpoint=checkpoint, run_dir=run_dir,
                   run_id=file_hash(checkpoint)[:32])


__all__ = ["LiveInputError", "LiveRun", "file_hash", "open_run"]
