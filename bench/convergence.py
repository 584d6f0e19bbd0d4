"""Learning speed: env steps and wall seconds until the validation Sharpe first reaches a
target, "fast" preset against "baseline", several seeds each, on two markets.

    python bench/convergence.py [--quick] [--seeds N] [--timesteps N] [--markets planted,real]
                                [--hidden 64,64] [--torch-threads 1|2]

Every PPO update (8,192 env steps: both presets roll out 64 envs x 128 steps) ends with a
deterministic backtest on the market's validation slice (every validation segment from its
first bar to its end, as the trainer's validation does); its mean annualised Sharpe is the
learning curve. Markets:

- ``planted``: the planted-signal synthetic market, 4 symbols x 10,000 daily bars, signal
  strength 0.2 (corr(signal_t, return_{t+1}) = 0.2, analytic oracle Sharpe 2.57), no
  costs, window 8, 500 validation and 250 test days. Target: 80% of the oracle's Sharpe on
  the validation slice (the oracle holds sign(signal_t) over bar t+1 and is run through the
  same simulator and Sharpe, so target and agent share the slice's sampling noise).
  Also reported: 50%, 60% and 70% of it.
- ``real``: BPCL + HDFCLIFE daily bars, NSE delivery costs, the env defaults (window 32,
  252-bar episodes, next-open fills), 250 validation and 120 test days. Target: a
  validation Sharpe of 0.5 (also reported: 0 and 1.0).

Each run's budget is the presets' own ``total_timesteps`` (200,000: 24 updates, 196,608 env
steps), so the fast preset's cosine learning-rate decay runs as shipped; ``--timesteps``
changes it for both presets (and stretches that decay). 10 seeds per preset by default.

Both presets use the same CPU-sized network (``--hidden``, default (64, 64)) instead of
their large default networks; every other preset difference (learning-rate schedule,
entropy and clip schedules, value coefficient, gradient clip, epochs, optimiser) is kept.
Early stopping is off (patience 0) so each run uses its whole budget. The best-validation
checkpoint of each run is then backtested on the held-out test days with
``fastrl.evaluate.evaluate_agent``, beside buy-and-hold; its combined test Sharpe comes with
the error bars every report prints (``EvalResult.uncertainty``: Lo/Mertens standard error,
90% stationary-bootstrap interval, PSR, and the paired bootstrap probability that the
agent's Sharpe beats buy-and-hold's on the same days), per run and as medians over seeds.

Seed ``i`` of "fast" and of "baseline" train on the same market with the same seed; the
ratio baseline/fast of steps (and wall and CPU seconds) to each threshold is reported per
seed pair (a bound when one side did not reach it within its budget) and as a ratio of
upper medians with a bootstrap interval over seeds. Wall seconds include the validations
and depend on other load on the machine; CPU seconds (this process) depend on it less.
Trainings run one at a time. Writes ``bench/results/convergence.json`` (``--quick``:
``convergence_quick.json``) and one PNG of learning curves with seed bands per market.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import RESULTS, machine_info, write_json  # noqa: E402

PRESETS = ("fast", "baseline")
MARKETS = ("planted", "real")
ROLLOUT = 64 * 128  # both presets' num_envs x num_steps: one update, one validation

PLANTED_SIGNAL_STRENGTH = 0.2  # corr(signal_t, return_{t+1}); analytic oracle Sharpe 2.57
PLANTED_SYMBOLS = 4
PLANTED_BARS = 10_000  # per symbol: enough training bars that memorising them does not pay
PLANTED_WINDOW = 8
PLANTED_VAL_DAYS = 500
PLANTED_TEST_DAYS = 250
PLANTED_TARGET_FRACTION = 0.8
PLANTED_FRACTIONS = (0.5, 0.6, 0.7, 0.8)  # of the oracle's validation Sharpe

REAL_SYMBOLS = ("BPCL", "HDFCLIFE")
REAL_VAL_DAYS = 250
REAL_TEST_DAYS = 120
REAL_TARGET_SHARPE = 0.5
REAL_LEVELS = (0.0, 0.5, 1.0)

QUICK_TIMESTEPS = 2 * ROLLOUT
DEFAULT_SEEDS = 10
TEST_METRICS = ("sharpe", "total_return", "max_drawdown", "num_trades")
BEATS_LEVEL = 0.9  # a run "beats buy-and-hold" when its one-sided p-value is <= 1 - this


# ----------------------------------------------------------------------- pure helpers


def first_reach(steps: Sequence[float], values: Sequence[float | None],
                target: float) -> int | None:
    """Index of the first point whose value is >= ``target`` (None/NaN never reach); None
    when no point does. ``steps`` must rise strictly, so "first" is well defined."""
    if len(steps) != len(values):
        raise ValueError(f"steps ({len(steps)}) and values ({len(values)}) differ in length")
    if len(steps) > 1 and np.any(np.diff(np.asarray(steps, dtype=np.float64)) <= 0):
        raise ValueError("steps must rise strictly")
    if not math.isfinite(target):
        raise ValueError(f"target must be finite, got {target!r}")
    for index, value in enumerate(values):
        if value is not None and math.isfinite(value) and value >= target:
            return index
    return None


def seed_band(curves: Sequence[tuple[Sequence[float], Sequence[float | None]]]
              ) -> dict[str, np.ndarray]:
    """Median, quartiles, min and max across seeds at every step any curve has.

    Each curve is (steps, values); a step a curve lacks (or a None/NaN value) is left out
    of that step's statistics, and ``count`` says how many seeds each step holds.
    """
    if not curves:
        raise ValueError("seed_band needs at least one curve")
    grid = np.unique(np.concatenate([np.asarray(s, dtype=np.float64) for s, _ in curves]))
    table = np.full((len(curves), grid.shape[0]), np.nan)
    for row, (steps, values) in enumerate(curves):
        if len(steps) != len(values):
            raise ValueError(f"curve {row}: {len(steps)} steps but {len(values)} values")
        columns = np.searchsorted(grid, np.asarray(steps, dtype=np.float64))
        table[row, columns] = [np.nan if v is None else float(v) for v in values]
    count = np.sum(np.isfinite(table), axis=0)
    band = {"steps": grid, "count": count}
    for name, quantile in (("min", 0.0), ("q25", 0.25), ("median", 0.5), ("q75", 0.75),
                           ("max", 1.0)):
        stat = np.full(grid.shape[0], np.nan)
        for column in np.flatnonzero(count):
            stat[column] = np.quantile(table[np.isfinite(table[:, column]), column], quantile)
        band[name] = stat
    return band


def paired_ratios(fast: Sequence[float | None], baseline: Sequence[float | None],
                  fast_budgets: Sequence[float], baseline_budgets: Sequence[float]
                  ) -> list[dict[str, Any]]:
    """Per seed pair, baseline/fast of the steps (or seconds) to a target; None: not reached.

    A run that did not reach the target within its budget (the steps or seconds it ran)
    only bounds the ratio. ``kind`` is "exact" when both reached; "lower" when only fast
    reached (ratio > baseline budget / fast); "upper" when only the baseline reached
    (ratio < baseline / fast budget); "none" when neither did.
    """
    lengths = {len(fast), len(baseline), len(fast_budgets), len(baseline_budgets)}
    if len(lengths) != 1:
        raise ValueError(f"paired_ratios needs one value per seed on each side, got "
                         f"{len(fast)} fast, {len(baseline)} baseline, {len(fast_budgets)} "
                         f"and {len(baseline_budgets)} budgets")
    if any(b <= 0 for b in [*fast_budgets, *baseline_budgets]):
        raise ValueError("budgets must be positive")
    pairs = []
    for f, b, f_budget, b_budget in zip(fast, baseline, fast_budgets, baseline_budgets,
                                        strict=True):
        if f is not None and b is not None:
            pairs.append({"ratio": b / f, "kind": "exact"})
        elif f is not None:
            pairs.append({"ratio": b_budget / f, "kind": "lower"})
        elif b is not None:
            pairs.append({"ratio": b / f_budget, "kind": "upper"})
        else:
            pairs.append({"ratio": None, "kind": "none"})
    return pairs


def upper_median(values: Sequence[float | None]) -> float:
    """The ``n // 2``-th smallest value (0-based), "not reached" (None) ranked last as inf.

    For censored data the upper median is the honest one: it is finite only when more
    than half of the runs reached the target, and never averages a value with infinity.
    """
    if len(values) == 0:
        raise ValueError("median of no values")
    ordered = np.sort(_as_censored(values))
    return float(ordered[len(ordered) // 2])


def ratio_of_medians(fast_steps: Sequence[float | None], baseline_steps: Sequence[float | None],
                     *, resamples: int = 2000, seed: int = 0) -> dict[str, Any]:
    """upper_median(baseline) / upper_median(fast), with a 90% bootstrap interval.

    A run that never reached the target counts as infinitely slow, so a median that is
    "not reached" gives an infinite (baseline) or zero (fast) ratio rather than a flattering
    finite one; both medians not reached is undefined (None). Seeds are resampled
    independently within each preset; ``undefined_share`` is the share of resamples where
    neither median was reached (left out of the interval).
    """
    fast = _as_censored(fast_steps)
    baseline = _as_censored(baseline_steps)
    if fast.size == 0 or baseline.size == 0:
        raise ValueError("ratio_of_medians needs at least one run of each preset")
    rng = np.random.default_rng(seed)
    fast_draws = np.sort(rng.choice(fast, size=(resamples, fast.size)), axis=1)
    baseline_draws = np.sort(rng.choice(baseline, size=(resamples, baseline.size)), axis=1)
    ratios = _safe_ratio(baseline_draws[:, baseline.size // 2], fast_draws[:, fast.size // 2])
    point = _safe_ratio(upper_median(baseline_steps), upper_median(fast_steps))
    defined = ratios[~np.isnan(ratios)]
    interval: list[float | str | None] = [None, None]
    if defined.size:
        low, high = np.quantile(defined, [0.05, 0.95], method="inverted_cdf")
        interval = [_json_number(float(low)), _json_number(float(high))]
    return {"ratio": _json_number(float(point)), "ci90": interval,
            "undefined_share": float(1.0 - defined.size / resamples)}


def _as_censored(steps: Sequence[float | None]) -> np.ndarray:
    return np.array([np.inf if s is None else float(s) for s in steps], dtype=np.float64)


def _safe_ratio(numerator: Any, denominator: Any) -> np.ndarray:
    """numerator / denominator where inf/inf (neither reached) is NaN, not a warning."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    both_inf = np.isinf(numerator) & np.isinf(denominator)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = numerator / denominator
    return np.where(both_inf, np.nan, ratio)


