"""Calibration: does fastrl's verdict say "beats buy-and-hold" only when that is true?

    python bench/calibration.py               # full: about 9 h on 2 cores (printed at start),
                                              # plus the walk-forward nulls and the timers
    python bench/calibration.py --quick       # plumbing check (every experiment, tiny);
                                              # its rates mean nothing
    python bench/calibration.py --workers 2   # 2 processes, cores split between them
    python bench/calibration.py --timers-only # no training: the zero-skill rows again

The verdict (``fastrl.stats.verdict``) claims that the agent beats buy-and-hold when the
one-sided p-value of "the mean active return (agent minus buy-and-hold per bar) is not above
0" (``fastrl.stats.prob_agent_beats``: Newey-West SE floored at the i.i.d. SE, Student's t)
is at most 1 - level (level ``fastrl.stats.DEFAULT_LEVEL`` = 0.9). The trained runs' records
keep the claim made when they ran: the 41 30-day runs and the 6 walk-forward null runs
recorded before the mean-return test (December 2026) were judged by the paired bootstrap
of the Sharpe difference it replaced, on markets without execution costs; the zero-skill
rows and the oracle ceilings are recomputed on every invocation, so they use the current
verdict. Five experiments, the
first three with the *default* pipeline (no flag but ``--data``/``--seed``/``--run-dir`` and, with
``--hidden``/``--timesteps``, those):

1. **Null markets** (``--null-markets``, default 20): BPCL and HDFCLIFE (fastrl-train's
   default symbols) resampled by a stationary block bootstrap of their real daily bars
   (``fastrl.data.synthetic.block_bootstrap``: whole days' open/high/low/close relative to
   the previous close and volume, blocks of mean length = the largest Politis-White
   estimate over the returns and their squares, about 65 days for BPCL and 33 for HDFCLIFE,
   so volatility clustering survives). Each market (bootstrap seed i) is written as CSV and
   read back by the loader, so the bars pass the same strict validation, features, splits
   and costs as real data. Then fastrl-train exactly as the command runs it (its parser
   and trainer factory: fast preset, default network, 120 validation days with early
   stopping, the best-validation checkpoint backtested on the 30 test days by
   ``fastrl.evaluate.evaluate_run``), training seed i. Reported: the share of runs whose
   verdict claims an edge (false-positive rate) with a 90% Clopper-Pearson interval,
   against the nominal 1 - level = 10%. Target: at or below nominal (met while the
   interval's lower bound does not exceed it).
2. **Null studies** (``--null-studies``, default 5): a deliberately small fastrl-tune study
   per null market (bootstrap seeds 1000+i): 6 trials x 32,768 env steps, 1 fold, 1 seed,
   3 confirmation seeds, the shipped search space; everything else as the command (its
   parser and settings; only the TPE sampler is seeded, for repeatability). Reported: the
   share of studies whose report says "tuning helped" and whose DSR gate passes (> 0.95).
3. **Planted markets** (``--planted-markets`` per strength, default 8; strengths
   ``--strengths``, default 0.2 0.3; adding 0.1 reuses the records of the others):
   ``fastrl-train --data synthetic`` with ``data.synthetic_signal_strength`` s and
   ``data.synthetic_seed`` i (the same seeds for every strength: common random numbers).
   Power = the share of runs whose verdict finds the edge, with 90% Clopper-Pearson
   intervals. 30 test days are short: even the cost-free long/short oracle's Sharpe (1.3 at
   0.1, 2.6 at 0.2, 3.9 at 0.3) has a standard error of about 2.9 per symbol over 30 days,
   so 0.05 would have almost no power. Beside each power, its ceiling: how often the same
   verdict finds the edge of the cost-free long/flat oracle (the best the default long/flat
   env allows) on the runs' own test days and on ``ORACLE_MARKETS`` planted markets
   (:func:`oracle_p_value`; simulated from the bars, no training).

4. **Walk-forward null markets** (``--walkforward-markets``, default 10; bootstrap seeds
   2000+i): the null market through fastrl-walkforward as the command runs it (its
   ``main``), small on purpose (``WALKFORWARD``: the last 4 windows of 63 days before the
   test days, 32,768 env steps per window, network (64, 64)). Reported: the share whose
   pooled verdict claims an edge, against the nominal 10%. Its records have their own file
   and signature (``calibration_walkforward_runs.jsonl``), so adding them left the other
   runs' records valid.
5. **Zero-skill timers** (``--timer-draws`` per market kind for the 30-day verdict, default
   300; ``--wf-timer-draws`` for the walk-forward's pooled verdict, default 60): random
   long/flat spells with no training, on real bars and on null markets, traded through the
   library's backtest and judged by the report's verdict (:mod:`zero_skill`). Cheap (minutes
   for all of them) and recomputed by every invocation, so they always judge with the
   verdict as it is now; ``--timers-only`` redoes them (and the tables) without training
   anything.

Which verdict: the trained runs' records keep the claim made when they ran (``claims_edge``
from the p-value, checked against the report's sentence). The walk-forward and
zero-skill rows read the claim from the sentence the report prints (``zero_skill.
sentence_claims``), computed by the library (``EvalResult.uncertainty``, the
walk-forward's pooled comparison), so a change to :mod:`fastrl.stats` reaches them with no
change here.

The null, exactly. H0 of the verdict: the agent's Sharpe on the test days is not above
buy-and-hold's. On a block-bootstrapped market the blocks come in random order, so nothing
learned on the training years predicts the test days beyond the dependence *inside* a
block. That dependence is real (the real series' short-range autocorrelation and volatility
clustering), so H0 is true in expectation only up to it: a policy that times within-block
dependence, or steps out of volatile stretches (which raises a Sharpe ratio when the mean
does not rise with the volatility), can beat buy-and-hold a little, as it could on real
bars. The drift is kept: buy-and-hold earns the real average return, and so does an agent
that holds; an agent that stays flat has a lower Sharpe in expectation (H0 holds with room).
A measured rate above nominal is therefore an upper bound on the false-positive rate of
the test itself. Cross-symbol correlation is not kept (each symbol is resampled on its own).

Resumable: each finished run appends one record to ``calibration_runs.jsonl`` in the
results folder; a restart skips the runs recorded with the same settings (``--fresh``
starts over). Run folders (``runs/bench-calibration/``) are deleted once recorded. Writes
``calibration.json`` atomically (``--quick``: ``quick/calibration_quick.json``, and a
quick pass always starts fresh).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import RESULTS, machine_info  # noqa: E402

LEVEL = 0.9  # fastrl.stats.DEFAULT_LEVEL (checked in main: importing stats loads arch)
CI_LEVEL = 0.9  # the Clopper-Pearson intervals of the reported rates
DSR_GATE = 0.95  # the study report's "above 0.95: unlikely to be luck"
STUDY_SEED_BASE = 1000  # null studies' bootstrap seeds, apart from the null runs' 0..N-1
# two strengths by default (the issue asks for two or three): on 2 cores each planted run
# takes ~12 min; 0.1 is the weakest and the least informative on 30 test days
STRENGTHS = (0.2, 0.3)
# markets per strength: 8 x 2 strengths of ~10 min on one of 2 cores fit, with the null
# runs, in the time a session had; a rate out of 8 has a 90% interval ~0.6 wide (4 of 8:
# 19% to 81%), out of 10 ~0.55: the count changes little of what the table can say
PLANTED_MARKETS = 8
# full-run study: small on purpose (the confirmation trains the presets' default network)
STUDY = {"trials": 6, "timesteps": 32768, "folds": 1, "seeds": 1, "confirm_seeds": 3}
QUICK_STUDY = {"trials": 2, "timesteps": 16384, "folds": 1, "seeds": 1, "confirm_seeds": 2}
QUICK_HIDDEN = (32, 32)
QUICK_TIMESTEPS = 16384  # two updates of 64 envs x 128 steps
# planning figures for the start-of-run estimate before a kind has recorded runs (2 cores,
# default network): the first 10 null runs took a median of 10 min (3 to 12; 24 updates
# 10-12 min), a planted edge keeps validation improving (the full 24 updates), and a study
# is 6 small trials then 3 x 3 confirmation runs of the presets at 32,768 steps. Once a kind
# has records, the estimate uses their median seconds instead.
RUN_MINUTES = {"null": 10.0, "planted": 11.0, "study": 26.0}
# planted markets per strength on which the cost-free oracle's power is simulated (the
# ceiling of the agents' power; ~0.2 s each)
ORACLE_MARKETS = 200
# walk-forward null markets (trained): small on purpose, each a few windows of a small net
WF_SEED_BASE = 2000  # their bootstrap seeds, apart from the null runs' and the studies'
WALKFORWARD = {"windows": 4, "step": 63, "timesteps": 32768, "hidden_sizes": [64, 64],
               "markets": 10}
QUICK_WALKFORWARD = {"windows": 2, "step": 21, "timesteps": 8192, "hidden_sizes": [32, 32],
                     "markets": 1}
# zero-skill timers (no training, :mod:`zero_skill`): draws per market kind
TIMER_DRAWS = 300  # 30-day verdict, on real bars and on null markets
WF_TIMER_DRAWS = 60  # walk-forward pooled verdict (each draw trades years of windows)
QUICK_TIMER_DRAWS, QUICK_WF_TIMER_DRAWS = 3, 1
ROOT = Path(__file__).resolve().parent.parent


# ----------------------------------------------------------------------------- statistics


def rate_summary(flags: Sequence[bool], ci_level: float = CI_LEVEL,
                 nominal: float | None = None) -> dict[str, Any]:
    """Share of True in ``flags`` with its two-sided Clopper-Pearson interval at ``ci_level``.

    With ``nominal`` (a false-positive rate the test should not exceed) ``target_met`` says
    whether the data are consistent with "at or below nominal": the interval's lower bound
    does not exceed it. Empty ``flags``: rate and interval None.
    """
    from scipy import stats

    flags = [bool(f) for f in flags]
    count, n = sum(flags), len(flags)
    out: dict[str, Any] = {"count": count, "n": n, "rate": None, "ci": None,
                           "ci_level": ci_level, "ci_method": "Clopper-Pearson"}
    if n:
        interval = stats.binomtest(count, n).proportion_ci(confidence_level=ci_level,
                                                           method="exact")
        out["rate"] = count / n
        out["ci"] = [float(interval.low), float(interval.high)]
    if nominal is not None:
        out["nominal"] = nominal
        out["target_met"] = None if not n else bool(out["ci"][0] <= nominal)
        out["at_or_below_nominal"] = None if not n else bool(out["rate"] <= nominal)
    return out


def claims_edge(p_value: float | None, level: float = LEVEL) -> bool:
    """The verdict's rule: an edge is claimed when p <= 1 - level (NaN/None: never)."""
    return p_value is not None and math.isfinite(p_value) and p_value <= 1.0 - level


