"""The names of the strategies a backtest reports, for both market kinds.

Plain constants below the markets and the reports: the markets' backtests produce results
under these names and the report documents read them, so neither imports the other for a
name.
"""

from __future__ import annotations

# single-symbol backtests: the agent beside buy-and-hold and staying flat, per symbol and
# combined over the symbols with equal capital
STRATEGIES = ("agent", "buy_and_hold", "flat")
# the classical rules (fastrl.rules) as a table names them beside the agent
RULE_LABELS = {"buy_and_hold": "buy & hold", "voltarget": "vol target",
               "momentum": "TS momentum 12-1", "ma10": "10-month MA", "ma200": "200-day MA",
               "ew_hold": "equal weight, held", "ew_monthly": "equal weight, monthly",
               "inverse_vol": "inverse vol", "min_variance": "min variance (Ledoit-Wolf)",
               "xs_momentum": "XS momentum 12-1"}
STRATEGY_LABELS = {"agent": "agent", "buy_and_hold": "buy & hold", "flat": "flat",
                   **RULE_LABELS}
COMBINED = "ALL"

# portfolio backtests: the agent beside equal weight (monthly, held) and each symbol held
# alone (``bh:<SYMBOL>``)
AGENT = "agent"
EW_MONTHLY = "ew_monthly"
EW_HOLD = "ew_hold"
BENCHMARK = EW_HOLD  # the verdict's benchmark: equal-weight buy-and-hold
LABELS = {**RULE_LABELS, AGENT: "agent"}


def strategy_label(strategy: str) -> str:
    """Table heading of a portfolio strategy ("buy & hold BPCL" for ``bh:BPCL``)."""
    if strategy.startswith("bh:"):
        return f"buy & hold {strategy[3:]}"
    return LABELS.get(strategy, strategy)


__all__ = ["AGENT", "BENCHMARK", "COMBINED", "EW_HOLD", "EW_MONTHLY", "LABELS", "RULE_LABELS",
           "STRATEGIES", "STRATEGY_LABELS", "strategy_label"]
