"""What every market kind provides: the :class:`Market` protocol and the :class:`ActionSpec`
its policies' action head follows.

A market is one config's view of the bars and the simulator: how its bars load and split,
which env steps them, what a policy outputs and how a policy is judged. Everything that
differs between a single-symbol and a portfolio run lives behind this protocol, so the
engine, tuner, walk-forward and live path call a market and never ask which kind it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    import pandas as pd

    from fastrl.config import TrainConfig
    from fastrl.metrics import PerformanceMetrics

Distribution = Literal["categorical", "gaussian", "simplex"]


@dataclass(frozen=True)
class ActionSpec:
    """The action a market's policy outputs, as its action head must produce it.

    - ``categorical``: an index into ``size`` position levels;
    - ``gaussian``: one target exposure clipped to [``low``, ``high``];
    - ``simplex``: ``size`` logits (symbols then cash) mapped to long-only weights with no
      weight above ``max_weight`` and a gross exposure of at most ``max_gross``.
    """

    distribution: Distribution
    size: int
    low: float = 0.0
    high: float = 1.0
    max_weight: float = 1.0
    max_gross: float = 1.0


class Market(Protocol):
    """One config's market. Built by :func:`fastrl.markets.market_for`, the only place that
    asks which kind a config is."""

    kind: ClassVar[str]  # "single" or "portfolio"
    config: TrainConfig

    @property
    def env_config(self) -> Any:
        """The env's own config (the kind's ``EpisodeConfig`` subclass) built from the
        TrainConfig."""
        ...

    def load(self, normaliser_state: dict | None = None) -> Any:
        """The train/val/test splits the config's data section describes."""
        ...

    def from_bars(self, bars: Mapping[str, pd.DataFrame], *, test_days: int = 30,
                  val_days: int = 0, normaliser_state: dict | None = None,
                  source: str = "memory", test_start: pd.Timestamp | str | None = None) -> Any:
        """Featurise, split and pack already validated bars (the config's freq and window):
        the one home of building a market from bars."""
        ...

    def obs_dim(self, block: Any) -> int:
        """Length of one observation row of an env over ``block``."""
        ...

    def make_env(self, block: Any, num_envs: int, *, num_threads: int, seed: int,
                 buffers: dict | None = None, env_config: Any = None) -> Any:
        """A vector env of ``num_envs`` over ``block`` (``env_config`` defaults to
        :attr:`env_config`)."""
        ...

    def action_spec(self) -> ActionSpec:
        ...

    def evaluate(self, policy: Any, block: Any, *, env_config: Any = None,
                 info: dict[str, Any] | None = None, baselines: bool = True) -> Any:
        """The deterministic backtest of ``policy`` on ``block`` (with the baselines)."""
        ...

    def validation_scores(self, agent: Any, block: Any, *, env_config: Any = None,
                          returns: bool = False) -> dict[str, Any]:
        """``sharpe`` and ``return`` of the agent's deterministic backtest on ``block``
        (and the per-bar ``returns`` the Sharpe comes from)."""
        ...


class ResultUncertainty(Protocol):
    """A result's error bars: per-strategy Sharpe statistics and the headline verdict."""

    @property
    def verdict(self) -> str: ...

    def as_dict(self) -> dict[str, Any]: ...


@runtime_checkable
class Result(Protocol):
    """What evaluating a policy on a block gives, whatever the market kind
    (:class:`fastrl.markets.single.result.EvalResult`,
    :class:`fastrl.markets.portfolio.backtest.PortfolioResult`).

    ``metrics(strategy=...)`` is the headline book of a strategy: the equal-capital
    combined portfolio of a single-symbol run, the portfolio itself for a portfolio run
    (pass ``strategy`` by keyword: a single-symbol result also takes a symbol first).
    ``uncertainty()`` and ``verdict`` need the baselines; ``steps_frame()`` is one row per
    step per strategy (what ``test_returns.csv`` holds); ``to_dict()`` is JSON-ready.
    """

    def metrics(self, *, strategy: str = "agent") -> PerformanceMetrics: ...

    def uncertainty(self) -> ResultUncertainty: ...

    @property
    def verdict(self) -> str: ...

    def steps_frame(self) -> pd.DataFrame: ...

    def to_dict(self) -> dict[str, Any]: ...


__all__ = ["ActionSpec", "Distribution", "Market", "Result", "ResultUncertainty"]
