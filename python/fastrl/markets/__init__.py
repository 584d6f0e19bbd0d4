"""Markets: one object per config that owns everything that differs between a single-symbol
and a portfolio run. :func:`market_for` is the only place that asks which kind a config is."""

from __future__ import annotations

from fastrl.config import TrainConfig
from fastrl.markets.base import ActionSpec, Market
from fastrl.markets.portfolio import PortfolioMarket
from fastrl.markets.single import SingleMarket


def market_for(config: TrainConfig) -> Market:
    """The market a validated TrainConfig describes: a portfolio over its symbols when
    ``portfolio.enabled``, else each symbol traded on its own."""
    if config.portfolio.enabled:
        return PortfolioMarket(config)
    return SingleMarket(config)


__all__ = ["ActionSpec", "Market", "PortfolioMarket", "SingleMarket", "market_for"]
