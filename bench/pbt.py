"""Population-based training: throughput of P members in one process, learning speed, real bars.

    python bench/pbt.py [--device cpu|cuda] [--quick] [--only throughput learning real]

1. **Throughput.** P = 1, 4, 16, 64 members of the (64, 64) network in one Population (one
   simulator of P x n envs, vmapped networks, batched Adam): the population's aggregate env
   steps/s over whole updates (rollout + PPO update, no validation) against single-agent
   Trainers of the same size run one after another (their aggregate rate is one Trainer's
   rate, measured on up to 4 Trainers in a row). A Trainer is the same engine with one
   member, so P = 1 runs at a Trainer's rate (it ran 1.2x while the Trainer had its own
   loop). Targets: >= 3x at P = 16 on the 2-core CPU, >= 10x at P = 64 on a GPU.
2. **Learning.** On convergence.py's planted market: wall seconds until the Sharpe on the
   scoring slice S (the market's 500 validation days, the single configs' learning curve)
   first reaches 80% of the oracle's, for PBT (P = 16), the tuned config (the planted
   study's best draw in bench/results/tune_payoff.json from bench/tune_payoff.py, else
   bench/results/tune/best.yaml, if either is there) and the fast and baseline presets;
   medians with 90% bootstrap intervals (runs that never reach the target count as
   infinitely slow), 10 seeds for single configs, 3 for the population.

   PBT is scored by the member it would pick, not by its best member on S: the best of P
   members on the slice they are measured on is a biased choice (the max of P noisy
   scores) that no single config gets. The layout, in time::

       train | A: rounds (250) | B: pick (250) | S: scoring (500) | test (250)

   The population trains on the bars before A and exploits/explores on A (``fastrl-tune
   --pbt``'s window A); at each round every member is backtested on B, which no round
   uses, and the best member there is the pick (what the run's end would choose:
   ``PBT``'s window B); the pick's Sharpe on S is PBT's point of the curve. The single
   configs train on every bar before S (A and B are 500 of their 9,250 training bars).
   PBT's features are normalised on its own training bars, so B, S and the test days are
   rebuilt from the same bars with its normaliser. The per-round picks are the
   benchmark's instrumentation (a run picks once, at its end): their time is left out of
   PBT's seconds.
3. **Real bars.** BPCL + HDFCLIFE: the PBT winner's test-day Sharpe against both presets'
   (their best-validation checkpoints), each with its bootstrap interval. The presets
   validate on the 250 days before the test days; PBT's rounds use the first 125 of them
   (A) and its pick the last 125 (B).

Writes bench/results/pbt.json (``--quick``: pbt_quick.json, under 2 minutes).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from convergence import (  # noqa: E402
    MarketSetup,
    format_test_sharpe,
    planted_market,
    ratio_of_medians,
    real_market,
    run_config,
    test_record,
    time_to,
    train_and_test,
    upper_median,
)
from fastrl.config import apply_overrides, validate_config  # noqa: E402
from fastrl.ppo.population import Population  # noqa: E402
from fastrl.ppo.trainer import Trainer  # noqa: E402
from fastrl.tune.pbt import PBT  # noqa: E402

from bench_common import RESULTS, machine_info, rss_mib, write_json  # noqa: E402

HIDDEN = (64, 64)
POPULATIONS = (1, 4, 16, 64)
TARGETS = {"cpu": (16, 3.0), "cuda": (64, 10.0)}  # device -> (P, minimum speedup)
TUNED_CONFIG = RESULTS / "tune" / "best.yaml"
LEARNING_POPULATION = 16
READY_UPDATES = 2  # exploit/explore every 2 updates per member
ROUNDS_DAYS = 250  # window A of the learning section's PBT (its rounds)
PICK_DAYS = 250  # window B (its pick), between A and the scoring slice


# ------------------------------------------------------------------------ throughput


def throughput_config(args: argparse.Namespace, market: MarketSetup) -> Any:
    config = run_config("fast", market, 0, 10**9, HIDDEN, args.torch_threads)
    apply_overrides(config, {"num_envs": args.num_envs, "num_steps": args.num_steps,
                             "minibatch_size": args.minibatch, "n_epochs": args.epochs,
                             "target_kl": None, "device": args.device, "amp": None,
                             "compile": False if args.no_compile else None})
    validate_config(config)
    return config


def timed_steps(step: Any, updates: int, device: str) -> float:
    step()  # warm-up: first-call allocations (and compilation on CUDA)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(updates):
        step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def throughput(args: argparse.Namespace, market: MarketSetup) -> dict[str, Any]:
    config = throughput_config(args, market)
    batch = config.batch_size
    trainers = min(4, max(args.populations))
    seconds = 0.0
    for seed in range(trainers):  # one after another, as P separate runs would go
        config.seed = seed
        trainer = Trainer(config, market=market.splits)
        seconds += timed_steps(trainer.step, args.updates, args.device)
        del trainer
    single_rate = trainers * args.updates * batch / seconds
    rows = []
    for p in args.populations:
        config.seed = 0
        pop = Population(config, p, market=market.splits)
        elapsed = timed_steps(pop.step, args.updates, args.device)
        rate = p * args.updates * batch / elapsed
        rows.append({"population": p, "env_steps_per_s": rate, "speedup": rate / single_rate,
                     "rss_mib": rss_mib()[0], "amp": pop.amp, "compile": pop.compile,
                     "gpu_mib": (torch.cuda.max_memory_allocated() / 2**20
                                 if args.device.startswith("cuda") else None)})
        print(f"  P = {p:>3}: {rate:>10,.0f} env steps/s ({rate / single_rate:.2f}x single)",
              flush=True)
        del pop
    device = "cuda" if args.device.startswith("cuda") else "cpu"
    target_p, target_x = TARGETS[device]
    reached = next((r["speedup"] for r in rows if r["population"] == target_p), None)
    return {"settings": {"hidden": list(HIDDEN), "envs_per_member": args.num_envs,
                         "num_steps": args.num_steps, "minibatch": args.minibatch,
                         "epochs": args.epochs, "updates_timed": args.updates,
                         "single_trainers_timed": trainers},
            "single_env_steps_per_s": single_rate, "rows": rows,
            "target": {"population": target_p, "min_speedup": target_x, "speedup": reached,
                       "met": None if reached is None else reached >= target_x}}


# -------------------------------------------------------------------------- learning


def median_interval(seconds: list[float | None], resamples: int = 2000) -> dict[str, Any]:
    """Upper median of the censored seconds (None: not reached) and a 90% bootstrap interval."""
    values = np.array([np.inf if s is None else s for s in seconds])
    rng = np.random.default_rng(0)
    draws = np.sort(rng.choice(values, size=(resamples, values.size)), axis=1)
    medians = draws[:, values.size // 2]
    low, high = np.quantile(medians, [0.05, 0.95], method="inverted_cdf")
    return {"median": _number(upper_median(seconds)), "ci90": [_number(low), _number(high)],
            "reached": int(np.isfinite(values).sum()), "runs": int(values.size)}


def _number(value: float) -> float | str:
    return "inf" if math.isinf(value) else float(value)


def ready_steps(config: Any) -> int:
    """Exploit/explore every READY_UPDATES updates (fewer when the budget is shorter)."""
    updates = max(1, min(READY_UPDATES, config.total_timesteps // config.batch_size))
    return updates * config.batch_size


def resplit(market: MarketSetup, test_days: int, val_days: int,
            normaliser_state: dict | None = None) -> Any:
    """The same bars as ``market`` split as (test_days, val_days), with its features
    normalised by ``normaliser_state`` (default: fitted on the new training rows)."""
    summary = market.splits.summary
    if market.name == "planted":
        from fastrl.data import build_synthetic_market

        synthetic = summary["synthetic"]
        return build_synthetic_market(
            kind="planted_signal", n_symbols=synthetic["n_symbols"],
            n_bars=synthetic["n_bars"], test_days=test_days, val_days=val_days,
            window=summary["window"], seed=synthetic["seed"], freq=summary["freq"],
            normaliser_state=normaliser_state, **synthetic["params"])
    from fastrl.data import build_market

    return build_market(list(summary["symbols"]), freq=summary["freq"], test_days=test_days,
                        val_days=val_days, window=summary["window"],
                        normaliser_state=normaliser_state)


def pbt_markets(market: MarketSetup, rounds_days: int, pick_days: int,
                scoring: bool) -> dict[str, Any]:
    """PBT's blocks on ``market``'s bars: its own market (train | A), B, S and the test days.

    With ``scoring``: train | A | B | S | test, S the market's validation slice (where the
    single configs are scored); without: train | A | B | test (A and B then replace the
    market's validation slice). B, S and the test days carry the population's normaliser.
    """
    summary = market.splits.summary
    test_days, scoring_days = int(summary["test_days"]), int(summary["val_days"])
    after_pick = test_days + (scoring_days if scoring else 0)
    rounds = resplit(market, after_pick + pick_days, rounds_days)
    state = rounds.normaliser.state_dict()
    pick = resplit(market, after_pick, pick_days, state)
    later = resplit(market, test_days, scoring_days, state) if scoring else pick
    return {"rounds": rounds, "pick": pick.val, "score": later.val if scoring else None,
            "test": later.test, "days": {"rounds": rounds_days, "pick": pick_days,
                                         "score": scoring_days if scoring else None,
                                         "test": test_days}}


def pbt_run(config: Any, market: MarketSetup, population: int, ready: int, *,
            rounds_days: int = ROUNDS_DAYS, pick_days: int = PICK_DAYS,
            scoring: bool = True) -> dict[str, Any]:
    """One PBT run: rounds on A, at each round the pick on B and (with ``scoring``) its
    Sharpe on S, time to target, the winner's test days."""
    from fastrl.markets.single.backtest import evaluate_agent
    from fastrl.ppo.checkpoint import load_agent

    blocks = pbt_markets(market, rounds_days, pick_days, scoring)
    curve: dict[str, list] = {"steps": [], "seconds": [], "val_sharpe": [], "picked": [],
                              "best_on_a": []}
    held: dict[str, Any] = {}
    bench_seconds = [0.0]  # the per-round picks: instrumentation, not PBT's time

    def on_row(row: dict[str, Any]) -> None:
        if "val_sharpe" not in row or not scoring:
            return
        started = time.perf_counter()
        pop = held["pop"]
        on_b = [s if math.isfinite(s) else -math.inf
                for s in pop.validate(block=blocks["pick"])]
        picked = int(np.argmax(on_b))
        on_s = pop.validate(members=[picked], block=blocks["score"])[0]
        on_a = [s if math.isfinite(s) else -math.inf for s in row["val_sharpe"]]
        curve["steps"].append(int(row["global_step"]))
        curve["seconds"].append(float(row["elapsed"]) - bench_seconds[0])
        curve["val_sharpe"].append(on_s if math.isfinite(on_s) else None)
        curve["picked"].append(picked)
        curve["best_on_a"].append(int(np.argmax(on_a)))
        bench_seconds[0] += time.perf_counter() - started

    # the markets are given: the config's data section only labels the winner's checkpoint
    config = copy.deepcopy(config)
    config.data.val_days = rounds_days
    with tempfile.TemporaryDirectory(prefix="fastrl-pbt-bench-") as run_dir:
        runner = PBT(config, population, ready, market=blocks["rounds"],
                     pick_block=blocks["pick"], pick_days=pick_days,
                     confirm_days=blocks["days"]["score"] or None, replay_seeds=0,
                     run_dir=run_dir, callback=on_row)
        held["pop"] = runner.pop
        result = runner.run()
        agent = load_agent(Path(run_dir) / "winner", device="cpu")
        evaluation = evaluate_agent(agent, blocks["test"], config.env)
    steps, seconds = time_to(curve, market.target.value) if scoring else (None, None)
    return {"seed": config.seed, "steps_to_target": steps, "seconds_to_target": seconds,
            "total_seconds": result.elapsed - bench_seconds[0],
            "winner": result.winner, "winner_pick_sharpe": result.winner_pick_sharpe,
            "winner_val_sharpe": result.winner_val_sharpe, "winner_dsr": result.dsr.get("dsr"),
            "windows": blocks["days"], "curve": curve, "test": test_record(evaluation)}


def single_configs(market: MarketSetup, timesteps: int, threads: int) -> dict[str, Any]:
    """name -> function(seed) building that single-agent config on this market."""
    def preset(name: str) -> Any:
        return lambda seed: run_config(name, market, seed, timesteps, HIDDEN, threads)

    configs = {"fast": preset("fast"), "baseline": preset("baseline")}
    tuned_params = tuned_study_params()
    if tuned_params is not None:
        from fastrl.tune.space import config_for

        def tuned_from_study(seed: int) -> Any:
            return config_for(tuned_params, preset("fast")(seed), timesteps)

        configs["tuned"] = tuned_from_study
    elif TUNED_CONFIG.is_file():
        from fastrl.config import build_config

        def tuned(seed: int) -> Any:
            config = build_config(config_file=TUNED_CONFIG)
            apply_overrides(config, {**market.overrides, "hidden_sizes": list(HIDDEN),
                                     "total_timesteps": timesteps, "seed": seed,
                                     "device": "cpu", "torch_threads": threads,
                                     "patience": 0, "val_every": 1,
                                     "checkpoint_every": 10**6})
            validate_config(config)
            return config

        configs["tuned"] = tuned
    return configs


def tuned_study_params() -> dict[str, Any] | None:
    """The planted study's winning draw from bench/tune_payoff.py's full run
    (tune_payoff.json), if any."""
    path = RESULTS / "tune_payoff.json"
    if not path.is_file():
        return None
    planted = json.loads(path.read_text()).get("planted") or {}
    return (planted.get("study") or {}).get("best_params")


def learning(args: argparse.Namespace, market: MarketSetup) -> dict[str, Any]:
    configs = single_configs(market, args.timesteps, args.torch_threads)
    runs: dict[str, list[dict[str, Any]]] = {}
    for name, make in configs.items():
        runs[name] = []
        for seed in range(args.seeds):
            run = train_and_test(make(seed), market)
            run.pop("curve", None)
            runs[name].append(run)
            print(f"  {name} seed {seed}: {run['seconds_to_target']} s to target", flush=True)
    runs["pbt"] = []
    for seed in range(args.pbt_seeds):
        config = configs["fast"](seed)
        ready = ready_steps(config)
        run = pbt_run(config, market, args.population, ready)
        runs["pbt"].append(run)
        curve = run["curve"]
        print(f"  pbt seed {seed}: {run['seconds_to_target']} s to target (the member picked "
              f"on B per round {curve['picked']}, best on A {curve['best_on_a']}; picked "
              f"members' Sharpe on S {[_fmt(v) for v in curve['val_sharpe']]})", flush=True)
    seconds = {name: [r["seconds_to_target"] for r in rs] for name, rs in runs.items()}
    summary = {name: median_interval(s) for name, s in seconds.items()}
    speedups = {name: ratio_of_medians(seconds["pbt"], s)
                for name, s in seconds.items() if name != "pbt"}
    return {"target": {"label": market.target.label, "value": market.target.value},
            "timesteps_per_member": args.timesteps, "population": args.population,
            "pbt_scored_by": (f"the member picked on window B ({PICK_DAYS} days, after the "
                              f"rounds' window A of {ROUNDS_DAYS}), scored on the scoring "
                              "slice"),
            "tuned_config": "bench/results/tune_payoff.json (planted study's best draw)"
            if tuned_study_params() is not None else
            (str(TUNED_CONFIG) if "tuned" in configs else None),
            "tuned_missing": None if "tuned" in configs else
            f"no tune result: neither {RESULTS / 'tune_payoff.json'} "
            f"(python bench/tune_payoff.py) nor "
            f"{TUNED_CONFIG}",
            "seconds_to_target": summary, "pbt_speedup_vs": speedups, "runs": runs}


def real_bars(args: argparse.Namespace) -> dict[str, Any]:
    market = real_market()
    out: dict[str, Any] = {}
    for name in ("fast", "baseline"):
        config = run_config(name, market, 0, args.real_timesteps, HIDDEN, args.torch_threads)
        out[name] = train_and_test(config, market)["test"]
        print(f"  {name}: test Sharpe {format_test_sharpe(out[name])}", flush=True)
    config = run_config("fast", market, 0, args.real_timesteps, HIDDEN, args.torch_threads)
    ready = ready_steps(config)
    half = int(market.splits.summary["val_days"]) // 2  # A and B: the presets' validation
    out["pbt"] = pbt_run(config, market, args.population, ready, rounds_days=half,
                         pick_days=half, scoring=False)["test"]
    print(f"  pbt winner: test Sharpe {format_test_sharpe(out['pbt'])}", flush=True)
    return {"symbols": list(market.splits.train.symbols), "timesteps_per_member":
            args.real_timesteps, "population": args.population, "test": out}


# ------------------------------------------------------------------------------ main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="a smoke run, under 2 minutes")
    parser.add_argument("--only", nargs="+", choices=("throughput", "learning", "real"),
                        default=["throughput", "learning", "real"])
    parser.add_argument("--populations", type=int, nargs="+", default=list(POPULATIONS))
    parser.add_argument("--num-envs", type=int, default=32, help="envs per member")
    parser.add_argument("--num-steps", type=int, default=64)
    parser.add_argument("--minibatch", type=int, default=512)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--updates", type=int, default=3, help="timed updates per measurement")
    parser.add_argument("--timesteps", type=int, default=200_000, help="per run / member")
    parser.add_argument("--real-timesteps", type=int, default=200_000)
    parser.add_argument("--seeds", type=int, default=10, help="seeds per single config")
    parser.add_argument("--pbt-seeds", type=int, default=3)
    parser.add_argument("--population", type=int, default=LEARNING_POPULATION)
    parser.add_argument("--torch-threads", type=int, default=0)
    parser.add_argument("--no-compile", action="store_true",
                        help="throughput without torch.compile (on by default on CUDA)")
    args = parser.parse_args(argv)
    if args.quick:
        args.populations = [1, 4]
        args.num_envs, args.num_steps, args.minibatch, args.epochs = 8, 16, 64, 2
        args.updates = 2
        args.timesteps = args.real_timesteps = 64 * 128  # one update of the presets' rollout
        args.seeds, args.pbt_seeds, args.population = 1, 1, 2
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    suffix = "_quick" if args.quick else ("_cuda" if args.device.startswith("cuda") else "")
    payload: dict[str, Any] = {"machine": machine_info(), "device": args.device,
                               "quick": args.quick}
    previous = RESULTS / f"pbt{suffix}.json"
    if set(args.only) != {"throughput", "learning", "real"} and previous.is_file():
        # --only reruns some sections: keep the others from the last run, each dated
        payload = {**json.loads(previous.read_text()), **payload}
    if args.device.startswith("cuda"):
        payload["device_name"] = torch.cuda.get_device_name(0)
    started = time.perf_counter()
    if "throughput" in args.only or "learning" in args.only:
        planted = planted_market()
        payload["oracle_val_sharpe"] = planted.references["oracle_val_sharpe"]
    if "throughput" in args.only:
        print("== throughput", flush=True)
        payload["throughput"] = throughput(args, planted)
    if "learning" in args.only:
        print("== learning (planted market)", flush=True)
        payload["learning"] = learning(args, planted)
    if "real" in args.only:
        print("== real bars", flush=True)
        payload["real"] = real_bars(args)
    payload["seconds"] = time.perf_counter() - started
    dates = dict(payload.get("section_dates") or {})
    dates.update({name: time.strftime("%Y-%m-%d %H:%M") for name in args.only})
    payload["section_dates"] = dates
    path = write_json(f"pbt{suffix}", payload)
    print(f"wrote {path} after {payload['seconds']:.0f} s")
    return 0


def markdown(data: dict[str, Any]) -> str:
    """The SUMMARY.md section (bench/summary.py)."""
    lines = []
    if data.get("quick"):
        lines += ["*Quick run (smoke test): tiny budgets, numbers not meaningful.*", ""]
    t = data.get("throughput")
    if t:
        s = t["settings"]
        lines += [f"Throughput on {data.get('device_name', data['device'])}: network "
                  f"{tuple(s['hidden'])}, {s['envs_per_member']} envs x {s['num_steps']} "
                  f"steps per member, {s['epochs']} epochs of minibatch {s['minibatch']}; "
                  f"single Trainer {t['single_env_steps_per_s']:,.0f} env steps/s.", "",
                  "| P | env steps/s | vs P Trainers in a row | RSS MiB |", "|---|---|---|---|"]
        lines += [f"| {r['population']} | {r['env_steps_per_s']:,.0f} | {r['speedup']:.2f}x | "
                  f"{r['rss_mib']:,.0f} |" for r in t["rows"]]
        g = t["target"]
        verdict = "not measured" if g["speedup"] is None else (
            f"{g['speedup']:.2f}x: {'met' if g['met'] else 'NOT met'}")
        lines += ["", f"Target >= {g['min_speedup']:g}x at P = {g['population']}: {verdict}.",
                  ""]
    learn = data.get("learning")
    if learn:
        scored_by = learn.get("pbt_scored_by") or (
            "its best member on the scoring slice at each round (an older run: the max of P "
            "scores on the slice they are measured on, a biased choice)")
        lines += [f"Learning (planted market, target {learn['target']['label']} = "
                  f"{learn['target']['value']:.2f}): wall seconds to target, median [90% CI], "
                  "runs reaching it; PBT speed-up = config's median / PBT's (n/a: neither "
                  f"reached). PBT is scored by {scored_by}.", "",
                  "| config | seconds | reached | PBT speed-up |", "|---|---|---|---|"]
        for name, m in learn["seconds_to_target"].items():
            ratio = learn["pbt_speedup_vs"].get(name)
            ratio_text = "" if ratio is None else "n/a" if ratio["ratio"] is None else (
                f"{_fmt(ratio['ratio'])}x [{_fmt(ratio['ci90'][0])}, {_fmt(ratio['ci90'][1])}]")
            lines.append(f"| {name} | {_fmt(m['median'])} [{_fmt(m['ci90'][0])}, "
                         f"{_fmt(m['ci90'][1])}] | {m['reached']}/{m['runs']} | {ratio_text} |")
        if learn.get("tuned_missing"):
            lines += ["", f"Tuned config: missing ({learn['tuned_missing']})."]
        lines.append("")
    real = data.get("real")
    if real:
        lines += [f"Real bars ({' + '.join(real['symbols'])}), {real['timesteps_per_member']:,} "
                  "env steps per run / member, test days: combined agent Sharpe ± SE "
                  "[90% CI], PSR:", "", "| config | test Sharpe |", "|---|---|"]
        for name, test in real["test"].items():
            lines.append(f"| {name} | {format_test_sharpe(test)} |")
        lines.append("")
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, str):
        return value
    return f"{value:,.2f}"


if __name__ == "__main__":
    sys.exit(main())
