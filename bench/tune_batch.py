"""Batched trials: one study run trial after trial and as batches of B on one device.

    python bench/tune_batch.py [--quick] [--trials 64] [--batch 16] [--timesteps 200000]
                               [--device cpu|cuda] [--sampler random|tpe]

The study of ``bench/tune_payoff.py`` on the planted-signal market of
``bench/convergence.py`` (data seed 0; its settings: 1 fold x 1 seed, the ``excess``
objective, a validation point every 2,048 env steps, the median pruner), sampler seed 0,
``--trials`` trials of ``--timesteps`` env steps each, with the shape knobs fixed (network
(64, 64), the fast preset's rollout length and minibatches): trials in one batch must share
tensor shapes, and both arms search the same space, so the comparison is of the same study.
(``fastrl-tune --batch`` keeps the shape knobs and groups a batch's trials by shape; with
them free, B = 16 draws fall into many small groups.)

Each arm runs in a fresh process, so its peak memory (RSS; CUDA: peak allocated) is its own:

- ``sequential``: ``TrialRunner.run`` with batch 1, as ``fastrl-tune`` runs it;
- ``batched``: batch B, the trials trained as one population of B independent members
  (``Population(member_seeds=)``) whose rows go to the next trial as soon as a member ends
  (continuous batching).

The same trials. ``--sampler random`` (the default) draws every trial's params from Optuna's
RandomSampler seeded 0, which does not look at results: both arms train exactly the same
64 configs (checked: each arm's params are hashed and the table says whether they match),
so the ratio measures the machinery. With TPE (``--sampler tpe``) each arm's draws follow
its own results, and what a trial costs depends on what was drawn (PPO epochs, the KL stop).
Measured here: two TPE runs of the batched arm ran at 34,390 and 17,855 env steps/s
(before and after continuous batching; the first in the git history of
``tune_batch_cpu.json``, the second in ``tune_batch_cpu_tpe.json``), while on 32 identical
trials the two versions ran within 12% of each other (the later one faster; scratch runs);
so a TPE ratio mixes the engine's speed with the sampler's luck. TPE's arms answer the other
question: what the batched sampler's later view of results costs in the best score.

Both use the commands' thread policy (``fastrl.threads.set_torch_threads``: every core the
other processes leave free; on the quiet machine every core). Reported per arm:
wall seconds, trials per hour, peak memory, the trial states, and the best score found with
its trial. Target (``--sampler random``): sequential / batched wall seconds >= 3x on
2 CPU cores at B = 16, and >= 20x on one GPU at B = 64 (``--device cuda --batch 64``).

Writes ``bench/results/tune_batch_<device>.json`` and ``.md`` (``--sampler tpe``:
``tune_batch_<device>_tpe``; ``--quick``: ``..._quick``).

``--confirm``: the confirmation phase of a study instead (``report_study.confirm_and_test``,
what ``fastrl-tune`` runs after its search): the fast and baseline presets, each on
``--confirm-seeds`` fresh seeds (default 5) x ``--timesteps`` (default 65,536) on BPCL +
HDFCLIFE with their own networks, as ``fastrl-tune --symbols BPCL HDFCLIFE`` confirms them.
(A study also confirms its winner: one more config of the same kind.) Arms: one seed after
another (``batched=False``, the CPU default) and a config's seeds as one population
(``batched=True``, the GPU default), each in a fresh process; ``--rounds 2`` runs them
again in the other order and reports each arm's median. Each arm's confirmation scores are
printed beside the other's (one run per seed either way: equal to float rounding grown over
the updates). Writes ``tune_batch_confirm_<device>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from convergence import planted_market  # noqa: E402
from tune_payoff import small_space, study_settings  # noqa: E402

from bench_common import RESULTS, machine_info, write_json  # noqa: E402

WALL_TARGET = {"cpu": (16, 3.0), "cuda": (64, 20.0)}  # batch size, sequential / batched


def fixed_shape_space(quick: bool) -> dict[str, Any]:
    from fastrl.tune.batched import SHAPE_KNOBS

    space = small_space(quick)
    for knob in SHAPE_KNOBS:
        space.pop(knob, None)
    return space


def timed_parts() -> dict[str, float]:
    """Seconds spent training (rollouts and updates, compilation included) and validating,
    summed over the arm: the training steps and validation backtests of both paths are
    wrapped with a timer (a GPU run's waits are inside them: each ends on the host)."""
    import fastrl.tune.objective as objective
    from fastrl.ppo.population import Population
    from fastrl.ppo.trainer import Trainer

    seconds = {"train": 0.0, "validate": 0.0}

    def timer(function: Any, part: str) -> Any:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                seconds[part] += time.perf_counter() - started
        return wrapped

    Trainer.step = timer(Trainer.step, "train")
    Population.step = timer(Population.step, "train")
    Population.validation_evals = timer(Population.validation_evals, "validate")
    objective.validation_result = timer(objective.validation_result, "validate")
    return seconds


def compiled_graphs() -> int:
    """Graphs torch.compile built in this process (0 where nothing compiles, as on CPU by
    default). A population compiles its forward and loss once per member count: a join
    that keeps the count reuses them, each count a shrinking batch passes through costs a
    compilation, and past torch's recompile limit (8 per function) the function runs
    eager."""
    import torch._dynamo.utils

    return int(torch._dynamo.utils.counters["stats"]["unique_graphs"])


def run_arm(arm: str, args: argparse.Namespace) -> dict[str, Any]:
    """One study in this process (``arm``: sequential or batched)."""
    import torch

    from fastrl.threads import set_torch_threads
    from fastrl.tune.storage import make_storage, open_study
    from fastrl.tune.study import TrialRunner

    set_torch_threads(0)  # the commands' policy, both arms
    parts = timed_parts()
    market = planted_market(0)
    settings = study_settings(market, args.timesteps, 0)
    settings["set_options"] = [o.replace("device=cpu", f"device={args.device}")
                               for o in settings["set_options"]]
    settings["sampler_seed"] = 0
    batch = args.batch if arm == "batched" else 1
    lines: list[str] = []

    def log(line: str) -> None:
        lines.append(line)
        print(f"[{arm}] {line}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix=f"fastrl-tune-batch-{arm}-") as folder:
        runner = TrialRunner(settings, fixed_shape_space(args.quick), study_dir=Path(folder),
                             batch=batch, log=log)
        runner.markets[0] = market.splits
        study = open_study(make_storage(None, folder), f"bench-{arm}", runner.settings,
                           args.trials)
        if args.sampler == "random":  # draws that ignore results: both arms' trials alike
            import optuna

            study.sampler = optuna.samplers.RandomSampler(seed=0)
        if args.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        # --minutes: a GPU lease is short; the arm then stops after the trial or batch in
        # flight and says how many of its trials it ran
        runner.run(study, deadline=None if args.minutes is None
                   else time.time() + 60 * args.minutes)
        wall = time.perf_counter() - started
        trials = [t for t in study.get_trials(deepcopy=False)]
        complete = [t for t in trials if t.state.name == "COMPLETE"]
        best = max(complete, key=lambda t: t.value) if complete else None
        states: dict[str, int] = {}
        for t in trials:
            states[t.state.name] = states.get(t.state.name, 0) + 1
        env_steps = sum(r.env_steps for r in runner.records)
        drawn = hashlib.sha256(json.dumps([t.params for t in sorted(
            trials, key=lambda t: t.number)], sort_keys=True).encode()).hexdigest()[:16]
    finished = [t for t in trials if t.state.is_finished()]
    return {
        "arm": arm, "batch": batch, "wall_seconds": wall, "trials": len(finished),
        "complete_study": len(finished) >= args.trials,
        "device_name": (torch.cuda.get_device_name(0) if args.device == "cuda"
                        else machine_info().get("cpu")),
        "trials_per_hour": 3600 * len(finished) / wall, "states": states,
        "env_steps": env_steps, "env_steps_per_s": env_steps / wall,
        "best_score": None if best is None else best.value,
        "best_trial": None if best is None else best.number,
        "best_params": None if best is None else best.params,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "cuda_peak_allocated_mb": (torch.cuda.max_memory_allocated() / 2**20
                                   if args.device == "cuda" else None),
        "torch_threads_last": torch.get_num_threads(),
        "train_seconds": parts["train"], "validate_seconds": parts["validate"],
        "params_hash": drawn, "compiled_graphs": compiled_graphs(),
    }


CONFIRM_SYMBOLS = ("BPCL", "HDFCLIFE")


def run_confirm_arm(arm: str, args: argparse.Namespace) -> dict[str, Any]:
    """The confirmation of the fast and baseline presets in this process (``arm``:
    sequential or batched), as ``fastrl-tune`` runs it after its search."""
    import torch

    from fastrl.cli.tune import build_parser, check_numbers, settings_of
    from fastrl.threads import set_torch_threads
    from fastrl.tune.report_study import confirm_and_test
    from fastrl.tune.space import load_space
    from fastrl.tune.study import TrialRunner, base_config

    sets = [f"device={args.device}"] + (["hidden_sizes=[64,64]"] if args.quick else [])
    cli = build_parser().parse_args(
        ["--symbols", *CONFIRM_SYMBOLS, "--trials", "1", "--timesteps", str(args.timesteps),
         "--confirm-seeds", str(args.confirm_seeds), "--set", *sets])
    check_numbers(cli)  # the command's defaults (validation and confirmation days)
    space = load_space(None)
    runner = TrialRunner(settings_of(cli, space), space)
    set_torch_threads(runner.base.torch_threads)  # the command's policy
    market = runner.confirmation_market()
    configs = {name: base_config(runner.settings.replaced(base_preset=name))
               for name in ("fast", "baseline")}
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    result = confirm_and_test(configs, runner.settings, market,
                              lambda line: print(f"[{arm}] {line}", file=sys.stderr, flush=True),
                              candidate="fast", batched=arm == "batched")
    if args.device == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - started
    return {
        "arm": arm, "wall_seconds": wall,
        "runs": len(configs) * args.confirm_seeds,
        "scores": {name: c["scores"] for name, c in result["confirmation"].items()},
        "hidden_sizes": {name: list(c.hidden_sizes) for name, c in configs.items()},
        "device_name": (torch.cuda.get_device_name(0) if args.device == "cuda"
                        else machine_info().get("cpu")),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "cuda_peak_allocated_mb": (torch.cuda.max_memory_allocated() / 2**20
                                   if args.device == "cuda" else None),
        "torch_threads_last": torch.get_num_threads(),
    }


def confirm_summary(payload: dict[str, Any]) -> str:
    """Markdown of a ``--confirm`` payload (for SUMMARY.md)."""
    s, arms = payload["settings"], payload["arms"]
    first = arms["sequential"][0]
    nets = ", ".join(f"{name} {tuple(h)}" for name, h in first["hidden_sizes"].items())
    lines = [f"`python bench/tune_batch.py --confirm{' --quick' if s['quick'] else ''} "
             f"--device {s['device']} --rounds {s['rounds']}` on "
             f"{payload['machine'].get('cpu', '?')} ({payload['machine'].get('cores', '?')} "
             f"cores), device {first.get('device_name') or s['device']}: the confirmation of "
             f"the fast and baseline presets ({nets}), {s['confirm_seeds']} fresh seeds x "
             f"{s['timesteps']:,} env steps each on {' + '.join(CONFIRM_SYMBOLS)}; arm order "
             f"{', '.join(payload['order'])}.", "",
             "| arm | wall s (each round) | median wall s | peak RSS MB "
             "| scores (fast; baseline) |",
             "|---|---|---|---|---|"]
    for arm in ("sequential", "batched"):
        runs = arms[arm]
        walls = [r["wall_seconds"] for r in runs]
        memory = max(r["peak_rss_mb"] for r in runs)
        gpu = [r["cuda_peak_allocated_mb"] for r in runs if r.get("cuda_peak_allocated_mb")]
        scores = "; ".join(" ".join(f"{v:+.2f}" for v in runs[0]["scores"][name])
                           for name in ("fast", "baseline"))
        label = "one seed after another" if arm == "sequential" else "a config's seeds batched"
        lines.append(f"| {label} | {', '.join(f'{w:,.0f}' for w in walls)} | "
                     f"{float(np.median(walls)):,.0f} | {memory:,.0f}"
                     + (f" (GPU {max(gpu):,.0f})" if gpu else "") + f" | {scores} |")
    lines += ["", f"One after another / batched: **{payload['speedup']:.2f}x** (medians). "
              "Each arm trains every seed's own run, so the scores agree to float rounding "
              "grown over the updates (vmapped and plain matmuls round differently).", ""]
    return "\n".join(lines)


def run_child(argv: list[str]) -> dict[str, Any]:
    """This script as a fresh process (an arm's own memory peak); its record is the last
    line of its stdout."""
    out = subprocess.run([sys.executable, __file__, *argv], check=True, stdout=subprocess.PIPE,
                         text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def confirm_main(args: argparse.Namespace) -> None:
    """--confirm: the arms in fresh processes, --rounds times (the order alternates)."""
    started = time.perf_counter()
    name = f"tune_batch_confirm_{args.device}" + ("_quick" if args.quick else "")
    arms: dict[str, list[dict[str, Any]]] = {"sequential": [], "batched": []}
    order: list[str] = []
    for round_ in range(args.rounds):
        for arm in ("batched", "sequential")[::1 if round_ % 2 == 0 else -1]:
            record = run_child(["--confirm", "--arm", arm, "--timesteps", str(args.timesteps),
                                "--confirm-seeds", str(args.confirm_seeds), "--device",
                                args.device] + ["--quick"] * args.quick)
            arms[arm].append(record)
            order.append(arm)
            print(f"{arm}: {record['wall_seconds']:,.0f} s", flush=True)
    median = {arm: float(np.median([r["wall_seconds"] for r in runs]))
              for arm, runs in arms.items()}
    payload = {"machine": machine_info(), "settings": {**vars(args), "arm": None},
               "measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
               "order": order, "arms": arms, "median_wall_seconds": median,
               "speedup": median["sequential"] / median["batched"],
               "wall_seconds": time.perf_counter() - started}
    path = write_json(name, payload)
    (RESULTS / f"{name}.md").write_text(confirm_summary(payload))
    print(confirm_summary(payload))
    print(f"wrote {path}")


def full_wall(arm: dict[str, Any], trials: int) -> float:
    """An arm's wall seconds for the whole study: measured, or (stopped at --minutes)
    its seconds per finished trial times the study's trials."""
    if arm.get("complete_study", True):
        return arm["wall_seconds"]
    return arm["wall_seconds"] / max(arm["trials"], 1) * trials


def markdown_summary(payload: dict[str, Any]) -> str:
    """Markdown of a tune_batch payload (for SUMMARY.md)."""
    s = payload["settings"]
    arms = payload["arms"]
    tpe = s.get("sampler", "tpe") == "tpe"  # files written before --sampler: TPE's
    lines = [f"`python bench/tune_batch.py{' --quick' if s['quick'] else ''} --device "
             f"{s['device']} --batch {s['batch']}` on {payload['machine'].get('cpu', '?')} "
             f"({payload['machine'].get('cores', '?')} cores), device "
             f"{arms['batched'].get('device_name') or s['device']}: "
             f"{s['trials']} trials x {s['timesteps']:,} env steps on the planted market, "
             "shape knobs fixed ((64, 64), the fast preset's rollout and minibatches), "
             f"{_sampler_words(tpe)}.", "",
             "| arm | wall s | train s | validate s | trials/hour | env steps/s | peak RSS MB "
             "| states | best score (trial) |", "|---|---|---|---|---|---|---|---|---|"]
    for arm in ("sequential", "batched"):
        a = arms[arm]
        label = "sequential" if arm == "sequential" else f"batched (B = {a['batch']})"
        states = ", ".join(f"{v} {k.lower()}" for k, v in sorted(a["states"].items()))
        best = "n/a" if a["best_score"] is None else f"{a['best_score']:+.2f} ({a['best_trial']})"
        memory = f"{a['peak_rss_mb']:,.0f}" + (
            "" if a.get("cuda_peak_allocated_mb") is None
            else f" (GPU {a['cuda_peak_allocated_mb']:,.0f})")
        parts = " | ".join("n/a" if a.get(k) is None else f"{a[k]:,.0f}"
                           for k in ("train_seconds", "validate_seconds"))
        lines.append(f"| {label} | {a['wall_seconds']:,.0f} | {parts} | "
                     f"{a['trials_per_hour']:,.0f} | "
                     f"{a['env_steps_per_s']:,.0f} | {memory} | {states} | {best} |")
    graphs = {arm: arms[arm].get("compiled_graphs") for arm in ("sequential", "batched")}
    if any(graphs.values()):  # files written before the count lack it
        lines += ["", f"torch.compile built {graphs['sequential']} graphs in the sequential "
                  f"arm and {graphs['batched']} in the batched one (their compilation is in "
                  "train s; a population compiles once per member count)."]
    ratio = payload["speedup"]
    batch, target = WALL_TARGET.get(s["device"], (s["batch"], None))
    verdict = ("" if target is None or s["batch"] != batch or tpe else
               f" Target >= {target:g}x at B = {batch}: {'met' if ratio >= target else 'not met'}.")
    cut = [arm for arm in ("sequential", "batched")
           if not arms[arm].get("complete_study", True)]
    if cut:  # an arm stopped at --minutes: its full study's wall time is extrapolated
        verdict += (" **Estimated**: the " + " and ".join(cut) + " arm stopped at the "
                    f"{s['minutes']:g}-minute limit after "
                    + ", ".join(f"{arms[a]['trials']} of {s['trials']}" for a in cut)
                    + " trials; its full-study wall time is its seconds per trial so far "
                    "times the study's trials, so the ratio is an extrapolation, not a "
                    "measurement.")
    for arm, when in payload.get("reused_arms", {}).items():
        verdict += (f" The {arm} arm is the one measured {when} (rerun only when a change "
                    "touches it).")
    if tpe:
        verdict += (" TPE: each arm's draws follow its own results, so the arms trained "
                   "different trials and did different work; the ratio mixes the engine's "
                   "speed with the sampler's luck and is not the target's measure. The batched "
                   "sampler draws while its peers still run (TPE's constant liar stands in for "
                   "their scores); with one fold and one seed a trial's score has a "
                   "standard error of about 2 Sharpe units (tune_payoff.py), so a difference "
                   "in the best score between the arms is not a measured cost unless it "
                   "exceeds that.")
    else:
        same = arms["sequential"].get("params_hash") == arms["batched"].get("params_hash")
        verdict += (" Both arms trained the same trials (their params match)." if same else
                    " **The arms' params differ**: not the same trials, the ratio is not the "
                    "target's measure.")
        verdict += (" Their states and best scores differ only through the pruner, which "
                    "judges a batched trial against its running peers at the step "
                    "(study.peer_median_prune) and a sequential one against the trials before "
                    "it.")
    lines += ["", f"Sequential / batched wall seconds: **{ratio:.2f}x**.{verdict}", ""]
    return "\n".join(lines)


def _sampler_words(tpe: bool) -> str:
    if tpe:
        return "TPE seeded 0 (each arm's draws follow its own results)"
    return "the same trials in both arms (RandomSampler seeded 0)"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke check (minutes)")
    parser.add_argument("--trials", type=int, default=None)
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--timesteps", type=int, default=None)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--minutes", type=float, default=None,
                        help="stop each arm after the trial or batch running at this many "
                             "minutes (a short GPU lease); the ratio is then extrapolated")
    parser.add_argument("--only", choices=("sequential", "batched"),
                        help="rerun this arm; the other comes from the results file of the "
                             "same settings (after a change that leaves it as it was)")
    parser.add_argument("--confirm", action="store_true",
                        help="time a study's confirmation phase (the presets on fresh seeds) "
                             "one seed after another and batched, instead of the search")
    parser.add_argument("--confirm-seeds", type=int, default=5,
                        help="--confirm: fresh seeds per config (default 5)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="--confirm: runs of each arm, the order alternating (default 1)")
    parser.add_argument("--sampler", choices=("random", "tpe"), default="random",
                        help="random (default): both arms train the same trials; tpe: each "
                             "arm's draws follow its own results")
    parser.add_argument("--arm", choices=("sequential", "batched"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.confirm:
        args.timesteps = args.timesteps or (8192 if args.quick else 65_536)
        if args.arm:
            print(json.dumps(run_confirm_arm(args.arm, args)))
        else:
            confirm_main(args)
        return
    batch, _ = WALL_TARGET[args.device]
    args.trials = args.trials or (8 if args.quick else 64)
    args.batch = args.batch or (4 if args.quick else batch)
    args.timesteps = args.timesteps or (8192 if args.quick else 200_000)
    if args.arm:  # a child: one arm, its record as the last line of stdout
        print(json.dumps(run_arm(args.arm, args)))
        return
    started = time.perf_counter()
    name = f"tune_batch_{args.device}" + ("_tpe" if args.sampler == "tpe" else "") \
        + ("_quick" if args.quick else "")
    arms = {}
    reused = {}
    if args.only:
        earlier_path = RESULTS / f"{name}.json"
        earlier = json.loads(earlier_path.read_text())
        written = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(earlier_path.stat().st_mtime))
        same = ("trials", "batch", "timesteps", "device", "quick", "minutes", "sampler")
        if any(earlier["settings"].get(k) != getattr(args, k) for k in same):
            raise SystemExit(f"--only {args.only}: {name}.json was measured with other "
                             "settings; run both arms")
        for arm, record in earlier["arms"].items():
            if arm != args.only:
                arms[arm] = record
                reused[arm] = earlier.get("reused_arms", {}).get(arm) \
                    or earlier.get("measured_at") or written
    for arm in [a for a in ("batched", "sequential") if a not in arms]:  # batched first:
        # a cut lease keeps it
        arms[arm] = run_child(
            ["--arm", arm, "--trials", str(args.trials), "--batch", str(args.batch),
             "--timesteps", str(args.timesteps), "--device", args.device,
             "--sampler", args.sampler]
            + ["--quick"] * args.quick
            + (["--minutes", str(args.minutes)] if args.minutes is not None else []))
        a = arms[arm]
        print(f"{arm}: {a['wall_seconds']:,.0f} s, {a['trials_per_hour']:,.0f} trials/hour, "
              f"peak RSS {a['peak_rss_mb']:,.0f} MB, best {a['best_score']}", flush=True)
    payload = {"machine": machine_info(), "settings": {**vars(args), "arm": None},
               "measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
               "reused_arms": reused,
               "arms": arms, "wall_seconds": time.perf_counter() - started,
               "speedup": full_wall(arms["sequential"], args.trials)
               / full_wall(arms["batched"], args.trials)}
    path = write_json(name, payload)
    (RESULTS / f"{name}.md").write_text(markdown_summary(payload))
    print(markdown_summary(payload))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
