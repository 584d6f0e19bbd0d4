"""Shared helpers for the benchmarks: machine info, robust timing, results files."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# bench/run_all.py --quick points this elsewhere so a quick pass never overwrites full results.
RESULTS = Path(os.environ.get("FASTRL_BENCH_RESULTS")
               or Path(__file__).resolve().parent / "results")


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform()}
    try:
        import numpy
        import torch

        info.update(numpy=numpy.__version__, torch=torch.__version__)
    except ImportError:
        pass
    return info


def median_rate(run: Callable[[int], None], items_per_call: int, *, min_seconds: float = 0.15,
                repeats: int = 5) -> float:
    """Median items/s over `repeats` timed batches, each at least `min_seconds` long."""
    calls = 1
    while True:  # size a batch so that timer noise is negligible
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


def rss_mib() -> tuple[float, float]:
    """(current RSS, peak RSS) of this process in MiB, from /proc/self/status."""
    current = peak = float("nan")
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                current = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                peak = int(line.split()[1]) / 1024
    return current, peak


def write_json(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=float))
    os.replace(tmp, path)
    return path
