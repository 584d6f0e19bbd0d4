"""Paper trading: the live path day by day, as if each session's bars arrived alone.

Each session: the decision pending from the previous close is filled at the session's
first open with the run's costs and rules, every bar is marked at its close and decided on
(a daily session is one bar; a 5-minute session steps bar by bar, square-off included),
and the last bar's decision waits for the next session. Only sessions whose close has
passed by the clock (:mod:`fastrl.live.clock`) are traded: a session still trading is
left for a later call. Only bars up to the session feed it
(:meth:`fastrl.live.bars.LiveBars.through`). Every input is checked before anything is
written, and each session is one journal transaction (:mod:`fastrl.live.journal`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pandas as pd

from fastrl.live.bars import LiveBars, check_sessions
from fastrl.live.book import LiveInputError, stale_book_message
from fastrl.live.clock import EXCHANGE, clock, expected, last_session
from fastrl.live.decide import advance
from fastrl.live.journal import Journal, session_equity
from fastrl.live.run import LiveRun

if TYPE_CHECKING:
    from fastrl.live.rule import RuleRun


@dataclass
class PaperSummary:
    """What one call traded: the sessions, where it resumed from, the final equity."""

    sessions: list[str]
    resumed_after: str | None
    equity: float | None
    journal: str
    warnings: list[str] = field(default_factory=list)


def _date(text: str | pd.Timestamp, flag: str) -> pd.Timestamp:
    try:
        return pd.Timestamp(text).normalize()
    except ValueError:
        raise LiveInputError(f"{flag} {text!r} is not a date (YYYY-MM-DD)") from None


def paper_trade(run: LiveRun | RuleRun, bars: LiveBars, journal: Journal,
                start: str | pd.Timestamp, end: str | pd.Timestamp | None = None, *,
                before_commit: Callable[[str], None] | None = None,
                on_session: Callable[[str, float], None] | None = None) -> PaperSummary:
    """Trades the sessions from ``start`` (or after the journal's last one) to ``end``
    (default: the newest bar) into ``journal``. ``before_commit(session)`` runs inside
    each session's transaction (tests kill the process there); ``on_session(session,
    equity)`` after each commit (progress lines)."""
    start = _date(start, "--from")
    journal.check_run(run)  # before anything else: another run's journal is never touched
    # the clock: only sessions whose close has passed are traded; the bars of a session
    # still trading (a daily bar that is not a close yet, a half-finished 5-minute session)
    # are not seen, so they are never journaled as if the session were over
    closed = expected(clock(None), "1d").session  # the last session closed by now
    bars = bars.upto(closed)
    calendar = bars.sessions()
    if end is not None:
        end = _date(end, "--to")
        if end < start:
            raise LiveInputError(f"--to {end.date()} is before --from {start.date()}")
        # the expected last session: the exchange's last one up to --to that has closed by
        # now; later bars are not seen
        due, assumed = last_session(end)
        due = min(due, closed)
        bars = bars.upto(end)
        stale = [s for s, f in bars.bars.items()
                 if not len(f) or f.index[-1].normalize() < due]
        if stale:
            raise LiveInputError(
                f"stale bar: the newest bar of {', '.join(stale)} up to --to {end.date()} is "
                f"older than the expected session {due.date()} (the last {EXCHANGE} "
                f"session up to it closed by now){'; ' + assumed if assumed else ''}")
        calendar = bars.sessions()
    warnings: list[str] = []
    if end is None:
        end = calendar[-1] if calendar else start
        # a replay of history is no error, but a daily run on a feed that stopped would
        # otherwise only say "nothing new to trade"
        if end < closed:
            warnings.append(f"the feed ends at {end.date()}, before the last {EXCHANGE} "
                            f"session closed by now ({closed.date()}): a stale feed? "
                            "(give --to to replay history without this warning)")
    last = journal.last()
    if last is None:
        book, seq, resumed = None, 0, None
        todo = [d for d in calendar if start <= d <= end]
    else:
        resumed, book, seq = last
        _, lacking = run.market.live_env_class().missing_state(run, book)
        if lacking:  # before any bars are featurised: the journal is what needs a fix
            raise LiveInputError(f"journal {journal.label}, session {resumed}: "
                                 f"{stale_book_message(lacking)}")
        last_day = pd.Timestamp(resumed)
        later = [d for d in calendar if d > last_day]
        if later and start > later[0]:
            raise LiveInputError(
                f"--from {start.date()} would skip sessions: journal {journal.label} ends at "
                f"{resumed} and the next session is {later[0].date()} (drop --from, or give "
                "an earlier one, to continue)")
        todo = [d for d in later if d <= end]
        # the journal's bars must still be these bars: a rewritten history is worth a word
        used = journal.session_hash(resumed)
        session_end = bars.session_end(last_day)
        now = bars.digest(session_end) if session_end is not None else None
        if used is not None and now is not None and used != now:
            warnings.append(f"the bars up to {resumed} differ from the ones the journal used "
                            "(a revised history, e.g. a new dividend adjustment); continuing "
                            "from the journal's book")
    if not todo:
        return PaperSummary([], resumed, None, journal.label, warnings)
    check_sessions(run, bars, todo)  # every session is checked before the first is written
    first_bar = bars.session_end(todo[0])
    if first_bar is not None:
        warnings += run.warmup_notes(bars, first_bar)
    traded: list[str] = []
    equity = None
    for session in todo:
        result = advance(run, bars, book, session)
        seq += 1
        journal.write_session(run, result, bars.digest(bars.session_end(session)), seq,
                              before_commit)
        book = result.book
        equity = session_equity(run, result)
        traded.append(result.session)
        if on_session is not None:
            on_session(result.session, equity)
    return PaperSummary(traded, resumed, equity, journal.label, warnings)


__all__ = ["PaperSummary", "paper_trade"]
