"""Zero-skill timers: how often do fastrl's verdicts credit a policy that cannot know anything?

A timer holds flat or long (the env's lowest and highest position level) for spells of
random geometric length, mean ``U(MEAN_SPELL)`` days, ignoring every observation. It is
traded through the library's own backtest path with the training config's costs
(:func:`fastrl.markets.single.backtest.evaluate_agent` for the 30-day verdict; the walk-forward's
:func:`fastrl.walkforward.run.trade_record` and :func:`fastrl.walkforward.analysis.analyse`
for its pooled verdict), and judged by the verdict the report prints, so a change to
:mod:`fastrl.stats` changes these rates with no change here. No training: hundreds of
draws take minutes.

Each draw is one market and one timer:

- ``30d/real``: a random pair of the bundled daily symbols, cut at a random last day; its
  test split is the last ``test_days`` days (as fastrl-train's), backtested equal capital.
- ``30d/null``: a block-bootstrap null market of fastrl-train's default symbols
  (:func:`fastrl.data.synthetic.block_bootstrap`, the trained null runs' markets at other
  seeds), its test days.
- ``wf/real``: a random pair, walk-forward from a random first traded day (at least
  ``WF_MIN_YEARS`` traded), every window traded in turn with the holding carried over,
  pooled equal capital.
- ``wf/null``: a null market of the default symbols through the same walk-forward (a
  random first traded day, as for ``wf/real``).

A zero-skill timer has no edge over buy-and-hold in expectation (it is long about half
the time, pays costs, and a Sharpe ratio can only gain from timing by luck or by stepping
out of volatile stretches at random), so the share of draws whose verdict claims an edge
estimates the verdict's false-claim rate. Draws on real bars overlap in time (pairs share
days), so their claims are not independent: the interval is narrower than it should be.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any
from unittest import mock

import numpy as np
import pandas as pd

MEAN_SPELL = (5.0, 20.0)  # days: each timer's mean spell is uniform on this range
SEED_BASE = 7_000_000  # apart from the trained runs' bootstrap seeds (0..N-1, 1000+i)
MIN_HISTORY_BARS = 400  # bars a real 30-day draw keeps before its cut (features, warm-up)
WF_MIN_YEARS = 3.0  # a real walk-forward draw trades at least this many years
KINDS = ("30d/real", "30d/null", "wf/real", "wf/null")


class RandomTimer:
    """A policy of C env rows that ignores its observations: each row is long or flat for
    spells of geometric length with mean ``mean_spell`` steps (it switches with probability
    ``1 / mean_spell`` before every step; the first state is a fair coin). The state carries
    over from call to call, so a walk-forward's windows continue each row's spell."""

    def __init__(self, seed: int, env_config: Any) -> None:
        self.rng = np.random.default_rng(seed)
        self.mean_spell = float(self.rng.uniform(*MEAN_SPELL))
        if env_config.action == "discrete":
            levels = np.asarray(env_config.position_levels, dtype=np.float64)
            self.off, self.on = int(np.argmin(levels)), int(np.argmax(levels))
        else:
            self.off, self.on = float(max(env_config.min_pos, 0.0)), float(env_config.max_pos)
        self.state = np.zeros(0, dtype=bool)
        self.feature_normaliser: dict | None = None  # what a walk-forward trades it with

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        rows = int(np.asarray(obs).shape[0])
        switch = self.rng.random(self.state.shape[0]) < 1.0 / self.mean_spell
        self.state = self.state ^ switch
        if rows > self.state.shape[0]:  # first call, or a symbol joined the walk-forward
            self.state = np.concatenate([self.state,
                                         self.rng.random(rows - self.state.shape[0]) < 0.5])
        chosen = np.where(self.state[:rows], self.on, self.off)
        return chosen.astype(np.int64 if isinstance(self.on, int) else np.float64)

    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        return self(obs)


def sentence_claims(verdict: str) -> bool:
    """Whether a verdict sentence (:func:`fastrl.stats.verdict`'s, as the report prints it)
    claims that the agent beats the benchmark."""
    return " beats " in verdict and not verdict.startswith(("no evidence", "too few"))


def default_config() -> Any:
    """The fast preset's config (fastrl-train's with no flags when this bench ran; the
    anchored default has the same costs, window and test days)."""
    from fastrl.config import build_config

    return build_config("fast", None, {}, [])


def _judged(p_value: float | None, verdict: str, **extra: Any) -> dict[str, Any]:
    return {"p_value": None if p_value is None or not np.isfinite(p_value) else float(p_value),
            "verdict": verdict, "claims_edge": sentence_claims(verdict), **extra}


# ----------------------------------------------------------------------------- 30-day verdict


def _thirty_days(bars: dict[str, pd.DataFrame], config: Any, seed: int) -> dict[str, Any]:
    """One timer on the test split fastrl-train would hold out of ``bars``."""
    from fastrl.data.splits import build_market_from_bars
    from fastrl.markets.single.backtest import evaluate_agent
    from fastrl.strategies import COMBINED

    market = build_market_from_bars(bars, config.data.freq, test_days=config.data.test_days,
                                    val_days=0, window=config.env.window,
                                    source="zero-skill timer")
    timer = RandomTimer(seed, config.env)
    result = evaluate_agent(timer, market.test, config.env)
    judged = result.uncertainty(COMBINED)
    versus = judged.vs_buy_and_hold
    return _judged(versus.p_value, judged.verdict, n=int(versus.n),
                   sharpe_agent=float(versus.sharpe_agent),
                   sharpe_buy_and_hold=float(versus.sharpe_bench),
                   mean_spell=timer.mean_spell)


def real_pair(real: dict[str, pd.DataFrame], rng: np.random.Generator,
              min_bars: int) -> tuple[list[str], pd.Timestamp]:
    """A random pair of symbols and a random last day with ``min_bars`` of both before it."""
    symbols = sorted(real)
    while True:
        pair = sorted(rng.choice(symbols, size=2, replace=False).tolist())
        days = real[pair[0]].index.intersection(real[pair[1]].index)
        if len(days) > min_bars:
            return pair, days[int(rng.integers(min_bars, len(days)))]


def draw_30d_real(real: dict[str, pd.DataFrame], config: Any, index: int) -> dict[str, Any]:
    rng = np.random.default_rng([SEED_BASE, 1, index])
    pair, last = real_pair(real, rng, MIN_HISTORY_BARS + config.data.test_days)
    # the timer ignores features: only the bars near the cut are featurised
    bars = {s: real[s].loc[:last].iloc[-(MIN_HISTORY_BARS + config.data.test_days):]
            for s in pair}
    return {"symbols": pair, "last_day": str(last.date()),
            **_thirty_days(bars, config, int(rng.integers(2**31)))}


def draw_30d_null(config: Any, index: int) -> dict[str, Any]:
    from fastrl.data.synthetic import block_bootstrap

    seed = SEED_BASE + index
    bars = block_bootstrap(symbols=list(config.data.symbols), seed=seed)
    return {"symbols": list(config.data.symbols), "data_seed": seed,
            **_thirty_days(bars, config, seed)}


# ----------------------------------------------------------------------------- walk-forward


def walkforward_spec(start: str | None = None) -> Any:
    """fastrl-walkforward's protocol with its defaults (quarterly retraining, the data's
    test days held out), late listings joining as they become tradable."""
    from fastrl.walkforward.plan import WalkForwardSpec

    return WalkForwardSpec(start=start, late_listings="join")


def _walkforward(bars: dict[str, pd.DataFrame], config: Any, spec: Any,
                 seed: int) -> dict[str, Any]:
    """One timer traded window after window as fastrl-walkforward trades its policies
    (:func:`trade_record` with the timer standing in for every window's frozen agent), then
    the report's pooled verdict (:func:`analyse`)."""
    from fastrl.walkforward import analysis
    from fastrl.walkforward import run as wf_run
    from fastrl.walkforward.plan import plan_windows

    freq = config.data.freq
    windows = plan_windows(bars, spec, freq)
    spec = spec.resolved(freq)
    config = dataclasses.replace(config, data=dataclasses.replace(
        config.data, symbols=tuple(bars), test_days=spec.test_days))
    timer = RandomTimer(seed, config.env)
    # the features the timer is traded on never change what it does; a fitted normaliser
    # only lets the trade blocks be built as for a trained window
    timer.feature_normaliser = wf_run.train_market(bars, windows[0], config,
                                                   spec).normaliser.state_dict()
    with mock.patch.object(wf_run, "build_agent", lambda _config, policy: policy):
        record = wf_run.trade_record(config, bars, windows, [timer] * len(windows))
    # the report's pooled verdict as analyse() computes it (its other tables are skipped:
    # they cost twice as much and say nothing about the verdict)
    pool = analysis.pooled(record)
    pooled = analysis._comparison(pool["agent_return"].to_numpy(), pool["bh_return"].to_numpy(),
                                  freq)
    return _judged(pooled["versus"]["p_value"], pooled["verdict"], n=int(pooled["days"]),
                   windows=len(windows), first_traded=windows[0].first_traded,
                   last_traded=windows[-1].last_traded,
                   sharpe_agent=pooled["agent"]["sharpe"],
                   sharpe_buy_and_hold=pooled["buy_and_hold"]["sharpe"],
                   mean_spell=timer.mean_spell)


def _wf_draw(bars: dict[str, pd.DataFrame], config: Any, rng: np.random.Generator
             ) -> dict[str, Any]:
    """A random first traded day with the walk-forward's history before it and at least
    ``WF_MIN_YEARS`` of days after it on the symbols' common calendar, then one timer."""
    from fastrl.metrics import periods_per_year

    spec = walkforward_spec().resolved(config.data.freq)
    history = spec.min_train_days + spec.val_days + spec.embargo
    traded = spec.test_days + int(WF_MIN_YEARS * periods_per_year(config.data.freq))
    symbols = list(bars)
    days = bars[symbols[0]].index
    for symbol in symbols[1:]:
        days = days.intersection(bars[symbol].index)
    start = str(days[int(rng.integers(history, len(days) - traded))].date())
    return {"symbols": symbols, "start": start,
            **_walkforward(bars, config, walkforward_spec(start), int(rng.integers(2**31)))}


def draw_wf_real(real: dict[str, pd.DataFrame], config: Any, index: int) -> dict[str, Any]:
    from fastrl.metrics import periods_per_year

    rng = np.random.default_rng([SEED_BASE, 2, index])
    spec = walkforward_spec().resolved(config.data.freq)
    need = (spec.min_train_days + spec.val_days + spec.embargo + spec.test_days
            + int(WF_MIN_YEARS * periods_per_year(config.data.freq)))
    pair, _ = real_pair(real, rng, need)
    return _wf_draw({s: real[s] for s in pair}, config, rng)


def draw_wf_null(config: Any, index: int) -> dict[str, Any]:
    from fastrl.data.synthetic import block_bootstrap

    seed = SEED_BASE + 100_000 + index
    bars = block_bootstrap(symbols=list(config.data.symbols), seed=seed)
    return {"data_seed": seed, **_wf_draw(bars, config, np.random.default_rng(seed))}


# ----------------------------------------------------------------------------- the rows


def run_draws(counts: dict[str, int], log: Callable[[str], None] = print,
              config: Any = None) -> dict[str, list[dict[str, Any]]]:
    """``counts[kind]`` draws of each kind in :data:`KINDS` (draw i of a kind is the same
    market and timer on every call)."""
    import time

    from fastrl.data.loaders import available, load_bars

    unknown = set(counts) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown zero-skill kinds {sorted(unknown)}; known: {KINDS}")
    config = config or default_config()
    real = None
    if counts.get("30d/real") or counts.get("wf/real"):
        real = load_bars(available(config.data.freq), config.data.freq, config.data.source)
    makers: dict[str, Callable[[int], dict[str, Any]]] = {
        "30d/real": lambda i: draw_30d_real(real, config, i),
        "30d/null": lambda i: draw_30d_null(config, i),
        "wf/real": lambda i: draw_wf_real(real, config, i),
        "wf/null": lambda i: draw_wf_null(config, i),
    }
    out: dict[str, list[dict[str, Any]]] = {}
    for kind in KINDS:
        n = int(counts.get(kind, 0))
        started = time.perf_counter()
        out[kind] = [makers[kind](i) for i in range(n)]
        if n:
            claims = sum(d["claims_edge"] for d in out[kind])
            log(f"zero-skill {kind}: {claims} of {n} draws claim an edge "
                f"({time.perf_counter() - started:.0f} s)")
    return out


def summarise(draws: dict[str, list[dict[str, Any]]], nominal: float,
              rate: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    """Per kind: the claim rate (``rate``, :func:`calibration.rate_summary`) against
    ``nominal``, the median p-value and the median mean spell."""
    out = {}
    for kind, rows in draws.items():
        p = sorted(r["p_value"] for r in rows if r["p_value"] is not None)
        out[kind] = {"claims": rate([r["claims_edge"] for r in rows], nominal=nominal),
                     "median_p_value": p[len(p) // 2] if p else None,
                     "median_mean_spell": float(np.median([r["mean_spell"] for r in rows]))
                     if rows else None,
                     "draws": rows}
    return out


def _median(values: Sequence[float | None]) -> float | None:
    finite = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.median(finite)) if finite else None


def markdown_rows(summary: dict[str, Any], cells: Callable[[dict[str, Any]], Sequence[str]]
                  ) -> list[list[str]]:
    """Rows for the calibration table (``cells``: :func:`calibration._rate_cells`)."""
    names = {"30d/real": "zero-skill timer, real bars: 30-day verdict claims an edge",
             "30d/null": "zero-skill timer, null markets: 30-day verdict claims an edge",
             "wf/real": "zero-skill timer, real bars: walk-forward pooled verdict claims an edge",
             "wf/null": "zero-skill timer, null markets: walk-forward pooled verdict claims "
                        "an edge"}
    rows = []
    for kind in KINDS:
        entry = summary.get(kind)
        if not entry or not entry["claims"]["n"]:
            continue
        claims = entry["claims"]
        met = "met" if claims["target_met"] else "NOT met"
        p = entry["median_p_value"]
        sharpe = [_median([r.get(key) for r in entry["draws"]])
                  for key in ("sharpe_agent", "sharpe_buy_and_hold")]
        rows.append([names[kind], *cells(claims), "n/a" if p is None else f"{p:.2f}",
                     " / ".join("n/a" if v is None else f"{v:+.2f}" for v in sharpe),
                     f"target (<= {100 * claims['nominal']:.0f}% nominal) {met}"])
    return rows
