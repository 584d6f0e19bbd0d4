"""What the live path carries between sessions and what it records: the :class:`Book`, the
:class:`Step` and :class:`Decision` journal rows, and :class:`LiveEnv`, the simulator
loaded with a book, whose kinds (:mod:`fastrl.markets.single.live`,
:mod:`fastrl.markets.portfolio.live`) each market provides
(``market.live_env_class()``)."""

from __future__ import annotations

import abc
import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd

from fastrl.later_state import missing_state

if TYPE_CHECKING:
    from fastrl.live.bars import LiveBars
    from fastrl.live.run import LiveRun


class LiveInputError(ValueError):
    """Input the live path refuses (bars, run folder, journal); the message names it."""


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
# the simulator state keys a book does not carry: the market indices are re-derived from the
# book's timestamp in each new block, and the reset RNG restarts with it
NOT_CARRIED = ("bar_index", "segment", "last_trade_bar", "rng_state")


@dataclass
class SessionResult:
    """What one session did: its steps in order, the decisions and the book after it."""

    session: str
    steps: list[Step]
    decisions: list[Decision]
    book: Book


# ------------------------------------------------------------------------------ the env


class LiveEnv(abc.ABC):
    """The simulator loaded with a book: ``decide()`` asks the agent at the current bars, and
    the kind's stepping fills the pending actions at the next bar and marks it.

    The batch of observations handed to the agent has the backtest's shape (one row per
    symbol, or one portfolio), so the network sees the same batch it sees in the backtest.
    ``book`` None starts a fresh account (at the close of ``start``, where the kind needs
    one). The run decides (``run.act(env)``): a trained agent from the observations, a
    rule (:mod:`fastrl.live.rule`) from ``bars`` up to the book's bars.
    """

    kind: ClassVar[str]  # the Book.kind it carries
    state_keys: ClassVar[tuple[str, ...]]  # the simulator state a book carries

    def __init__(self, run: LiveRun, block: Any, book: Book | None,
                 start: pd.Timestamp | None = None, *, bars: LiveBars | None = None) -> None:
        self.run = run
        self.block = block
        self.bars = bars  # the feed up to the decisions (a rule reads its history there)
        self.opening = book is None  # a fresh account: its first decision always orders
        self.config = run.env_config()
        self.env, self.stamps = self._make_env()
        self.env.reset(seed=0)
        self.fresh = self.env.get_state()  # what the backtest's reset leaves
        if book is None:
            self.book = self._start(start)
        else:
            self.book = self._complete(book)
            self._load(self.book)

    # -- what each kind provides --------------------------------------------------------

    @abc.abstractmethod
    def _make_env(self) -> tuple[Any, list[np.ndarray]]:
        """(the simulator's env over ``self.block``, each segment's bar timestamps)."""

    @abc.abstractmethod
    def _start(self, start: pd.Timestamp | None) -> Book:
        """A fresh account's book (loaded into the env)."""

    @abc.abstractmethod
    def _reset_value(self, key: str) -> Any:
        """The book's value of state ``key`` as the backtest's reset leaves it (JSON-safe)."""

    @abc.abstractmethod
    def _load(self, book: Book) -> None:
        """Puts the simulator in the state ``book`` describes."""

    @abc.abstractmethod
    def decide(self) -> list[Any]:
        """The agent's deterministic actions at the current bars."""

    @abc.abstractmethod
    def targets(self, actions: list[Any]) -> list[float]:
        """The exposures (or weights) the actions ask for."""

    @abc.abstractmethod
    def decisions(self, actions: list[Any], present: list[int] | None = None
                  ) -> list[Decision]:
        """The decisions of the symbols in ``present`` (default: all) at their current bar."""

    @staticmethod
    @abc.abstractmethod
    def sentinel(block: Any) -> Any:
        """``block`` with one sentinel row after its last (see :mod:`fastrl.live.decide`)."""

    @classmethod
    @abc.abstractmethod
    def trade_session(cls, run: LiveRun, bars: LiveBars, book: Book | None,
                      session: pd.Timestamp, rows: dict[str, list[pd.Timestamp]],
                      first: pd.Timestamp, last: pd.Timestamp) -> SessionResult:
        """One session traded from ``book`` (see :func:`fastrl.live.decide.advance`)."""

    @classmethod
    @abc.abstractmethod
    def accounts(cls, run: LiveRun) -> int:
        """How many ``initial_cash`` accounts the run's capital is (the signal's default)."""

    @abc.abstractmethod
    def held_book(self, closes: np.ndarray, capital: float,
                  positions: dict[str, dict[str, float]]) -> Book:
        """The fresh book holding ``positions`` within ``capital`` (fastrl-signal)."""

    @abc.abstractmethod
    def holding(self, s: int, closes: np.ndarray) -> tuple[float, float]:
        """(shares of symbol ``s`` held, the equity its target is a fraction of)."""

    def order_band(self, equity: float) -> float:
        """The notional under which the simulator sends no order (none: 0)."""
        return 0.0

    def signal_notes(self, capital: float) -> list[str]:
        """What a signal of this kind notes about its orders."""
        return []

    @staticmethod
    @abc.abstractmethod
    def session_equity(result: SessionResult) -> float:
        """The account's equity at the session's last close."""

    # -- shared -------------------------------------------------------------------------

    def load(self, book: Book) -> None:
        """Puts the simulator in the state ``book`` describes (on this env's block)."""
        book = self._complete(book)
        self._load(book)
        self.book = book

    @classmethod
    def missing_state(cls, run: Any, book: Book) -> tuple[list[str], list[str]]:
        """(keys ``book`` lacks that stand for the reset's value, keys it lacks that cannot
        be filled): a book journaled before the simulator carried them.

        The rule is :func:`fastrl.later_state.missing_state`'s, with no reward: the
        benchmark's shadow book (``bench_*``) feeds only the reward, never an observation or
        the account, so "no benchmark book yet" changes no journal row. An anchored
        portfolio's ``last_target`` decides whether an unchanged target holds (an absolute
        one never reads it); nothing else is guessed."""
        return missing_state(cls.state_keys, book.env, run.env_config(), rewarded=False)

    def _complete(self, book: Book) -> Book:
        """``book`` with the state keys it may lack (:meth:`missing_state`) at the reset's
        values; LiveInputError for one that cannot be filled."""
        fillable, refused = self.missing_state(self.run, book)
        if refused:
            raise LiveInputError(stale_book_message(refused))
        if not fillable:
            return book
        return dataclasses.replace(book, env={**book.env,
                                              **{k: self._reset_value(k) for k in fillable}})

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        try:
            self.env.set_state(state)
        except ValueError as exc:
            raise LiveInputError(f"the journal's book does not fit these bars: {exc}") from None


def stale_book_message(keys: list[str]) -> str:
    """Why a book without the simulator state ``keys`` is refused, and what to do."""
    return (f"the book has no {', '.join(keys)} (saved by an older fastrl, before the "
            "simulator carried it), which this run needs to go on as its backtest would; "
            "start a new journal for this run (--journal NEW_FILE --from DATE)")


def plain(value: Any) -> Any:
    """numpy scalars and arrays as plain Python numbers and lists (JSON-safe, exact)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def next_day(stamp: np.datetime64) -> np.datetime64:
    """The calendar day after ``stamp``'s, as a timestamp (a sentinel row's date)."""
    return (stamp.astype("datetime64[D]") + 1).astype("datetime64[ns]")


__all__ = ["NOT_CARRIED", "PORTFOLIO", "Book", "Decision", "LiveEnv", "LiveInputError",
           "SessionResult", "Step", "next_day", "plain", "stale_book_message"]
