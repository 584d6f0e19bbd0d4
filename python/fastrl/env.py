"""TradingVecEnv: the gymnasium VectorEnv face of the C++ batched simulator.

One object steps ``num_envs`` trading envs at once in a persistent C++ thread pool with the
GIL released. Observations, rewards, flags and episode statistics are numpy views of
buffers the simulator writes in place: **every array returned by reset()/step() is
overwritten by the next step** (copy what you keep, as a rollout buffer does anyway).
Pass ``buffers={...}`` to have the simulator write into memory you own (for example
pinned torch tensors seen through ``tensor.numpy()``).

Autoreset mode is ``SAME_STEP``: when an episode ends, ``step`` returns the first
observation of the next episode, and ``info["final_obs"]`` (rows where
``info["_final_obs"]``) holds the last observation of the finished one; ``terminated``
(equity fell to the floor) means no bootstrap, ``truncated`` (length or data end) means
bootstrap from that final observation. ``info["episode"]`` holds return ``r``, length
``l``, final ``equity``, ``costs``, ``trades``, the ``position`` and ``shares`` still held
when the finished episodes ended, and ``liquidation``: what selling those shares at the last
close would cost (reported, not charged: ``equity`` and ``costs`` exclude it).

Market rules come with the cost preset (fastrl.costs documents each with its source):
``nse_delivery`` is long/flat (position_levels (0, 1)) unless ``short_borrow_rate`` > 0,
which charges a nightly stock-lending fee, and never leveraged (no exposure above 1: it
charges no margin interest); ``nse_intraday`` squares every position off by
``intraday_cutoff`` (15:20 IST) and carries nothing overnight; both NSE presets trade whole
shares (``integer_shares``).

Observation row at bar t: ``features[t - window + 1 .. t]`` flattened (float32), then the
agent's position (target exposure), its unrealised return ``position x (close_t / entry -
1)`` and ``log1p(bars since the last trade)``.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd
from gymnasium.vector import AutoresetMode, VectorEnv

from fastrl import _core
from fastrl.costs import (
    CostModel,
    ExecutionCosts,
    resolve_cost_model,
    resolve_execution,
    with_execution,
)
from fastrl.data.block import MarketBlock

AGENT_STATE_DIMS = 3
EXECUTIONS = {"next_open": 0, "close": 1}
REWARDS = {"log_return": 0, "pnl": 1, "diff_sharpe": 2}
# the outputs every simulator writes: name -> (dtype, per-env shape: "obs" or ())
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
BUFFER_SPECS = {**SIM_BUFFER_SPECS, "ep_position": (np.float64, ()),
                "ep_shares": (np.float64, ())}


def is_finite_number(x: Any) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and math.isfinite(x)


class EpisodeConfig:
    """What EnvConfig and PortfolioConfig share (their C++ base is episode.hpp's
    EpisodeConfig): the fields window, episode_length, execution, cost, half_spread_bps,
    slippage_bps, reward, dsr_eta, drawdown_penalty, turnover_penalty, initial_cash,
    equity_floor, random_start, min_envs_per_thread and integer_shares, their checks, their
    dict round trip and their copy into the core config. Each subclass is a dataclass that
    declares those fields with its own defaults and docs, and adds what it trades."""

    _DATA_END = "data"  # where episode_length 0 runs to, for the error message

    window: int
    episode_length: int
    execution: str
    cost: str | CostModel | dict
    half_spread_bps: float | None
    slippage_bps: float | None
    reward: str
    dsr_eta: float
    drawdown_penalty: float
    turnover_penalty: float
    initial_cash: float
    equity_floor: float
    random_start: bool
    min_envs_per_thread: int
    integer_shares: bool

    def _need(self, ok: bool, message: str) -> None:
        if not ok:
            raise ValueError(f"{type(self).__name__}.{message}")

    def _validate_episode(self) -> None:
        """The checks of the shared fields (C++ repeats them: episode.hpp)."""
        need = self._need
        need(isinstance(self.window, int) and self.window >= 1,
             f"window must be an integer >= 1, got {self.window!r}")
        need(isinstance(self.episode_length, int) and self.episode_length >= 0,
             f"episode_length must be an integer >= 0 (0 = to the {self._DATA_END} end), "
             f"got {self.episode_length!r}")
        need(self.execution in EXECUTIONS,
             f"execution must be one of {sorted(EXECUTIONS)}, got {self.execution!r}")
        need(self.reward in REWARDS,
             f"reward must be one of {sorted(REWARDS)}, got {self.reward!r}")
        self._validate_execution()
        need(is_finite_number(self.dsr_eta) and 0.0 < self.dsr_eta <= 1.0,
             f"dsr_eta must lie in (0, 1], got {self.dsr_eta!r}")
        need(is_finite_number(self.drawdown_penalty) and self.drawdown_penalty >= 0,
             f"drawdown_penalty must be >= 0, got {self.drawdown_penalty!r}")
        need(is_finite_number(self.turnover_penalty) and self.turnover_penalty >= 0,
             f"turnover_penalty must be >= 0, got {self.turnover_penalty!r}")
        need(is_finite_number(self.initial_cash) and self.initial_cash > 0,
             f"initial_cash must be > 0, got {self.initial_cash!r}")
        need(is_finite_number(self.equity_floor) and 0.0 <= self.equity_floor < 1.0,
             f"equity_floor must lie in [0, 1), got {self.equity_floor!r}")
        need(isinstance(self.min_envs_per_thread, int) and self.min_envs_per_thread >= 1,
             f"min_envs_per_thread must be an integer >= 1, got {self.min_envs_per_thread!r}")

    def _validate_execution(self) -> None:
        for name in ("half_spread_bps", "slippage_bps"):
            value = getattr(self, name)
            self._need(value is None or (is_finite_number(value) and not isinstance(value, bool)
                                         and value >= 0),
                       f"{name} must be a number of bps >= 0 or None (the cost preset's "
                       f"default), got {value!r}")

    def execution_costs(self) -> ExecutionCosts:
        """The half-spread and slippage every fill pays; a field left at None takes the cost
        preset's default (fastrl.costs.EXECUTION_DEFAULTS)."""
        return resolve_execution(self.cost, self.half_spread_bps, self.slippage_bps)

    def cost_model(self) -> CostModel:
        """The charges of ``cost`` with the execution costs added to both sides' rates: what
        the simulator, the backtests and the reference implementations charge."""
        return with_execution(resolve_cost_model(self.cost), self.execution_costs())

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)  # type: ignore[call-overload]
        if isinstance(self.cost, CostModel):
            out["cost"] = self.cost.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Any:
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} keys {unknown}; "
                             f"known keys: {sorted(known)}")
        return cls(**data)

    def _to_core(self, core: Any) -> Any:
        """Copies the shared fields into a core config (an _core.EpisodeConfig subclass)."""
        core.window = self.window
        core.episode_length = self.episode_length
        core.execution = EXECUTIONS[self.execution]
        core.integer_shares = bool(self.integer_shares)
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


