"""What every market kind provides: the :class:`Market` protocol and the :class:`ActionSpec`
its policies' action head follows.

A market is one config's view of the bars and the simulator: how its bars load and split,
which env steps them, what a policy outputs and how a policy is judged. Everything that
differs between a single-symbol and a portfolio run lives behind this protocol, so the
engine, tuner, walk-forward and live path call a market and never ask which kind it is.

The env base both kinds' VectorEnvs build on lives here too: :class:`CoreVecEnv` (the
gymnasium face of a C++ simulator) and :func:`allocate_buffers` with the
``SIM_BUFFER_SPECS`` every simulator writes.
"""

from __future__ import annotations

import abc
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv

from fastrl.later_state import LATER_KEYS, missing_state, refused_state_message

if TYPE_CHECKING:
    import pandas as pd

    from fastrl.config import TrainConfig
    from fastrl.live.book import LiveEnv
    from fastrl.metrics import PerformanceMetrics
    from fastrl.walkforward.plan import Window

Distribution = Literal["categorical", "gaussian", "simplex"]


@dataclass(frozen=True)
class ActionSpec:
    """The action a market's policy outputs, as its action head must produce it.

    - ``categorical``: an index into ``size`` position levels;
    - ``gaussian``: one target exposure clipped to [``low``, ``high``];
    - ``simplex``: ``size`` logits (symbols then cash) mapped to long-only weights with no
      weight above ``max_weight`` and a gross exposure of at most ``max_gross``.

    ``anchored``: the action is a deviation from the benchmark (env action_mode 'anchored'):
    a categorical's levels are underweights (``anchor_level`` is the index of 0, the
    benchmark), a gaussian's value is the underweight, a simplex's logits tilt equal weight
    (symbols) and set an underweight in [0, ``high``] (the last one;
    :func:`fastrl.ppo.simplex.tilt_weights`). Its policy starts at the benchmark
    (:meth:`anchor_bias`).
    """

    distribution: Distribution
    size: int
    low: float = 0.0
    high: float = 1.0
    max_weight: float = 1.0
    max_gross: float = 1.0
    anchored: bool = False
    anchor_level: int = 0

    def anchor_bias(self) -> tuple[float, ...] | None:
        """Anchored: the policy layer's initial bias (its weights start at zero) that makes
        the deterministic action the benchmark for every observation; None otherwise.

        A categorical's benchmark level starts with probability 3/4 (a logit of
        log(3 (K - 1)) against 0), so exploration goes on; a gaussian's mean and a simplex's
        mean logits start at 0 (no underweight, no tilt)."""
        if not self.anchored:
            return None
        if self.distribution != "categorical":
            return (0.0,) * (self.size if self.distribution == "simplex" else 1)
        lead = math.log(3.0 * (self.size - 1)) if self.size > 1 else 0.0
        return tuple(lead if k == self.anchor_level else 0.0 for k in range(self.size))


# The metrics a console table shows (report.md shows them all).
CONSOLE_METRICS = ("total_return", "annual_return", "sharpe", "sortino", "max_drawdown",
                   "win_rate_trades", "profit_factor", "num_trades", "trades_per_day",
                   "costs_paid", "final_equity")


@dataclass(frozen=True)
class ConsoleTable:
    """A backtest table as plain text cells: the CLI renders it."""

    title: str
    columns: list[str]
    rows: list[list[str]]


