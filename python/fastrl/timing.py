"""Robust throughput timing shared by ``fastrl-bench`` and the scripts in ``bench/``."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_rate(run: Callable[[int], None], items_per_call: int, *, min_seconds: float = 0.15,
                repeats: int = 5) -> float:
    """Median items/s over ``repeats`` timed batches of ``run(calls)``, each batch sized to
    last at least ``min_seconds`` so timer resolution and one-off hiccups do not matter."""
    calls = 1
    while True:
        start = time.perf_counter()
        run(calls)
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds / 4 or calls > 1 << 24:
            break
        calls *= 4
    calls = max(1, int(calls * min_seconds / max(elapsed, 1e-9)))
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(calls)
        rates.append(calls * items_per_call / (time.perf_counter() - start))
    return statistics.median(rates)
