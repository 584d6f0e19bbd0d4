"""Ladder bench: every classical rule (fastrl.rules) on the 30 bundled daily symbols over the
walk-forward bench's traded days, beside the two PPO presets' walk-forward records.

    python bench/ladder.py            # the full bench (target: under 10 min on 2 cores)
    python bench/ladder.py --quick    # 3 symbols, the last year of the period (a smoke run)

The traded days are read from results/walkforward.json: the period from the first window's
first traded day to the last window's last one, and for each symbol the decision day of the
first window that trades it (a late listing joins there, as in the walk-forward). Single-
symbol rungs trade each symbol from that decision bar (every earlier bundled bar is history
the rule may read) under the fast preset's env config (today's costs and market rules),
benchmarked against the buy_and_hold rung; pooled as the walk-forward pools, equal capital
across the symbols trading each day. Portfolio rungs trade the 30-symbol panel from the
period's decision day (the panel rows before it are history), benchmarked against ew_hold.
The presets' rows and their paired ladders come from the walk-forward benches' reports
(results/walkforward.json, and results/walkforward_portfolio.json where it has run): each
preset's run traded the rungs of its kind on its own days and tested each difference bar by
bar. Writes results/ladder.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fastrl import stats  # noqa: E402
from fastrl.config import build_config  # noqa: E402
from fastrl.costs import resolve_execution  # noqa: E402
from fastrl.data import available, load_bars  # noqa: E402
from fastrl.data.block import MarketBlock  # noqa: E402
from fastrl.data.panel import PanelBlock  # noqa: E402
from fastrl.env_config import EnvConfig, PortfolioConfig  # noqa: E402
from fastrl.ladder import (  # noqa: E402
    LEVEL,
    annual_lower_bound,
    difference_cell,
    probability_cell,
    sharpe_cell,
)
from fastrl.markets import market_for  # noqa: E402
from fastrl.metrics import periods_per_year, sharpe_ratio  # noqa: E402
from fastrl.rules import backtest_portfolio, backtest_single, rule_for, rule_names  # noqa: E402
from fastrl.walkforward.analysis import pooled  # noqa: E402

from bench_common import RESULTS, machine_info, write_json  # noqa: E402

FREQ = "1d"
SINGLE_BENCHMARK = "buy_and_hold"
PORTFOLIO_BENCHMARK = "ew_hold"
# the walk-forward bench's results: the full run's, else a quick run's (run_all --quick)
WALKFORWARD = (RESULTS / "walkforward.json", RESULTS / "walkforward_quick.json",
               Path(__file__).resolve().parent / "results" / "walkforward.json")
# --quick: a smoke run on a few symbols over the period's last year
QUICK_SYMBOLS = 3
QUICK_DAYS = 252


@dataclasses.dataclass(frozen=True)
class Period:
    """The traded days: each symbol's decision day (its first fill is the next bar) and the
    last traded day, shared by every symbol."""

    decision_days: dict[str, pd.Timestamp]
    last_day: pd.Timestamp

    @property
    def first_decision(self) -> pd.Timestamp:
        return min(self.decision_days.values())


def walkforward_period(payload: Mapping[str, Any]) -> Period:
    """The period of a walk-forward bench's report: each symbol's decision day from the first
    window that trades it, the last window's last traded day."""
    windows = payload["report"]["windows"]
    decision: dict[str, pd.Timestamp] = {}
    for window in windows:
        for symbol in window["symbols"]:
            decision.setdefault(symbol, pd.Timestamp(window["decision_day"]))
    return Period(decision, pd.Timestamp(windows[-1]["last_traded"]))


def default_configs() -> tuple[EnvConfig, PortfolioConfig]:
    """Today's defaults: the fast preset's single-symbol env and its portfolio env."""
    single = market_for(build_config("fast", None, {}, [])).env_config
    portfolio = market_for(build_config("fast", None, {"portfolio.enabled": True,
                                                        "data.symbols": ["A", "B"]}, [])
                           ).env_config
    return single, portfolio


