"""The one live path: bars + book -> the agent's decision, and a decision -> its fill and mark.

``fastrl-signal`` and ``fastrl-paper`` both come through :class:`LiveEnv`, and it is the
backtest's own machinery, not a re-implementation of it:

- the features are built by the run's market (``market.from_bars``) from every bar up to
  the session, with the checkpoint's feature normaliser, exactly as
  :func:`fastrl.evaluate.evaluate_run` builds its test split (features are causal, so a
  prefix of the bars gives the same rows);
- the observation, the fill at the next open, the costs, the market rules (whole shares,
  the intraday square-off) and the mark at the close are the C++ simulator's: a one-row-
  per-symbol :class:`~fastrl.markets.single.env.TradingVecEnv` (or a one-env
  :class:`~fastrl.markets.portfolio.env.PortfolioVecEnv`) is loaded with the book's state
  (``set_state``) and stepped, the same env the backtest steps; the market's
  :class:`~fastrl.live.book.LiveEnv` kind (``market.live_env_class()``) does so;
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

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from fastrl.live.book import Book, LiveInputError, SessionResult

if TYPE_CHECKING:
    from fastrl.live.bars import LiveBars
    from fastrl.live.run import LiveRun


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
    try:
        block = run.market.from_bars(prefix, val_days=0, normaliser_state=run.normaliser_state,
                                     source=bars.source, test_start=test_start).test
    except ValueError as exc:  # too little history, features of bad bars
        raise LiveInputError(f"cannot build the features up to {last}: {exc}") from None
    if block is None:
        raise LiveInputError(f"no bars from {test_start.date()} to trade")
    return run.market.live_env_class().sentinel(block)


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
    return run.market.live_env_class().trade_session(run, bars, book, session, rows, first,
                                                     last)


__all__ = ["advance", "live_block"]
