"""The PPO engine: P agents trained in one process over one simulator, stacked networks.

Every PPO run in fastrl goes through this class: a :class:`~fastrl.ppo.trainer.Trainer` is
the engine with one member (plus hooks, overridable schedules and checkpoints), population-
based training (:mod:`fastrl.tune.pbt`) is the engine with P members plus exploit/explore.

- **One simulator.** The config's market (:func:`fastrl.markets.market_for`) builds one
  env of P x n envs; member m owns rows [m*n, (m+1)*n). Every member sees the same market
  block (no copy per member). What the policy outputs and how it is sampled and scored is
  the market's action head (:mod:`fastrl.ppo.heads`).
- **Stacked networks.** The P ActorCritics' parameters are stacked ([P, ...] tensors,
  ``torch.func.stack_module_state``) and run as one batched pass for all members, in rollout
  inference and in each PPO minibatch: ``vmap(functional_call)`` under torch.compile, and
  the same ActorCritic written as ``baddbmm`` over the stacked weights in eager mode (no
  per-op vmap dispatch). Minibatches are gathered per member with a [P, mb] index, so
  members shuffle independently.
- **Per-member state.** Hyperparameters are [P] tensors (learning rate, entropy coef, clip
  range, value coef, max grad norm, value clip range, epochs);
  :class:`~fastrl.ppo.batched_adam.BatchedAdam` keeps Adam/AdamW moments and step counts per
  member; the observation normaliser and reward scaler (:mod:`fastrl.ppo.normalize` with
  ``members=P``) keep [P, ...] statistics. The loss is the sum of the members' losses, so
  each member's gradient is its own loss's gradient; gradient norms are clipped per member.
- **Members with their own configs.** Built from a list of configs (a batched study's trials,
  :mod:`fastrl.cli.tune` ``--batch``), member m follows its own schedules (learning rate with
  its warm-up and cosine decay, entropy and clip ranges), vf_coef, max_grad_norm, target_kl,
  weight decay, epochs, gamma (GAE and reward scaler) and GAE lambda; every other key must be
  shared (:data:`~fastrl.ppo.members.MEMBER_KEYS`). With one shared config the arithmetic is a
  lone member's, operation for operation (floats, not [P] tensors), so a one-member engine
  is bit for bit a lone trainer.

The Trainer is this engine with P = 1 rather than a second loop sharing its pieces, so one
loop cannot drift from another. A population of one is therefore a Trainer step for step
(same weights, same env streams, same draws from one torch generator seeded with
``config.seed``: action sampling each step, then one ``randperm`` per member per epoch;
tests/test_pbt.py). For P > 1 member m does not draw what a lone Trainer would: the action
draws of all members come from one call over the P x n rows, which is the point of
batching.

Who may be a member and the engine's state as a whole (snapshot, copy, keep, join) are in
:mod:`fastrl.ppo.members`.
"""

from __future__ import annotations

import copy
import functools
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.func import functional_call, stack_module_state, vmap

from fastrl import threads
from fastrl.config import TrainConfig
from fastrl.device import resolve_device
from fastrl.markets import market_for
from fastrl.ppo.batched_adam import BatchedAdam
from fastrl.ppo.checkpoint import build_network
from fastrl.ppo.heads import Draws, head_for
from fastrl.ppo.member_envs import MemberEnvs
from fastrl.ppo.member_validation import MemberValidation
from fastrl.ppo.members import (
    HPARAMS,
    MemberState,
    PopulationDivergedError,
    PopulationError,
    member_configs,
    member_values,
)
from fastrl.ppo.normalize import ObservationNormaliser, RewardScaler
from fastrl.ppo.rollout import Rollout, staging_tensors
from fastrl.ppo.schedules import ScheduleSpec
from fastrl.ppo.stacked import select_members, stacked_actor_critic, transposed_layout
from fastrl.ppo.storage import RolloutStorage
from fastrl.ppo.update import STAT_NAMES, autocast_context, clipped_objective, default_amp


