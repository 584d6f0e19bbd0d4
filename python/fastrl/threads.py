"""How many CPU threads torch gets: this process's share of the cores.

:func:`torch_threads` gives the cores this process may use (its CPU affinity), divided
among the command's worker processes; ``torch_threads`` > 0 in the config
(``--set torch_threads=N``) overrides it. Fewer threads for small networks was tried and
dropped: one thread ran a (64, 64) trainer 32% slower than two on the quiet 2-core machine.

The cliff beside other jobs (issue 18, ``bench/train_throughput.py --thread-policy``):
OpenMP threads spin while they wait at each barrier, and when the cores are oversubscribed
the thread the others wait for is descheduled behind them. Passive waiting
(``OMP_WAIT_POLICY=PASSIVE``, read once when torch loads libgomp) removed most of it
(1.6-4x faster beside a busy neighbour) but cost 7-30% on the quiet machine, and a short
spin (``GOMP_SPINCOUNT=10000``) 12-15%; neither is the default, since the quiet figures
must hold. :func:`wait_passively` is there for a shared machine (or export the variable).
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
