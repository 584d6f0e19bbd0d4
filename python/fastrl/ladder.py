"""The ladder: the agent against each classical rule ("rung") on the same bars.

One implementation for every place the ladder is shown: fastrl-train/eval's backtests, the
tuner's confirmation days, the walk-forward report and the ladder bench.

A rung is a rule of :mod:`fastrl.rules` backtested through the agent's simulator on the
agent's own bars. The agent's mean return over each rung is tested one-sided
(:func:`fastrl.stats.prob_agent_beats`, the test the verdict against buy-and-hold uses) and
the p-values are adjusted across the *traded* rungs with Holm's step-down method
(:func:`fastrl.stats.holm`), since "beats some rung" is claimed over the whole family. A
rung is beaten when its Holm-adjusted p is at most 1 - level; the strongest rung beaten is
the beaten rung with the highest Sharpe on those bars.

A paper rung (voltarget scaled ex post to buy-and-hold's volatility: a leverage that is not
traded) is shown with its raw figures but is never tested: it is outside Holm's family and
can never be "beaten".

The table states, per rung, the annualised mean difference with its one-sided ``level``
lower bound (the bound is above 0 exactly when the raw one-sided p is below 1 - level, so
the table and the verdict cannot disagree) and P(agent > rung) = 1 - p, raw and after Holm.

The table is formatted from the JSON form (:meth:`Ladder.as_dict`), so a report read back
from disk prints the same table. Importing this module does not import fastrl.stats (arch
is slow to load).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import special

from fastrl.metrics import periods_per_year
from fastrl.strategies import strategy_label

if TYPE_CHECKING:
    from fastrl import stats

DIFF_COLUMN = "agent - rung a year [90%]"
P_COLUMN = "P(agent > rung)"
# the walk-forward's and the four columns; fastrl-train's table adds the return
HEADER = ["rung", "pooled Sharpe ± SE", DIFF_COLUMN, P_COLUMN]
LADDER_HEADER = ["rung", "return", "Sharpe ± SE", DIFF_COLUMN, P_COLUMN]
PAPER = "not tested (paper leverage)"
LEVEL = 0.9  # fastrl.stats.DEFAULT_LEVEL (the header's [90%]), without importing arch


@dataclass(frozen=True)
class RungResult:
    """One rung on the agent's bars: its total return and Sharpe with error bars, the
    agent's mean return over it (``vs``, unadjusted one-sided p) and the Holm-adjusted p
    (NaN for a paper rung, which is not tested)."""

    rung: str
    total_return: float
    sharpe: stats.SharpeStats
    vs: stats.AgentVsBenchmark
    p_holm: float
    paper: bool = False
    benchmark: bool = False

    @property
    def label(self) -> str:
        # "voltarget @ B&H vol" (a paper row) reads "vol target @ B&H vol"
        head, at, tail = self.rung.partition(" @ ")
        return strategy_label(head) + at + tail

    def lower_bound(self, level: float) -> float:
        """One-sided ``level`` lower bound of the agent's mean return over the rung, a year
        (NaN where there is no test)."""
        return annual_lower_bound(self.vs.as_dict(), level)

    def as_dict(self, level: float) -> dict[str, Any]:
        p, p_holm = _finite(self.vs.p_value), _finite(self.p_holm)
        return {"rung": self.rung, "label": self.label, "paper": self.paper,
                "benchmark": self.benchmark, "total_return": _finite(self.total_return),
                "sharpe": self.sharpe.as_dict(), "agent_vs_rung": self.vs.as_dict(),
                "diff_annual": _finite(self.vs.mean_active_annual),
                "diff_low": _finite(self.lower_bound(level)),
                "p_value": p, "p_holm": p_holm,
                "probability": None if p is None else 1.0 - p,
                "probability_holm": None if p_holm is None else 1.0 - p_holm,
                "beaten": _beaten(self.p_holm, level)}


@dataclass(frozen=True)
class Ladder:
    """Every rung against the agent on one record (a symbol, the combined book, a
    portfolio, a tuner's confirmation days or a walk-forward's pooled days)."""

    rungs: list[RungResult]
    level: float
    agent: str = "the agent"
    agent_sharpe: stats.SharpeStats | None = None

    @property
    def tested(self) -> list[RungResult]:
        """The traded rungs: Holm's family."""
        return [r for r in self.rungs if not r.paper]

    @property
    def beaten(self) -> list[RungResult]:
        """The traded rungs the agent beats after Holm's adjustment."""
        return [r for r in self.tested if _beaten(r.p_holm, self.level)]

    @property
    def strongest_beaten(self) -> RungResult | None:
        """The beaten rung with the highest Sharpe on these bars (None: none beaten)."""
        beaten = self.beaten
        return max(beaten, key=lambda r: _or_low(r.sharpe.sharpe)) if beaten else None

    @property
    def line(self) -> str:
        """One sentence: the strongest rung beaten, or none."""
        best = self.strongest_beaten
        return ladder_line(self.agent, self.level, len(self.tested), len(self.beaten),
                           None if best is None else best.as_dict(self.level))

    def table_rows(self) -> list[list[str]]:
        """Rows under :data:`LADDER_HEADER` (the rungs in order, each with its return)."""
        return ladder_table(self.as_dict(), with_return=True, rank=False)[1]

    def as_dict(self) -> dict[str, Any]:
        best = self.strongest_beaten
        return {"agent": self.agent, "level": self.level,
                "agent_stats": None if self.agent_sharpe is None else self.agent_sharpe.as_dict(),
                "rungs": [r.as_dict(self.level) for r in self.rungs],
                "strongest_beaten": None if best is None else best.rung,
                "line": self.line}


