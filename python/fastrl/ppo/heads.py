"""Action heads: what a policy's output means, one class per :class:`ActionSpec` distribution.

A head owns everything that depends on the kind of action a market takes, so the engine
(:class:`fastrl.ppo.population.Population`) and :class:`fastrl.ppo.agent.Agent` never ask
which one it is:

- the action's storage: its per-env shape and whether it is real-valued (float32 in the
  rollout, float64 on the host) or a level index (int64);
- sampling and log-probs for the rollout, log-probs and entropies for the loss, on the
  stacked members' outputs ([P, B, ...]);
- the deterministic action, and the map from a raw action to what the env takes.

:func:`head_for` builds the head of a market's :meth:`~fastrl.markets.base.Market.action_spec`.
The arithmetic is torch.distributions' (Categorical's normalisation, Normal's formulas)
written out on plain tensors, so a one-member engine samples and scores exactly as an
ActorCritic's own distribution does.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable

import numpy as np
import torch

from fastrl.markets.base import ActionSpec
from fastrl.ppo.simplex import simplex_weights, tilt_weights

# host actions [rows, ...] (float64 or int64, written in place) -> the env's actions
HostMap = Callable[[np.ndarray], np.ndarray]


class Draws:
    """The engine's random draws for sampling actions over P x n rows: one generator for
    every row, or one generator per member (member m's n rows drawn from its own, as a lone
    engine with that generator would draw them)."""

    def __init__(self, generator: torch.Generator, generators: list[torch.Generator] | None,
                 n: int) -> None:
        self.generator, self.generators, self.n = generator, generators, int(n)

    def normal(self, like: torch.Tensor) -> torch.Tensor:
        """Standard normal noise of ``like``'s shape, device and dtype."""
        if self.generators is None:
            return torch.randn(like.shape, generator=self.generator, device=like.device,
                               dtype=like.dtype)
        return torch.cat([torch.randn((self.n, *like.shape[1:]), generator=g,
                                      device=like.device, dtype=like.dtype)
                          for g in self.generators])

    def categorical(self, probs: torch.Tensor) -> torch.Tensor:
        """One index per row of ``probs`` [rows, K]: [rows] int64."""
        if self.generators is None:
            return torch.multinomial(probs, 1, generator=self.generator).squeeze(-1)
        n = self.n
        return torch.cat([torch.multinomial(probs[m * n:(m + 1) * n], 1, generator=g)
                          for m, g in enumerate(self.generators)]).squeeze(-1)


def log_softmax(logits: torch.Tensor) -> torch.Tensor:
    """Categorical's normalisation (logits - logsumexp): one member samples and scores as
    an ActorCritic's Categorical does, bit for bit."""
    return logits - logits.logsumexp(dim=-1, keepdim=True)


