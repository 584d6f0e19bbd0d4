"""Actor-critic MLP: categorical head for discrete position levels, Gaussian for exposure,
Gaussian logits over symbols + cash for portfolio weights (:mod:`fastrl.ppo.simplex`)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.distributions import Categorical, Independent, Normal

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "gelu": nn.GELU,
}


def _orthogonal(
    width: int, size: int, gain: float, generator: torch.Generator | None = None
) -> nn.Linear:
    # skip_init: nn.Linear's own init would draw from torch's global RNG, only to be overwritten
    layer = nn.utils.skip_init(nn.Linear, width, size)
    nn.init.orthogonal_(layer.weight, gain, generator=generator)
    nn.init.zeros_(layer.bias)
    return layer


def mlp(
    input_dim: int,
    hidden_sizes: Sequence[int],
    activation: str,
    generator: torch.Generator | None = None,
) -> nn.Sequential:
    """Hidden layers only (no output layer), orthogonally initialised with gain sqrt(2).

    ``generator`` draws the initial weights (a trainer's own stream, not torch's global one).
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    layers: list[nn.Module] = []
    width = input_dim
    for size in hidden_sizes:
        layers += [_orthogonal(width, size, math.sqrt(2.0), generator),
                   ACTIVATIONS[activation]()]
        width = size
    return nn.Sequential(*layers)


Policy = Categorical | Normal | Independent


def sample(dist: Policy, generator: torch.Generator | None) -> torch.Tensor:
    """A draw from ``dist`` using ``generator`` (torch.distributions only use the global RNG)."""
    if isinstance(dist, Independent):  # the simplex head: a Normal per logit
        dist = dist.base_dist
    if isinstance(dist, Normal):
        noise = torch.randn(dist.loc.shape, generator=generator, device=dist.loc.device,
                            dtype=dist.loc.dtype)
        return dist.loc + dist.scale * noise
    return torch.multinomial(dist.probs, 1, generator=generator).squeeze(-1)


def greedy_action(policy_out: torch.Tensor, continuous: bool, simplex: bool = False
                  ) -> torch.Tensor:
    """The deterministic action from the policy head's output: the most likely level
    (discrete), the mean exposure (continuous) or the mean logits (simplex)."""
    if simplex:
        return policy_out
    return policy_out.squeeze(-1) if continuous else policy_out.argmax(-1)


