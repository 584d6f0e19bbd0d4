"""What a walk-forward record supports: error bars, multiple testing, costs, regimes, configs.

Every figure is computed from the record's per-bar returns (:func:`fastrl.walkforward.run.
trade_record`) with :mod:`fastrl.stats`, so the report, its JSON and the CLI print the same
numbers.

- **Per symbol**: the agent's and buy-and-hold's Sharpe with SE, 90% interval and PSR, and
  the agent's mean return over buy-and-hold with its one-sided p
  (:func:`fastrl.stats.prob_agent_beats`); the p-values are adjusted across symbols by Holm
  (family-wise) and Benjamini-Hochberg (false discovery rate, scipy's
  ``false_discovery_control``).
- **Pooled**: the equal-capital portfolio of the per-symbol agents against equal-capital
  buy-and-hold, rebalanced to equal capital every bar (the mean return of the symbols
  trading that bar), so a symbol that joins late neither dilutes nor dominates the rest.
- **Costs**: the same traded positions re-costed at other multiples of the cost model
  (charges, half-spread and slippage together, as the record paid them): each bar's
  return gets back ``(1 - m)`` times the costs it paid (first order: the positions and
  the notional stay those traded at 1x). The break-even multiple is where
  the agent's mean return over buy-and-hold reaches zero.
- **Regimes**: calendar years, rising against falling years (buy-and-hold's return that
  year), and terciles of the market's trailing volatility (known before the bar).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import false_discovery_control

from fastrl import stats
from fastrl.markets.portfolio.walkforward import PORTFOLIO
from fastrl.metrics import periods_per_year, sharpe_ratio

LEVEL = stats.DEFAULT_LEVEL
COST_MULTIPLES = (0.0, 0.5, 1.0, 2.0, 3.0)
VOL_LOOKBACK = 63  # bars of trailing volatility that define the regime terciles
ROLLING_YEAR = 252


def benjamini_hochberg(p_values: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (false discovery rate), via scipy."""
    p = np.asarray(p_values, dtype=float)
    return false_discovery_control(p, method="bh") if p.size else p


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def pooled(record: pd.DataFrame) -> pd.DataFrame:
    """Per bar: the mean agent and buy-and-hold return (and cost fraction) of the symbols
    trading that bar."""
    columns = ["agent_return", "bh_return", "cost_frac", "bh_cost_frac"]
    out = record.groupby("time", sort=True)[columns].mean()
    out["symbols"] = record.groupby("time", sort=True)["symbol"].count()
    return out


def _comparison(agent: np.ndarray, bench: np.ndarray, freq: str,
                cache: dict[bytes, Any] | None = None) -> dict[str, Any]:
    agent_stats = stats.sharpe_stats(agent, freq)
    # compared configs share buy-and-hold: its bootstrap interval is computed once
    key = bench.tobytes() + freq.encode()
    if cache is not None and key in cache:
        bench_stats = cache[key]
    else:
        bench_stats = stats.sharpe_stats(bench, freq)
        if cache is not None:
            cache[key] = bench_stats
    versus = stats.prob_agent_beats(agent, bench, freq)
    active = agent - bench
    return {"agent": agent_stats.as_dict(), "buy_and_hold": bench_stats.as_dict(),
            "versus": versus.as_dict(), "verdict": stats.verdict(versus),
            "days": int(agent.shape[0]),
            "agent_total_return": float(np.prod(1.0 + agent) - 1.0),
            "bh_total_return": float(np.prod(1.0 + bench) - 1.0),
            "active_annual_mean": float(np.mean(active) * periods_per_year(freq)),
            "active_sharpe": float(sharpe_ratio(active, freq))}