def categorical_log_prob_entropy(logits: torch.Tensor, actions: torch.Tensor
                                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-prob and entropy of integer ``actions`` under ``logits`` [..., K] (float32)."""
    log_pmf = log_softmax(logits)
    probs = torch.softmax(log_pmf, dim=-1)
    logprob = log_pmf.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    clamped = log_pmf.clamp(min=torch.finfo(log_pmf.dtype).min)
    return logprob, -(clamped * probs).sum(-1)


def gaussian_log_prob_entropy(mean: torch.Tensor, scale: torch.Tensor, actions: torch.Tensor
                              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-prob and entropy of ``actions`` under N(mean, scale) (Normal's formulas)."""
    logprob = (-((actions - mean) ** 2) / (2 * scale**2) - scale.log()
               - math.log(math.sqrt(2 * math.pi)))
    entropy = (0.5 + 0.5 * math.log(2 * math.pi) + scale.log()).expand_as(mean)
    return logprob, entropy


def member_std(params: dict[str, torch.Tensor]) -> torch.Tensor:
    """The stacked members' state-independent std as [P, 1, A] (A = 1, or K logits)."""
    log_std = params["log_std"]
    return log_std.float().exp().view(log_std.shape[0], 1, -1)


class ActionHead(abc.ABC):
    """The common face of the heads (see the module doc). ``continuous``: the action is
    real-valued (stored float32, sent from float64); else an int64 level index.
    ``action_shape``: one env's action as stored, () or (K,). ``num_actions`` and
    ``simplex`` are the ActorCritic's arguments for this head."""

    continuous: bool = True
    action_shape: tuple[int, ...] = ()
    num_actions: int = 0
    simplex: int = 0

    def __init__(self, spec: ActionSpec) -> None:
        self.spec = spec

    @abc.abstractmethod
    def sample(self, policy_out: torch.Tensor, params: dict[str, torch.Tensor],
               draws: Draws) -> tuple[torch.Tensor, torch.Tensor]:
        """Actions [P*n, ...] drawn from every member's policy output [P, n, ...], and their
        log-probs [P*n]."""
        ...

    @abc.abstractmethod
    def log_prob_entropy(self, policy_out: torch.Tensor, params: dict[str, torch.Tensor],
                         actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probs and entropies [P, mb] of stored ``actions`` under the members' policy
        outputs [P, mb, ...] (float32)."""
        ...

    @abc.abstractmethod
    def greedy(self, policy_out: torch.Tensor) -> torch.Tensor:
        """The deterministic action of policy outputs [B, ...]."""
        ...

    @abc.abstractmethod
    def env_actions(self, action: torch.Tensor) -> np.ndarray:
        """Actions on the device [B, ...] as the env takes them (numpy)."""
        ...

    @abc.abstractmethod
    def host_map(self, rows: int) -> HostMap:
        """The rollout's map from its host actions [rows, ...] (float64 or int64) to the env's
        actions, with whatever buffer it writes allocated once here."""
        ...


class CategoricalHead(ActionHead):
    """An index into ``spec.size`` position levels, drawn from softmax(logits)."""

    continuous = False

    def __init__(self, spec: ActionSpec) -> None:
        super().__init__(spec)
        self.num_actions = int(spec.size)

    def sample(self, policy_out: torch.Tensor, params: dict[str, torch.Tensor],
               draws: Draws) -> tuple[torch.Tensor, torch.Tensor]:
        rows = policy_out.shape[0] * policy_out.shape[1]
        log_pmf = log_softmax(policy_out).reshape(rows, -1)
        action = draws.categorical(torch.softmax(log_pmf, -1))
        return action, log_pmf.gather(-1, action.unsqueeze(-1)).squeeze(-1)

    def log_prob_entropy(self, policy_out: torch.Tensor, params: dict[str, torch.Tensor],
                         actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return categorical_log_prob_entropy(policy_out, actions)

    def greedy(self, policy_out: torch.Tensor) -> torch.Tensor:
        return policy_out.argmax(-1)

    def env_actions(self, action: torch.Tensor) -> np.ndarray:
        return action.cpu().numpy().astype(np.int64, copy=False)

    def host_map(self, rows: int) -> HostMap:
        return _unchanged


class GaussianHead(ActionHead):
    """One target exposure ~ N(mean, std), stored unclipped (its log-prob is that of the
    sampled value) and clipped to [``spec.low``, ``spec.high``] only on its way to the env."""

    def __init__(self, spec: ActionSpec) -> None:
        super().__init__(spec)
        self.low, self.high = float(spec.low), float(spec.high)

    def sample(self, policy_out: torch.Tensor, params: dict[str, torch.Tensor],
               draws: Draws) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (policy_out.shape[0] * policy_out.shape[1], *self.action_shape)
        mean = policy_out.reshape(shape)
        std = member_std(params).expand_as(policy_out).reshape(shape)
        action = mean + std * draws.normal(mean)
        logprob, _ = gaussian_log_prob_entropy(mean, std, action)
        return action, logprob

    def log_prob_entropy(self, policy_out: torch.Tensor, params: dict[str, torch.Tensor],
                         actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return gaussian_log_prob_entropy(policy_out.squeeze(-1),
                                         member_std(params).squeeze(-1), actions)

    def greedy(self, policy_out: torch.Tensor) -> torch.Tensor:
        return policy_out.squeeze(-1)

    def env_actions(self, action: torch.Tensor) -> np.ndarray:
        # in float64: a float32 bound like 0.3 rounds outside the env's range
        return np.clip(action.float().cpu().numpy().astype(np.float64), self.low, self.high)

    def host_map(self, rows: int) -> HostMap:
        low, high = self.low, self.high

        def clip(actions: np.ndarray) -> np.ndarray:
            # Clip in float64: a float32 clamp to 0.3 gives 0.30000001, which the env
            # rightly refuses as outside [min_pos, max_pos].
            return np.clip(actions, low, high, out=actions)

        return clip


class SimplexHead(GaussianHead):
    """A diagonal Gaussian over ``spec.size`` logits (symbols then cash), stored as logits
    and mapped to long-only weights within ``spec.max_weight`` / ``spec.max_gross`` by
    :func:`fastrl.ppo.simplex.simplex_weights` (why logits: that module's doc). Its
    log-prob and entropy are the sums over the logits; the deterministic action is the
    mean logits."""

    def __init__(self, spec: ActionSpec) -> None:
        super().__init__(spec)
        self.simplex = int(spec.size)
        self.action_shape = (self.simplex,)
        self.caps = (float(spec.max_weight), float(spec.max_gross))
        # anchored (spec.anchored): the logits tilt equal weight (fastrl.ppo.simplex)
        self.to_weights: Callable[..., np.ndarray] = simplex_weights
        if spec.anchored:
            max_underweight = float(spec.high)

            def tilted(z: np.ndarray, max_weight: float, max_gross: float,
                       out: np.ndarray | None = None) -> np.ndarray:
                return tilt_weights(z, max_underweight, max_weight, max_gross, out=out)

            self.to_weights = tilted

    def sample(self, policy_out: torch.Tensor, params: dict[str, torch.Tensor],
               draws: Draws) -> tuple[torch.Tensor, torch.Tensor]:
        action, logprob = super().sample(policy_out, params, draws)
        return action, logprob.sum(-1)

    def log_prob_entropy(self, policy_out: torch.Tensor, params: dict[str, torch.Tensor],
                         actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logprob, entropy = gaussian_log_prob_entropy(policy_out, member_std(params), actions)
        return logprob.sum(-1), entropy.sum(-1)

    def greedy(self, policy_out: torch.Tensor) -> torch.Tensor:
        return policy_out

    def env_actions(self, action: torch.Tensor) -> np.ndarray:
        return self.to_weights(action.float().cpu().numpy(), *self.caps)

    def host_map(self, rows: int) -> HostMap:
        caps, mapping = self.caps, self.to_weights
        weights = np.zeros((rows, self.simplex - 1))  # the env's weights, reused every step

        def to_weights(logits: np.ndarray) -> np.ndarray:
            return mapping(logits, *caps, out=weights)

        return to_weights


def _unchanged(actions: np.ndarray) -> np.ndarray:
    return actions


HEADS: dict[str, type[ActionHead]] = {"categorical": CategoricalHead,
                                      "gaussian": GaussianHead, "simplex": SimplexHead}


def head_for(spec: ActionSpec) -> ActionHead:
    """The head of ``spec``'s distribution."""
    if spec.distribution not in HEADS:
        raise ValueError(f"action distribution must be one of {', '.join(HEADS)}, "
                         f"got {spec.distribution!r}")
    return HEADS[spec.distribution](spec)


__all__ = ["HEADS", "ActionHead", "CategoricalHead", "Draws", "GaussianHead", "SimplexHead",
           "gaussian_log_prob_entropy", "categorical_log_prob_entropy", "head_for",
           "log_softmax", "member_std"]
