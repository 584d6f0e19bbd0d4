"""The single-symbol market: each symbol traded on its own by a TradingVecEnv."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd

from fastrl.data.market import load_market
from fastrl.data.splits import build_market_from_bars
from fastrl.env import AGENT_STATE_DIMS, EnvConfig, TradingVecEnv
from fastrl.markets.base import ActionSpec
from fastrl.markets.single.backtest import evaluate_agent
from fastrl.markets.single.result import COMBINED

if TYPE_CHECKING:
    from fastrl.config import TrainConfig


class SingleMarket:
    """Per-symbol long/flat (or long/short) timing: one env row trades one symbol segment."""

    kind: ClassVar[str] = "single"

    def __init__(self, config: TrainConfig) -> None:
        self.config = config

    @property
    def env_config(self) -> EnvConfig:
        return self.config.env

    def load(self, normaliser_state: dict | None = None) -> Any:
        return load_market(self.config, normaliser_state)

    def from_bars(self, bars: Mapping[str, pd.DataFrame], *, test_days: int = 30,
                  val_days: int = 0, normaliser_state: dict | None = None,
                  source: str = "memory", test_start: pd.Timestamp | str | None = None) -> Any:
        return build_market_from_bars(dict(bars), self.config.data.freq, test_days=test_days,
                     val_days=val_days, window=self.config.env.window,
                     normaliser_state=normaliser_state, source=source, test_start=test_start)

    def obs_dim(self, block: Any) -> int:
        return self.config.env.window * block.num_features + AGENT_STATE_DIMS

    def make_env(self, block: Any, num_envs: int, *, num_threads: int, seed: int,
                 buffers: dict | None = None, env_config: Any = None) -> TradingVecEnv:
        return TradingVecEnv(block, num_envs, env_config or self.env_config,
                             num_threads=num_threads, seed=seed, buffers=buffers)

    def action_spec(self) -> ActionSpec:
        env = self.config.env
        if env.action == "continuous":
            return ActionSpec("gaussian", 1, low=float(env.min_pos), high=float(env.max_pos))
        return ActionSpec("categorical", len(env.position_levels))

    def evaluate(self, policy: Any, block: Any, *, env_config: Any = None,
                 info: dict[str, Any] | None = None, baselines: bool = True) -> Any:
        return evaluate_agent(policy, block, env_config or self.env_config, info=info,
                              baselines=baselines)

    def validation_scores(self, agent: Any, block: Any, *, env_config: Any = None,
                          returns: bool = False) -> dict[str, Any]:
        result = self.evaluate(agent, block, env_config=env_config, baselines=False)
        combined = result.combined["agent"]
        out: dict[str, Any] = {"sharpe": float(combined.sharpe),
                               "return": float(combined.total_return)}
        if returns:
            out["returns"] = np.asarray(result.returns(COMBINED, "agent"), dtype=np.float64)
        return out


__all__ = ["SingleMarket"]
