"""Portfolio simulator throughput: fastrl's PortfolioVecEnv against the bare cost of
writing its observation bytes, reference_portfolio.py and FinRL's StockTradingEnv, all on
the bundled 30 daily symbols in one process.

    python bench/env_portfolio.py [--quick]

FinRL: ``pip install --no-deps finrl``; its env module is loaded by file path so the
package ``__init__`` (and its heavy imports) never runs. Prints a table and writes
bench/results/env_portfolio.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import types
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fastrl.data.panel import PanelBlock, build_panel  # noqa: E402
from fastrl.env_config import PortfolioConfig  # noqa: E402
from fastrl.markets.portfolio.env import PortfolioVecEnv  # noqa: E402
from fastrl.reference_portfolio import ReferencePortfolioEnv  # noqa: E402

from bench_common import machine_info, median_rate, write_json  # noqa: E402

NUM_ENVS = 1024
WINDOW = 32
FINRL_ENV = Path("finrl/meta/env_stock_trading/env_stocktrading.py")


def first_columns(panel: PanelBlock, assets: int) -> PanelBlock:
    return PanelBlock(symbols=panel.symbols[:assets], open=panel.open[:, :assets],
                      close=panel.close[:, :assets], features=panel.features[:, :assets],
                      tradable=panel.tradable[:, :assets], feature_names=panel.feature_names)


def weight_batches(num_envs: int, assets: int, count: int = 16) -> np.ndarray:
    """Random long-only weights that sum to at most 1: a policy's softmax, precomputed."""
    raw = np.random.default_rng(0).exponential(size=(count, num_envs, assets + 1))
    return np.ascontiguousarray((raw / raw.sum(axis=2, keepdims=True))[..., :assets])


def env_rate(env, assets: int, num_envs: int, seconds: float, repeats: int) -> float:
    batches = weight_batches(num_envs, assets)

    def run(calls: int) -> None:
        for k in range(calls):
            env.step(batches[k % len(batches)])

    run(4)
    return median_rate(run, num_envs, min_seconds=seconds, repeats=repeats)


def floor_rate(num_envs: int, obs_dim: int, seconds: float, repeats: int) -> float:
    """Observations per second that a bare numpy copy of the same bytes achieves (as in
    bench/env_throughput.py)."""
    src = np.random.default_rng(0).normal(size=(num_envs, obs_dim)).astype(np.float32)
    dst = np.empty_like(src)

    def run(calls: int) -> None:
        for _ in range(calls):
            np.copyto(dst, src)

    run(2)
    return median_rate(run, num_envs, min_seconds=seconds, repeats=repeats)


