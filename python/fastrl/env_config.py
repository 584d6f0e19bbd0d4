"""The env configs: what defines a simulated market, as plain dataclasses.

:class:`EpisodeConfig` holds what both envs share (their C++ base is episode.hpp's
EpisodeConfig); :class:`EnvConfig` configures the single-symbol
:class:`~fastrl.markets.single.env.TradingVecEnv`, :class:`PortfolioConfig` the
:class:`~fastrl.markets.portfolio.env.PortfolioVecEnv`. This module imports neither the
compiled simulator nor gymnasium nor any env, so :mod:`fastrl.config` (and a CLI's
``--help``) can build and check a config without loading them; only ``to_core`` loads the
simulator's config types.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from fastrl.costs import (
    CostModel,
    ExecutionCosts,
    resolve_cost_model,
    resolve_execution,
    with_execution,
)

EXECUTIONS = {"next_open": 0, "close": 1}
REWARDS = {"log_return": 0, "pnl": 1, "diff_sharpe": 2, "active": 3, "vol_scaled": 4}
# what diff_sharpe and vol_scaled are computed on: the book's own return, or the return minus
# the benchmark's over the same bar (rewards.hpp's active_base)
REWARD_BASES = ("absolute", "active")
# absolute: the action is the target itself; anchored: a deviation from the benchmark's
# (buy-and-hold's exposure 1 for one symbol, equal weight for a portfolio)
ACTION_MODES = ("absolute", "anchored")


def needs_benchmark(config: Any) -> bool:
    """Whether an env config's reward reads the benchmark's book (an EnvConfig or a
    PortfolioConfig): rewards.hpp's RewardParams::needs_benchmark."""
    return config.reward == "active" or (config.reward_base == "active"
                                         and config.reward in ("diff_sharpe", "vol_scaled"))


def is_finite_number(x: Any) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and math.isfinite(x)


