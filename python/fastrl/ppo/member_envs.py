"""Members on their own markets: one vector env per member, all writing into one set of rows.

A population whose members train on different bars (the windows of a walk-forward, each
on its own training span, features normalised on that span) cannot share one simulator
over one block. :class:`MemberEnvs` gives member m its own env of n rows over its own block
and shows the P envs as one env of P x n rows: every output buffer (observations, rewards,
flags, final observations, episode statistics) is one array whose rows ``[m*n, (m+1)*n)``
member m's env writes in place, so the rollout reads them as it reads one env's, with no
copy. A step is P calls into the simulator (each releases the GIL).

Snapshots (:meth:`get_state`) are every member env's arrays stacked by rows; the 0-d
reset-seed keys are repeated on each of a member's rows, so that slicing a snapshot by
rows (what :meth:`fastrl.ppo.members.MemberState.keep` does) slices it by member too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from fastrl.markets.base import allocate_buffers

# the 0-d keys of a CoreVecEnv snapshot: one value per env object, not per row
SCALAR_STATE_KEYS = ("reset_seed", "reset_count")


class MemberEnvs:
    """P envs of n rows each (member m's over ``blocks[m]``), seen as one env of P x n rows.

    ``make(block, num_envs, *, seed, buffers)`` builds one member's env (the market's
    :meth:`~fastrl.markets.base.Market.make_env` with its config and threads bound);
    ``buffers``: the caller's arrays for some outputs (the rollout's staging tensors), of
    P x n rows; the rest are allocated here with the first env's shapes and dtypes.
    """

    def __init__(self, make: Callable[..., Any], blocks: Sequence[Any], n: int,
                 seeds: Sequence[int], buffers: dict[str, np.ndarray] | None = None) -> None:
        if len(blocks) != len(seeds) or not blocks:
            raise ValueError(f"MemberEnvs: {len(blocks)} blocks for {len(seeds)} seeds")
        self.n, self.members = int(n), len(blocks)
        rows = self.n * self.members
        given = dict(buffers or {})
        # the first member's env tells the output specs; it is rebuilt on the shared rows
        probe = make(blocks[0], self.n, seed=int(seeds[0]))
        specs = {name: (array.dtype, array.shape[1:]) for name, array in probe._buffers.items()}
        self.obs_dim = int(probe.obs_dim)
        self._buffers = allocate_buffers(rows, self.obs_dim, specs, given)
        self.envs = [make(block, self.n, seed=int(seed), buffers=self._rows(m))
                     for m, (block, seed) in enumerate(zip(blocks, seeds, strict=True))]
        self.num_envs = rows
        self.single_observation_space = probe.single_observation_space
        self.single_action_space = probe.single_action_space
        self._episode = {key: self._buffers[name] for key, name in _episode_buffers(probe)}

    def _rows(self, m: int) -> dict[str, np.ndarray]:
        rows = slice(m * self.n, (m + 1) * self.n)
        return {name: array[rows] for name, array in self._buffers.items()}

    def reset_members(self, seeds: Sequence[int]) -> None:
        """Member m's env starts new episodes from ``seeds[m]`` (a lone env's reset)."""
        for env, seed in zip(self.envs, seeds, strict=True):
            env.reset(seed=int(seed))

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        for env in self.envs:
            env.reset(seed=seed)
        return self._buffers["obs"], {}

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                  np.ndarray, dict[str, Any]]:
        n = self.n
        for m, env in enumerate(self.envs):
            env.step(actions[m * n:(m + 1) * n])
        b = self._buffers
        info = {"final_obs": b["final_obs"], "_final_obs": b["done"],
                "episode": self._episode, "_episode": b["done"]}
        return b["obs"], b["rewards"], b["terminated"], b["truncated"], info

    def get_state(self) -> dict[str, np.ndarray]:
        """Every member env's snapshot, stacked by rows (0-d keys repeated per row)."""
        states = [env.get_state() for env in self.envs]
        return {key: np.concatenate([_per_row(state[key], self.n) for state in states])
                for key in states[0]}

    def completed_state(self, state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return state

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        """Loads a :meth:`get_state` snapshot: every member env's rows (each checked by its
        env before anything of it is written)."""
        n = self.n
        parts = []
        for m in range(self.members):
            rows = slice(m * n, (m + 1) * n)
            parts.append({key: (np.asarray(value[m * n]) if key in SCALAR_STATE_KEYS
                                else value[rows]) for key, value in state.items()})
        for env, part in zip(self.envs, parts, strict=True):
            env.set_state(part)

    def close(self) -> None:
        for env in self.envs:
            env.close()


def _per_row(value: np.ndarray, n: int) -> np.ndarray:
    value = np.asarray(value)
    return np.repeat(value[None], n, axis=0) if value.ndim == 0 else value


def _episode_buffers(env: Any) -> list[tuple[str, str]]:
    """(episode key, buffer name) of ``env``'s episode statistics: its ``_episode`` views."""
    out = []
    for key, view in env._episode.items():
        name = next(name for name, array in env._buffers.items() if array is view)
        out.append((key, name))
    return out


__all__ = ["MemberEnvs"]