def ladder_line(agent: str, level: float, traded: int, beaten: int,
                best: Mapping[str, Any] | None) -> str:
    """The ladder's one sentence: ``best`` (the strongest rung beaten, in its JSON form) or
    none, out of ``traded`` rungs of which ``beaten`` are beaten after Holm."""
    rungs = f"{traded} traded rung{'s' if traded != 1 else ''}"
    confidence = f"{100 * level:g}% confidence"
    if best is None:
        return f"{agent} beats no rung of the ladder (Holm over {rungs} at {confidence})"
    return (f"{agent} beats {best['label']}, the strongest rung it beats (Sharpe "
            f"{best['sharpe']['sharpe']:+.2f}; {100 * best['diff_annual']:+.1f}% a year over "
            f"it, Holm-adjusted P(agent > rung) = {_confidence(1.0 - best['p_holm'])}; "
            f"{beaten} of {rungs} beaten after Holm at {confidence})")


MATCHED = "voltarget"  # the rung also shown at the benchmark's volatility
MATCHED_SUFFIX = " @ B&H vol"


def matched_returns(rung: np.ndarray, bench: np.ndarray) -> np.ndarray:
    """``rung`` scaled by sd(bench) / sd(rung): the same Sharpe at the benchmark's
    volatility (a paper leverage; unchanged where ``rung`` has no spread)."""
    spread = float(np.std(rung, ddof=1)) if rung.shape[0] > 1 else 0.0
    if not spread > 0:
        return rung.copy()
    return rung * (float(np.std(bench, ddof=1)) / spread)


def with_matched_volatility(rungs: dict[str, tuple[np.ndarray, float]],
                            benchmark: str | None) -> list[str]:
    """Adds voltarget at the benchmark's volatility to ``rungs`` (name -> (per-bar returns,
    total return)) when both are there: voltarget's returns scaled ex post by sd(benchmark)
    / sd(voltarget) over the same bars, a paper leverage that is not traded (its Sharpe is
    voltarget's, its difference a year is not). Returns the paper rows' names (for
    :func:`ladder_of`'s ``paper``: shown, not tested)."""
    if MATCHED not in rungs or benchmark is None or benchmark not in rungs:
        return []
    scaled = matched_returns(np.asarray(rungs[MATCHED][0], dtype=np.float64),
                             np.asarray(rungs[benchmark][0], dtype=np.float64))
    rungs[MATCHED + MATCHED_SUFFIX] = (scaled, float(np.prod(1.0 + scaled) - 1.0))
    return [MATCHED + MATCHED_SUFFIX]


