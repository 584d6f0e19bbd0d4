"""PortfolioVecEnv: the gymnasium VectorEnv face of the C++ multi-asset portfolio simulator.

``num_envs`` portfolios over one :class:`~fastrl.data.panel.PanelBlock` of A symbols are
stepped at once in a persistent C++ thread pool with the GIL released. As with
:class:`fastrl.markets.single.env.TradingVecEnv`, every returned array is a view of a buffer
the simulator overwrites on the next step, autoreset is ``SAME_STEP`` (``info["final_obs"]``
rows where ``info["_final_obs"]``), ``terminated`` means equity fell to the floor (no
bootstrap) and ``truncated`` means length or data end (bootstrap). ``info["episode"]`` holds
return ``r``, length ``l``, final ``equity``, ``costs``, ``trades`` (executed orders),
``turnover`` (sum over steps of traded notional / equity), the ``shares`` [N, A] and ``cash``
held when the episode ended, and ``liquidation``: what selling those shares at the last marks
would cost (reported, not charged: ``equity`` and ``costs`` exclude it).

**Action**: an ``[N, A]`` array of target weights, fractions of equity per symbol; the
rest is cash (``cash weight = 1 - sum(w)``; negative when gross leverage is above 1).
Long-only by default; ``|w_a| <= max_weight`` and ``sum |w_a| <= max_gross`` (1e-9 slack
for rounding); under cash delivery (``nse_delivery``) long-only with ``max_gross <= 1``, since
neither a borrow fee nor margin interest is charged. Bad weights (NaN/inf, negative under
long-only, a cap exceeded, wrong shape) raise ValueError and leave every env unchanged.

**Execution** (see ``cpp/include/fastrl/sim_portfolio.hpp``): weights chosen at row t are
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

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from fastrl import _core
from fastrl.data.panel import PanelBlock, build_panel
from fastrl.env_config import PortfolioConfig
from fastrl.markets.base import SIM_BUFFER_SPECS, CoreVecEnv

BUFFER_SPECS = {**SIM_BUFFER_SPECS, "ep_turnover": (np.float64, ()),
                "step_costs": (np.float64, ()), "step_turnover": (np.float64, ()),
                "ep_cash": (np.float64, ())}  # and "ep_shares" [N, A], sized by the panel

PORTFOLIO_STATE_KEYS: tuple[str, ...] = tuple(_core.PORTFOLIO_STATE_KEYS)
"""Keys of ``PortfolioVecEnv.get_state()``'s simulator arrays, as the C++ core declares them
(``shares`` [N, A], the rest [N]); get_state adds ``reset_seed`` and ``reset_count``."""


def portfolio_obs_dim(panel: PanelBlock, window: int) -> int:
    """Floats per observation: window x A x F features, A weights, the cash weight."""
    return window * panel.num_assets * panel.num_features + panel.num_assets + 1


class PortfolioVecEnv(CoreVecEnv):
    """``num_envs`` portfolios over one PanelBlock, stepped by the C++ core; ``step`` takes
    the target weights [num_envs, num_assets] (see the module doc)."""

    core_state_keys = tuple(_core.PORTFOLIO_STATE_KEYS)

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
        if not isinstance(panel, PanelBlock):
            raise ValueError(f"panel must be a fastrl PanelBlock, got {type(panel).__name__}")
        self.config = config if config is not None else PortfolioConfig()
        self.config.validate()
        self.panel = panel
        self.symbols = panel.symbols
        self.num_assets = panel.num_assets
        self.window = self.config.window
        specs = {**BUFFER_SPECS, "ep_shares": (np.float64, (self.num_assets,))}
        self._setup(num_envs, num_threads, seed, portfolio_obs_dim(panel, self.window),
                    buffers, specs)
        self._sim = _core.PortfolioSimulator(
            panel.open, panel.close, panel.features, panel.tradable, list(panel.symbols),
            self.config.to_core(), self.num_envs, int(num_threads), self._seed, self._buffers)
        b = self._buffers
        self._episode = {"r": b["ep_return"], "l": b["ep_length"], "equity": b["ep_equity"],
                         "costs": b["ep_costs"], "trades": b["ep_trades"],
                         "turnover": b["ep_turnover"], "liquidation": b["ep_liquidation"],
                         "shares": b["ep_shares"], "cash": b["ep_cash"]}
        low = 0.0 if self.config.long_only else -self.config.max_weight
        self.single_action_space = gym.spaces.Box(low, self.config.max_weight,
                                                  (self.num_assets,), np.float64)

    def _batched_action_space(self) -> gym.Space:
        """Per-name bounds only: the gross cap (sum |w| <= max_gross) is checked in step."""
        s = self.single_action_space
        return gym.spaces.Box(s.low[0], s.high[0], (self.num_envs, self.num_assets),
                              np.float64)

    def _as_actions(self, actions: Any) -> np.ndarray:
        """float64 [N, A] from float32, a torch CPU tensor or lists; else a clear error."""
        a = np.asarray(actions)
        shape = (self.num_envs, self.num_assets)
        if a.shape != shape:
            raise ValueError(f"actions must be target weights of shape {shape}, got {a.shape}")
        if a.dtype.kind != "f":
            raise ValueError(f"weights must be floats, got dtype {a.dtype}")
        return np.ascontiguousarray(a, dtype=np.float64)

    @property
    def weights(self) -> np.ndarray:
        """[N, A] float64 weights marked at the close of each env's current row (a copy)."""
        mark = self._sim.mark[self._sim.bar_index]
        return self._sim.shares * mark / self._sim.equity[:, None]

    def step_orders(self, weights: np.ndarray, orders: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """``step`` where only the envs with ``orders[i]`` True rebalance to ``weights[i]``;
        the others send no order (their weights are not read) and hold what they have."""
        orders = np.asarray(orders)
        if orders.shape != (self.num_envs,) or orders.dtype != np.bool_:
            raise ValueError(f"orders must be a bool array of shape ({self.num_envs},), got "
                             f"{orders.dtype} of shape {orders.shape}")
        self._sim.step(self._as_actions(weights), np.ascontiguousarray(orders))
        b = self._buffers
        info = {"final_obs": b["final_obs"], "_final_obs": b["done"],
                "episode": self._episode, "_episode": b["done"]}
        return b["obs"], b["rewards"], b["terminated"], b["truncated"], info

    step_costs = property(lambda self: self._buffers["step_costs"],
                          doc="[N] what the last step's orders paid (0 after a reset).")
    step_turnover = property(lambda self: self._buffers["step_turnover"],
                             doc="[N] the last step's traded notional / equity before it.")
    shares = property(lambda self: self._sim.shares, doc="[N, A] shares held.")
    mark = property(lambda self: self._sim.mark,
                    doc="[T, A] each symbol's last traded close at each row (the simulator's).")
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
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
    config = config if config is not None else PortfolioConfig()
    splits = build_panel(None if symbols is None else list(symbols), freq=freq, source=source,
                         test_days=test_days, val_days=val_days, window=config.window,
                         on_bad_rows=on_bad_rows)
    return PortfolioVecEnv(splits.block(split), num_envs, config, num_threads=num_threads,
                           seed=seed)
