"""PortfolioVecEnv: the gymnasium VectorEnv face of the C++ multi-asset portfolio simulator.

``num_envs`` portfolios over one :class:`~fastrl.data.panel.PanelBlock` of A symbols are
stepped at once in a persistent C++ thread pool with the GIL released. As with
:class:`fastrl.env.TradingVecEnv`, every returned array is a view of a buffer the simulator
overwrites on the next step, autoreset is ``SAME_STEP`` (``info["final_obs"]`` rows where
``info["_final_obs"]``), ``terminated`` means equity fell to the floor (no bootstrap) and
``truncated`` means length or data end (bootstrap). ``info["episode"]`` holds return ``r``,
length ``l``, final ``equity``, ``costs``, ``trades`` (executed orders) and ``turnover``
(sum over steps of traded notional / equity).

**Action**: an ``[N, A]`` array of target weights, fractions of equity per symbol; the
rest is cash (``cash weight = 1 - sum(w)``; negative when gross leverage is above 1).
Long-only by default; ``|w_a| <= max_weight`` and ``sum |w_a| <= max_gross`` (1e-9 slack
for rounding). Bad weights (NaN/inf, negative under long-only, a cap exceeded, wrong shape)
raise ValueError and leave every env unchanged.

**Execution** (see ``cpp/include/fastrl/portfolio.hpp``): weights chosen at row t are
filled at the open of row t+1 (``execution="next_open"``) or at the close of row t
(``"close"``, optimistic). A name that is untradable at the fill row is not traded; its
shares stay. Each executed order pays the cost model (per leg: rates, brokerage cap, fixed
fees); ``integer_shares`` rounds each order toward zero to whole shares; legs smaller than
``trade_band`` x equity are skipped. Equity = cash + shares x mark, marked at each close,
where a name's mark is its last traded close (see :mod:`fastrl.data.panel`).

**Observation** at row t (float32): the panel's features of rows ``t - window + 1 .. t``,
all A symbols, flattened as ``[window, A, F]`` (untradable cells are 0), then the current
weights of the A symbols and the cash weight, marked at the close of t.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv

from fastrl.costs import CostModel, resolve_cost_model
from fastrl.data.panel import PanelBlock
from fastrl.env import allocate_buffers

EXECUTIONS = {"next_open": 0, "close": 1}
REWARDS = {"log_return": 0, "pnl": 1, "diff_sharpe": 2}
BUFFER_SPECS = {  # name -> (dtype, per-env shape: "obs" for (obs_dim,), () for scalars)
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
    "ep_turnover": (np.float64, ()),
}
_WRAPPER_STATE = ("reset_seed", "reset_count")  # get_state keys owned by the Python side


@dataclass
class PortfolioConfig:
    """Everything that defines the simulated portfolio market."""

    window: int = 32
    """Panel rows per observation (the row itself and window - 1 before it)."""
    episode_length: int = 252
    """Steps per episode; 0 runs to the end of the panel."""
    execution: str = "next_open"
    """'next_open' fills at the next row's open; 'close' at the row's own close (optimistic)."""
    long_only: bool = True
    """Weights must be >= 0; False allows shorts down to -max_weight."""
    max_gross: float = 1.0
    """Cap on sum |w| (gross leverage); above 1 the cash weight goes negative (borrowing)."""
    max_weight: float = 1.0
    """Cap on |w| of any one symbol."""
    integer_shares: bool = False
    """Round every order toward zero to whole shares (NSE trades whole shares)."""
    trade_band: float = 0.0
    """Skip legs whose |notional| < trade_band x equity: a no-trade band against paying fixed
    fees for tiny drift rebalances (0 trades every difference)."""
    cost: str | CostModel | dict = "nse_delivery"
    """Preset name ('nse_delivery', 'nse_intraday', 'bps', 'zero'), a CostModel or its fields;
    charged per executed order (leg)."""
    reward: str = "log_return"
    """'log_return', 'pnl' (change of equity / initial cash) or 'diff_sharpe'."""
    dsr_eta: float = 0.01
    drawdown_penalty: float = 0.0
    """Subtracted times the current drawdown from the episode's peak equity."""
    turnover_penalty: float = 0.0
    """Subtracted times traded notional / equity."""
    initial_cash: float = 1_000_000.0
    equity_floor: float = 0.5
    """The episode terminates when equity <= equity_floor x initial_cash."""
    random_start: bool = True
    """False: every episode starts at row window - 1."""
    min_envs_per_thread: int = 16
    """Blocks smaller than this are not worth a thread hand-off."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ValueError(f"PortfolioConfig.{message}")

        def finite(x: Any) -> bool:
            return isinstance(x, (int, float)) and math.isfinite(x)

        need(isinstance(self.window, int) and self.window >= 1,
             f"window must be an integer >= 1, got {self.window!r}")
        need(isinstance(self.episode_length, int) and self.episode_length >= 0,
             f"episode_length must be an integer >= 0, got {self.episode_length!r}")
        need(self.execution in EXECUTIONS,
             f"execution must be one of {sorted(EXECUTIONS)}, got {self.execution!r}")
        need(finite(self.max_gross) and self.max_gross > 0,
             f"max_gross must be > 0, got {self.max_gross!r}")
        need(finite(self.max_weight) and self.max_weight > 0,
             f"max_weight must be > 0, got {self.max_weight!r}")
        need(finite(self.trade_band) and 0 <= self.trade_band < 1,
             f"trade_band must lie in [0, 1), got {self.trade_band!r}")
        need(self.reward in REWARDS,
             f"reward must be one of {sorted(REWARDS)}, got {self.reward!r}")
        need(finite(self.dsr_eta) and 0.0 < self.dsr_eta <= 1.0,
             f"dsr_eta must lie in (0, 1], got {self.dsr_eta!r}")
        need(finite(self.drawdown_penalty) and self.drawdown_penalty >= 0,
             f"drawdown_penalty must be >= 0, got {self.drawdown_penalty!r}")
        need(finite(self.turnover_penalty) and self.turnover_penalty >= 0,
             f"turnover_penalty must be >= 0, got {self.turnover_penalty!r}")
        need(finite(self.initial_cash) and self.initial_cash > 0,
             f"initial_cash must be > 0, got {self.initial_cash!r}")
        need(finite(self.equity_floor) and 0.0 <= self.equity_floor < 1.0,
             f"equity_floor must lie in [0, 1), got {self.equity_floor!r}")
        need(isinstance(self.min_envs_per_thread, int) and self.min_envs_per_thread >= 1,
             f"min_envs_per_thread must be an integer >= 1, got {self.min_envs_per_thread!r}")
        self.cost_model()  # raises on an unknown preset

    def cost_model(self) -> CostModel:
        return resolve_cost_model(self.cost)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if isinstance(self.cost, CostModel):
            out["cost"] = self.cost.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PortfolioConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown PortfolioConfig keys {unknown}; known: {sorted(known)}")
        return cls(**data)

    def to_core(self) -> Any:
        from fastrl import _core

        core = _core.PortfolioSimConfig()
        core.window = self.window
        core.episode_length = self.episode_length
        core.execution = EXECUTIONS[self.execution]
        core.long_only = bool(self.long_only)
        core.max_gross = float(self.max_gross)
        core.max_weight = float(self.max_weight)
        core.integer_shares = bool(self.integer_shares)
        core.trade_band = float(self.trade_band)
        core.costs = self.cost_model().to_core()
        core.reward = REWARDS[self.reward]
        core.dsr_eta = float(self.dsr_eta)
        core.drawdown_penalty = float(self.drawdown_penalty)
        core.turnover_penalty = float(self.turnover_penalty)
        core.initial_cash = float(self.initial_cash)
        core.equity_floor = float(self.equity_floor)
        core.random_start = bool(self.random_start)
        core.min_envs_per_thread = self.min_envs_per_thread
        return core


def portfolio_obs_dim(panel: PanelBlock, window: int) -> int:
    """Floats per observation: window x A x F features, A weights, the cash weight."""
    return window * panel.num_assets * panel.num_features + panel.num_assets + 1


class PortfolioVecEnv(VectorEnv):
    """``num_envs`` portfolios over one PanelBlock, stepped by the C++ core."""

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}

    def __init__(
        self,
        panel: PanelBlock,
        num_envs: int = 64,
        config: PortfolioConfig | None = None,
        *,
        num_threads: int = 1,
        seed: int = 0,
        buffers: dict[str, Any] | None = None,
    ) -> None:
        from fastrl import _core

        if not isinstance(panel, PanelBlock):
            raise ValueError(f"panel must be a fastrl PanelBlock, got {type(panel).__name__}")
        if not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ValueError(f"num_envs must be an integer >= 1, got {num_envs!r}")
        if not isinstance(num_threads, (int, np.integer)) or num_threads < 1:
            raise ValueError(f"num_threads must be an integer >= 1, got {num_threads!r}")
        self.config = config if config is not None else PortfolioConfig()
        self.config.validate()
        self.panel = panel
        self.symbols = panel.symbols
        self.num_envs = int(num_envs)
        self.num_assets = panel.num_assets
        self.window = self.config.window
        self.obs_dim = portfolio_obs_dim(panel, self.window)
        self._seed = int(seed) & (2**64 - 1)
        self._resets = 1  # the constructor already started episodes from `seed`
        self._buffers = allocate_buffers(self.num_envs, self.obs_dim, buffers, BUFFER_SPECS)
        self._sim = _core.PortfolioSimulator(
            panel.open, panel.close, panel.features, panel.tradable, list(panel.symbols),
            self.config.to_core(), self.num_envs, int(num_threads), self._seed, self._buffers)
        b = self._buffers
        self._episode = {"r": b["ep_return"], "l": b["ep_length"], "equity": b["ep_equity"],
                         "costs": b["ep_costs"], "trades": b["ep_trades"],
                         "turnover": b["ep_turnover"]}
        self.single_observation_space = gym.spaces.Box(-np.inf, np.inf, (self.obs_dim,),
                                                       np.float32)
        low = 0.0 if self.config.long_only else -self.config.max_weight
        self.single_action_space = gym.spaces.Box(low, self.config.max_weight,
                                                  (self.num_assets,), np.float64)
        self._batched_spaces: dict[str, gym.Space] = {}

    # Built on first use: at 1024 envs x 10k floats a bound array is 40 MB nobody reads.
    @property
    def observation_space(self) -> gym.Space:
        if "obs" not in self._batched_spaces:
            self._batched_spaces["obs"] = gym.spaces.Box(
                -np.inf, np.inf, (self.num_envs, self.obs_dim), np.float32)
        return self._batched_spaces["obs"]

    @property
    def action_space(self) -> gym.Space:
        """Per-name bounds only: the gross cap (sum |w| <= max_gross) is checked in step."""
        if "action" not in self._batched_spaces:
            s = self.single_action_space
            self._batched_spaces["action"] = gym.spaces.Box(
                s.low[0], s.high[0], (self.num_envs, self.num_assets), np.float64)
        return self._batched_spaces["action"]

    # -- gymnasium API -------------------------------------------------------------------

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Starts new episodes everywhere. A given seed fixes all per-env streams; without
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
        """Rebalances every env to the target weights ``actions`` [num_envs, num_assets]."""
        try:  # fast path: an exact float64 [N, A] C-contiguous array goes straight through
            self._sim.step(actions)
        except (ValueError, TypeError):
            # Convert what is convertible (float32, a torch CPU tensor, lists) or raise about
            # the caller's array; a range error is raised again as it was.
            self._sim.step(self._as_actions(actions))
        b = self._buffers
        info = {"final_obs": b["final_obs"], "_final_obs": b["done"],
                "episode": self._episode, "_episode": b["done"]}
        return b["obs"], b["rewards"], b["terminated"], b["truncated"], info

    def close_extras(self, **kwargs: Any) -> None:
        self._sim = None

    def _as_actions(self, actions: Any) -> np.ndarray:
        a = np.asarray(actions)
        shape = (self.num_envs, self.num_assets)
        if a.shape != shape:
            raise ValueError(f"actions must be target weights of shape {shape}, got {a.shape}")
        if a.dtype.kind != "f":
            raise ValueError(f"weights must be floats, got dtype {a.dtype}")
        return np.ascontiguousarray(a, dtype=np.float64)

    # -- snapshots -----------------------------------------------------------------------

    def get_state(self) -> dict[str, np.ndarray]:
        """Copies of every per-env state array plus the reset-seed sequence: with
        :meth:`set_state`, the same actions then give the same outputs."""
        state = self._sim.get_state()
        state["reset_seed"] = np.array(self._seed, dtype=np.uint64)
        state["reset_count"] = np.array(self._resets, dtype=np.int64)
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        """Restores a :meth:`get_state` snapshot (same num_envs and panel) and rewrites the
        observation buffer. Any bad name, dtype, shape or value raises ValueError and
        changes nothing."""
        if not isinstance(state, dict):
            raise ValueError(f"state must be a dict from get_state, got {type(state).__name__}")
        missing = [k for k in _WRAPPER_STATE if k not in state]
        if missing:
            raise ValueError(f"set_state: missing state entries {missing}")
        seed, count = np.asarray(state["reset_seed"]), np.asarray(state["reset_count"])
        if seed.shape != () or seed.dtype != np.uint64 or count.shape != () \
                or count.dtype != np.int64 or count < 0:
            raise ValueError("set_state: reset_seed must be a uint64 scalar and reset_count a "
                             "non-negative int64 scalar")
        self._sim.set_state({k: v for k, v in state.items() if k not in _WRAPPER_STATE})
        self._seed, self._resets = int(seed), int(count)

    # -- views ---------------------------------------------------------------------------

    @property
    def buffers(self) -> dict[str, np.ndarray]:
        """The output arrays the simulator writes in place."""
        return self._buffers

    @property
    def num_threads(self) -> int:
        return int(self._sim.num_threads)

    @property
    def weights(self) -> np.ndarray:
        """[N, A] float64 weights marked at the close of each env's current row (a copy)."""
        mark = self._sim.mark[self._sim.bar_index]
        return self._sim.shares * mark / self._sim.equity[:, None]

    # Read-only views of the simulator's per-env state (no copies).
    shares = property(lambda self: self._sim.shares, doc="[N, A] shares held.")
    cash = property(lambda self: self._sim.cash)
    equity = property(lambda self: self._sim.equity, doc="Equity marked at the current close.")
    bar_index = property(lambda self: self._sim.bar_index, doc="Current row in the panel.")
    episode_steps = property(lambda self: self._sim.episode_steps)
    episode_costs = property(lambda self: self._sim.episode_costs)
    episode_trades = property(lambda self: self._sim.episode_trades)
    episode_turnover = property(lambda self: self._sim.episode_turnover)


def make_portfolio_env(
    symbols: Sequence[str] | None = None,
    freq: str = "1d",
    split: str = "train",
    num_envs: int = 64,
    *,
    config: PortfolioConfig | None = None,
    num_threads: int = 1,
    seed: int = 0,
    test_days: int = 30,
    val_days: int = 0,
    source: str = "bundled",
    on_bad_rows: str = "raise",
) -> PortfolioVecEnv:
    """A PortfolioVecEnv on a panel of bundled (or the user's) bars.

    ``symbols=None`` takes every symbol of the source (30 daily NSE/BSE large caps bundled);
    ``split`` is 'train', 'val' or 'test' (see :mod:`fastrl.data.panel` for the calendar,
    mask and split rules).
    """
    from fastrl.data.panel import build_panel

    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
    config = config if config is not None else PortfolioConfig()
    splits = build_panel(None if symbols is None else list(symbols), freq=freq, source=source,
                         test_days=test_days, val_days=val_days, window=config.window,
                         on_bad_rows=on_bad_rows)
    return PortfolioVecEnv(splits.block(split), num_envs, config, num_threads=num_threads,
                           seed=seed)
