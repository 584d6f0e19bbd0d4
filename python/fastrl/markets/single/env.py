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

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd

from fastrl import _core
from fastrl.data.block import MarketBlock
from fastrl.data.splits import build_market
from fastrl.env_config import EnvConfig, parse_cutoff
from fastrl.markets.base import SIM_BUFFER_SPECS, CoreVecEnv

AGENT_STATE_DIMS = 3
BUFFER_SPECS = {**SIM_BUFFER_SPECS, "ep_position": (np.float64, ()),
                "ep_shares": (np.float64, ())}
SQUARE_OFF, NO_ENTRY_AT_OPEN, SESSION_END = 1, 2, 4  # market.hpp's SessionFlag bits


def single_obs_dim(market: MarketBlock, window: int) -> int:
    """Floats per observation: window x F features, then the agent's state."""
    return window * market.num_features + AGENT_STATE_DIMS


def session_flags(market: MarketBlock, cutoff: str = "15:20") -> np.ndarray:
    """Per-bar SessionFlag bits (cpp/include/fastrl/market.hpp) from the bar timestamps.

    A session is one calendar day of one segment. Daily bars: every bar is a whole session
    (SQUARE_OFF | SESSION_END). Intraday bars (timestamps are bar starts, local time): a bar
    is SESSION_END when it is its day's last; SQUARE_OFF from the last bar that closes at or
    before ``cutoff`` to the session's end (and on the session's last bar in any case);
    NO_ENTRY_AT_OPEN on every bar after a SQUARE_OFF bar of the same session.
    """
    limit = parse_cutoff(cutoff)
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


class TradingVecEnv(CoreVecEnv):
    """``num_envs`` trading envs over one MarketBlock, stepped by the C++ core."""

    core_state_keys = tuple(_core.STATE_KEYS)

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
                    single_obs_dim(market, self.window), buffers, BUFFER_SPECS)
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
                *self.config.action_bounds(), (1,), np.float64)

    def _batched_action_space(self) -> gym.Space:
        if self.config.action == "discrete":
            return gym.spaces.MultiDiscrete(
                np.full(self.num_envs, len(self.config.position_levels), dtype=np.int64))
        return gym.spaces.Box(*self.config.action_bounds(), (self.num_envs, 1), np.float64)

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
    config = config if config is not None else EnvConfig()
    splits = build_market(list(symbols), freq=freq, source=source, test_days=test_days,
                          val_days=val_days, window=config.window, on_bad_rows=on_bad_rows)
    block = {"train": splits.train, "val": splits.val, "test": splits.test}.get(split, "unknown")
    if isinstance(block, str):
        raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
    if block is None:
        raise ValueError("split='val' needs val_days > 0")
    return TradingVecEnv(block, num_envs, config, num_threads=num_threads, seed=seed)
