"""Atomic checkpoints (temp file + rename) and ``load_agent`` for evaluation.

A checkpoint (format version 2) holds the trainer's in-memory ``state_dict()`` (networks,
optimiser, normalisers, schedule position, the simulator's snapshot, the RNG stream), the
resolved config and the feature-normaliser state: everything a run needs to continue
exactly, in a size that does not grow with the steps trained. Version 1 checkpoints
(which rebuilt the simulator by replaying every recorded action) still load for
evaluation but cannot be resumed. Loading uses ``weights_only=True``: only tensors and
plain Python values, never arbitrary pickled objects; a file holding anything else is
refused, never retried without that guard.

``inference_precision`` ("fp32" or "bf16") is the arithmetic the trainer validated the
policy in (bf16 autocast when it ran with ``amp``); :func:`load_agent` acts in it, so every
backtest, signal and paper decision serves the policy validation chose. A checkpoint from
before that field is served in fp32 unless its config turned ``amp`` on explicitly (its
trainer then validated in bf16); one that left ``amp`` to the machine's default cannot say
which precision it was validated in.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fastrl.atomic import write_atomic
from fastrl.config import ConfigError, TrainConfig, config_from_dict
from fastrl.markets import market_for
from fastrl.ppo.agent import PRECISIONS, Agent
from fastrl.ppo.ensemble import EnsembleAgent
from fastrl.ppo.heads import head_for
from fastrl.ppo.network import ActorCritic
from fastrl.ppo.normalize import ObservationNormaliser

CHECKPOINT_FORMAT = "fastrl-ppo"
CHECKPOINT_VERSION = 2
READABLE_VERSIONS = (1, 2)  # 1: replay-based resume; its agent still loads for evaluation


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupted or does not fit this code or run."""


def to_storable(value: Any) -> Any:
    """numpy arrays/scalars -> tensors/Python values, recursively (for weights_only loads)."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "biuf":
            # np.array keeps 0-d arrays 0-d (np.ascontiguousarray makes them 1-d)
            return {"__ndarray__": torch.from_numpy(np.array(value, order="C", copy=True))}
        return {"__ndarray_list__": value.tolist(), "dtype": str(value.dtype)}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: to_storable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_storable(v) for v in value)
    return value


def from_storable(value: Any) -> Any:
    """Inverse of :func:`to_storable`."""
    if isinstance(value, dict):
        if set(value) == {"__ndarray__"}:
            return value["__ndarray__"].numpy()
        if set(value) == {"__ndarray_list__", "dtype"}:
            return np.asarray(value["__ndarray_list__"], dtype=value["dtype"])
        return {k: from_storable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(from_storable(v) for v in value)
    return value


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` to ``path`` atomically: a reader sees the old file or the new one."""
    return atomic_torch_save({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION,
                              **state}, path)


def atomic_torch_save(payload: dict[str, Any], path: str | Path) -> Path:
    """``torch.save`` through a temp file in the same folder, fsync and rename."""
    return write_atomic(path, lambda stream: torch.save(payload, stream))