def oracle_p_value(strength: float, seed: int, n_symbols: int, test_days: int,
                   n_bars: int) -> float:
    """The verdict's p-value for the cost-free long/flat oracle against buy-and-hold on the
    test days of planted market ``seed`` (the bars ``fastrl-train --data synthetic`` builds:
    :func:`fastrl.data.synthetic.planted_signal`, whose last ``test_days`` bars are the test
    days). The oracle is long over bar t + 1 when the signal at t is positive, else flat:
    the best policy the default long/flat env allows, before costs. Equal capital is taken
    as the daily mean of the symbols' returns (the backtest compounds each symbol's capital
    on its own, which differs from it by second-order terms over 30 days)."""
    import numpy as np

    from fastrl.data.synthetic import planted_signal
    from fastrl.stats import prob_agent_beats

    bars, _ = planted_signal(n_symbols, n_bars, signal_strength=strength, seed=seed)
    oracle, hold = [], []
    for frame in bars.values():
        close = frame["close"].to_numpy()[-test_days:]
        signal = frame["signal"].to_numpy()[-test_days:]
        returns = close[1:] / close[:-1] - 1.0
        hold.append(returns)
        oracle.append(returns * (signal[:-1] > 0))
    return prob_agent_beats(np.mean(oracle, axis=0), np.mean(hold, axis=0)).p_value


def oracle_power(strength: float, seeds: Sequence[int], n_symbols: int, test_days: int,
                 n_bars: int, *, known: dict[int, bool] | None = None) -> dict[str, Any]:
    """:func:`rate_summary` of the verdict finding the oracle's edge on markets ``seeds``
    (``known``: claims already simulated, by seed; new ones are added to it)."""
    known = {} if known is None else known
    for seed in seeds:
        if seed not in known:
            known[seed] = claims_edge(oracle_p_value(strength, seed, n_symbols, test_days,
                                                     n_bars))
    return rate_summary([known[seed] for seed in seeds])