@dataclass
class EnvConfig(EpisodeConfig):
    """Everything that defines the simulated market an agent trades in."""

    window: int = 32
    """Feature rows per observation (the bar itself and window - 1 before it)."""
    episode_length: int = 252
    """Steps per episode; 0 runs to the end of the segment."""
    action: str = "discrete"
    """'discrete' (an index into position_levels) or 'continuous' (a target exposure)."""
    position_levels: tuple[float, ...] | None = None
    """Discrete target exposures as fractions of equity. None (the default): (-1, 0, 1), or
    (0, 1) where the cost preset allows no overnight short (nse_delivery without a
    short_borrow_rate); resolved again by validate() while left at None, so changing the cost
    changes the default."""
    min_pos: float | None = None
    max_pos: float = 1.0
    """Range of continuous target exposures (actions outside it raise; clip first). min_pos
    None (the default): -1, or 0 where the cost preset allows no overnight short."""
    execution: str = "next_open"
    """'next_open' fills at the next bar's open; 'close' at the bar's own close (optimistic)."""
    cost: str | CostModel | dict = "nse_delivery"
    """Preset name ('nse_delivery', 'nse_intraday', 'bps', 'zero'), a CostModel or its fields."""
    half_spread_bps: float | None = None
    """Half the bid-ask spread paid on every fill, per side, in bps of notional. None (the
    default): the cost preset's (2 for the NSE presets, 0 otherwise; fastrl.costs)."""
    slippage_bps: float | None = None
    """Slippage (impact, latency) paid on every fill, per side, in bps of notional. None (the
    default): the cost preset's (nse_delivery 3, nse_intraday 5, 0 otherwise)."""
    reward: str = "log_return"
    """'log_return', 'pnl' (change of equity / initial cash) or 'diff_sharpe'."""
    dsr_eta: float = 0.01
    """Adaptation rate of the differential Sharpe reward's moving moments. An episode starts
    them from the mean and mean square of the close-to-close simple returns inside its first
    observation window, so early rewards are on the scale of later ones."""
    drawdown_penalty: float = 0.0
    """Subtracted times the current drawdown from the episode's peak equity."""
    turnover_penalty: float | None = 0.0
    """Subtracted from the reward times traded notional / equity (on top of the costs the
    reward already pays). None follows the cost model: TURNOVER_COST_MULTIPLE x the mean
    one-way rate of its charges, without half-spread and slippage (0.01 under nse_delivery, 0
    without costs); the trainer's default."""
    initial_cash: float = 1_000_000.0
    equity_floor: float = 0.5
    """The episode terminates when equity <= equity_floor x initial_cash."""
    random_start: bool = True
    """False: every episode starts at the segment's first bar with a full window."""
    segment_assignment: str = "random"
    """'random' (a segment drawn per episode) or 'round_robin' (env i trades segment i % S)."""
    min_envs_per_thread: int = 128
    """Blocks smaller than this are not worth a thread hand-off."""
    short_borrow_rate: float = 0.0
    """Annual stock-lending (SLB) fee on short notional, charged at rate / 252 for each session
    close a short is held over; > 0 also allows shorts under nse_delivery (fastrl.costs)."""
    integer_shares: bool | None = None
    """Round every order toward zero to whole shares. None (the default): on for the NSE
    presets, off otherwise (the cost model's whole_shares)."""
    intraday_cutoff: str = "15:20"
    """Local time (HH:MM, IST for NSE bars) by which an intraday (MIS) preset is flat: positions
    are closed at the close of the last bar ending at or before it (fastrl.costs)."""

    def __setattr__(self, name: str, value: Any) -> None:
        # A field set to None follows the cost model's default until it is set explicitly.
        if name in _MARKET_DEFAULTS:
            auto = self.__dict__.setdefault("_market_defaults", set())
            (auto.add if value is None else auto.discard)(name)
        object.__setattr__(self, name, value)

    def __post_init__(self) -> None:
        self.validate()

    def _resolve_market_defaults(self, model: CostModel) -> None:
        shorts = model.overnight_shorts or self.short_borrow_rate > 0
        values = {"position_levels": (-1.0, 0.0, 1.0) if shorts else (0.0, 1.0),
                  "min_pos": -1.0 if shorts else 0.0, "integer_shares": model.whole_shares,
                  "turnover_penalty": TURNOVER_COST_MULTIPLE * 0.5 * (model.buy_rate
                                                                       + model.sell_rate)}
        for name in self.__dict__.get("_market_defaults", ()):
            object.__setattr__(self, name, values[name])

    _DATA_END = "segment"

    def validate(self) -> None:
        need = self._need
        need(isinstance(self.short_borrow_rate, (int, float))
             and math.isfinite(self.short_borrow_rate) and self.short_borrow_rate >= 0,
             f"short_borrow_rate must be a finite annual rate >= 0, got {self.short_borrow_rate!r}")
        self._validate_execution()
        model = resolve_cost_model(self.cost)  # raises on an unknown preset
        # the turnover penalty's multiple was chosen on the charges alone, so execution costs
        # (which the reward pays anyway) stay out of its default
        self._resolve_market_defaults(model)
        object.__setattr__(self, "position_levels",
                           tuple(float(x) for x in self.position_levels))
        need(isinstance(self.integer_shares, (bool, np.bool_)),
             f"integer_shares must be true, false or None, got {self.integer_shares!r}")
        need(_parse_cutoff(self.intraday_cutoff) is not None,
             f"intraday_cutoff must be a time 'HH:MM', got {self.intraday_cutoff!r}")

        self._validate_episode()
        need(self.action in ("discrete", "continuous"),
             f"action must be 'discrete' or 'continuous', got {self.action!r}")
        need(len(self.position_levels) >= 1 and all(map(math.isfinite, self.position_levels)),
             f"position_levels must be a non-empty tuple of finite numbers, "
             f"got {self.position_levels!r}")
        need(math.isfinite(self.min_pos) and math.isfinite(self.max_pos)
             and self.min_pos <= self.max_pos,
             f"min_pos/max_pos must be finite with min_pos <= max_pos, "
             f"got {self.min_pos}, {self.max_pos}")
        need(self.segment_assignment in ("random", "round_robin"),
             f"segment_assignment must be 'random' or 'round_robin', "
             f"got {self.segment_assignment!r}")
        if not model.overnight_shorts and self.short_borrow_rate == 0:
            where = (f"position_levels {self.position_levels} has a negative level"
                     if self.action == "discrete" and min(self.position_levels) < 0 else
                     f"min_pos {self.min_pos} is below 0"
                     if self.action == "continuous" and self.min_pos < 0 else None)
            fix = ("position_levels=(0.0, 1.0)" if self.action == "discrete" else "min_pos=0.0")
            need(where is None,
                 f"{where}, but cost '{model.name}' is cash delivery: a short cannot be held "
                 f"over a session close (SEBI allows no naked short selling; a delivery short "
                 f"needs stock borrowed through SLB). Set {fix} (or leave it at None for the "
                 f"long/flat default), set short_borrow_rate > 0 (the annual stock-lending fee "
                 f"to charge per night), or use cost='nse_intraday' (squared off every session) "
                 f"or cost='bps'")
        if not model.overnight_shorts:
            # cash delivery (CNC) is paid in full: exposure above 1 is bought with borrowed
            # cash (margin trading), whose interest no cost model here charges
            where = (f"position_levels {self.position_levels} has a level above 1"
                     if self.action == "discrete" and max(self.position_levels) > 1 else
                     f"max_pos {self.max_pos} is above 1"
                     if self.action == "continuous" and self.max_pos > 1 else None)
            need(where is None,
                 f"{where}, but cost '{model.name}' is cash delivery: a long position is paid "
                 f"in full, and leverage (negative cash) would cost nothing since no margin "
                 f"interest is charged. Keep exposures within 1, or use cost='nse_intraday' "
                 f"(intraday margin, squared off every session, so no position is financed "
                 f"overnight)")

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["position_levels"] = list(self.position_levels)
        return out

    def to_core(self) -> Any:
        core = self._to_core(_core.SimConfig())
        core.continuous = self.action == "continuous"
        core.position_levels = list(self.position_levels)
        core.min_pos = float(self.min_pos)
        core.max_pos = float(self.max_pos)
        core.round_robin = self.segment_assignment == "round_robin"
        core.square_off = bool(self.cost_model().square_off)
        core.short_borrow_rate = float(self.short_borrow_rate)
        return core

    def needs_session_flags(self) -> bool:
        """Whether the simulator needs per-bar session flags (square-off or borrow fee)."""
        return bool(self.cost_model().square_off) or self.short_borrow_rate > 0


