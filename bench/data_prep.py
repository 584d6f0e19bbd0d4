"""Benchmark: seconds and peak memory to load + featurise + split market data.

Cases: the bundled daily set (30 symbols), the bundled 5-minute set (12 symbols), and a
synthetic universe of 100 symbols x one year of 5-minute bars (252 sessions x 75 bars)
written to disk as Parquet and as CSV, then read back through ``build_market`` exactly like
user data. Each case runs in a fresh process so its peak resident memory (ru_maxrss,
interpreter and libraries included) is its own. Target: the 100-symbol universe in < 10 s
and < 2 GB.

    PYTHONPATH=python python bench/data_prep.py [--symbols 100] [--days 252] [--quick]

Prints a table and writes bench/results/data_prep.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(os.environ.get("FASTRL_BENCH_RESULTS")
               or Path(__file__).resolve().parent / "results") / "data_prep.json"
TARGET_SECONDS, TARGET_MB = 10.0, 2048.0


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _run_case(case: dict, queue: mp.Queue) -> None:
    """Child process: import, then time loading and featurising/splitting separately."""
    import pandas as pd  # noqa: F401  (imported before the clock starts, like any user)

    from fastrl.data.loaders import load_bars_report
    from fastrl.data.splits import build_market_from_bars

    baseline = _peak_mb()
    start = time.perf_counter()
    loaded = load_bars_report(
        case["symbols"], case["freq"], case["source"], on_bad_rows=case["on_bad_rows"]
    )
    loaded_at = time.perf_counter()
    market = build_market_from_bars(
        loaded.bars,
        case["freq"],
        test_days=case["test_days"],
        window=32,
        source=str(case["source"]),
        load_result=loaded,
    )
    end = time.perf_counter()
    rows = sum(len(frame) for frame in loaded.bars.values())
    queue.put(
        {
            "case": case["name"],
            "symbols": len(loaded.bars),
            "bars": rows,
            "features": len(market.feature_names),
            "block_rows": market.train.num_bars + market.test.num_bars,
            "load_s": round(loaded_at - start, 3),
            "features_split_s": round(end - loaded_at, 3),
            "total_s": round(end - start, 3),
            "bars_per_s": round(rows / (end - start)),
            "peak_rss_mb": round(_peak_mb(), 1),
            "rss_after_imports_mb": round(baseline, 1),
        }
    )


def run_in_child(case: dict) -> dict:
    context = mp.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_run_case, args=(case, queue))
    process.start()
    result = queue.get(timeout=600)
    process.join()
    return result


def write_universe(folder: Path, n_symbols: int, days: int, fmt: str) -> list[str]:
    """Synthetic GBM universe written the way a user would hand it over."""
    from fastrl.data.synthetic import gbm

    bars = gbm(n_symbols, days * 75, freq="5min", seed=0, start="2023-01-02")
    for symbol, frame in bars.items():
        frame = frame.rename_axis("timestamp").reset_index()
        frame["timestamp"] = frame["timestamp"].dt.tz_localize("Asia/Kolkata")
        if fmt == "parquet":
            frame.to_parquet(folder / f"{symbol}.parquet", index=False)
        else:
            frame.to_csv(folder / f"{symbol}.csv", index=False)
    return list(bars)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--symbols", type=int, default=100, help="synthetic universe size")
    parser.add_argument("--days", type=int, default=252, help="sessions of 75 bars per symbol")
    parser.add_argument("--quick", action="store_true", help="10 symbols, parquet only")
    args = parser.parse_args(argv)
    if args.quick:
        args.symbols = 10

    from fastrl.data.loaders import available

    cases = [
        {
            "name": "bundled daily (all)",
            "symbols": available("1d"),
            "freq": "1d",
            "source": "bundled",
            "test_days": 30,
            "on_bad_rows": "raise",
        },
        {
            "name": "bundled 5min (all)",
            "symbols": available("5min"),
            "freq": "5min",
            "source": "bundled",
            "test_days": 30,
            "on_bad_rows": "drop",
        },
    ]
    results = [run_in_child(case) for case in cases]
    formats = ["parquet"] if args.quick else ["parquet", "csv"]
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in formats:
            folder = Path(tmp) / fmt
            folder.mkdir()
            symbols = write_universe(folder, args.symbols, args.days, fmt)
            name = f"synthetic {args.symbols}x{args.days}d 5min ({fmt})"
            results.append(
                run_in_child(
                    {
                        "name": name,
                        "symbols": symbols,
                        "freq": "5min",
                        "source": str(folder),
                        "test_days": 30,
                        "on_bad_rows": "raise",
                    }
                )
            )
    for result in results:
        if result["case"].startswith("synthetic") and args.symbols >= 100:
            result["meets_target"] = (
                result["total_s"] < TARGET_SECONDS and result["peak_rss_mb"] < TARGET_MB
            )

    header = (
        f"{'case':<38}{'bars':>11}{'load s':>9}{'feat+split s':>14}{'total s':>9}{'peak MB':>9}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r['case']:<38}{r['bars']:>11,}{r['load_s']:>9.2f}{r['features_split_s']:>14.2f}"
            f"{r['total_s']:>9.2f}{r['peak_rss_mb']:>9.0f}"
        )
    import numpy as np
    import pandas as pd
    import pyarrow

    payload = {
        "benchmark": "data_prep",
        "time": time.time(),
        "target": {
            "seconds": TARGET_SECONDS,
            "peak_rss_mb": TARGET_MB,
            "case": "synthetic 100 symbols x 252 days of 5-minute bars",
        },
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": sys.version.split()[0],
            "pandas": pd.__version__,
            "numpy": np.__version__,
            "pyarrow": pyarrow.__version__,
        },
        "results": results,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    temporary = RESULTS.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(payload, indent=2) + "\n")
    temporary.replace(RESULTS)
    print(f"\nwrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