# ----------------------------------------------------------------------------- jobs


def job_keys(null_markets: int, null_studies: int, planted_markets: int,
             strengths: Sequence[float]) -> list[str]:
    """Every run of the experiment, in the order they run: the false-positive evidence
    first (null markets, then null studies), then power (planted markets, a seed at every
    strength before the next seed)."""
    keys = [f"null/{i}" for i in range(null_markets)]
    keys += [f"study/{i}" for i in range(null_studies)]
    keys += [f"planted/{s:g}/{i}" for i in range(planted_markets) for s in strengths]
    return keys


def write_null_market(folder: Path, seed: int, symbols: Sequence[str]) -> dict[str, float]:
    """The null market of ``seed`` as CSV files in ``folder``/daily; returns block lengths."""
    from fastrl.data.synthetic import block_bootstrap

    daily = folder / "daily"
    daily.mkdir(parents=True, exist_ok=True)
    blocks = {}
    for symbol, frame in block_bootstrap(symbols=symbols, seed=seed).items():
        blocks[symbol] = frame.attrs["block_length"]
        out = frame.reset_index()
        out["timestamp"] = out["timestamp"].dt.strftime("%Y-%m-%d")
        out.to_csv(daily / f"{symbol}.csv", index=False, float_format="%.17g")
    return blocks


def train_and_test(argv: list[str], run_dir: Path) -> dict[str, Any]:
    """fastrl-train as the command does it (its parser and trainer factory), without the
    printing and report files; then the test-days backtest and verdict of ``evaluate_run``."""
    from fastrl.cli import train as train_cli
    from fastrl.evaluate import evaluate_run
    from fastrl.strategies import COMBINED

    shutil.rmtree(run_dir, ignore_errors=True)  # an interrupted earlier attempt
    # the fast preset, which the recorded runs (and their signature) measured
    args = train_cli.build_parser().parse_args(["--preset", "fast", *argv, "--run-dir",
                                                str(run_dir)])
    trainer = train_cli.make_trainer(args, None)
    started = time.perf_counter()
    result = trainer.train()
    evaluation = evaluate_run(result.run_dir)
    errors = evaluation.uncertainty(COMBINED)
    versus = errors.vs_buy_and_hold
    agent = [b for b in evaluation.backtests if b.strategy == "agent"]
    record = {
        "argv": argv, "reason": result.reason, "updates": result.updates,
        "global_step": result.global_step, "best_val_sharpe": result.best_val_sharpe,
        "checkpoint": Path(evaluation.info["checkpoint"]).name,
        "hidden_sizes": list(trainer.config.hidden_sizes),
        "test_bars": versus.n, "p_value": _number(versus.p_value),
        "sharpe_agent": _number(versus.sharpe_agent),
        "sharpe_buy_and_hold": _number(versus.sharpe_bench),
        "mean_position": float(sum(float(b.positions.mean()) for b in agent) / len(agent)),
        "verdict": errors.verdict, "claims_edge": claims_edge(versus.p_value),
        "seconds": time.perf_counter() - started,
    }
    # the rule here and the sentence the user reads must agree
    record["verdict_agrees"] = record["claims_edge"] == (" beats " in errors.verdict and not
                                                        errors.verdict.startswith("no evidence"))
    shutil.rmtree(run_dir, ignore_errors=True)
    return record


def null_study(argv: list[str], study_dir: Path, sampler_seed: int,
               log: Callable[[str], None]) -> dict[str, Any]:
    """fastrl-tune as the command runs it in one process (its parser and settings, the
    sampler seeded), then the study report; returns its verdict and gates."""
    import torch

    from fastrl.cli import tune as tune_cli
    from fastrl.tune.report_study import write_study_outputs
    from fastrl.tune.space import load_space
    from fastrl.tune.storage import make_storage, open_study
    from fastrl.tune.study import TrialRunner

    shutil.rmtree(study_dir, ignore_errors=True)
    args = tune_cli.build_parser().parse_args([*argv, "--run-dir", str(study_dir)])
    tune_cli.check_numbers(args)
    space = load_space(args.space)
    settings = tune_cli.settings_of(args, space).replaced(sampler_seed=sampler_seed)
    started = time.perf_counter()
    runner = TrialRunner(settings, space, study_dir=study_dir,
                         log=lambda line: log(f"    {line}"))
    torch.set_num_threads(runner.base.torch_threads or os.cpu_count() or 1)
    study = open_study(make_storage(None, study_dir), args.study, settings, args.trials)
    runner.run(study)
    write_study_outputs(study, runner, study_dir, log=lambda line: log(f"    {line}"))
    report = study_dir / "report.json"
    states = Counter(r.state.lower() for r in runner.records)
    record: dict[str, Any] = {"argv": argv, "sampler_seed": sampler_seed,
                              "states": dict(states)}
    if not report.exists():
        record.update(verdict="no trial completed: no report", tuning_helped=False,
                      tuning_helped_any=False, dsr=None, dsr_passes=False, pbo=None)
    else:
        payload = json.loads(report.read_text())
        gates, verdict = payload["gates"], payload["verdict"]
        winner_test = payload["test"]["tuned"]["runs"]
        record.update(
            verdict=verdict,
            tuning_helped=verdict.startswith("tuning helped:"),  # beats both presets
            tuning_helped_any=verdict.startswith("tuning helped"),  # or one of them
            dsr=gates.get("dsr"), dsr_passes=bool((gates.get("dsr") or 0.0) > DSR_GATE),
            pbo=gates.get("pbo"), n_effective=gates.get("n_effective"),
            winner_test_p=[1.0 - r["p_beats_buy_and_hold"]
                           if r["p_beats_buy_and_hold"] is not None else None
                           for r in winner_test])
    record["seconds"] = time.perf_counter() - started
    shutil.rmtree(study_dir, ignore_errors=True)
    return record