_MARKET_DEFAULTS = ("position_levels", "min_pos", "integer_shares", "turnover_penalty")
# The training reward's price of turnover as a multiple of the cost model's mean one-way rate
# (EnvConfig(turnover_penalty=None), the trainer's default). 9 x nse_delivery's 0.111% is the
# 0.01 chosen on validation only, never on test days: the smallest of 0, 0.002, 0.005, 0.01
# that kept the median validation cost at or below 5% of equity a year for both presets over
# 10 bundled symbols (bench/generalisation.py --select; without it the fast preset traded
# ~90x its equity a year and paid ~11%). Scaling with the cost model keeps a market without
# costs (the planted-signal benchmark) unpenalised.
TURNOVER_COST_MULTIPLE = 9.0
SQUARE_OFF, NO_ENTRY_AT_OPEN, SESSION_END = 1, 2, 4  # market.hpp's SessionFlag bits


def _parse_cutoff(text: Any) -> int | None:
    """'HH:MM' -> minutes after midnight, None when it is not such a time."""
    if not isinstance(text, str) or len(text.split(":")) != 2:
        return None
    hours, minutes = text.split(":")
    if not (hours.strip().isdigit() and minutes.strip().isdigit()):
        return None
    h, m = int(hours), int(minutes)
    return h * 60 + m if 0 <= h < 24 and 0 <= m < 60 else None


