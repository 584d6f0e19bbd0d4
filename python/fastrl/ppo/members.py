"""Who can be a member of one population, and a member's state: the engine's snapshot,
and the copies, slices and joins of members that exploit (PBT) and batched studies make.

:class:`MemberState` is the part of :class:`fastrl.ppo.population.Population` that reads
and writes the engine's state as a whole (every tensor a ``step()`` reads); the engine
itself (rollout, update, hyperparameters) lives in that module.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from fastrl.config import TrainConfig, resolve_defaults, validate_config
from fastrl.ppo.agent import Agent, precision_name
from fastrl.ppo.batched_adam import BatchedAdam
from fastrl.ppo.network import ActorCritic
from fastrl.ppo.normalize import ObservationNormaliser, RewardScaler
from fastrl.ppo.rollout import Rollout

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self is Python 3.11+

# The per-member hyperparameters (PBT's knobs), each a float32 [P] tensor.
HPARAMS = ("learning_rate", "ent_coef", "clip_range", "vf_coef", "max_grad_norm")

# The keys members of one population may set each their own (a batched study's trials):
# the schedules' values and shapes, the loss weights and the per-member update settings.
# Everything else (network and rollout shapes, budget, seed, data, env, optimiser kind,
# device) shapes or feeds the shared tensors and simulator, so it must be shared.
MEMBER_KEYS = frozenset({
    "learning_rate", "lr_schedule", "lr_warmup_steps", "lr_min", "lr_points",
    "ent_coef", "ent_coef_final", "ent_coef_decay_steps", "ent_coef_points",
    "clip_range", "clip_range_final", "clip_range_decay_steps", "clip_range_points",
    "clip_range_vf", "vf_coef", "max_grad_norm", "target_kl", "weight_decay", "n_epochs",
    "gamma", "gae_lambda",
})


def member_values(config: TrainConfig) -> dict[str, Any]:
    """The values of :data:`MEMBER_KEYS` in ``config``."""
    return {k: getattr(config, k) for k in sorted(MEMBER_KEYS)}


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(value):
            out.update(_flat(getattr(value, f.name), f"{prefix}{f.name}."))
        return out
    return {prefix[:-1]: value}


def shared_key(config: TrainConfig) -> str:
    """The values of every key outside :data:`MEMBER_KEYS`, as text: configs with the same
    key can be members of one population (a batched study groups its trials by it)."""
    flat = _flat(resolve_defaults(copy.deepcopy(config)))
    return json.dumps({k: v for k, v in sorted(flat.items()) if k not in MEMBER_KEYS},
                      default=repr)


def member_config_differences(first: TrainConfig, other: TrainConfig) -> list[str]:
    """The keys outside :data:`MEMBER_KEYS` on which two member configs differ (dotted,
    sorted): what keeps them from one population."""
    a, b = _flat(first), _flat(other)
    return sorted(k for k in set(a) | set(b)
                  if k not in MEMBER_KEYS and a.get(k, None) != b.get(k, None))


class PopulationError(ValueError):
    """A population setting is invalid (the message names it)."""


class PopulationDivergedError(PopulationError):
    """Members' losses or weights became non-finite; ``members`` lists them."""

    def __init__(self, message: str, members: list[int]) -> None:
        super().__init__(message)
        self.members = list(members)


def member_configs(config: TrainConfig | list[TrainConfig], population: int | None
                   ) -> list[TrainConfig]:
    """The P members' configs, validated and resolved (copies): ``config`` P times, or the
    list of P member configs (``population`` None or P), which must agree on every key
    outside :data:`MEMBER_KEYS`. Anything else is a PopulationError naming it."""
    configs = list(config) if isinstance(config, (list, tuple)) else None
    if configs is not None:
        if not configs:
            raise PopulationError("a population needs at least one member config")
        if population is None:
            population = len(configs)
        if population != len(configs):
            raise PopulationError(f"population {population!r} does not match the "
                                  f"{len(configs)} member configs")
    if isinstance(population, bool) or not isinstance(population, (int, np.integer)) \
            or population < 1:
        raise PopulationError(f"population must be an integer >= 1, got {population!r}")
    if configs is None:
        configs = [config] * int(population)
    for member in configs:
        validate_config(member)
    configs = [resolve_defaults(copy.deepcopy(c)) for c in configs]
    for m, member in enumerate(configs[1:], start=1):
        differences = member_config_differences(configs[0], member)
        if differences:
            raise PopulationError(f"member {m}'s config differs from member 0's in keys "
                                  f"that must be shared: {', '.join(differences)}")
    return configs