def walkforward_null(index: int, settings: dict[str, Any], symbols: Sequence[str],
                     work: Path, level: float = LEVEL) -> dict[str, Any]:
    """Null market ``WF_SEED_BASE + index`` through fastrl-walkforward as the command runs
    it (its ``main`` with flags: quarterly-style windows of ``settings["step"]`` days, the
    last ``settings["windows"]`` before the held-out test days, each trained on its past
    with early stopping on 120 validation days), then its report's pooled verdict."""
    import pandas as pd

    from fastrl.cli import walkforward as wf_cli
    from fastrl.config import DataConfig
    from zero_skill import sentence_claims

    seed = WF_SEED_BASE + index
    blocks = write_null_market(work / "market", seed, symbols)
    days = None
    for symbol in symbols:
        stamps = pd.DatetimeIndex(pd.read_csv(work / "market" / "daily" / f"{symbol}.csv",
                                              usecols=["timestamp"])["timestamp"])
        days = stamps if days is None else days.intersection(stamps)
    start = days[-(DataConfig().test_days + settings["windows"] * settings["step"])]
    run_dir = work / "run"
    argv = ["--symbols", *symbols, "--data", str(work / "market"), "--preset", "fast",
            "--start", str(start.date()), "--step", str(settings["step"]),
            "--timesteps", str(settings["timesteps"]), "--seed", str(index),
            "--set", f"hidden_sizes={json.dumps(list(settings['hidden_sizes']))}",
            "--workers", "1", "--threads", str(os.cpu_count() or 1), "--device", "cpu",
            "--late-listings", "join", "--run-dir", str(run_dir)]
    started = time.perf_counter()
    code = wf_cli.main(argv)
    if code:
        raise RuntimeError(f"fastrl-walkforward {' '.join(argv)} exited {code}")
    payload = json.loads((run_dir / "report.json").read_text())
    pooled = next(iter(payload["configs"].values()))["pooled"]
    p_value = pooled["versus"]["p_value"]
    claims = sentence_claims(pooled["verdict"])
    return {"argv": argv, "data_seed": seed, "block_lengths": blocks,
            "windows": len(payload["windows"]), "test_bars": pooled["days"],
            "p_value": p_value, "sharpe_agent": pooled["agent"]["sharpe"],
            "sharpe_buy_and_hold": pooled["buy_and_hold"]["sharpe"],
            "verdict": pooled["verdict"], "headline": payload["verdict"],
            "claims_edge": claims, "verdict_agrees": claims == claims_edge(p_value, level),
            "seconds": time.perf_counter() - started}


def walkforward_plan(args: argparse.Namespace) -> dict[str, Any]:
    """The trained walk-forward null runs' settings and the signature of their records
    (apart from the other runs', whose records they leave valid)."""
    from fastrl.config import DataConfig

    settings = dict(QUICK_WALKFORWARD if args.quick else WALKFORWARD)
    settings["markets"] = args.walkforward_markets
    decisive = {"level": LEVEL, "symbols": list(DataConfig().symbols), "quick": args.quick,
                **{k: v for k, v in settings.items() if k != "markets"}}
    signature = hashlib.sha256(json.dumps(decisive, sort_keys=True).encode()).hexdigest()[:16]
    return {**settings, "symbols": decisive["symbols"], "signature": signature}


def summarise_walkforward(runs: list[dict[str, Any]], level: float = LEVEL) -> dict[str, Any]:
    runs = sorted(runs, key=lambda r: r["data_seed"])
    return {"runs": runs,
            "false_positive": rate_summary([r["claims_edge"] for r in runs],
                                           nominal=1.0 - level),
            "median_p_value": _median([r["p_value"] for r in runs]),
            "median_sharpe_agent": _median([r["sharpe_agent"] for r in runs]),
            "median_sharpe_buy_and_hold": _median([r["sharpe_buy_and_hold"] for r in runs]),
            "median_run_minutes": _median([r["seconds"] / 60 for r in runs]),
            "verdict_text_agrees": all(r["verdict_agrees"] for r in runs)}


def _number(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def run_job(key: str, plan: dict[str, Any]) -> dict[str, Any]:
    """One run of the plan (``key`` from :func:`job_keys`); returns its record."""
    def log(line: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)

    work = Path(plan["work_dir"]) / key.replace("/", "-")
    kind, *rest = key.split("/")
    extra = list(plan["train_extra"])
    try:
        if kind == "null":
            seed = int(rest[0])
            blocks = write_null_market(work / "market", seed, plan["symbols"])
            argv = ["--data", str(work / "market"), "--seed", str(seed), *extra]
            record = {"data_seed": seed, "block_lengths": blocks,
                      **train_and_test(argv, work / "run")}
        elif kind == "planted":
            strength, seed = float(rest[0]), int(rest[1])
            sets = [f"data.synthetic_signal_strength={strength:g}",
                    f"data.synthetic_seed={seed}"]
            argv = ["--data", "synthetic", "--seed", str(seed), *_merge_set(extra, sets)]
            record = {"strength": strength, "data_seed": seed,
                      **train_and_test(argv, work / "run")}
        elif kind == "study":
            index = int(rest[0])
            seed = STUDY_SEED_BASE + index
            blocks = write_null_market(work / "market", seed, plan["symbols"])
            study = plan["study"]
            argv = ["--symbols", *plan["symbols"], "--data", str(work / "market"),
                    "--study", f"calibration-null-{index}",
                    "--trials", str(study["trials"]), "--timesteps", str(study["timesteps"]),
                    "--folds", str(study["folds"]), "--seeds", str(study["seeds"]),
                    "--confirm-seeds", str(study["confirm_seeds"]), *plan["tune_extra"]]
            record = {"data_seed": seed, "block_lengths": blocks,
                      **null_study(argv, work / "study", index, log)}
        else:
            raise ValueError(f"unknown job {key!r}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"key": key, "kind": kind, "signature": plan["signature"], **record}


def _merge_set(extra: list[str], sets: list[str]) -> list[str]:
    """``extra`` with ``sets`` added to its --set group (one --set flag)."""
    if "--set" in extra:
        at = extra.index("--set") + 1
        return [*extra[:at], *sets, *extra[at:]]
    return [*extra, "--set", *sets]


# ----------------------------------------------------------------------------- records


def load_records(path: Path, signature: str) -> tuple[dict[str, dict[str, Any]], int]:
    """Finished runs recorded with this ``signature`` (key -> record) and how many lines
    were skipped (other settings, or a line cut short by a kill)."""
    records: dict[str, dict[str, Any]] = {}
    skipped = 0
    if not path.exists():
        return records, skipped
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            skipped += 1
            continue
        if record.get("signature") != signature:
            skipped += 1
            continue
        records[record["key"]] = record
    return records, skipped


def append_record(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, default=float) + "\n")
        f.flush()
        os.fsync(f.fileno())


def write_atomic(path: Path, payload: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=float))
    os.replace(tmp, path)
    return path


