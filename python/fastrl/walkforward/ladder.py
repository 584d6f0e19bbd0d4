"""The ladder: where an agent stands among the classical rules on the same days.

For one agent config, every rung (:mod:`fastrl.walkforward.rungs`) is compared with the
agent on the pooled records, bar by bar on the same days, by the measure every walk-forward
verdict uses: the mean of agent - rung, its one-sided p (:func:`fastrl.stats.
prob_agent_beats`), here Holm-adjusted across the rungs (one family: "the agent beats this
rung" for each rung), and a two-sided interval of the difference a year. The verdict names
the strongest rung (highest pooled Sharpe) the agent beats after Holm at the report's level,
or says it beats none.

Volatility-targeting is also shown at buy-and-hold's volatility: its pooled returns scaled
ex post by sd(buy-and-hold) / sd(voltarget) over the same days, a paper leverage that is not
traded (its Sharpe is voltarget's; its difference a year is not).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from scipy import special

from fastrl import stats
from fastrl.metrics import periods_per_year
from fastrl.strategies import strategy_label
from fastrl.walkforward.analysis import LEVEL, holm, pooled

MATCHED = "voltarget"  # the rung also shown at the benchmark's volatility
MATCHED_SUFFIX = " @ B&H vol"


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def matched_returns(rung: np.ndarray, bench: np.ndarray) -> np.ndarray:
    """``rung`` scaled by sd(bench) / sd(rung): the same Sharpe at the benchmark's
    volatility (a paper leverage; unchanged where ``rung`` has no spread)."""
    spread = float(np.std(rung, ddof=1)) if rung.shape[0] > 1 else 0.0
    if not spread > 0:
        return rung.copy()
    return rung * (float(np.std(bench, ddof=1)) / spread)


def _row(name: str, agent: np.ndarray, rung: np.ndarray, freq: str, *,
         benchmark: bool = False, paper: bool = False) -> dict[str, Any]:
    versus = stats.prob_agent_beats(agent, rung, freq)
    scale = periods_per_year(freq)
    low = high = math.nan
    if versus.df >= 1 and math.isfinite(versus.se_active):
        half = float(special.stdtrit(versus.df, 0.5 + LEVEL / 2)) * versus.se_active
        low, high = (versus.mean_active - half) * scale, (versus.mean_active + half) * scale
    return {"rung": name, "label": (f"{strategy_label(MATCHED)}{MATCHED_SUFFIX}" if paper
                                     else strategy_label(name)),
            "benchmark": benchmark, "paper": paper, "days": int(agent.shape[0]),
            "rung_stats": stats.sharpe_stats(rung, freq).as_dict(),
            "diff_annual": float(versus.mean_active_annual), "diff_low": _finite(low),
            "diff_high": _finite(high), "p_value": _finite(versus.p_value)}


def ladder(agent: str, record: pd.DataFrame, rungs: Mapping[str, pd.DataFrame], freq: str,
           benchmark: str) -> dict[str, Any]:
    """The ladder of one agent config: ``record`` its walk-forward record, ``rungs`` each
    rung's record on its days (``benchmark`` the record's benchmark among them). Rows: the
    rungs (and voltarget at matched volatility) and the agent, strongest pooled Sharpe
    first; ``p_holm`` adjusts the rungs' p-values across the ladder."""
    agent_pool = pooled(record)["agent_return"]
    agent_returns = agent_pool.to_numpy()
    rows = []
    for name, rung_record in rungs.items():
        pool = pooled(rung_record)["agent_return"]
        if not pool.index.equals(agent_pool.index):
            raise ValueError(f"rung {name} and {agent} cover different days")
        rows.append(_row(name, agent_returns, pool.to_numpy(), freq,
                         benchmark=name == benchmark))
        if name == MATCHED and benchmark in rungs:
            bench = pooled(rungs[benchmark])["agent_return"].to_numpy()
            rows.append(_row(name + MATCHED_SUFFIX, agent_returns,
                             matched_returns(pool.to_numpy(), bench), freq, paper=True))
    p = np.array([np.nan if r["p_value"] is None else r["p_value"] for r in rows])
    finite = np.isfinite(p)
    adjusted = np.full(p.shape, np.nan)
    adjusted[finite] = holm(p[finite])
    alpha = 1.0 - LEVEL
    for row, p_holm in zip(rows, adjusted, strict=True):
        row["p_holm"] = _finite(p_holm)
        row["beaten"] = bool(math.isfinite(p_holm) and p_holm <= alpha)
    agent_stats = stats.sharpe_stats(agent_returns, freq).as_dict()

    def sharpe(row: dict[str, Any]) -> float:
        value = row["rung_stats"]["sharpe"]
        return -math.inf if value is None else float(value)

    beaten = [row for row in rows if row["beaten"]]
    strongest = max(beaten, key=sharpe) if beaten else None
    family = f"{len(rows)} rung{'s' if len(rows) != 1 else ''}"
    if strongest is None:
        verdict = (f"{agent} beats no rung of the ladder (Holm over {family} at "
                   f"{100 * LEVEL:g}%)")
    else:
        verdict = (f"{agent} beats {strongest['rung']} (the strongest rung it beats; "
                   f"{len(beaten)} of {family} after Holm at {100 * LEVEL:g}%)")
    return {"agent": agent, "agent_stats": agent_stats, "level": LEVEL, "rows":
            sorted(rows, key=sharpe, reverse=True), "benchmark": benchmark,
            "strongest_beaten": None if strongest is None else strongest["rung"],
            "verdict": verdict}


