"""End-to-end PPO training throughput: fastrl against Stable-Baselines3 in one run.

SB3's PPO trains on gym-anytrading's StocksEnv (the `[bench]` extra) and fastrl's trainer on
its own simulator, both on BPCL daily bars with a 32-bar window, with the same actor and
critic networks (separate tanh MLPs) and the same number of epochs over each rollout, on
the CPU:

    pip install ".[bench]" && python bench/peer_training.py [--quick]

The figure is env steps per second of wall time over whole rollout + update cycles (the
first cycle, and setup, excluded). Rollout and minibatch sizes are each library's defaults:
SB3 collects 2048 steps and updates in minibatches of 64; fastrl collects 64 envs x 128
steps and updates in minibatches of 2048. Every env step is used `epochs` times by both,
so the work per env step is the same; for transparency SB3 also runs with minibatches of
2048. Writes bench/results/peer_training.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fastrl.config import apply_overrides, preset_config  # noqa: E402
from fastrl.ppo.trainer import Trainer  # noqa: E402

from bench_common import machine_info, write_json  # noqa: E402

SB3_ROLLOUT = 2048  # SB3's default n_steps (one env)
FASTRL_ENVS, FASTRL_STEPS, FASTRL_MINIBATCH = 64, 128, 2048  # fastrl's defaults
WINDOW = 32
NETWORKS = {"small (64, 64)": ((64, 64), 10), "default (2048, 1024, 512, 256)":
            ((2048, 1024, 512, 256), 20)}


def sb3_steps_per_s(hidden: tuple[int, ...], epochs: int, batch: int, rollouts: int) -> float:
    import pandas as pd
    from gym_anytrading.envs import StocksEnv
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv

    from fastrl.data import load_bars

    close = load_bars(["BPCL"], freq="1d")["BPCL"]["close"].to_numpy()
    df = pd.DataFrame({"Close": close})
    venv = DummyVecEnv([lambda: StocksEnv(df=df, window_size=WINDOW,
                                          frame_bound=(WINDOW, len(df)))])
    model = PPO("MlpPolicy", venv, n_steps=SB3_ROLLOUT, batch_size=batch, n_epochs=epochs,
                policy_kwargs={"net_arch": {"pi": list(hidden), "vf": list(hidden)},
                               "activation_fn": torch.nn.Tanh},
                device="cpu", verbose=0, seed=0)
    model.learn(SB3_ROLLOUT)  # warm-up cycle
    start = time.perf_counter()
    model.learn(SB3_ROLLOUT * rollouts, reset_num_timesteps=False)
    return SB3_ROLLOUT * rollouts / (time.perf_counter() - start)


def fastrl_run(hidden: tuple[int, ...], epochs: int, rollouts: int, amp: bool) -> dict:
    rollout = FASTRL_ENVS * FASTRL_STEPS
    overrides = {"hidden_sizes": hidden, "n_epochs": epochs, "num_envs": FASTRL_ENVS,
                 "num_steps": FASTRL_STEPS, "minibatch_size": FASTRL_MINIBATCH,
                 "target_kl": None, "total_timesteps": rollout * (rollouts + 1),
                 "env.window": WINDOW,
                 "data.symbols": ("BPCL",), "device": "cpu", "amp": amp,
                 "checkpoint_every": 10**6}
    config = apply_overrides(preset_config("fast"), overrides)
    starts: list[float] = []

    def on_update(row: dict) -> None:  # time whole cycles after the first (warm-up) one
        if "update" in row and not starts:
            starts.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(config, run_dir=run_dir, callback=on_update)
        result = trainer.train()
    elapsed = time.perf_counter() - starts[0]
    row = result.last_metrics
    return {"steps_per_s": rollout * rollouts / elapsed,
            "time_split": {k: row.get(k) for k in ("time/env_frac", "time/inference_frac",
                                                   "time/copy_frac", "time/update_frac")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer cycles, small network only")
    args = parser.parse_args()
    try:
        import gym_anytrading  # noqa: F401
        import stable_baselines3  # noqa: F401
        have_sb3 = True
    except ImportError:
        print("stable-baselines3 / gym-anytrading missing: pip install '.[bench]' for the peer")
        have_sb3 = False
    results = []
    networks = dict(list(NETWORKS.items())[:1]) if args.quick else NETWORKS
    for name, (hidden, epochs) in networks.items():
        big = hidden[0] > 256
        fastrl_rollouts = 1 if (big or args.quick) else 3
        sb3_rollouts = 1 if (big or args.quick) else 4
        row = {"network": name, "hidden": hidden, "epochs": epochs,
               "fastrl_rollout": FASTRL_ENVS * FASTRL_STEPS, "fastrl_minibatch": FASTRL_MINIBATCH,
               "sb3_rollout": SB3_ROLLOUT}
        row["fastrl_fp32"] = fastrl_run(hidden, epochs, fastrl_rollouts, amp=False)
        row["fastrl_bf16"] = fastrl_run(hidden, epochs, fastrl_rollouts, amp=True)
        if have_sb3:
            row["sb3_batch64"] = sb3_steps_per_s(hidden, epochs, 64, sb3_rollouts)
            row["sb3_batch2048"] = sb3_steps_per_s(hidden, epochs, FASTRL_MINIBATCH,
                                                   sb3_rollouts)
            best = max(row["fastrl_fp32"]["steps_per_s"], row["fastrl_bf16"]["steps_per_s"])
            row["ratio_vs_sb3_default"] = best / row["sb3_batch64"]
            fp32 = row["fastrl_fp32"]["steps_per_s"]
            row["ratio_fp32_vs_sb3_default"] = fp32 / row["sb3_batch64"]
        results.append(row)
        split = {k.split("/")[1]: round(v, 3) for k, v in row["fastrl_fp32"]["time_split"].items()
                 if v is not None}
        print(f"\n{name}, {epochs} epochs per rollout:")
        print(f"  fastrl fp32 (64x128 rollout, minibatch 2048) "
              f"{row['fastrl_fp32']['steps_per_s']:>9,.0f} env steps/s  {split}")
        print(f"  fastrl bf16 autocast                         "
              f"{row['fastrl_bf16']['steps_per_s']:>9,.0f}")
        if have_sb3:
            print(f"  SB3 PPO (2048 rollout, minibatch 64)         {row['sb3_batch64']:>9,.0f}")
            print(f"  SB3 PPO (2048 rollout, minibatch 2048)       {row['sb3_batch2048']:>9,.0f}")
            print(f"  fastrl / SB3 default: {row['ratio_vs_sb3_default']:.1f}x "
                  f"(fp32 only: {row['ratio_fp32_vs_sb3_default']:.1f}x)", flush=True)
    path = write_json("peer_training", {"machine": machine_info(),
                                        "torch_threads": torch.get_num_threads(),
                                        "rows": results})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
