"""What the live path reads of a policy's config, shared by a trained run
(:class:`fastrl.live.run.LiveRun`) and a classical rule (:class:`fastrl.live.rule.RuleRun`)."""

from __future__ import annotations

from functools import cached_property

from fastrl.config import TrainConfig
from fastrl.markets import Market, market_for


class ConfigView:
    """What the live path reads of a policy's config (a trained run's or a rule's): its
    market, symbols, bar size and observation window."""

    config: TrainConfig

    @cached_property
    def market(self) -> Market:
        """The run's market: its kind builds the live blocks, env and book."""
        return market_for(self.config)

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(self.config.data.symbols)

    @property
    def freq(self) -> str:
        return str(self.config.data.freq)

    @property
    def window(self) -> int:
        return int(self.config.env.window)


__all__ = ["ConfigView"]
