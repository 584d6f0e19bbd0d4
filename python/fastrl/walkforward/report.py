"""The walk-forward run folder: oos_returns.csv, windows.csv, report.md/html/json and plots.

Plots (matplotlib, Agg): ``equity.png`` the pooled and per-symbol equity against
buy-and-hold on a log scale, ``rolling_sharpe.png`` the one-year rolling Sharpe of both,
``drawdown.png`` the pooled drawdowns.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fastrl.ladder import ladder_note, ladder_table
from fastrl.reports.format import format_number, json_safe
from fastrl.reports.plots import COLORS, pyplot
from fastrl.reports.writer import Document, Section, Table, write_pages
from fastrl.walkforward.analysis import (
    analyse,
    compare,
    member_spread,
    pooled,
    rolling_sharpe,
    seed_spread,
)
from fastrl.walkforward.ladder import ladder
from fastrl.walkforward.run import WalkForwardRun


def plot_equity(record: pd.DataFrame, path: Path, max_symbols: int = 30) -> Path:
    """Pooled equity on top, then one small panel per symbol; log scale."""
    plt = pyplot()
    symbols = list(dict.fromkeys(record["symbol"]))[:max_symbols]
    columns = 1 if len(symbols) == 1 else 3
    rows = 1 + math.ceil(len(symbols) / columns)
    fig = plt.figure(figsize=(12, 3.2 * rows), dpi=90)
    grid = fig.add_gridspec(rows, columns)
    pool = pooled(record)
    ax = fig.add_subplot(grid[0, :])
    for key, column in (("agent", "agent_return"), ("buy_and_hold", "bh_return")):
        ax.plot(pool.index, np.cumprod(1 + pool[column]), color=COLORS[key],
                label=key.replace("_", " "))
    ax.set_yscale("log")
    ax.set_title("pooled (equal capital, rebalanced every bar), growth of 1")
    ax.legend(loc="upper left")
    for i, symbol in enumerate(symbols):
        sub = fig.add_subplot(grid[1 + i // columns, i % columns])
        part = record[record["symbol"] == symbol]
        for key, column in (("agent", "agent_return"), ("buy_and_hold", "bh_return")):
            sub.plot(part["time"], np.cumprod(1 + part[column].to_numpy()), color=COLORS[key],
                     linewidth=0.9)
        sub.set_yscale("log")
        sub.set_title(symbol, fontsize=9)
        sub.tick_params(labelsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _pooled_plot(record: pd.DataFrame, path: Path, title: str, legend: str,
                 draw: Callable[[Any, pd.DataFrame, str, str], None]) -> Path:
    """One panel over the pooled record: ``draw(ax, pool, strategy, column)`` per strategy."""
    plt = pyplot()
    pool = pooled(record)
    fig, ax = plt.subplots(figsize=(12, 3.5), dpi=90)
    for key, column in (("agent", "agent_return"), ("buy_and_hold", "bh_return")):
        draw(ax, pool, key, column)
    ax.set_title(title)
    ax.legend(loc=legend)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_rolling_sharpe(record: pd.DataFrame, freq: str, path: Path) -> Path:
    def draw(ax: Any, pool: pd.DataFrame, key: str, column: str) -> None:
        ax.plot(pool.index, rolling_sharpe(pool[column], freq), color=COLORS[key],
                label=key.replace("_", " "))
        ax.axhline(0, color="#999", linewidth=0.8)

    return _pooled_plot(record, path, "rolling one-year Sharpe (pooled)", "upper left", draw)


def plot_drawdown(record: pd.DataFrame, path: Path) -> Path:
    def draw(ax: Any, pool: pd.DataFrame, key: str, column: str) -> None:
        equity = np.cumprod(1 + pool[column].to_numpy())
        ax.fill_between(pool.index, equity / np.maximum.accumulate(equity) - 1, 0,
                        color=COLORS[key], alpha=0.35, label=key.replace("_", " "))

    return _pooled_plot(record, path, "drawdown (pooled)", "lower left", draw)


# ----------------------------------------------------------------------------- text


def _num(value: Any, spec: str = "+.2f") -> str:
    """:func:`~fastrl.reports.format.format_number`, signed unless ``spec`` says otherwise."""
    return format_number(value, spec)


def _pct(value: Any) -> str:
    return _num(None if value is None else 100 * value, "+.1f") + ("%" if value is not None
                                                                   else "")


def _sharpe_cell(s: dict[str, Any]) -> str:
    """Sharpe ± SE [interval]; the SE is Lo/Mertens' unless marked as the bootstrap's."""
    method = " (bootstrap SE)" if s.get("se_method") == "bootstrap" else ""
    return (f"{_num(s['sharpe'])} ± {_num(s['se'], '.2f')}{method} "
            f"[{_num(s['ci_low'])}, {_num(s['ci_high'])}]")


def sections(run: WalkForwardRun, analyses: dict[str, dict[str, Any]],
             comparisons: list[dict[str, Any]], spreads: dict[str, dict[str, Any]],
             rung_analyses: dict[str, dict[str, Any]] | None = None,
             members: dict[str, dict[str, Any]] | None = None
             ) -> list[tuple[str, list[str], list[list[str]], str]]:
    """(heading, header, rows, note) of every table in the report after the ladder: each
    agent config's record, then each rung's (``rung_analyses``, the rule in the agent's
    columns), then the configs compared."""
    out = []
    records = {**analyses, **(rung_analyses or {})}
    for name, analysis in records.items():
        label = f" ({name})" if len(records) > 1 else ""
        who = "agent" if name in analyses else "rule"
        rows = []
        for symbol, s in analysis["per_symbol"].items():
            rows.append([symbol, f"{s['first_day']} to {s['last_day']}", str(s["days"]),
                         _sharpe_cell(s["agent"]), _sharpe_cell(s["buy_and_hold"]),
                         _num(s["agent"]["psr"], ".2f"), _pct(s["active_annual_mean"]),
                         _num(s["versus"]["p_value"], ".3f"), _num(s["p_holm"], ".3f"),
                         _num(s["p_bh"], ".3f")])
        p = analysis["pooled"]
        rows.append(["pooled", "", str(p["days"]), _sharpe_cell(p["agent"]),
                     _sharpe_cell(p["buy_and_hold"]), _num(p["agent"]["psr"], ".2f"),
                     _pct(p["active_annual_mean"]), _num(p["versus"]["p_value"], ".3f"),
                     "", ""])
        out.append((f"Per symbol and pooled{label}",
                    ["symbol", "traded", "days", f"{who} Sharpe ± SE [90%]",
                     "buy & hold Sharpe ± SE [90%]", f"{who} PSR", f"{who} - B&H a year",
                     "p (one-sided)", "p Holm", "p BH"], rows,
                    analysis["verdict"] + ". SE: the larger of Lo/Mertens' and the spread "
                    "over a stationary bootstrap (marked where that is the one shown); p: "
                    "one-sided, on the mean of agent - B&H, bar by bar"))
        cost_rows = [[f"{r['multiple']:g}x", _num(r["agent_sharpe"]), _num(r["bh_sharpe"]),
                      _pct(r["active_annual_mean"]), _num(r["p_value"], ".3f")]
                     for r in analysis["costs"]["rows"]]
        out.append((f"Cost sensitivity{label}",
                    ["cost multiple", f"{who} Sharpe", "B&H Sharpe", f"{who} - B&H a year",
                     "p (one-sided)"], cost_rows, analysis["costs"]["text"]))
        for key, title in (("years", "By calendar year"), ("direction", "Rising and falling "
                                                           "years"),
                           ("volatility", "By trailing-volatility tercile")):
            regime_rows = [[r["regime"], str(r["days"]), _pct(r["agent_return"]),
                            _pct(r["bh_return"]), _num(r["agent_sharpe"]), _num(r["bh_sharpe"]),
                            _pct(r["active_annual_mean"])]
                           for r in analysis["regimes"][key]]
            out.append((f"{title}{label}", ["regime", "days", f"{who} return", "B&H return",
                                            f"{who} Sharpe", "B&H Sharpe",
                                            f"{who} - B&H a year"],
                        regime_rows, ""))
    if comparisons:
        rows = [[c["config"], c["baseline"], str(c["days"]), _num(c["sharpe"]),
                 _num(c["baseline_sharpe"]), _pct(c["mean_diff_annual"]),
                 _pct(c["mean_diff_low"]), _num(c["p_value"], ".3f")]
                for c in comparisons]
        out.append(("Configs compared on the same windows and seeds (pooled, seed 0)",
                    ["config", "against", "days", "Sharpe", "against Sharpe",
                     "difference a year", "90% lower bound (one-sided)", "p (one-sided)"],
                    rows, "; ".join(c["verdict"] for c in comparisons)))
    compute = run.windows_frame().groupby("config", sort=False).agg(
        windows=("window", "count"), env_steps=("env_steps", "mean"),
        seconds=("seconds", "mean"), total_seconds=("seconds", "sum"))
    out.append(("Compute per config", ["config", "windows trained", "env steps a window",
                                       "seconds a window", "seconds in all"],
                [[name, str(int(r.windows)), f"{r.env_steps:,.0f}", f"{r.seconds:.1f}",
                  f"{r.total_seconds:.0f}"] for name, r in compute.iterrows()], ""))
    if members:
        out.append(("Ensemble and its members (pooled agent Sharpe, seed 0)",
                    ["config", "members", "ensemble", "members' min", "median", "max"],
                    [[name, str(len(m["sharpes"])), _num(m["ensemble"]), _num(m["min"]),
                      _num(m["median"]), _num(m["max"])] for name, m in members.items()],
                    "each member's own record: its policy of every window trading alone, "
                    "as the ensemble's (the mean of the members' exposures) does"))
    if run.seeds > 1:
        out.append(("Spread over seeds (pooled agent Sharpe of each seed's record)",
                    ["config", "seeds", "mean", "sd", "min", "max"],
                    [[name, str(len(s["sharpes"])), _num(s["mean"]), _num(s["sd"], ".2f"),
                      _num(s["min"]), _num(s["max"])] for name, s in spreads.items()], ""))
    return out


def setup_lines(run: WalkForwardRun) -> list[str]:
    spec = run.spec
    first, last = run.windows[0], run.windows[-1]
    training = ("expanding (all bars since the data start)" if spec.train_window is None
                else f"rolling, the last {spec.train_window} days")
    return [
        f"{len(run.windows)} windows of {spec.step} trading days, traded "
        f"{first.first_traded} to {last.last_traded}; {run.freq} bars",
        f"training span: {training}; its last {spec.val_days} days validate (best checkpoint "
        f"and early stopping, as fastrl-train); embargo {spec.embargo} day(s) between the last "
        "bar a window saw and its first traded bar, so no reward it trained on (each is "
        "marked at the next bar's close) falls on its decision day or later",
        "the last " + (f"{spec.test_days} test days are never traded"
                       if not spec.through_test else "test days are traded (--through-test)"),
        "one policy per window for every symbol; deterministic actions; the training "
        "config's costs and market rules; positions carry across windows and every change "
        "is costed; buy-and-hold is bought at the first fill and sold at the end",
        f"configs: {', '.join(run.configs)}; seeds per window: {run.seeds}; "
        f"{run.seconds:.0f} s in all",
        *([f"rungs: {', '.join(run.rungs)}; each trades every config's days in one "
           "continuous backtest (all earlier bars as its history) under that config's costs "
           "and market rules, its parameters from the first config's rules section"]
          if run.rungs else []),
    ]


def rung_analyses(run: WalkForwardRun, freq: str, cache: dict[bytes, Any]
                  ) -> dict[str, dict[str, Any]]:
    """The full record of every rung but the benchmark (whose record is the agents'
    buy-and-hold columns): ``rule <rung>``, and ``rule <rung> (<config>'s env)`` for a
    config whose env trades the rung differently from the first config's."""
    out: dict[str, dict[str, Any]] = {}
    seen: dict[str, pd.DataFrame] = {}
    for (name, rung), record in run.rung_records.items():
        if rung == run.rungs[0]:
            continue
        key = f"rule {rung}"
        if rung in seen:
            if seen[rung].equals(record):
                continue
            key = f"rule {rung} ({name}'s env)"
        seen.setdefault(rung, record)
        out[key] = analyse(record, freq, cache)
    return out


def ladders(run: WalkForwardRun) -> dict[str, dict[str, Any]]:
    """config -> its ladder (:func:`fastrl.walkforward.ladder.ladder`, seed 0)."""
    return {name: ladder(name, run.record(name, 0),
                         {rung: run.rung_records[(name, rung)] for rung in run.rungs},
                         run.freq, run.rungs[0])
            for name in run.configs if run.rungs}


def write_walkforward_report(run: WalkForwardRun, out_dir: str | Path) -> dict[str, Any]:
    """Writes everything into ``out_dir``; returns the analysis (the report.json content).

    The report opens with each config's ladder (the rungs and where the agent stands among
    them), then the setup, then every record in full."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = list(run.configs)
    cache: dict[bytes, Any] = {}
    analyses = {name: analyse(run.record(name, 0), run.freq, cache) for name in names}
    rungs = rung_analyses(run, run.freq, cache)
    ladder_results = ladders(run)
    comparisons = compare({name: run.record(name, 0) for name in names}, run.freq)
    spreads = {name: seed_spread({s: run.record(name, s) for s in range(run.seeds)}, run.freq)
               for name in names}
    members = {name: member_spread(run.record(name, 0), records, run.freq)
               for name, records in run.member_records.items()}
    frames = []
    for (name, seed), record in run.records.items():
        frames.append(record.assign(config=name, seed=seed))
    pd.concat(frames).to_csv(out / "oos_returns.csv", index=False)
    if run.rung_records:
        pd.concat([record.assign(config=name, rung=rung)
                   for (name, rung), record in run.rung_records.items()]
                  ).to_csv(out / "rung_returns.csv", index=False)
    run.windows_frame().to_csv(out / "windows.csv", index=False)
    main = run.record(names[0], 0)
    images = {"equity": plot_equity(main, out / "equity.png"),
              "rolling one-year Sharpe": plot_rolling_sharpe(main, run.freq,
                                                             out / "rolling_sharpe.png"),
              "drawdown": plot_drawdown(main, out / "drawdown.png")}
    verdict = analyses[names[0]]["verdict"]
    if ladder_results:
        verdict = f"{ladder_results[names[0]]['verdict']}; {verdict}"
    title = (f"fastrl walk-forward: {len(analyses[names[0]]['symbols'])} symbol(s), "
             f"{', '.join(names)}")
    opening = []
    for name, result in ladder_results.items():
        header, rows = ladder_table(result)
        label = f" ({name})" if len(ladder_results) > 1 else ""
        opening.append(Section(f"The ladder{label}", table=Table(header, rows, numeric=False),
                               closing=[f"{ladder_note(result)}."]))
    setup = setup_lines(run)
    doc = Document(title=title, verdict=verdict, images=images,
                   sections=[*opening, Section("Setup", bullets=setup),
                             *(Section(heading, table=Table(header, rows, numeric=False),
                                       closing=[f"{note}."] if note else [])
                               for heading, header, rows, note in
                               sections(run, analyses, comparisons, spreads, rungs,
                                        members))])
    write_pages(doc, out)
    payload = {"verdict": verdict, "setup": setup, "spec": run.spec.__dict__,
               "windows": [w.as_dict() for w in run.windows], "ladders": ladder_results,
               "configs": analyses, "rungs": rungs, "comparisons": comparisons,
               "seed_spread": spreads, "ensemble_members": members, "seconds": run.seconds}
    (out / "report.json").write_text(json.dumps(json_safe(payload), indent=2, allow_nan=False),
                                     encoding="utf-8")
    return payload
