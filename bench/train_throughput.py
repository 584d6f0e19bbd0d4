"""Trainer throughput: samples/s of a full PPO iteration, where its time goes, and the ceiling.

    python bench/train_throughput.py [--device auto|cpu|cuda] [--quick] [--compare-learning]

For the default network (2048, 1024, 512, 256) and a small one (64, 64), in fp32 and bf16
autocast: the trainer's env steps/s over whole iterations (rollout + update), the split of
an iteration between env step, policy inference, copies and the update, the update's
samples/s (epochs x batch / update time) and, in the same process, a bare
forward + backward + AdamW loop of the same network on random minibatches of the same
size: the ceiling the update is measured against. ``--compare-learning`` also trains the
planted-signal task in fp32 and bf16 with the same seed and reports validation Sharpe, to
show whether bf16 changes what the agent learns.
Writes bench/results/train_throughput_<device>.json.

``--thread-policy`` (CPU) measures torch's default (a spinning OpenMP thread per core)
against passive waiting (``OMP_WAIT_POLICY=PASSIVE``) and a short spin
(``GOMP_SPINCOUNT=10000``), every core each, alone and beside a busy neighbour (one
pure-Python busy loop per core, same niceness: any other job on the machine): env steps/s
of training the fast preset with (64, 64), (256, 256) and the default network, and a
population of 16 (64, 64) members (``--pbt``, batched studies), each case in a fresh
process (the wait policy is read when torch loads), cases interleaved over ``--rounds``.
The targets of a policy: no cliff beside the neighbour, and the quiet figures within 5% of
torch's default. Writes bench/results/train_throughput_threads.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fastrl.config import build_config  # noqa: E402
from fastrl.device import resolve_device  # noqa: E402
from fastrl.ppo.network import ActorCritic  # noqa: E402
from fastrl.ppo.trainer import Trainer  # noqa: E402
from fastrl.ppo.update import autocast_context, make_optimizer  # noqa: E402

from bench_common import machine_info, write_json  # noqa: E402

NETWORKS = {"default": (2048, 1024, 512, 256), "small": (64, 64)}


def bare_loop_rate(hidden: tuple[int, ...], obs_dim: int, num_actions: int, minibatch: int,
                   device: torch.device, amp: bool, compile_: bool, seconds: float) -> float:
    """Samples/s of forward + backward + AdamW on random minibatches: the update's ceiling."""
    torch.manual_seed(0)
    network = ActorCritic(obs_dim, num_actions, hidden).to(device)
    lr = torch.tensor(1e-4, device=device)
    optimizer = make_optimizer(list(network.parameters()), "adamw", lr, 1e-4, 1e-5, device)
    forward = torch.compile(network, dynamic=False) if compile_ else network
    obs = torch.randn(minibatch, obs_dim, device=device)

    def step() -> None:
        with autocast_context(device, amp):
            policy_out, value = forward(obs)
            loss = policy_out.float().square().mean() + value.square().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(3):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    iterations, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        step()
        iterations += 1
        if device.type == "cuda" and iterations % 10 == 0:
            torch.cuda.synchronize()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return iterations * minibatch / (time.perf_counter() - start)


def trainer_run(hidden: tuple[int, ...], args: argparse.Namespace, device: torch.device,
                amp: bool, compile_: bool, market) -> dict:
    batch = args.num_envs * args.num_steps
    config = build_config("fast", set_options=[
        f"hidden_sizes={list(hidden)}", f"num_envs={args.num_envs}",
        f"num_steps={args.num_steps}", f"minibatch_size={args.minibatch}",
        f"n_epochs={args.epochs}", "target_kl=null", f"total_timesteps={batch * args.updates}",
        f"device={device}", f"amp={str(amp).lower()}", f"compile={str(compile_).lower()}",
        f"env_threads={args.env_threads}", "checkpoint_every=1000000",
        "data.symbols=[BPCL, HDFCLIFE]",
    ])
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(config, market=market, run_dir=run_dir, callback=rows.append)
        trainer.train()
        obs_dim, num_actions = trainer.obs_dim, trainer.num_actions
    measured = rows[1:] if len(rows) > 1 else rows  # the first update warms up (and compiles)

    def mean(key: str) -> float:
        return statistics.fmean(r[key] for r in measured)

    update_rates = [r["losses/epochs"] * batch / (r["time/update_frac"] * batch / r["charts/SPS"])
                    for r in measured]
    return {
        "env_steps_per_s": mean("charts/SPS"),
        "update_samples_per_s": statistics.fmean(update_rates),
        "env_frac": mean("time/env_frac"),
        "inference_frac": mean("time/inference_frac"),
        "copy_frac": mean("time/copy_frac"),
        "update_frac": mean("time/update_frac"),
        "obs_dim": obs_dim,
        "num_actions": num_actions,
        "updates_measured": len(measured),
    }


