"""The one live path: bars + book -> the agent's decision, and a decision -> its fill and mark.

``fastrl-signal`` and ``fastrl-paper`` both come through :class:`LiveEnv`, and it is the
backtest's own machinery, not a re-implementation of it:

- the features are built by :func:`fastrl.data.splits.build_market_from_bars` (or
  :func:`fastrl.data.panel.build_panel_from_bars`) from every bar up to the session, with
  the checkpoint's feature normaliser, exactly as :func:`fastrl.evaluate.evaluate_run`
  builds its test split (features are causal, so a prefix of the bars gives the same rows);
- the observation, the fill at the next open, the costs, the market rules (whole shares,
  the intraday square-off) and the mark at the close are the C++ simulator's: a one-row-
  per-symbol :class:`~fastrl.env.TradingVecEnv` (or a one-env
  :class:`~fastrl.env_portfolio.PortfolioVecEnv`) is loaded with the book's state
  (``set_state``) and stepped, the same env the backtest steps;
- portfolio accounting (equity, weights, costs) goes through
  :func:`fastrl.markets.portfolio.backtest.step_holding`, the portfolio backtest's own
  stepping, one step from the book's carried holding.

Driving the simulator rather than the ``reference.py`` formulas is what makes a paper
replay equal its backtest bit for bit: same arithmetic, same order of operations. The book
carries the simulator's whole per-env state as plain floats (JSON round-trips a float
exactly), so a restart continues from exactly the numbers the backtest would hold.

A block built for one session ends with one **sentinel** row (a copy of the last bar, dated
the next calendar day). The simulator ends an episode at a segment's last row and resets;
the sentinel keeps the last real bar steppable, so the state after it can be read. No fill
or mark ever lands on it: a step from row t reads rows t and t + 1 only.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from fastrl import _core
from fastrl.live.bars import LiveBars
from fastrl.live.run import LiveInputError, LiveRun

# the simulator state a book carries: the core's state keys less the market indices and the
# reset RNG (bar_index is re-derived from the book's timestamp in each new block)
_NOT_CARRIED = ("bar_index", "segment", "last_trade_bar", "rng_state")
SINGLE_STATE = tuple(k for k in _core.STATE_KEYS if k not in _NOT_CARRIED)
PORTFOLIO_STATE = tuple(k for k in _core.PORTFOLIO_STATE_KEYS if k not in _NOT_CARRIED)


@dataclass
class Book:
    """Where the account stands after the close of ``at``, with the decisions taken there.

    ``env`` holds the simulator's state per key: one value per symbol for single-symbol runs
    (each symbol trades its own sub-account of ``initial_cash``, as in the backtest), the
    portfolio's values (``shares`` a list over symbols) for a portfolio run. ``since`` is
    the bars since each symbol's last fill (the observation's third agent feature);
    ``pending`` the actions decided at the last close (level indices or exposures per
    symbol, or the portfolio's weights), filled at the next bar's open; ``accounts`` the
    portfolio backtest's own shares and cash; ``ended`` the symbols whose equity hit the
    floor (flat from there on, as the backtest).

    Single-symbol runs keep each symbol on its own calendar, as the backtest does (one
    segment per symbol): ``marks`` is the bar each symbol's state stands at (None: not
    started yet, it starts at its first bar), and ``at`` the newest of them.
    """

    kind: str
    at: str
    env: dict[str, Any]
    pending: list[Any]
    since: list[int] = field(default_factory=list)
    accounts: dict[str, Any] = field(default_factory=dict)
    ended: list[bool] = field(default_factory=list)
    marks: list[str | None] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Book:
        book = cls(**data)
        if book.kind == "single" and not book.marks:  # every symbol at ``at``
            book.marks = [book.at] * len(book.since)
        return book

    @property
    def stamp(self) -> pd.Timestamp:
        return pd.Timestamp(self.at)


@dataclass
class Step:
    """One symbol's step (single) or the portfolio's (``symbol`` is ``PORTFOLIO``):
    decided at the close of ``decided_at``, filled at ``filled_at``, marked at ``marked_at``."""

    symbol: str
    decided_at: str
    filled_at: str
    marked_at: str
    action: float  # level index, exposure or weight the agent chose
    fill_price: float
    traded_shares: float
    trades: int  # orders executed (an intraday square-off counts)
    cost: float
    position: float  # exposure held after the fill (single); weight marked at the close
    shares: float
    cash: float | None
    equity: float
    turnover: float | None = None


@dataclass
class Decision:
    """The agent's decision for one symbol at the close of ``decided_at``."""

    symbol: str
    decided_at: str
    action: float  # level index, continuous exposure, or portfolio weight
    target: float  # the exposure / weight it asks for


