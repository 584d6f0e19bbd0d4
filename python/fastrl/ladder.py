"""The ladder: the agent against each classical rule ("rung") on the same bars.

A rung is a rule of :mod:`fastrl.rules` backtested through the agent's simulator on the
agent's own test (or confirmation) days. The agent's mean return over each rung is tested
one-sided (:func:`fastrl.stats.prob_agent_beats`, the test the verdict against
buy-and-hold uses) and the p-values are adjusted across the rungs with Holm's step-down
method, since "beats some rung" is claimed over the whole family. The strongest rung the
agent beats is the beaten rung (Holm-adjusted p <= 1 - level) with the highest Sharpe on
those bars.

Plain data and formatting only: the markets build the rungs' backtests, the reports lay
the table out. Importing this module does not import fastrl.stats (arch is slow to load).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import special

from fastrl.metrics import periods_per_year
from fastrl.strategies import strategy_label

if TYPE_CHECKING:
    from fastrl import stats

LADDER_HEADER = ["rung", "return", "Sharpe ± SE", "agent - rung a year [90%]", "one-sided p",
                 "Holm p"]
INTERVAL_LEVEL = 0.9  # the two-sided interval of the agent's mean return over a rung


@dataclass(frozen=True)
class RungResult:
    """One rung on the agent's bars: its total return and Sharpe with error bars, the
    agent's mean return over it (``vs``, unadjusted one-sided p) and the Holm-adjusted p."""

    rung: str
    total_return: float
    sharpe: stats.SharpeStats
    vs: stats.AgentVsBenchmark
    p_holm: float

    @property
    def label(self) -> str:
        return strategy_label(self.rung)

    def interval(self, level: float = INTERVAL_LEVEL) -> tuple[float, float]:
        """Two-sided ``level`` t-interval of the agent's mean return over the rung, a year
        (the test's SE and degrees of freedom; NaN where there is no test)."""
        v = self.vs
        if not (v.df >= 1 and math.isfinite(v.se_active)):
            return math.nan, math.nan
        half = float(special.stdtrit(v.df, 0.5 + level / 2)) * v.se_active
        scale = periods_per_year(v.freq)
        return (v.mean_active - half) * scale, (v.mean_active + half) * scale

    def as_dict(self) -> dict[str, Any]:
        return {"rung": self.rung, "label": self.label,
                "total_return": _finite(self.total_return),
                "sharpe": self.sharpe.as_dict(), "agent_vs_rung": self.vs.as_dict(),
                "active_annual_ci90": [_finite(x) for x in self.interval()],
                "p_holm": _finite(self.p_holm)}


@dataclass(frozen=True)
class Ladder:
    """Every rung against the agent on one record (a symbol, the combined book, a
    portfolio, or a tuner's confirmation days)."""

    rungs: list[RungResult]
    level: float
    agent: str = "the agent"

    @property
    def beaten(self) -> list[RungResult]:
        """The rungs the agent beats after Holm's adjustment."""
        return [r for r in self.rungs
                if math.isfinite(r.p_holm) and r.p_holm <= 1.0 - self.level]

    @property
    def strongest_beaten(self) -> RungResult | None:
        """The beaten rung with the highest Sharpe on these bars (None: none beaten)."""
        beaten = self.beaten
        return max(beaten, key=lambda r: _or_low(r.sharpe.sharpe)) if beaten else None

    @property
    def line(self) -> str:
        """One sentence: the strongest rung beaten, or "none"."""
        n = len(self.rungs)
        where = (f"after Holm's adjustment over {n} rung{'s' if n != 1 else ''} at "
                 f"{100 * self.level:g}% confidence")
        best = self.strongest_beaten
        if best is None:
            return f"strongest rung {self.agent} beats: none ({where})"
        return (f"strongest rung {self.agent} beats: {best.label} (Sharpe "
                f"{best.sharpe.sharpe:+.2f}; {best.vs.mean_active_annual * 100:+.1f}% a year "
                f"over it, Holm p = {best.p_holm:.3f}; {where})")

    def table_rows(self) -> list[list[str]]:
        """Rows under :data:`LADDER_HEADER`."""
        # lazy: the reports sit above this module, which the results import
        from fastrl.reports.format import format_number

        rows = []
        for r in self.rungs:
            s = r.sharpe
            sharpe = (f"{s.sharpe:+.2f} ± {s.se:.2f}" if math.isfinite(s.se)
                      else format_number(s.sharpe, "+.2f"))
            low, high = r.interval()
            interval = (f" [{100 * low:+.1f}%, {100 * high:+.1f}%]"
                        if math.isfinite(low) and math.isfinite(high) else "")
            rows.append([r.label, format_number(100 * r.total_return, "+.2f") + "%", sharpe,
                         format_number(100 * r.vs.mean_active_annual, "+.1f") + "%" + interval,
                         format_number(r.vs.p_value, ".3f"), format_number(r.p_holm, ".3f")])
        return rows

    def as_dict(self) -> dict[str, Any]:
        best = self.strongest_beaten
        return {"level": self.level, "rungs": [r.as_dict() for r in self.rungs],
                "strongest_beaten": best.rung if best is not None else "none",
                "line": self.line}


def ladder_of(agent_returns: np.ndarray, rungs: Mapping[str, tuple[np.ndarray, float]],
              freq: str, *, agent: str = "the agent", seed: int = 0) -> Ladder:
    """The ladder of ``rungs`` (name -> (per-bar returns on the agent's bars, total
    return)): each rung's Sharpe with error bars, the agent's one-sided test against it,
    Holm-adjusted across the rungs."""
    from fastrl import stats  # arch takes seconds to import; only a report needs it

    agent_returns = np.asarray(agent_returns, dtype=np.float64)
    names = list(rungs)
    tests = []
    for name in names:
        returns = np.asarray(rungs[name][0], dtype=np.float64)
        if returns.shape != agent_returns.shape:
            raise ValueError(f"rung {name!r} has {returns.shape[0]} bars but the agent has "
                             f"{agent_returns.shape[0]}; a rung must trade the agent's bars")
        tests.append(stats.prob_agent_beats(agent_returns, returns, freq))
    adjusted = stats.holm(np.array([t.p_value for t in tests]))
    out = [RungResult(name, float(rungs[name][1]),
                      stats.sharpe_stats(rungs[name][0], freq, seed=seed), test, float(p))
           for name, test, p in zip(names, tests, adjusted, strict=True)]
    return Ladder(out, stats.DEFAULT_LEVEL, agent)


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _or_low(value: float) -> float:
    return value if math.isfinite(value) else -math.inf


__all__ = ["LADDER_HEADER", "Ladder", "RungResult", "ladder_of"]
