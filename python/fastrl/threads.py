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

What the commands do instead (:class:`ThreadGovernor`): torch keeps spinning threads, but
only as many as there are cores the other processes leave free. Once per update the
trainer asks the governor, which reads the CPU time the machine spent on its cores since
the last look (``/proc/stat``) less this process's own (``os.times``): with about one core
busy elsewhere, one thread fewer. Quiet, it is every core, as before.
"""

from __future__ import annotations

import os
import time


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


def _busy_seconds(cpus: set[int]) -> float | None:
    """CPU seconds the machine spent busy on ``cpus`` since boot (``/proc/stat``), or None
    where there is no such file."""
    try:
        with open("/proc/stat") as stat:
            lines = [line.split() for line in stat if line.startswith("cpu")]
    except OSError:
        return None
    ticks = 0
    for fields in lines:
        name = fields[0]
        if name == "cpu" or int(name[3:]) not in cpus:
            continue
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[1:9])
        ticks += user + nice + system + irq + softirq + steal
    return ticks / os.sysconf("SC_CLK_TCK")


class ThreadGovernor:
    """Torch's intra-op threads from the cores other processes leave free.

    ``tick()`` (once per update; cheap) looks at most every ``every`` seconds: others' load
    in cores = (busy CPU seconds on this process's cores - this process's CPU seconds) /
    elapsed; threads = ``max_threads`` less the whole cores that load takes (rounded to the
    nearest core), at least one. Spinning OpenMP threads then never outnumber the free cores,
    which is where the cliff came from, and a quiet machine keeps every core.
    """

    def __init__(self, max_threads: int, every: float = 2.0) -> None:
        import torch

        self.max_threads = max(1, int(max_threads))
        self.every = float(every)
        self._torch = torch
        self._cpus = set(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
            else set(range(os.cpu_count() or 1))
        self._last = self._sample()
        self.threads = self.max_threads
        torch.set_num_threads(self.threads)

    def _sample(self) -> tuple[float, float, float | None]:
        own = os.times()
        return time.monotonic(), own.user + own.system, _busy_seconds(self._cpus)

    def others(self) -> float | None:
        """Cores' worth of CPU the other processes used since the last look (and restart the
        window), or None where the machine's counters cannot be read."""
        now, own, busy = self._sample()
        then, own_then, busy_then = self._last
        self._last = (now, own, busy)
        if busy is None or busy_then is None or now <= then:
            return None
        return max(0.0, (busy - busy_then) - (own - own_then)) / (now - then)

    def tick(self) -> int:
        """Re-choose the thread count if ``every`` seconds have passed; returns it."""
        if time.monotonic() - self._last[0] < self.every:
            return self.threads
        load = self.others()
        if load is None:
            return self.threads
        threads = max(1, min(self.max_threads, len(self._cpus) - int(load + 0.5)))
        if threads != self.threads:
            self.threads = threads
            self._torch.set_num_threads(threads)
        return self.threads


_GOVERNOR: ThreadGovernor | None = None


def govern(max_threads: int) -> ThreadGovernor:
    """Start governing torch's threads for this process (the commands call it with their
    share of the cores); trainers and populations then :func:`tick` once per update."""
    global _GOVERNOR
    _GOVERNOR = ThreadGovernor(max_threads)
    return _GOVERNOR


def tick() -> None:
    """Once per update: let the governor, if one runs, re-choose the thread count."""
    if _GOVERNOR is not None:
        _GOVERNOR.tick()


def set_torch_threads(requested: int = 0, *, share: int = 1) -> int:
    """The commands' thread policy: ``requested`` > 0 (``--set torch_threads=N``) fixes the
    count; 0 governs it (:class:`ThreadGovernor`) within this process's share of the cores.
    Returns the threads torch has now."""
    import torch

    if requested > 0:
        stop_governing()
        torch.set_num_threads(int(requested))
        return int(requested)
    return govern(torch_threads(0, share=share)).threads


def stop_governing() -> None:
    global _GOVERNOR
    _GOVERNOR = None


__all__ = ["ThreadGovernor", "available_cores", "govern", "set_torch_threads",
           "stop_governing", "tick", "torch_threads", "wait_passively"]