class EpisodeConfig:
    """What EnvConfig and PortfolioConfig share (their C++ base is episode.hpp's
    EpisodeConfig): the fields window, episode_length, execution, cost, half_spread_bps,
    slippage_bps, reward, dsr_eta, drawdown_penalty, turnover_penalty, initial_cash,
    equity_floor, random_start, min_envs_per_thread, integer_shares, reward_base, vol_window,
    action_mode and max_underweight, their checks, their dict round trip and their copy into
    the core config. Each subclass is a dataclass that
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
    reward_base: str
    vol_window: int
    action_mode: str
    max_underweight: float

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
        need(self.reward_base in REWARD_BASES,
             f"reward_base must be one of {list(REWARD_BASES)}, got {self.reward_base!r}")
        need(self.reward_base == "absolute" or self.reward in ("diff_sharpe", "vol_scaled"),
             f"reward_base 'active' applies to reward 'diff_sharpe' or 'vol_scaled', not "
             f"{self.reward!r} (the active log return is reward 'active')")
        need(isinstance(self.vol_window, int) and not isinstance(self.vol_window, bool)
             and self.vol_window >= 2,
             f"vol_window must be an integer >= 2 (returns in a volatility), "
             f"got {self.vol_window!r}")
        need(self.action_mode in ACTION_MODES,
             f"action_mode must be one of {list(ACTION_MODES)}, got {self.action_mode!r}")
        need(is_finite_number(self.max_underweight) and self.max_underweight > 0,
             f"max_underweight must be > 0, got {self.max_underweight!r}")

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
        core.active_base = self.reward_base == "active"
        core.vol_window = self.vol_window
        return core

    @property
    def anchored(self) -> bool:
        """Whether the action is a deviation from the benchmark (action_mode 'anchored')."""
        return self.action_mode == "anchored"



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
    max_pos: float | None = None
    """Range of continuous target exposures (actions outside it raise; clip first). min_pos
    None (the default): -1, or 0 where the cost preset allows no overnight short. max_pos
    None (the default): 1, or 2 for anchored actions where the cost preset finances
    leverage (every preset but nse_delivery), so an anchored agent may overweight."""
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
    """'log_return', 'pnl' (change of equity / initial cash), 'diff_sharpe', 'active' (the
    log return minus buy-and-hold's over the same bar, costs included: the simulator keeps a
    shadow buy-and-hold book per env, bought at the episode's first fill) or 'vol_scaled'
    (the log return, or with reward_base 'active' the active one, / the trailing
    volatility)."""
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
    reward_base: str = "absolute"
    """What 'diff_sharpe' and 'vol_scaled' are computed on: 'absolute' (the book's return) or
    'active' (minus buy-and-hold's over the same bar, costs included)."""
    vol_window: int = 60
    """'vol_scaled': the trailing volatility is the sample std of the symbol's last
    vol_window close-to-close returns up to the decision bar (>= 2), floored at 1 bp; a
    segment's first vol_window bars, with fewer returns behind them, take its first full
    estimate (rewards.hpp's segment_vols). The reward and its penalties are divided by it.
    'diff_sharpe' with reward_base 'active' floors its variance at a quarter of its square
    (the active return of a half-book deviation), so a deviation after a long stretch at the
    benchmark is not scored by a decayed variance."""
    action_mode: str = "absolute"
    """'absolute' (the action is the target exposure) or 'anchored' (the action is an
    underweight u against buy-and-hold: the exposure is 1 - u, u in
    [1 - max_pos, min(max_underweight, 1 - min_pos)]; discrete position_levels are then
    underweights and must include 0, the benchmark). Their default: (0, d/2, d), d the largest
    underweight; where the cost preset finances leverage (max_pos then defaults to 2) also
    the overweights (-1, -0.5), a tilt either way. Under nse_delivery an exposure above 1 is
    refused, so the tilt is an underweight only (a short needs max_underweight > 1 set with
    short_borrow_rate > 0)."""
    max_underweight: float = 1.0
    """Anchored: the largest underweight (1: may go flat). > 0."""

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
        defaults = self.__dict__.get("_market_defaults", ())
        min_pos = (-1.0 if shorts else 0.0) if "min_pos" in defaults else self.min_pos
        anchored = self.action_mode == "anchored"
        # cash delivery finances no leverage (validate refuses exposures above 1 there)
        max_pos = ((2.0 if anchored and model.overnight_shorts else 1.0)
                   if "max_pos" in defaults else self.max_pos)
        # anchored: underweights from the benchmark (0) to the largest, and half of it; where
        # max_pos allows an overweight, the overweights (negative underweights) too
        deepest = min(self.max_underweight, 1.0 - min_pos) if is_finite_number(
            self.max_underweight) and is_finite_number(min_pos) else 1.0
        over = max_pos - 1.0 if is_finite_number(max_pos) and max_pos > 1.0 else 0.0
        tilts = ((-over, -0.5 * over) if over > 0 else ()) + (0.0, 0.5 * deepest, deepest)
        levels = (tilts if anchored else (-1.0, 0.0, 1.0) if shorts else (0.0, 1.0))
        values = {"position_levels": levels, "max_pos": max_pos,
                  "min_pos": min_pos, "integer_shares": model.whole_shares,
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
        need(parse_cutoff(self.intraday_cutoff) is not None,
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
        # anchored levels are underweights: min_pos/max_pos bound the exposure either way
        exposure = "continuous" if self.anchored else self.action
        if not model.overnight_shorts and self.short_borrow_rate == 0:
            where = (f"position_levels {self.position_levels} has a negative level"
                     if exposure == "discrete" and min(self.position_levels) < 0 else
                     f"min_pos {self.min_pos} is below 0"
                     if exposure == "continuous" and self.min_pos < 0 else None)
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
                     if exposure == "discrete" and max(self.position_levels) > 1 else
                     f"max_pos {self.max_pos} is above 1"
                     if exposure == "continuous" and self.max_pos > 1 else None)
            need(where is None,
                 f"{where}, but cost '{model.name}' is cash delivery: a long position is paid "
                 f"in full, and leverage (negative cash) would cost nothing since no margin "
                 f"interest is charged. Keep exposures within 1, or use cost='nse_intraday' "
                 f"(intraday margin, squared off every session, so no position is financed "
                 f"overnight)")
        if self.anchored:
            need(self.max_underweight <= 1.0 - self.min_pos,
                 f"max_underweight {self.max_underweight} is above 1 - min_pos = "
                 f"{1.0 - self.min_pos}: the exposure 1 - underweight cannot go below min_pos "
                 f"{self.min_pos} (shorts need a cost that prices them, e.g. "
                 f"short_borrow_rate > 0, and min_pos < 0)")
            low, high = self.underweight_bounds()
            need(low <= 0.0 <= high,
                 f"action_mode 'anchored' needs an underweight range [1 - max_pos, "
                 f"min(max_underweight, 1 - min_pos)] = [{low}, {high}] that holds 0 "
                 f"(buy-and-hold): keep max_pos >= 1 and min_pos <= 1")
            need(self.action == "continuous" or 0.0 in self.position_levels,
                 f"anchored position_levels {self.position_levels} are underweights and must "
                 f"include 0 (buy-and-hold, the untrained policy's action)")
            need(self.action == "continuous"
                 or all(low <= u <= high for u in self.position_levels),
                 f"anchored position_levels {self.position_levels} are underweights and must "
                 f"lie in [1 - max_pos, min(max_underweight, 1 - min_pos)] = [{low}, {high}]")

    def underweight_bounds(self) -> tuple[float, float]:
        """Anchored: the range of the underweight u (the exposure is 1 - u), computed as the
        simulator does (sim.hpp's underweight_low/high)."""
        return 1.0 - self.max_pos, min(self.max_underweight, 1.0 - self.min_pos)

    def action_bounds(self) -> tuple[float, float]:
        """The range a continuous action must lie in: the exposure range, or anchored the
        underweight range."""
        return self.underweight_bounds() if self.anchored else (self.min_pos, self.max_pos)

    def exposure_of(self, actions: Any) -> np.ndarray:
        """The target exposures the simulator trades for ``actions`` (level indices or
        continuous actions, as env.step takes them): the level or the value itself, or
        anchored 1 - the underweight."""
        a = np.asarray(actions)
        value = (np.asarray(self.position_levels, dtype=np.float64)[a]
                 if self.action == "discrete" else a.astype(np.float64))
        return 1.0 - value if self.anchored else value

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["position_levels"] = list(self.position_levels)
        return out

    def to_core(self) -> Any:
        from fastrl import _core  # lazy: loading the compiled simulator is for envs only

        core = self._to_core(_core.SimConfig())
        core.continuous = self.action == "continuous"
        core.position_levels = list(self.position_levels)
        core.min_pos = float(self.min_pos)
        core.max_pos = float(self.max_pos)
        core.round_robin = self.segment_assignment == "round_robin"
        core.square_off = bool(self.cost_model().square_off)
        core.short_borrow_rate = float(self.short_borrow_rate)
        core.anchored = self.anchored
        core.max_underweight = float(self.max_underweight)
        return core

    def needs_session_flags(self) -> bool:
        """Whether the simulator needs per-bar session flags (square-off or borrow fee)."""
        return bool(self.cost_model().square_off) or self.short_borrow_rate > 0


_MARKET_DEFAULTS = ("position_levels", "min_pos", "max_pos", "integer_shares",
                    "turnover_penalty")
# The training reward's price of turnover as a multiple of the cost model's mean one-way rate
# (EnvConfig(turnover_penalty=None), the trainer's default). 9 x nse_delivery's 0.111% is the
# 0.01 chosen on validation only, never on test days: the smallest of 0, 0.002, 0.005, 0.01
# that kept the median validation cost at or below 5% of equity a year for both presets over
# 10 bundled symbols (bench/generalisation.py --select; without it the fast preset traded
# ~90x its equity a year and paid ~11%). Scaling with the cost model keeps a market without
# costs (the planted-signal benchmark) unpenalised.
TURNOVER_COST_MULTIPLE = 9.0


def parse_cutoff(text: Any) -> int | None:
    """'HH:MM' -> minutes after midnight, None when it is not such a time."""
    if not isinstance(text, str) or len(text.split(":")) != 2:
        return None
    hours, minutes = text.split(":")
    if not (hours.strip().isdigit() and minutes.strip().isdigit()):
        return None
    h, m = int(hours), int(minutes)
    return h * 60 + m if 0 <= h < 24 and 0 <= m < 60 else None



@dataclass
class PortfolioConfig(EpisodeConfig):
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
    half_spread_bps: float | None = None
    """Half-spread per fill, bps of notional; None: the cost preset's (EnvConfig's doc)."""
    slippage_bps: float | None = None
    """Slippage per fill, bps of notional; None: the cost preset's (EnvConfig's doc)."""
    reward: str = "log_return"
    """'log_return', 'pnl' (change of equity / initial cash), 'diff_sharpe', 'active' (the
    log return minus the benchmark's over the same row, costs included: equal weight bought
    at the episode's first fill and held, in a shadow book per env) or 'vol_scaled'."""
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
    reward_base: str = "absolute"
    """What 'diff_sharpe' and 'vol_scaled' are computed on: 'absolute' or 'active' (minus the
    benchmark's return: equal weight bought at the episode's first fill and held)."""
    vol_window: int = 60
    """'vol_scaled': the trailing volatility is the sample std of the equal-weight index's
    last vol_window close-to-close returns up to the decision row, floored at 1 bp; the
    first vol_window rows take the first full estimate; the penalties are divided by it too.
    'diff_sharpe' on active returns floors its variance at a quarter of its square (as
    EnvConfig.vol_window)."""
    action_mode: str = "absolute"
    """'absolute' (the policy's logits map to weights, fastrl.ppo.simplex.simplex_weights) or
    'anchored' (they tilt equal weight, fastrl.ppo.simplex.tilt_weights; an env whose target
    is unchanged holds, so the untilted policy is equal weight bought and held)."""
    max_underweight: float = 1.0
    """Anchored: the largest fraction of equity the policy may hold in cash, in (0, 1]."""

    def __post_init__(self) -> None:
        self.validate()

    _DATA_END = "panel"

    def validate(self) -> None:
        need = self._need
        self._validate_episode()
        need(is_finite_number(self.max_gross) and self.max_gross > 0,
             f"max_gross must be > 0, got {self.max_gross!r}")
        need(is_finite_number(self.max_weight) and self.max_weight > 0,
             f"max_weight must be > 0, got {self.max_weight!r}")
        need(is_finite_number(self.trade_band) and 0 <= self.trade_band < 1,
             f"trade_band must lie in [0, 1), got {self.trade_band!r}")
        need(self.max_underweight <= 1.0,
             f"max_underweight must lie in (0, 1] (a fraction of equity in cash), "
             f"got {self.max_underweight!r}")
        model = self.cost_model()  # raises on an unknown preset
        if not model.overnight_shorts:
            # cash delivery (CNC): no naked shorts, and longs paid in full; the portfolio
            # simulator charges neither a borrow fee nor margin interest
            where = ("long_only is false" if not self.long_only else
                     f"max_gross {self.max_gross} is above 1" if self.max_gross > 1 else None)
            need(where is None,
                 f"{where}, but cost '{model.name}' is cash delivery: shorts and leverage "
                 "(negative cash) would cost nothing, since no stock-lending fee or margin "
                 "interest is charged. Set long_only=True and max_gross <= 1")

    def to_core(self) -> Any:
        from fastrl import _core  # lazy: loading the compiled simulator is for envs only

        core = self._to_core(_core.PortfolioSimConfig())
        core.long_only = bool(self.long_only)
        core.max_gross = float(self.max_gross)
        core.max_weight = float(self.max_weight)
        core.trade_band = float(self.trade_band)
        core.anchored = self.anchored
        return core

