"""Classical trading rules as policies: deterministic schedules of target exposures
(one symbol) or weights (a portfolio), decided at the close from causal bars and stepped
through the agent's simulator with the agent's costs and market rules.

``rule_for("momentum", lookback=252)`` builds a rule with validated parameters;
:func:`backtest_rule` runs it on a block. See :mod:`fastrl.rule_params` for each rule's
definition, defaults and sources.
"""

from fastrl.rules.backtest import (
    backtest_portfolio,
    backtest_rule,
    backtest_single,
    exposure_schedule,
    weight_schedule,
)
from fastrl.rules.registry import (
    RULES,
    Rule,
    RuleSpec,
    Warmup,
    rule_for,
    rule_from_config,
    rule_names,
)

__all__ = ["RULES", "Rule", "RuleSpec", "Warmup", "backtest_portfolio", "backtest_rule",
           "backtest_single", "exposure_schedule", "rule_for", "rule_from_config", "rule_names",
           "weight_schedule"]