def session_flags(market: MarketBlock, cutoff: str = "15:20") -> np.ndarray:
    """Per-bar SessionFlag bits (cpp/include/fastrl/market.hpp) from the bar timestamps.

    A session is one calendar day of one segment. Daily bars: every bar is a whole session
    (SQUARE_OFF | SESSION_END). Intraday bars (timestamps are bar starts, local time): a bar
    is SESSION_END when it is its day's last; SQUARE_OFF from the last bar that closes at or
    before ``cutoff`` to the session's end (and on the session's last bar in any case);
    NO_ENTRY_AT_OPEN on every bar after a SQUARE_OFF bar of the same session.
    """
    limit = _parse_cutoff(cutoff)
    if limit is None:
        raise ValueError(f"intraday_cutoff must be a time 'HH:MM', got {cutoff!r}")
    n = market.num_bars
    if market.freq == "1d":
        return np.full(n, SQUARE_OFF | SESSION_END, dtype=np.uint8)
    if market.timestamps is None:
        raise ValueError(f"{market.freq} bars need timestamps to find session ends and the "
                         "intraday cutoff (MarketBlock.timestamps is None)")
    stamps = np.asarray(market.timestamps).astype("datetime64[ns]")
    day = stamps.astype("datetime64[D]")
    session_end = np.zeros(n, dtype=bool)
    session_end[market.offsets[1:] - 1] = True
    session_end[:-1] |= day[1:] != day[:-1]
    bar_length = np.timedelta64(pd.Timedelta(market.freq).value, "ns")
    close_time = stamps + bar_length - day  # bar close, as time of day
    after_cutoff = close_time > np.timedelta64(limit, "m")
    square_off = session_end.copy()
    square_off[:-1] |= after_cutoff[1:]  # the next bar (same session) closes after the cutoff
    no_entry = np.zeros(n, dtype=bool)
    no_entry[1:] = square_off[:-1] & ~session_end[:-1]
    return (square_off * SQUARE_OFF + no_entry * NO_ENTRY_AT_OPEN
            + session_end * SESSION_END).astype(np.uint8)