PORTFOLIO = "PORTFOLIO"


@dataclass
class SessionResult:
    """What one session did: its steps in order, the decisions and the book after it."""

    session: str
    steps: list[Step]
    decisions: list[Decision]
    book: Book


# ------------------------------------------------------------------------------ blocks


def _with_sentinel_market(block: Any) -> Any:
    from fastrl.data.block import MarketBlock

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

        next_day = (stamps[last].astype("datetime64[D]") + 1).astype("datetime64[ns]")
        segments.append({"symbol": symbol, "open": grow(block.open), "close": grow(block.close),
                         "high": grow(block.high), "low": grow(block.low),
                         "features": grow(block.features),
                         "timestamps": np.concatenate([stamps[rows], [next_day]])})
    return MarketBlock.from_segments(segments, feature_names=block.feature_names,
                                     freq=block.freq, meta=dict(block.meta))


def _with_sentinel_panel(panel: Any) -> Any:
    from fastrl.data.panel import PanelBlock

    def grow(values: np.ndarray) -> np.ndarray:
        return np.concatenate([values, values[-1:]])

    stamps = np.asarray(panel.timestamps)
    next_day = (stamps[-1].astype("datetime64[D]") + 1).astype("datetime64[ns]")
    return PanelBlock(symbols=panel.symbols, open=grow(panel.open), close=grow(panel.close),
                      features=grow(panel.features), tradable=grow(panel.tradable),
                      feature_names=panel.feature_names,
                      timestamps=np.concatenate([stamps, [next_day]]), freq=panel.freq,
                      meta=dict(panel.meta))


def live_block(run: LiveRun, bars: LiveBars, first: pd.Timestamp, last: pd.Timestamp) -> Any:
    """The block the simulator trades from the close of ``first`` to the close of ``last``:
    every bar up to ``last`` featurised with the run's normaliser, rows from ``first``'s day
    on (plus the observation window before them), then the sentinel row."""
    prefix = bars.through(last)
    # the split starts a bar early, for every symbol: a split needs two rows to step
    # (window + 1 with context), and a symbol may have no bar at ``first``
    starts = [pd.Timestamp(first)]
    for frame in prefix.values():
        index = frame.index
        k = int(np.searchsorted(index, np.datetime64(pd.Timestamp(first)), side="left"))
        if k > 0:
            starts.append(index[k - 1])
        if len(index) >= 2:
            starts.append(index[-2])
    test_start = pd.Timestamp(min(starts)).normalize()
    common = {"val_days": 0, "window": run.window, "normaliser_state": run.normaliser_state,
              "test_start": test_start}
    try:
        if run.portfolio:
            from fastrl.data.panel import build_panel_from_bars

            panel = build_panel_from_bars(prefix, run.freq, source=bars.source, **common).test
            return _with_sentinel_panel(panel)
        from fastrl.data.splits import build_market_from_bars

        block = build_market_from_bars(prefix, run.freq, source=bars.source, **common).test
    except ValueError as exc:  # too little history, features of bad bars
        raise LiveInputError(f"cannot build the features up to {last}: {exc}") from None
    if block is None:
        raise LiveInputError(f"no bars from {test_start.date()} to trade")
    return _with_sentinel_market(block)


# ------------------------------------------------------------------------------ the env