def ladder_of(agent_returns: np.ndarray, rungs: Mapping[str, tuple[np.ndarray, float]],
              freq: str, *, agent: str = "the agent", seed: int = 0,
              paper: Collection[str] = (), benchmark: str | None = None,
              agent_sharpe: bool = False) -> Ladder:
    """The ladder of ``rungs`` (name -> (per-bar returns on the agent's bars, total
    return)): each rung's Sharpe with error bars, the agent's one-sided test against it,
    Holm-adjusted across the traded rungs (those not in ``paper``). ``benchmark`` names the
    record's benchmark among the rungs; ``agent_sharpe`` keeps the agent's own Sharpe
    statistics (for a table that places the agent among the rungs)."""
    from fastrl import stats  # arch takes seconds to import; only a report needs it

    agent_returns = np.asarray(agent_returns, dtype=np.float64)
    names = list(rungs)
    unknown = [name for name in paper if name not in rungs]
    if unknown:
        raise ValueError(f"paper rung {unknown[0]!r} is not among the rungs")
    tests = []
    for name in names:
        returns = np.asarray(rungs[name][0], dtype=np.float64)
        if returns.shape != agent_returns.shape:
            raise ValueError(f"rung {name!r} has {returns.shape[0]} bars but the agent has "
                             f"{agent_returns.shape[0]}; a rung must trade the agent's bars")
        tests.append(stats.prob_agent_beats(agent_returns, returns, freq))
    # the paper rungs stay NaN: no test, not in the family
    adjusted = stats.holm(np.array([math.nan if name in paper else t.p_value
                                    for name, t in zip(names, tests, strict=True)]))
    out = [RungResult(name, float(rungs[name][1]),
                      stats.sharpe_stats(rungs[name][0], freq, seed=seed), test, float(p),
                      paper=name in paper, benchmark=name == benchmark)
           for name, test, p in zip(names, tests, adjusted, strict=True)]
    own = stats.sharpe_stats(agent_returns, freq, seed=seed) if agent_sharpe else None
    return Ladder(out, LEVEL, agent, own)


# ----------------------------------------------------------------------------- the table


def annual_lower_bound(versus: Mapping[str, Any], level: float) -> float:
    """One-sided ``level`` lower bound of the annualised mean active return from an
    :class:`fastrl.stats.AgentVsBenchmark` as a dict (``as_dict``; NaN: no test). Equals
    ``AgentVsBenchmark.lower_bound(level)`` times the bars in a year."""
    df, se, mean = versus.get("df") or 0, versus.get("se_active"), versus.get("mean_active")
    if not (df >= 1 and se is not None and mean is not None and math.isfinite(se)):
        return math.nan
    return (mean - float(special.stdtrit(df, level)) * se) * periods_per_year(versus["freq"])


def sharpe_cell(sharpe: Mapping[str, Any]) -> str:
    """"+1.23 ± 0.33" (the SE the reports show) from a SharpeStats dict."""
    value, se = sharpe.get("sharpe"), sharpe.get("se")
    if value is None:
        return "n/a"
    return f"{value:+.2f} ± {se:.2f}" if se is not None else f"{value:+.2f}"


def difference_cell(mean: float | None, low: float | None) -> str:
    """"+2.6% [-0.4%, ∞)": the annualised mean difference and its one-sided interval."""
    if mean is None:
        return "n/a"
    return f"{100 * mean:+.1f}%" + ("" if low is None else f" [{100 * low:+.1f}%, ∞)")


def probability_cell(p: float | None, p_holm: float | None, *, mark: str = "",
                     paper: bool = False) -> str:
    """"0.968 (Holm 0.904), beaten": 1 - the one-sided p, raw and Holm-adjusted, then
    ``mark`` (the claim made at the level, if any)."""
    if paper:
        return PAPER
    if p is None:
        return "n/a (too few bars)"
    text = _confidence(1.0 - p)
    if p_holm is not None:
        text += f" (Holm {_confidence(1.0 - p_holm)})"
    return text + (f", {mark}" if mark else "")