def allocate_buffers(num_envs: int, obs_dim: int, given: dict[str, Any] | None = None,
                     specs: dict[str, tuple[Any, Any]] | None = None) -> dict[str, np.ndarray]:
    """Output buffers for a simulator: the caller's (checked) where given, else new arrays.

    ``specs`` maps each buffer's name to (dtype, "obs" or a per-env shape) (default: this env's
    BUFFER_SPECS; the portfolio env passes its own). A given buffer must be a numpy array (a
    torch tensor's ``.numpy()`` view is one): anything else would be copied by a conversion
    and the caller would never see the writes. Given buffers must not overlap each other in
    memory, or one output would overwrite another.
    """
    specs = BUFFER_SPECS if specs is None else specs
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
        self._buffers = allocate_buffers(self.num_envs, self.obs_dim, buffers, specs)
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

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        """Loads a ``get_state()`` snapshot (of this env or of another one built with the same
        market, config and num_envs; the thread count may differ). Names, dtypes, shapes and
        market indices are all checked before anything is written; a bad state raises a
        ValueError naming the key and leaves the env as it was. Afterwards the observation
        buffer (what ``reset``/``step`` return) holds the restored envs' current observation,
        and stepping the same actions gives bit-identical outputs to the original run."""
        if not isinstance(state, dict):
            raise ValueError(f"state must be a dict of numpy arrays, got {type(state).__name__}")
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


