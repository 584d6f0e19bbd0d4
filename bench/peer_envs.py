"""fastrl against a plain-Python gymnasium trading env on the same bars.

Peer: gym-anytrading's StocksEnv (the `[bench]` extra), alone and as a gymnasium
SyncVectorEnv of 64, against fastrl's TradingVecEnv with 64 envs, all on BPCL + HDFCLIFE
daily bars with a 32-bar window, in one process:

    pip install ".[bench]" && python bench/peer_envs.py [--quick]

Prints a table and writes bench/results/peer_envs.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fastrl.data import build_market, load_bars  # noqa: E402
from fastrl.env_config import EnvConfig  # noqa: E402
from fastrl.markets.single.env import TradingVecEnv  # noqa: E402

from bench_common import machine_info, median_rate, write_json  # noqa: E402

SYMBOLS = ("BPCL", "HDFCLIFE")
WINDOW = 32


def anytrading_env(symbol: str):
    import gymnasium as gym
    import pandas as pd
    from gym_anytrading.envs import StocksEnv

    bars = load_bars([symbol], freq="1d")[symbol]
    df = pd.DataFrame({"Close": bars["close"].to_numpy()})

    class Resetting(gym.Wrapper):  # a single env that starts over by itself, like a vector env
        def step(self, action):
            obs, reward, terminated, truncated, info = self.env.step(action)
            if terminated or truncated:
                obs, info = self.env.reset()
            return obs, reward, terminated, truncated, info

    return Resetting(StocksEnv(df=df, window_size=WINDOW, frame_bound=(WINDOW, len(df))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    seconds, repeats = (0.2, 3) if args.quick else (0.5, 5)
    rows: dict[str, dict] = {}

    try:
        import gym_anytrading  # noqa: F401
        import gymnasium as gym
    except ImportError:
        print("gym-anytrading is not installed: pip install '.[bench]' to compare with it")
        gym = None

    if gym is not None:
        single = anytrading_env(SYMBOLS[0])
        single.reset(seed=0)
        acts = np.random.default_rng(0).integers(0, 2, 4096)

        def run_single(calls: int) -> None:
            for k in range(calls):
                single.step(int(acts[k & 4095]))

        obs_size = int(np.prod(single.observation_space.shape))
        rows["gym-anytrading StocksEnv, 1 env"] = {
            "steps_per_s": median_rate(run_single, 1, min_seconds=seconds, repeats=repeats),
            "obs_floats": obs_size}
        vec = gym.vector.SyncVectorEnv(
            [lambda i=i: anytrading_env(SYMBOLS[i % 2]) for i in range(64)])
        vec.reset(seed=0)
        vec_acts = np.random.default_rng(0).integers(0, 2, (64, 64))

        def run_vec(calls: int) -> None:
            for k in range(calls):
                vec.step(vec_acts[k & 63])

        rows["gym-anytrading, SyncVectorEnv of 64"] = {
            "steps_per_s": median_rate(run_vec, 64, min_seconds=seconds, repeats=repeats),
            "obs_floats": obs_size}

    market = build_market(list(SYMBOLS), freq="1d", test_days=30, window=WINDOW).train
    for threads in (1, 2):
        config = EnvConfig(window=WINDOW)
        env = TradingVecEnv(market, 64, config, num_threads=threads, seed=0)
        fast_acts = np.random.default_rng(0).integers(0, len(config.position_levels), (64, 64))

        def run_fast(calls: int, env=env, fast_acts=fast_acts) -> None:
            for k in range(calls):
                env.step(fast_acts[k & 63])

        rows[f"fastrl TradingVecEnv, 64 envs, {threads} thread(s)"] = {
            "steps_per_s": median_rate(run_fast, 64, min_seconds=seconds, repeats=repeats),
            "obs_floats": env.obs_dim}

    print(f"{'env':<48} {'obs floats':>10} {'steps/s':>14}")
    for name, row in rows.items():
        print(f"{name:<48} {row['obs_floats']:>10} {row['steps_per_s']:>14,.0f}")
    peer = rows.get("gym-anytrading, SyncVectorEnv of 64")
    ratio = None
    if peer:
        best = max(r["steps_per_s"] for n, r in rows.items() if n.startswith("fastrl"))
        ratio = best / peer["steps_per_s"]
        print(f"\nfastrl (64 envs) / SyncVectorEnv of 64: {ratio:.0f}x  (target >= 100x)")
    path = write_json("peer_envs", {"machine": machine_info(), "window": WINDOW, "rows": rows,
                                    "fastrl_over_syncvector64": ratio})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
