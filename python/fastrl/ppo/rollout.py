"""Rollout: env -> storage for P members at once, with observation normalisation and staging.

The simulator writes straight into *staging* tensors (page-locked on CUDA, so the
host-to-device copies below are asynchronous; on CPU the staging tensors are the device
tensors). Member m owns env rows [m*n, (m+1)*n); observations go through the policy as
[P, n, D], so P stacked networks act in one batched pass. Every tensor a step touches is
allocated once here; normalisation and reward scaling run in place. The only per-step
allocations left are the policy's own forward pass and, on the rare steps where episodes
end, the final-observation rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from fastrl.ppo.normalize import ObservationNormaliser, RewardScaler
from fastrl.ppo.storage import RolloutStorage

STAGED = ("obs", "rewards", "terminated", "truncated")
EPISODE_KEYS = ("r", "l", "equity")

# obs [P, B, D] -> (policy output [P, B, ...], value [P, B]), float32
PolicyForward = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
# obs [P, B, D] -> value [P, B], float32
PolicyValue = Callable[[torch.Tensor], torch.Tensor]
# policy output [P, n, ...] -> (action [P*n, ...], its log-prob [P*n])
PolicySample = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def staging_tensors(num_envs: int, obs_dim: int, device: torch.device) -> dict[str, torch.Tensor]:
    """The host tensors the simulator writes its outputs into (pinned when training on CUDA)."""
    pin = device.type == "cuda"
    specs = {"obs": ((num_envs, obs_dim), torch.float32), "rewards": ((num_envs,), torch.float64),
             "terminated": ((num_envs,), torch.bool), "truncated": ((num_envs,), torch.bool)}
    return {name: torch.zeros(shape, dtype=dtype, pin_memory=pin)
            for name, (shape, dtype) in specs.items()}


class Rollout:
    """Collects ``storage.num_steps`` steps of ``env`` (P x n envs) into ``storage``.

    ``staging`` must be the tensors whose ``.numpy()`` views the env writes into (see
    :func:`staging_tensors`). ``raw_obs`` [P*n, D] is the current raw observation on the
    device and ``next_obs`` [P, n, D] its normalised form, the policy's next input.
    ``forward``, ``value`` and ``sample`` are the policy (all members at once);
    ``continuous``: the actions are real-valued (float64 on the host, else int64 levels);
    ``to_env`` turns the host actions into what the env takes (the action head's
    :meth:`~fastrl.ppo.heads.ActionHead.host_map`: clipped exposures, simplex weights).
    """

    def __init__(
        self,
        env: Any,
        staging: dict[str, torch.Tensor],
        storage: RolloutStorage,
        obs_normaliser: ObservationNormaliser,
        reward_scaler: RewardScaler,
        *,
        members: int,
        device: torch.device,
        forward: PolicyForward,
        value: PolicyValue,
        sample: PolicySample,
        continuous: bool,
        to_env: Callable[[np.ndarray], np.ndarray],
    ) -> None:
        self.env, self.staging, self.storage = env, staging, storage
        self.obs_normaliser, self.reward_scaler = obs_normaliser, reward_scaler
        self.forward, self.value, self.sample = forward, value, sample
        self.device = device
        self.to_env = to_env
        rows, obs_dim = staging["obs"].shape
        self.members, self.n = int(members), rows // int(members)
        on_cuda = device.type == "cuda"
        if on_cuda:
            self.raw_obs = torch.zeros((rows, obs_dim), dtype=torch.float32, device=device)
            self.rewards = torch.zeros(rows, dtype=torch.float64, device=device)
            self.terminated = torch.zeros(rows, dtype=torch.bool, device=device)
            self.truncated = torch.zeros(rows, dtype=torch.bool, device=device)
        else:  # the simulator's buffers are already on the device
            self.raw_obs = staging["obs"]
            self.rewards = staging["rewards"]
            self.terminated = staging["terminated"]
            self.truncated = staging["truncated"]
        shape = (self.members, self.n, obs_dim)
        self.next_obs = torch.zeros(shape, dtype=torch.float32, device=device)
        self.final_obs = torch.zeros(shape, dtype=torch.float32, device=device)
        # host side of the actions sent to the env (pinned for the device -> host copy)
        action_dtype = torch.float64 if continuous else torch.int64
        self.host_actions = torch.zeros((rows, *storage.actions.shape[2:]), dtype=action_dtype,
                                        pin_memory=on_cuda)
        self.host_actions_np = self.host_actions.numpy()

    # ------------------------------------------------------------------ observations

    def stage_in(self) -> None:
        """Device copies of what the simulator just wrote (no-ops on CPU)."""
        if self.raw_obs is self.staging["obs"]:
            return
        for name, target in (("obs", self.raw_obs), ("rewards", self.rewards),
                             ("terminated", self.terminated), ("truncated", self.truncated)):
            target.copy_(self.staging[name], non_blocking=True)

    def observe(self, update_stats: bool = True) -> None:
        raw = self.raw_obs.view(self.next_obs.shape)
        if update_stats:
            self.obs_normaliser.update(raw)
        self.obs_normaliser.normalise_into(raw, self.next_obs)

    def start(self, seed: int) -> None:
        """Reset the env and take its first observation (into the normaliser's statistics)."""
        self.env.reset(seed=seed)
        self.begin()

    def begin(self) -> None:
        """Take the env's current observation as the first (into the normaliser's
        statistics): after a reset, or after a snapshot of fresh episodes was loaded."""
        self.stage_in()
        self.observe()

    def restore(self, raw_obs: torch.Tensor) -> None:
        """Continue from a snapshot: ``raw_obs`` is the observation the env last returned
        (normalised with the current statistics, which it already went into)."""
        self.staging["obs"].copy_(raw_obs)
        self.stage_in()
        self.observe(update_stats=False)

    # ------------------------------------------------------------------------ actions

    def env_actions(self, action: torch.Tensor) -> np.ndarray:
        self.host_actions.copy_(action)  # float32 -> float64 is exact
        return self.to_env(self.host_actions_np)

    def _final_values(self, step: int, rows: np.ndarray, final_obs: np.ndarray) -> None:
        """V(final obs) of the truncated episodes in ``rows`` into ``final_values[step]``."""
        index = torch.from_numpy(rows).to(self.device)
        final = torch.from_numpy(final_obs[rows]).to(self.device)
        # every member in one padded pass, for one member too: the value network on all n
        # rows of each member rounds as it does in the rollout (a GEMM over only the ended
        # rows may round otherwise), so a member's values do not depend on how many members
        # it trains beside
        padded = self.final_obs.view(self.members * self.n, -1)
        padded.zero_()
        padded.index_copy_(0, index, final)
        self.obs_normaliser.normalise_into(self.final_obs, self.final_obs)
        values = self.value(self.final_obs)
        self.storage.final_values[step].index_copy_(0, index,
                                                    values.reshape(-1).index_select(0, index))

    # ------------------------------------------------------------------------ collect

    @torch.no_grad()
    def collect(self) -> dict[str, Any]:
        """One rollout into ``storage``; returns seconds per phase and, per member, the
        finished episodes' returns, lengths and final equities."""
        storage, p, n = self.storage, self.members, self.n
        timing = {"env": 0.0, "inference": 0.0, "copy": 0.0}
        episodes: list[dict[str, list]] = [{k: [] for k in EPISODE_KEYS} for _ in range(p)]
        for step in range(storage.num_steps):
            t0 = time.perf_counter()
            storage.obs[step].copy_(self.next_obs.view(p * n, -1))
            t1 = time.perf_counter()
            policy_out, value = self.forward(self.next_obs)
            action, logprob = self.sample(policy_out)
            storage.actions[step].copy_(action)
            storage.logprobs[step].copy_(logprob)
            storage.values[step].copy_(value.reshape(p * n))
            env_action = self.env_actions(action)
            t2 = time.perf_counter()
            _, _, _, truncated, info = self.env.step(env_action)
            t3 = time.perf_counter()
            self.stage_in()
            torch.logical_or(self.terminated, self.truncated, out=storage.dones[step])
            storage.truncated[step].copy_(self.truncated)
            self.reward_scaler.scale_into(self.rewards.view(p, n), storage.dones[step].view(p, n),
                                          storage.rewards[step].view(p, n))
            truncated_rows = np.flatnonzero(truncated)
            if truncated_rows.size:  # bootstrap V(final obs) of truncated episodes
                self._final_values(step, truncated_rows, info["final_obs"])
            finished = np.flatnonzero(info["_episode"])
            if finished.size:
                for key in EPISODE_KEYS:
                    values = np.asarray(info["episode"][key])[finished].tolist()
                    for row, value_e in zip(finished.tolist(), values, strict=True):
                        episodes[row // n][key].append(value_e)
            self.observe()
            t4 = time.perf_counter()
            timing["copy"] += (t1 - t0) + (t4 - t3)
            timing["inference"] += t2 - t1
            timing["env"] += t3 - t2
        return {"timing": timing, "episodes": episodes}
