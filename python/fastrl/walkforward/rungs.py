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

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from fastrl.markets import market_for
from fastrl.markets.portfolio import walkforward as portfolio_records
from fastrl.markets.single import walkforward as single_records
from fastrl.rules import RULES, rule_from_config, rule_names

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
    module = portfolio_records if market.kind == "portfolio" else single_records
    return module.rule_records(market.env_config, config.data.freq, bars, windows, record,
                               rules)


__all__ = ["BENCHMARK_RUNG", "check_rungs", "is_rule", "ladder_rungs", "rung_records",
           "split_compare"]
