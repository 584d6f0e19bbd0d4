"""Generalisation on real bars: the default recipe on each bundled daily symbol, one at a time.

    python bench/generalisation.py [--quick] [--presets fast baseline] [--symbols ...]
                                   [--timesteps N] [--select 0,0.001,0.003]

For each of the 30 bundled daily symbols and each preset: one seed, a (64, 64) network, the
last year (252 trading days) as test and the year before as validation. Training keeps the
policy of the best validation Sharpe (the trainer's validation, early stopping as shipped),
and that policy is backtested once on the test year beside buy-and-hold, with the error bars
of ``fastrl.stats``. Per symbol and in aggregate: agent and buy-and-hold test Sharpe with
90% intervals, PSR, the paired probability that the agent beats buy-and-hold, costs as a
share of gross P&L, turnover and costs per year as a share of equity; and how many symbols
the agent beats buy-and-hold on at 90% confidence.

There is no target on Sharpe: this is the honest baseline hyperparameter search must beat.
There is a target on waste: the median cost at or below 5% of equity a year. ``--select``
chooses the training reward's turnover penalty (``env.turnover_penalty``) on the
*validation* year only: each candidate trains on every symbol and is scored by the median
validation cost per year; the smallest candidate meeting the target for every preset wins.
The test year is not looked at in that mode.

Writes bench/results/generalisation.json (``--select``: generalisation_selection.json,
``--quick``: a ``_quick`` suffix).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import machine_info, write_json  # noqa: E402

PRESETS = ("fast", "baseline")
HIDDEN = (64, 64)
TEST_DAYS = 252
VAL_DAYS = 252
TIMESTEPS = 65_536  # 8 updates of the presets' 64 envs x 128 steps
QUICK_SYMBOLS = ("BPCL", "HDFCLIFE", "INFY")
QUICK_TIMESTEPS = 16_384
COST_TARGET = 0.05  # costs per year / equity


def run_config(preset: str, symbol: str, timesteps: int, penalty: float | None) -> Any:
    from fastrl.config import build_config

    options = [f"hidden_sizes={list(HIDDEN)}", f"data.symbols=[{symbol}]",
               f"data.test_days={TEST_DAYS}", f"data.val_days={VAL_DAYS}",
               f"total_timesteps={timesteps}", "device=cpu", "seed=0"]
    if penalty is not None:
        options.append(f"env.turnover_penalty={penalty}")
    return build_config(preset, set_options=options)


def cost_figures(metrics: Any, equity: np.ndarray, freq: str) -> dict[str, float | None]:
    """Costs per year over mean equity, and costs over gross P&L (P&L before costs)."""
    from fastrl.metrics import periods_per_year

    years = max(len(equity) - 1, 1) / periods_per_year(freq)
    costs = float(metrics.costs_paid)
    gross = float(equity[-1] - equity[0]) + costs
    return {
        "cost_per_year": costs / float(np.mean(equity)) / years,
        "cost_of_gross_pnl": costs / gross if gross > 0 else None,
        "annual_turnover": float(metrics.annual_turnover),
    }


def combined_equity(result: Any, strategy: str) -> np.ndarray:
    return np.asarray(result.get(result.symbols[0], strategy).equity)


def train_one(preset: str, symbol: str, timesteps: int, penalty: float | None,
              on_test: bool) -> dict[str, Any]:
    """Train on one symbol; backtest the best-validation policy on validation (and test)."""
    from fastrl.markets.single.backtest import evaluate_agent
    from fastrl.ppo.hooks import KeepBestHook, ValidationHook
    from fastrl.ppo.trainer import Trainer

    config = run_config(preset, symbol, timesteps, penalty)
    started = time.perf_counter()
    trainer = Trainer(config)
    keep = KeepBestHook()
    result = trainer.train(hooks=[ValidationHook(), keep])
    agent = keep.agent(trainer)
    record: dict[str, Any] = {
        "symbol": symbol, "preset": preset, "turnover_penalty": config.env.turnover_penalty,
        "updates": result.updates, "reason": result.reason,
        "best_val_sharpe": result.best_val_sharpe, "best_update": keep.update,
    }
    validation = evaluate_agent(agent, trainer.market.val, config.env)
    val_metrics = validation.metrics(symbol, "agent")
    record["val"] = {"sharpe": float(val_metrics.sharpe),
                     **cost_figures(val_metrics, combined_equity(validation, "agent"),
                                    validation.freq)}
    if on_test:
        test = evaluate_agent(agent, trainer.market.test, config.env)
        agent_metrics = test.metrics(symbol, "agent")
        bench_metrics = test.metrics(symbol, "buy_and_hold")
        uncertainty = test.uncertainty(symbol).as_dict()
        record["test"] = {
            "agent": {**uncertainty["sharpe"]["agent"],
                      **cost_figures(agent_metrics, combined_equity(test, "agent"), test.freq),
                      "total_return": float(agent_metrics.total_return)},
            "buy_and_hold": {**uncertainty["sharpe"]["buy_and_hold"],
                             "total_return": float(bench_metrics.total_return)},
            "vs_buy_and_hold": uncertainty["agent_vs_buy_and_hold"],
            "verdict": uncertainty["verdict"],
        }
    record["seconds"] = time.perf_counter() - started
    return record


def _median(values: list) -> float | None:
    values = [v for v in values if v is not None and np.isfinite(v)]
    return float(statistics.median(values)) if values else None


def aggregate(records: list[dict[str, Any]], split: str) -> dict[str, Any]:
    out: dict[str, Any] = {"symbols": len(records),
                           "median_val_cost_per_year": _median(
                               [r["val"]["cost_per_year"] for r in records]),
                           "median_val_sharpe": _median([r["val"]["sharpe"] for r in records])}
    if split == "test":
        agent = [r["test"]["agent"] for r in records]
        out.update({
            "median_agent_sharpe": _median([a["sharpe"] for a in agent]),
            "median_buy_and_hold_sharpe": _median(
                [r["test"]["buy_and_hold"]["sharpe"] for r in records]),
            "median_cost_per_year": _median([a["cost_per_year"] for a in agent]),
            "median_cost_of_gross_pnl": _median([a["cost_of_gross_pnl"] for a in agent]),
            "median_annual_turnover": _median([a["annual_turnover"] for a in agent]),
            "agent_sharpe_above_buy_and_hold": sum(
                a["sharpe"] > r["test"]["buy_and_hold"]["sharpe"]
                for a, r in zip(agent, records, strict=True)),
            "beats_buy_and_hold_at_90": sum(
                (r["test"]["vs_buy_and_hold"].get("p_value") or 1.0) < 0.10 for r in records),
        })
    return out


def fmt(value: Any, spec: str = "+.2f") -> str:
    return "-" if value is None else format(value, spec)


def markdown(payload: dict[str, Any]) -> str:
    """Per-symbol and aggregate tables (SUMMARY.md embeds this)."""
    lines = [f"Each symbol alone: (64, 64) network, one seed, {payload['timesteps']:,} env "
             f"steps, validation year {VAL_DAYS} days, test year {TEST_DAYS} days, NSE delivery "
             f"costs and rules; reward turnover penalty {payload['turnover_penalty']}. "
             f"{payload['wall_seconds'] / 60:.1f} min on {payload['machine'].get('cores', '?')} "
             "cores.", ""]
    for preset, block in payload["presets"].items():
        agg = block["aggregate"]
        lines += [f"**{preset}**: median test Sharpe agent {fmt(agg['median_agent_sharpe'])} "
                  f"vs buy-and-hold {fmt(agg['median_buy_and_hold_sharpe'])}; agent above "
                  f"buy-and-hold on {agg['agent_sharpe_above_buy_and_hold']}/{agg['symbols']}, "
                  f"beats it at 90% confidence on {agg['beats_buy_and_hold_at_90']}/"
                  f"{agg['symbols']}; median costs {fmt(agg['median_cost_per_year'], '.1%')} of "
                  f"equity a year (target <= {COST_TARGET:.0%}), "
                  f"{fmt(agg['median_cost_of_gross_pnl'], '.0%')} of gross P&L, turnover "
                  f"{fmt(agg['median_annual_turnover'], '.1f')}x a year.", "",
                  "| symbol | agent Sharpe [90% CI] | PSR | buy & hold Sharpe [90% CI] | "
                  "P(agent > B&H) | costs/yr | costs/gross | turnover/yr |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in block["runs"]:
            a, b, v = r["test"]["agent"], r["test"]["buy_and_hold"], r["test"]["vs_buy_and_hold"]
            lines.append(
                f"| {r['symbol']} | {fmt(a['sharpe'])} [{fmt(a.get('ci_low'))}, "
                f"{fmt(a.get('ci_high'))}] | {fmt(a.get('psr'), '.2f')} | {fmt(b['sharpe'])} "
                f"[{fmt(b.get('ci_low'))}, {fmt(b.get('ci_high'))}] | "
                f"{fmt(v.get('probability'), '.2f')} | {fmt(a['cost_per_year'], '.1%')} | "
                f"{fmt(a['cost_of_gross_pnl'], '.0%')} | {fmt(a['annual_turnover'], '.1f')} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"{len(QUICK_SYMBOLS)} symbols, {QUICK_TIMESTEPS:,} steps")
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=PRESETS)
    parser.add_argument("--symbols", nargs="+", default=None)
    parser.add_argument("--timesteps", type=int, default=None)
    parser.add_argument("--turnover-penalty", type=float, default=None,
                        help="override the training default (env.turnover_penalty)")
    parser.add_argument("--select", default=None, metavar="P1,P2,...",
                        help="choose the turnover penalty on validation only")
    parser.add_argument("--torch-threads", type=int, default=2)
    args = parser.parse_args()
    from fastrl.data import available

    torch.set_num_threads(args.torch_threads)
    symbols = args.symbols or (list(QUICK_SYMBOLS) if args.quick else available("1d"))
    timesteps = args.timesteps or (QUICK_TIMESTEPS if args.quick else TIMESTEPS)
    suffix = "_quick" if args.quick else ""
    started = time.perf_counter()
    if args.select:
        candidates = [float(x) for x in args.select.split(",")]
        table: dict[str, Any] = {}
        for penalty in candidates:
            for preset in args.presets:
                runs = [train_one(preset, s, timesteps, penalty, on_test=False) for s in symbols]
                agg = aggregate(runs, "val")
                table.setdefault(str(penalty), {})[preset] = {"aggregate": agg, "runs": runs}
                print(f"penalty {penalty:g} {preset}: median validation cost "
                      f"{fmt(agg['median_val_cost_per_year'], '.1%')}/yr, median validation "
                      f"Sharpe {fmt(agg['median_val_sharpe'])}", flush=True)
        meets = [p for p in candidates if all(
            (table[str(p)][preset]["aggregate"]["median_val_cost_per_year"] or 0) <= COST_TARGET
            for preset in args.presets)]
        chosen = min(meets) if meets else None
        print(f"chosen on validation: {chosen}")
        path = write_json(f"generalisation_selection{suffix}", {
            "machine": machine_info(), "symbols": symbols, "timesteps": timesteps,
            "candidates": candidates, "chosen": chosen, "target": COST_TARGET,
            "wall_seconds": time.perf_counter() - started, "table": table})
        print(f"wrote {path}")
        return
    payload: dict[str, Any] = {"machine": machine_info(), "symbols": symbols,
                               "timesteps": timesteps, "presets": {}}
    for preset in args.presets:
        runs = []
        for symbol in symbols:
            record = train_one(preset, symbol, timesteps, args.turnover_penalty, on_test=True)
            runs.append(record)
            a = record["test"]["agent"]
            print(f"{preset:8s} {symbol:11s} test Sharpe {a['sharpe']:+.2f} "
                  f"[{fmt(a.get('ci_low'))}, {fmt(a.get('ci_high'))}] vs B&H "
                  f"{record['test']['buy_and_hold']['sharpe']:+.2f}; costs "
                  f"{a['cost_per_year']:.1%}/yr, turnover {a['annual_turnover']:.1f}x "
                  f"({record['seconds']:.0f} s)", flush=True)
        payload["presets"][preset] = {"aggregate": aggregate(runs, "test"), "runs": runs}
    payload["turnover_penalty"] = runs[0]["turnover_penalty"] if runs else None
    payload["wall_seconds"] = time.perf_counter() - started
    payload["markdown"] = markdown(payload)
    print(payload["markdown"])
    path = write_json(f"generalisation{suffix}", payload)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
