"""Preallocated rollout storage on the training device, and GAE with truncation bootstrap."""

from __future__ import annotations

import torch


@torch.no_grad()
def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    dones: torch.Tensor,
    truncated: torch.Tensor,
    final_values: torch.Tensor,
    last_value: torch.Tensor,
    gamma: float | torch.Tensor,
    gae_lambda: float | torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimates and returns over a [T, N] rollout.

    ``dones[t]`` marks that the transition at step ``t`` ended its episode (terminated or
    truncated), so the chain does not run into the next episode. For a truncated episode
    the state after step ``t`` was not terminal: its value ``final_values[t]`` (V of the
    final observation, reported before auto-reset) is bootstrapped into the TD error,
    ``delta = r + gamma * V(final_obs) - V(s)``; for a terminated one nothing is.
    ``last_value`` [N] is V of the observation after the last step. ``gamma`` and
    ``gae_lambda`` are floats, or [N] tensors: one discount per env row (a population whose
    members have their own, each member's value repeated over its rows).
    """
    num_steps = rewards.shape[0]
    advantages = torch.zeros_like(values)
    running = torch.zeros_like(last_value)
    not_done = 1.0 - dones.to(values.dtype)
    bootstrap = truncated.to(values.dtype) * final_values
    for t in reversed(range(num_steps)):
        next_value = last_value if t == num_steps - 1 else values[t + 1]
        delta = rewards[t] + gamma * (next_value * not_done[t] + bootstrap[t]) - values[t]
        running = delta + gamma * gae_lambda * not_done[t] * running
        advantages[t] = running
    return advantages, advantages + values


class RolloutStorage:
    """One rollout of ``num_steps`` x ``num_envs`` transitions, allocated once.

    ``obs`` holds normalised observations (what the policy saw). Actions are int64 level
    indices (discrete) or float32 unclipped exposures (continuous), [T, N]; with
    ``action_shape`` (K,) they are float32 [T, N, K] (the portfolio head's logits).
    """

    def __init__(
        self,
        num_steps: int,
        num_envs: int,
        obs_dim: int,
        continuous: bool,
        device: torch.device | str,
        action_shape: tuple[int, ...] = (),
    ) -> None:
        self.num_steps = int(num_steps)
        self.num_envs = int(num_envs)
        shape = (self.num_steps, self.num_envs)
        f32 = {"dtype": torch.float32, "device": device}
        self.obs = torch.zeros((*shape, obs_dim), **f32)
        self.actions = torch.zeros(
            (*shape, *action_shape), dtype=torch.float32 if continuous else torch.int64,
            device=device,
        )
        self.logprobs = torch.zeros(shape, **f32)
        self.rewards = torch.zeros(shape, **f32)
        self.values = torch.zeros(shape, **f32)
        self.dones = torch.zeros(shape, dtype=torch.bool, device=device)
        self.truncated = torch.zeros(shape, dtype=torch.bool, device=device)
        self.final_values = torch.zeros(shape, **f32)
        self.advantages = torch.zeros(shape, **f32)
        self.returns = torch.zeros(shape, **f32)

    def finish(self, last_value: torch.Tensor, gamma: float | torch.Tensor,
               gae_lambda: float | torch.Tensor) -> None:
        """Fill ``advantages`` and ``returns`` once the rollout is complete."""
        advantages, returns = compute_gae(
            self.rewards,
            self.values,
            self.dones,
            self.truncated,
            self.final_values,
            last_value,
            gamma,
            gae_lambda,
        )
        self.advantages.copy_(advantages)
        self.returns.copy_(returns)

    def flat(self) -> dict[str, torch.Tensor]:
        """The rollout as [T * N] batches (views, no copies)."""
        n = self.num_steps * self.num_envs
        return {
            "obs": self.obs.reshape(n, -1),
            "actions": self.actions.reshape(n, *self.actions.shape[2:]),
            "logprobs": self.logprobs.reshape(n),
            "values": self.values.reshape(n),
            "advantages": self.advantages.reshape(n),
            "returns": self.returns.reshape(n),
        }
