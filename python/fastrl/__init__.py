"""fastrl: fast reinforcement-learning trading agents.

A C++ multithreaded batched market simulator (``fastrl._core``) behind a gymnasium
VectorEnv (:class:`fastrl.markets.single.env.TradingVecEnv`), a PyTorch PPO trainer and honest
backtests. Heavy submodules load lazily so ``import fastrl.data`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "TradingVecEnv": "fastrl.markets.single.env",
    "EnvConfig": "fastrl.env_config",
    "make_env": "fastrl.markets.single.env",
    "make_portfolio_env": "fastrl.markets.portfolio.env",
    "MarketBlock": "fastrl.data.block",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fastrl' has no attribute {name!r}")