def compare_learning(device: torch.device, steps: int) -> list[dict]:
    """Planted-signal training in fp32 and bf16, same seed: does bf16 change the outcome?"""
    from fastrl.data import build_synthetic_market

    market = build_synthetic_market(kind="planted_signal", n_symbols=2, n_bars=2500,
                                    test_days=60, val_days=250, window=4, seed=0,
                                    signal_strength=0.3)
    results = []
    for hidden in ((64, 64), (512, 256)):
        for amp in (False, True):
            config = build_config("fast", set_options=[
                f"hidden_sizes={list(hidden)}", "num_envs=32", "num_steps=64",
                "minibatch_size=512", "n_epochs=10", f"total_timesteps={steps}",
                "lr_warmup_steps=4096", "env.window=4", "env.episode_length=128",
                "env.cost=zero", "data.source=synthetic", "data.val_days=250", "val_every=2",
                f"device={device}", f"amp={str(amp).lower()}", "compile=false", "seed=0",
            ])
            start = time.perf_counter()
            with tempfile.TemporaryDirectory() as run_dir:
                trainer = Trainer(config, market=market, run_dir=run_dir)
                result = trainer.train()
                final = trainer.validate()
            results.append({"hidden_sizes": list(hidden), "amp_bf16": amp,
                            "best_val_sharpe": result.best_val_sharpe,
                            "final_val_sharpe": final["sharpe"],
                            "final_val_return": final["return"],
                            "seconds": time.perf_counter() - start, "steps": steps})
    return results


THREAD_CASES = {  # name: (hidden sizes, members, extra options)
    "small (64, 64)": ((64, 64), 1, []), "medium (256, 256)": ((256, 256), 1, []),
    # the default network's 20 epochs take ~20 s an update here: 2 keep a case short
    "default, 2 epochs": (None, 1, ["n_epochs=2"]),
    "population 16 x (64, 64)": ((64, 64), 16, [])}
# name -> the OpenMP environment of the case (every case: torch threads = the cores)
POLICIES = {"torch default": {}, "passive wait": {"OMP_WAIT_POLICY": "PASSIVE"},
            "short spin": {"GOMP_SPINCOUNT": "10000"}, "governed": {}}
# the commands' policy (fastrl.threads.set_torch_threads): spinning threads, as many as the
# cores other processes leave free, re-chosen every 2 s
GOVERNED = {"governed"}
QUICK_THREAD_CASES = ("small (64, 64)",)
QUICK_POLICIES = ("torch default", "governed")


