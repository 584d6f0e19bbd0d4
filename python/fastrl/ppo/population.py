"""The PPO engine: P agents trained in one process over one simulator, stacked networks.

Every PPO run in fastrl goes through this class: a :class:`~fastrl.ppo.trainer.Trainer` is
the engine with one member (plus hooks, overridable schedules and checkpoints), population-
based training (:mod:`fastrl.tune.pbt`) is the engine with P members plus exploit/explore.

- **One simulator.** A single ``TradingVecEnv`` (or ``PortfolioVecEnv`` with
  ``portfolio.enabled``) runs P x n envs; member m owns rows [m*n, (m+1)*n). Every member
  sees the same market block (no copy per member).
- **Stacked networks.** The P ActorCritics' parameters are stacked ([P, ...] tensors,
  ``torch.func.stack_module_state``) and run as one batched pass for all members, in rollout
  inference and in each PPO minibatch: ``vmap(functional_call)`` under torch.compile, and
  the same ActorCritic written as ``baddbmm`` over the stacked weights in eager mode (eager
  vmap's per-op dispatch cost more than the matmuls at these sizes). Minibatches are gathered per
  member with a [P, mb] index, so members shuffle independently.
- **Per-member state.** Hyperparameters are [P] tensors (learning rate, entropy coef, clip
  range, value coef, max grad norm, value clip range, epochs); :class:`BatchedAdam` keeps
  Adam/AdamW moments and step counts per member; the observation normaliser and reward
  scaler (:mod:`fastrl.ppo.normalize` with ``members=P``) keep [P, ...] statistics.
  The loss is the sum of the members' losses, so each member's gradient is its own loss's
  gradient; gradient norms are clipped per member.
- **Members with their own configs.** Built from a list of configs (a batched study's trials,
  :mod:`fastrl.cli.tune` ``--batch``), member m follows its own schedules (learning rate with
  its warm-up and cosine decay, entropy and clip ranges), vf_coef, max_grad_norm, target_kl,
  weight decay, epochs, gamma (GAE and reward scaler) and GAE lambda; every other key must be
  shared (:data:`MEMBER_KEYS`). With one shared config the arithmetic is today's, operation for
  operation (floats, not [P] tensors), so a one-member engine is unchanged bit for bit.

Why the Trainer is this engine with P = 1 rather than a second loop sharing its pieces: the
batched path (matmuls over stacked weights, ``autograd.grad`` into one fused Adam, no
``torch.distributions`` objects) measured faster at P = 1 than the Trainer's own loop did
(bench/pbt.py), and one loop cannot drift from another. A population of one is therefore a
Trainer step for step (same weights, same env streams, same draws from one torch generator
seeded with ``config.seed``: action sampling each step, then one ``randperm`` per member per
epoch; tests/test_pbt.py). For P > 1 member m does
not draw what a lone Trainer would: the action draws of all members come from one
``multinomial`` call over the P x n rows, which is the point of batching.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from fastrl import threads
from fastrl.config import TrainConfig, portfolio_env_config, resolve_defaults, validate_config
from fastrl.ppo.agent import Agent, env_actions, precision_name
from fastrl.ppo.checkpoint import build_network
from fastrl.ppo.network import ActorCritic, greedy_action
from fastrl.ppo.normalize import ObservationNormaliser, RewardScaler
from fastrl.ppo.rollout import Rollout, staging_tensors
from fastrl.ppo.schedules import ScheduleSpec
from fastrl.ppo.simplex import simplex_weights
from fastrl.ppo.storage import RolloutStorage
from fastrl.ppo.update import STAT_NAMES, autocast_context, clipped_objective, default_amp

# ActorCritic's activations as functions (the stacked forward applies them itself).
STACKED_ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu,
                       "silu": torch.nn.functional.silu, "gelu": torch.nn.functional.gelu}

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


def _member_values(config: TrainConfig) -> dict[str, Any]:
    return {k: getattr(config, k) for k in sorted(MEMBER_KEYS)}


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    import dataclasses

    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(value):
            out.update(_flat(getattr(value, f.name), f"{prefix}{f.name}."))
        return out
    return {prefix[:-1]: value}


def shared_key(config: TrainConfig) -> str:
    """The values of every key outside :data:`MEMBER_KEYS`, as text: configs with the same
    key can be members of one population (a batched study groups its trials by it)."""
    import json

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


# ------------------------------------------------------------------------- optimiser


class BatchedAdam:
    """Adam / AdamW over stacked [P, ...] parameters with a [P] learning-rate tensor.

    torch.optim takes one lr per parameter group, so P members would need P groups and a
    Python loop; here every op runs on the stacked tensors. The arithmetic follows
    torch.optim.AdamW (decoupled decay ``p *= 1 - lr * wd``) or Adam (L2 added to the
    gradient), with weight decay on weight matrices only (per member ndim >= 2), as
    :func:`fastrl.ppo.update.make_optimizer` does. ``active`` [P] bool skips members (their
    target-KL stop fired): their parameters, moments and step counts stay as they are.
    ``weight_decay``: one float for every member, or a sequence of P (members of a batched
    study); members that share one value run the scalar arithmetic, so a one-member
    optimiser is unchanged bit for bit.
    """

    def __init__(self, params: dict[str, torch.Tensor], name: str,
                 weight_decay: float | list[float] | tuple[float, ...], eps: float,
                 betas: tuple[float, float] = (0.9, 0.999)) -> None:
        if name not in ("adam", "adamw"):
            raise ValueError(f"optimizer must be 'adamw' or 'adam', got {name!r}")
        self.params = params
        self.decoupled = name == "adamw"
        first = next(iter(params.values()))
        decays = ([float(weight_decay)] * first.shape[0]
                  if isinstance(weight_decay, (int, float)) else [float(w) for w in weight_decay])
        if len(decays) != first.shape[0]:
            raise ValueError(f"weight_decay: {len(decays)} values for {first.shape[0]} members")
        # one value shared by every member: a float (today's arithmetic); else a [P] tensor
        self.weight_decay: float = max(decays)
        self.member_decay: torch.Tensor | None = None
        if len(set(decays)) > 1:
            self.member_decay = torch.tensor(decays, dtype=torch.float32, device=first.device)
        self.eps = float(eps)
        self.beta1, self.beta2 = betas
        self.step_count = torch.zeros(first.shape[0], dtype=torch.float64, device=first.device)
        self.exp_avg = {k: torch.zeros_like(v, memory_format=torch.preserve_format)
                        for k, v in params.items()}
        self.exp_avg_sq = {k: torch.zeros_like(v, memory_format=torch.preserve_format)
                           for k, v in params.items()}
        # the step's temporaries, allocated once: a fresh tensor the size of the default
        # network's weights per op (freed and faulted in again every minibatch) made this
        # step 24 ms instead of 18 ms on the (2048, 1024, 512, 256) network (in-process,
        # interleaved, 2 cores with a niced neighbour)
        self._scratch = {k: torch.empty_like(v, memory_format=torch.preserve_format)
                         for k, v in params.items()}

        # One member on the CPU: torch's fused Adam(W) kernel, one pass over each tensor
        # (a third of this loop's time on the default network's weights, in-process and
        # interleaved beside neighbour jobs; torch.optim's arithmetic to float32 rounding).
        # Several members need per-member learning rates, which the kernel does not take; on
        # CUDA the loop stays until it is measured there.
        self.fused = first.shape[0] == 1 and first.device.type == "cpu" \
            and self.member_decay is None
        self.groups = [(names, decay) for names, decay in (
            ([k for k in params if self.decays(k)], self.weight_decay),
            ([k for k in params if not self.decays(k)], 0.0)) if names]

    def decays(self, name: str) -> bool:
        return self.params[name].ndim - 1 >= 2 and self.weight_decay > 0

    @torch.no_grad()
    def _fused_step(self, grads: dict[str, torch.Tensor], lr: torch.Tensor) -> None:
        kernel = torch._fused_adamw_ if self.decoupled else torch._fused_adam_
        step = self.step_count.to(torch.float32)[0]  # exact below 2**24 updates
        rate = float(lr[0])
        for names, decay in self.groups:
            # the kernel walks param, grad and moments as one flat buffer: same strides
            grad_list = [grads[k] if grads[k].stride() == self.params[k].stride()
                         else self._scratch[k].copy_(grads[k]) for k in names]
            kernel([self.params[k] for k in names], grad_list,
                   [self.exp_avg[k] for k in names], [self.exp_avg_sq[k] for k in names], [],
                   [step] * len(names), lr=rate, beta1=self.beta1, beta2=self.beta2,
                   weight_decay=decay, eps=self.eps, amsgrad=False, maximize=False)

    @torch.no_grad()
    def step(self, grads: dict[str, torch.Tensor], lr: torch.Tensor,
             active: torch.Tensor | None = None) -> None:
        """One update; ``lr`` float32 [P]; ``active`` None means every member."""
        if self.fused:
            if active is None or bool(active[0]):
                self.step_count.add_(1.0)
                self._fused_step(grads, lr)
            return
        subset = None
        if active is not None:
            self.step_count.add_(active.to(torch.float64))
            subset = active.nonzero().squeeze(1)
            if subset.numel() == 0:
                return
            if subset.numel() == active.numel():
                subset = None
        else:
            self.step_count.add_(1.0)
        steps = self.step_count.clamp(min=1.0)
        # bias corrections in float64 (torch computes them as Python floats)
        bias1 = 1.0 - self.beta1 ** steps
        bias2_sqrt = (1.0 - self.beta2 ** steps).sqrt()
        step_size = (lr.to(torch.float64) / bias1).to(torch.float32)
        lr32 = lr.to(torch.float32)
        decay = self.member_decay
        if subset is not None:  # only the members still training: gathered, updated, put back
            lr32, step_size, bias2_sqrt = (x.index_select(0, subset)
                                           for x in (lr32, step_size, bias2_sqrt))
            decay = None if decay is None else decay.index_select(0, subset)
        for name, param in self.params.items():
            tensors = (param, grads[name], self.exp_avg[name], self.exp_avg_sq[name])
            if subset is None:
                self._adam(name, *tensors, self._scratch[name], lr32, step_size, bias2_sqrt,
                           decay)
                continue
            param_s, grad_s, avg_s, avg_sq_s = (x.index_select(0, subset) for x in tensors)
            self._adam(name, param_s, grad_s, avg_s, avg_sq_s, torch.empty_like(param_s), lr32,
                       step_size, bias2_sqrt, decay)
            for full, part in ((param, param_s), (self.exp_avg[name], avg_s),
                               (self.exp_avg_sq[name], avg_sq_s)):
                full.index_copy_(0, subset, part)

    def _adam(self, name: str, param: torch.Tensor, grad: torch.Tensor, exp_avg: torch.Tensor,
              exp_avg_sq: torch.Tensor, scratch: torch.Tensor, lr32: torch.Tensor,
              step_size: torch.Tensor, bias2_sqrt: torch.Tensor,
              decay: torch.Tensor | None) -> None:
        """One Adam(W) step in place on stacked [M, ...] tensors with [M] rates."""
        shape = (-1,) + (1,) * (param.ndim - 1)
        if self.decays(name):
            if self.decoupled:
                rate = lr32 * (self.weight_decay if decay is None else decay)
                param.mul_(1.0 - rate.view(shape))
            elif decay is None:
                grad = grad.add(param, alpha=self.weight_decay)
            else:  # addcmul rounds as add(alpha=) does: shared values match
                grad = torch.addcmul(grad, param, decay.view(shape))
        exp_avg.lerp_(grad, 1.0 - self.beta1)
        exp_avg_sq.mul_(self.beta2).addcmul_(grad, grad, value=1.0 - self.beta2)
        # param -= step_size * exp_avg / (sqrt(exp_avg_sq) / bias2_sqrt + eps)
        denom = torch.sqrt(exp_avg_sq, out=scratch)
        denom.div_(bias2_sqrt.to(param.dtype).view(shape)).add_(self.eps)
        ratio = torch.div(exp_avg, denom, out=denom)
        param.addcmul_(ratio, (-step_size).view(shape))

    def member_state(self, m: int) -> dict[str, Any]:
        """Member m's step count and moments (copies): a one-member optimiser's state."""
        return {"step_count": self.step_count[m].clone(),
                "exp_avg": {k: v[m].detach().clone() for k, v in self.exp_avg.items()},
                "exp_avg_sq": {k: v[m].detach().clone() for k, v in self.exp_avg_sq.items()}}

    @torch.no_grad()
    def load_member_state(self, m: int, state: dict[str, Any]) -> None:
        """Write a :meth:`member_state` into member m (every key and shape checked first)."""
        for name in ("exp_avg", "exp_avg_sq"):
            missing = sorted(set(self.params) - set(state[name]))
            if missing:
                raise KeyError(f"optimizer state: {name} lacks {missing}")
            for key, value in getattr(self, name).items():
                if tuple(state[name][key].shape) != tuple(value.shape[1:]):
                    raise ValueError(f"optimizer state: {name}.{key} has shape "
                                     f"{tuple(state[name][key].shape)}, expected "
                                     f"{tuple(value.shape[1:])}")
        self.step_count[m] = float(state["step_count"])
        for name in ("exp_avg", "exp_avg_sq"):
            for key, value in getattr(self, name).items():
                value[m].copy_(state[name][key])


# --------------------------------------------------------------------- distributions


def _log_softmax(logits: torch.Tensor) -> torch.Tensor:
    # Categorical's normalisation (logits - logsumexp), so P = 1 matches Trainer bit for bit
    return logits - logits.logsumexp(dim=-1, keepdim=True)


def _categorical(logits: torch.Tensor, actions: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-prob and entropy of integer ``actions`` under ``logits`` [..., K] (float32)."""
    log_pmf = _log_softmax(logits)
    probs = torch.softmax(log_pmf, dim=-1)
    logprob = log_pmf.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    clamped = log_pmf.clamp(min=torch.finfo(log_pmf.dtype).min)
    return logprob, -(clamped * probs).sum(-1)


