"""Build bench/results/SUMMARY.md (tables + PNG plots) from the JSON the benchmarks wrote.

    python bench/summary.py      # also run at the end of bench/run_all.py

Sections whose results file is missing say so instead of showing stale or made-up numbers.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import RESULTS  # noqa: E402


def load(*names: str) -> dict[str, Any] | None:
    """The first of the named results files that exists (quick runs add a suffix)."""
    for name in names:
        path = RESULTS / f"{name}.json"
        if path.exists():
            return json.loads(path.read_text())
    return None


def fmt(x: float | None, spec: str = ",.0f") -> str:
    return "n/a" if x is None else format(x, spec)


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out + [""]


def env_section(data: dict | None) -> list[str]:
    lines = ["## Simulator throughput (`bench/env_throughput.py`)", ""]
    if data is None:
        return lines + ["Not run yet.", ""]
    m = data["machine"]
    lines += [f"CPU: {m['cpu']}, {m['cores']} cores. Env steps/s (median of repeats); the floor is "
              "a bare numpy copy of the same observation bytes, in the same process.", ""]
    threads = sorted(data["rows"][0]["core_steps_per_s"], key=int)
    header = ["envs", "window", "obs floats", *[f"fastrl {t} thr" for t in threads],
              "reference.py", "obs-write floor", "fastrl / ref", "step / floor time", "2t / 1t"]
    rows = [[str(r["num_envs"]), str(r["window"]), str(r["obs_dim"]),
             *[fmt(r["core_steps_per_s"][t]) for t in threads], fmt(r["reference_steps_per_s"]),
             fmt(r["floor_obs_per_s"]), fmt(r["speedup_vs_reference"], ".1f"),
             fmt(r["step_time_over_floor"], ".2f"), fmt(r["two_over_one_thread"], ".2f")]
            for r in data["rows"]]
    lines += table(header, rows)
    lines += ["Targets (ratios from the same run):", ""]
    lines += [f"- {name}: **{fmt(value, '.2f')}**" for name, value in data["targets"].items()]
    lines += ["", "Memory (window 32): RSS growth of building and stepping the env:", ""]
    for mem in data["memory"]:
        grew = mem["rss_after_mib"] - mem["rss_before_mib"]
        lines.append(f"- {mem['num_envs']} envs: +{grew:.1f} MiB; per-env buffers "
                     f"{mem['buffers_mib']:.1f} MiB + state "
                     f"{mem['state_mib']:.1f} MiB; the market block ({mem['market_mib']:.1f} MiB)"
                     " is shared once")
    plot = plot_env_scaling(data)
    if plot:
        lines += ["", f"![env scaling]({plot.name})"]
    return lines + [""]


def plot_env_scaling(data: dict) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    windows = sorted({r["window"] for r in data["rows"]})
    fig, axes = plt.subplots(1, len(windows), figsize=(6 * len(windows), 4.2), squeeze=False)
    for ax, window in zip(axes[0], windows, strict=True):
        rows = [r for r in data["rows"] if r["window"] == window]
        envs = [r["num_envs"] for r in rows]
        for t in sorted(rows[0]["core_steps_per_s"], key=int):
            ax.plot(envs, [r["core_steps_per_s"][t] for r in rows], "o-", label=f"fastrl, {t} thr")
        ax.plot(envs, [r["reference_steps_per_s"] for r in rows], "s--", label="reference.py")
        ax.plot(envs, [r["floor_obs_per_s"] for r in rows], ":", label="obs-write floor")
        ax.set(xscale="log", yscale="log", xlabel="num_envs", ylabel="env steps / s",
               title=f"window {window} ({rows[0]['obs_dim']} floats / obs)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = RESULTS / "env_scaling.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def peer_env_section(data: dict | None) -> list[str]:
    lines = ["## fastrl against a plain-Python gymnasium env (`bench/peer_envs.py`)", ""]
    if data is None:
        return lines + ["Not run yet (needs the `[bench]` extra).", ""]
    rows = [[name, str(r["obs_floats"]), fmt(r["steps_per_s"])] for name, r in data["rows"].items()]
    lines += table(["env (BPCL/HDFCLIFE daily, window 32)", "obs floats", "env steps/s"], rows)
    ratio = data.get("fastrl_over_syncvector64")
    lines += [f"fastrl at 64 envs / gymnasium SyncVectorEnv of 64 gym-anytrading envs: "
              f"**{fmt(ratio, '.0f')}x** (target >= 100x).", ""]
    return lines


def portfolio_section(data: dict | None) -> list[str]:
    lines = ["## Portfolio simulator (`bench/env_portfolio.py`)", ""]
    if data is None:
        return lines + ["Not run yet.", ""]
    m = data["machine"]
    lines += [f"CPU: {m['cpu']}, {m['cores']} cores. Bundled 30 daily symbols (train panel); "
              f"fastrl with {data['num_envs']} envs; the floor is a bare numpy copy of the same "
              "observation bytes in the same process; FinRL is one env on the dates all 30 "
              "traded. A step can beat the floor: its window copies read a panel that stays "
              "in cache and write with streaming stores, while the floor copies memory to "
              "memory through the cache.", ""]
    rows = [[r["env"], str(r["assets"]), str(r["window"]), str(r["num_envs"]),
             str(r["obs_floats"]), fmt(r["steps_per_s"]), fmt(r["floor_obs_per_s"]),
             fmt(r["step_time_over_floor"], ".2f")] for r in data["rows"]]
    lines += table(["env", "symbols", "window", "envs", "obs floats", "env steps/s",
                    "obs-write floor", "step / floor time"], rows)
    if not data["finrl"].get("installed"):
        lines += [f"FinRL: {data['finrl'].get('why')}", ""]
    lines += ["Targets (ratios from the same run):", ""]
    lines += [f"- {name}: **{fmt(value, ',.2f')}**" for name, value in data["targets"].items()]
    return lines + [""]


def data_section(data: dict | None) -> list[str]:
    lines = ["## Data preparation (`bench/data_prep.py`)", ""]
    if data is None:
        return lines + ["Not run yet.", ""]
    rows = [[r["case"], fmt(r["bars"]), f"{r['total_s']:.2f}", f"{r['peak_rss_mb']:.0f}"]
            for r in data["results"]]
    lines += table(["case", "bars", "load + features + split (s)", "peak RSS (MB)"], rows)
    t = data["target"]
    return lines + [f"Target: {t['case']} in < {t['seconds']:.0f} s and "
                    f"< {t['peak_rss_mb']:.0f} MB.", ""]


def train_section(cpu: dict | None, gpu: dict | None) -> list[str]:
    lines = ["## Trainer throughput (`bench/train_throughput.py`, `bench/gpu_check.sh`)", ""]
    if cpu is None:
        lines += ["CPU: not run yet.", ""]
    else:
        s = cpu["settings"]
        lines += [f"CPU ({cpu['machine']['cpu']}, {cpu['machine']['cores']} cores, "
                  f"{cpu['torch_threads']} torch threads), {s['num_envs']} envs x {s['num_steps']}"
                  f" steps, minibatch {s['minibatch']}, {s['epochs']} epochs:", ""]
        rows = [[f"{r['network']} {tuple(r['hidden_sizes'])}", r["precision"],
                 fmt(r["env_steps_per_s"]), f"{r['env_frac']:.1%}", f"{r['inference_frac']:.1%}",
                 f"{r['copy_frac']:.1%}", f"{r['update_frac']:.1%}",
                 fmt(r["update_samples_per_s"]), fmt(r["bare_samples_per_s"]),
                 f"{r['update_vs_bare']:.0%}"] for r in cpu["results"]]
        lines += table(["network", "precision", "env steps/s", "env", "inference", "copies",
                        "update", "update samples/s", "bare fwd+bwd+AdamW samples/s",
                        "update / bare"], rows)
    if gpu is None:
        lines += ["GPU: `bash bench/gpu_check.sh` has not been run on an NVIDIA GPU yet.", ""]
    else:
        lines += ["GPU (`bench/gpu_check.sh`; default network (2048, 1024, 512, 256), 4096 envs "
                  "x 8 steps, minibatch 8192, 4 epochs):", ""]
        rows = [[g, mode, prec, fmt(sps), fmt(upd), fmt(bare), f"{e:.1%}", f"{i:.1%}",
                 f"{c:.1%}", f"{u:.1%}"]
                for g, mode, prec, sps, upd, bare, e, i, c, u in gpu["rows"]]
        lines += table(["GPU", "torch.compile", "precision", "env steps/s", "update samples/s",
                        "bare samples/s", "env", "inference", "copies", "update"], rows)
    return lines


def thread_section(data: dict | None) -> list[str]:
    lines = ["## CPU thread policy (`bench/train_throughput.py --thread-policy`)", ""]
    if data is None:
        return lines + ["Not run yet.", ""]
    from train_throughput import thread_table

    lines += [f"{data['machine'].get('cpu', '?')}, {data['cores']} cores; env steps/s of "
              "training (fast preset, BPCL + HDFCLIFE), median (range) of "
              f"{data['rounds']} interleaved rounds of {data['case_seconds']:g} s or more per "
              "case, each case a fresh process. Neighbour: one busy loop per core at the same "
              "niceness.", ""]
    return lines + thread_table(data["summary"]) + [""]


def peer_train_section(data: dict | None) -> list[str]:
    lines = ["## End-to-end PPO against Stable-Baselines3 (`bench/peer_training.py`)", ""]
    if data is None:
        return lines + ["Not run yet (needs the `[bench]` extra).", ""]
    lines += [f"CPU, {data['torch_threads']} torch thread(s); env steps/s over whole rollout + "
              "update cycles; same networks and epochs per rollout; each library's own rollout "
              "and minibatch sizes (fastrl 64 envs x 128 steps, minibatch 2048; SB3 2048 steps, "
              "minibatch 64, and 2048 for comparison).", ""]
    rows = []
    for r in data["rows"]:
        rows.append([r["network"], str(r["epochs"]), fmt(r["fastrl_fp32"]["steps_per_s"]),
                     fmt(r["fastrl_bf16"]["steps_per_s"]), fmt(r.get("sb3_batch64")),
                     fmt(r.get("sb3_batch2048")), fmt(r.get("ratio_vs_sb3_default"), ".1f"),
                     fmt(r.get("ratio_fp32_vs_sb3_default"), ".1f")])
    lines += table(["network", "epochs", "fastrl fp32", "fastrl bf16", "SB3 (batch 64)",
                    "SB3 (batch 2048)", "fastrl best / SB3", "fastrl fp32 / SB3"], rows)
    return lines + ["Targets: >= 10x SB3 with (64, 64); >= 2x SB3 with the default network and "
                    "20 epochs.", ""]


def bench_section(heading: str, data: dict | None, module: str,
                  function: str = "markdown") -> list[str]:
    """A section that is ``heading`` and the bench module's own summary of ``data``."""
    lines = [heading, ""]
    if data is None:
        return lines + ["Not run yet.", ""]
    summary = getattr(importlib.import_module(module), function)
    return lines + [summary(data).strip(), ""]


