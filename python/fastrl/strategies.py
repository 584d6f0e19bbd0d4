"""The names of the strategies a backtest reports, for both market kinds.

Plain constants below the markets and the reports: the markets' backtests produce results
under these names and the report documents read them, so neither imports the other for a
name.
"""

from __future__ import annotations

# single-symbol backtests: the agent beside buy-and-hold and staying flat, per symbol and
# combined over the symbols with equal capital
STRATEGIES = ("agent", "buy_and_hold", "flat")
STRATEGY_LABELS = {"agent": "agent", "buy_and_hold": "buy & hold", "flat": "flat"}
COMBINED = "ALL"

# portfolio backtests: the agent beside equal weight (monthly, held) and each symbol held
# alone (``bh:<SYMBOL>``)
AGENT = "agent"
EW_MONTHLY = "ew_monthly"
EW_HOLD = "ew_hold"
BENCHMARK = EW_HOLD  # the verdict's benchmark: equal-weight buy-and-hold
LABELS = {AGENT: "agent", EW_MONTHLY: "equal weight, monthly", EW_HOLD: "equal weight, held"}


def strategy_label(strategy: str) -> str:
    """Table heading of a portfolio strategy ("buy & hold BPCL" for ``bh:BPCL``)."""
    if strategy.startswith("bh:"):
        return f"buy & hold {strategy[3:]}"
    return LABELS.get(strategy, strategy)


__all__ = ["AGENT", "BENCHMARK", "COMBINED", "EW_HOLD", "EW_MONTHLY", "LABELS", "STRATEGIES",
           "STRATEGY_LABELS", "strategy_label"]
