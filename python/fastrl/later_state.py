"""Simulator state a snapshot saved by an older fastrl lacks, and when its reset's value may
stand for it.

The simulators gained state after snapshots (checkpoints, PBT states, live books) were
first saved: the benchmark's shadow book (``bench_*``), kept for a benchmark-relative
reward, and an anchored portfolio's ``last_target``, which decides whether an unchanged
target holds. A key a run never reads is never written either: it holds the reset's value
for the env's whole life, so that value stands for it exactly. A key the run reads carries
its episode's history, which nothing saved before it existed can give back.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

from fastrl.env_config import needs_benchmark

# the state keys the simulators gained after snapshots were first saved (single:
# bench_position, bench_shares, bench_cash; portfolio: bench_shares, bench_cash, last_target)
LATER_KEYS = frozenset({"bench_position", "bench_shares", "bench_cash", "last_target"})


def reads_key(key: str, config: Any, *, rewarded: bool) -> bool:
    """Whether a run of ``config`` (an EnvConfig or PortfolioConfig) reads state ``key``:
    the benchmark book where a reward that is computed (``rewarded``; a live run ignores
    it) needs the benchmark, ``last_target`` where the portfolio is anchored."""
    if key.startswith("bench_"):
        return rewarded and needs_benchmark(config)
    if key == "last_target":
        return bool(getattr(config, "anchored", False))
    return True


def missing_state(keys: Iterable[str], present: Collection[str], config: Any, *,
                  rewarded: bool) -> tuple[list[str], list[str]]:
    """(the ``keys`` absent from ``present`` whose reset value stands for them, the absent
    keys nothing can stand for): only a later key (:data:`LATER_KEYS`) the run never reads
    (:func:`reads_key`) is filled; nothing else is guessed."""
    missing = [k for k in keys if k not in present]
    fillable = [k for k in missing
                if k in LATER_KEYS and not reads_key(k, config, rewarded=rewarded)]
    return fillable, [k for k in missing if k not in fillable]


def refused_state_message(keys: list[str]) -> str:
    """Why a snapshot without the simulator state ``keys`` cannot go on (training)."""
    return (f"state is missing {', '.join(repr(k) for k in keys)} (saved by an older fastrl, "
            "before the simulator carried it), which this config reads (the benchmark's book "
            "of a benchmark-relative reward, or an anchored portfolio's last target) and "
            "which only the episode's history could give back: resume it with the config it "
            "was saved with, or start the run afresh")


__all__ = ["LATER_KEYS", "missing_state", "reads_key", "refused_state_message"]
