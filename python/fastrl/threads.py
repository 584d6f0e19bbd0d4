"""How many CPU threads torch gets, and how they wait: a policy without the cliff.

Measured on the 2-core machine (``bench/train_throughput.py --thread-policy``): with torch's
default (one OpenMP thread per core, spinning while they wait for work), training beside
another busy job ran 2-4x slower than it could. OpenMP threads that spin hold a core while
they wait at every barrier, and when the cores are oversubscribed the thread the others wait
for is descheduled behind them. The fix is **passive waiting** (``OMP_WAIT_POLICY=PASSIVE``):
a waiting thread sleeps instead of spinning. libgomp reads the variable once, when torch
loads it, so the commands set it before importing torch (:func:`wait_passively`); a value
the user set is kept.

Threads: the cores this process may use, divided among the command's worker processes
(:func:`torch_threads`); ``torch_threads`` > 0 in the config (``--set torch_threads=N``)
overrides it. Fewer threads for small networks was tried and dropped: one thread ran a
(64, 64) trainer 32% slower than two on the quiet machine.
"""

from __future__ import annotations

import os


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


def torch_threads(requested: int = 0, *, share: int = 1) -> int:
    """Threads for torch: ``requested`` when > 0, else this process's share of the cores
    (``share`` processes of this command on this machine)."""
    if requested > 0:
        return int(requested)
    return max(1, available_cores() // max(1, int(share)))


__all__ = ["available_cores", "torch_threads", "wait_passively"]