class Population(MemberState, MemberValidation):
    """P PPO members over one simulator (see the module doc).

    ``config`` describes one member (``num_envs`` is n, the envs per member;
    ``total_timesteps`` is each member's budget). Members are built from one CPU generator
    seeded with ``config.seed``, member 0 first, so member 0 has a lone Trainer's weights.
    ``market`` is the loaded splits (default: the config's market loads them).
    ``env_factory(block, num_envs, *, num_threads=, seed=, buffers=, env_config=)`` replaces
    the market's :meth:`~fastrl.markets.base.Market.make_env` (tests).

    Members with their own configs (a batched study's trials): ``config`` a list of P
    TrainConfigs (``population`` None or P). They must agree on every key but
    :data:`~fastrl.ppo.members.MEMBER_KEYS` (shapes, budget, seed, data, env:
    :func:`~fastrl.ppo.members.member_config_differences`); member m then follows its own
    schedules (``self.specs[m]``), max_grad_norm, target_kl, weight decay, epochs, gamma and
    GAE lambda. ``self.config`` is member 0's config. PBT's factors multiply member m's own
    schedule, so with one config they are "factor x the seed config".

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
        configs = member_configs(config, population)
        population = len(configs)
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
        # the config's market: its env, observation size, action head and backtests
        self.kind = market_for(config)
        # members on their own markets (a walk-forward's windows): one env each
        self.markets: list[Any] | None = None
        if isinstance(market, (list, tuple)):
            if member_seeds is None or len(market) != p:
                raise PopulationError(f"members on their own markets need member_seeds and "
                                      f"one market per member: {len(market)} markets for "
                                      f"{p} members")
            self.markets = list(market)
            market = self.markets[0]
        self.market = market if market is not None else self.kind.load()
        self.n = n = config.num_envs
        self.num_steps = config.num_steps
        self.batch_size = config.batch_size  # env steps per member per update
        self.num_updates = config.total_timesteps // self.batch_size
        self.specs = [ScheduleSpec.from_config(c) for c in configs]
        self.spec = self.specs[0]
        self.uniform = all(c is configs[0] for c in configs) or all(
            member_values(c) == member_values(configs[0]) for c in configs)
        # per-member plain values (host side); [P] tensors where the update reads them
        gammas = [float(c.gamma) for c in configs]
        lambdas = [float(c.gae_lambda) for c in configs]
        self.max_grad_norms = [float(c.max_grad_norm) for c in configs]
        kls = [c.target_kl for c in configs]
        self.target_kl: torch.Tensor | None = None
        if any(k is not None for k in kls):
            self.target_kl = torch.tensor([math.inf if k is None else float(k) for k in kls],
                                          dtype=torch.float32, device=device)
        # GAE's gamma and lambda: floats when shared (a lone member's arithmetic), else
        # [P*n] rows
        if len(set(gammas)) == 1 and len(set(lambdas)) == 1:
            self.gae_gamma: float | torch.Tensor = gammas[0]
            self.gae_lambda: float | torch.Tensor = lambdas[0]
        else:
            self.gae_gamma = torch.tensor(gammas, dtype=torch.float32,
                                          device=device).repeat_interleave(n)
            self.gae_lambda = torch.tensor(lambdas, dtype=torch.float32,
                                           device=device).repeat_interleave(n)

        self.env_config = self.kind.env_config  # the env's own config
        train = self.market.train
        obs_dim = self.kind.obs_dim(train)
        self.staging = staging_tensors(p * n, obs_dim, device)
        make = functools.partial(env_factory or self.kind.make_env,
                                 num_threads=config.env_threads, env_config=self.env_config)
        staged = {k: t.numpy() for k, t in self.staging.items()}
        if self.markets is None:
            self.env = make(train, p * n, seed=config.seed, buffers=staged)
        else:
            sizes = sorted({self.kind.obs_dim(m.train) for m in self.markets})
            if sizes != [obs_dim]:
                raise PopulationError(f"the members' markets give observations of sizes "
                                      f"{sizes}; members of one population need one size")
            self.env = MemberEnvs(make, [m.train for m in self.markets], n, member_seeds,
                                  buffers=staged)
        self.obs_dim = int(self.env.single_observation_space.shape[0])
        self.head = head = head_for(self.kind.action_spec())
        self.num_actions = head.num_actions
        self.draws = Draws(self.generator, self.generators, n)

        members = [build_network(config, self.obs_dim, self.num_actions,
                                 generator=init_generator if member_seeds is None
                                 else torch.Generator().manual_seed(s))
                   for s in (member_seeds or [config.seed] * p)]
        params, buffers = stack_module_state(members)
        self.params = {k: transposed_layout(v.detach().to(device)).requires_grad_(True)
                       for k, v in params.items()}
        self.buffers = {k: v.to(device) for k, v in buffers.items()}
        self.template = members[0].to(device)  # a real module: validation loads members into it
        self.base = copy.deepcopy(members[0]).to("meta")
        self.optimizer = BatchedAdam(self.params, config.optimizer,
                                     [float(c.weight_decay) for c in configs], config.adam_eps)
        self.action_shape = head.action_shape  # () or (K,) simplex logits
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

        # the stacked members' ActorCritic as batched matmuls (eager forward, greedy policy)
        self._stacked_actor_critic = functools.partial(
            stacked_actor_critic, activation=config.activation,
            layers=len(config.hidden_sizes), shared=config.shared_trunk)

        def member_forward(params: dict, buffers: dict, obs: torch.Tensor):
            return functional_call(self.base, (params, buffers), (obs,))

        self._loss = self._member_losses
        if self.compile:
            # vmap(functional_call) over the stacked state; compiled, its batching is traced
            # away. Fixed shapes ([P, n] to act, [P, mb] to learn) and tensor hyperparameters:
            # each compiles once. dynamic=False as in Trainer (one forward, two batch sizes).
            # Compiled graphs are cached per process: a population built by join or keep
            # with a member count already seen reuses them; each new count compiles once,
            # and past torch's recompile limit (8) the function runs eager.
            self._vmapped = vmap(member_forward)
            self._forward = torch.compile(self._vmapped, dynamic=False)
            self._loss = torch.compile(self._member_losses, dynamic=False)
        else:
            # Eager: the same ActorCritic as batched matmuls over the stacked weights, so
            # no op pays vmap's per-op dispatch.
            self._vmapped = self._stacked_actor_critic
            self._forward = self._vmapped
        self.storage = RolloutStorage(config.num_steps, p * n, self.obs_dim, head.continuous,
                                      device, action_shape=self.action_shape)
        self.rollout = Rollout(
            self.env, self.staging, self.storage, self.obs_normaliser, self.reward_scaler,
            members=p, device=device, forward=self.forward, value=self.value,
            sample=self.sample, continuous=head.continuous, to_env=head.host_map(p * n))
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
        if isinstance(self.env, MemberEnvs):  # one env per member: each reset alone
            self.env.reset_members(seeds)
            self.rollout.begin()
            return
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
        engine's generator(s), and their log-probs [P*n] (the action head's)."""
        return self.head.sample(policy_out, self.params, self.draws)

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
        logprobs, entropy = self.head.log_prob_entropy(policy_out, params, actions)
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
                # index_select, not a gather with a per-element index
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
                    params = {k: select_members(v, subset) for k, v in self.params.items()}
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
                if self.uniform:  # one shared threshold: a lone member's float comparison
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
        # each member's norm of each gradient (a reduction: no squared copy of the
        # weights), then over gradients
        norms = torch.stack([torch.linalg.vector_norm(g, dim=tuple(range(1, g.ndim)),
                                                      dtype=torch.float32)
                             for g in grads.values()], dim=1)
        # [P, gradients], reduced along its rows: a member's norm sums its gradients' norms
        # in the same order whatever P (a column reduction of [gradients, P] rounds
        # otherwise for one member than for several)
        total = torch.linalg.vector_norm(norms, dim=1)
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


__all__ = ["Population"]