def read_torch_file(path: Path, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(weights_only=True)``; an unreadable file is a CheckpointError naming it."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        # torch's message suggests retrying without weights_only: never pass that on
        found = re.search(r"GLOBAL ([\w.]+)", str(err))
        if found:
            raise CheckpointError(
                f"checkpoint {path} holds a pickled {found.group(1)}, not only tensors and "
                "plain values: it was not written by fastrl or was altered, and is not "
                "loaded") from None
        raise CheckpointError(f"checkpoint {path} is corrupted or unreadable (not a file of "
                              "tensors and plain values)") from None
    except Exception as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if "weights_only" in reason:
            reason = type(err).__name__
        raise CheckpointError(f"checkpoint {path} is corrupted or unreadable ({reason})") from None


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Read and check a checkpoint; errors name the file and what is wrong with it."""
    path = Path(path)
    if path.is_dir():
        for name in ("checkpoints/last.pt", "last.pt", "checkpoints/final.pt", "final.pt"):
            if (path / name).is_file():
                path = path / name
                break
        else:
            raise FileNotFoundError(f"no checkpoint (checkpoints/last.pt) in run folder {path}")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    state = read_torch_file(path, map_location)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a fastrl PPO checkpoint")
    if state.get("version") not in READABLE_VERSIONS:
        raise CheckpointError(
            f"checkpoint {path} has format version {state.get('version')!r}; this fastrl "
            f"reads versions {', '.join(map(str, READABLE_VERSIONS))}"
        )
    if state["version"] >= 2:
        model = ("trainer",)
    else:
        model = ("model", "obs_normaliser")
    missing = [k for k in ("config", *model, "obs_dim", "num_actions") if k not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} is incomplete: missing {', '.join(missing)}")
    state["path"] = str(path)
    return state


def model_state(state: dict) -> tuple[dict, dict]:
    """(network, observation normaliser) state dicts of a loaded checkpoint of any version."""
    if "trainer" in state:
        return state["trainer"]["network"], state["trainer"]["obs_normaliser"]
    return state["model"], state["obs_normaliser"]


def build_network(config: TrainConfig, obs_dim: int, num_actions: int,
                  generator: torch.Generator | None = None) -> ActorCritic:
    """The ActorCritic a TrainConfig describes (``generator`` draws its initial weights).

    Its policy head is the one the config's market's action spec asks for: a simplex
    action gets the simplex head over its logits (``num_actions`` 0).
    """
    spec = market_for(config).action_spec()
    simplex = head_for(spec).simplex
    return ActorCritic(
        obs_dim,
        num_actions,
        config.hidden_sizes,
        shared_trunk=config.shared_trunk,
        activation=config.activation,
        log_std_init=config.log_std_init,
        simplex=simplex,
        generator=generator,
        anchor=spec.anchor_bias(),
    )


def checkpoint_precision(state: dict, config: TrainConfig) -> str:
    """The inference precision a loaded checkpoint's policy was validated in (module doc)."""
    if "inference_precision" not in state:
        return "bf16" if config.amp is True else "fp32"
    precision = state["inference_precision"]
    if precision not in PRECISIONS:
        raise CheckpointError(
            f"checkpoint {state['path']} has inference_precision {precision!r}; this fastrl "
            f"acts in {' or '.join(PRECISIONS)}")
    return precision


def policy_agent(config: TrainConfig, obs_dim: int, num_actions: int, model: dict,
                 obs_normaliser: dict, feature_normaliser: Any, precision: str,
                 device: torch.device | str = "cpu") -> Agent:
    """One policy's :class:`Agent` from its network and observation-normaliser state dicts
    (RuntimeError/KeyError when they do not fit the config's network)."""
    network = build_network(config, obs_dim, num_actions)
    normaliser = ObservationNormaliser(obs_dim, clip=config.obs_clip, enabled=config.norm_obs)
    network.load_state_dict({k: v.cpu() for k, v in model.items()})
    normaliser.load_state_dict({k: v.cpu() for k, v in obs_normaliser.items()})
    network.to(device).eval()
    normaliser.to(device)
    return Agent(network, normaliser, config, feature_normaliser, precision=precision)


def ensemble_or_agent(config: TrainConfig, obs_dim: int, num_actions: int,
                      policies: list[tuple[dict, dict]], feature_normaliser: Any,
                      precision: str, device: torch.device | str = "cpu") -> Any:
    """The :class:`Agent` of one (network, normaliser) pair, or the
    :class:`~fastrl.ppo.ensemble.EnsembleAgent` of several (an ensemble run's members)."""
    agents = [policy_agent(config, obs_dim, num_actions, model, normaliser,
                           feature_normaliser, precision, device)
              for model, normaliser in policies]
    return agents[0] if len(agents) == 1 else EnsembleAgent(agents)


def checkpoint_policies(state: dict) -> list[tuple[dict, dict]]:
    """The (network, observation normaliser) state dicts of a loaded checkpoint's policy:
    one pair, or one per member of an ensemble (a CheckpointError when the count does not
    match its config's ``ensemble``)."""
    members = state.get("trainer", {}).get("members")
    expected = int(state["config"].get("ensemble", 1))
    found = len(members) if members else 1
    if found != expected:
        raise CheckpointError(f"checkpoint {state['path']} holds {found} policies, its config "
                              f"says ensemble {expected}")
    if members:
        return [(m["network"], m["obs_normaliser"]) for m in members]
    return [model_state(state)]


def load_agent(path: str | Path, device: str | torch.device = "cpu") -> Any:
    """A trained :class:`~fastrl.ppo.agent.Agent` from a checkpoint file or a run folder,
    acting in the precision the trainer validated it in (:func:`checkpoint_precision`); an
    ensemble run's checkpoint gives an :class:`~fastrl.ppo.ensemble.EnsembleAgent` of its
    members, with the same interface."""
    device = torch.device(device)
    state = load_checkpoint(path, map_location=device)
    try:
        config = config_from_dict(state["config"])
    except (ConfigError, ValueError, TypeError) as err:
        raise CheckpointError(
            f"checkpoint {state['path']} holds an invalid config: {err}"
        ) from None
    obs_dim, num_actions = int(state["obs_dim"]), int(state["num_actions"])
    feature_state = state.get("feature_normaliser")
    try:
        agent = ensemble_or_agent(
            config, obs_dim, num_actions, checkpoint_policies(state),
            from_storable(feature_state) if feature_state is not None else None,
            checkpoint_precision(state, config), device)
    except (RuntimeError, KeyError) as err:
        first = str(err).strip().splitlines()[0]
        raise CheckpointError(
            f"checkpoint {state['path']} does not match its config's network ({first})"
        ) from None
    # where in training this checkpoint was taken (reports say which one they used and why)
    agent.checkpoint_info = {key: state.get(key) for key in
                             ("update", "global_step", "best_val_sharpe")}
    return agent
