"""Rollout: env -> storage, with observation normalisation and staging copies, per step.

The simulator writes straight into *staging* tensors (page-locked on CUDA, so the
host-to-device copies below are asynchronous; on CPU the staging tensors are the device
tensors). Every tensor a step touches is allocated once here; normalisation and reward
scaling run in place. The only per-step allocations left are the policy's own forward
pass and, on the rare steps where episodes end, the final-observation rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from fastrl.ppo.network import ActorCritic, sample
from fastrl.ppo.normalize import ObservationNormaliser, RewardScaler
from fastrl.ppo.storage import RolloutStorage
from fastrl.ppo.update import autocast_context

STAGED = ("obs", "rewards", "terminated", "truncated")


def staging_tensors(num_envs: int, obs_dim: int, device: torch.device) -> dict[str, torch.Tensor]:
    """The host tensors the simulator writes its outputs into (pinned when training on CUDA)."""
    pin = device.type == "cuda"
    specs = {"obs": ((num_envs, obs_dim), torch.float32), "rewards": ((num_envs,), torch.float64),
             "terminated": ((num_envs,), torch.bool), "truncated": ((num_envs,), torch.bool)}
    return {name: torch.zeros(shape, dtype=dtype, pin_memory=pin)
            for name, (shape, dtype) in specs.items()}


class Rollout:
    """Collects ``storage.num_steps`` steps of ``env`` into ``storage``.

    ``staging`` must be the tensors whose ``.numpy()`` views the env writes into (see
    :func:`staging_tensors`). ``raw_obs`` is the current raw observation on the device and
    ``next_obs`` its normalised form, the policy's next input. ``action_map`` turns the
    stored float64 host actions into what the env takes (the portfolio's logits -> weights);
    without it continuous actions are clipped to ``action_range``.
    """

    def __init__(
        self,
        env: Any,
        staging: dict[str, torch.Tensor],
        storage: RolloutStorage,
        network: ActorCritic,
        obs_normaliser: ObservationNormaliser,
        reward_scaler: RewardScaler,
        *,
        device: torch.device,
        amp: bool,
        action_range: tuple[float, float],
        policy_forward: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None,
        action_map: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        self.env = env
        self.staging = staging
        self.storage = storage
        self.network = network
        self.obs_normaliser = obs_normaliser
        self.reward_scaler = reward_scaler
        self.device = device
        self.amp = amp
        self.low, self.high = (float(x) for x in action_range)
        # not `or`: a compiled module raises in __len__ (torch 2.11)
        self.policy_forward = network if policy_forward is None else policy_forward
        self.continuous = network.continuous
        n, obs_dim = staging["obs"].shape
        on_cuda = device.type == "cuda"
        if on_cuda:
            self.raw_obs = torch.zeros((n, obs_dim), dtype=torch.float32, device=device)
            self.rewards = torch.zeros(n, dtype=torch.float64, device=device)
            self.terminated = torch.zeros(n, dtype=torch.bool, device=device)
            self.truncated = torch.zeros(n, dtype=torch.bool, device=device)
        else:  # the simulator's buffers are already on the device
            self.raw_obs = staging["obs"]
            self.rewards = staging["rewards"]
            self.terminated = staging["terminated"]
            self.truncated = staging["truncated"]
        self.next_obs = torch.zeros((n, obs_dim), dtype=torch.float32, device=device)
        # host side of the actions sent to the env (pinned for the device -> host copy)
        action_dtype = torch.float64 if self.continuous else torch.int64
        self.host_actions = torch.zeros((n, *storage.actions.shape[2:]), dtype=action_dtype,
                                        pin_memory=on_cuda)
        self.host_actions_np = self.host_actions.numpy()
        self.action_map = action_map

    # ------------------------------------------------------------------ observations

    def _stage_in(self) -> None:
        """Device copies of what the simulator just wrote (no-ops on CPU)."""
        if self.raw_obs is self.staging["obs"]:
            return
        self.raw_obs.copy_(self.staging["obs"], non_blocking=True)
        self.rewards.copy_(self.staging["rewards"], non_blocking=True)
        self.terminated.copy_(self.staging["terminated"], non_blocking=True)
        self.truncated.copy_(self.staging["truncated"], non_blocking=True)

    def _observe(self, update_stats: bool = True) -> None:
        if update_stats:
            self.obs_normaliser.update(self.raw_obs)
        self.obs_normaliser.normalise_into(self.raw_obs, self.next_obs)

    def start(self, seed: int) -> None:
        """Reset the env and take its first observation (into the normaliser's statistics)."""
        self.env.reset(seed=seed)
        self._stage_in()
        self._observe()

    def restore(self, raw_obs: torch.Tensor) -> None:
        """Continue from a snapshot: ``raw_obs`` is the observation the env last returned."""
        self.staging["obs"].copy_(raw_obs)
        self._stage_in()
        self._observe(update_stats=False)

    # ------------------------------------------------------------------------ actions

    def _env_actions(self, action: torch.Tensor) -> np.ndarray:
        self.host_actions.copy_(action)  # float32 -> float64 is exact
        if self.action_map is not None:
            return self.action_map(self.host_actions_np)
        if self.continuous:
            # Clip in float64: a float32 clamp to 0.3 gives 0.30000001, which the env
            # rightly refuses as outside [min_pos, max_pos].
            np.clip(self.host_actions_np, self.low, self.high, out=self.host_actions_np)
        return self.host_actions_np

    # ------------------------------------------------------------------------ collect

    @torch.no_grad()
    def collect(self, generator: torch.Generator | None) -> dict[str, Any]:
        """One rollout into ``storage``; returns seconds per phase and finished episodes."""
        storage, network = self.storage, self.network
        timing = {"env": 0.0, "inference": 0.0, "copy": 0.0}
        episodes: dict[str, list] = {"r": [], "l": [], "equity": []}
        for step in range(storage.num_steps):
            t0 = time.perf_counter()
            storage.obs[step].copy_(self.next_obs)
            t1 = time.perf_counter()
            with autocast_context(self.device, self.amp):
                policy_out, value = self.policy_forward(self.next_obs)
            dist = network.distribution(policy_out)
            action = sample(dist, generator)
            storage.actions[step].copy_(action)
            storage.logprobs[step].copy_(dist.log_prob(action))
            storage.values[step].copy_(value)
            env_action = self._env_actions(action)
            t2 = time.perf_counter()
            _, _, _, truncated, info = self.env.step(env_action)
            t3 = time.perf_counter()
            self._stage_in()
            torch.logical_or(self.terminated, self.truncated, out=storage.dones[step])
            storage.truncated[step].copy_(self.truncated)
            self.reward_scaler.scale_into(self.rewards, storage.dones[step], storage.rewards[step])
            truncated_rows = np.flatnonzero(truncated)
            if truncated_rows.size:  # bootstrap V(final obs) of truncated episodes
                final_obs = torch.from_numpy(info["final_obs"][truncated_rows]).to(self.device)
                rows = torch.from_numpy(truncated_rows).to(self.device)
                with autocast_context(self.device, self.amp):
                    final_values = network.value(self.obs_normaliser(final_obs))
                storage.final_values[step].index_copy_(0, rows, final_values.float())
            finished = np.flatnonzero(info["_episode"])
            if finished.size:
                for key in episodes:
                    episodes[key].extend(np.asarray(info["episode"][key])[finished].tolist())
            self._observe()
            t4 = time.perf_counter()
            timing["copy"] += (t1 - t0) + (t4 - t3)
            timing["inference"] += t2 - t1
            timing["env"] += t3 - t2
        return {"timing": timing, "episodes": episodes}