def _json_number(value: float) -> float | str | None:
    """JSON has no inf/NaN: infinities become "inf", NaN becomes None."""
    if math.isnan(value):
        return None
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def summarise_pairs(pairs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Median and range of the exact per-seed ratios, and how many pairs were censored."""
    exact = [p["ratio"] for p in pairs if p["kind"] == "exact"]
    lower = [p["ratio"] for p in pairs if p["kind"] == "lower"]
    upper = [p["ratio"] for p in pairs if p["kind"] == "upper"]
    return {
        "exact_n": len(exact),
        "exact_median": float(np.median(exact)) if exact else None,
        "exact_min": float(min(exact)) if exact else None,
        "exact_max": float(max(exact)) if exact else None,
        "lower_bounds": sorted(lower),  # only fast reached: ratio above each of these
        "upper_bounds": sorted(upper),  # only baseline reached: ratio below each of these
        "neither": sum(p["kind"] == "none" for p in pairs),
    }


def format_ratio_summary(summary: dict[str, Any], slow: str = "baseline",
                         quick: str = "fast") -> str:
    """One line: 'median 3.1x (range 2.0-4.4, 3 exact), 2 pairs >= 5.2x, ...' for the
    ratio ``slow / quick`` (the names say which run of a pair did not reach the target)."""
    def pairs(n: int) -> str:
        return f"{n} pair" if n == 1 else f"{n} pairs"

    parts = []
    if summary["exact_n"]:
        parts.append(f"median {summary['exact_median']:.2f}x (range {summary['exact_min']:.2f}-"
                     f"{summary['exact_max']:.2f}, {pairs(summary['exact_n'])})")
    if summary["lower_bounds"]:
        bounds = ", ".join(f"{b:.2f}" for b in summary["lower_bounds"])
        parts.append(f"{pairs(len(summary['lower_bounds']))} {slow} not reached "
                     f"(> {bounds}x)")
    if summary["upper_bounds"]:
        bounds = ", ".join(f"{b:.2f}" for b in summary["upper_bounds"])
        parts.append(f"{pairs(len(summary['upper_bounds']))} {quick} not reached "
                     f"(< {bounds}x)")
    if summary["neither"]:
        parts.append(f"{pairs(summary['neither'])} neither reached")
    return "; ".join(parts) if parts else "no runs"



def time_to(curve: dict[str, Sequence], target: float) -> tuple[int | None, float | None]:
    """(env steps, wall seconds) at the first validation reaching ``target``, or (None, None).

    ``curve`` holds parallel lists "steps", "seconds" and "val_sharpe" (None where no
    validation ran).
    """
    index = first_reach(curve["steps"], curve["val_sharpe"], target)
    if index is None:
        return None, None
    return int(curve["steps"][index]), float(curve["seconds"][index])


# --------------------------------------------------------------------------- markets


@dataclass
class Threshold:
    """A validation Sharpe level; the primary one is the benchmark's stated target."""

    label: str
    value: float
    primary: bool = False


@dataclass
class MarketSetup:
    """One market of the benchmark: its data splits, shared settings and thresholds."""

    name: str
    description: str
    splits: Any  # fastrl.data.MarketSplits
    overrides: dict[str, Any]  # TrainConfig keys both presets share on this market
    thresholds: list[Threshold]
    references: dict[str, float] = field(default_factory=dict)  # oracle, buy-and-hold

    @property
    def target(self) -> Threshold:
        return next(t for t in self.thresholds if t.primary)


def planted_market(seed: int = 0) -> MarketSetup:
    """Planted-signal market; target = 80% of the oracle's Sharpe on the validation slice."""
    from fastrl.data import build_synthetic_market

    splits = build_synthetic_market(
        kind="planted_signal", n_symbols=PLANTED_SYMBOLS, n_bars=PLANTED_BARS,
        test_days=PLANTED_TEST_DAYS, val_days=PLANTED_VAL_DAYS, window=PLANTED_WINDOW,
        seed=seed, signal_strength=PLANTED_SIGNAL_STRENGTH,
    )
    overrides = {"env.window": PLANTED_WINDOW, "env.cost": "zero", "data.source": "synthetic",
                 "data.symbols": list(splits.train.symbols), "data.freq": "1d",
                 "data.test_days": PLANTED_TEST_DAYS, "data.val_days": PLANTED_VAL_DAYS,
                 "data.synthetic_bars": PLANTED_BARS}
    env_config = _env_config(overrides)
    oracle = oracle_validation_sharpe(splits, env_config)
    thresholds = [
        Threshold(f"{fraction:.0%} of oracle", fraction * oracle,
                  primary=fraction == PLANTED_TARGET_FRACTION)
        for fraction in PLANTED_FRACTIONS
    ]
    return MarketSetup(
        name="planted",
        description=(f"planted signal (strength {PLANTED_SIGNAL_STRENGTH}), {PLANTED_SYMBOLS} "
                     f"symbols x {PLANTED_BARS} daily bars, window {PLANTED_WINDOW}, no costs, "
                     f"{PLANTED_VAL_DAYS} val / {PLANTED_TEST_DAYS} test days"),
        splits=splits,
        overrides=overrides,
        thresholds=thresholds,
        references={"oracle_val_sharpe": oracle,
                    "oracle_analytic_sharpe": float(splits.summary["oracle_sharpe"]),
                    "buy_and_hold_val_sharpe": buy_and_hold_validation_sharpe(splits,
                                                                              env_config)},
    )


def real_market() -> MarketSetup:
    """BPCL + HDFCLIFE daily bars with NSE delivery costs; target = validation Sharpe 0.5."""
    from fastrl.data import build_market

    splits = build_market(list(REAL_SYMBOLS), freq="1d", test_days=REAL_TEST_DAYS,
                          val_days=REAL_VAL_DAYS, window=32)
    overrides = {"data.symbols": list(REAL_SYMBOLS), "data.freq": "1d",
                 "data.test_days": REAL_TEST_DAYS, "data.val_days": REAL_VAL_DAYS}
    env_config = _env_config(overrides)
    thresholds = [Threshold(f"Sharpe {level:g}", level, primary=level == REAL_TARGET_SHARPE)
                  for level in REAL_LEVELS]
    return MarketSetup(
        name="real",
        description=(f"{' + '.join(REAL_SYMBOLS)} daily, NSE delivery costs, env defaults "
                     f"(window 32, 252-bar episodes), {REAL_VAL_DAYS} val / {REAL_TEST_DAYS} "
                     "test days"),
        splits=splits,
        overrides=overrides,
        thresholds=thresholds,
        references={"buy_and_hold_val_sharpe": buy_and_hold_validation_sharpe(splits,
                                                                              env_config)},
    )


def _env_config(overrides: dict[str, Any]) -> Any:
    from fastrl.config import apply_overrides, preset_config

    env = apply_overrides(preset_config("fast"), overrides).env
    env.validate()  # the cost changed: defaults that follow it (position levels) resolve again
    return env


def _validation_score(splits: Any, env_config: Any, policy: Any, strategy: str = "agent") -> float:
    """The trainer's validation score (markets.single.backtest: combined Sharpe after the final
    liquidation) of ``policy``, or of the buy-and-hold baseline beside it."""
    from fastrl.markets.single.backtest import evaluate_agent

    result = evaluate_agent(policy, splits.val, env_config, baselines=strategy != "agent")
    return float(result.combined[strategy].sharpe)


def oracle_validation_sharpe(splits: Any, env_config: Any) -> float:
    """Validation Sharpe of holding sign(signal_t) over bar t+1, through the simulator.

    Measured exactly like the trainer's validation, so the target shares the validation
    slice's sampling noise. The raw signal is positive exactly when its normalised feature
    (the last window row of the observation) exceeds -mean/std.
    """
    column = list(splits.feature_names).index("signal")
    threshold = -splits.normaliser.mean[column] / splits.normaliser.std[column]
    levels = list(env_config.position_levels)
    long_index, short_index = levels.index(1.0), levels.index(-1.0)
    latest = (env_config.window - 1) * splits.val.num_features + column

    def oracle(obs: np.ndarray) -> np.ndarray:
        return np.where(obs[:, latest] > threshold, long_index, short_index).astype(np.int64)

    return _validation_score(splits, env_config, oracle)


def buy_and_hold_validation_sharpe(splits: Any, env_config: Any) -> float:
    """Validation Sharpe of buy-and-hold (entry and exit costs paid), for context."""
    flat_index = list(env_config.position_levels).index(0.0)
    return _validation_score(splits, env_config,
                             lambda obs: np.full(len(obs), flat_index, np.int64),
                             strategy="buy_and_hold")


# ---------------------------------------------------------------------------- training


def shipped_timesteps() -> int:
    """The total_timesteps both presets ship with (the fast schedule decays over it)."""
    import dataclasses

    from fastrl.config import PRESETS as CONFIG_PRESETS
    from fastrl.config import TrainConfig

    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    values = {CONFIG_PRESETS[p].get("total_timesteps", defaults["total_timesteps"])
              for p in PRESETS}
    if len(values) != 1:
        raise ValueError(f"the presets ship different total_timesteps {sorted(values)}")
    return int(values.pop())


def run_config(preset: str, market: MarketSetup, seed: int, timesteps: int,
               hidden: tuple[int, ...], torch_threads: int, amp: bool = False) -> Any:
    """The preset with the CPU network and this market's settings; no other change."""
    from fastrl.config import apply_overrides, preset_config, validate_config

    config = preset_config(preset)
    apply_overrides(config, {
        **market.overrides,
        "hidden_sizes": list(hidden),
        "total_timesteps": timesteps,
        "seed": seed,
        "device": "cpu",
        "torch_threads": torch_threads,
        "amp": amp,
        "patience": 0,
        "val_every": 1,
        "checkpoint_every": 10**6,
    })
    validate_config(config)
    return config


def train_and_test(config: Any, market: MarketSetup) -> dict[str, Any]:
    """Train one run, record its validation curve, and backtest its best checkpoint."""
    from fastrl.markets.single.backtest import evaluate_agent
    from fastrl.ppo.checkpoint import load_agent
    from fastrl.ppo.trainer import Trainer

    curve: dict[str, list] = {"steps": [], "seconds": [], "cpu_seconds": [], "val_sharpe": []}
    cpu_start = [0.0]

    def on_update(row: dict[str, Any]) -> None:
        curve["steps"].append(int(row["global_step"]))
        curve["seconds"].append(float(row["elapsed"]))
        # CPU time of this process: less sensitive than wall time to other load on the machine
        curve["cpu_seconds"].append(time.process_time() - cpu_start[0])
        curve["val_sharpe"].append(row.get("val/sharpe"))

    with tempfile.TemporaryDirectory(prefix="fastrl-convergence-") as run_dir:
        trainer = Trainer(config, market=market.splits, run_dir=run_dir, callback=on_update)
        cpu_start[0] = time.process_time()
        result = trainer.train()
        agent = load_agent(Path(run_dir) / "checkpoints" / "best.pt", device="cpu")
        evaluation = evaluate_agent(agent, market.splits.test, config.env)
    reached = {}
    for threshold in market.thresholds:
        steps, seconds = time_to(curve, threshold.value)
        index = first_reach(curve["steps"], curve["val_sharpe"], threshold.value)
        reached[threshold.label] = {
            "steps": steps, "seconds": seconds,
            "cpu_seconds": None if index is None else curve["cpu_seconds"][index],
        }
    test = test_record(evaluation)
    return {
        "seed": config.seed,
        "steps_to_target": reached[market.target.label]["steps"],
        "seconds_to_target": reached[market.target.label]["seconds"],
        "reached": reached,
        "best_val_sharpe": result.best_val_sharpe,
        "final_val_sharpe": curve["val_sharpe"][-1] if curve["val_sharpe"] else None,
        "total_steps": result.global_step,
        "total_seconds": curve["seconds"][-1] if curve["seconds"] else None,
        "total_cpu_seconds": curve["cpu_seconds"][-1] if curve["cpu_seconds"] else None,
        "curve": curve,
        "test": test,
    }


def test_record(evaluation: Any) -> dict[str, Any]:
    """Combined test-day metrics of agent and buy-and-hold, each Sharpe with its error bars
    (``EvalResult.uncertainty``, the numbers the run report prints), and the paired
    probability that the agent's Sharpe beats buy-and-hold's on the same days."""
    from fastrl.strategies import COMBINED

    uncertainty = evaluation.uncertainty(COMBINED)
    test: dict[str, Any] = {}
    for strategy in ("agent", "buy_and_hold"):
        metrics = evaluation.metrics(COMBINED, strategy)
        errors = uncertainty.sharpe[strategy].as_dict()
        test[strategy] = {
            **{name: _json_number(float(getattr(metrics, name))) for name in TEST_METRICS},
            "sharpe_se": errors["se"],
            "sharpe_ci90": [errors["ci_low"], errors["ci_high"]],
            "psr": errors["psr"],
        }
    versus = uncertainty.vs_buy_and_hold.as_dict()
    test["vs_buy_and_hold"] = {"probability": versus["probability"],
                               "p_value": versus["p_value"], "verdict": uncertainty.verdict}
    return test


def format_test_sharpe(test: dict[str, Any], strategy: str = "agent") -> str:
    """'1.23 ± 0.45 [90% CI -0.10, 2.30], PSR 0.87' (the parts a record lacks are left out)."""
    record = test[strategy]
    text = f"{record['sharpe']:.2f}"
    if record.get("sharpe_se") is not None:
        text += f" ± {record['sharpe_se']:.2f}"
    low, high = record.get("sharpe_ci90") or (None, None)
    if low is not None and high is not None:
        text += f" [90% CI {low:.2f}, {high:.2f}]"
    if record.get("psr") is not None:
        text += f", PSR {record['psr']:.2f}"
    return text


def format_beats(test: dict[str, Any]) -> str:
    """'P(> buy & hold) 0.62 (p = 0.38)', or '' for a record without it."""
    versus = test.get("vs_buy_and_hold") or {}
    if versus.get("probability") is None:
        return ""
    return f"P(> buy & hold) {versus['probability']:.2f} (p = {versus['p_value']:.2f})"


def compare(runs: dict[str, list[dict[str, Any]]], label: str) -> dict[str, Any]:
    """baseline/fast of steps and seconds to one threshold, per seed pair and of medians."""
    comparison: dict[str, Any] = {}
    for unit in ("steps", "seconds", "cpu_seconds"):
        budget_key = f"total_{unit}"
        fast = [r["reached"][label][unit] for r in runs["fast"]]
        baseline = [r["reached"][label][unit] for r in runs["baseline"]]
        pairs = paired_ratios(fast, baseline, [r[budget_key] for r in runs["fast"]],
                              [r[budget_key] for r in runs["baseline"]])
        comparison[unit] = {
            "fast": fast,
            "baseline": baseline,
            "fast_upper_median": _json_number(upper_median(fast)),
            "baseline_upper_median": _json_number(upper_median(baseline)),
            "pairs": pairs,
            "summary": summarise_pairs(pairs),
            "ratio_of_medians": ratio_of_medians(fast, baseline),
        }
    return comparison


def run_market(market: MarketSetup, seeds: int, timesteps: int, hidden: tuple[int, ...],
               torch_threads: int, log: Any, amp: bool = False) -> dict[str, Any]:
    """Every preset x seed on one market, one training at a time, and the comparisons."""
    runs: dict[str, list[dict[str, Any]]] = {preset: [] for preset in PRESETS}
    for seed in range(seeds):
        for preset in PRESETS:  # interleaved, so a change in machine load hits both
            config = run_config(preset, market, seed, timesteps, hidden, torch_threads, amp)
            started = time.perf_counter()
            record = train_and_test(config, market)
            runs[preset].append(record)
            reached = (f"target at {record['steps_to_target']:,} steps / "
                       f"{record['seconds_to_target']:.0f} s"
                       if record["steps_to_target"] is not None else "target not reached")
            log(f"  {market.name:8s} {preset:8s} seed {seed}: {reached}; best val Sharpe "
                f"{record['best_val_sharpe']:.2f}; test Sharpe "
                f"{format_test_sharpe(record['test'])}, {format_beats(record['test'])}; "
                f"{time.perf_counter() - started:.0f} s")
    return {
        "description": market.description,
        "target": market.target.value,
        "target_rule": market.target.label,
        "thresholds": [{"label": t.label, "value": t.value, "primary": t.primary}
                       for t in market.thresholds],
        "references": market.references,
        "shared_overrides": market.overrides,
        "budget_steps": runs["fast"][0]["total_steps"],
        "runs": runs,
        "baseline_over_fast": {t.label: compare(runs, t.label) for t in market.thresholds},
        "test_summary": summarise_test_metrics(runs),
    }


def _spread(values: Sequence[Any]) -> dict[str, float] | None:
    numbers = [v for v in values if isinstance(v, float | int) and not isinstance(v, bool)]
    if not numbers:
        return None
    return {"median": float(np.median(numbers)), "min": float(min(numbers)),
            "max": float(max(numbers))}


def summarise_test_metrics(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Median and range over seeds of each preset's test metrics, beside buy-and-hold.

    Besides ``TEST_METRICS``: the Sharpe's standard error and PSR, the probability of
    beating buy-and-hold, and ``beats_buy_and_hold``, how many runs did so at
    ``BEATS_LEVEL`` confidence (None for records from before these were measured).
    """
    summary: dict[str, Any] = {}
    for preset, records in runs.items():
        summary[preset] = {}
        for name in (*TEST_METRICS, "sharpe_se", "psr"):
            summary[preset][name] = _spread([r["test"]["agent"].get(name) for r in records])
        p_values = [(r["test"].get("vs_buy_and_hold") or {}).get("p_value") for r in records]
        summary[preset]["prob_beats_buy_and_hold"] = _spread(
            [(r["test"].get("vs_buy_and_hold") or {}).get("probability") for r in records])
        measured = [p for p in p_values if p is not None]
        summary[preset]["beats_buy_and_hold"] = (
            {"runs": sum(p <= 1.0 - BEATS_LEVEL for p in measured), "of": len(measured),
             "level": BEATS_LEVEL} if measured else None)
    # buy-and-hold does not depend on the run: every run of a market backtests the same bars
    summary["buy_and_hold"] = dict(next(iter(runs.values()))[0]["test"]["buy_and_hold"])
    return summary


# ------------------------------------------------------------------------- reporting


def plot_market(name: str, result: dict[str, Any], hidden: tuple[int, ...], path: Path) -> None:
    """Validation Sharpe against env steps and wall seconds: median line, IQR and min-max."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"fast": "tab:blue", "baseline": "tab:orange"}
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for preset, records in result["runs"].items():
        band = seed_band([(r["curve"]["steps"], r["curve"]["val_sharpe"]) for r in records])
        seconds = seed_band([(r["curve"]["steps"], r["curve"]["seconds"]) for r in records])
        for axis, x in ((axes[0], band["steps"]), (axes[1], seconds["median"])):
            axis.fill_between(x, band["min"], band["max"], color=colours[preset], alpha=0.12,
                              linewidth=0)
            axis.fill_between(x, band["q25"], band["q75"], color=colours[preset], alpha=0.3,
                              linewidth=0)
            axis.plot(x, band["median"], color=colours[preset],
                      label=f"{preset}: median, IQR, min-max of {len(records)} seeds")
    for axis in axes:
        axis.axhline(result["target"], color="black", linestyle="--", linewidth=1,
                     label=f"target: {result['target_rule']}")
        for key, style, label in (("oracle_val_sharpe", "-.", "oracle (validation)"),
                                  ("buy_and_hold_val_sharpe", ":", "buy & hold (validation)")):
            if key in result["references"]:
                axis.axhline(result["references"][key], color="grey", linestyle=style,
                             linewidth=1, label=label)
        axis.set_ylabel("validation Sharpe (annualised)")
        axis.grid(alpha=0.3)
    axes[0].set_xlabel("env steps")
    axes[1].set_xlabel("wall seconds (median over seeds)")
    axes[0].legend(fontsize=7, loc="lower right")
    figure.suptitle(f"{name}: {result['description']}\nboth presets with network "
                    f"{tuple(hidden)}, CPU", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _finite_or_none(value: float) -> float | None:
    return None if math.isinf(value) else value


def format_ratio_of_medians(result: dict[str, Any], slow: str = "baseline",
                            quick: str = "fast preset") -> str:
    """'3.10x (90% CI 2.00x to inf)', or why the ratio is 0, infinite or undefined."""
    if result["ratio"] is None:
        return "undefined (neither median reached)"
    low, high = result["ci90"]
    interval = "" if low is None else f" (90% CI {_ratio_text(low)} to {_ratio_text(high)})"
    if result["ratio"] == "inf":
        return f"inf: the {slow}'s median not reached{interval}"
    if result["ratio"] == 0:
        return f"0: the {quick}'s median not reached{interval}"
    return f"{_ratio_text(result['ratio'])}{interval}"


def _ratio_text(value: float | str) -> str:
    return value if isinstance(value, str) else f"{value:.2f}x"


def _fmt(value: float | None, spec: str, missing: str = "not reached") -> str:
    return missing if value is None else format(value, spec)


def summary_table(results: dict[str, Any]) -> list[str]:
    """Console lines: per market, steps/seconds to each threshold, ratios, test metrics."""
    lines = []
    for market, result in results.items():
        lines.append(f"\n{market}: {result['description']}")
        lines.append(f"budget {result['budget_steps']:,} env steps per run; references: "
                     + ", ".join(f"{k} {v:.2f}" for k, v in result["references"].items()))
        lines.append(f"{'threshold':18s} {'Sharpe':>6s} {'preset':9s} {'reached':>7s} "
                     f"{'median steps':>12s} {'median s':>9s}  baseline/fast per seed pair")
        for threshold in result["thresholds"]:
            comparison = result["baseline_over_fast"][threshold["label"]]
            mark = " *" if threshold["primary"] else ""
            for preset in PRESETS:
                steps = comparison["steps"][preset]
                seconds = comparison["seconds"][preset]
                unit = "steps" if preset == "fast" else "seconds"
                medians = comparison[unit]["ratio_of_medians"]
                note = (f"  {unit}: {format_ratio_summary(comparison[unit]['summary'])}; "
                        f"ratio of medians {format_ratio_of_medians(medians)}")
                lines.append(
                    f"{threshold['label'] + mark:18s} {threshold['value']:>6.2f} {preset:9s} "
                    f"{sum(s is not None for s in steps):>3d}/{len(steps):<3d} "
                    f"{_fmt(_finite_or_none(upper_median(steps)), ',.0f'):>12s} "
                    f"{_fmt(_finite_or_none(upper_median(seconds)), '.1f', '-'):>9s}{note}")
        lines.append("(* the stated target; medians are upper medians, 'not reached' when "
                     "half or more of the seeds did not reach the threshold)")
        lines.append(f"{'test (best val ckpt)':21s} {'Sharpe':>16s} {'total return':>22s} "
                     f"{'max drawdown':>12s}  {'SE':>5s} {'PSR':>5s} {'P(>B&H)':>7s} "
                     f"beats B&H at {BEATS_LEVEL:.0%}  (medians over seeds)")
        for preset in PRESETS:
            test = result["test_summary"][preset]
            lines.append(
                f"{preset:21s} {test['sharpe']['median']:>6.2f} [{test['sharpe']['min']:5.2f},"
                f"{test['sharpe']['max']:5.2f}] {test['total_return']['median']:>8.2%} "
                f"[{test['total_return']['min']:6.1%},{test['total_return']['max']:6.1%}] "
                f"{test['max_drawdown']['median']:>12.2%}  "
                f"{_median_text(test.get('sharpe_se'), '.2f'):>5s} "
                f"{_median_text(test.get('psr'), '.2f'):>5s} "
                f"{_median_text(test.get('prob_beats_buy_and_hold'), '.2f'):>7s} "
                f"{_beats_text(test.get('beats_buy_and_hold'))}")
        bh = result["test_summary"]["buy_and_hold"]
        lines.append(f"{'buy & hold':21s} {bh['sharpe']:>6.2f} {'':15s} "
                     f"{bh['total_return']:>8.2%} {'':15s} {bh['max_drawdown']:>12.2%}  "
                     f"{_fmt(bh.get('sharpe_se'), '.2f', '-'):>5s} "
                     f"{_fmt(bh.get('psr'), '.2f', '-'):>5s}")
    return lines


def _median_text(spread: dict[str, float] | None, spec: str) -> str:
    return "-" if spread is None else format(spread["median"], spec)


def _range_text(spread: dict[str, float] | None, spec: str) -> str:
    if spread is None:
        return "-"
    return (f"{format(spread['median'], spec)} [{format(spread['min'], spec)}, "
            f"{format(spread['max'], spec)}]")


def _beats_text(beats: dict[str, Any] | None) -> str:
    return "-" if beats is None else f"{beats['runs']}/{beats['of']}"


def _steps_text(values: Sequence[float | None]) -> str:
    median = upper_median(values)
    reached = sum(v is not None for v in values)
    return f"{reached}/{len(values)}, " + ("not reached" if math.isinf(median)
                                          else f"{median:,.0f}")


def markdown_summary(payload: dict[str, Any]) -> str:
    """Markdown tables of a results payload (as written to convergence.json), for reports."""
    settings = payload["settings"]
    lines = [f"Learning speed, fast vs baseline: {settings['seeds']} seeds per preset, both "
             f"with network {tuple(settings['hidden_sizes'])} on CPU "
             f"({payload['machine'].get('cpu', '?')}, {payload['machine'].get('cores', '?')} "
             f"cores, {settings['torch_threads']} torch threads); `python bench/convergence.py`"
             f" ({payload['wall_seconds'] / 60:.0f} min)."]
    for name, result in payload["markets"].items():
        references = ", ".join(f"{k} {v:.2f}" for k, v in result["references"].items())
        lines += ["", f"**{name}**: {result['description']}; budget "
                      f"{result['budget_steps']:,} env steps per run; {references}.", "",
                  "| validation Sharpe threshold | fast: reached, median steps | "
                  "baseline: reached, median steps | baseline/fast steps, per seed | "
                  "ratio of medians (90% CI) | baseline/fast wall s, per seed |",
                  "|---|---|---|---|---|---|"]
        for threshold in result["thresholds"]:
            comparison = result["baseline_over_fast"][threshold["label"]]
            label = f"{threshold['label']} = {threshold['value']:.2f}"
            if threshold["primary"]:
                label = f"**{label} (target)**"
            lines.append(
                f"| {label} | {_steps_text(comparison['steps']['fast'])} | "
                f"{_steps_text(comparison['steps']['baseline'])} | "
                f"{format_ratio_summary(comparison['steps']['summary'])} | "
                f"{format_ratio_of_medians(comparison['steps']['ratio_of_medians'])} | "
                f"{format_ratio_summary(comparison['seconds']['summary'])} |")
        lines += ["", "| test days, best-validation checkpoint | Sharpe median [min, max] | "
                      "Sharpe SE, median | PSR median [min, max] | P(Sharpe > buy & hold) "
                      f"median [min, max] | runs beating buy & hold at {BEATS_LEVEL:.0%} | "
                      "total return median [min, max] |", "|---|---|---|---|---|---|---|"]
        tests = result["test_summary"]
        for preset in PRESETS:
            test = tests[preset]
            sharpe, total = test["sharpe"], test["total_return"]
            lines.append(f"| {preset} | {sharpe['median']:.2f} [{sharpe['min']:.2f}, "
                         f"{sharpe['max']:.2f}] | {_median_text(test.get('sharpe_se'), '.2f')} | "
                         f"{_range_text(test.get('psr'), '.2f')} | "
                         f"{_range_text(test.get('prob_beats_buy_and_hold'), '.2f')} | "
                         f"{_beats_text(test.get('beats_buy_and_hold'))} | "
                         f"{total['median']:.1%} [{total['min']:.1%}, {total['max']:.1%}] |")
        bh = tests["buy_and_hold"]
        low, high = bh.get("sharpe_ci90") or (None, None)
        interval = "" if low is None or high is None else f" (90% CI {low:.2f} to {high:.2f})"
        lines.append(f"| buy & hold | {bh['sharpe']:.2f}{interval} | "
                     f"{_fmt(bh.get('sharpe_se'), '.2f', '-')} | {_fmt(bh.get('psr'), '.2f', '-')}"
                     f" | - | - | {bh['total_return']:.1%} |")
        lines += ["", "Test Sharpes are of the equal-capital portfolio over the test days, "
                      "annualised; SE: Lo/Mertens standard error; PSR: probability that the "
                      "true Sharpe is above 0; P(Sharpe > buy & hold): paired stationary "
                      "bootstrap on the same days, per run (fastrl.stats via "
                      "EvalResult.uncertainty)."]
        if result.get("plot"):
            lines += ["", f"![{name} learning curves]({result['plot']})"]
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"2 seeds, {QUICK_TIMESTEPS:,} steps per run: a smoke check")
    parser.add_argument("--seeds", type=int, default=None,
                        help=f"seeds per preset (default {DEFAULT_SEEDS})")
    parser.add_argument("--timesteps", type=int, default=None,
                        help="env steps per run (default: the presets' own total_timesteps)")
    parser.add_argument("--markets", default=",".join(MARKETS),
                        help="comma-separated subset of: " + ", ".join(MARKETS))
    parser.add_argument("--hidden", default="64,64",
                        help="hidden layer sizes both presets use (default 64,64)")
    parser.add_argument("--torch-threads", type=int, default=2, choices=(1, 2))
    parser.add_argument("--amp", action="store_true",
                        help="bf16 autocast on CPU (results get a _bf16 suffix)")
    parser.add_argument("--from-json", type=Path, default=None, metavar="PATH",
                        help="train nothing: print the tables of a results file and redraw "
                             "its plots")
    args = parser.parse_args(argv)
    args.markets = [m.strip() for m in args.markets.split(",") if m.strip()]
    unknown = [m for m in args.markets if m not in MARKETS]
    if unknown or not args.markets:
        parser.error(f"--markets: unknown {unknown}; choose from {', '.join(MARKETS)}")
    try:
        args.hidden = tuple(int(h) for h in args.hidden.split(","))
    except ValueError:
        parser.error(f"--hidden needs comma-separated integers, got {args.hidden!r}")
    if not args.hidden or min(args.hidden) < 1:
        parser.error(f"--hidden needs positive sizes, got {args.hidden}")
    if args.seeds is None:
        args.seeds = 2 if args.quick else DEFAULT_SEEDS
    if args.seeds < 1:
        parser.error(f"--seeds must be >= 1, got {args.seeds}")
    if args.timesteps is not None and args.timesteps < ROLLOUT:
        parser.error(f"--timesteps must be at least one rollout ({ROLLOUT:,}), "
                     f"got {args.timesteps}")
    return args


def report_from_json(path: Path) -> None:
    """Print the console and markdown tables of a saved run and redraw its PNGs."""
    import json

    if not path.is_file():
        raise SystemExit(f"--from-json: no such file {path}")
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
        markets = payload["markets"]
        hidden = tuple(payload["settings"]["hidden_sizes"])
    except (ValueError, KeyError) as err:
        raise SystemExit(f"--from-json: {path} is not a convergence results file ({err})") from None
    for line in summary_table(markets):
        print(line)
    print("\n" + markdown_summary(payload))
    for name, result in markets.items():
        if result.get("plot"):
            plot_market(name, result, hidden, path.parent / result["plot"])


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.from_json is not None:
        report_from_json(args.from_json)
        return
    import torch

    torch.set_num_threads(args.torch_threads)
    suffix = ("_quick" if args.quick else "") + ("_bf16" if args.amp else "")
    results: dict[str, Any] = {}
    started = time.perf_counter()
    for name in args.markets:
        market = planted_market() if name == "planted" else real_market()
        timesteps = args.timesteps or (QUICK_TIMESTEPS if args.quick else shipped_timesteps())
        print(f"{name}: {market.description}; target {market.target.label} = "
              f"{market.target.value:.2f}; {args.seeds} seeds x {len(PRESETS)} presets x "
              f"{timesteps:,} steps, network {args.hidden}", flush=True)
        results[name] = run_market(market, args.seeds, timesteps, args.hidden,
                                   args.torch_threads, lambda line: print(line, flush=True),
                                   amp=args.amp)
        RESULTS.mkdir(parents=True, exist_ok=True)
        png = RESULTS / f"convergence_{name}{suffix}.png"
        plot_market(name, results[name], args.hidden, png)
        results[name]["plot"] = png.name
    payload = {
        "machine": machine_info(),
        "settings": {"seeds": args.seeds, "hidden_sizes": list(args.hidden),
                     "torch_threads": args.torch_threads, "quick": args.quick,
                     "amp_bf16": args.amp,
                     "presets": list(PRESETS), "early_stopping": "off (patience 0)",
                     "validation": "every update (8,192 env steps); the trainer's validation "
                                   "(markets.single.backtest): deterministic pass over every "
                                   "validation segment, position closed at the end, "
                                   "equal-capital combined annualised Sharpe",
                     "test_checkpoint": "best validation Sharpe (checkpoints/best.pt)"},
        "wall_seconds": time.perf_counter() - started,
        "markets": results,
    }
    for line in summary_table(results):
        print(line)
    path = write_json(f"convergence{suffix}", payload)
    print(f"\nwrote {path} and the PNGs beside it ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
