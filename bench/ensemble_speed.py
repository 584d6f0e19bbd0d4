"""An ensemble of K seeds trained as one population against K runs one after the other.

    python bench/ensemble_speed.py [--members 3] [--timesteps 8192] [--hidden 64 64]
                                   [--rounds 2] [--device cpu]

Both train the same budget (K x ``--timesteps`` env steps) of the fast preset (2,048 env
steps per update) on BPCL and
HDFCLIFE (bundled daily bars) with validation after every update, as fastrl-train does: the
ensemble validates its mean policy once per update, the K single runs each their own. The
wall time of each, alternated over ``--rounds`` (medians). A shared machine's neighbours move
these numbers: run it on a quiet one before quoting a ratio.
Writes bench/results/ensemble_speed_<device>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "python"))

from fastrl.config import build_config  # noqa: E402
from fastrl.markets import market_for  # noqa: E402
from fastrl.ppo.hooks import ValidationHook  # noqa: E402
from fastrl.ppo.trainer import Trainer  # noqa: E402


def timed(config, market) -> float:
    started = time.perf_counter()
    Trainer(config, market=market).train([ValidationHook()])
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--timesteps", type=int, default=8192)
    parser.add_argument("--hidden", type=int, nargs="+", default=[64, 64])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    # 2,048 env steps per update (32 envs x 64 steps), minibatches of 512
    options = [f"total_timesteps={args.timesteps}", f"hidden_sizes={args.hidden}",
               "num_envs=32", "num_steps=64", "minibatch_size=512",
               f"device={args.device}", "torch_threads=1", "patience=0"]
    base = build_config("fast", None, {"data.symbols": ["BPCL", "HDFCLIFE"]}, options)
    market = market_for(base).load()
    ensemble = build_config("fast", None, {"data.symbols": ["BPCL", "HDFCLIFE"]},
                            [*options, f"ensemble={args.members}"])
    singles = [build_config("fast", None, {"data.symbols": ["BPCL", "HDFCLIFE"]},
                            [*options, f"seed={m}"]) for m in range(args.members)]
    times: dict[str, list[float]] = {"ensemble": [], "sequential": []}
    load_before = os.getloadavg()[0]
    for _ in range(args.rounds):
        times["ensemble"].append(timed(ensemble, market))
        times["sequential"].append(sum(timed(c, market) for c in singles))
    medians = {k: statistics.median(v) for k, v in times.items()}
    result = {"members": args.members, "timesteps_per_member": args.timesteps,
              "hidden_sizes": args.hidden, "device": args.device, "rounds": args.rounds,
              "seconds": times, "median_seconds": medians,
              "speedup": medians["sequential"] / medians["ensemble"],
              # the one-minute load average around the runs: others' jobs on the machine
              "load_average": [load_before, os.getloadavg()[0]], "cpus": os.cpu_count()}
    print(json.dumps(result, indent=2))
    out = Path(__file__).resolve().parent / "results" / f"ensemble_speed_{args.device}.json"
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
