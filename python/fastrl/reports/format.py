"""The formatting helpers every report shares: numbers, probabilities, Sharpe intervals and
standard errors, the mean active return with its p-value, strict JSON, and the metric rows
of a backtest table.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from fastrl.metrics import bars_per_day

REPORT_METRICS = (
    "total_return",
    "annual_return",
    "annual_volatility",
    "sharpe",
    "sortino",
    "calmar",
    "max_drawdown",
    "max_drawdown_days",
    "win_rate_trades",
    "win_rate_bars",
    "profit_factor",
    "num_trades",
    "num_round_trips",
    "trades_per_day",
    "avg_holding_days",
    "turnover",
    "exposure",
    "time_in_market",
    "costs_paid",
    "cost_fraction",
    "final_equity",
)


def json_safe(value: Any) -> Any:
    """Strict JSON: infinities and NaN as strings, numpy scalars and paths as plain values."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else str(float(value))
    if value is None or isinstance(value, str):
        return value
    return str(value)


def format_number(value: float | None, spec: str = ".2f") -> str:
    """``format(value, spec)``, or "n/a" for a missing or non-finite value."""
    return "n/a" if value is None or not math.isfinite(value) else format(value, spec)


def format_probability(value: float) -> str:
    """A probability as a percentage ("n/a" where it could not be estimated)."""
    return "n/a" if not math.isfinite(value) else f"{100.0 * value:.1f}%"


def format_interval(low: float, high: float) -> str:
    """A Sharpe interval as "[low, high]" ("n/a" where it could not be estimated)."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return "n/a"
    return f"[{low:.2f}, {high:.2f}]"


def format_se(stats_: Any) -> str:
    """A Sharpe SE with the estimate it is ("n/a" where it could not be estimated)."""
    if not math.isfinite(stats_.se):
        return "n/a"
    method = "bootstrap" if stats_.se_method == "bootstrap" else "Lo/Mertens"
    return f"{stats_.se:.3f} ({method})"


def format_active(versus: Any) -> str:
    """The mean active return a day (a bar) with its one-sided p ("n/a": no test)."""
    if not math.isfinite(versus.p_value):
        return "n/a"
    # deferred: fastrl.stats imports arch, which takes seconds; formatting must not pay it
    from fastrl.stats import format_p_value

    unit = "day" if bars_per_day(versus.freq) == 1.0 else "bar"
    return f"{100 * versus.mean_active:+.3f}% a {unit} ({format_p_value(versus.p_value)})"


def format_policy_setup(config: dict[str, Any]) -> str:
    """The action mode and the reward the policy trained on, from an env config's dict (a
    portfolio's has ``max_weight``; a config saved before those keys: absolute actions)."""
    portfolio = "max_weight" in config
    mode = config.get("action_mode", "absolute")
    if mode != "anchored":
        actions = "absolute (the target itself)"
    elif portfolio:
        actions = ("anchored (equal weight plus a tilt, and an underweight in cash of at "
                   f"most {config.get('max_underweight')})")
    else:
        actions = "anchored (an underweight u from buy-and-hold: exposure = 1 - u)"
    reward = config.get("reward")
    if reward is None:
        return f"action mode: {actions}"
    if reward in ("diff_sharpe", "vol_scaled"):
        reward = f"{reward} of {config.get('reward_base', 'absolute')} returns"
    elif reward == "active":
        reward = "active (the step's return minus the benchmark's, costs included)"
    return f"action mode: {actions}; reward: {reward}"


def ensemble_line(info: dict[str, Any]) -> list[str]:
    """The report's and console's line on an ensemble's members (none for one policy)."""
    spread = info.get("ensemble")
    if not spread:
        return []
    return [f"Ensemble of {spread['members']} members acting with the mean of their exposures:"
            f" Sharpe {spread['ensemble']:+.2f}; each member trading alone: min "
            f"{spread['min']:+.2f}, median {spread['median']:+.2f}, max {spread['max']:+.2f}"]


__all__ = ["REPORT_METRICS", "ensemble_line", "format_active", "format_interval",
           "format_number", "format_policy_setup", "format_probability", "format_se",
           "json_safe"]
