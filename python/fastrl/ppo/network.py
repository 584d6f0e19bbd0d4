"""Actor-critic MLP: categorical head for discrete position levels, Gaussian for exposure."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.distributions import Categorical, Normal

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "gelu": nn.GELU,
}


def _orthogonal(layer: nn.Linear, gain: float) -> nn.Linear:
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


def mlp(input_dim: int, hidden_sizes: Sequence[int], activation: str) -> nn.Sequential:
    """Hidden layers only (no output layer), orthogonally initialised with gain sqrt(2)."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    layers: list[nn.Module] = []
    width = input_dim
    for size in hidden_sizes:
        layers += [_orthogonal(nn.Linear(width, size), math.sqrt(2.0)), ACTIVATIONS[activation]()]
        width = size
    return nn.Sequential(*layers)


class ActorCritic(nn.Module):
    """Policy and value function over the flattened observation.

    ``num_actions`` > 0 gives a categorical policy over that many position levels;
    ``num_actions`` == 0 gives a one-dimensional Gaussian over target exposure with a
    state-independent log standard deviation (the sample is clipped to the range only
    when sent to the env, so log-probabilities stay those of the sampled value).
    ``shared_trunk`` puts actor and critic heads on one MLP (half the compute) instead
    of two. Heads use the usual PPO init: gain 0.01 for the policy, 1 for the value.
    """

    def __init__(
        self,
        obs_dim: int,
        num_actions: int,
        hidden_sizes: Sequence[int] = (2048, 1024, 512, 256),
        *,
        shared_trunk: bool = False,
        activation: str = "tanh",
        log_std_init: float = -0.5,
    ) -> None:
        super().__init__()
        if obs_dim < 1:
            raise ValueError(f"obs_dim must be >= 1, got {obs_dim}")
        if not hidden_sizes or any(int(h) < 1 for h in hidden_sizes):
            raise ValueError(f"hidden_sizes must be positive integers, got {tuple(hidden_sizes)}")
        self.obs_dim = int(obs_dim)
        self.num_actions = int(num_actions)
        self.continuous = self.num_actions == 0
        self.shared_trunk = bool(shared_trunk)
        hidden_sizes = tuple(int(h) for h in hidden_sizes)
        last = hidden_sizes[-1]
        self.actor_trunk = mlp(obs_dim, hidden_sizes, activation)
        self.critic_trunk = None if shared_trunk else mlp(obs_dim, hidden_sizes, activation)
        out = 1 if self.continuous else self.num_actions
        self.policy_head = _orthogonal(nn.Linear(last, out), 0.01)
        self.value_head = _orthogonal(nn.Linear(last, 1), 1.0)
        if self.continuous:
            self.log_std = nn.Parameter(torch.full((1,), float(log_std_init)))

    def _features(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        actor = self.actor_trunk(obs)
        critic = actor if self.critic_trunk is None else self.critic_trunk(obs)
        return actor, critic

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        """V(obs) as float32 [B]."""
        trunk = self.actor_trunk if self.critic_trunk is None else self.critic_trunk
        return self.value_head(trunk(obs)).squeeze(-1).float()

    def distribution(self, policy_out: torch.Tensor) -> Categorical | Normal:
        policy_out = policy_out.float()  # sample and score in float32 even under autocast
        if self.continuous:
            mean = policy_out.squeeze(-1)
            return Normal(mean, self.log_std.float().exp().expand_as(mean))
        return Categorical(logits=policy_out)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw policy output (logits [B, K] or mean [B, 1]) and value [B]."""
        actor, critic = self._features(obs)
        return self.policy_head(actor), self.value_head(critic).squeeze(-1).float()

    def act(
        self, obs: torch.Tensor, deterministic: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Action [B] (level index or unclipped exposure), its log-prob [B], value [B]."""
        policy_out, value = self(obs)
        dist = self.distribution(policy_out)
        if deterministic:
            action = dist.mean if self.continuous else dist.probs.argmax(-1)
        else:
            action = dist.sample()
        return action, dist.log_prob(action), value

    def evaluate(
        self, obs: torch.Tensor, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Log-prob [B] and entropy [B] of ``actions`` under the current policy, value [B]."""
        policy_out, value = self(obs)
        dist = self.distribution(policy_out)
        return dist.log_prob(actions), dist.entropy(), value