def decision_row(stamps: np.ndarray, day: pd.Timestamp, what: str) -> int:
    """The last row on or before ``day`` (its close is the first decision)."""
    row = int(np.searchsorted(stamps, (day + pd.Timedelta(days=1)).to_datetime64(),
                              side="left")) - 1
    if row < 0:
        raise ValueError(f"{what} has no bar on or before {day.date()}")
    return row


def single_records(bars: Mapping[str, pd.DataFrame], period: Period, config: EnvConfig,
                   rungs: Sequence[str]) -> pd.DataFrame:
    """One row per (rung, symbol, traded day): the rung's return and cost fraction. Each
    symbol's block holds every bar through the last day; the backtest starts at its
    decision bar, so the rows before it are only history."""
    symbols = list(period.decision_days)
    market = MarketBlock.from_bars({s: bars[s] for s in symbols}, FREQ,
                                   through=period.last_day)
    starts = [market.segment(i).start + decision_row(market.timestamps[market.segment(i)],
                                                     period.decision_days[s], s)
              for i, s in enumerate(symbols)]
    backtests = backtest_single([rule_for(r) for r in rungs], market, config, starts)
    frames = []
    for backtest in backtests:
        equity = backtest.equity
        frames.append(pd.DataFrame({
            "rung": backtest.strategy, "symbol": backtest.symbol,
            "time": pd.DatetimeIndex(backtest.timestamps[1:]),
            "ret": equity[1:] / equity[:-1] - 1.0,
            "cost_frac": backtest.step_costs / equity[:-1]}))
    return pd.concat(frames, ignore_index=True)


def pooled_returns(records: pd.DataFrame, rung: str, benchmark: str) -> pd.DataFrame:
    """The rung and the benchmark pooled per day as the walk-forward pools them
    (:func:`fastrl.walkforward.analysis.pooled`: the mean over the symbols trading that
    day), as columns ``agent_return`` and ``bh_return``."""
    def part(name: str) -> pd.DataFrame:
        return records[records["rung"] == name].set_index(["time", "symbol"])
    a, b = part(rung), part(benchmark)
    joined = pd.DataFrame({"agent_return": a["ret"], "bh_return": b["ret"],
                           "cost_frac": a["cost_frac"], "bh_cost_frac": b["cost_frac"]})
    if joined.isna().any().any():
        raise ValueError(f"{rung} and {benchmark} cover different days")
    return pooled(joined.reset_index())


def portfolio_returns(bars: Mapping[str, pd.DataFrame], period: Period,
                      config: PortfolioConfig, rungs: Sequence[str]) -> pd.DataFrame:
    """Each portfolio rung's daily return and cost fraction [days, rungs]. A backtest starts
    at row ``window - 1``: the window is set so that this is the period's decision row, and
    the rows before it are the rules' history."""
    panel = PanelBlock.from_bars({s: bars[s] for s in period.decision_days}, FREQ,
                                 through=period.last_day)
    first = decision_row(panel.timestamps, period.first_decision, "the panel")
    config = dataclasses.replace(config, window=first + 1)
    backtests = backtest_portfolio([rule_for(r) for r in rungs], panel, config)
    out = {}
    for backtest in backtests:
        equity = backtest.equity
        out[backtest.strategy] = equity[1:] / equity[:-1] - 1.0
    return pd.DataFrame(out, index=pd.DatetimeIndex(backtests[0].timestamps[1:], name="time"))


def rung_row(rung: pd.Series, bench: pd.Series, *, is_benchmark: bool) -> dict[str, Any]:
    """A rung's pooled Sharpe (with the SE the reports show) and, unless it is the
    benchmark, its mean active return over the benchmark a year with its one-sided
    ``LEVEL`` lower bound (above 0 exactly when the one-sided p is below 1 - ``LEVEL``) and
    the one-sided p, as :mod:`fastrl.ladder` states the agent against a rung."""
    sharpe = stats.sharpe_stats(rung.to_numpy(), FREQ).as_dict()
    row: dict[str, Any] = {"sharpe": sharpe, "days": int(len(rung)),
                           "total_return": float(np.prod(1.0 + rung.to_numpy()) - 1.0)}
    if is_benchmark:
        return row
    versus = stats.prob_agent_beats(rung.to_numpy(), bench.to_numpy(), FREQ)
    row["versus"] = {**versus.as_dict(),
                     "annual_low": versus.lower_bound(LEVEL) * periods_per_year(FREQ)}
    return row


