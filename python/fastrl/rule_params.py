"""Each rule's parameters: typed, validated, with the literature's defaults.

Frozen pydantic models like the commands' settings (:class:`fastrl.typed_settings.Settings`):
unknown keys are refused, no float may be inf or nan, and a bad value raises
:class:`fastrl.config.ConfigError` naming the rule, the key and the value as given.

A config carries them in its ``rules`` section (:class:`RuleSettings`, one model per rule
with parameters), set like any key: ``--set rules.momentum.lookback=126`` or, in a config
file, ``rules: {momentum: {lookback: 126}}``. This module sits beside
:mod:`fastrl.config` and loads no simulator, so the config can hold them.

Windows count bars; the defaults assume daily bars (252 a year, 21 a month).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator

from fastrl.config_types import SECTION_RULES, ConfigError
from fastrl.typed_settings import Settings, error_words

Rebalance = Literal["daily", "monthly"]


def _skip_inside_lookback(skip: int, info: ValidationInfo) -> int:
    lookback = info.data.get("lookback")
    if lookback is not None and skip >= lookback:
        raise ValueError(f"must be < lookback ({lookback})")
    return skip


class RuleParams(Settings):
    """A rule's parameters (a rule without any has this empty model)."""

    label: ClassVar[str] = "rule setting"


class VolTargetParams(RuleParams):
    """Volatility-targeted buy-and-hold: exposure = ``target_vol`` / trailing realised vol.

    10 % a year is the target of Harvey, Hoyle, Korgaonkar, Rattray, Sargaison and Van Hemert
    (2018, "The impact of volatility targeting"); the 60-bar window is the 60-day centre of
    mass of Moskowitz, Ooi and Pedersen's (2012) ex-ante volatility, here a plain rolling
    window; monthly rebalancing is Moreira and Muir's (2017, "Volatility-managed portfolios").
    ``max_exposure`` 1 caps it at the whole equity (no leverage under delivery).
    """

    label: ClassVar[str] = "voltarget setting"
    target_vol: float = Field(0.10, gt=0)
    window: int = Field(60, ge=2)
    max_exposure: float = Field(1.0, gt=0, le=1)
    rebalance: Rebalance = "monthly"


class MomentumParams(RuleParams):
    """Time-series momentum (Moskowitz, Ooi and Pedersen 2012): long when the return from
    ``lookback`` bars ago to ``skip`` bars ago is positive, else flat; 12 months skipping
    the last (Jegadeesh and Titman's 12-1), rebalanced monthly as in the paper."""

    label: ClassVar[str] = "momentum setting"
    lookback: int = Field(252, ge=2)
    skip: int = Field(21, ge=0)
    rebalance: Rebalance = "monthly"

    _skip = field_validator("skip")(_skip_inside_lookback)


class MonthlyAverageParams(RuleParams):
    """Faber (2007, "A quantitative approach to tactical asset allocation"): at each month
    end, long when the month-end close is above the average of the last ``months``
    month-end closes (the current one included), else flat."""

    label: ClassVar[str] = "ma10 setting"
    months: int = Field(10, ge=1)


class DailyAverageParams(RuleParams):
    """Close above its ``window``-bar simple moving average (the 200-day average of Siegel's
    "Stocks for the Long Run" and Brock, Lakonishok and LeBaron 1992), decided daily."""

    label: ClassVar[str] = "ma200 setting"
    window: int = Field(200, ge=1)


class InverseVolParams(RuleParams):
    """Weights proportional to 1 / trailing volatility of ``window`` daily returns (naive
    risk parity, e.g. Kirby and Ostdiek 2012), rebalanced monthly."""

    label: ClassVar[str] = "inverse_vol setting"
    window: int = Field(60, ge=2)


class MinVarianceParams(RuleParams):
    """Long-only minimum variance on a Ledoit-Wolf (2004) shrunk covariance of ``window``
    daily returns (one year; DeMiguel, Garlappi and Uppal 2009 compare it with equal
    weight), rebalanced monthly."""

    label: ClassVar[str] = "min_variance setting"
    window: int = Field(252, ge=3)


class CrossSectionalMomentumParams(RuleParams):
    """Cross-sectional 12-1 momentum (Jegadeesh and Titman 1993): each month the ``top_k``
    symbols with the highest return from ``lookback`` to ``skip`` bars ago, equal weight.
    10 of the 30 bundled symbols is the top third."""

    label: ClassVar[str] = "xs_momentum setting"
    lookback: int = Field(252, ge=2)
    skip: int = Field(21, ge=0)
    top_k: int = Field(10, ge=1)

    _skip = field_validator("skip")(_skip_inside_lookback)


@dataclass
class RuleSettings:
    """The ``rules`` section of a config: each parameterised rule's settings, under the
    rule's name (the rules without parameters have no entry)."""

    __pydantic_config__ = SECTION_RULES

    voltarget: VolTargetParams = field(default_factory=VolTargetParams)
    momentum: MomentumParams = field(default_factory=MomentumParams)
    ma10: MonthlyAverageParams = field(default_factory=MonthlyAverageParams)
    ma200: DailyAverageParams = field(default_factory=DailyAverageParams)
    inverse_vol: InverseVolParams = field(default_factory=InverseVolParams)
    min_variance: MinVarianceParams = field(default_factory=MinVarianceParams)
    xs_momentum: CrossSectionalMomentumParams = field(default_factory=CrossSectionalMomentumParams)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {f.name: getattr(self, f.name).to_dict() for f in dataclasses.fields(self)}

    def params(self, rule: str) -> RuleParams:
        """The settings of ``rule`` (an empty model for a rule without parameters)."""
        return getattr(self, rule, None) or RuleParams()

    def set(self, key: str, value: Any) -> None:
        """Set ``<rule>.<parameter>`` (the part of a config key after ``rules.``) in place,
        validated against the rule's whole settings (a cross-key rule such as skip <
        lookback included); ConfigError naming the full key otherwise."""
        names = [f.name for f in dataclasses.fields(self)]
        rule, _, param = key.partition(".")
        if rule not in names or not param or "." in param:
            known = [f"rules.{n}.{p}" for n in names for p in type(getattr(self, n)).model_fields]
            raise ConfigError(f"unknown config key 'rules.{key}'; known rules keys: "
                              f"{', '.join(known)}")
        current = getattr(self, rule)
        fields = type(current).model_fields
        if param not in fields:
            raise ConfigError(f"unknown config key 'rules.{key}'; known keys of rule {rule!r}: "
                              f"{', '.join(f'rules.{rule}.{p}' for p in fields)}")
        try:
            updated = type(current).model_validate({**current.to_dict(), param: value})
        except ValidationError as exc:
            error = exc.errors(include_url=False)[0]
            raise ConfigError(f"config key 'rules.{key}' {error_words(error)}, got "
                              f"{value!r}") from None
        setattr(self, rule, updated)


__all__ = ["CrossSectionalMomentumParams", "DailyAverageParams", "InverseVolParams",
           "MinVarianceParams", "MomentumParams", "MonthlyAverageParams", "Rebalance",
           "RuleParams", "RuleSettings", "VolTargetParams"]
