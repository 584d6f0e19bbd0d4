"""Markets: one object per config that owns everything that differs between a single-symbol
and a portfolio run. :func:`market_for` is the only place that asks which kind a config is."""

from __future__ import annotations

from typing import Any

from fastrl.config import TrainConfig
from fastrl.markets.base import ActionSpec, ConsoleTable, Market
from fastrl.markets.portfolio import PortfolioMarket
from fastrl.markets.single import SingleMarket


def market_for(config: TrainConfig) -> Market:
    """The market a validated TrainConfig describes: a portfolio over its symbols when
    ``portfolio.enabled``, else each symbol traded on its own."""
    if not isinstance(config, TrainConfig):
        raise TypeError(f"market_for needs a TrainConfig, got {type(config).__name__}")
    if config.portfolio.enabled:
        return PortfolioMarket(config)
    return SingleMarket(config)


# the config overrides that make a config describe each kind (market_for's inverse)
KIND_OVERRIDES: dict[str, dict[str, Any]] = {"single": {"portfolio.enabled": False},
                                              "portfolio": {"portfolio.enabled": True}}


def kind_overrides(kind: str) -> dict[str, Any]:
    """The config overrides (``--set`` keys) that make a config a market of ``kind``."""
    if kind not in KIND_OVERRIDES:
        raise ValueError(f"unknown market kind {kind!r}; known: {sorted(KIND_OVERRIDES)}")
    return dict(KIND_OVERRIDES[kind])


__all__ = ["KIND_OVERRIDES", "ActionSpec", "ConsoleTable", "Market", "PortfolioMarket",
           "SingleMarket", "kind_overrides", "market_for"]
