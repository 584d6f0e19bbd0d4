"""Ensembles: K policies trained side by side (one population) deployed as one policy.

An :class:`EnsembleAgent` has :class:`~fastrl.ppo.agent.Agent`'s face (``act``,
``config``, ``feature_state``, ``precision``, ``checkpoint_info``), so evaluation, the
walk-forward, signal and paper take it as they take one agent. Its deterministic action is
the mean of its members' exposures:

- continuous (gaussian) actions: the mean of the members' clipped actions. The simulator's
  exposure is the action or, anchored, 1 - the action: affine, so the mean action is the
  action of the mean exposure, and it stays in the action range;
- portfolio (simplex) actions: the mean of the members' symbol weights, a convex mix of
  points of the capped simplex, so it stays within the caps;
- discrete actions: the mean of the levels the members choose (exposures, or anchored
  underweights). That may lie between levels, which a discrete env cannot take, so the
  ensemble acts in the env's continuous twin
  (:func:`fastrl.markets.single.backtest.continuous_twin`): the same market, costs and
  rules, taking the level value itself instead of its index. The simulator maps
  a discrete index to its level value and then steps exactly as a continuous action of that
  value, so the twin trades a level exactly as the discrete env trades its index.

Where every member's action of a row is the same, that action is the row's, bit for bit (a
mean of equal floats may round off them), so an untrained anchored ensemble is its
benchmark exactly.

Every path that steps an env with a policy asks the policy which env it acts in
(:func:`fastrl.markets.results.acting_env_config`): a plain Agent acts in the env it was
trained in.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from fastrl.config import TrainConfig
from fastrl.markets.single.backtest import continuous_twin
from fastrl.ppo.agent import Agent


def member_seeds(seed: int, members: int) -> list[int]:
    """The seeds of an ensemble of ``members`` whose run seed is ``seed``: member 0 is the
    single-seed run's seed, so an ensemble extends the run it would replace."""
    return [int(seed) + m for m in range(int(members))]


class EnsembleAgent:
    """K member :class:`Agent` s of one config acting as one policy (module doc).

    ``members`` must share the config (the members of one ensemble run); ``config`` is
    theirs. ``act(obs, deterministic=False)`` is member 0's sampled action (as a level
    value where discrete): the Agent interface's stochastic act; what an ensemble deploys
    is its deterministic mean."""

    def __init__(self, members: Sequence[Agent]) -> None:
        members = list(members)
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least 2 members, got {len(members)}")
        self.members = members
        first = members[0]
        self.config: TrainConfig = first.config
        self.feature_normaliser = first.feature_normaliser
        self.precision = first.precision
        self.head = first.head
        self.checkpoint_info: dict[str, Any] = {}
        # discrete: the members' level indices -> level values (exposures or underweights)
        self.levels: np.ndarray | None = None
        if not self.head.continuous:
            self.levels = np.asarray(self.config.env.position_levels, dtype=np.float64)

    def __len__(self) -> int:
        return len(self.members)

    @property
    def feature_state(self) -> Any:
        return self.members[0].feature_state

    @property
    def amp(self) -> bool:
        return self.members[0].amp

    @property
    def device(self) -> Any:
        return self.members[0].device

    @property
    def network(self) -> Any:
        """Member 0's network (its ``obs_dim`` is every member's)."""
        return self.members[0].network

    def acting_env(self, env_config: Any) -> Any:
        """The env the ensemble's actions go to: discrete envs as their continuous twin."""
        return env_config if self.levels is None else continuous_twin(env_config)

    def member_actions(self, obs: np.ndarray) -> list[np.ndarray]:
        """Each member's deterministic env action at ``obs``, as exposures' stand-ins the
        mean is taken over: clipped continuous actions, weights, or level values."""
        actions = [member.act(obs, deterministic=True) for member in self.members]
        if self.levels is not None:
            actions = [self.levels[a] for a in actions]
        return actions

    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        """The ensemble's actions for raw observations [N, obs_dim]: the mean of the members'
        (module doc); float64, for the env :meth:`acting_env` describes."""
        if not deterministic:
            chosen = self.members[0].act(obs, deterministic=False)
            return self.levels[chosen] if self.levels is not None else chosen
        actions = self.member_actions(obs)
        total = np.zeros_like(actions[0], dtype=np.float64)
        for action in actions:  # a fixed order: the same sum in training and serving
            total += action
        mean = total / len(actions)
        # K copies of x summed and divided by K need not round back to x (1/A: the
        # benchmark's weight): a row on which every member agrees is that row, exactly
        first = np.asarray(actions[0], dtype=np.float64)
        agree = np.ones(first.shape[:1], dtype=bool)
        for action in actions[1:]:
            agree &= (np.asarray(action) == first).reshape(len(first), -1).all(axis=1)
        mean[agree] = first[agree]
        return mean


__all__ = ["EnsembleAgent", "member_seeds"]