class Market(Protocol):
    """One config's market. Built by :func:`fastrl.markets.market_for`, the only place that
    asks which kind a config is."""

    kind: ClassVar[str]  # "single" or "portfolio"
    title: ClassVar[str]  # what its backtest is called in a heading
    selected_by: ClassVar[str]  # the config setting that makes a config this kind
    tunable: ClassVar[bool]  # whether fastrl-tune and population-based training score it
    joins_late_listings: ClassVar[bool]  # whether a symbol may start trading after the others

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
                  source: str = "memory", test_start: pd.Timestamp | str | None = None,
                  train_start: pd.Timestamp | str | None = None) -> Any:
        """Featurise, split and pack already validated bars (the config's freq and window):
        the one home of building a market from bars. ``train_start``: the training rows
        start that day; the bars before it only warm the features up."""
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

    def evaluate_copies(self, policy: Any, block: Any, *, copies: int, env_config: Any = None,
                        baselines: bool = False) -> list[Any]:
        """:meth:`evaluate` of ``copies`` policies in one batched env: ``policy`` maps the
        observations [copies * S, D] (copy c's rows ``c * S .. c * S + S``) to actions; one
        result per copy, each the one it gets alone. A kind that backtests one policy per env
        raises ValueError."""
        ...

    def member_scores(self, engine: Any, members: list[int], block: Any) -> list[dict[str, Any]]:
        """:meth:`validation_scores` (with ``returns``) of each of a PPO engine's ``members``
        on ``block``: in one batched env (``engine.validation_evals``) where the kind can,
        else each member's copied agent (``engine.validation_agent(m)``) alone."""
        ...

    def describe(self) -> str:
        """The market in a few words, for a command's first line."""
        ...

    def evaluation_env_config(self) -> Any:
        """The backtest's env config: :attr:`env_config` with deterministic episodes over
        the whole block, the costs unchanged."""
        ...

    def test_block(self, agent: Any, *, symbols: Sequence[str] | None = None,
                   test_days: int | None = None, data: str | os.PathLike | None = None
                   ) -> tuple[Any, dict[str, Any]]:
        """(the held-out test block of a trained ``agent``, rebuilt with its feature
        normaliser, and what the report says about it); an EvaluationError on bad input."""
        ...

    def rung_history(self, agent: Any, block: Any, *,
                     data: str | os.PathLike | None = None, test_days: int | None = None
                     ) -> tuple[Any, Any]:
        """(history block, where the agent's first decision on ``block`` lies in it): every
        earlier row of the market ``block`` was cut from, for the ladder's rules
        (:mod:`fastrl.rungs`); each segment's first decision bar (one symbol) or the first
        decision row (a portfolio)."""
        ...

    def tables(self, result: Any) -> list[ConsoleTable]:
        """The console tables of a backtest result of this market."""
        ...

    def report(self, result: Any, out_dir: str | os.PathLike, *,
               training_metrics: str | os.PathLike | None = None) -> Any:
        """Writes the report document of ``result`` (report.md, report.html, report.json,
        plots and CSVs) into ``out_dir``; returns the files written."""
        ...

    def live_env_class(self) -> type[LiveEnv]:
        """The live path's env of this kind (a :class:`fastrl.live.book.LiveEnv`)."""
        ...

    def walkforward_record(self, bars: Mapping[str, pd.DataFrame], windows: Sequence[Window],
                           policies: Sequence[dict[str, Any]], *,
                           agent_for: Callable[[dict[str, Any]], Any],
                           block_for: Callable[[Window, Any], Any]) -> pd.DataFrame:
        """The out-of-sample record of every window's frozen policy trading its days in
        turn, the holding carried across the boundaries, beside buy-and-hold
        (:func:`fastrl.walkforward.run.trade_record`). ``agent_for(policy)``: a window's
        agent; ``block_for(window, agent)``: the block it trades."""
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


# the outputs every simulator writes: name -> (dtype, per-env shape: "obs" or a shape tuple)
SIM_BUFFER_SPECS = {
    "obs": (np.float32, "obs"),
    "rewards": (np.float64, ()),
    "terminated": (np.bool_, ()),
    "truncated": (np.bool_, ()),
    "done": (np.bool_, ()),
    "final_obs": (np.float32, "obs"),
    "ep_return": (np.float64, ()),
    "ep_length": (np.int64, ()),
    "ep_equity": (np.float64, ()),
    "ep_costs": (np.float64, ()),
    "ep_trades": (np.int64, ()),
    "ep_liquidation": (np.float64, ()),
}


