"""A walk-forward's windows trained as members of one population.

The windows of a walk-forward (and its seeds, and a batched study's trials) are independent
trainings of configs on nested spans of the same bars: a population whose members see
different data. Each member here is one (config, seed, window) job: its envs draw episodes
only from its window's training span (:class:`~fastrl.ppo.member_envs.MemberEnvs`, the
features normalised on that span), it is seeded as :func:`~fastrl.walkforward.run.
train_window` seeds the window's lone Trainer (``member_seeds``: its weights, env streams,
action draws and minibatch orders are the lone run's), and it validates and early-stops on
its own validation slice on its own clock, as the :class:`~fastrl.ppo.hooks.ValidationHook`
and :class:`~fastrl.ppo.hooks.KeepBestHook` of ``train_window`` do. Members that stop leave
the population (:meth:`~fastrl.ppo.members.MemberState.keep`), so they cost nothing more.
A member's result is therefore the window's lone result to float32 rounding (the batched
matmuls and Adam round like a lone member's to 1 ulp, the engine's member-independence
property): the same trades, the same chosen update.

What it saves: the P members share every call (the rollout's forward passes, the PPO
update's batched matrix products, the optimiser's kernel), so the per-call overhead is paid
once. On a CPU that speeds the rollout up a few times but the PPO update little, since its
matrix products are compute-bound (bench/walkforward_population.py measures both); on a
GPU the P members fill the device. Members are trained in populations of at most
``max_members`` (sized to the memory available, :func:`members_per_population`), each
population on one process; ``workers`` > 1 splits the jobs across processes, which never
changes a result.
"""

from __future__ import annotations

import copy
import multiprocessing
import os
import pickle
import queue
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch

from fastrl.config import TrainConfig, config_from_dict, resolve_defaults, validate_config
from fastrl.markets import market_for
from fastrl.ppo.checkpoint import to_storable
from fastrl.ppo.members import shared_key
from fastrl.ppo.population import Population
from fastrl.ppo.trainer import TrainingDivergedError
from fastrl.walkforward.plan import WalkForwardSpec
from fastrl.walkforward.window import (
    WindowJob,
    WindowResult,
    train_market,
    training_config,
    window_seed,
)

# of the memory available when training starts, the share the populations may fill
MEMORY_SHARE = 0.5


@dataclass
class _Member:
    """One job's training state inside a population (the hooks' bookkeeping, per member)."""

    job: Any  # WindowJob
    config: TrainConfig  # the window's own config (train_window's)
    market: Any
    seed: int
    best: float | None = None
    without_improvement: int = 0
    kept: tuple[dict, dict] | None = None  # (network, obs normaliser) of the best validation
    kept_update: int | None = None
    curve: list[list[float]] = field(default_factory=list)  # [env step, val Sharpe]
    reason: str = "completed"


def _cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in state.items()}


def available_memory() -> int:
    """Bytes of memory available now (``MemAvailable``; the physical total where the kernel
    does not say)."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def member_bytes(config: TrainConfig, market: Any, obs_dim: int) -> int:
    """What one member holds, roughly: its market's arrays (train and validation blocks) and
    its rollout: the stored observations and the update's gathered copies of them (about
    four rollouts' worth of float32 observations), plus its network and Adam moments."""
    blocks = [getattr(market, name, None) for name in ("train", "val")]
    data = sum(int(getattr(array, "nbytes", 0)) for block in blocks if block is not None
               for array in vars(block).values())
    rollout = 4 * 4 * int(config.num_steps) * int(config.num_envs) * int(obs_dim)
    width = max(config.hidden_sizes) if config.hidden_sizes else 64
    network = 4 * 4 * (int(obs_dim) + 2 * width) * width
    return data + rollout + network