def convergence_section(data: dict | None) -> list[str]:
    return bench_section(
        "## Learning speed: fast against baseline (`bench/convergence.py`)",
        data, "convergence", "markdown_summary")


def generalisation_section(data: dict | None, selection: dict | None) -> list[str]:
    lines = ["## Generalisation on real bars (`bench/generalisation.py`)", ""]
    if selection is not None:
        rows = [[str(p), *(fmt(block[preset]["aggregate"]["median_val_cost_per_year"], ".1%")
                           for preset in block)]
                for p, block in selection["table"].items()]
        presets = list(next(iter(selection["table"].values())))
        lines += [f"Turnover penalty chosen on validation only ({len(selection['symbols'])} "
                  f"symbols, {selection['timesteps']:,} steps): median validation cost per year "
                  f"by candidate; chosen {selection['chosen']} (target <= "
                  f"{selection['target']:.0%}).", ""]
        lines += table(["turnover penalty", *presets], rows) + [""]
    if data is None:
        return lines + ["Test-year run not done yet.", ""]
    return lines + [data["markdown"].strip(), ""]


def validation_cost_section(data: dict | None) -> list[str]:
    lines = ["## Validation's share of training time (`bench/validation_cost.py`)", ""]
    if data is None:
        return lines + ["Not run yet.", ""]
    return lines + [f"README's 5-minute example, {data['updates']} updates: training "
                    f"{data['train_seconds']:.1f} s, validation {data['val_seconds']:.1f} s = "
                    f"{data['val_share']:.1%} of the time (target < 10%).", ""]


