"""PPO for fastrl: actor-critic networks, rollout storage + GAE, the clipped update,
schedules, normalisers, checkpoints and the training loop.

Start at :class:`fastrl.ppo.trainer.Trainer` (``step()``, ``state_dict()``; ``fastrl-train``
is a thin CLI over it, attaching the hooks in :mod:`fastrl.ppo.hooks`) and
:func:`fastrl.ppo.checkpoint.load_agent` for evaluation. The PPO itself is one engine,
:class:`fastrl.ppo.population.Population` (P members over one simulator: a Trainer is its
one-member case, population-based training its P-member case), built from the market's
action head (:mod:`~fastrl.ppo.heads`), the stacked networks (:mod:`~fastrl.ppo.stacked`)
and optimiser (:mod:`~fastrl.ppo.batched_adam`), :mod:`~fastrl.ppo.rollout`,
:mod:`~fastrl.ppo.storage`, :mod:`~fastrl.ppo.normalize` and
:func:`fastrl.ppo.update.clipped_objective`; :mod:`~fastrl.ppo.members` holds who may be a
member and the engine's state as a whole.
"""

from __future__ import annotations

from fastrl.ppo.agent import Agent
from fastrl.ppo.checkpoint import CheckpointError, load_agent, load_checkpoint, save_checkpoint
from fastrl.ppo.hooks import Hook, TrainResult
from fastrl.ppo.network import ActorCritic
from fastrl.ppo.population import Population
from fastrl.ppo.rollout import Rollout
from fastrl.ppo.schedules import ScheduleSpec, ScheduleTensors
from fastrl.ppo.storage import RolloutStorage, compute_gae
from fastrl.ppo.trainer import Trainer, train
from fastrl.ppo.update import PPOLoss, ppo_update

__all__ = [
    "ActorCritic", "Agent", "CheckpointError", "Hook", "PPOLoss", "Population", "Rollout",
    "RolloutStorage",
    "ScheduleSpec", "ScheduleTensors", "TrainResult", "Trainer", "compute_gae",
    "load_agent", "load_checkpoint", "ppo_update", "save_checkpoint", "train",
]