def members_per_population(config: TrainConfig, market: Any, obs_dim: int, workers: int = 1,
                           memory: int | None = None) -> int:
    """Members one population may hold: :data:`MEMORY_SHARE` of the available memory split
    over ``workers`` processes, over :func:`member_bytes` (at least 1)."""
    memory = available_memory() if memory is None else int(memory)
    per_member = max(1, member_bytes(config, market, obs_dim))
    return max(1, int(memory * MEMORY_SHARE) // max(1, int(workers)) // per_member)


def population_config(config: TrainConfig, first: TrainConfig) -> TrainConfig:
    """``config`` as a member of a population built from per-member markets: the seed and
    the data section are read from the members' own seeds and markets, so they are made the
    first member's (every other key is the job's own)."""
    config = copy.deepcopy(config)
    config.seed = first.seed
    config.data = copy.deepcopy(first.data)
    return config


def _validate(pop: Population, members: list[_Member], rows: list[int]) -> None:
    """ValidationHook and KeepBestHook for the members at ``rows`` whose update is due."""
    due = [i for i in rows
           if pop.member_update(i) % members[i].config.val_every == 0]
    if not due:
        return
    for i, result in zip(due, pop.validation_results(due), strict=True):
        member, config = members[i], members[i].config
        sharpe = float(result["sharpe"])
        member.curve.append([pop.member_step(i), sharpe])
        if member.best is None or sharpe > member.best + config.min_delta:
            member.best, member.without_improvement = sharpe, 0
            member.kept = (_cpu(pop.member_network(i).state_dict()),
                           _cpu(pop.obs_normaliser.member(i).state_dict()))
            member.kept_update = pop.member_update(i)
            continue
        member.without_improvement += 1
        if 0 < config.patience <= member.without_improvement:
            member.reason = "early_stop"


def _result(pop: Population, i: int, member: _Member, seconds: float, spec: WalkForwardSpec
            ) -> WindowResult:
    final = (_cpu(pop.member_network(i).state_dict()),
             _cpu(pop.obs_normaliser.member(i).state_dict()))
    chosen = member.kept if member.kept is not None else final
    agent = pop.member_agent(i)
    job = member.job
    return WindowResult(
        config=job.name, seed=job.seed_index, window=job.window.index,
        policy={"network": chosen[0], "obs_normaliser": chosen[1],
                "feature_normaliser": to_storable(agent.feature_normaliser),
                "obs_dim": int(pop.obs_dim), "num_actions": int(pop.num_actions),
                "inference_precision": agent.precision},
        final={"network": final[0], "obs_normaliser": final[1]},
        chosen_update=member.kept_update if spec.val_days > 0 else pop.member_update(i),
        best_val_sharpe=member.best, updates=int(pop.member_update(i)),
        env_steps=int(pop.member_step(i)), seconds=seconds, reason=member.reason,
        val_curve=member.curve)


def train_population(members: list[_Member], spec: WalkForwardSpec,
                     on_result: Callable[[WindowResult], None]) -> None:
    """Trains ``members`` (configs sharing a population's shared keys) as one population to
    each one's end; ``on_result`` hears each WindowResult as its member ends. A member's
    ``seconds`` is the population's wall time over the members it held, while it trained."""
    first = members[0].config
    pop = Population([population_config(m.config, first) for m in members],
                     market=[m.market for m in members], member_seeds=[m.seed for m in members])
    alive = list(range(len(members)))  # the member index of each of pop's rows
    spent = [0.0] * len(members)
    validating = spec.val_days > 0
    while alive:
        started = time.perf_counter()
        row = pop.step(raise_on_divergence=False)
        if row["diverged"]:
            job = members[alive[row["diverged"][0]]].job
            raise TrainingDivergedError(
                f"config {job.name} seed {job.seed_index} window {job.window.index}: update "
                f"{pop.member_update(row['diverged'][0])} diverged (non-finite losses or "
                "weights); lower learning_rate or max_grad_norm")
        view = [members[m] for m in alive]
        if validating:
            _validate(pop, view, list(range(len(alive))))
        share = (time.perf_counter() - started) / len(alive)
        ended = []
        for i, m in enumerate(alive):
            spent[m] += share
            if members[m].reason == "early_stop" or pop.member_update(i) >= pop.num_updates:
                on_result(_result(pop, i, members[m], spent[m], spec))
                ended.append(i)
        if ended:
            still = [i for i in range(len(alive)) if i not in ended]
            if not still:
                break
            pop, alive = pop.keep(still), [alive[i] for i in still]


def window_members(values: Mapping[str, dict], jobs: Sequence[WindowJob],
             bars: Mapping[str, pd.DataFrame], spec: WalkForwardSpec,
             markets: dict[tuple[int, str], Any] | None = None) -> list[_Member]:
    """Each job's config, market and seed, as :func:`~fastrl.walkforward.run.train_window`
    builds them (one market per window and data/env section, kept in ``markets``)."""
    markets = {} if markets is None else markets
    out = []
    for job in jobs:
        base = config_from_dict(values[job.name])
        seed = window_seed(base.seed, job.seed_index, job.window.index)
        config = training_config(base, job.window, seed, spec.val_days)
        validate_config(config)
        config = resolve_defaults(config)
        key = (job.window.index, repr((config.data, config.env)))
        if key not in markets:
            markets[key] = train_market(bars, job.window, config, spec)
        out.append(_Member(job, config, markets[key], seed))
    return out


def _size(values: Mapping[str, dict], jobs: Sequence[WindowJob],
          bars: Mapping[str, pd.DataFrame], spec: WalkForwardSpec, workers: int,
          markets: dict[tuple[int, str], Any] | None = None) -> int:
    """:func:`members_per_population` for the first job's config and market."""
    probe = window_members(values, jobs[:1], bars, spec, markets)[0]
    obs_dim = int(market_for(probe.config).obs_dim(probe.market.train))
    return members_per_population(probe.config, probe.market, obs_dim, workers=workers)


def train_members(values: Mapping[str, dict], jobs: Sequence[WindowJob],
                  bars: Mapping[str, pd.DataFrame], spec: WalkForwardSpec, *,
                  torch_threads: int = 1, max_members: int | None = None,
                  on_result: Callable[[WindowResult], None] | None = None
                  ) -> list[WindowResult]:
    """Trains ``jobs`` in this process as populations: the jobs grouped by the keys
    members must share, each group in populations of at most ``max_members`` (default:
    :func:`members_per_population`), jobs in the order given. Returns every result."""
    torch.set_num_threads(int(torch_threads))
    results: list[WindowResult] = []

    def heard(result: WindowResult) -> None:
        results.append(result)
        if on_result is not None:
            on_result(result)

    groups: dict[str, list[WindowJob]] = {}
    for job in jobs:
        config = config_from_dict(values[job.name])
        config.seed, config.data.symbols = 0, []  # a member's own (its window's)
        groups.setdefault(shared_key(config), []).append(job)
    for group in groups.values():
        markets: dict[tuple[int, str], Any] = {}
        size = max_members or _size(values, group, bars, spec, 1, markets)
        for start in range(0, len(group), size):
            chunk = window_members(values, group[start:start + size], bars, spec, markets)
            markets.clear()  # the chunk holds its own; the next builds its own
            train_population(chunk, spec, heard)
            del chunk
    return results


def _worker(values: Mapping[str, dict], jobs: Sequence[WindowJob],
            bars: Mapping[str, pd.DataFrame], spec: WalkForwardSpec, torch_threads: int,
            max_members: int | None, finished: Any) -> int:
    """A worker process's share: each result pickled onto ``finished`` as its member ends
    (plain pickle: the tensors travel by value, not as shared-memory handles)."""
    results = train_members(values, jobs, bars, spec, torch_threads=torch_threads,
                            max_members=max_members,
                            on_result=lambda result: finished.put(pickle.dumps(result)))
    return len(results)


def train_members_parallel(values: Mapping[str, dict], jobs: Sequence[WindowJob],
                           bars: Mapping[str, pd.DataFrame], spec: WalkForwardSpec, *,
                           workers: int, torch_threads: int = 1,
                           max_members: int | None = None,
                           on_result: Callable[[WindowResult], None] | None = None) -> None:
    """:func:`train_members` with the jobs dealt round-robin to ``workers`` processes (each
    its own populations; a member's result does not depend on its population's other
    members, so the split never changes one). ``on_result`` hears each result as its member
    ends, in this process (a run folder saves it then: an interrupted run keeps it)."""
    shares = [list(jobs[w::workers]) for w in range(workers)]
    shares = [share for share in shares if share]
    if max_members is None:  # sized here, for the processes' share of the memory
        max_members = _size(values, jobs, bars, spec, len(shares))
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, \
            ProcessPoolExecutor(max_workers=len(shares), mp_context=context) as pool:
        finished = manager.Queue()

        def drain() -> None:
            while True:
                try:
                    result = pickle.loads(finished.get_nowait())
                except queue.Empty:
                    return
                if on_result is not None:
                    on_result(result)

        pending = {pool.submit(_worker, values, share, bars, spec, torch_threads,
                               max_members, finished) for share in shares}
        try:
            while pending:
                done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                drain()
                for future in done:
                    future.result()  # a worker's error, raised here
            drain()
        except BaseException:
            for future in pending:
                future.cancel()
            raise


__all__ = ["available_memory", "member_bytes", "members_per_population", "population_config",
           "train_members", "train_members_parallel", "train_population", "window_members"]