def ladder(bars: Mapping[str, pd.DataFrame], period: Period, env_config: EnvConfig,
           portfolio_config: PortfolioConfig) -> dict[str, Any]:
    """The ladder's figures: per family (single, portfolio) every rung's pooled row, Holm's
    adjusted p across the family's rungs against its benchmark, and the seconds taken."""
    started = time.perf_counter()
    single = rule_names("single")
    records = single_records(bars, period, env_config, single)
    single_seconds = time.perf_counter() - started
    mark = time.perf_counter()
    portfolio = rule_names("portfolio")
    book = portfolio_returns(bars, period, portfolio_config, portfolio)
    portfolio_seconds = time.perf_counter() - mark
    mark = time.perf_counter()
    families: dict[str, Any] = {}
    per_symbol: dict[str, dict[str, float]] = {}
    for family, rungs, benchmark in (("single", single, SINGLE_BENCHMARK),
                                     ("portfolio", portfolio, PORTFOLIO_BENCHMARK)):
        rows = {}
        for rung in rungs:
            if family == "single":
                pool = pooled_returns(records, rung, benchmark)
                a, b = pool["agent_return"], pool["bh_return"]
            else:
                a, b = book[rung], book[benchmark]
            rows[rung] = rung_row(a, b, is_benchmark=rung == benchmark)
        tested = [r for r in rungs if "versus" in rows[r]]
        adjusted = stats.holm(np.array([rows[r]["versus"]["p_value"] for r in tested]))
        for r, p in zip(tested, adjusted, strict=True):
            rows[r]["versus"]["p_holm"] = float(p)
        families[family] = {"benchmark": benchmark, "rungs": rows}
    for rung in single:
        part = records[records["rung"] == rung]
        per_symbol[rung] = {s: float(sharpe_ratio(g["ret"].to_numpy(), FREQ))
                            for s, g in part.groupby("symbol", sort=False)}
    first_traded = records.loc[records["rung"] == SINGLE_BENCHMARK, "time"].min()
    return {"period": {"first_traded": str(first_traded.date()),
                       "last_traded": str(period.last_day.date()),
                       "days": int(records["time"].nunique()),
                       "portfolio_days": int(len(book)),
                       "symbols": {s: str(d.date()) for s, d in period.decision_days.items()}},
            "families": families, "per_symbol_sharpe": per_symbol,
            "seconds": {"single_backtests": single_seconds,
                        "portfolio_backtests": portfolio_seconds,
                        "statistics": time.perf_counter() - mark}}


# ----------------------------------------------------------------------------- presets