class TradingVecEnv(CoreVecEnv):
    """``num_envs`` trading envs over one MarketBlock, stepped by the C++ core."""

    def __init__(
        self,
        market: MarketBlock,
        num_envs: int = 64,
        config: EnvConfig | None = None,
        *,
        num_threads: int = 1,
        seed: int = 0,
        buffers: dict[str, Any] | None = None,
    ) -> None:
        if not isinstance(market, MarketBlock):
            raise ValueError(f"market must be a fastrl MarketBlock, got {type(market).__name__}")
        self.config = config if config is not None else EnvConfig()
        self.config.validate()
        self.market = market
        self.window = self.config.window
        self._setup(num_envs, num_threads, seed,
                    self.window * market.num_features + AGENT_STATE_DIMS, buffers, BUFFER_SPECS)
        flags = (session_flags(market, self.config.intraday_cutoff)
                 if self.config.needs_session_flags() else None)
        self._sim = _core.Simulator(
            market.open, market.close, market.features, market.offsets, list(market.symbols),
            self.config.to_core(), self.num_envs, int(num_threads), self._seed, self._buffers,
            flags,
        )
        b = self._buffers
        self._episode = {"r": b["ep_return"], "l": b["ep_length"], "equity": b["ep_equity"],
                         "costs": b["ep_costs"], "trades": b["ep_trades"],
                         "liquidation": b["ep_liquidation"],
                         "position": b["ep_position"], "shares": b["ep_shares"]}
        if self.config.action == "discrete":
            self.single_action_space = gym.spaces.Discrete(len(self.config.position_levels))
        else:
            self.single_action_space = gym.spaces.Box(
                self.config.min_pos, self.config.max_pos, (1,), np.float64)

    def _batched_action_space(self) -> gym.Space:
        if self.config.action == "discrete":
            return gym.spaces.MultiDiscrete(
                np.full(self.num_envs, len(self.config.position_levels), dtype=np.int64))
        return gym.spaces.Box(self.config.min_pos, self.config.max_pos, (self.num_envs, 1),
                              np.float64)

    def _as_actions(self, actions: Any) -> np.ndarray:
        """int64 / float64 [N] from [N, 1], other int widths, float32; else a clear error."""
        a = np.asarray(actions)
        if a.ndim == 2 and a.shape[1] == 1:
            a = a[:, 0]
        if a.shape != (self.num_envs,):
            raise ValueError(
                f"actions must have shape ({self.num_envs},) or ({self.num_envs}, 1), "
                f"got {a.shape}")
        if self.config.action == "discrete":
            if a.dtype.kind not in "iu":
                raise ValueError(
                    f"discrete actions must be integer level indices, got dtype {a.dtype}")
            return np.ascontiguousarray(a, dtype=np.int64)
        if a.dtype.kind != "f":
            raise ValueError(f"continuous actions must be floats, got dtype {a.dtype}")
        return np.ascontiguousarray(a, dtype=np.float64)

    positions = property(lambda self: self._sim.position, doc="Target exposure held per env.")
    segment = property(lambda self: self._sim.segment, doc="Segment each env trades now.")


STATE_KEYS: tuple[str, ...] = (*_core.STATE_KEYS, "reset_seed", "reset_count")
"""Keys of ``TradingVecEnv.get_state()`` (and of the reference's): the simulator's per-env
[num_envs] arrays as the C++ core declares them (``_core.STATE_KEYS``; rng_state uint64, the
indices and counters int64, the rest float64), then the env's reset-seed sequence (0-d)."""


def make_env(
    symbols: Sequence[str] = ("BPCL", "HDFCLIFE"),
    freq: str = "1d",
    split: str = "train",
    num_envs: int = 64,
    *,
    test_days: int = 30,
    val_days: int = 0,
    source: str = "bundled",
    on_bad_rows: str = "raise",
    config: EnvConfig | None = None,
    num_threads: int = 1,
    seed: int = 0,
) -> TradingVecEnv:
    """A TradingVecEnv on bundled (or the user's) bars, ready for a CleanRL-style loop.

    ``split`` picks the time slice ('train', 'val' or 'test'; see fastrl.data.build_market);
    ``on_bad_rows='drop'`` drops (and reports) bars that fail validation instead of raising.
    """
    from fastrl.data import build_market

    config = config if config is not None else EnvConfig()
    splits = build_market(list(symbols), freq=freq, source=source, test_days=test_days,
                          val_days=val_days, window=config.window, on_bad_rows=on_bad_rows)
    block = {"train": splits.train, "val": splits.val, "test": splits.test}.get(split, "unknown")
    if isinstance(block, str):
        raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
    if block is None:
        raise ValueError("split='val' needs val_days > 0")
    return TradingVecEnv(block, num_envs, config, num_threads=num_threads, seed=seed)