def cost_sensitivity(pool: pd.DataFrame, freq: str) -> dict[str, Any]:
    """The pooled record re-costed at :data:`COST_MULTIPLES` and the break-even multiple."""
    agent, bench = pool["agent_return"].to_numpy(), pool["bh_return"].to_numpy()
    cost_a, cost_b = pool["cost_frac"].to_numpy(), pool["bh_cost_frac"].to_numpy()
    rows = []
    for multiple in COST_MULTIPLES:
        a = agent + (1.0 - multiple) * cost_a
        b = bench + (1.0 - multiple) * cost_b
        versus = stats.prob_agent_beats(a, b, freq)
        rows.append({"multiple": multiple, "agent_sharpe": float(sharpe_ratio(a, freq)),
                     "bh_sharpe": float(sharpe_ratio(b, freq)),
                     "active_annual_mean": float(np.mean(a - b) * periods_per_year(freq)),
                     "p_value": _finite_or_none(versus.p_value)})
    edge, cost_gap = float(np.mean(agent - bench)), float(np.mean(cost_a - cost_b))
    if edge <= 0:
        breakeven, text = None, ("the agent has no edge over buy-and-hold to lose: its mean "
                                 "return is below buy-and-hold's at 1x costs")
    elif cost_gap <= 0:
        breakeven, text = math.inf, ("the agent pays no more in costs than buy-and-hold, so no "
                                     "cost multiple removes its edge")
    else:
        breakeven = 1.0 + edge / cost_gap
        text = (f"the agent's mean return over buy-and-hold is gone at {breakeven:.2f}x "
                "the cost model")
    return {"rows": rows, "breakeven_multiple": breakeven, "text": text}


def _regime_row(label: str, part: pd.DataFrame, freq: str) -> dict[str, Any]:
    a, b = part["agent_return"].to_numpy(), part["bh_return"].to_numpy()
    scale = periods_per_year(freq)
    return {"regime": label, "days": int(a.shape[0]),
            "agent_return": float(np.prod(1.0 + a) - 1.0),
            "bh_return": float(np.prod(1.0 + b) - 1.0),
            "agent_sharpe": float(sharpe_ratio(a, freq)) if a.shape[0] > 1 else math.nan,
            "bh_sharpe": float(sharpe_ratio(b, freq)) if b.shape[0] > 1 else math.nan,
            "active_annual_mean": float(np.mean(a - b) * scale)}


def regimes(pool: pd.DataFrame, freq: str) -> dict[str, list[dict[str, Any]]]:
    """Per calendar year, rising/falling years, and trailing-volatility terciles."""
    years = pool.index.year
    by_year = [_regime_row(str(year), pool[years == year], freq) for year in np.unique(years)]
    rising = {row["regime"] for row in by_year if row["bh_return"] >= 0}
    up = np.isin(years.astype(str), list(rising))
    direction = [_regime_row(label, pool[mask], freq)
                 for label, mask in (("rising years", up), ("falling years", ~up)) if mask.any()]
    # volatility known before the bar: the trailing window ends at the previous bar
    vol = pool["bh_return"].rolling(VOL_LOOKBACK, min_periods=20).std().shift(1)
    known = vol.notna().to_numpy()
    terciles = []
    if known.sum() >= 3:
        edges = np.quantile(vol[known], [1 / 3, 2 / 3])
        bucket = np.digitize(vol.to_numpy(), edges)
        for k, label in enumerate(("low volatility", "middle volatility", "high volatility")):
            mask = known & (bucket == k)
            if mask.any():
                terciles.append(_regime_row(label, pool[mask], freq))
    return {"years": by_year, "direction": direction, "volatility": terciles}


def rolling_sharpe(returns: pd.Series, freq: str, bars: int = ROLLING_YEAR) -> pd.Series:
    """Annualised Sharpe over the trailing ``bars`` bars (one year of days by default)."""
    mean = returns.rolling(bars).mean()
    std = returns.rolling(bars).std()
    return mean / std.where(std > 0) * math.sqrt(periods_per_year(freq))