class MemberState:
    """The engine's state as a whole and per member (mixed into Population, whose
    ``__init__`` builds every attribute read here)."""

    population: int
    n: int
    config: TrainConfig
    member_configs: list[TrainConfig]
    member_seeds: list[int] | None
    market: Any
    markets: list[Any] | None  # members on their own markets: member m's
    env: Any
    env_factory: Any
    params: dict[str, torch.Tensor]
    buffers: dict[str, torch.Tensor]
    template: ActorCritic
    optimizer: BatchedAdam
    obs_normaliser: ObservationNormaliser
    reward_scaler: RewardScaler
    rollout: Rollout
    factors: dict[str, torch.Tensor]
    n_epochs: torch.Tensor
    start_steps: torch.Tensor
    generator: torch.Generator
    generators: list[torch.Generator] | None
    global_step: int
    update: int
    amp: bool
    next_obs: torch.Tensor
    set_step: Callable[[int], dict[str, torch.Tensor]]

    def state_dict(self) -> dict[str, Any]:
        """Copies of everything the next ``step()`` reads: stacked weights, Adam state,
        normalisers, hyperparameter factors, counters, the RNG, the simulator's snapshot and
        the current observation. ``load_state_dict`` into a Population built from the same
        config, market and P continues bit for bit (tested)."""
        def copies(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            return {k: v.detach().clone() for k, v in tensors.items()}

        optimizer = self.optimizer
        return {
            "population": self.population, "global_step": self.global_step,
            "update": self.update, "params": copies(self.params),
            "buffers": copies(self.buffers),
            "optimizer": {"step_count": optimizer.step_count.clone(),
                          "exp_avg": copies(optimizer.exp_avg),
                          "exp_avg_sq": copies(optimizer.exp_avg_sq)},
            "obs_normaliser": copies(self.obs_normaliser.state_dict()),
            "reward_scaler": copies(self.reward_scaler.state_dict()),
            "factors": copies(self.factors), "n_epochs": self.n_epochs.clone(),
            "start_steps": self.start_steps.clone(),
            "generator": (self.generator.get_state() if self.generators is None
                          else torch.stack([g.get_state() for g in self.generators])),
            "env": self.env.get_state(), "next_obs": self.next_obs.clone(),
        }

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Load a :meth:`state_dict`; every key, shape and dtype is checked before anything
        is written (a mismatch is a PopulationError naming the key)."""
        expected = self.state_dict()
        if "n_epochs" not in state:  # written before epochs were per member: the config's
            state = {**state, "n_epochs": self.n_epochs.clone()}
        if "start_steps" not in state:  # written before members could join mid-run
            state = {**state, "start_steps": torch.zeros_like(self.start_steps)}
        if isinstance(state.get("env"), dict):  # saved before the simulator gained keys
            state = {**state, "env": self.env.completed_state(state["env"])}
        _check_like(state, expected, "")
        self.env.set_state(state["env"])  # checks the snapshot before it writes
        for name in ("params", "buffers", "factors"):
            for key, value in getattr(self, name).items():
                value.copy_(state[name][key])
        self.n_epochs.copy_(state["n_epochs"])
        self.start_steps.copy_(state["start_steps"])
        optimizer = self.optimizer
        optimizer.step_count.copy_(state["optimizer"]["step_count"])
        for name in ("exp_avg", "exp_avg_sq"):
            for key, value in getattr(optimizer, name).items():
                value.copy_(state["optimizer"][name][key])
        self.obs_normaliser.load_state_dict(state["obs_normaliser"])
        self.reward_scaler.load_state_dict(state["reward_scaler"])
        if self.generators is None:
            self.generator.set_state(state["generator"])
        else:
            for g, g_state in zip(self.generators, state["generator"], strict=True):
                g.set_state(g_state.clone())
        self.next_obs.copy_(state["next_obs"])
        self.rollout.stage_in()
        self.global_step, self.update = int(state["global_step"]), int(state["update"])
        self.set_step(self.global_step)

    # ------------------------------------------------------------------------- members

    def member_network(self, m: int, view: bool = False) -> ActorCritic:
        """Member m's weights in a plain ActorCritic: a copy, or with ``view`` parameters
        that share the stacked tensors' storage (no grad: the engine trains the stack, and
        writes into the view's weights, e.g. ``load_state_dict``, land in the stack)."""
        network = copy.deepcopy(self.template)
        if not view:
            network.load_state_dict({k: v[m].detach().clone() for k, v in self.params.items()})
            return network
        for name, value in self.params.items():
            *path, attr = name.split(".")
            network.get_submodule(".".join(path))._parameters[attr] = nn.Parameter(
                value.detach()[m], requires_grad=False)
        return network

    @torch.no_grad()
    def copy_member(self, source: int, target: int) -> None:
        """Exploit: ``target`` takes ``source``'s weights, Adam state, normalisers and factors.

        The env rows and the reward scaler's running returns stay with ``target`` (they
        describe its envs' episodes in flight, not what it learned). The factors multiply
        ``target``'s own schedule (the same one unless members were built from own configs).
        """
        for tensors in (self.params, self.optimizer.exp_avg, self.optimizer.exp_avg_sq):
            for value in tensors.values():
                value[target].copy_(value[source])
        self.optimizer.step_count[target] = self.optimizer.step_count[source]
        self.obs_normaliser.copy_member(source, target)
        self.reward_scaler.copy_member(source, target)
        for name in HPARAMS:
            self.factors[name][target] = self.factors[name][source]
        self.set_step(self.global_step)

    def keep(self, members: Sequence[int]) -> Self:
        """A population of only ``members`` (in that order) that continues exactly where
        they are: what a batched study does when trials end (pruned or diverged), so their
        rows cost nothing more. A new engine (env of the kept rows, networks, optimiser,
        normalisers, generators, counters) loaded with the kept members' slices of
        :meth:`state_dict`; ``self`` is left as it was. Keeping everyone returns ``self``."""
        keep = [int(m) for m in members]
        if not keep or len(set(keep)) != len(keep) \
                or not all(0 <= m < self.population for m in keep):
            raise PopulationError(f"keep: members must be distinct indices in "
                                  f"[0, {self.population}), got {list(members)!r}")
        if keep == list(range(self.population)):
            return self
        markets = self.markets
        kept = type(self)([self.member_configs[m] for m in keep],
                          market=self.market if markets is None else [markets[m] for m in keep],
                          env_factory=self.env_factory,
                          member_seeds=None if self.member_seeds is None
                          else [self.member_seeds[m] for m in keep])
        kept.load_state_dict(self._members_state(keep))
        return kept

    def join(self, other: Self, keep: Sequence[int] | None = None) -> Self:
        """A population of ``self``'s members (only ``keep``'s, in that order, if given: one
        engine built instead of :meth:`keep`'s and then this one's) then ``other``'s, each
        continuing exactly where it is: its own step count and schedules (``start_steps``),
        env rows, weights, Adam state, normalisers and generator. What a batched study does
        when trials end: a new trial's member (a fresh engine, step 0) takes the freed rows
        of a running population instead of the population shrinking. Independent members
        only (``member_seeds``), on the same market, sharing the keys members must share; a
        new engine, both left as they were."""
        kept = list(range(self.population)) if keep is None else [int(m) for m in keep]
        if not kept or len(set(kept)) != len(kept) \
                or not all(0 <= m < self.population for m in kept):
            raise PopulationError(f"join: keep must be distinct indices in "
                                  f"[0, {self.population}), got {list(kept)!r}")
        if self.member_seeds is None or other.member_seeds is None:
            raise PopulationError("join: only independent members (member_seeds) can join")
        if other.market is not self.market or self.markets is not None:
            raise PopulationError("join: the two populations train on different markets")
        differences = member_config_differences(self.config, other.config)
        if differences:
            raise PopulationError("join: the members differ in keys that must be shared: "
                                  + ", ".join(differences))
        joined = type(self)([*(self.member_configs[m] for m in kept), *other.member_configs],
                            market=self.market, env_factory=self.env_factory,
                            member_seeds=[*(self.member_seeds[m] for m in kept),
                                          *other.member_seeds])
        joined.load_state_dict(self._joined_state(other, kept))
        return joined

    def _joined_state(self, other: Self, keep: list[int]) -> dict[str, Any]:
        """:meth:`state_dict` of ``self``'s ``keep`` members then ``other``'s, on ``self``'s
        clock."""
        pa, pb, n = len(keep), other.population, self.n
        a = self.state_dict() if keep == list(range(self.population)) \
            else self._members_state(keep)
        b = other.state_dict()

        def members(x: Any, y: Any) -> Any:
            if isinstance(x, dict):
                return {k: members(v, y[k]) for k, v in x.items()}
            if isinstance(x, torch.Tensor) and x.ndim and x.shape[0] == pa:
                return torch.cat([x, y.to(x.device)])
            return x

        out = {k: members(v, b[k]) for k, v in a.items() if k not in ("env", "start_steps")}
        out["population"] = pa + pb
        # other's members keep their own steps: on self's clock they started this much later
        out["start_steps"] = torch.cat([a["start_steps"],
                                        b["start_steps"] + (a["global_step"] - b["global_step"])])
        out["env"] = {k: np.concatenate([v, b["env"][k]]) if v.ndim and v.shape[0] == pa * n
                      else v for k, v in a["env"].items()}
        return out

    def _members_state(self, keep: list[int]) -> dict[str, Any]:
        """:meth:`state_dict` with only ``keep``'s members: [P, ...] tensors by member, the
        env's [P*n, ...] arrays by the members' rows."""
        p, n = self.population, self.n
        index = torch.tensor(keep)
        rows = np.concatenate([np.arange(m * n, (m + 1) * n) for m in keep])

        def members(value: Any) -> Any:
            if isinstance(value, dict):
                return {k: members(v) for k, v in value.items()}
            if isinstance(value, torch.Tensor) and value.ndim and value.shape[0] == p:
                return value[index.to(value.device)].clone()
            return value

        state = self.state_dict()
        out = {k: members(v) for k, v in state.items() if k not in ("env", "generator")}
        out["population"] = len(keep)
        out["generator"] = (state["generator"] if self.generators is None
                            else state["generator"][index])
        out["env"] = {k: v[rows] if v.ndim and v.shape[0] == p * n else v
                      for k, v in state["env"].items()}
        return out

    def member_agent(self, m: int, view: bool = False) -> Agent:
        """Member m's policy and observation normaliser as an :class:`Agent` (copies; with
        ``view`` they share the engine's tensors, so the agent follows training)."""
        market = self.market if self.markets is None else self.markets[m]
        normaliser = getattr(market, "normaliser", None)
        feature_state = normaliser.state_dict() if hasattr(normaliser, "state_dict") else None
        return Agent(self.member_network(m, view=view),
                     self.obs_normaliser.member(m, copy=not view), self.config, feature_state,
                     precision=precision_name(self.amp))


def _check_like(value: Any, expected: Any, key: str) -> None:
    """``value`` has ``expected``'s keys, and tensors/arrays of its shapes and dtypes."""
    where = key or "state"
    if isinstance(expected, dict):
        if not isinstance(value, dict):
            raise PopulationError(f"population state: {where} must be a dict")
        missing, extra = sorted(set(expected) - set(value)), sorted(set(value) - set(expected))
        if missing or extra:
            raise PopulationError(f"population state: {where} is missing {missing} or has "
                                  f"unknown {extra}")
        for k, v in expected.items():
            _check_like(value[k], v, f"{key}.{k}" if key else str(k))
    elif isinstance(expected, (torch.Tensor, np.ndarray)):
        if type(value) is not type(expected) or tuple(value.shape) != tuple(expected.shape) \
                or value.dtype != expected.dtype:
            got = (f"{type(value).__name__} {getattr(value, 'dtype', '')} "
                   f"{tuple(getattr(value, 'shape', ()))}")
            raise PopulationError(f"population state: {where} should be "
                                  f"{type(expected).__name__} {expected.dtype} "
                                  f"{tuple(expected.shape)}, got {got}")
    elif key == "population" and value != expected:
        raise PopulationError(f"population state: holds {value} members, this population "
                              f"has {expected}")


__all__ = ["HPARAMS", "MEMBER_KEYS", "MemberState", "PopulationDivergedError",
           "PopulationError", "member_config_differences", "member_configs", "member_values",
           "shared_key"]