class LiveEnv:
    """The simulator loaded with a book: ``decide()`` asks the agent at the current bars,
    ``step(actions)`` (portfolio) or ``advance_to(stamp, present)`` (single-symbol runs)
    fills the pending actions at the next bar and marks it.

    The batch of observations handed to the agent has the backtest's shape (one row per
    symbol, or one portfolio), so the network sees the same batch it sees in the backtest.
    In single-symbol runs each symbol steps on its own calendar, as its backtest segment
    does: at a bar only the symbols that have it move; the others keep their state.
    """

    def __init__(self, run: LiveRun, block: Any, book: Book | None,
                 start: pd.Timestamp | None = None) -> None:
        self.run = run
        self.block = block
        self.config = run.env_config()
        if run.portfolio:
            from fastrl.env_portfolio import PortfolioVecEnv

            self.env: Any = PortfolioVecEnv(block, 1, self.config, num_threads=1, seed=0)
            self.stamps = [np.asarray(block.timestamps)]
        else:
            from fastrl.env import TradingVecEnv

            self.env = TradingVecEnv(block, block.num_segments, self.config, num_threads=1,
                                     seed=0)
            stamps = np.asarray(block.timestamps)
            self.stamps = [stamps[block.segment(s)] for s in range(block.num_segments)]
        self.env.reset(seed=0)
        self.fresh = self.env.get_state()  # what the backtest's reset leaves
        if book is None:
            if run.portfolio:  # a fresh account at the close of ``start``
                if start is None:
                    raise ValueError("LiveEnv needs a book or a start bar")
                self.book = self._fresh_book(pd.Timestamp(start))
            else:  # no symbol started; ``start``: every symbol starts at that bar
                self.book = self._fresh_book(None)
                if start is not None:
                    self.advance_to(pd.Timestamp(start), list(range(len(run.symbols))))
        else:
            self.book = book
            self._load(book)

    # -- state --------------------------------------------------------------------------

    def _row(self, s: int, stamp: pd.Timestamp) -> int:
        """Block row of ``stamp`` in segment ``s`` (the panel: its only segment)."""
        stamps = self.stamps[s]
        local = int(np.searchsorted(stamps, np.datetime64(stamp), side="left"))
        if local >= len(stamps) - 1 or stamps[local] != np.datetime64(stamp):
            symbol = self.run.symbols[s] if not self.run.portfolio else "the panel"
            raise LiveInputError(f"{symbol} has no bar at {stamp}, where the book stands")
        return local if self.run.portfolio else int(self.block.offsets[s]) + local

    def _fresh_book(self, start: pd.Timestamp | None) -> Book:
        """A flat account of ``initial_cash`` (per symbol): the state the backtest's reset
        leaves, at the close of ``start`` (portfolio) or with no symbol started (single)."""
        state = self.fresh
        if self.run.portfolio:
            env = {k: _plain(state[k][0]) for k in PORTFOLIO_STATE}
            book = Book(kind="portfolio", at=str(start), env=env, pending=[],
                        accounts={"shares": list(env["shares"]), "cash": env["cash"]},
                        ended=[False])
            self._load(book)
            return book
        env = {k: [_plain(v) for v in state[k]] for k in SINGLE_STATE}
        count = len(self.run.symbols)
        return Book(kind="single", at="", env=env, pending=[None] * count, since=[0] * count,
                    ended=[False] * count, marks=[None] * count)

    def load(self, book: Book) -> None:
        """Puts the simulator in the state ``book`` describes (on this env's block)."""
        self._load(book)
        self.book = book

    def _load(self, book: Book) -> None:
        state = self.env.get_state()
        if self.run.portfolio:
            state["bar_index"][0] = self._row(0, book.stamp)
            for key in PORTFOLIO_STATE:
                state[key][0] = np.asarray(book.env[key], dtype=state[key].dtype)
        else:
            for s, mark in enumerate(book.marks):
                if mark is None:  # not started: the reset's state, never stepped
                    continue
                row = self._row(s, pd.Timestamp(mark))
                state["bar_index"][s] = row
                state["last_trade_bar"][s] = row - int(book.since[s])
                for key in SINGLE_STATE:
                    state[key][s] = book.env[key][s]
        self._set_state(state)

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        try:
            self.env.set_state(state)
        except ValueError as exc:
            raise LiveInputError(f"the journal's book does not fit these bars: {exc}") from None

    # -- deciding -----------------------------------------------------------------------

    def decide(self) -> list[Any]:
        """The agent's deterministic actions at the current bars (the backtest's policy call,
        one row per symbol: rows of symbols without a bar now are asked and ignored)."""
        from fastrl.markets.single.backtest import valid_actions

        obs = self.env.buffers["obs"]
        actions = self.run.agent.act(obs, deterministic=True)
        if self.run.portfolio:
            weights = np.asarray(actions, dtype=np.float64)
            if weights.shape != (1, len(self.run.symbols)) or not np.all(np.isfinite(weights)):
                raise LiveInputError(f"the policy returned weights of shape {weights.shape}")
            return [float(w) for w in weights[0]]
        return [_plain(a) for a in valid_actions(actions, self.config, self.env.num_envs)]

    def targets(self, actions: list[Any]) -> list[float]:
        """The exposures (or weights) the actions ask for."""
        if self.run.portfolio or self.config.action == "continuous":
            return [float(a) for a in actions]
        levels = self.config.position_levels
        return [float(levels[int(a)]) for a in actions]

    def decisions(self, actions: list[Any], present: list[int] | None = None
                  ) -> list[Decision]:
        """The decisions of the symbols in ``present`` (default: all) at their current bar;
        single-symbol runs keep them pending in the book."""
        present = list(range(len(self.run.symbols))) if present is None else present
        targets = self.targets(actions)
        out = []
        for s in present:
            at = self.book.at if self.run.portfolio else self.book.marks[s]
            out.append(Decision(self.run.symbols[s], str(at), float(actions[s]), targets[s]))
        if not self.run.portfolio:
            pending = list(self.book.pending)
            for s in present:
                pending[s] = actions[s]
            self.book = dataclasses.replace(self.book, pending=pending)
        return out

    # -- stepping -----------------------------------------------------------------------

    def step(self, actions: list[Any]) -> list[Step]:
        """Portfolio: fills ``actions`` (decided at the book's bar) at the next bar, marks
        its close and moves the book there."""
        if not self.run.portfolio:
            raise TypeError("single-symbol runs step with advance_to(stamp, present)")
        return self._step_portfolio(actions)

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
                new_env[key][s] = _plain(self.fresh[key][s])
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
            new_env[key][s] = _plain(values[key])
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

    def _step_portfolio(self, weights: list[float]) -> list[Step]:
        from fastrl.markets.portfolio.backtest import PortfolioHolding, step_holding

        book, env, panel = self.book, self.env, self.block
        before = env.get_state()
        t = int(before["bar_index"][0])
        ended = book.ended[0]
        if not ended:
            _, _, terminated, truncated, _ = env.step(np.asarray([weights], dtype=np.float64))
            if terminated[0] or truncated[0]:
                ended = True
        accounts = book.accounts
        holding = PortfolioHolding(shares=np.asarray(accounts["shares"], dtype=np.float64),
                                   cash=float(accounts["cash"]))
        order = None if book.ended[0] else np.asarray(weights, dtype=np.float64)
        # the portfolio backtest's own accounting, one step from the carried holding
        result = step_holding(panel, self.config, t, holding, order)
        if result.terminated_step is not None:
            ended = True
            final_shares, final_cash = np.zeros(len(self.run.symbols)), float(result.equity[1])
        else:
            final_shares, final_cash = result.final_shares, float(result.final_cash)
        after = env.get_state()
        env_state = ({k: _plain(after[k][0]) for k in PORTFOLIO_STATE} if not ended
                     else dict(book.env))
        stamps = np.asarray(panel.timestamps)
        next_open = self.config.execution == "next_open"
        fill_row = t + 1 if next_open else t
        prices = panel.open if next_open else panel.close
        common = {"decided_at": str(pd.Timestamp(stamps[t])),
                  "filled_at": str(pd.Timestamp(stamps[fill_row])),
                  "marked_at": str(pd.Timestamp(stamps[t + 1]))}
        steps = [Step(symbol=PORTFOLIO, **common, action=float("nan"), fill_price=float("nan"),
                      traded_shares=float("nan"), trades=int(result.legs[0]),
                      cost=float(result.step_costs[0]), position=float(1.0 - result.weights[0, -1]),
                      shares=float("nan"), cash=final_cash, equity=float(result.equity[1]),
                      turnover=float(result.turnover[0]))]
        for a, symbol in enumerate(self.run.symbols):
            steps.append(Step(
                symbol=symbol, **common, action=float(weights[a]) if order is not None else 0.0,
                fill_price=float(prices[fill_row, a]),
                traded_shares=float(final_shares[a] - holding.shares[a]), trades=0,
                cost=float("nan"), position=float(result.weights[0, a]),
                shares=float(final_shares[a]), cash=None, equity=float(result.equity[1])))
        self.book = dataclasses.replace(
            book, at=common["marked_at"], env=env_state, pending=[], ended=[ended],
            accounts={"shares": [float(x) for x in final_shares], "cash": final_cash})
        return steps