def analyse(record: pd.DataFrame, freq: str,
            cache: dict[bytes, Any] | None = None) -> dict[str, Any]:
    """Everything the report states about one record (JSON-ready); ``cache`` keeps the
    buy-and-hold statistics for the next record on the same bars."""
    symbols = list(dict.fromkeys(record["symbol"]))
    per_symbol = {}
    for symbol in symbols:
        part = record[record["symbol"] == symbol]
        per_symbol[symbol] = _comparison(part["agent_return"].to_numpy(),
                                         part["bh_return"].to_numpy(), freq, cache)
        per_symbol[symbol]["first_day"] = str(part["time"].iloc[0].date())
        per_symbol[symbol]["last_day"] = str(part["time"].iloc[-1].date())
    p = np.array([per_symbol[s]["versus"]["p_value"] for s in symbols], dtype=float)
    finite = np.isfinite(p)
    adjusted_holm = np.full(p.shape, np.nan)
    adjusted_bh = np.full(p.shape, np.nan)
    adjusted_holm[finite] = stats.holm(p[finite])
    adjusted_bh[finite] = benjamini_hochberg(p[finite])
    alpha = 1.0 - LEVEL
    for i, symbol in enumerate(symbols):
        per_symbol[symbol]["p_holm"] = _finite_or_none(adjusted_holm[i])
        per_symbol[symbol]["p_bh"] = _finite_or_none(adjusted_bh[i])
    pool = pooled(record)
    combined = _comparison(pool["agent_return"].to_numpy(), pool["bh_return"].to_numpy(), freq,
                           cache)
    wins_raw = int(np.sum(p[finite] <= alpha))
    wins_holm = int(np.sum(adjusted_holm[finite] <= alpha))
    wins_bh = int(np.sum(adjusted_bh[finite] <= alpha))
    years = (pool.index[-1] - pool.index[0]).days / 365.25 if len(pool) > 1 else 0.0
    if symbols == [PORTFOLIO]:
        versus = stats.prob_agent_beats(pool["agent_return"].to_numpy(),
                                        pool["bh_return"].to_numpy(), freq)
        combined["verdict"] = stats.verdict(versus, agent="the portfolio agent",
                                            benchmark="equal weight bought and held")
        verdict = f"{combined['verdict']}; {years:.1f} years out of sample"
    else:
        verdict = (f"{combined['verdict']}; {years:.1f} years out of sample, {len(symbols)} "
                   f"symbol{'s' if len(symbols) != 1 else ''} pooled; per symbol {wins_raw} of "
                   f"{len(symbols)} ahead at {100 * LEVEL:g}% before adjustment, {wins_holm} "
                   f"after Holm, {wins_bh} after Benjamini-Hochberg")
    return {"freq": freq, "symbols": symbols, "per_symbol": per_symbol, "pooled": combined,
            "verdict": verdict, "years": years, "level": LEVEL,
            "wins": {"raw": wins_raw, "holm": wins_holm, "bh": wins_bh},
            "costs": cost_sensitivity(pool, freq), "regimes": regimes(pool, freq)}


def compare(records: dict[str, pd.DataFrame], freq: str) -> list[dict[str, Any]]:
    """Every config against the first on the pooled records, one measure throughout: the
    mean daily difference of their returns (annualised), its one-sided 90% lower bound and
    the one-sided p of :func:`fastrl.stats.prob_agent_beats` (the bound is above 0 exactly
    when p < 0.10); ``verdict`` states the same."""
    names = list(records)
    pools = {name: pooled(record) for name, record in records.items()}
    base = names[0]
    scale = periods_per_year(freq)
    rows = []
    for name in names[1:]:
        joined = pools[name][["agent_return"]].merge(
            pools[base][["agent_return"]], how="inner", left_index=True, right_index=True,
            suffixes=("_a", "_b"))
        a = joined["agent_return_a"].to_numpy()
        b = joined["agent_return_b"].to_numpy()
        versus = stats.prob_agent_beats(a, b, freq)
        rows.append({"config": name, "baseline": base, "days": int(a.shape[0]),
                     "sharpe": float(sharpe_ratio(a, freq)),
                     "baseline_sharpe": float(sharpe_ratio(b, freq)),
                     "mean_diff_annual": float(np.mean(a - b) * scale),
                     "mean_diff_low": _finite_or_none(versus.lower_bound(LEVEL) * scale),
                     "p_value": _finite_or_none(versus.p_value), "level": LEVEL,
                     "verdict": stats.verdict(versus, agent=name, benchmark=base)})
    return rows


def seed_spread(records: dict[int, pd.DataFrame], freq: str) -> dict[str, Any]:
    """The pooled Sharpe of each seed's record and their spread."""
    values = [float(sharpe_ratio(pooled(r)["agent_return"].to_numpy(), freq))
              for _, r in sorted(records.items())]
    return {"sharpes": values, "mean": float(np.mean(values)),
            "sd": float(np.std(values, ddof=1)) if len(values) > 1 else math.nan,
            "min": float(np.min(values)), "max": float(np.max(values))}


def member_spread(ensemble: pd.DataFrame, members: list[pd.DataFrame], freq: str
                  ) -> dict[str, Any]:
    """An ensemble's pooled Sharpe beside each member's own record's: the members' Sharpes
    and their min, median and max."""
    values = [float(sharpe_ratio(pooled(r)["agent_return"].to_numpy(), freq)) for r in members]
    return {"ensemble": float(sharpe_ratio(pooled(ensemble)["agent_return"].to_numpy(), freq)),
            "sharpes": values, "min": float(np.min(values)),
            "median": float(np.median(values)), "max": float(np.max(values))}

