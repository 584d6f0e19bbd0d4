"""From a trained run (or a classical rule) to tomorrow's orders: ``fastrl-signal`` and
``fastrl-paper``.

Start here: :mod:`fastrl.live.decide` is the one live path (bars + book -> decision, and a
decision -> its fill and mark, through the simulator the backtest steps), which is why a
paper replay of a window equals the backtest of that window; :mod:`fastrl.live.book` holds
the book, the journal rows and the :class:`~fastrl.live.book.LiveEnv` each market kind
provides (``market.live_env_class()``). Around it:

- :mod:`fastrl.live.run`: the run folder, checked (checkpoint against ``config.json``) and
  named by its checkpoint's hash;
- :mod:`fastrl.live.rule`: a classical rule in a run's place (``--rule NAME``): it decides
  from the feed's history, on the env its backtest steps, so its paper replay equals
  :func:`fastrl.rules.backtest_single` / :func:`~fastrl.rules.backtest_portfolio`;
- :mod:`fastrl.live.bars`: the latest bars through the training loader, refused when stale,
  missing, duplicated, out of order, invalid or holed;
- :mod:`fastrl.live.clock`: the exchange clock (the NSE/BSE calendar, now in IST or
  ``--asof``): the bar a feed must hold, so a stale feed is refused by default;
- :mod:`fastrl.live.signal`: the target at the latest close as exposure, shares and costs;
- :mod:`fastrl.live.paper` + :mod:`fastrl.live.journal`: day-by-day paper trading into an
  append-only SQLite/PostgreSQL journal, one transaction per session, each session row
  hash-chained to the one before it (``fastrl-paper --verify``).
"""

from __future__ import annotations

import importlib
from typing import Any

# Loaded on first use: the market kinds import fastrl.live.book, and an eager fastrl.live.run
# here would import the markets back while they are being imported.
_LAZY = {"LiveInputError": "fastrl.live.book", "LiveRun": "fastrl.live.run",
         "RuleRun": "fastrl.live.rule", "open_rule": "fastrl.live.rule",
         "open_run": "fastrl.live.run"}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fastrl.live' has no attribute {name!r}")
