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
  :func:`fastrl.backtest_portfolio.simulate`, which is what the portfolio backtest reports.

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

from fastrl.live.bars import LiveBars
from fastrl.live.run import LiveInputError, LiveRun

# the simulator state a book carries (fastrl.env.STATE_KEYS less the market indices and the
# reset RNG: bar_index is re-derived from the book's timestamp in each new block)
SINGLE_STATE = ("position", "shares", "cash", "equity", "entry_price", "episode_steps",
                "episode_return", "episode_costs", "episode_trades", "peak_equity", "dsr_a",
                "dsr_b")
PORTFOLIO_STATE = ("shares", "cash", "equity", "peak_equity", "dsr_a", "dsr_b",
                   "episode_return", "episode_costs", "episode_turnover", "episode_steps",
                   "episode_trades")


@dataclass
class Book:
    """Where the account stands at the close of bar ``at``, with the decision taken there.

    ``env`` holds the simulator's state per key: one value per symbol for single-symbol runs
    (each symbol trades its own sub-account of ``initial_cash``, as in the backtest), the
    portfolio's values (``shares`` a list over symbols) for a portfolio run. ``since`` is
    the bars since each symbol's last fill (the observation's third agent feature);
    ``pending`` the actions decided at ``at`` (level indices or exposures per symbol, or the
    portfolio's weights), filled at the next bar's open; ``accounts`` the portfolio
    backtest's own shares and cash; ``ended`` the symbols whose equity hit the floor (flat
    from there on, as the backtest).
    """

    kind: str
    at: str
    env: dict[str, Any]
    pending: list[Any]
    since: list[int] = field(default_factory=list)
    accounts: dict[str, Any] = field(default_factory=dict)
    ended: list[bool] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Book:
        return cls(**data)

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
    # the split starts a day early: a split needs two rows to step (window + 1 with context)
    before = [frame.index[frame.index < first] for frame in prefix.values()]
    test_start = min((rows[-1] if len(rows) else pd.Timestamp(first)) for rows in before)
    test_start = pd.Timestamp(test_start).normalize()
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
    """The simulator loaded with a book at the close of the book's bar: ``decide()`` asks the
    agent, ``step(actions)`` fills the pending actions at the next bar and marks it.

    The batch of observations handed to the agent has the backtest's shape (one row per
    symbol, or one portfolio), so the network sees the same batch it sees in the backtest.
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
        if book is None:  # a fresh account at the close of ``start``
            if start is None:
                raise ValueError("LiveEnv needs a book or a start bar")
            self.book = self._fresh_book(pd.Timestamp(start))
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

    def _fresh_book(self, start: pd.Timestamp) -> Book:
        """A flat account of ``initial_cash`` (per symbol) at the close of ``start``: the
        state the backtest's reset leaves, moved to that bar."""
        state = self.env.get_state()
        if self.run.portfolio:
            env = {k: _plain(state[k][0]) for k in PORTFOLIO_STATE}
            book = Book(kind="portfolio", at=str(start), env=env, pending=[],
                        accounts={"shares": list(env["shares"]), "cash": env["cash"]},
                        ended=[False])
        else:
            env = {k: [_plain(v) for v in state[k]] for k in SINGLE_STATE}
            count = len(self.run.symbols)
            book = Book(kind="single", at=str(start), env=env, pending=[], since=[0] * count,
                        ended=[False] * count)
        self._load(book)
        return book

    def _load(self, book: Book) -> None:
        state = self.env.get_state()
        stamp = book.stamp
        if self.run.portfolio:
            state["bar_index"][0] = self._row(0, stamp)
            for key in PORTFOLIO_STATE:
                state[key][0] = np.asarray(book.env[key], dtype=state[key].dtype)
        else:
            for s in range(len(self.run.symbols)):
                row = self._row(s, stamp)
                state["bar_index"][s] = row
                state["last_trade_bar"][s] = row - int(book.since[s])
                for key in SINGLE_STATE:
                    state[key][s] = book.env[key][s]
        try:
            self.env.set_state(state)
        except ValueError as exc:
            raise LiveInputError(f"the journal's book does not fit these bars: {exc}") from None

    # -- deciding -----------------------------------------------------------------------

    def decide(self) -> list[Any]:
        """The agent's deterministic actions at the current bar (the backtest's policy call)."""
        from fastrl.backtest import _valid_actions

        obs = self.env.buffers["obs"]
        actions = self.run.agent.act(obs, deterministic=True)
        if self.run.portfolio:
            weights = np.asarray(actions, dtype=np.float64)
            if weights.shape != (1, len(self.run.symbols)) or not np.all(np.isfinite(weights)):
                raise LiveInputError(f"the policy returned weights of shape {weights.shape}")
            return [float(w) for w in weights[0]]
        return [_plain(a) for a in _valid_actions(actions, self.config, self.env.num_envs)]

    def targets(self, actions: list[Any]) -> list[float]:
        """The exposures (or weights) the actions ask for."""
        if self.run.portfolio or self.config.action == "continuous":
            return [float(a) for a in actions]
        levels = self.config.position_levels
        return [float(levels[int(a)]) for a in actions]

    def decisions(self, actions: list[Any]) -> list[Decision]:
        at = self.book.at
        return [Decision(symbol, at, float(a), t) for symbol, a, t in
                zip(self.run.symbols, actions, self.targets(actions), strict=True)]

    # -- stepping -----------------------------------------------------------------------

    def step(self, actions: list[Any]) -> list[Step]:
        """Fills ``actions`` (decided at the book's bar) at the next bar, marks its close,
        and moves the book there (every symbol has that next bar: one clock)."""
        if self.run.portfolio:
            return self._step_portfolio(actions)
        return self._step_single(actions)

    def _step_single(self, actions: list[Any]) -> list[Step]:
        book, env = self.book, self.env
        before = env.get_state()
        count = len(self.run.symbols)
        held = [0 if ended else a for a, ended in zip(actions, book.ended, strict=True)]
        batch = np.asarray(held, dtype=np.int64 if self.config.action == "discrete"
                           else np.float64)
        _, _, terminated, truncated, info = env.step(batch)
        after = env.get_state()
        next_open = self.config.execution == "next_open"
        steps: list[Step] = []
        new_env = {k: list(book.env[k]) for k in SINGLE_STATE}
        since = list(book.since)
        ended = list(book.ended)
        stamps = np.asarray(self.block.timestamps)
        at_rows = before["bar_index"]
        marks: list[str] = []
        for s in range(count):
            t = int(at_rows[s])
            if terminated[s] or truncated[s]:
                # equity hit the floor: the backtest records the episode's end, then flat
                episode = info["episode"]
                values = {**{k: before[k][s] for k in SINGLE_STATE},
                          "equity": episode["equity"][s], "episode_costs": episode["costs"][s],
                          "episode_trades": episode["trades"][s],
                          "position": episode["position"][s], "shares": episode["shares"][s]}
                ended[s] = True
                values["cash"] = float("nan")  # not reported at an episode's end
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
            fill_row = t + 1 if next_open else t
            steps.append(Step(
                symbol=self.run.symbols[s], decided_at=str(pd.Timestamp(stamps[t])),
                filled_at=str(pd.Timestamp(stamps[fill_row])),
                marked_at=str(pd.Timestamp(stamps[t + 1])), action=float(held[s]),
                fill_price=float(self.block.open[t + 1] if next_open else self.block.close[t]),
                traded_shares=float(values["shares"]) - float(before["shares"][s]),
                trades=int(values["episode_trades"]) - int(before["episode_trades"][s]),
                # the backtest's step cost: the difference of the running sums
                cost=float(values["episode_costs"]) - float(before["episode_costs"][s]),
                position=float(values["position"]), shares=float(values["shares"]),
                cash=None if ended[s] else float(values["cash"]),
                equity=float(values["equity"])))
            marks.append(str(pd.Timestamp(stamps[t + 1])))
        if len(set(marks)) > 1:
            raise LiveInputError(f"the symbols' bars are not on one clock: a step marked at "
                                 f"{sorted(set(marks))}")
        self.book = dataclasses.replace(book, env=new_env, since=since, ended=ended,
                                        at=marks[0], pending=[])
        return steps

    def _step_portfolio(self, weights: list[float]) -> list[Step]:
        from fastrl.backtest_portfolio import AGENT, PortfolioHolding, simulate

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
        result = simulate(panel, self.config, t, [order], AGENT, floor=True, holding=holding,
                          liquidate=False)
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
    """Trades one session: fills the book's pending decision at the session's first bar,
    decides at every bar's close and steps through the session, and leaves the last
    bar's decision pending (filled at the next session's open). ``book`` None: a fresh
    account whose first decision is at the session's first bar."""
    rows = bars.session_rows(session)  # per symbol: the session's bar timestamps
    first = min(stamps[0] for stamps in rows.values())
    last = max(stamps[-1] for stamps in rows.values())
    start = first if book is None else book.stamp
    env = LiveEnv(run, live_block(run, bars, start, last), book, start)
    decisions: list[Decision] = []
    steps: list[Step] = []
    if book is None:  # the first decision is at the first bar's close, as in the backtest
        actions = env.decide()
        decisions += env.decisions(actions)
    else:
        actions = list(book.pending)
    clock = sorted({stamp for stamps in rows.values() for stamp in stamps
                    if stamp > env.book.stamp})
    for stamp in clock:
        if not run.portfolio:
            absent = [s for s in run.symbols if stamp not in set(rows[s])]
            if absent:
                raise LiveInputError(f"missing bar: {', '.join(absent)} has no bar at {stamp} "
                                     "where the other symbols have one")
        steps += env.step(actions)
        actions = env.decide()
        decisions += env.decisions(actions)
    book_after = dataclasses.replace(env.book, pending=actions)
    return SessionResult(session=str(session.date()), steps=steps, decisions=decisions,
                         book=book_after)


__all__ = ["PORTFOLIO", "Book", "Decision", "LiveEnv", "SessionResult", "Step", "advance",
           "live_block"]