def preset_rows(payloads: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each preset's pooled row and its paired ladder from the walk-forward benches' reports
    (``payloads``: kind -> report JSON; the single-symbol bench, and the portfolio one
    where it has run): the preset's Sharpe, its mean return over the record's benchmark,
    and the ladder its run computed bar by bar against each rung on the same days, under
    the same costs (:func:`fastrl.walkforward.ladder.ladder`)."""
    rows = {}
    for kind, payload in payloads.items():
        report = payload["report"]
        for name, analysis in report["configs"].items():
            pool = analysis["pooled"]
            ladder_result = report.get("ladders", {}).get(name)
            rows[f"{name} ({kind})"] = {
                "kind": kind, "sharpe": pool["agent"]["sharpe"], "se": pool["agent"]["se"],
                "bh_sharpe": pool["buy_and_hold"]["sharpe"],
                "active_annual_mean": pool["active_annual_mean"],
                "p_value": pool["versus"]["p_value"], "days": pool["days"],
                "ladder_line": None if ladder_result is None else ladder_result["line"],
                "rungs": {} if ladder_result is None else {
                    r["rung"]: {"diff_annual": r["diff_annual"], "diff_low": r["diff_low"],
                                "p_value": r["p_value"], "p_holm": r["p_holm"],
                                "paper": r["paper"]}
                    for r in ladder_result["rungs"]}}
    return rows


def _shown_path(path: Path) -> str:
    """``path`` relative to the repository when it lies inside it (no machine's paths in
    the record)."""
    root = Path(__file__).resolve().parents[1]
    try:
        return str(Path(path).resolve().relative_to(root))
    except ValueError:
        return str(path)


# ----------------------------------------------------------------------------- report


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:+.1f}%"


def markdown(data: Mapping[str, Any]) -> str:
    """The SUMMARY.md section's body."""
    result, period = data["ladder"], data["ladder"]["period"]
    env, book = data["setup"]["env"], data["setup"]["portfolio"]
    lines = [
        f"Every rule of `fastrl.rules` with its default parameters on the {len(period['symbols'])}"
        f" bundled daily symbols, traded {period['first_traded']} to {period['last_traded']} "
        f"({period['days']} days): the walk-forward bench's traded days, each late listing from "
        "the window that first trades it. Today's default costs and market rules (the fast "
        f"preset's env: {env['cost']} with a {env['half_spread_bps']:g} bps half-spread and "
        f"{env['slippage_bps']:g} bps slippage a side, {env['execution'].replace('_', '-')} "
        f"fills, {'whole' if env['integer_shares'] else 'fractional'} shares; the portfolio "
        "env's defaults for the portfolio rungs: "
        f"{'whole' if book['integer_shares'] else 'fractional'} shares, trade band "
        f"{book['trade_band']:g}); every bundled bar before the first decision is history "
        "the rules read. "
        "Single-symbol rungs are pooled with equal capital across the symbols trading each day "
        "(as the walk-forward pools) and compared with buy_and_hold; portfolio rungs trade one "
        f"book over the {len(period['symbols'])} symbols from the first decision day and are "
        "compared with ew_hold (a symbol listed later stays "
        "in cash in ew_hold; the monthly rules buy it once it trades). SE: the reports' "
        "(the larger of Lo/Mertens and the bootstrap's). 'rung - benchmark a year': the mean "
        "daily difference of returns, annualised, with its one-sided 90% interval [lower "
        "bound, ∞) (`fastrl.stats.prob_agent_beats`: Student's t with the larger of the "
        "Newey-West and i.i.d. SEs). P(rung > benchmark): 1 - the one-sided p of that mean (H0: "
        "the rung's mean return is at most the benchmark's), raw and Holm-adjusted across the "
        "family's four other rungs: the confidence at which \"the rung beats the benchmark\" "
        "would just be claimed, not a posterior probability. The lower bound is above 0 "
        "exactly when the raw P is above 90%; 'ahead' marks a Holm-adjusted P of at least 90%.",
        "",
        "| rung | pooled Sharpe ± SE | rung - benchmark a year [90%] | P(rung > benchmark) |",
        "|---|---|---|---|"]
    for family in result["families"].values():
        for rung, row in family["rungs"].items():
            versus = row.get("versus")
            if versus is None:
                lines.append(f"| {rung} (benchmark) | {sharpe_cell(row['sharpe'])} | - | - |")
                continue
            # the bound from the test's own figures (a file saved with a two-sided interval
            # prints the same table)
            low = annual_lower_bound(versus, LEVEL)
            p_holm = versus.get("p_holm")
            ahead = p_holm is not None and p_holm <= 1.0 - LEVEL
            lines.append(
                f"| {rung} | {sharpe_cell(row['sharpe'])} | "
                f"{difference_cell(versus['mean_active_annual'], _finite(low))} | "
                f"{probability_cell(versus['p_value'], p_holm, mark='ahead' if ahead else '')}"
                " |")
    for name, preset in data["presets"].items():
        lines.append(f"| preset {name}, walk-forward | {preset['sharpe']:+.2f} ± "
                     f"{preset['se']:.2f} | {_pct(preset['active_annual_mean'])} vs its "
                     f"benchmark ({preset['bh_sharpe']:+.2f}) | "
                     f"{probability_cell(preset['p_value'], None)} |")
    if data["presets"]:
        lines += ["", "Preset rows: the walk-forward benches' records "
                  f"({', '.join(data['setup']['walkforward_files'])}): today's costs and "
                  "market rules, one policy per quarterly window (the single-symbol run on "
                  "the days above; the portfolio run on its own universe, the symbols "
                  "listed two years before its start, so its rungs are not the rows above). "
                  "Each "
                  "preset's run traded every rung of its kind on its own days and tested the "
                  "difference bar by bar (paired; 'agent - rung a year' with its one-sided "
                  "90% lower bound, Holm-adjusted across the traded rungs):", ""]
    for name, preset in data["presets"].items():
        paired = "; ".join(
            f"{rung} {difference_cell(r['diff_annual'], r['diff_low'])}"
            for rung, r in preset["rungs"].items() if not r["paper"])
        lines.append(f"- **{name}**: {preset['ladder_line'] or 'no ladder in its run'}. "
                     f"Against each rung: {paired or 'none'}.")
    seconds = data["seconds"]
    load = data["load_average"]
    cores = data["machine"].get("cores") or 1
    busy = (": above the core count, other jobs shared the machine"
            if max(load["start"][0], load["end"][0]) > cores else ": a quiet machine")
    lines += ["", f"Wall time {seconds['wall']:.0f} s (single-symbol backtests "
              f"{result['seconds']['single_backtests']:.0f} s, portfolio "
              f"{result['seconds']['portfolio_backtests']:.0f} s, statistics "
              f"{result['seconds']['statistics']:.0f} s; the rules train nothing). Load average"
              f" (1 min) {load['start'][0]:.1f} at the start and {load['end'][0]:.1f} at the end "
              f"on {data['machine'].get('cores', '?')} cores"
              f"{busy}"
              ".", ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--walkforward", type=Path, default=None,
                        help="the walk-forward bench's JSON (its traded days and presets; "
                             "default results/walkforward.json)")
    args = parser.parse_args()
    if args.walkforward is None:
        args.walkforward = next((p for p in WALKFORWARD if p.exists()), WALKFORWARD[0])
    try:
        payload = json.loads(args.walkforward.read_text())
        period = walkforward_period(payload)
    except (OSError, ValueError, KeyError) as error:
        print(f"ladder: cannot read the walk-forward period from {args.walkforward}: {error}",
              file=sys.stderr)
        return 2
    started = time.perf_counter()
    load_start = list(os.getloadavg())
    symbols = sorted(period.decision_days)
    if args.quick:
        symbols = [s for s in available(FREQ) if s in period.decision_days][:QUICK_SYMBOLS]
    bars = load_bars(symbols)
    if args.quick:
        calendar = bars[symbols[0]].index
        calendar = calendar[calendar.normalize() <= period.last_day]
        first = calendar[-QUICK_DAYS]
        period = Period({s: max(period.decision_days[s], first) for s in symbols},
                        period.last_day)
    env_config, portfolio_config = default_configs()
    execution = resolve_execution(env_config.cost, env_config.half_spread_bps,
                                  env_config.slippage_bps)
    result = ladder(bars, period, env_config, portfolio_config)
    payloads = {"single": payload}
    portfolio_file = args.walkforward.with_name(
        args.walkforward.name.replace("walkforward", "walkforward_portfolio"))
    if portfolio_file.exists():
        payloads["portfolio"] = json.loads(portfolio_file.read_text())
    presets = preset_rows(payloads)
    data = {"machine": machine_info(),
            "setup": {"quick": args.quick, "walkforward": _shown_path(args.walkforward),
                      "walkforward_files": [_shown_path(args.walkforward)] + (
                          [_shown_path(portfolio_file)] if "portfolio" in payloads else []),
                      "env": {"cost": env_config.cost, "execution": env_config.execution,
                              "integer_shares": env_config.integer_shares,
                              "half_spread_bps": execution.half_spread_bps,
                              "slippage_bps": execution.slippage_bps,
                              "initial_cash": env_config.initial_cash},
                      "portfolio": {"integer_shares": portfolio_config.integer_shares,
                                    "trade_band": portfolio_config.trade_band}},
            "ladder": result, "presets": presets,
            "seconds": {"wall": time.perf_counter() - started},
            "load_average": {"start": load_start, "end": list(os.getloadavg())}}
    path = write_json("ladder_quick" if args.quick else "ladder", data)
    print(markdown(data))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