class ActorCritic(nn.Module):
    """Policy and value function over the flattened observation.

    ``num_actions`` > 0 gives a categorical policy over that many position levels;
    ``num_actions`` == 0 gives a one-dimensional Gaussian over target exposure with a
    state-independent log standard deviation (the sample is clipped to the range only
    when sent to the env, so log-probabilities stay those of the sampled value).
    ``shared_trunk`` puts actor and critic heads on one MLP (half the compute) instead
    of two. Heads use the usual PPO init: gain 0.01 for the policy, 1 for the value.
    ``anchor`` (anchored actions, ActionSpec.anchor_bias) starts the policy layer at zero
    weights and that bias, so the deterministic action is the benchmark's.

    ``simplex`` = K > 0 (a portfolio of K - 1 symbols and cash) gives a diagonal Gaussian
    over K logits, one state-independent log std each; the action stored is the logit
    vector, its log-prob the sum of the K Normal log-densities, and
    :func:`fastrl.ppo.simplex.simplex_weights` turns it into weights for the env (why a
    logistic-normal and not a Dirichlet: see that module). ``num_actions`` must then be 0.

    The heads always run in float32, also under bf16 autocast: the trunk may be bf16, but
    logits, means and values are what PPO's probability ratio and value loss are made of,
    and bf16 rounding there makes the ratio at the start of an update differ from 1.
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
        simplex: int = 0,
        generator: torch.Generator | None = None,
        anchor: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        if obs_dim < 1:
            raise ValueError(f"obs_dim must be >= 1, got {obs_dim}")
        if simplex and (simplex < 2 or num_actions):
            raise ValueError(f"simplex must be >= 2 with num_actions 0, got simplex={simplex}, "
                             f"num_actions={num_actions}")
        if not hidden_sizes or any(int(h) < 1 for h in hidden_sizes):
            raise ValueError(f"hidden_sizes must be positive integers, got {tuple(hidden_sizes)}")
        self.obs_dim = int(obs_dim)
        self.num_actions = int(num_actions)
        self.continuous = self.num_actions == 0
        self.simplex = int(simplex)
        # per-env action shape: () for a level index or an exposure, (K,) for simplex logits
        self.action_shape: tuple[int, ...] = (self.simplex,) if self.simplex else ()
        self.shared_trunk = bool(shared_trunk)
        hidden_sizes = tuple(int(h) for h in hidden_sizes)
        last = hidden_sizes[-1]
        g = generator
        self.actor_trunk = mlp(obs_dim, hidden_sizes, activation, g)
        self.critic_trunk = None if shared_trunk else mlp(obs_dim, hidden_sizes, activation, g)
        out = self.simplex or (1 if self.continuous else self.num_actions)
        self.policy_head = _orthogonal(last, out, 0.01, g)
        self.value_head = _orthogonal(last, 1, 1.0, g)
        if anchor is not None:
            # Anchored actions start at the benchmark for every observation: a zero policy
            # layer outputs exactly its bias (ActionSpec.anchor_bias). The draws above are
            # made all the same, so the other layers match an unanchored network's.
            if len(anchor) != out:
                raise ValueError(f"anchor needs {out} values (one per policy output), "
                                 f"got {len(anchor)}")
            with torch.no_grad():
                self.policy_head.weight.zero_()
                self.policy_head.bias.copy_(torch.tensor([float(x) for x in anchor]))
        if self.continuous:
            self.log_std = nn.Parameter(torch.full((self.simplex or 1,), float(log_std_init)))

    def _features(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        actor = self.actor_trunk(obs)
        critic = actor if self.critic_trunk is None else self.critic_trunk(obs)
        return actor, critic

    @staticmethod
    def _head(head: nn.Linear, features: torch.Tensor) -> torch.Tensor:
        with torch.autocast(features.device.type, enabled=False):
            return head(features.float())

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        """V(obs) as float32 [B]."""
        trunk = self.actor_trunk if self.critic_trunk is None else self.critic_trunk
        return self._head(self.value_head, trunk(obs)).squeeze(-1)

    def distribution(self, policy_out: torch.Tensor) -> Policy:
        policy_out = policy_out.float()  # sample and score in float32 even under autocast
        if self.simplex:
            std = self.log_std.float().exp().expand_as(policy_out)
            return Independent(Normal(policy_out, std), 1)  # log-prob/entropy sum over logits
        if self.continuous:
            mean = policy_out.squeeze(-1)
            return Normal(mean, self.log_std.float().exp().expand_as(mean))
        return Categorical(logits=policy_out)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw policy output (logits [B, K] or mean [B, 1] or [B, K]) and value [B]."""
        actor, critic = self._features(obs)
        return self._head(self.policy_head, actor), self._head(self.value_head, critic).squeeze(-1)

    def act(
        self,
        obs: torch.Tensor,
        deterministic: bool = False,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Action [B] (level index or unclipped exposure) or [B, K] (simplex logits), its
        log-prob [B], value [B]."""
        policy_out, value = self(obs)
        dist = self.distribution(policy_out)
        if deterministic:
            action = dist.mean if self.continuous else dist.probs.argmax(-1)
        else:
            action = sample(dist, generator)
        return action, dist.log_prob(action), value

    def greedy(self, obs: torch.Tensor) -> torch.Tensor:
        """The deterministic action (mode / mean) from the actor alone: no value pass."""
        return greedy_action(self._head(self.policy_head, self.actor_trunk(obs)),
                             self.continuous, self.simplex)

    def evaluate(
        self, obs: torch.Tensor, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Log-prob [B] and entropy [B] of ``actions`` under the current policy, value [B]."""
        policy_out, value = self(obs)
        dist = self.distribution(policy_out)
        return dist.log_prob(actions), dist.entropy(), value
