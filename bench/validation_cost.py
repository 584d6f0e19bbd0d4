"""Validation's share of training time for the README's 5-minute example.

    python bench/validation_cost.py [--updates 4] [--val-days 20]

Runs ``fastrl-train --symbols BPCL --freq 5min --test-days 20 --val-days 20 --set
env.cost=nse_intraday`` (the README's intraday example, default network) for a few updates,
validating after every update (``val_every=1``, the default), and reports the seconds spent
validating against the seconds spent training, from the run's metrics.jsonl.
Writes bench/results/validation_cost.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import machine_info, write_json  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=4)
    parser.add_argument("--val-days", type=int, default=20)
    parser.add_argument("--hidden", default=None, help="e.g. [64,64]; default: the preset's")
    args = parser.parse_args()
    from fastrl.cli.train import main as train_main

    batch = 64 * 128  # the preset's num_envs x num_steps
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        # the fast preset, as recorded in results/validation_cost.json
        argv = ["--preset", "fast", "--symbols", "BPCL", "--freq", "5min", "--test-days", "20",
                "--val-days",
                str(args.val_days), "--set", "env.cost=nse_intraday", "--device", "cpu",
                "--timesteps", str(batch * args.updates), "--run-dir", str(run), "--no-eval"]
        if args.hidden:
            argv += ["--set", f"hidden_sizes={args.hidden}"]
        started = time.perf_counter()
        code = train_main(argv)
        wall = time.perf_counter() - started
        if code != 0:
            raise SystemExit(code)
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    updates = [r for r in rows if "event" not in r]
    train_seconds = sum(batch / r["charts/SPS"] for r in updates)
    val_seconds = sum(r.get("time/val_seconds", 0.0) for r in updates)
    share = val_seconds / (train_seconds + val_seconds)
    print(f"{len(updates)} updates: training {train_seconds:.1f} s, validation "
          f"{val_seconds:.1f} s = {share:.1%} of the time (target < 10%); wall {wall:.1f} s")
    path = write_json("validation_cost", {
        "machine": machine_info(), "argv": argv, "updates": len(updates),
        "train_seconds": train_seconds, "val_seconds": val_seconds, "val_share": share,
        "per_update": [{"update": r["update"], "train_seconds": batch / r["charts/SPS"],
                        "val_seconds": r.get("time/val_seconds")} for r in updates],
    })
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