# ----------------------------------------------------------------------------- summary


def _median(values: list[float | None]) -> float | None:
    finite = sorted(v for v in values if v is not None and math.isfinite(v))
    if not finite:
        return None
    mid = len(finite) // 2
    return finite[mid] if len(finite) % 2 else (finite[mid - 1] + finite[mid]) / 2


def summarise(records: dict[str, dict[str, Any]], plan: dict[str, Any]) -> dict[str, Any]:
    """The results payload (less machine and timing) from the finished runs."""
    nominal = 1.0 - plan["level"]
    null = [r for r in records.values() if r["kind"] == "null"]
    null.sort(key=lambda r: r["data_seed"])
    studies = sorted((r for r in records.values() if r["kind"] == "study"),
                     key=lambda r: r["data_seed"])
    out: dict[str, Any] = {
        "null": {
            "runs": null,
            "false_positive": rate_summary([r["claims_edge"] for r in null], nominal=nominal),
            "median_p_value": _median([r["p_value"] for r in null]),
            "median_sharpe_agent": _median([r["sharpe_agent"] for r in null]),
            "median_sharpe_buy_and_hold": _median([r["sharpe_buy_and_hold"] for r in null]),
            "median_mean_position": _median([r["mean_position"] for r in null]),
            "verdict_text_agrees": all(r["verdict_agrees"] for r in null),
        },
        "studies": {
            "runs": studies,
            "tuning_helped": rate_summary([r["tuning_helped"] for r in studies]),
            "tuning_helped_any": rate_summary([r["tuning_helped_any"] for r in studies]),
            "dsr_passes": rate_summary([r["dsr_passes"] for r in studies]),
            "median_dsr": _median([r.get("dsr") for r in studies]),
            "median_pbo": _median([r.get("pbo") for r in studies]),
        },
        "planted": {},
        # each kind's median run (the full run splits the cores between --workers)
        "median_run_minutes": {kind: _median([r["seconds"] / 60 for r in records.values()
                                              if r["kind"] == kind])
                               for kind in ("null", "study", "planted")},
    }
    from fastrl.config import DataConfig
    from fastrl.data.synthetic import planted_oracle_sharpe

    data = DataConfig()
    oracle_markets = int(plan.get("oracle_markets", ORACLE_MARKETS))
    market = {"n_symbols": len(plan["symbols"]), "test_days": data.test_days,
              "n_bars": data.synthetic_bars}
    for strength in plan["strengths"]:
        runs = sorted((r for r in records.values()
                       if r["kind"] == "planted" and r["strength"] == strength),
                      key=lambda r: r["data_seed"])
        claims: dict[int, bool] = {}  # the oracle's, by market seed: each simulated once
        out["planted"][f"{strength:g}"] = {
            "strength": strength, "oracle_sharpe": planted_oracle_sharpe(strength),
            "runs": runs, "power": rate_summary([r["claims_edge"] for r in runs]),
            # the ceiling: the cost-free long/flat oracle judged by the same verdict, on the
            # runs' own markets and on many more
            "oracle_power": oracle_power(strength, range(oracle_markets), **market,
                                         known=claims),
            "oracle_power_same_markets": oracle_power(
                strength, [r["data_seed"] for r in runs], **market, known=claims),
            "median_p_value": _median([r["p_value"] for r in runs]),
            "median_sharpe_agent": _median([r["sharpe_agent"] for r in runs]),
            "median_sharpe_buy_and_hold": _median([r["sharpe_buy_and_hold"] for r in runs]),
        }
    return out


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.0f}%"


def _rate_cells(rate: dict[str, Any]) -> list[str]:
    ci = rate["ci"]
    return [f"{rate['count']} of {rate['n']}", _pct(rate["rate"]),
            "n/a" if ci is None else f"{_pct(ci[0])} to {_pct(ci[1])}"]


def _num(value: float | None, spec: str = "+.2f") -> str:
    return "n/a" if value is None else format(value, spec)


def _run_minutes(data: dict[str, Any]) -> str:
    """How long the runs took (older files: the invocation's wall time)."""
    cores = data["machine"].get("cores", "?")
    medians = data["results"].get("median_run_minutes")
    if not medians:
        return f"{data['wall_seconds'] / 60:.0f} min on {cores} cores."
    parts = ", ".join(f"{kind} {minutes:.0f} min" for kind, minutes in medians.items()
                      if minutes is not None)
    return (f"Median run: {parts} (wall time on {cores} cores, which a run may share with "
            "another worker or other work; runs resume across invocations, so no single "
            "wall time covers them).")


def _oracle_reading(entry: dict[str, Any]) -> str:
    """The planted row's ceiling: how often the same verdict finds the oracle's edge."""
    same, many = entry.get("oracle_power_same_markets"), entry.get("oracle_power")
    if same is None or many is None:
        return "share that finds the planted edge"
    return (f"ceiling: the cost-free long/flat oracle's edge is found on {same['count']} of "
            f"{same['n']} of these markets, {_pct(many['rate'])} of {many['n']} "
            f"({_pct(many['ci'][0])} to {_pct(many['ci'][1])})")