def thread_case(spec: dict) -> dict:
    """One measured case in this (fresh) process: the fast preset on BPCL + HDFCLIFE with
    ``spec``'s network and members, ``spec['threads']`` torch threads (0: fastrl's policy),
    env steps/s over whole updates for ``spec['seconds']`` after one warm-up update."""
    from fastrl.data import build_market
    from fastrl.ppo.population import Population
    from fastrl.threads import torch_threads

    options = ["device=cpu", "checkpoint_every=1000000", "total_timesteps=100000000",
               "data.symbols=[BPCL, HDFCLIFE]", *spec["options"]]
    if spec["hidden"] is not None:
        options.append(f"hidden_sizes={list(spec['hidden'])}")
    config = build_config("fast", set_options=options)
    market = build_market(["BPCL", "HDFCLIFE"], freq="1d", test_days=30,
                          window=config.env.window)
    pop = Population(config, spec["members"], market=market)
    threads = spec["threads"] or torch_threads()
    torch.set_num_threads(threads)
    if spec.get("governed"):
        from fastrl.threads import govern

        govern(threads)
    pop.step()  # warm-up
    updates, start = 0, time.perf_counter()
    while time.perf_counter() - start < spec["seconds"] or updates < 2:
        pop.step()  # whole updates: rollout and update
        updates += 1
    steps = updates * pop.batch_size * spec["members"]
    return {"env_steps_per_s": steps / (time.perf_counter() - start), "threads": threads,
            "threads_at_end": torch.get_num_threads(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}


def thread_policy(args: argparse.Namespace) -> None:
    """Torch's default against fastrl's policy, quiet and beside a busy neighbour."""
    cores = os.cpu_count() or 1
    results: list[dict] = []
    for round_ in range(args.rounds):
        for load in ("quiet", "neighbour"):
            hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                    for _ in range(cores if load == "neighbour" else 0)]
            try:
                for case, (hidden, members, extra) in THREAD_CASES.items():
                    if args.cases and not any(c in case for c in args.cases):
                        continue
                    for policy, omp in POLICIES.items():
                        if args.policies and policy not in args.policies:
                            continue
                        env = {k: v for k, v in os.environ.items()
                               if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
                        env.update(omp)
                        threads = cores
                        spec = {"hidden": hidden, "members": members, "threads": threads,
                                "options": extra, "seconds": args.case_seconds,
                                "governed": policy in GOVERNED}
                        out = subprocess.run(
                            [sys.executable, __file__, "--thread-case", json.dumps(spec)],
                            env=env, check=True, capture_output=True, text=True)
                        row = {"round": round_, "load": load, "case": case, "policy": policy,
                               **json.loads(out.stdout.strip().splitlines()[-1])}
                        results.append(row)
                        print(f"round {round_} {load:9s} {case:26s} {policy:14s} "
                              f"{row['threads']} thread(s): {row['env_steps_per_s']:8,.0f} "
                              "env steps/s", flush=True)
            finally:
                for hog in hogs:
                    hog.kill()
                    hog.wait()
    summary = thread_summary(results)
    for line in thread_table(summary):
        print(line)
    path = write_json("train_throughput_threads", {
        "machine": machine_info(), "cores": cores, "rounds": args.rounds,
        "case_seconds": args.case_seconds, "results": results, "summary": summary})
    print(f"wrote {path}")


def thread_summary(results: list[dict]) -> list[dict]:
    """Median env steps/s per (case, load, policy), and the policy over torch's default."""
    out = []
    policies = [p for p in POLICIES if any(r["policy"] == p for r in results)]
    for case in THREAD_CASES:
        for load in ("quiet", "neighbour"):
            rows = {p: [r["env_steps_per_s"] for r in results
                        if (r["case"], r["load"], r["policy"]) == (case, load, p)]
                    for p in policies}
            if not all(rows.values()):
                continue
            rates = {p: statistics.median(v) for p, v in rows.items()}
            ranges = {p: [min(v), max(v)] for p, v in rows.items()}
            row = {"case": case, "load": load, "median": rates, "range": ranges}
            if "torch default" in rates:
                row["ratios"] = {p: rates[p] / rates["torch default"] for p in policies}
            out.append(row)
    return out


def thread_table(summary: list[dict]) -> list[str]:
    names = [p for p in POLICIES if p in summary[0]["median"]] if summary else []

    def label(p: str) -> str:
        spin = "spinning, governed" if p in GOVERNED else "spinning"
        return f"{p} ({'; '.join(f'{k}={v}' for k, v in POLICIES[p].items()) or spin})"

    lines = ["| case | load | " + " | ".join(label(p) for p in names) + " | "
             + " | ".join(f"{p} / default" for p in names[1:]) + " |",
             "|---|---|" + "---|" * (2 * len(names) - 1)]
    for row in summary:
        cells = [f"{row['median'][p]:,.0f} ({row['range'][p][0]:,.0f}-"
                 f"{row['range'][p][1]:,.0f})" for p in names]
        ratios = [f"{row['median'][p] / row['median']['torch default']:.2f}x"
                  for p in names[1:]]
        lines.append(f"| {row['case']} | {row['load']} | " + " | ".join(cells + ratios) + " |")
    return lines


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--num-envs", type=int, default=1024)
    parser.add_argument("--num-steps", type=int, default=8)
    parser.add_argument("--minibatch", type=int, default=2048)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--updates", type=int, default=3)
    parser.add_argument("--env-threads", type=int, default=1)
    parser.add_argument("--bare-seconds", type=float, default=5.0)
    parser.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=list(NETWORKS))
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"],
                        choices=["fp32", "bf16"])
    parser.add_argument("--no-compile", action="store_true", help="CUDA: skip torch.compile")
    parser.add_argument("--compare-learning", action="store_true")
    parser.add_argument("--learning-steps", type=int, default=20480)
    parser.add_argument("--quick", action="store_true", help="fewer updates, shorter bare loop")
    parser.add_argument("--thread-policy", action="store_true",
                        help="CPU thread policy against torch's default, quiet and loaded")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cases", nargs="+", default=None,
                        help="--thread-policy: only the cases whose names hold these words")
    parser.add_argument("--policies", nargs="+", default=None, choices=list(POLICIES),
                        help="--thread-policy: only these policies (torch default first)")
    parser.add_argument("--case-seconds", type=float, default=15.0)
    args = parser.parse_args(argv)
    if args.thread_policy and args.quick:  # a smoke run: one small case, torch's default
        args.rounds, args.case_seconds = 1, 2.0  # against the governor
        args.cases = args.cases or list(QUICK_THREAD_CASES)
        args.policies = args.policies or list(QUICK_POLICIES)
    elif args.quick:
        args.updates, args.bare_seconds = 2, 2.0
    return args


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--thread-case":
        print(json.dumps(thread_case(json.loads(sys.argv[2]))))
        return
    args = parse_args()
    if args.thread_policy:
        thread_policy(args)
        return
    device = resolve_device(args.device)
    torch.set_num_threads(os.cpu_count() or 1)  # the trainer library leaves this to its caller
    compile_ = device.type == "cuda" and not args.no_compile
    from fastrl.data import build_market

    market = build_market(["BPCL", "HDFCLIFE"], freq="1d", test_days=30, window=32)
    results = []
    for name in args.networks:
        hidden = NETWORKS[name]
        for precision in args.precisions:
            amp = precision == "bf16"
            trained = trainer_run(hidden, args, device, amp, compile_, market)
            bare = bare_loop_rate(hidden, trained["obs_dim"], trained["num_actions"],
                                  args.minibatch, device, amp, compile_, args.bare_seconds)
            row = {"network": name, "hidden_sizes": list(hidden), "precision": precision,
                   **trained, "bare_samples_per_s": bare,
                   "update_vs_bare": trained["update_samples_per_s"] / bare}
            results.append(row)
            print(f"{name:8s} {precision}: {row['env_steps_per_s']:10,.0f} env steps/s | "
                  f"env {row['env_frac']:6.1%} infer {row['inference_frac']:6.1%} copy "
                  f"{row['copy_frac']:6.1%} update {row['update_frac']:6.1%} | update "
                  f"{row['update_samples_per_s']:10,.0f} samples/s = "
                  f"{row['update_vs_bare']:6.1%} of bare {bare:10,.0f}", flush=True)
    payload = {"machine": machine_info(), "device": str(device),
               "device_name": (torch.cuda.get_device_name(device) if device.type == "cuda"
                               else "cpu"),
               "torch_threads": torch.get_num_threads(), "compile": compile_,
               "settings": {k: v for k, v in vars(args).items()}, "results": results}
    if args.compare_learning:
        payload["learning"] = compare_learning(device, args.learning_steps)
        for row in payload["learning"]:
            print(f"learning {row['hidden_sizes']} bf16={row['amp_bf16']}: best val Sharpe "
                  f"{row['best_val_sharpe']:+.2f}, final {row['final_val_sharpe']:+.2f} "
                  f"({row['seconds']:.1f} s)", flush=True)
    path = write_json(f"train_throughput_{device.type}", payload)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