def tune_section(data: dict | None) -> list[str]:
    return bench_section(
        "## Hyperparameter search: tuned against both presets (`bench/tune_payoff.py`)",
        data, "tune_payoff", "markdown_summary")


def tune_batch_section(data: dict | None) -> list[str]:
    return bench_section(
        "## Batched trials: one study sequential and batched (`bench/tune_batch.py`)",
        data, "tune_batch", "markdown_summary")


def pbt_section(data: dict | None) -> list[str]:
    return bench_section(
        "## Population-based training (`bench/pbt.py`)",
        data, "pbt")


def walkforward_section(data: dict | None) -> list[str]:
    return bench_section(
        "## Walk-forward: the out-of-sample record on real bars (`bench/walkforward.py`)",
        data, "walkforward")


def walkforward_portfolio_section(data: dict | None) -> list[str]:
    return bench_section(
        "## Walk-forward of a portfolio policy (`bench/walkforward.py --portfolio`)",
        data, "walkforward")


def walkforward_population_section(data: dict | None) -> list[str]:
    return bench_section(
        "## Walk-forward windows as members of one population, against the process pool "
        "(`bench/walkforward_population.py`)", data, "walkforward_population")


def ladder_section(data: dict | None) -> list[str]:
    return bench_section(
        "## Ladder: classical rules over the walk-forward period (`bench/ladder.py`)",
        data, "ladder")


