"""Shared helpers for the benchmarks: machine info, robust timing, results files."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

from fastrl.timing import median_rate  # noqa: F401  (re-exported for the bench scripts)

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
