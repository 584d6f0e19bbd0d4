"""Type stubs for the compiled simulator (cpp/bindings/core.cpp). Use the envs instead
(fastrl.markets.single.env, fastrl.markets.portfolio.env)."""

import numpy as np
import numpy.typing as npt

STATE_KEYS: tuple[str, ...]  # Simulator's per-env state arrays, in get_state order
PORTFOLIO_STATE_KEYS: tuple[str, ...]  # PortfolioSimulator's, likewise

class CostModel:
    buy_rate: float
    sell_rate: float
    brokerage_rate: float
    brokerage_cap: float
    gst_on_brokerage: float
    fixed_fee_buy: float
    fixed_fee_sell: float
    def __init__(self) -> None: ...

class EpisodeConfig:
    """The settings both simulators share (cpp/include/fastrl/episode.hpp)."""

    window: int
    episode_length: int
    execution: int  # 0 next open, 1 close
    integer_shares: bool
    costs: CostModel
    reward: int  # 0 log return, 1 pnl, 2 differential Sharpe, 3 active, 4 vol-scaled
    dsr_eta: float
    drawdown_penalty: float
    turnover_penalty: float
    initial_cash: float
    equity_floor: float
    random_start: bool
    min_envs_per_thread: int
    active_base: bool  # diff_sharpe / vol_scaled on the return minus the benchmark's
    vol_window: int  # returns in the vol-scaled reward's trailing volatility (>= 2)
    def __init__(self) -> None: ...

class SimConfig(EpisodeConfig):
    continuous: bool
    position_levels: list[float]
    min_pos: float
    max_pos: float
    round_robin: bool
    square_off: bool  # intraday (MIS) square-off; needs session_flags
    short_borrow_rate: float  # annual; charged at rate / 252 per session close held short
    anchored: bool  # the action is an underweight u: the target exposure is 1 - u
    max_underweight: float

class _SimulatorBase:
    """What Simulator and PortfolioSimulator share (stub only; not a runtime class)."""

    @property
    def num_envs(self) -> int: ...
    @property
    def obs_dim(self) -> int: ...
    @property
    def num_threads(self) -> int: ...
    def reset(self, seed: int) -> None: ...
    def get_state(self) -> dict[str, np.ndarray]: ...
    def set_state(self, state: dict[str, np.ndarray]) -> None: ...
    shares: npt.NDArray[np.float64]
    cash: npt.NDArray[np.float64]
    equity: npt.NDArray[np.float64]
    peak_equity: npt.NDArray[np.float64]
    bar_index: npt.NDArray[np.int64]
    episode_steps: npt.NDArray[np.int64]
    episode_return: npt.NDArray[np.float64]
    episode_costs: npt.NDArray[np.float64]
    episode_trades: npt.NDArray[np.int64]

class Simulator(_SimulatorBase):
    def __init__(
        self,
        open: npt.NDArray[np.float64],
        close: npt.NDArray[np.float64],
        features: npt.NDArray[np.float32],
        offsets: npt.NDArray[np.int64],
        segment_names: list[str],
        config: SimConfig,
        num_envs: int,
        num_threads: int,
        seed: int,
        buffers: dict[str, np.ndarray],
        session_flags: npt.NDArray[np.uint8] | None = None,  # single.env.session_flags
    ) -> None: ...
    def step(self, actions: np.ndarray) -> None: ...
    position: npt.NDArray[np.float64]
    entry_price: npt.NDArray[np.float64]
    segment: npt.NDArray[np.int64]
    last_trade_bar: npt.NDArray[np.int64]
    dsr_a: npt.NDArray[np.float64]
    dsr_b: npt.NDArray[np.float64]
    rng_state: npt.NDArray[np.uint64]
    bench_position: npt.NDArray[np.float64]  # the shadow buy-and-hold book (sim.hpp)
    bench_shares: npt.NDArray[np.float64]
    bench_cash: npt.NDArray[np.float64]

# Multi-asset portfolio simulator (cpp/bindings/core_portfolio.cpp). Use the env
# (fastrl.markets.portfolio.env).

class PortfolioSimConfig(EpisodeConfig):
    long_only: bool
    max_gross: float
    max_weight: float
    trade_band: float
    anchored: bool  # an unchanged target weight vector sends no order

class PortfolioSimulator(_SimulatorBase):
    def __init__(
        self,
        open: npt.NDArray[np.float64],
        close: npt.NDArray[np.float64],
        features: npt.NDArray[np.float32],
        tradable: npt.NDArray[np.bool_],
        symbols: list[str],
        config: PortfolioSimConfig,
        num_envs: int,
        num_threads: int,
        seed: int,
        buffers: dict[str, np.ndarray],
    ) -> None: ...
    @property
    def num_assets(self) -> int: ...
    @property
    def state_names(self) -> list[str]: ...
    def step(self, weights: npt.NDArray[np.float64],
             orders: npt.NDArray[np.bool_] | None = None) -> None: ...
    mark: npt.NDArray[np.float64]
    episode_turnover: npt.NDArray[np.float64]
    bench_cash: npt.NDArray[np.float64]  # the shadow equal-weight book (sim_portfolio.hpp)