def anchored_section(data: dict | None, portfolio: bool = False) -> list[str]:
    return bench_section(
        "## Anchored agents: the ablation, chosen before 2017 and reported on 2017+ "
        f"(`bench/anchored.py{' --kind portfolio' if portfolio else ''}`)", data, "anchored")


def tune_walkforward_section(data: dict | None) -> list[str]:
    return bench_section(
        "## Walk-forward tuning: selected before 2017, confirmed on 2017+ "
        "(`bench/tune_walkforward.py`)", data, "tune_walkforward")


def calibration_section(data: dict | None, records_dir: Path = RESULTS) -> list[str]:
    lines = ["## Calibration: does the verdict claim an edge only when there is one? "
             "(`bench/calibration.py`)", ""]
    if data is None:  # a full run under way leaves its records, not yet a results file
        from calibration import progress

        return lines + [progress(records_dir) or "Not run yet.", ""]
    from calibration import markdown

    return lines + [markdown(data).strip(), ""]


def build() -> Path:
    parts = ["# fastrl benchmark summary", "",
             "Generated by `python bench/summary.py` from `bench/results/*.json`; rerun everything "
             "with `python bench/run_all.py` (or `--quick`). Ratios are measured in one run on one "
             "machine; absolute figures move with the machine and its load.", ""]
    parts += env_section(load("env_throughput"))
    parts += peer_env_section(load("peer_envs"))
    parts += portfolio_section(load("env_portfolio"))
    parts += data_section(load("data_prep"))
    parts += train_section(load("train_throughput_cpu"), load("gpu_check"))
    parts += thread_section(load("train_throughput_threads"))
    parts += peer_train_section(load("peer_training"))
    parts += convergence_section(load("convergence", "convergence_quick"))
    parts += generalisation_section(load("generalisation", "generalisation_quick"),
                                    load("generalisation_selection"))
    parts += validation_cost_section(load("validation_cost"))
    parts += tune_section(load("tune_payoff", "tune_payoff_quick"))
    parts += tune_batch_section(load("tune_batch_cpu", "tune_batch_cpu_quick"))
    for name in ("tune_batch_cpu_tpe", "tune_batch_cuda", "tune_batch_cuda_tpe"):
        extra = load(name)  # TPE's arms, and the GPU's
        if extra is not None:
            parts += tune_batch_section(extra)[2:]
    for device in ("cuda", "cpu"):  # a study's confirmation, one seed after another and batched
        confirm = load(f"tune_batch_confirm_{device}")
        if confirm is not None:
            from tune_batch import confirm_summary

            parts += [confirm_summary(confirm).strip(), ""]
    parts += pbt_section(load("pbt", "pbt_quick"))
    parts += walkforward_section(load("walkforward", "walkforward_quick"))
    parts += walkforward_portfolio_section(load("walkforward_portfolio",
                                                "walkforward_portfolio_quick"))
    gpu_pbt = load("pbt_cuda")
    if gpu_pbt is not None:
        parts += pbt_section(gpu_pbt)[2:]
    parts += walkforward_population_section(load("walkforward_population",
                                                  "walkforward_population_quick"))
    gpu_walk = load("walkforward_population_cuda")
    if gpu_walk is not None:
        parts += walkforward_population_section(gpu_walk)[2:]
    parts += ladder_section(load("ladder", "ladder_quick"))
    parts += anchored_section(load("anchored", "anchored_quick"))
    parts += anchored_section(load("anchored_portfolio", "anchored_portfolio_quick"),
                              portfolio=True)
    parts += tune_walkforward_section(load("tune_walkforward", "tune_walkforward_smoke"))
    parts += calibration_section(load("calibration", "calibration_quick"))
    path = RESULTS / "SUMMARY.md"
    path.write_text("\n".join(parts))
    return path


if __name__ == "__main__":
    print(build().read_text())