def _gaussian(mean: torch.Tensor, scale: torch.Tensor, actions: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-prob and entropy of ``actions`` under N(mean, scale) (Normal's formulas)."""
    logprob = (-((actions - mean) ** 2) / (2 * scale**2) - scale.log()
               - math.log(math.sqrt(2 * math.pi)))
    entropy = (0.5 + 0.5 * math.log(2 * math.pi) + scale.log()).expand_as(mean)
    return logprob, entropy


# ------------------------------------------------------------------------ population


class Population:
    """P PPO members over one simulator (see the module doc).

    ``config`` describes one member (``num_envs`` is n, the envs per member;
    ``total_timesteps`` is each member's budget). Members are built from one CPU generator
    seeded with ``config.seed``, member 0 first, so member 0 has a lone Trainer's weights.
    ``env_factory(block, num_envs, env_config, num_threads=, seed=, buffers=)`` replaces the
    simulator (tests).

    Members with their own configs (a batched study's trials): ``config`` a list of P
    TrainConfigs (``population`` None or P). They must agree on every key but
    :data:`MEMBER_KEYS` (shapes, budget, seed, data, env: :func:`member_config_differences`);
    member m then follows its own schedules (``self.specs[m]``), max_grad_norm, target_kl,
    weight decay, epochs, gamma and GAE lambda. ``self.config`` is member 0's config.
    PBT's factors multiply member m's own schedule, so with one config they are today's
    "factor x the seed config".

    Independent members (``member_seeds``, one seed per member; a batched study's trials):
    member m is what a lone engine seeded ``member_seeds[m]`` would be. Its network is the
    first one built from its seed, its env rows start from its seed's streams (rows
    ``m*n .. m*n+n-1`` = a lone engine's rows ``0 .. n-1``), and it draws its actions and
    minibatch orders from its own generator, only while it trains. So a member's curve does
    not depend on the other members: bit for bit between batches of two or more (the
    batched matmuls round alike), and to float32 rounding against a lone member, whose
    optimiser is torch's fused one-member Adam (1 ulp, tests/test_batch.py). Without
    ``member_seeds``, members come from one generator seeded ``config.seed`` and share the
    env's streams (PBT: members differ).
    """

    def __init__(self, config: TrainConfig | list[TrainConfig], population: int | None = None,
                 *, market: Any = None, env_factory: Callable[..., Any] | None = None,
                 member_seeds: Sequence[int] | None = None) -> None:
        from fastrl.data.market import load_market
        from fastrl.device import resolve_device

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
        self.member_configs = configs
        self.config = config = configs[0]
        self.population = p = int(population)
        if member_seeds is not None:
            member_seeds = [int(s) for s in member_seeds]
            if len(member_seeds) != p:
                raise PopulationError(f"member_seeds: {len(member_seeds)} seeds for {p} members")
        self.member_seeds = member_seeds
        self.env_factory = env_factory
        self.device = device = resolve_device(config.device)
        on_cuda = device.type == "cuda"
        self.amp = default_amp(self.device) if config.amp is None else bool(config.amp)
        self.compile = on_cuda if config.compile is None else bool(config.compile)
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(config.seed)
        init_generator = torch.Generator().manual_seed(config.seed)
        # independent members: one generator each (actions, minibatch orders)
        self.generators: list[torch.Generator] | None = None
        if member_seeds is not None:
            self.generators = [torch.Generator(device=device).manual_seed(s)
                               for s in member_seeds]
        self.market = market if market is not None else load_market(config)
        self.n = n = config.num_envs
        self.num_steps = config.num_steps
        self.batch_size = config.batch_size  # env steps per member per update
        self.num_updates = config.total_timesteps // self.batch_size
        self.specs = [ScheduleSpec.from_config(c) for c in configs]
        self.spec = self.specs[0]
        self.uniform = all(c is configs[0] for c in configs) or all(
            _member_values(c) == _member_values(configs[0]) for c in configs)
        # per-member plain values (host side); [P] tensors where the update reads them
        gammas = [float(c.gamma) for c in configs]
        lambdas = [float(c.gae_lambda) for c in configs]
        self.max_grad_norms = [float(c.max_grad_norm) for c in configs]
        kls = [c.target_kl for c in configs]
        self.target_kl: torch.Tensor | None = None
        if any(k is not None for k in kls):
            self.target_kl = torch.tensor([math.inf if k is None else float(k) for k in kls],
                                          dtype=torch.float32, device=device)
        # GAE's gamma and lambda: floats when shared (today's arithmetic), else [P*n] rows
        if len(set(gammas)) == 1 and len(set(lambdas)) == 1:
            self.gae_gamma: float | torch.Tensor = gammas[0]
            self.gae_lambda: float | torch.Tensor = lambdas[0]
        else:
            self.gae_gamma = torch.tensor(gammas, dtype=torch.float32,
                                          device=device).repeat_interleave(n)
            self.gae_lambda = torch.tensor(lambdas, dtype=torch.float32,
                                           device=device).repeat_interleave(n)

        # the env's own config: EnvConfig, or the PortfolioConfig built from env.* + portfolio.*
        self.portfolio = bool(config.portfolio.enabled)
        self.env_config = portfolio_env_config(config) if self.portfolio else config.env
        train = self.market.train
        if self.portfolio:
            from fastrl.env_portfolio import portfolio_obs_dim

            obs_dim = portfolio_obs_dim(train, config.env.window)
        else:
            obs_dim = config.env.window * train.num_features + 3
        self.staging = staging_tensors(p * n, obs_dim, device)
        factory = env_factory or (_make_portfolio_env if self.portfolio else _make_env)
        self.env = factory(train, p * n, self.env_config, num_threads=config.env_threads,
                           seed=config.seed,
                           buffers={k: t.numpy() for k, t in self.staging.items()})
        self.obs_dim = int(self.env.single_observation_space.shape[0])
        self.continuous = self.portfolio or config.env.action == "continuous"
        self.num_actions = 0 if self.continuous else int(self.env.single_action_space.n)

        members = [build_network(config, self.obs_dim, self.num_actions,
                                 generator=init_generator if member_seeds is None
                                 else torch.Generator().manual_seed(s))
                   for s in (member_seeds or [config.seed] * p)]
        params, buffers = stack_module_state(members)
        self.params = {k: _transposed_layout(v.detach().to(device)).requires_grad_(True)
                       for k, v in params.items()}
        self.buffers = {k: v.to(device) for k, v in buffers.items()}
        self.template = members[0].to(device)  # a real module: validation loads members into it
        self.base = copy.deepcopy(members[0]).to("meta")
        self.optimizer = BatchedAdam(self.params, config.optimizer,
                                     [float(c.weight_decay) for c in configs], config.adam_eps)
        self.action_shape = self.template.action_shape  # () or (K,) simplex logits
        self.obs_normaliser = ObservationNormaliser(self.obs_dim, config.obs_clip,
                                                    config.norm_obs, members=p).to(device)
        self.reward_scaler = RewardScaler(n, gammas if len(set(gammas)) > 1 else gammas[0],
                                          config.reward_clip, config.norm_reward,
                                          members=p).to(device)
        # Each member's hyperparameter = factor x the seed config's schedule at that step;
        # factors 1 reproduce the seed config (PBT's explore moves the factors).
        self.factors = {k: torch.ones(p, dtype=torch.float64) for k in HPARAMS}
        self.hparams = {k: torch.zeros(p, dtype=torch.float32, device=device) for k in HPARAMS}
        self.clip_range_vf = torch.zeros(p, dtype=torch.float32, device=device)
        # epochs per update per member (host side: the epoch loop reads it)
        self.n_epochs = torch.tensor([int(c.n_epochs) for c in configs], dtype=torch.int64)

        def member_forward(params: dict, buffers: dict, obs: torch.Tensor):
            return functional_call(self.base, (params, buffers), (obs,))

        self._loss = self._member_losses
        if self.compile:
            # vmap(functional_call) over the stacked state; compiled, its batching is traced
            # away. Fixed shapes ([P, n] to act, [P, mb] to learn) and tensor hyperparameters:
            # each compiles once. dynamic=False as in Trainer (one forward, two batch sizes).
            # Compiled graphs are cached per process: a population built by join or keep
            # with a member count already seen reuses them (measured on CPU: 10 joins at
            # P = 4, no recompilation); each new count compiles once (about 20 s, one
            # thread, on a busy 2-core machine), and past torch's recompile limit (8)
            # the function runs eager.
            self._vmapped = vmap(member_forward)
            self._forward = torch.compile(self._vmapped, dynamic=False)
            self._loss = torch.compile(self._member_losses, dynamic=False)
        else:
            # Eager vmap costs ~0.4 ms of dispatch per Linear on CPU (measured: 10x a plain
            # Linear of 32 rows), which made a population of one 2-3x slower than a Trainer;
            # the same ActorCritic as batched matmuls over the stacked weights does not.
            self._vmapped = self._stacked_actor_critic
            self._forward = self._vmapped
        self.storage = RolloutStorage(config.num_steps, p * n, self.obs_dim, self.continuous,
                                      device, action_shape=self.action_shape)
        action_map = None
        if self.portfolio:  # simplex logits -> symbol weights within the caps
            caps = (float(config.portfolio.max_weight), float(config.portfolio.max_gross))
            weights = np.zeros((p * n, self.action_shape[0] - 1))  # reused every step

            def action_map(logits: np.ndarray) -> np.ndarray:
                return simplex_weights(logits, *caps, out=weights)

        self.rollout = Rollout(
            self.env, self.staging, self.storage, self.obs_normaliser, self.reward_scaler,
            members=p, device=device, forward=self.forward, value=self.value,
            sample=self.sample,
            continuous=self.continuous, action_range=(config.env.min_pos, config.env.max_pos),
            action_map=action_map)
        self.global_step = 0  # env steps per member (the engine's clock)
        self.update = 0
        # the engine step at which each member started (0, or where it joined a running
        # population, :meth:`join`): member m's own step is global_step - start_steps[m]
        self.start_steps = torch.zeros(p, dtype=torch.int64)
        self.set_step(0)
        if member_seeds is None:
            self.rollout.start(config.seed)
        else:
            self._start_members(member_seeds)

    def _start_members(self, seeds: list[int]) -> None:
        """Independent members' first episodes: member m's env rows as a lone engine's rows
        0..n-1 after ``reset(seed=seeds[m])`` (each env's stream depends on its seed and row
        only, so a reset of the whole env gives every row of a lone member's envs)."""
        n, rows = self.n, self.population * self.n
        starts = {}
        for seed in dict.fromkeys(seeds):  # distinct seeds, first use first
            self.env.reset(seed=seed)
            starts[seed] = self.env.get_state()
        state = {k: v.copy() for k, v in starts[seeds[0]].items()}
        for key, value in state.items():
            if value.ndim and value.shape[0] == rows:  # a per-env array
                for m, seed in enumerate(seeds):
                    value[m * n:(m + 1) * n] = starts[seed][key][:n]
        self.env.set_state(state)
        self.rollout.begin()

    # ------------------------------------------------------------------ hyperparameters

    def seed_values(self, step: int, m: int = 0) -> dict[str, float]:
        """Member m's own config's hand-set schedules at ``step`` (what factor 1 follows);
        with one shared config, the seed config's."""
        values = self.specs[m].values_at(step)
        values["max_grad_norm"] = self.max_grad_norms[m]
        return values

    def member_step(self, m: int) -> int:
        """Env steps member m has taken (its own clock: it may have joined mid-run)."""
        return self.global_step - int(self.start_steps[m])

    def member_update(self, m: int) -> int:
        """Updates member m has taken; it is done at :attr:`num_updates`."""
        return self.member_step(m) // self.batch_size

    def set_step(self, step: int) -> dict[str, torch.Tensor]:
        """Move every member's hyperparameters to engine step ``step`` (in place): member
        m's schedules at its own step, ``step - start_steps[m]``."""
        staggered = bool(self.start_steps.any())
        if self.uniform and not staggered:
            seed = self.seed_values(step)
            for name in HPARAMS:
                self.hparams[name].copy_((self.factors[name] * seed[name]).to(torch.float32))
            if self.config.clip_range_vf is None:
                self.clip_range_vf.copy_(self.hparams["clip_range"])
            else:
                self.clip_range_vf.fill_(float(self.config.clip_range_vf))
            return self.hparams
        starts = self.start_steps.tolist()
        seeds = [self.seed_values(step - starts[m], m) for m in range(self.population)]
        for name in HPARAMS:
            values = torch.tensor([s[name] for s in seeds], dtype=torch.float64)
            self.hparams[name].copy_((self.factors[name] * values).to(torch.float32))
        for m, c in enumerate(self.member_configs):
            self.clip_range_vf[m] = (self.hparams["clip_range"][m] if c.clip_range_vf is None
                                     else float(c.clip_range_vf))
        return self.hparams

    @torch.no_grad()
    def pin_hparams(self, values: dict[str, float], m: int | None = None) -> None:
        """Write hyperparameter values as they are (no factor, no schedule) into member m,
        or every member: HPARAMS, ``clip_range_vf`` and ``n_epochs``. They hold until the
        next :meth:`set_step` (the Trainer pins its own schedules after each one)."""
        rows = slice(None) if m is None else m
        for name, value in values.items():
            if name == "clip_range_vf":
                self.clip_range_vf[rows] = float(value)
            elif name == "n_epochs":
                self.n_epochs[rows] = int(value)
            elif name in HPARAMS:
                self.hparams[name][rows] = float(value)
            else:
                raise PopulationError(f"unknown hyperparameter {name!r}")

    def member_hparams(self, m: int) -> dict[str, float]:
        return {k: float(self.hparams[k][m]) for k in HPARAMS}

    def set_member_hparams(self, m: int, **values: float) -> None:
        """Pin member m's hyperparameters to ``values`` at the current step (via its factors).

        A value whose seed schedule is 0 now (inside a warmup from 0) sets the factor against
        the seed's base value instead, so the member keeps the schedule's shape.
        """
        unknown = sorted(set(values) - set(HPARAMS))
        if unknown:
            raise PopulationError(f"unknown hyperparameter(s) {unknown}; settable: {HPARAMS}")
        seed = self.seed_values(self.member_step(m), m)
        for name, value in values.items():
            if not (math.isfinite(value) and value > 0):
                raise PopulationError(f"hyperparameter {name} must be a finite number > 0, "
                                      f"got {value!r}")
            reference = seed[name] if seed[name] > 0 else getattr(self.member_configs[m], name)
            self.factors[name][m] = float(value) / float(reference)
        self.set_step(self.global_step)

    # ------------------------------------------------------------------------ rollout

    def _std(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """The Gaussian heads' std as [P, 1, A] (A = 1, or K simplex logits)."""
        log_std = params["log_std"]
        return log_std.float().exp().view(log_std.shape[0], 1, -1)

    def _stacked_actor_critic(self, params: dict, buffers: dict, obs: torch.Tensor,
                              value_only: bool = False, policy_only: bool = False
                              ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """ActorCritic.forward for every member at once: ``obs`` [P, B, D] through the
        stacked weights with ``baddbmm`` (trunk under autocast, heads in float32).
        ``value_only`` skips a separate actor trunk (policy output None), ``policy_only``
        the critic (value None)."""
        activation = STACKED_ACTIVATIONS[self.config.activation]

        def linear(name: str, x: torch.Tensor) -> torch.Tensor:
            weight, bias = params[f"{name}.weight"], params[f"{name}.bias"]
            return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))

        def trunk(prefix: str, x: torch.Tensor) -> torch.Tensor:
            for index in range(0, 2 * len(self.config.hidden_sizes), 2):
                x = activation(linear(f"{prefix}.{index}", x))
            return x

        shared = self.config.shared_trunk
        actor = None if value_only and not shared else trunk("actor_trunk", obs)
        critic = None if policy_only else actor if shared else trunk("critic_trunk", obs)
        with torch.autocast(obs.device.type, enabled=False):
            policy_out = None if actor is None else linear("policy_head", actor.float())
            value = None if critic is None else linear("value_head", critic.float()).squeeze(-1)
        return policy_out, value

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Every member's policy output [P, B, K or 1] and value [P, B] on ``obs`` [P, B, D]."""
        with autocast_context(self.device, self.amp):
            policy_out, value = self._forward(self.params, self.buffers, obs)
        return policy_out.float(), value.float()

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        """Every member's value [P, B] on ``obs`` [P, B, D] (no actor trunk in eager mode)."""
        if self.compile:
            return self.forward(obs)[1]
        with autocast_context(self.device, self.amp):
            _, value = self._stacked_actor_critic(self.params, self.buffers, obs,
                                                  value_only=True)
        return value.float()

    @torch.no_grad()
    def sample(self, policy_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Actions [P*n, ...] drawn from every member's policy output [P, n, ...] with the
        engine's generator, and their log-probs [P*n]."""
        rows = policy_out.shape[0] * policy_out.shape[1]
        if self.continuous:
            shape = (rows, *self.action_shape)
            mean = policy_out.reshape(shape)
            std = self._std(self.params).expand_as(policy_out).reshape(shape)
            if self.generators is None:
                noise = torch.randn(mean.shape, generator=self.generator, device=mean.device,
                                    dtype=mean.dtype)
            else:  # each member's own draws, as alone
                noise = torch.cat([torch.randn((self.n, *shape[1:]), generator=g,
                                               device=mean.device, dtype=mean.dtype)
                                   for g in self.generators])
            action = mean + std * noise
            logprob, _ = _gaussian(mean, std, action)
            if self.portfolio:  # a diagonal Gaussian over the K logits
                logprob = logprob.sum(-1)
            return action, logprob
        log_pmf = _log_softmax(policy_out).reshape(rows, -1)
        probs = torch.softmax(log_pmf, -1)
        if self.generators is None:
            action = torch.multinomial(probs, 1, generator=self.generator).squeeze(-1)
        else:  # each member's own draws, as alone
            n = self.n
            action = torch.cat([torch.multinomial(probs[m * n:(m + 1) * n], 1, generator=g)
                                for m, g in enumerate(self.generators)]).squeeze(-1)
        return action, log_pmf.gather(-1, action.unsqueeze(-1)).squeeze(-1)

    def collect(self) -> dict[str, Any]:
        """One rollout of ``num_steps`` for every member into ``storage``
        (:meth:`fastrl.ppo.rollout.Rollout.collect`)."""
        return self.rollout.collect()

    @property
    def raw_obs(self) -> torch.Tensor:
        """The observation [P*n, D] the env last returned, on the device."""
        return self.rollout.raw_obs

    @property
    def next_obs(self) -> torch.Tensor:
        """Its normalised form [P, n, D]: the policy's next input."""
        return self.rollout.next_obs

    def restore_observation(self, raw_obs: torch.Tensor) -> None:
        """Continue from a snapshot whose env last returned ``raw_obs`` [P*n, D]."""
        self.rollout.restore(raw_obs)

    # ------------------------------------------------------------------------- update

    def _member_losses(
        self, params: dict, obs: torch.Tensor, actions: torch.Tensor, old_logprobs: torch.Tensor,
        advantages: torch.Tensor, returns: torch.Tensor, old_values: torch.Tensor,
        clip_range: torch.Tensor, ent_coef: torch.Tensor, vf_coef: torch.Tensor,
        clip_range_vf: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Each member's PPO loss [P] and stats [P, 5] (STAT_NAMES) on [P, mb] inputs."""
        config = self.config
        with autocast_context(self.device, self.amp):
            policy_out, values = self._vmapped(params, self.buffers, obs)
        policy_out, values = policy_out.float(), values.float()
        if self.portfolio:  # [P, mb, K] logits: the K Normals' sums
            logprobs, entropy = _gaussian(policy_out, self._std(params), actions)
            logprobs, entropy = logprobs.sum(-1), entropy.sum(-1)
        elif self.continuous:
            logprobs, entropy = _gaussian(policy_out.squeeze(-1),
                                          self._std(params).squeeze(-1), actions)
        else:
            logprobs, entropy = _categorical(policy_out, actions)
        return clipped_objective(logprobs, entropy, values, old_logprobs, advantages, returns,
                                 old_values, clip_range, ent_coef, vf_coef, clip_range_vf,
                                 norm_adv=config.norm_adv, clip_vloss=config.clip_vloss)

    def finish_rollout(self) -> dict[str, torch.Tensor]:
        """GAE over the P x n envs, then each member's batch as [P, T*n, ...]."""
        p, n, t = self.population, self.n, self.num_steps
        with torch.no_grad():
            last_value = self.value(self.next_obs)
        self.storage.finish(last_value.reshape(p * n), self.gae_gamma, self.gae_lambda)

        def per_member(x: torch.Tensor) -> torch.Tensor:
            # [T, P*n, ...] -> [P, T*n, ...] in a lone trainer's (step, env) order
            rest = x.shape[2:]
            return x.view(t, p, n, *rest).transpose(0, 1).reshape(p, t * n, *rest)

        s = self.storage
        return {"obs": per_member(s.obs), "actions": per_member(s.actions),
                "logprobs": per_member(s.logprobs), "values": per_member(s.values),
                "advantages": per_member(s.advantages), "returns": per_member(s.returns)}

    def ppo_update(self, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        """Every member's PPO epochs at once; the target-KL stop is per member."""
        config, p = self.config, self.population
        size = batch["obs"].shape[1]
        mb = config.minibatch_size
        per_epoch = size // mb
        device = self.device
        names = list(self.params)
        active = torch.ones(p, dtype=torch.bool, device=device)
        totals = torch.zeros((p, len(STAT_NAMES)), dtype=torch.float32, device=device)
        epochs = torch.zeros(p, dtype=torch.float32, device=device)
        h = self.hparams
        all_active = True
        epochs_per_member = self.n_epochs.tolist()
        flat = {k: v.reshape(p * size, *v.shape[2:]) for k, v in batch.items()}
        offsets = (torch.arange(p, device=device) * size).unsqueeze(1)
        for epoch in range(max(epochs_per_member)):
            if any(e <= epoch for e in epochs_per_member):  # members past their n_epochs
                active = active & (self.n_epochs.to(device) > epoch)
                all_active = False
                if not bool(active.any()):
                    break
            # one randperm per member from the shared generator: member 0 of P = 1 shuffles
            # exactly as a lone Trainer (P small draws, not a Python loop over the networks);
            # independent members draw from their own generators, and only while they train
            # (a stopped member's draws would shift its next rollout's)
            if self.generators is None:
                order = torch.stack([torch.randperm(size, device=device,
                                                    generator=self.generator)
                                     for _ in range(p)])
            else:
                training = active.tolist()
                order = torch.stack([
                    torch.randperm(size, device=device, generator=g) if training[m]
                    else torch.arange(size, device=device)
                    for m, g in enumerate(self.generators)])
            weight = active.float()
            # Eager: once members stop, the rest of the update computes only the members
            # still training (a batched study's members differ in n_epochs and target KL, so
            # masking alone computed every member for the longest one's epochs). Compiled
            # graphs have fixed shapes: there the stopped members are masked. Bit for bit
            # as if every member trained where the batched GEMMs round each member alike
            # whatever the batch count: MKL's do for widths that are powers of two, not for
            # some narrow layers (6, 7 or 10 outputs): there to float32 rounding.
            subset = None if all_active or self.compile else active.nonzero().squeeze(1)
            epoch_stats = torch.zeros_like(totals)
            for start in range(0, size, mb):
                # member m's rows of the flat [P * size, ...] batch: whole rows by
                # index_select (a gather with a per-element index cost 20% of an update)
                if subset is None:
                    rows = (order[:, start:start + mb] + offsets).reshape(-1)
                else:
                    rows = (order.index_select(0, subset)[:, start:start + mb]
                            + offsets.index_select(0, subset)).reshape(-1)
                picked = {k: v.index_select(0, rows).view(-1, mb, *v.shape[1:])
                          for k, v in flat.items()}
                if subset is None:
                    params, hp = self.params, (h["clip_range"], h["ent_coef"], h["vf_coef"],
                                               self.clip_range_vf)
                else:  # the gather is differentiable: stopped members' gradients are zero
                    params = {k: _select_members(v, subset) for k, v in self.params.items()}
                    hp = tuple(x.index_select(0, subset) for x in (
                        h["clip_range"], h["ent_coef"], h["vf_coef"], self.clip_range_vf))
                losses, stats = self._loss(
                    params, picked["obs"], picked["actions"], picked["logprobs"],
                    picked["advantages"], picked["returns"], picked["values"], *hp)
                # members' losses summed: each member's gradient is its own loss's gradient
                total = (losses * weight).sum() if not all_active and subset is None \
                    else losses.sum()
                grads = dict(zip(names, torch.autograd.grad(
                    total, [self.params[k] for k in names]), strict=True))
                if subset is not None:
                    stats = torch.zeros((p, stats.shape[1]), dtype=stats.dtype,
                                        device=device).index_copy_(0, subset, stats)
                self._clip_grads(grads, h["max_grad_norm"])
                self.optimizer.step(grads, h["learning_rate"],
                                    None if all_active else active)
                epoch_stats += stats.float()
            totals += epoch_stats * weight.unsqueeze(1)
            epochs += weight
            if self.target_kl is not None:
                kl = stats[:, STAT_NAMES.index("approx_kl")]
                if self.uniform:  # one shared threshold: today's comparison with a float
                    active = active & ~(kl > config.target_kl)
                else:
                    active = active & ~(kl > self.target_kl)
                all_active = bool(active.all())
                if not bool(active.any()):
                    break
        means = totals / (epochs * per_epoch).clamp(min=1).unsqueeze(1)
        return {"stats": means, "epochs": epochs}

    @torch.no_grad()
    def _clip_grads(self, grads: dict[str, torch.Tensor], max_norm: torch.Tensor) -> None:
        """clip_grad_norm_ per member: each member's norm over all its parameters."""
        # each member's norm of each gradient (a reduction: no squared copy of the default
        # network's weights, which cost ~10x torch's clip_grad_norm_), then over gradients
        norms = torch.stack([torch.linalg.vector_norm(g, dim=tuple(range(1, g.ndim)),
                                                      dtype=torch.float32)
                             for g in grads.values()])
        total = torch.linalg.vector_norm(norms, dim=0)
        coef = (max_norm / (total + 1e-6)).clamp(max=1.0)
        for g in grads.values():
            g.mul_(coef.view((-1,) + (1,) * (g.ndim - 1)).to(g.dtype))

    # ------------------------------------------------------------------------- step

    def step(self, raise_on_divergence: bool = True) -> dict[str, Any]:
        """One rollout and one PPO update for every member; the metrics row (lists per member).

        A member whose losses or weights became non-finite has diverged: with
        ``raise_on_divergence`` that is a :class:`PopulationDivergedError`; without it the
        row's ``diverged`` lists them and the caller must replace their weights (PBT copies
        a good member over them) before the next step.
        """
        threads.tick()  # the commands' thread policy (fastrl.threads)
        started = time.perf_counter()
        rollout = self.collect()
        self.global_step += self.batch_size
        self.set_step(self.global_step)
        t_update = time.perf_counter()
        batch = self.finish_rollout()
        result = self.ppo_update(batch)
        stats = result["stats"].cpu().numpy()
        with torch.no_grad():
            finite = torch.stack([v.reshape(self.population, -1).isfinite().all(1)
                                  for v in self.params.values()]).all(0).cpu().numpy()
        diverged = np.flatnonzero(~(finite & np.isfinite(stats).all(1))).tolist()
        if diverged and raise_on_divergence:
            raise PopulationDivergedError(
                f"update {self.update + 1} (step {self.global_step:,}): member(s) {diverged} "
                "diverged (non-finite losses or weights) at learning rate(s) "
                f"{[float(self.hparams['learning_rate'][m]) for m in diverged]}; lower "
                "learning_rate or max_grad_norm", diverged)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        now = time.perf_counter()
        self.update += 1
        wall = now - started
        row: dict[str, Any] = {
            "global_step": self.global_step,
            "update": self.update,
            "charts/SPS": self.population * self.batch_size / wall,
            "time/env_frac": rollout["timing"]["env"] / wall,
            "time/inference_frac": rollout["timing"]["inference"] / wall,
            "time/update_frac": (now - t_update) / wall,
            "episode_return": [float(np.mean(e["r"])) if e["r"] else None
                               for e in rollout["episodes"]],
            "epochs": result["epochs"].cpu().tolist(),
            "diverged": diverged,
        }
        for i, name in enumerate(STAT_NAMES):
            row[f"losses/{name}"] = stats[:, i].tolist()
        for name in HPARAMS:
            row[name] = self.hparams[name].cpu().tolist()
        return row

    # ------------------------------------------------------------------------- snapshot

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

    def keep(self, members: Sequence[int]) -> Population:
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
        kept = Population([self.member_configs[m] for m in keep], market=self.market,
                          env_factory=self.env_factory,
                          member_seeds=None if self.member_seeds is None
                          else [self.member_seeds[m] for m in keep])
        kept.load_state_dict(self._members_state(keep))
        return kept

    def join(self, other: Population, keep: Sequence[int] | None = None) -> Population:
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
        if other.market is not self.market:
            raise PopulationError("join: the two populations train on different markets")
        differences = member_config_differences(self.config, other.config)
        if differences:
            raise PopulationError("join: the members differ in keys that must be shared: "
                                  + ", ".join(differences))
        joined = Population([*(self.member_configs[m] for m in kept), *other.member_configs],
                            market=self.market, env_factory=self.env_factory,
                            member_seeds=[*(self.member_seeds[m] for m in kept),
                                          *other.member_seeds])
        joined.load_state_dict(self._joined_state(other, kept))
        return joined

    def _joined_state(self, other: Population, keep: list[int]) -> dict[str, Any]:
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
        normaliser = getattr(self.market, "normaliser", None)
        feature_state = normaliser.state_dict() if hasattr(normaliser, "state_dict") else None
        return Agent(self.member_network(m, view=view),
                     self.obs_normaliser.member(m, copy=not view), self.config, feature_state,
                     precision=precision_name(self.amp))

    def greedy_policy(self, members: Sequence[int]) -> Callable[[np.ndarray], np.ndarray]:
        """The deterministic actions of ``members`` (C of them) as one function of raw
        observations [C * S, D] (member ``members[c]``'s rows ``c * S .. c * S + S``), for
        :func:`fastrl.markets.single.backtest.evaluate_agents`: :meth:`Agent.act`'s arithmetic (the
        member's normaliser, the actor under autocast, argmax or the clipped mean) on the
        stacked weights, one forward for every member. Single-asset members only; the
        function acts with the weights the members have now, whatever training does next."""
        if self.portfolio:
            raise PopulationError("greedy_policy is for single-asset members; a portfolio "
                                  "member is backtested by validation_results")
        index = torch.as_tensor(list(members), dtype=torch.int64, device=self.device)
        low, high = float(self.env_config.min_pos), float(self.env_config.max_pos)
        # the members' weights and statistics as they are now (a backtest's policy is fixed)
        normaliser = self.obs_normaliser.select(index)
        with torch.no_grad():
            params = {k: v.detach().index_select(0, index) for k, v in self.params.items()}

        @torch.inference_mode()
        def act(obs: np.ndarray) -> np.ndarray:
            x = torch.as_tensor(np.asarray(obs, dtype=np.float32), device=self.device)
            x = normaliser(x.view(index.numel(), -1, self.obs_dim))
            with autocast_context(self.device, self.amp):
                policy_out, _ = self._stacked_actor_critic(params, self.buffers, x,
                                                           policy_only=True)
            action = greedy_action(policy_out.float().flatten(0, 1), self.continuous)
            return env_actions(action, self.continuous, low, high)

        return act

    def validation_evals(self, members: Sequence[int] | None = None, block: Any = None,
                         baselines: bool = False) -> list[Any]:
        """Each single-asset member's validation backtest (an EvalResult) on ``block``
        (default the validation block): every member in one batched env with one forward
        per bar (:meth:`greedy_policy`). A portfolio's members are backtested by
        :meth:`validation_results`."""
        from fastrl.markets.single.backtest import evaluate_agents

        block = self.market.val if block is None else block
        members = list(range(self.population)) if members is None else list(members)
        if not members:
            return []
        return evaluate_agents(self.greedy_policy(members), block, self.env_config,
                               copies=len(members), baselines=baselines)

    def validate(self, members: list[int] | None = None, block: Any = None) -> list[float]:
        """Validation Sharpe of each member, the number Trainer.validate gives.

        The members' backtests run in one batched env (:meth:`validation_evals`), each the
        test-days report's evaluation of that member alone. ``block``: the bars to backtest
        on, default the validation block (``self.market.val``); PBT picks its winner on a
        later window the same way.
        """
        return [r["sharpe"] for r in self.validation_results(members, block)]

    def validation_results(self, members: list[int] | None = None, block: Any = None
                           ) -> list[dict[str, Any]]:
        """:meth:`validate`'s backtests in full: per member the Sharpe, the total return and
        the per-bar returns the Sharpe comes from (``returns``)."""
        block = self.market.val if block is None else block
        members = list(range(self.population)) if members is None else members
        if self.portfolio:
            results = []
            for m in members:
                agent = self.member_agent(m)
                agent.network.eval()
                results.append(validation_scores(agent, block, self.env_config, True,
                                                 returns=True))
            return results
        from fastrl.markets.single.result import COMBINED

        return [{"sharpe": float(r.combined["agent"].sharpe),
                 "return": float(r.combined["agent"].total_return),
                 "returns": np.asarray(r.returns(COMBINED, "agent"), dtype=np.float64)}
                for r in self.validation_evals(members, block)]


def validation_scores(agent: Agent, block: Any, env_config: Any, portfolio: bool,
                      returns: bool = False) -> dict[str, Any]:
    """Sharpe and total return of ``agent``'s deterministic backtest on ``block``.

    :func:`fastrl.markets.single.backtest.evaluate_agent` (the test-days report's function:
    every symbol in one batched env, the position closed and its cost paid at the end, the
    equal-capital combined Sharpe), or for a portfolio
    :func:`fastrl.markets.portfolio.backtest.evaluate_portfolio` (the portfolio's Sharpe). With
    ``returns`` also the per-bar returns that Sharpe is computed from (``returns``).
    """
    if portfolio:
        from fastrl.markets.portfolio.backtest import evaluate_portfolio

        backtest = evaluate_portfolio(agent, block, env_config, baselines=False).get("agent")
        metrics = backtest.metrics
        out: dict[str, Any] = {"sharpe": float(metrics.sharpe),
                               "return": float(metrics.total_return)}
        if returns:
            out["returns"] = np.asarray(backtest.returns, dtype=np.float64)
        return out
    from fastrl.markets.single.backtest import evaluate_agent
    from fastrl.markets.single.result import COMBINED

    result = evaluate_agent(agent, block, env_config, baselines=False)
    combined = result.combined["agent"]
    out = {"sharpe": float(combined.sharpe), "return": float(combined.total_return)}
    if returns:
        out["returns"] = np.asarray(result.returns(COMBINED, "agent"), dtype=np.float64)
    return out


def _select_members(value: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``value.index_select(0, index)`` in ``value``'s layout (differentiable).

    A plain index_select returns the stored-transposed weights (:func:`_transposed_layout`)
    contiguous: the members still training would then multiply by ``weight.mT`` through
    other GEMM kernels than when every member trains, and so round otherwise, and a
    member's update would depend on whether another member had stopped.
    """
    if value.ndim == 3 and not value.is_contiguous() and value.mT.is_contiguous():
        return value.mT.index_select(0, index).mT
    return value.index_select(0, index)


def _transposed_layout(value: torch.Tensor) -> torch.Tensor:
    """Stacked weight matrices [P, out, in] stored as a transpose of contiguous [P, in, out].

    The stacked forward multiplies by ``weight.mT``, so autograd returns each weight's
    gradient in this layout; with the weights (and so Adam's moments) in it too, Adam's
    elementwise ops run on matching strides. Weights in the plain layout made the gradients
    need a transposing copy, or made lerp_/addcmul_ ~20x slower on the default network.
    """
    return value.mT.contiguous().mT if value.ndim == 3 else value


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


def _make_env(block: Any, num_envs: int, env_config: Any, *, num_threads: int, seed: int,
              buffers: dict | None = None) -> Any:
    from fastrl.env import TradingVecEnv

    return TradingVecEnv(block, num_envs, env_config, num_threads=num_threads, seed=seed,
                         buffers=buffers)


def _make_portfolio_env(panel: Any, num_envs: int, env_config: Any, *, num_threads: int,
                        seed: int, buffers: dict | None = None) -> Any:
    from fastrl.env_portfolio import PortfolioVecEnv

    return PortfolioVecEnv(panel, num_envs, env_config, num_threads=num_threads, seed=seed,
                           buffers=buffers)


__all__ = ["HPARAMS", "MEMBER_KEYS", "BatchedAdam", "Population", "PopulationDivergedError",
           "PopulationError", "member_config_differences", "shared_key", "validation_scores"]