def allocate_buffers(num_envs: int, obs_dim: int, specs: dict[str, tuple[Any, Any]],
                     given: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
    """Output buffers for a simulator: the caller's (checked) where given, else new arrays.

    ``specs`` maps each buffer's name to (dtype, "obs" or a per-env shape): SIM_BUFFER_SPECS
    plus what the kind's env adds (each env module's BUFFER_SPECS). A given buffer must be a
    numpy array (a torch tensor's ``.numpy()`` view is one): anything else would be copied by
    a conversion and the caller would never see the writes. Given buffers must not overlap
    each other in memory, or one output would overwrite another.
    """
    given = dict(given or {})
    unknown = sorted(set(given) - set(specs))
    if unknown:
        raise ValueError(f"unknown buffer names {unknown}; known: {sorted(specs)}")
    out: dict[str, np.ndarray] = {}
    for name, (dtype, per_env) in specs.items():
        shape = (num_envs, obs_dim) if per_env == "obs" else (num_envs, *per_env)
        if name not in given:
            out[name] = np.zeros(shape, dtype=dtype)
            continue
        arr = given[name]
        if not isinstance(arr, np.ndarray):
            raise ValueError(
                f"buffer '{name}' must be a numpy array (for a torch tensor pass "
                f"tensor.numpy()), got {type(arr).__module__}.{type(arr).__qualname__}")
        problems = []
        if arr.dtype != np.dtype(dtype):
            problems.append(f"dtype {arr.dtype} (need {np.dtype(dtype)})")
        if arr.shape != shape:
            problems.append(f"shape {arr.shape} (need {shape})")
        if not arr.flags.c_contiguous:
            problems.append("not C-contiguous")
        if not arr.flags.writeable:
            problems.append("read-only")
        if problems:
            raise ValueError(f"buffer '{name}' is unusable: {', '.join(problems)}")
        out[name] = arr
    # Contiguous arrays fill their address range, so overlapping bounds mean shared memory.
    names = [name for name in specs if name in given]
    for k, first in enumerate(names):
        for second in names[k + 1:]:
            if np.may_share_memory(out[first], out[second]):
                raise ValueError(
                    f"buffers '{first}' and '{second}' overlap in memory; every output "
                    "needs its own array")
    return out


class CoreVecEnv(VectorEnv, abc.ABC):
    """What the VectorEnvs over a C++ simulator share: argument checks, output buffers, the
    lazily built batched spaces, the same-step autoreset ``reset``/``step``, snapshots with
    the Python-side reset-seed sequence, and the buffer/thread views.

    A subclass builds ``self._sim`` and ``self._episode`` after :meth:`_setup`, and provides
    ``_batched_action_space()`` and ``_as_actions()`` (the slow path of ``step``: convert
    what is convertible or raise about the caller's array).
    """

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}
    core_state_keys: ClassVar[tuple[str, ...]]  # the simulator's state keys (the C++ core's)
    config: Any  # the env's EnvConfig or PortfolioConfig
    _sim: Any
    _episode: dict[str, np.ndarray]

    def _setup(self, num_envs: Any, num_threads: Any, seed: int, obs_dim: int,
               buffers: dict[str, Any] | None, specs: dict[str, tuple[Any, Any]]) -> None:
        if not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ValueError(f"num_envs must be an integer >= 1, got {num_envs!r}")
        if not isinstance(num_threads, (int, np.integer)) or num_threads < 1:
            raise ValueError(f"num_threads must be an integer >= 1, got {num_threads!r}")
        self.num_envs = int(num_envs)
        self.obs_dim = int(obs_dim)
        self._seed = int(seed) & (2**64 - 1)
        self._resets = 1  # the constructor starts episodes from `seed`
        self._buffers = allocate_buffers(self.num_envs, self.obs_dim, specs, buffers)
        self.single_observation_space = gym.spaces.Box(-np.inf, np.inf, (self.obs_dim,),
                                                       np.float32)
        self._batched_spaces: dict[str, gym.Space] = {}

    # The batched spaces hold bound arrays of [num_envs, ...] each; built on first use so
    # that 16k envs do not carry 2 x 17 MB of infinities nobody reads.
    @property
    def observation_space(self) -> gym.Space:
        if "obs" not in self._batched_spaces:
            self._batched_spaces["obs"] = gym.spaces.Box(
                -np.inf, np.inf, (self.num_envs, self.obs_dim), np.float32)
        return self._batched_spaces["obs"]

    @property
    def action_space(self) -> gym.Space:
        if "action" not in self._batched_spaces:
            self._batched_spaces["action"] = self._batched_action_space()
        return self._batched_spaces["action"]

    @abc.abstractmethod
    def _batched_action_space(self) -> gym.Space:
        """The batched action space (built on first use by ``action_space``)."""

    @abc.abstractmethod
    def _as_actions(self, actions: Any) -> np.ndarray:
        """``step``'s slow path: the caller's actions as the array the binding takes, or a
        ValueError about them."""

    # -- gymnasium API -------------------------------------------------------------------

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Starts new episodes in every env. A given seed fixes all per-env streams; without
        one, each reset draws the next seed of a deterministic sequence from the first."""
        if seed is not None:
            self._seed = int(seed) & (2**64 - 1)
            self._resets = 0
            stream_seed = self._seed
        else:
            stream_seed = (self._seed + 0x9E3779B97F4A7C15 * self._resets) & (2**64 - 1)
        self._resets += 1
        self._sim.reset(stream_seed)
        return self._buffers["obs"], {}

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                          dict[str, Any]]:
        try:  # fast path: the binding takes an exact array of its dtype and shape as it is
            self._sim.step(actions)
        except (ValueError, TypeError):
            # Convert what is convertible or raise a message about the caller's array; a
            # range error is raised again as it was.
            self._sim.step(self._as_actions(actions))
        b = self._buffers
        info = {"final_obs": b["final_obs"], "_final_obs": b["done"],
                "episode": self._episode, "_episode": b["done"]}
        return b["obs"], b["rewards"], b["terminated"], b["truncated"], info

    def close_extras(self, **kwargs: Any) -> None:
        self._sim = None

    # -- snapshots -----------------------------------------------------------------------

    def get_state(self) -> dict[str, np.ndarray]:
        """Copies of everything that determines future outputs: every per-env state array
        of the simulator plus the seed sequence that ``reset()`` without a seed continues
        (``reset_seed``, ``reset_count``; 0-d arrays)."""
        state = self._sim.get_state()
        state["reset_seed"] = np.array(self._seed, dtype=np.uint64)
        state["reset_count"] = np.array(self._resets, dtype=np.int64)
        return state

    def completed_state(self, state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``state`` with the simulator keys a snapshot saved by an older fastrl lacks
        (:mod:`fastrl.later_state`) at this env's values of them: a key this config
        never reads is never written, so it holds the same value in every env of this
        config and outputs do not depend on it. A ValueError names an absent later key this
        config reads; other absent keys are left to :meth:`set_state`'s checks."""
        if not isinstance(state, dict):
            return state
        fillable, refused = missing_state(self.core_state_keys, state, self.config,
                                          rewarded=True)
        later = [k for k in refused if k in LATER_KEYS]
        if later:
            raise ValueError(refused_state_message(later))
        if not fillable:
            return state
        current = self._sim.get_state()
        return {**state, **{k: current[k] for k in fillable}}

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        """Loads a ``get_state()`` snapshot (of this env or of another one built with the same
        market, config and num_envs; the thread count may differ). Names, dtypes, shapes and
        market indices are all checked before anything is written; a bad state raises a
        ValueError naming the key and leaves the env as it was. Afterwards the observation
        buffer (what ``reset``/``step`` return) holds the restored envs' current observation,
        and stepping the same actions gives bit-identical outputs to the original run. A
        snapshot saved before the simulator gained a key is completed first
        (:meth:`completed_state`)."""
        if not isinstance(state, dict):
            raise ValueError(f"state must be a dict of numpy arrays, got {type(state).__name__}")
        state = self.completed_state(state)
        own = {"reset_seed": np.uint64, "reset_count": np.int64}
        for key, dtype in own.items():
            if key not in state:
                raise ValueError(f"state is missing key '{key}'")
            value = state[key]
            if (not isinstance(value, np.ndarray) or value.dtype != np.dtype(dtype)
                    or value.shape != ()):
                got = (f"{value.dtype} of shape {value.shape}" if isinstance(value, np.ndarray)
                       else type(value).__name__)
                raise ValueError(f"state '{key}' must be a 0-d {np.dtype(dtype)} array; "
                                 f"got {got}")
        if state["reset_count"] < 0:
            raise ValueError(f"state 'reset_count' must be >= 0, got {int(state['reset_count'])}")
        self._sim.set_state({k: v for k, v in state.items() if k not in own})
        self._seed = int(state["reset_seed"])
        self._resets = int(state["reset_count"])

    # -- views ---------------------------------------------------------------------------

    @property
    def buffers(self) -> dict[str, np.ndarray]:
        """The output arrays the simulator writes in place."""
        return self._buffers

    @property
    def num_threads(self) -> int:
        return int(self._sim.num_threads)

    # Read-only views of the simulator's per-env state (no copies).
    shares = property(lambda self: self._sim.shares)
    cash = property(lambda self: self._sim.cash)
    equity = property(lambda self: self._sim.equity, doc="Equity marked at the current close.")
    bar_index = property(lambda self: self._sim.bar_index, doc="Current row of each env.")
    episode_costs = property(lambda self: self._sim.episode_costs)
    episode_trades = property(lambda self: self._sim.episode_trades)
    episode_steps = property(lambda self: self._sim.episode_steps)


__all__ = ["CONSOLE_METRICS", "SIM_BUFFER_SPECS", "ActionSpec", "ConsoleTable", "CoreVecEnv",
           "Distribution", "Market", "Result", "ResultUncertainty", "allocate_buffers"]
