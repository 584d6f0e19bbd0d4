"""Import a script under bench/ as a module (bench/ is not a package), for its tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parent.parent / "bench"


def load_bench(name: str, module: str | None = None) -> ModuleType:
    """bench/<name>.py as module ``module`` (default ``bench_<name>``); bench/ is on sys.path
    while it loads, for its imports of bench_common and its sibling scripts."""
    spec = importlib.util.spec_from_file_location(module or f"bench_{name}", BENCH / f"{name}.py")
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = loaded
    added = str(BENCH) not in sys.path
    if added:
        sys.path.insert(0, str(BENCH))
    try:
        spec.loader.exec_module(loaded)
    finally:
        if added:
            sys.path.remove(str(BENCH))
    return loaded
