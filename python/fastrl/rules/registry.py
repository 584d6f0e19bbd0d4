"""The rules by name: ``RULES`` (name -> spec) and :func:`rule_for`.

A :class:`Rule` is a name, its kind ("single": one symbol at a time, on a
:class:`~fastrl.data.block.MarketBlock`; "portfolio": weights over a
:class:`~fastrl.data.panel.PanelBlock`) and its validated parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from fastrl.config import ConfigError
from fastrl.rule_params import (
    CrossSectionalMomentumParams,
    DailyAverageParams,
    InverseVolParams,
    MinVarianceParams,
    MomentumParams,
    MonthlyAverageParams,
    RuleParams,
    VolTargetParams,
)
from fastrl.rules.portfolio import equal_weight, inverse_vol, min_variance, xs_momentum
from fastrl.rules.single import buy_and_hold, ma10, ma200, momentum, voltarget

RuleKind = Literal["single", "portfolio"]
KIND_WORDS = {"single": "a single-symbol rule", "portfolio": "a portfolio rule"}


@dataclass(frozen=True)
class RuleSpec:
    """How a rule decides. ``decide`` is a single rule's exposure function (see
    :mod:`fastrl.rules.single`) or a portfolio rule's weight function (see
    :mod:`fastrl.rules.portfolio`); a portfolio rule trades on its first step only
    (``schedule="once"``) or on every month's first fill (``"monthly"``)."""

    kind: RuleKind
    params: type[RuleParams]
    decide: Callable[..., Any]
    summary: str
    schedule: Literal["once", "monthly"] = "monthly"


RULES: Mapping[str, RuleSpec] = {
    "buy_and_hold": RuleSpec("single", RuleParams, buy_and_hold,
                             "fully invested throughout"),
    "voltarget": RuleSpec("single", VolTargetParams, voltarget,
                          "exposure = target vol / trailing vol, capped at 1"),
    "momentum": RuleSpec("single", MomentumParams, momentum,
                         "long when the 12-1 month return is positive, else flat"),
    "ma10": RuleSpec("single", MonthlyAverageParams, ma10,
                     "long when the month-end close is above its 10-month average"),
    "ma200": RuleSpec("single", DailyAverageParams, ma200,
                      "long when the close is above its 200-day average"),
    "ew_hold": RuleSpec("portfolio", RuleParams, equal_weight,
                        "equal weight bought once and held", schedule="once"),
    "ew_monthly": RuleSpec("portfolio", RuleParams, equal_weight,
                           "equal weight rebalanced monthly"),
    "inverse_vol": RuleSpec("portfolio", InverseVolParams, inverse_vol,
                            "weights proportional to 1 / trailing vol, monthly"),
    "min_variance": RuleSpec("portfolio", MinVarianceParams, min_variance,
                             "long-only minimum variance, Ledoit-Wolf covariance, monthly"),
    "xs_momentum": RuleSpec("portfolio", CrossSectionalMomentumParams, xs_momentum,
                            "top k by 12-1 month return, equal weight, monthly"),
}


@dataclass(frozen=True)
class Rule:
    """A named rule with its validated parameters."""

    name: str
    params: RuleParams

    @property
    def spec(self) -> RuleSpec:
        return RULES[self.name]

    @property
    def kind(self) -> RuleKind:
        return self.spec.kind

    def require(self, kind: RuleKind, where: str) -> None:
        """Raises ConfigError unless this rule is of ``kind`` (``where``: what it was asked
        to run on, for the message)."""
        if self.kind != kind:
            raise ConfigError(f"rule {self.name!r} is {KIND_WORDS[self.kind]}; it cannot run "
                              f"on {where} (use one of {rule_names(kind)})")


def rule_names(kind: RuleKind | None = None) -> list[str]:
    """The known rules' names (of one kind)."""
    return [name for name, spec in RULES.items() if kind is None or spec.kind == kind]


def rule_from_config(name: str, config: Any) -> Rule:
    """The rule ``name`` with the parameters of ``config``'s ``rules`` section (a
    TrainConfig: ``--set rules.momentum.lookback=126``); ConfigError naming an unknown rule."""
    if name not in RULES:
        raise ConfigError(f"unknown rule {name!r}; known rules: {', '.join(RULES)}")
    return Rule(name=name, params=config.rules.params(name))


def rule_for(name: str, **params: Any) -> Rule:
    """The rule ``name`` with ``params`` over its defaults; ConfigError naming an unknown
    rule (and the known ones) or the bad parameter."""
    spec = RULES.get(name)
    if spec is None:
        raise ConfigError(f"unknown rule {name!r}; known rules: {', '.join(RULES)}")
    if spec.params is RuleParams and params:
        raise ConfigError(f"rule {name!r} takes no parameters, got {sorted(params)}")
    return Rule(name=name, params=spec.params.parse(params))


__all__ = ["RULES", "Rule", "RuleKind", "RuleSpec", "rule_for", "rule_from_config", "rule_names"]