def rung_cells(row: Mapping[str, Any], *, with_return: bool) -> list[str]:
    """One rung's cells (the row formatter every ladder table uses) from its JSON form."""
    label = row["label"] + (" (benchmark)" if row.get("benchmark") else "")
    cells = [label]
    if with_return:
        total = row.get("total_return")
        cells.append("n/a" if total is None else f"{100 * total:+.2f}%")
    return [*cells, sharpe_cell(row["sharpe"]), difference_cell(row["diff_annual"],
                                                                   row["diff_low"]),
            probability_cell(row["p_value"], row["p_holm"],
                             mark="beaten" if row["beaten"] else "", paper=row["paper"])]


def ladder_table(result: Mapping[str, Any], *, with_return: bool = False, rank: bool = True
                 ) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of a ladder from its JSON form (:meth:`Ladder.as_dict`). ``rank``:
    strongest Sharpe first, the agent's own row in its place (needs ``agent_stats``);
    otherwise the rungs in order. ``with_return``: a total-return column after the rung."""
    header = list(LADDER_HEADER if with_return else HEADER)
    rows = [(row, rung_cells(row, with_return=with_return)) for row in result["rungs"]]
    agent = result.get("agent_stats")
    if not rank or agent is None:
        return header, [cells for _, cells in rows]
    agent_cells = [f"**{result['agent']}** (the agent)", *([""] if with_return else []),
                   sharpe_cell(agent), "", ""]
    rows.sort(key=lambda item: _or_low(item[0]["sharpe"].get("sharpe")), reverse=True)
    out, placed = [], False
    for row, cells in rows:
        value = row["sharpe"].get("sharpe")
        if not placed and agent["sharpe"] is not None and value is not None \
                and agent["sharpe"] > value:
            out.append(agent_cells)
            placed = True
        out.append(cells)
    if not placed:
        out.append(agent_cells)
    return header, out


def columns_note(level: float = LEVEL) -> str:
    """What the ladder table's columns mean (the reports' note under every ladder)."""
    pct = f"{100 * level:g}%"
    return (
        f"'agent - rung a year': the mean of the per-bar difference of returns, annualised, "
        f"with its one-sided {pct} interval [lower bound, ∞). P(agent > rung): 1 - the "
        "one-sided p of that mean (Student's t with the larger of the Newey-West and i.i.d. "
        "SEs), raw and then Holm-adjusted across the traded rungs; it is the confidence at "
        "which \"the agent beats this rung\" would just be claimed, not a posterior "
        f"probability that it does. Before adjustment a rung is behind the agent exactly when "
        f"its lower bound is above 0 (P above {pct}); it is beaten when its Holm-adjusted P is "
        f"at least {pct}, and the strongest rung beaten is the beaten one with the highest "
        "Sharpe. A paper row (ex-post leverage, not traded) shows its raw figures, is not "
        "tested and is never beaten")


def ladder_note(result: Mapping[str, Any]) -> str:
    """The ladder's one-line summary and what its columns mean."""
    return (f"{result['line']}. Rungs: classical rules traded on the agent's days through the "
            "same simulator, costs and market rules, never trained. "
            + columns_note(result["level"]))


def _confidence(value: float) -> str:
    # Holm's adjusted p is capped at 1, so its confidence can be exactly 0 (read as "no
    # claim at any level", not as a small p); elsewhere "1.000" or "0.000" would read as a
    # certainty the test never gives
    if value == 0.0:
        return "0"
    if value > 0.999:
        return "> 0.999"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def _beaten(p_holm: float, level: float) -> bool:
    return bool(math.isfinite(p_holm) and p_holm <= 1.0 - level)


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _or_low(value: float | None) -> float:
    return value if value is not None and math.isfinite(value) else -math.inf


__all__ = ["HEADER", "LADDER_HEADER", "LEVEL", "MATCHED", "MATCHED_SUFFIX", "PAPER", "Ladder",
           "RungResult", "matched_returns", "with_matched_volatility",
           "annual_lower_bound", "columns_note", "difference_cell", "ladder_line",
           "ladder_note", "ladder_of", "ladder_table", "probability_cell", "rung_cells",
           "sharpe_cell"]
