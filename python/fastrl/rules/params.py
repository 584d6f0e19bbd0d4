"""Each rule's parameters: typed, validated, with the literature's defaults.

Frozen pydantic models like the commands' settings (:class:`fastrl.typed_settings.Settings`):
unknown keys are refused, no float may be inf or nan, and a bad value raises
:class:`fastrl.config.ConfigError` naming the rule, the key and the value as given.

Windows count bars; the defaults assume daily bars (252 a year, 21 a month).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, ValidationInfo, field_validator

from fastrl.typed_settings import Settings

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


__all__ = ["CrossSectionalMomentumParams", "DailyAverageParams", "InverseVolParams",
           "MinVarianceParams", "MomentumParams", "MonthlyAverageParams", "Rebalance",
           "RuleParams", "VolTargetParams"]