def load_finrl_env():
    """FinRL's StockTradingEnv class, or (None, why not)."""
    spec = importlib.util.find_spec("finrl")
    if spec is None or not spec.submodule_search_locations:
        return None, "finrl is not installed (pip install --no-deps finrl)"
    path = Path(spec.submodule_search_locations[0]).parent / FINRL_ENV
    if not path.exists():
        return None, f"{path} not found in the installed finrl"
    try:
        import stable_baselines3  # noqa: F401
        shim = None
    except ImportError:
        # The module imports DummyVecEnv for get_sb_env() only, which is never called here.
        shim = "stable_baselines3 is absent: a stub DummyVecEnv was injected (unused)"
        for name in ("stable_baselines3", "stable_baselines3.common",
                     "stable_baselines3.common.vec_env"):
            sys.modules.setdefault(name, types.ModuleType(name))
        sys.modules["stable_baselines3.common.vec_env"].DummyVecEnv = None
    module_spec = importlib.util.spec_from_file_location("finrl_env_stocktrading", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    from importlib.metadata import version

    return module.StockTradingEnv, {"version": version("finrl"), "note": shim}


def finrl_rate(panel: PanelBlock, seconds: float, repeats: int) -> dict:
    """Steps/s of one FinRL StockTradingEnv on the dates all A symbols traded (FinRL needs a
    full cross-section every day), with fastrl's features as its technical indicators."""
    import pandas as pd

    env_class, about = load_finrl_env()
    if env_class is None:
        return {"installed": False, "why": about}
    days = np.flatnonzero(panel.tradable.all(axis=1))
    assets, names = panel.num_assets, list(panel.feature_names)
    frame = pd.DataFrame({
        "date": np.repeat(panel.timestamps[days], assets),
        "tic": np.tile(np.array(panel.symbols), len(days)),
        "close": panel.close[days].ravel(),
        **{n: panel.features[days, :, f].ravel().astype(np.float64)
           for f, n in enumerate(names)},
    })
    frame.index = np.repeat(np.arange(len(days)), assets)  # FinRL indexes rows by day number
    state_space = 1 + 2 * assets + len(names) * assets
    env = env_class(df=frame, stock_dim=assets, hmax=100, initial_amount=1_000_000,
                    num_stock_shares=[0] * assets, buy_cost_pct=[0.001] * assets,
                    sell_cost_pct=[0.001] * assets, reward_scaling=1e-4,
                    state_space=state_space, action_space=assets,
                    tech_indicator_list=names, print_verbosity=10**9)
    env.reset(seed=0)
    actions = np.random.default_rng(0).uniform(-1, 1, (256, assets))

    def run(calls: int) -> None:
        for k in range(calls):
            _, _, terminated, truncated, _ = env.step(actions[k & 255])
            if terminated or truncated:
                env.reset()

    run(8)
    return {"installed": True, **about, "days": int(len(days)), "obs_floats": state_space,
            "steps_per_s": median_rate(run, 1, min_seconds=seconds, repeats=repeats)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter timings, fewer repeats")
    args = parser.parse_args()
    seconds, repeats = (0.15, 3) if args.quick else (0.4, 5)

    full = build_panel(None, freq="1d", test_days=30, window=WINDOW).train
    rows = []

    def add(name: str, assets: int, window: int, threads: int | None, rate: float,
            obs_floats: int, floor: float | None = None) -> None:
        rows.append({"env": name, "assets": assets, "window": window, "threads": threads,
                     "num_envs": NUM_ENVS if threads else 1, "obs_floats": obs_floats,
                     "steps_per_s": rate, "floor_obs_per_s": floor,
                     "step_time_over_floor": None if floor is None else floor / rate})
        print(f"{name:<44} {assets:>3} {window:>4} {obs_floats:>6} {rate:>14,.0f}"
              + ("" if floor is None else f" {floor:>14,.0f} {floor / rate:>6.2f}"), flush=True)

    print(f"{'env':<44} {'A':>3} {'win':>4} {'obs':>6} {'steps/s':>14} {'write floor':>14} "
          f"{'floor':>6}")
    for assets in (10, 30):
        panel = first_columns(full, assets) if assets < full.num_assets else full
        for window in (WINDOW, 1) if assets == 30 else (WINDOW,):
            config = PortfolioConfig(window=window, episode_length=252)
            floor = None
            for threads in (1, 2):
                env = PortfolioVecEnv(panel, NUM_ENVS, config, num_threads=threads, seed=0)
                if floor is None:
                    floor = floor_rate(NUM_ENVS, env.obs_dim, seconds, repeats)
                rate = env_rate(env, assets, NUM_ENVS, seconds, repeats)
                add(f"fastrl PortfolioVecEnv, {threads} thread(s)", assets, window, threads,
                    rate, env.obs_dim, floor)
                del env
        if assets == 30:
            ref = ReferencePortfolioEnv(panel, 64, PortfolioConfig(window=WINDOW), seed=0)
            add("reference_portfolio.py (numpy, 64 envs)", assets, WINDOW, None,
                env_rate(ref, assets, 64, seconds, min(repeats, 3)), ref.obs_dim)
            rows[-1]["num_envs"] = 64
    finrl = finrl_rate(full, seconds, repeats)
    if finrl["installed"]:
        add(f"FinRL {finrl['version']} StockTradingEnv (1 env)", full.num_assets, 1, None,
            finrl["steps_per_s"], finrl["obs_floats"])
    else:
        print(f"FinRL: {finrl['why']}")

    def best(assets: int, window: int) -> dict:
        fast = [r for r in rows if r["env"].startswith("fastrl") and r["assets"] == assets
                and r["window"] == window]
        return max(fast, key=lambda r: r["steps_per_s"])

    ratio = (best(30, WINDOW)["steps_per_s"] / finrl["steps_per_s"]
             if finrl["installed"] else None)
    ratio_same_obs = (best(30, 1)["steps_per_s"] / finrl["steps_per_s"]
                      if finrl["installed"] else None)
    targets = {
        "A=10, 1024 envs, window 32: step time / obs-write floor <= 2":
            best(10, WINDOW)["step_time_over_floor"],
        "A=30, 1024 envs, window 32: step time / obs-write floor <= 2":
            best(30, WINDOW)["step_time_over_floor"],
        "A=30: fastrl (window 32) / FinRL StockTradingEnv >= 300": ratio,
        "(A=30: fastrl window 1, an obs about FinRL's size) / FinRL": ratio_same_obs,
    }
    print("\ntargets")
    for name, value in targets.items():
        print(f"  {name}: {'n/a' if value is None else f'{value:,.2f}'}")
    if finrl.get("note"):
        print(f"note: {finrl['note']}")
    path = write_json("env_portfolio", {"machine": machine_info(), "num_envs": NUM_ENVS,
                                        "quick": args.quick, "rows": rows, "finrl": finrl,
                                        "targets": targets})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
