"""The rungs of a walk-forward: classical rules (:mod:`fastrl.rules`) traded on the agent's days.

``--compare fast momentum ma10`` names agents (presets and config files, trained per window)
and rungs (names in :data:`fastrl.rules.RULES`, never trained: a rule decides from past bars
only and costs nothing to fit). Every ladder has the record's benchmark as a rung too:
buy-and-hold for a single-symbol run, equal weight bought and held for a portfolio.

A rung's record (:func:`rung_records`) has the agent record's rows and columns, the rule's
returns in the agent's place, so :func:`fastrl.walkforward.analysis.analyse` reads it as it
reads an agent's. Rules take their parameters from the first agent config's ``rules``
section (``--set rules.momentum.lookback=126``) and trade under each agent config's env
(its costs and market rules).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from fastrl.data.block import MarketBlock, bars_through
from fastrl.data.panel import PanelBlock
from fastrl.env_config import EnvConfig, PortfolioConfig
from fastrl.markets import market_for
from fastrl.markets.portfolio.backtest import evaluation_config as portfolio_evaluation
from fastrl.markets.portfolio.walkforward import PORTFOLIO
from fastrl.markets.results import AGENT_COLUMNS
from fastrl.markets.single.backtest import evaluation_config as single_evaluation
from fastrl.markets.single.walkforward import SHARED_COLUMNS, decision_bar, paired
from fastrl.rules import (
    RULES,
    Rule,
    backtest_portfolio,
    backtest_single,
    rule_from_config,
    rule_names,
)
from fastrl.walkforward.plan import Window

# the record's benchmark of each market kind, always the ladder's first rung
BENCHMARK_RUNG = {"single": "buy_and_hold", "portfolio": "ew_hold"}
KIND_WORDS = {"single": "a single-symbol", "portfolio": "a portfolio"}


def is_rule(entry: str) -> bool:
    """Whether a ``--compare`` entry names a rule (a rule's name, not a file)."""
    return entry in RULES and not Path(entry).exists()


def split_compare(entries: Sequence[str]) -> tuple[list[str], list[str]]:
    """(agents, rungs) of a ``--compare`` list, each in the order given."""
    agents = [entry for entry in entries if not is_rule(entry)]
    rungs = list(dict.fromkeys(entry for entry in entries if is_rule(entry)))
    return agents, rungs


def check_rungs(rungs: Sequence[str], kind: str) -> None:
    """ValueError naming the first rule of the wrong kind for a ``kind`` run and listing the
    rules of the right kind."""
    for name in rungs:
        if name not in RULES:
            raise ValueError(f"unknown rule {name!r}; known rules: {', '.join(RULES)}")
        if RULES[name].kind != kind:
            raise ValueError(f"--compare {name}: {name} is {KIND_WORDS[RULES[name].kind]} "
                             f"rule and this is {KIND_WORDS[kind]} run; use one of "
                             f"{', '.join(rule_names(kind))}")


def ladder_rungs(rungs: Sequence[str], kind: str) -> list[str]:
    """The ladder's rungs: the record's benchmark, then ``rungs`` (each once)."""
    return list(dict.fromkeys([BENCHMARK_RUNG[kind], *rungs]))


def rung_records(config: Any, rules_config: Any, bars: Mapping[str, pd.DataFrame],
                 windows: Sequence[Any], record: pd.DataFrame,
                 rungs: Sequence[str]) -> dict[str, pd.DataFrame]:
    """rung -> its record on the days of the agent's ``record`` (config ``config``'s env),
    the rules' parameters from ``rules_config`` (the first agent config)."""
    market = market_for(config)
    rules = [rule_from_config(name, rules_config) for name in rungs]
    for rule in rules:
        rule.require(market.kind, f"{KIND_WORDS[market.kind]} walk-forward")
    records = portfolio_rule_records if market.kind == "portfolio" else single_rule_records
    return records(market.env_config, config.data.freq, bars, windows, record, rules)


def single_rule_records(training: EnvConfig, freq: str, bars: Mapping[str, pd.DataFrame],
                        windows: Sequence[Window], record: pd.DataFrame,
                        rules: Sequence[Rule]) -> dict[str, pd.DataFrame]:
    """Each rule's walk-forward record beside the agent's single-symbol ``record``: per
    symbol the rule trades exactly the agent's days, decided from the decision bar of the
    symbol's first window (as :func:`fastrl.markets.single.walkforward.buy_and_hold`) to
    its last traded day, in one continuous backtest (a rule reads past bars only, so the
    windows do not matter) with every earlier bar of the symbol as history. Costs and market
    rules: the run's env (``training``), stepped as :func:`fastrl.rules.backtest_single`
    steps a rule. The columns are the agent's record's (the rule's in the agent's place),
    with the agent record's window and buy-and-hold columns, so
    :func:`fastrl.walkforward.analysis.analyse` reads it unchanged. Its history is every raw
    bar from the data's start (fastrl-train's rungs read the run's featured rows instead;
    :mod:`fastrl.markets.single.rungs` says why)."""
    env_config = dataclasses.replace(single_evaluation(training), equity_floor=0.0)
    symbols = list(dict.fromkeys(record["symbol"]))
    frames, starts, offset = {}, [], 0
    for symbol in symbols:
        part = record[record["symbol"] == symbol]
        first_window = windows[int(part["window"].iloc[0])]
        frame = bars_through(symbol, bars[symbol], part["time"].iloc[-1])
        frames[symbol] = frame
        starts.append(offset + decision_bar(frame.index, first_window))
        offset += len(frame)
    block = MarketBlock.from_bars(frames, freq)
    backtests = backtest_single(rules, block, env_config, starts)
    shared = record[SHARED_COLUMNS]
    out = {}
    for k, rule in enumerate(rules):
        parts = []
        for s, symbol in enumerate(symbols):
            backtest = backtests[k * len(symbols) + s]
            frame = backtest.record_frame(AGENT_COLUMNS)
            frame.insert(0, "position", backtest.positions)
            frame.insert(0, "symbol", symbol)
            parts.append(frame)
        rung = pd.concat(parts)
        rung.index.name = "time"
        out[rule.name] = paired(rule.name, shared, rung.reset_index(), list(record.columns))
    return out


def portfolio_rule_records(training: PortfolioConfig, freq: str,
                           bars: Mapping[str, pd.DataFrame], windows: Sequence[Window],
                           record: pd.DataFrame, rules: Sequence[Rule]
                           ) -> dict[str, pd.DataFrame]:
    """Each portfolio rule's walk-forward record beside the agent's ``record``: one
    continuous backtest (a rule reads past marks only, so the windows do not matter) over a
    panel from the data start, from the first window's decision row (the rows before it are
    the rule's history) to the last traded day, under the run's env (``training``) as
    :func:`fastrl.rules.backtest_portfolio` steps a rule. The columns are the agent's
    record's, with its window and benchmark columns. The panel is the raw bars of the first
    window's symbols (:meth:`PanelBlock.from_bars`; fastrl-train's rungs read the run's own
    panel instead, :mod:`fastrl.markets.portfolio.rungs` says why)."""
    env_config = dataclasses.replace(portfolio_evaluation(training), equity_floor=0.0)
    panel = PanelBlock.from_bars({s: bars[s] for s in windows[0].symbols}, freq,
                                 through=record["time"].iloc[-1])
    start = decision_bar(panel.timestamps, windows[0])
    shared = record[SHARED_COLUMNS]
    out = {}
    for rule, backtest in zip(rules, backtest_portfolio(rules, panel, env_config, start),
                              strict=True):
        frame = backtest.record_frame(AGENT_COLUMNS)
        frame.insert(0, "position", backtest.weights[:, :-1].sum(axis=1))
        frame.insert(0, "symbol", PORTFOLIO)
        frame.index.name = "time"
        out[rule.name] = paired(rule.name, shared, frame.reset_index(), list(record.columns))
    return out


__all__ = ["BENCHMARK_RUNG", "check_rungs", "is_rule", "ladder_rungs",
           "portfolio_rule_records", "rung_records", "single_rule_records", "split_compare"]