def markdown(data: dict[str, Any]) -> str:
    """The SUMMARY.md section (and the printed table)."""
    s = data["settings"]
    level = s["level"]
    lines = []
    if data.get("quick"):
        lines += [f"**Quick pass: {data['quick_note']}**", ""]
    extra = s.get("train_extra", [])
    overridden = ["--hidden"] * any(a.startswith("hidden_sizes") for a in extra)
    overridden += ["--timesteps"] * ("--timesteps" in extra)
    changed = f"{' and '.join(overridden)} changed; " if overridden else ""
    lines += [f"Default fastrl-train pipeline ({changed}preset {s['preset']}, network "
              f"{tuple(s['hidden_sizes'])}, {s['timesteps']:,} env steps with early stopping, "
              f"best-validation checkpoint, {s['test_days']} test days) on "
              f"{', '.join(s['symbols'])}; the verdict claims an edge when the one-sided p of the "
              f"mean active return <= {1 - level:.2f} (the trained rows: the claim recorded "
              "when they ran, by the paired bootstrap of the Sharpe difference before the "
              "mean-return test replaced it; the timer and oracle rows: the current test). "
              f"Rates with {CI_LEVEL:.0%} Clopper-Pearson intervals. {_run_minutes(data)}", ""]
    header = ["market", "runs with the claim", "rate", f"{CI_LEVEL:.0%} interval",
              "median p", "median test Sharpe agent / B&H", "reading"]
    rows = []
    null = data["results"]["null"]
    fp = null["false_positive"]
    if fp["n"]:
        reading = (f"target (<= {_pct(fp['nominal'])} nominal) "
                   f"{'met' if fp['target_met'] else 'NOT met'}")
    else:
        reading = "not run yet"
    rows.append(["null (block bootstrap): verdict claims an edge", *_rate_cells(fp),
                 _num(null["median_p_value"], ".2f"),
                 f"{_num(null['median_sharpe_agent'])} / "
                 f"{_num(null['median_sharpe_buy_and_hold'])}", reading])
    for key, entry in data["results"]["planted"].items():
        rows.append([f"planted {key} (long/short oracle Sharpe "
                     f"{entry['oracle_sharpe']:.1f}): power",
                     *_rate_cells(entry["power"]), _num(entry["median_p_value"], ".2f"),
                     f"{_num(entry['median_sharpe_agent'])} / "
                     f"{_num(entry['median_sharpe_buy_and_hold'])}", _oracle_reading(entry)])
    studies = data["results"]["studies"]
    study = s["study"]
    rows.append(["null studies: report says tuning helped (both presets)",
                 *_rate_cells(studies["tuning_helped"]), "-", "-",
                 f"any preset: {_rate_cells(studies['tuning_helped_any'])[0]}"])
    rows.append([f"null studies: DSR gate passes (> {DSR_GATE})",
                 *_rate_cells(studies["dsr_passes"]), "-", "-",
                 f"median DSR {_num(studies['median_dsr'], '.2f')}, "
                 f"PBO {_num(studies['median_pbo'], '.2f')}"])
    walkforward = data["results"].get("walkforward")
    wf_settings = s.get("walkforward")
    if walkforward and walkforward["false_positive"]["n"] and wf_settings:
        fp = walkforward["false_positive"]
        rows.append([f"null (block bootstrap) through fastrl-walkforward ({wf_settings['windows']}"
                     f" windows): pooled verdict claims an edge", *_rate_cells(fp),
                     _num(walkforward["median_p_value"], ".2f"),
                     f"{_num(walkforward['median_sharpe_agent'])} / "
                     f"{_num(walkforward['median_sharpe_buy_and_hold'])}",
                     f"target (<= {_pct(fp['nominal'])} nominal) "
                     f"{'met' if fp['target_met'] else 'NOT met'}"])
    timers = data["results"].get("zero_skill")
    if timers:
        from zero_skill import markdown_rows

        rows += markdown_rows(timers, _rate_cells)
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    if walkforward and walkforward["false_positive"]["n"] and wf_settings:
        lines += ["", f"Walk-forward null runs: {', '.join(s['symbols'])} resampled as above, "
                  f"fastrl-walkforward with its defaults but the last {wf_settings['windows']} "
                  f"windows of {wf_settings['step']} days before the test days, "
                  f"{wf_settings['timesteps']:,} env steps per window, network "
                  f"{tuple(wf_settings['hidden_sizes'])}; median run "
                  f"{_num(walkforward['median_run_minutes'], '.0f')} min."]
    if timers and s.get("zero_skill"):
        z = s["zero_skill"]
        spell = z["mean_spell_days"]
        lines += ["", "Zero-skill timers: no training; each draw is long or flat for random "
                  f"spells (geometric, mean {spell[0]:g} to {spell[1]:g} days), traded through "
                  "the library's backtest with the training config's costs and judged by the "
                  "report's verdict. 30-day rows: the last 30 days of a random pair of bundled "
                  "symbols cut at a random day, or of a null market. Walk-forward rows: a random "
                  f"pair (or a null market) from a random first day, at least "
                  f"{z['wf_min_years']:g} years traded window after window, the pooled verdict. "
                  "Real-bar draws overlap in time, so their intervals are too narrow. "
                  f"{z['seconds'] / 60:.0f} min for all draws on {data['machine'].get('cores')} "
                  "cores."]
    lines += ["", f"Studies: {study['trials']} trials x {study['timesteps']:,} env steps, "
              f"{study['folds']} fold, {study['confirm_seeds']} confirmation seeds (small on "
              "purpose). Null runs' agents held a mean position of "
              f"{_num(null['median_mean_position'], '.2f')} (median over runs). A block "
              "bootstrap keeps the drift and the dependence inside a block, so H0 holds in "
              "expectation only up to what a policy can time inside a block (see the bench's "
              "docstring).", ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="2 null markets, 1 tiny study, 1 planted market, small network")
    parser.add_argument("--null-markets", type=int, default=None, metavar="N",
                        help="null markets through fastrl-train (default 20)")
    parser.add_argument("--null-studies", type=int, default=None, metavar="N",
                        help="null markets through a small fastrl-tune study (default 5)")
    parser.add_argument("--planted-markets", type=int, default=None, metavar="N",
                        help=f"planted markets per strength (default {PLANTED_MARKETS})")
    parser.add_argument("--strengths", type=float, nargs="+", default=None,
                        help=f"planted signal strengths (default {' '.join(map(str, STRENGTHS))})")
    parser.add_argument("--hidden", type=int, nargs="+", default=None, metavar="UNITS",
                        help="override hidden_sizes (the full run uses fastrl-train's default)")
    parser.add_argument("--timesteps", type=int, default=None,
                        help="override fastrl-train's total_timesteps")
    parser.add_argument("--workers", type=int, default=1,
                        help="processes (default 1, using every core)")
    parser.add_argument("--fresh", action="store_true",
                        help="discard the records of an earlier invocation and start over")
    parser.add_argument("--walkforward-markets", type=int, default=None, metavar="N",
                        help="null markets through a small fastrl-walkforward (default "
                             f"{WALKFORWARD['markets']})")
    parser.add_argument("--timer-draws", type=int, default=None, metavar="N",
                        help="zero-skill timers per market kind for the 30-day verdict "
                             f"(default {TIMER_DRAWS})")
    parser.add_argument("--wf-timer-draws", type=int, default=None, metavar="N",
                        help="zero-skill timers per market kind for the walk-forward verdict "
                             f"(default {WF_TIMER_DRAWS})")
    parser.add_argument("--timers-only", action="store_true",
                        help="train nothing: redo the zero-skill rows (the verdict as it is "
                             "now) and the tables from the runs already recorded")
    args = parser.parse_args(argv)
    quick = args.quick
    args.null_markets = args.null_markets if args.null_markets is not None else (
        2 if quick else 20)
    args.null_studies = args.null_studies if args.null_studies is not None else (
        1 if quick else 5)
    args.planted_markets = args.planted_markets if args.planted_markets is not None else (
        1 if quick else PLANTED_MARKETS)
    args.strengths = args.strengths or ([0.2] if quick else list(STRENGTHS))
    defaults = {"walkforward_markets": (QUICK_WALKFORWARD if quick else WALKFORWARD)["markets"],
                "timer_draws": QUICK_TIMER_DRAWS if quick else TIMER_DRAWS,
                "wf_timer_draws": QUICK_WF_TIMER_DRAWS if quick else WF_TIMER_DRAWS}
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if quick:
        args.hidden = args.hidden or list(QUICK_HIDDEN)
        args.timesteps = args.timesteps or QUICK_TIMESTEPS
        args.fresh = True
    for name in ("null_markets", "null_studies", "planted_markets", "walkforward_markets",
                 "timer_draws", "wf_timer_draws"):
        if getattr(args, name) < 0:
            parser.error(f"--{name.replace('_', '-')} must be >= 0")
    if args.workers < 1:
        parser.error("--workers must be >= 1")
    if args.timers_only and quick:
        parser.error("--timers-only reuses recorded runs; a quick pass records none")
    return args


