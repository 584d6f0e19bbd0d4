"""How many CPU threads torch gets, and how they wait: a policy without the cliff.

Measured on the 2-core machine (``bench/train_throughput.py --thread-policy``): with torch's
default (one OpenMP thread per core, spinning while they wait for work), a (64, 64)
``fastrl-train`` beside another busy job ran 2.4-4.6x slower than with one thread. OpenMP
threads that spin hold a core while waiting at every barrier, and when the cores are
oversubscribed the thread the others wait for is descheduled behind them. Two changes
remove the cliff:

- **Passive waiting** (``OMP_WAIT_POLICY=PASSIVE``): a waiting thread sleeps instead of
  spinning. libgomp reads the variable once, when torch loads it, so the commands set it
  before importing torch (:func:`wait_passively`); a value the user set is kept.
- **Threads from the work's size** (:func:`torch_threads`): a small network's matmuls are
  too short to split; one thread is as fast on a quiet machine and cannot be descheduled
  mid-barrier. Larger work (the default network, or a population's stacked members) gets
  the cores this process may use, divided among the command's workers.

``torch_threads`` > 0 in the config (``--set torch_threads=N``) overrides the size rule.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

# Work (parameters x members) under which one thread is the fastest: the (64, 64) fast
# preset (~25k parameters) and a population of 16 of them ran at least as fast on one
# thread as on two on the quiet 2-core machine; the (256, 256) net (~150k) and up gained
# from the second core (bench/train_throughput.py --thread-policy).
ONE_THREAD_WORK = 100_000


def wait_passively() -> None:
    """OpenMP threads sleep while they wait (unless the user chose a wait policy). Call it
    before torch is imported: libgomp reads the setting once, when it loads."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity, which containers and
    ``taskset`` narrow), else the machine's count."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def torch_threads(requested: int, work: int, *, share: int = 1) -> int:
    """Threads for torch: ``requested`` when > 0; else one for work (parameters x members)
    under :data:`ONE_THREAD_WORK`, and otherwise this process's share of the cores
    (``share`` processes of this command on this machine)."""
    if requested > 0:
        return int(requested)
    if work < ONE_THREAD_WORK:
        return 1
    return max(1, available_cores() // max(1, int(share)))


def network_parameters(module: object) -> int:
    """The number of parameters of a torch module (one member)."""
    return sum(int(p.numel()) for p in module.parameters())  # type: ignore[attr-defined]


def trunk_parameters(obs_dim: int, hidden_sizes: Sequence[int], shared_trunk: bool = False
                     ) -> int:
    """The parameters of an ActorCritic's trunks (the heads are a few hundred more): the
    work measure of :func:`torch_threads` before a network is built."""
    sizes = [int(obs_dim), *(int(h) for h in hidden_sizes)]
    one = sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))
    return one if shared_trunk else 2 * one


def config_work(config: Any, market: Any) -> int:
    """:func:`trunk_parameters` of ``config``'s network on ``market`` (its splits)."""
    train = market.train
    if config.portfolio.enabled:
        from fastrl.env_portfolio import portfolio_obs_dim

        obs_dim = portfolio_obs_dim(train, config.env.window)
    else:
        obs_dim = config.env.window * train.num_features + 3
    return trunk_parameters(obs_dim, config.hidden_sizes, config.shared_trunk)


__all__ = ["ONE_THREAD_WORK", "available_cores", "config_work", "network_parameters",
           "torch_threads", "trunk_parameters", "wait_passively"]