def ladder_table(result: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the ladder table, the agent in its place by pooled Sharpe."""
    def number(value: float | None, spec: str = "+.2f") -> str:
        return "n/a" if value is None else format(value, spec)

    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{100 * value:+.1f}%"

    def sharpe_cell(s: dict[str, Any]) -> str:
        return f"{number(s['sharpe'])} ± {number(s['se'], '.2f')}"

    header = ["rung", "pooled Sharpe ± SE", "agent - rung a year [90%]", "P(agent > rung)"]
    agent = result["agent_stats"]
    agent_row = [f"**{result['agent']}** (the agent)", sharpe_cell(agent), "", ""]
    rows, placed = [], False
    for row in result["rows"]:
        s = row["rung_stats"]["sharpe"]
        if not placed and agent["sharpe"] is not None and s is not None and agent["sharpe"] > s:
            rows.append(agent_row)
            placed = True
        label = row["rung"] + (" (benchmark)" if row["benchmark"] else "") + (
            " (paper leverage, not traded)" if row["paper"] else "")
        interval = f"[{pct(row['diff_low'])}, {pct(row['diff_high'])}]"
        p = ("n/a" if row["p_value"] is None else
             f"p = {row['p_value']:.3f} (Holm {number(row['p_holm'], '.3f')})")
        if row["beaten"]:
            p += ", beaten"
        rows.append([label, sharpe_cell(row["rung_stats"]),
                     f"{pct(row['diff_annual'])} {interval}", p])
    if not placed:
        rows.append(agent_row)
    return header, rows


LADDER_NOTE = ("Rungs: classical rules traded on the agent's days through the same simulator, "
               "costs and market rules, never trained. agent - rung: the mean of the pooled "
               "daily difference, annualised, with its two-sided {level:g}% interval; P(agent > "
               "rung): the one-sided p of that mean (Newey-West), raw and Holm-adjusted across "
               "the ladder's rungs; beaten: Holm p at most {alpha:g}")


def ladder_note(result: dict[str, Any]) -> str:
    level = 100 * result["level"]
    return f"{result['verdict']}. " + LADDER_NOTE.format(level=level, alpha=1 - result["level"])


__all__ = ["MATCHED", "ladder", "ladder_note", "ladder_table", "matched_returns"]
