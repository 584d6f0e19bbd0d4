"""What the backtests of both market kinds share: the evaluation error, the equity path every
backtest result is, and the policy adapter.

A single-symbol backtest (:mod:`fastrl.markets.single.result`) and a portfolio backtest
(:mod:`fastrl.markets.portfolio.backtest`) are both an :class:`EquityPath`; the results
holding them both follow :class:`fastrl.markets.base.Result`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from fastrl.metrics import PerformanceMetrics, returns_from_equity

BOOTSTRAP_SEED = 0  # fixed: the same backtest always prints the same Sharpe interval
PolicyFn = Callable[[np.ndarray], Any]


# a walk-forward record's columns (EquityPath.record_frame): the agent's, then its benchmark's
AGENT_COLUMNS = {"return": "agent_return", "cost": "cost", "cost_frac": "cost_frac",
                 "equity": "agent_equity"}
BENCHMARK_COLUMNS = {"return": "bh_return", "cost": "bh_cost", "equity": "bh_equity",
                     "cost_frac": "bh_cost_frac"}


class EvaluationError(ValueError):
    """Bad input for an evaluation: run folder, checkpoint, symbols, test days, data."""


class EquityPath:
    """What every backtest result is, single-symbol
    (:class:`fastrl.markets.single.result.Backtest`) or portfolio
    (:class:`fastrl.markets.portfolio.backtest.PortfolioBacktest`): one ``strategy``'s
    ``equity`` marked at the start and after each of its ``n`` steps (``n + 1`` marks,
    ``timestamps`` aligned with them), the ``step_costs`` paid (a final ``liquidation_cost``
    included), the ``terminated_step`` where equity hit the floor, and the ``metrics`` that
    ``finish()`` computes from them. Subclasses are dataclasses that add what they trade."""

    strategy: str
    freq: str
    equity: np.ndarray  # float64 [n + 1]
    step_costs: np.ndarray  # float64 [n]
    timestamps: np.ndarray | None
    liquidation_cost: float
    terminated_step: int | None
    metrics: PerformanceMetrics | None

    @property
    def num_steps(self) -> int:
        return int(self.equity.shape[0]) - 1

    @property
    def returns(self) -> np.ndarray:
        """Per-bar simple returns ``equity[1:] / equity[:-1] - 1``, the Sharpe's input."""
        return returns_from_equity(self.equity)

    def record_frame(self, names: dict[str, str]) -> pd.DataFrame:
        """A walk-forward record's columns of this path, one row per step at its mark's
        timestamp: ``names`` maps each of "return", "cost", "cost_frac" (the cost over the
        equity the step started from) and "equity" (after the step) to its column name, in
        the column order wanted."""
        marks = self.equity
        values = {"return": marks[1:] / marks[:-1] - 1.0, "cost": self.step_costs,
                  "cost_frac": self.step_costs / marks[:-1], "equity": marks[1:]}
        return pd.DataFrame({name: values[key] for key, name in names.items()},
                            index=pd.DatetimeIndex(self.timestamps[1:]))

    def step_columns(self, head: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        """The columns of one step-by-step table (a results frame's rows for this path):
        the mark's timestamp, ``head``, the step number, ``body``, then equity and return."""
        return {
            "timestamp": (self.timestamps[1:] if self.timestamps is not None
                          else np.full(self.num_steps, None)),
            **head,
            "step": np.arange(self.num_steps),
            **body,
            "equity": self.equity[1:],
            "return": self.returns,
        }


def as_policy_fn(policy: Any, output: str = "actions") -> PolicyFn:
    """An Agent's deterministic action (``policy.act``) or a plain function of observations."""
    act = getattr(policy, "act", None)
    if callable(act):
        return lambda obs: act(obs, deterministic=True)
    if callable(policy):
        return policy
    raise TypeError(
        f"policy must be an Agent (with .act) or a function obs -> {output}, got {type(policy)}"
    )


def acting_env_config(policy: Any, env_config: Any) -> Any:
    """The env config ``policy`` steps in when ``env_config`` describes the market: what the
    policy's ``acting_env`` makes of it (an ensemble of discrete members acts in the env's
    continuous twin, :mod:`fastrl.ppo.ensemble`), else ``env_config`` itself."""
    acting = getattr(policy, "acting_env", None)
    return env_config if acting is None else acting(env_config)


__all__ = ["AGENT_COLUMNS", "BENCHMARK_COLUMNS", "BOOTSTRAP_SEED", "EquityPath", "EvaluationError",
           "PolicyFn", "acting_env_config", "as_policy_fn"]
