"""The single-symbol live env: one TradingVecEnv row per symbol, each symbol on its own
calendar (one backtest segment per symbol) and its own equal-capital sub-account."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from fastrl import _core
from fastrl.data.block import MarketBlock
from fastrl.live.book import (
    NOT_CARRIED,
    Book,
    Decision,
    LiveEnv,
    LiveInputError,
    SessionResult,
    Step,
    next_day,
    plain,
)
from fastrl.live.decide import live_block
from fastrl.markets.single.backtest import valid_actions
from fastrl.markets.single.env import TradingVecEnv

if TYPE_CHECKING:
    from fastrl.live.bars import LiveBars
    from fastrl.live.run import LiveRun

# the simulator state a book carries: the core's state keys less the market indices and the
# reset RNG (bar_index is re-derived from the book's timestamp in each new block)
SINGLE_STATE = tuple(k for k in _core.STATE_KEYS if k not in NOT_CARRIED)


class SingleLiveEnv(LiveEnv):
    """``advance_to(stamp, present)`` moves the symbols with a bar at ``stamp``: at a bar only
    the symbols that have it move; the others keep their state, as a backtest segment
    without that bar does."""

    kind = "single"
    state_keys = SINGLE_STATE

    def _make_env(self) -> tuple[Any, list[np.ndarray]]:
        block = self.block
        env = TradingVecEnv(block, block.num_segments, self.config, num_threads=1, seed=0)
        stamps = np.asarray(block.timestamps)
        return env, [stamps[block.segment(s)] for s in range(block.num_segments)]

    def _start(self, start: pd.Timestamp | None) -> Book:
        # no symbol started; ``start``: every symbol starts at that bar
        self.book = self._fresh_book()
        if start is not None:
            self.advance_to(pd.Timestamp(start), list(range(len(self.run.symbols))))
        return self.book

    # -- state --------------------------------------------------------------------------

    def _row(self, s: int, stamp: pd.Timestamp) -> int:
        """Block row of ``stamp`` in segment ``s``."""
        stamps = self.stamps[s]
        local = int(np.searchsorted(stamps, np.datetime64(stamp), side="left"))
        if local >= len(stamps) - 1 or stamps[local] != np.datetime64(stamp):
            raise LiveInputError(f"{self.run.symbols[s]} has no bar at {stamp}, where the "
                                 "book stands")
        return int(self.block.offsets[s]) + local

    def _fresh_book(self) -> Book:
        """A flat account of ``initial_cash`` per symbol, no symbol started: the state the
        backtest's reset leaves."""
        state = self.fresh
        env = {k: [plain(v) for v in state[k]] for k in SINGLE_STATE}
        count = len(self.run.symbols)
        return Book(kind="single", at="", env=env, pending=[None] * count, since=[0] * count,
                    ended=[False] * count, marks=[None] * count)

    def _reset_value(self, key: str) -> Any:
        return [plain(v) for v in self.fresh[key]]

    def _load(self, book: Book) -> None:
        state = self.env.get_state()
        for s, mark in enumerate(book.marks):
            if mark is None:  # not started: the reset's state, never stepped
                continue
            row = self._row(s, pd.Timestamp(mark))
            state["bar_index"][s] = row
            state["last_trade_bar"][s] = row - int(book.since[s])
            for key in SINGLE_STATE:
                state[key][s] = book.env[key][s]
        self._set_state(state)

    # -- deciding -----------------------------------------------------------------------

    def decide(self) -> list[Any]:
        """The backtest's policy call, one row per symbol: rows of symbols without a bar now
        are asked and ignored."""
        actions = self.run.act(self)
        return [plain(a) for a in valid_actions(actions, self.config, self.env.num_envs)]

    def targets(self, actions: list[Any]) -> list[float]:
        """The exposures the simulator trades for ``actions`` (anchored: 1 - the
        underweight)."""
        if not actions:
            return []
        kind = np.int64 if self.config.action == "discrete" else np.float64
        return [float(x) for x in self.config.exposure_of(np.asarray(actions, dtype=kind))]

    def decisions(self, actions: list[Any], present: list[int] | None = None
                  ) -> list[Decision]:
        """The decisions of the symbols in ``present`` (default: all), kept pending in the
        book."""
        present = list(range(len(self.run.symbols))) if present is None else present
        targets = self.targets(actions)
        out = [Decision(self.run.symbols[s], str(self.book.marks[s]), float(actions[s]),
                        targets[s]) for s in present]
        pending = list(self.book.pending)
        for s in present:
            pending[s] = actions[s]
        self.book = dataclasses.replace(self.book, pending=pending)
        return out

    # -- stepping -----------------------------------------------------------------------

    def advance_to(self, stamp: pd.Timestamp, present: list[int]) -> list[Step]:
        """Moves the symbols in ``present`` (those with a bar at ``stamp``) to that bar: a
        started symbol fills its pending action at the bar's open and is marked at its
        close (a ruined one stays flat), a symbol not started yet starts flat there. The
        other symbols keep their state, as a backtest segment without that bar does."""
        book, env = self.book, self.env
        count = len(self.run.symbols)
        stepping = [s for s in present if book.marks[s] is not None and not book.ended[s]]
        ruined = [s for s in present if book.marks[s] is not None and book.ended[s]]
        starting = [s for s in present if book.marks[s] is None]
        before = env.get_state()
        new_env = {k: list(book.env[k]) for k in SINGLE_STATE}
        since, ended, marks = list(book.since), list(book.ended), list(book.marks)
        steps: list[Step] = [] if not ruined else [self._flat_step(s, stamp) for s in ruined]
        after = before
        if stepping:
            batch = np.zeros(count, dtype=np.int64 if self.config.action == "discrete"
                             else np.float64)
            for s in stepping:
                batch[s] = book.pending[s]
            _, _, terminated, truncated, info = env.step(batch)
            after = env.get_state()
            for s in stepping:
                steps.append(self._record(s, stamp, before, after, terminated[s] or truncated[s],
                                          info, new_env, since, ended))
        for s in present:
            marks[s] = str(stamp)
        state = {k: v.copy() for k, v in after.items()} if stepping else before
        moved = set(stepping)
        restore = [s for s in range(count) if s not in moved or ended[s]]
        for s in restore:  # symbols without this bar (and ruined ones) keep their state
            for key, values in state.items():
                if values.ndim == 1 and values.shape[0] == count:
                    values[s] = before[key][s]
        for s in starting:  # flat at this bar, as the backtest's reset is at its first one
            row = self._row(s, stamp)
            for key, values in state.items():
                if values.ndim == 1 and values.shape[0] == count:
                    values[s] = self.fresh[key][s]
            state["bar_index"][s] = row
            state["last_trade_bar"][s] = row
            for key in SINGLE_STATE:
                new_env[key][s] = plain(self.fresh[key][s])
            since[s] = 0
        if restore or starting:
            for s in range(count):  # ruined symbols: the book's flat values
                if ended[s] and marks[s] is not None:
                    state["bar_index"][s] = self._row(s, pd.Timestamp(marks[s]))
            self._set_state(state)
        at = max((m for m in marks if m is not None), key=pd.Timestamp, default=str(stamp))
        self.book = dataclasses.replace(book, env=new_env, since=since, ended=ended,
                                        marks=marks, at=at)
        return steps

    def _record(self, s: int, stamp: pd.Timestamp, before: dict, after: dict, done: bool,
                info: dict, new_env: dict, since: list[int], ended: list[bool]) -> Step:
        """Symbol ``s``'s step into the book (``new_env``, ``since``, ``ended``) and the
        journal, as the backtest records it."""
        stamps = np.asarray(self.block.timestamps)
        t = int(before["bar_index"][s])
        if stamps[t + 1] != np.datetime64(stamp):
            raise LiveInputError(f"{self.run.symbols[s]}: the bar after {stamps[t]} is "
                                 f"{stamps[t + 1]}, not {stamp}")
        if done:
            # equity hit the floor: the backtest records the episode's end, then flat
            episode = info["episode"]
            values = {**{k: before[k][s] for k in SINGLE_STATE},
                      "equity": episode["equity"][s], "episode_costs": episode["costs"][s],
                      "episode_trades": episode["trades"][s],
                      "position": episode["position"][s], "shares": episode["shares"][s]}
            ended[s] = True
        else:
            values = {k: after[k][s] for k in SINGLE_STATE}
        for key in SINGLE_STATE:
            new_env[key][s] = plain(values[key])
        if ended[s]:  # flat cash from here on, as the backtest pads a ruined segment
            new_env["position"][s], new_env["shares"][s] = 0.0, 0.0
            new_env["cash"][s] = new_env["equity"][s]
            since[s] = 0
        else:
            since[s] = int(after["bar_index"][s] - after["last_trade_bar"][s])
        next_open = self.config.execution == "next_open"
        fill_row = t + 1 if next_open else t
        return Step(
            symbol=self.run.symbols[s], decided_at=str(pd.Timestamp(stamps[t])),
            filled_at=str(pd.Timestamp(stamps[fill_row])),
            marked_at=str(pd.Timestamp(stamps[t + 1])), action=float(self.book.pending[s]),
            fill_price=float(self.block.open[t + 1] if next_open else self.block.close[t]),
            traded_shares=float(values["shares"]) - float(before["shares"][s]),
            trades=int(values["episode_trades"]) - int(before["episode_trades"][s]),
            # the backtest's step cost: the difference of the running sums
            cost=float(values["episode_costs"]) - float(before["episode_costs"][s]),
            position=float(values["position"]), shares=float(values["shares"]),
            cash=None if ended[s] else float(values["cash"]), equity=float(values["equity"]))

    def _flat_step(self, s: int, stamp: pd.Timestamp) -> Step:
        """A ruined symbol's step: flat, its equity where the floor left it (the backtest's
        padding of a terminated segment)."""
        book = self.book
        mark = str(pd.Timestamp(book.marks[s]))
        return Step(symbol=self.run.symbols[s], decided_at=mark, filled_at=str(stamp),
                    marked_at=str(stamp), action=0.0, fill_price=float("nan"),
                    traded_shares=0.0, trades=0, cost=0.0, position=0.0, shares=0.0,
                    cash=None, equity=float(book.env["equity"][s]))

    # -- blocks and sessions ------------------------------------------------------------

    @staticmethod
    def sentinel(block: MarketBlock) -> MarketBlock:
        segments = []
        stamps = np.asarray(block.timestamps)
        for s, symbol in enumerate(block.symbols):
            rows = block.segment(s)
            last = rows.stop - 1

            def grow(values: np.ndarray | None, rows: slice = rows, last: int = last
                     ) -> np.ndarray | None:
                if values is None:
                    return None
                return np.concatenate([values[rows], values[last:last + 1]])

            segments.append({"symbol": symbol, "open": grow(block.open),
                             "close": grow(block.close), "high": grow(block.high),
                             "low": grow(block.low), "features": grow(block.features),
                             "timestamps": np.concatenate([stamps[rows],
                                                           [next_day(stamps[last])]])})
        return MarketBlock.from_segments(segments, feature_names=block.feature_names,
                                         freq=block.freq, meta=dict(block.meta))

    @classmethod
    def trade_session(cls, run: LiveRun, bars: LiveBars, book: Book | None,
                      session: pd.Timestamp, rows: dict[str, list[pd.Timestamp]],
                      first: pd.Timestamp, last: pd.Timestamp) -> SessionResult:
        """Each symbol steps on its own bars (a symbol without a bar at a time keeps its
        state, as its backtest segment has no row there)."""
        marks = [pd.Timestamp(m) for m in (book.marks if book is not None else [])
                 if m is not None]
        start = min([first, *marks])
        env = cls(run, live_block(run, bars, start, last), book, bars=bars)
        have = {symbol: set(stamps) for symbol, stamps in rows.items()}
        clock = sorted({stamp for stamps in rows.values() for stamp in stamps})
        steps: list[Step] = []
        decisions: list[Decision] = []
        for stamp in clock:
            present = [s for s, symbol in enumerate(run.symbols) if stamp in have[symbol]]
            steps += env.advance_to(stamp, present)
            decisions += env.decisions(env.decide(), present)
        return SessionResult(session=str(session.date()), steps=steps, decisions=decisions,
                             book=env.book)

    # -- signals and journals -----------------------------------------------------------

    @classmethod
    def accounts(cls, run: LiveRun) -> int:
        return len(run.symbols)

    def held_book(self, closes: np.ndarray, capital: float,
                  positions: dict[str, dict[str, float]]) -> Book:
        """Each symbol's equal share of ``capital`` holding its shares, at the level (or
        exposure) nearest to what they are worth."""
        book, config = self.book, self.config
        symbols = self.run.symbols
        shares = np.array([positions.get(s, {}).get("shares", 0.0) for s in symbols])
        per_symbol = capital / len(symbols)
        state = {k: list(v) for k, v in book.env.items()}
        since = list(book.since)
        # the simulator's position is an exposure (anchored: 1 - the underweight), so the
        # holding maps to the nearest exposure the actions can reach
        if config.action == "discrete":
            reachable = config.exposure_of(np.arange(len(config.position_levels)))
        else:
            low, high = config.action_bounds()
            reachable = np.sort(config.exposure_of(np.array([low, high])))
        for s, symbol in enumerate(symbols):
            held = positions.get(symbol, {})
            exposure = shares[s] * closes[s] / per_symbol
            if config.action == "discrete":  # the level the holding is closest to
                position = float(reachable[int(np.argmin(np.abs(reachable - exposure)))])
            else:
                position = float(np.clip(exposure, reachable[0], reachable[-1]))
            state["position"][s] = position if shares[s] != 0 else 0.0
            state["shares"][s] = float(shares[s])
            state["cash"][s] = per_symbol - float(shares[s] * closes[s])
            state["equity"][s] = state["peak_equity"][s] = per_symbol
            state["entry_price"][s] = (float(held.get("entry_price", closes[s])) if shares[s]
                                       else 0.0)
            since[s] = int(held.get("bars_since_trade", 0))
        return Book(kind=book.kind, at=book.at, env=state, pending=list(book.pending),
                    since=since, ended=list(book.ended), marks=list(book.marks))

    def holding(self, s: int, closes: np.ndarray) -> tuple[float, float]:
        held = float(self.book.env["shares"][s])
        return held, float(self.book.env["cash"][s]) + held * float(closes[s])

    def signal_notes(self, capital: float) -> list[str]:
        env, cost = self.run.config.env, self.config.cost_model()
        notes = []
        if not getattr(cost, "overnight_shorts", True) and env.short_borrow_rate == 0:
            notes.append("delivery: long/flat (no overnight shorts)")
        count = self.accounts(self.run)
        notes.append(f"each symbol trades an equal share of the capital ({capital / count:,.2f})")
        return notes

    @staticmethod
    def session_equity(result: SessionResult) -> float:
        """The sum of the symbols' equal-capital sub-accounts (the combined backtest's
        total)."""
        return float(sum(result.book.env["equity"]))


__all__ = ["SINGLE_STATE", "SingleLiveEnv"]
