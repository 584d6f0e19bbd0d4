"""The rules by name: ``RULES`` (name -> spec) and :func:`rule_for`.

A :class:`Rule` is a name, its kind ("single": one symbol at a time, on a
:class:`~fastrl.data.block.MarketBlock`; "portfolio": weights over a
:class:`~fastrl.data.panel.PanelBlock`) and its validated parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

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


class Warmup(NamedTuple):
    """The history a rule's first decision reads: ``count`` bars (rows of marks for a
    portfolio rule) or, for a rule deciding on month-end closes, ``count`` month ends. With
    less the rule is flat (cash); on a rising series its first decision that is not flat
    comes at the row where the history reaches it (a monthly rule: at the first month end
    from there)."""

    count: int
    unit: Literal["bars", "month ends"] = "bars"


def _no_warmup(_params: Any) -> Warmup:
    return Warmup(1)


def _window_of_returns(params: Any) -> Warmup:
    # ``window`` returns need one close more
    return Warmup(int(params.window) + 1)


def _lookback(params: Any) -> Warmup:
    # the close ``lookback`` bars before the decision bar, and that bar
    return Warmup(int(params.lookback) + 1)


def _monthly(params: Any) -> bool:
    return bool(params.rebalance == "monthly")


@dataclass(frozen=True)
class RuleSpec:
    """How a rule decides. ``decide`` is a single rule's exposure function (see
    :mod:`fastrl.rules.single`) or a portfolio rule's weight function (see
    :mod:`fastrl.rules.portfolio`); a portfolio rule trades on its first step only
    (``schedule="once"``) or on every month's first fill (``"monthly"``). ``warmup``
    gives the rule's warm-up from its parameters; ``month_ends`` whether a single rule's
    decision reads the month-end rows (with False its ``decide`` ignores them)."""

    kind: RuleKind
    params: type[RuleParams]
    decide: Callable[..., Any]
    summary: str
    schedule: Literal["once", "monthly"] = "monthly"
    warmup: Callable[[Any], Warmup] = _no_warmup
    month_ends: Callable[[Any], bool] = lambda _params: False


RULES: Mapping[str, RuleSpec] = {
    "buy_and_hold": RuleSpec("single", RuleParams, buy_and_hold,
                             "fully invested throughout"),
    "voltarget": RuleSpec("single", VolTargetParams, voltarget,
                          "exposure = target vol / trailing vol, capped at 1",
                          warmup=_window_of_returns, month_ends=_monthly),
    "momentum": RuleSpec("single", MomentumParams, momentum,
                         "long when the 12-1 month return is positive, else flat",
                         warmup=_lookback, month_ends=_monthly),
    "ma10": RuleSpec("single", MonthlyAverageParams, ma10,
                     "long when the month-end close is above its 10-month average",
                     warmup=lambda p: Warmup(int(p.months), "month ends"),
                     month_ends=lambda _params: True),
    "ma200": RuleSpec("single", DailyAverageParams, ma200,
                      "long when the close is above its 200-day average",
                      # an average of closes, not of returns
                      warmup=lambda p: Warmup(int(p.window))),
    "ew_hold": RuleSpec("portfolio", RuleParams, equal_weight,
                        "equal weight bought once and held", schedule="once"),
    "ew_monthly": RuleSpec("portfolio", RuleParams, equal_weight,
                           "equal weight rebalanced monthly"),
    "inverse_vol": RuleSpec("portfolio", InverseVolParams, inverse_vol,
                            "weights proportional to 1 / trailing vol, monthly",
                            warmup=_window_of_returns),
    "min_variance": RuleSpec("portfolio", MinVarianceParams, min_variance,
                             "long-only minimum variance, Ledoit-Wolf covariance, monthly",
                             warmup=_window_of_returns),
    "xs_momentum": RuleSpec("portfolio", CrossSectionalMomentumParams, xs_momentum,
                            "top k by 12-1 month return, equal weight, monthly",
                            warmup=_lookback),
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

    @property
    def warmup(self) -> Warmup:
        """The history this rule's first decision reads (see :class:`Warmup`)."""
        return self.spec.warmup(self.params)

    @property
    def reads_month_ends(self) -> bool:
        """Whether this single rule's decision reads which rows end a month (a monthly
        rule); the others decide the same without them."""
        return self.spec.month_ends(self.params)

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


__all__ = ["RULES", "Rule", "RuleKind", "RuleSpec", "Warmup", "rule_for", "rule_from_config",
           "rule_names"]