def make_plan(args: argparse.Namespace) -> dict[str, Any]:
    """Everything that decides a run's record; its hash is each record's signature."""
    from fastrl.config import DataConfig

    cores = os.cpu_count() or 1
    sets = []
    if args.hidden:
        sets.append(f"hidden_sizes={json.dumps(list(args.hidden))}")
    train_decisive = (["--timesteps", str(args.timesteps)] if args.timesteps else []) \
        + (["--set", *sets] if sets else [])
    tune_decisive = ["--set", *sets] if sets else []
    # the thread count never changes a result: it stays out of the signature, so records
    # are shared across --workers
    threads = [f"torch_threads={max(1, cores // args.workers)}"] if args.workers > 1 else []
    train_extra = _merge_set(train_decisive, threads) if threads else train_decisive
    tune_extra = _merge_set(tune_decisive, threads) if threads else tune_decisive
    decisive = {"level": LEVEL, "symbols": list(DataConfig().symbols),
                "train_extra": train_decisive, "tune_extra": tune_decisive,
                "study": QUICK_STUDY if args.quick else STUDY, "quick": args.quick}
    signature = hashlib.sha256(json.dumps(decisive, sort_keys=True).encode()).hexdigest()[:16]
    name = "calibration_quick" if args.quick else "calibration"
    return {**decisive, "strengths": list(args.strengths), "signature": signature,
            "train_extra": train_extra, "tune_extra": tune_extra,
            "work_dir": str(ROOT / "runs" / f"bench-{name.replace('_', '-')}"), "name": name}


def progress(records_dir: Path = RESULTS) -> str | None:
    """A line on the full run while it is under way (its records so far in ``records_dir``),
    or None when it has no records."""
    args = parse_args([])
    plan = make_plan(args)
    path = records_dir / f"{plan['name']}_runs.jsonl"
    records, _ = load_records(path, plan["signature"])
    keys = job_keys(args.null_markets, args.null_studies, args.planted_markets, args.strengths)
    if not any(k in records for k in keys):
        return None
    done = Counter(k.split("/")[0] for k in keys if k in records)
    total = Counter(k.split("/")[0] for k in keys)
    parts = ", ".join(f"{done[kind]} of {total[kind]} {kind}" for kind in total)
    line = (f"In progress: {sum(done.values())} of the {len(keys)} runs are recorded ({parts}) "
            f"in `bench/results/{path.name}`; `python bench/calibration.py` runs the rest "
            "(it resumes). The table appears when every run is in.")
    if done["null"] == total["null"]:  # the false-positive rate is final before the rest
        rate = rate_summary([records[k]["claims_edge"] for k in keys if k.startswith("null/")])
        low, high = (f"{100 * x:.1f}%" for x in rate["ci"])
        line += (f" The null markets are complete: {rate['count']} of {rate['n']} runs claim an "
                 f"edge, {_pct(rate['rate'])} (90% Clopper-Pearson interval {low} to {high}) "
                 f"against the nominal {_pct(1 - LEVEL)}.")
    return line


def results_dir(quick: bool) -> Path:
    """Where this invocation writes: a quick pass beside, never over, the full results."""
    if quick and not os.environ.get("FASTRL_BENCH_RESULTS"):
        return RESULTS / "quick"
    return RESULTS