def _plain(value: Any) -> Any:
    """numpy scalars and arrays as plain Python numbers and lists (JSON-safe, exact)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


# ------------------------------------------------------------------------------ sessions


def advance(run: LiveRun, bars: LiveBars, book: Book | None, session: pd.Timestamp
            ) -> SessionResult:
    """Trades one session: fills the book's pending decisions at the session's first bars,
    decides at every bar's close and steps through the session, and leaves the last
    bars' decisions pending (filled at the next session's open). ``book`` None: a fresh
    account whose first decisions are at the session's first bars.

    Single-symbol runs step each symbol on its own bars (a symbol without a bar at a time
    keeps its state, as its backtest segment has no row there); a portfolio steps the
    union calendar, its untradable cells as the panel holds them."""
    rows = bars.session_rows(session)  # per symbol: the session's bar timestamps
    first = min(stamps[0] for stamps in rows.values() if stamps)
    last = max(stamps[-1] for stamps in rows.values() if stamps)
    decisions: list[Decision] = []
    steps: list[Step] = []
    if run.portfolio:
        start = first if book is None else book.stamp
        env = LiveEnv(run, live_block(run, bars, start, last), book, start)
        if book is None:  # the first decision is at the first bar's close, as in the backtest
            actions = env.decide()
            decisions += env.decisions(actions)
        else:
            actions = list(book.pending)
        clock = sorted({stamp for stamps in rows.values() for stamp in stamps
                        if stamp > env.book.stamp})
        for _stamp in clock:
            steps += env.step(actions)
            actions = env.decide()
            decisions += env.decisions(actions)
        book_after = dataclasses.replace(env.book, pending=actions)
        return SessionResult(session=str(session.date()), steps=steps, decisions=decisions,
                             book=book_after)
    marks = [pd.Timestamp(m) for m in (book.marks if book is not None else []) if m is not None]
    start = min([first, *marks])
    env = LiveEnv(run, live_block(run, bars, start, last), book)
    have = {symbol: set(stamps) for symbol, stamps in rows.items()}
    clock = sorted({stamp for stamps in rows.values() for stamp in stamps})
    for stamp in clock:
        present = [s for s, symbol in enumerate(run.symbols) if stamp in have[symbol]]
        steps += env.advance_to(stamp, present)
        decisions += env.decisions(env.decide(), present)
    return SessionResult(session=str(session.date()), steps=steps, decisions=decisions,
                         book=env.book)


__all__ = ["PORTFOLIO", "Book", "Decision", "LiveEnv", "SessionResult", "Step", "advance",
           "live_block"]
