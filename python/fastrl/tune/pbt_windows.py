"""PBT's windows: the blocks of trading days after the training bars, and their markets.

After the training bars come four blocks of trading days, each used for one thing:

    train | A: rounds (val_days) | B: pick (pick_days) | C: confirmation (confirm_days) | test

The population trains on the bars before A only and is scored on A at every round; B picks
the winner once, after the last round; C scores the replay (:mod:`fastrl.tune.pbt_winner`);
the test days are stepped once, at the end.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from fastrl.config import DEFAULT_VAL_DAYS, TrainConfig
from fastrl.markets import market_for
from fastrl.ppo.members import PopulationError
from fastrl.tune.objective import laid_out

PICK_DAYS = dict(DEFAULT_VAL_DAYS)  # window B by bar size: 120 daily bars, 20 sessions
CONFIRM_DAYS = dict(DEFAULT_VAL_DAYS)  # window C, likewise


@dataclass(frozen=True)
class Windows:
    """The trading days after the training bars, in time order: A (the rounds' validation
    block), B (the pick), C (the replay's confirmation window), then the test days."""

    val_days: int
    pick_days: int
    confirm_days: int
    test_days: int

    def rounds(self) -> tuple[int, int]:
        """(data.test_days, data.val_days) of the population's market: A is its validation
        block, everything after A its "test" block (never stepped), before A its training."""
        return self.test_days + self.confirm_days + self.pick_days, self.val_days

    def pick(self) -> tuple[int, int]:
        """(data.test_days, data.val_days) whose validation block is B."""
        return self.test_days + self.confirm_days, self.pick_days

    def confirmation(self) -> tuple[int, int]:
        """(data.test_days, data.val_days) of the replay: trained before C, scored on C."""
        return self.test_days, self.confirm_days


def check_windows(windows: Windows, replay_seeds: Any) -> int:
    """Each window at least one day (named by its flag); replay_seeds a whole number >= 0
    (0: no replay). Returns replay_seeds."""
    for flag, value in (("--val-days", windows.val_days), ("--pick-days", windows.pick_days),
                        ("--confirm-days", windows.confirm_days),
                        ("--test-days", windows.test_days)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise PopulationError(f"{flag} must be a whole number of days >= 1, got {value!r}")
    if isinstance(replay_seeds, bool) or not isinstance(replay_seeds, (int, np.integer)) \
            or replay_seeds < 0:
        raise PopulationError(f"--replay-seeds must be a whole number >= 1 (0: no replay), "
                              f"got {replay_seeds!r}")
    return int(replay_seeds)


def build_markets(config: TrainConfig, windows: Windows) -> tuple[Any, Any, Any]:
    """(the population's market, block B, the confirmation market) for ``config``'s data.

    The population's market trains on the bars before A and validates on A; block B comes
    from the same bars with the population's feature normaliser (what its members saw); the
    confirmation market is the replay's own (trained before C). Built confirmation first,
    so a window that leaves too few bars is named by its flag, value and the data's error.
    """
    w = windows

    def load(days: tuple[int, int], flag: str, normaliser_state: Any = None) -> Any:
        try:
            return market_for(laid_out(config, days)).load(normaliser_state)
        except ValueError as err:
            raise PopulationError(f"{flag} leaves too few bars: {err}") from None

    confirm = load(w.confirmation(), f"--confirm-days {w.confirm_days} (before --test-days "
                   f"{w.test_days})")
    pick_flag = (f"--pick-days {w.pick_days} (before --confirm-days {w.confirm_days} and "
                 f"--test-days {w.test_days})")
    try:
        rounds = market_for(laid_out(config, w.rounds())).load()
    except ValueError as err:
        load(w.pick(), pick_flag)  # raises when window B itself does not fit
        raise PopulationError(f"--val-days {w.val_days} (before --pick-days {w.pick_days}, "
                              f"--confirm-days {w.confirm_days} and --test-days "
                              f"{w.test_days}) leaves too few bars: {err}") from None
    pick = load(w.pick(), pick_flag, rounds.normaliser.state_dict()).val
    return rounds, pick, confirm


def block_dates(block: Any) -> dict[str, list[str]] | None:
    """symbol -> [first, last] traded bar of ``block`` (context rows left out); None
    without timestamps."""
    if block is None or getattr(block, "timestamps", None) is None:
        return None
    context = int(block.meta.get("context_rows", 0))
    out = {}
    for s, symbol in enumerate(block.symbols):
        rows = block.segment(s)
        stamps = block.timestamps[rows.start + context:rows.stop]
        out[str(symbol)] = [str(stamps[0])[:19], str(stamps[-1])[:19]]
    return out



__all__ = ["CONFIRM_DAYS", "PICK_DAYS", "Windows", "block_dates", "build_markets",
           "check_windows"]