def estimate_minutes(plan: dict[str, Any], keys: list[str], workers: int,
                     records: dict[str, dict[str, Any]] | None = None) -> str:
    """The time ``keys`` should take: per kind, the median seconds of its recorded runs
    (``records``), or the planning figure while it has none."""
    counts = Counter(k.split("/")[0] for k in keys)
    if plan["quick"]:
        return "about 3 minutes (quick)"
    if any(a.startswith("hidden_sizes") for a in plan["train_extra"]) or "--timesteps" in \
            plan["train_extra"]:
        return "unknown for this network/budget: see the per-run times below"
    per_run, source = {}, {}
    for kind, planned in RUN_MINUTES.items():
        seen = [r["seconds"] / 60 for r in (records or {}).values()
                if r.get("kind") == kind and r.get("seconds")]
        per_run[kind] = _median(seen) if seen else planned
        source[kind] = f"median of {len(seen)} recorded" if seen else "planned"
    minutes = sum(counts[k] * per_run[k] for k in per_run) * 2 / max(os.cpu_count() or 1, 2)
    parts = ", ".join(f"{counts[k]} {k} x ~{per_run[k]:.1f} min ({source[k]})"
                      for k in per_run if counts[k])
    return f"about {minutes / 60:.1f} h on 2 cores ({parts}; {workers} worker(s) share the cores)"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from fastrl import stats

    if stats.DEFAULT_LEVEL != LEVEL:
        raise SystemExit(f"fastrl.stats.DEFAULT_LEVEL is {stats.DEFAULT_LEVEL}, this bench "
                         f"assumes {LEVEL}: update LEVEL")
    plan = make_plan(args)
    out_dir = results_dir(args.quick)
    out_dir.mkdir(parents=True, exist_ok=True)
    records_path = out_dir / f"{plan['name']}_runs.jsonl"
    if args.fresh:
        records_path.unlink(missing_ok=True)
    records, skipped = load_records(records_path, plan["signature"])
    keys = job_keys(args.null_markets, args.null_studies, args.planted_markets, args.strengths)
    todo = [] if args.timers_only else [k for k in keys if k not in records]
    wf = walkforward_plan(args)
    wf_path = out_dir / f"{plan['name']}_walkforward_runs.jsonl"
    if args.fresh:
        wf_path.unlink(missing_ok=True)
    wf_records, wf_skipped = load_records(wf_path, wf["signature"])
    wf_keys = [f"walkforward/{i}" for i in range(wf["markets"])]
    wf_todo = [] if args.timers_only else [k for k in wf_keys if k not in wf_records]

    def log(line: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)

    log(f"calibration: {len(keys)} runs ({args.null_markets} null, {args.null_studies} null "
        f"studies, {args.planted_markets} planted x {len(args.strengths)} strengths); "
        f"{sum(k in records for k in keys)} already recorded in {records_path}"
        f"{f' ({skipped} lines of other settings ignored)' if skipped else ''}")
    if todo:
        log(f"expected time for the {len(todo)} to run: "
            f"{estimate_minutes(plan, todo, args.workers, records)}")
    started = time.perf_counter()
    done = 0

    def finished(record: dict[str, Any]) -> None:
        nonlocal done
        append_record(records_path, record)
        records[record["key"]] = record
        done += 1
        elapsed = time.perf_counter() - started
        eta = elapsed / done * (len(todo) - done)
        if record["kind"] == "study":
            what = f"{record['verdict']}; DSR {_num(record.get('dsr'), '.2f')}"
        else:
            what = (f"{record['reason']} after {record['updates']} updates, test Sharpe agent "
                    f"{_num(record['sharpe_agent'])} vs B&H "
                    f"{_num(record['sharpe_buy_and_hold'])}: {record['verdict']}")
        log(f"[{done}/{len(todo)}] {record['key']} ({record['seconds']:.0f} s): {what}; "
            f"ETA {eta / 60:.0f} min")

    if args.workers == 1:
        for key in todo:
            finished(run_job(key, plan))
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        context = multiprocessing.get_context("spawn")  # no torch state crosses a fork
        with ProcessPoolExecutor(args.workers, mp_context=context) as pool:
            futures = [pool.submit(run_job, key, plan) for key in todo]
            for future in as_completed(futures):
                finished(future.result())

    ignored = f", {wf_skipped} lines of other settings ignored" if wf_skipped else ""
    wf_done = sum(k in wf_records for k in wf_keys)
    log(f"walk-forward null markets: {len(wf_keys)} ({wf_done} already "
        f"recorded in {wf_path}{ignored}); {wf['windows']} windows of {wf['step']} days, "
        f"{wf['timesteps']:,} env steps each, "
        f"network {tuple(wf['hidden_sizes'])}")
    for number, key in enumerate(wf_todo, start=1):
        work = Path(plan["work_dir"]) / key.replace("/", "-")
        try:
            record = walkforward_null(int(key.split("/")[1]), wf, wf["symbols"], work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        record = {"key": key, "kind": "walkforward", "signature": wf["signature"], **record}
        append_record(wf_path, record)
        wf_records[key] = record
        log(f"[{number}/{len(wf_todo)}] {key} ({record['seconds']:.0f} s): {record['verdict']}")
    import zero_skill

    timer_counts = {"30d/real": args.timer_draws, "30d/null": args.timer_draws,
                    "wf/real": args.wf_timer_draws, "wf/null": args.wf_timer_draws}
    timers_started = time.perf_counter()
    draws = zero_skill.run_draws(timer_counts, log=log)
    timer_seconds = time.perf_counter() - timers_started
    payload = {
        "machine": machine_info(), "quick": args.quick,
        "quick_note": ("a plumbing check: 2 null markets, 1 tiny study and 1 planted market "
                       "with a small network and 2 updates, 1 tiny walk-forward and a few "
                       "zero-skill timers; the rates mean nothing at this size")
        if args.quick else None,
        "settings": {"level": LEVEL, "nominal_false_positive_rate": 1 - LEVEL,
                     "symbols": plan["symbols"], "preset": "fast",
                     "hidden_sizes": _hidden(args), "timesteps": _timesteps(args),
                     "test_days": _test_days(), "null_markets": args.null_markets,
                     "null_studies": args.null_studies,
                     "planted_markets": args.planted_markets, "strengths": args.strengths,
                     "study": plan["study"], "train_extra": plan["train_extra"],
                     "tune_extra": plan["tune_extra"], "workers": args.workers,
                     "dsr_gate": DSR_GATE, "records": str(records_path),
                     "signature": plan["signature"], "walkforward": wf,
                     "walkforward_records": str(wf_path), "zero_skill": {
                         "draws": timer_counts, "mean_spell_days": list(zero_skill.MEAN_SPELL),
                         "wf_min_years": zero_skill.WF_MIN_YEARS,
                         "seconds": timer_seconds}},
        "results": {**summarise({k: records[k] for k in keys if k in records},
                                {**plan, "level": LEVEL}),
                    "walkforward": summarise_walkforward(
                        [wf_records[k] for k in wf_keys if k in wf_records]),
                    "zero_skill": zero_skill.summarise(draws, 1.0 - LEVEL, rate_summary)},
        "wall_seconds": time.perf_counter() - started,
    }
    path = write_atomic(out_dir / f"{plan['name']}.json", payload)
    shutil.rmtree(plan["work_dir"], ignore_errors=True)  # every run is recorded
    print("\n" + markdown(payload))
    print(f"wrote {path}")
    return 0


def _hidden(args: argparse.Namespace) -> list[int]:
    if args.hidden:
        return list(args.hidden)
    from fastrl.config import TrainConfig

    return list(TrainConfig().hidden_sizes)


def _timesteps(args: argparse.Namespace) -> int:
    from fastrl.config import TrainConfig

    return args.timesteps or TrainConfig().total_timesteps


def _test_days() -> int:
    from fastrl.config import DataConfig

    return DataConfig().test_days


if __name__ == "__main__":
    sys.exit(main())
