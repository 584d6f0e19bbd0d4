"""The portfolio live env: a one-env PortfolioVecEnv over the union calendar, its accounting
(equity, weights, costs) through the portfolio backtest's own stepping
(:func:`fastrl.markets.portfolio.backtest.step_holding`, one step from the book's carried
holding)."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from fastrl import _core
from fastrl.data.panel import PanelBlock
from fastrl.live.book import (
    NOT_CARRIED,
    PORTFOLIO,
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
from fastrl.markets.portfolio.backtest import PortfolioHolding, step_holding
from fastrl.markets.portfolio.env import PortfolioVecEnv

if TYPE_CHECKING:
    from fastrl.live.bars import LiveBars
    from fastrl.live.run import LiveRun

# the simulator state a book carries: the core's state keys less the market indices and the
# reset RNG (bar_index is re-derived from the book's timestamp in each new block)
PORTFOLIO_STATE = tuple(k for k in _core.PORTFOLIO_STATE_KEYS if k not in NOT_CARRIED)


class PortfolioLiveEnv(LiveEnv):
    """``step(weights)`` fills the weights decided at the book's bar at the next bar, marks
    its close and moves the book there."""

    kind = "portfolio"
    state_keys = PORTFOLIO_STATE

    def _make_env(self) -> tuple[Any, list[np.ndarray]]:
        env = PortfolioVecEnv(self.block, 1, self.config, num_threads=1, seed=0)
        return env, [np.asarray(self.block.timestamps)]

    def _start(self, start: pd.Timestamp | None) -> Book:
        # a fresh account at the close of ``start``
        if start is None:
            raise ValueError("LiveEnv needs a book or a start bar")
        state = self.fresh
        env = {k: plain(state[k][0]) for k in PORTFOLIO_STATE}
        book = Book(kind="portfolio", at=str(pd.Timestamp(start)), env=env, pending=[],
                    accounts={"shares": list(env["shares"]), "cash": env["cash"]},
                    ended=[False])
        self._load(book)
        return book

    # -- state --------------------------------------------------------------------------

    def _row(self, stamp: pd.Timestamp) -> int:
        """Panel row of ``stamp``."""
        stamps = self.stamps[0]
        local = int(np.searchsorted(stamps, np.datetime64(stamp), side="left"))
        if local >= len(stamps) - 1 or stamps[local] != np.datetime64(stamp):
            raise LiveInputError(f"the panel has no bar at {stamp}, where the book stands")
        return local

    def _reset_value(self, key: str) -> Any:
        return plain(self.fresh[key][0])

    def _load(self, book: Book) -> None:
        state = self.env.get_state()
        state["bar_index"][0] = self._row(book.stamp)
        for key in PORTFOLIO_STATE:
            state[key][0] = np.asarray(book.env[key], dtype=state[key].dtype)
        self._set_state(state)

    # -- deciding -----------------------------------------------------------------------

    def decide(self) -> list[Any]:
        """The backtest's policy call: the portfolio's target weights ([]: no order, a
        rule between its rebalances)."""
        actions = self.run.act(self)
        if actions is None:
            return []
        weights = np.asarray(actions, dtype=np.float64)
        if weights.shape != (1, len(self.run.symbols)) or not np.all(np.isfinite(weights)):
            raise LiveInputError(f"the policy returned weights of shape {weights.shape}")
        return [float(w) for w in weights[0]]

    def targets(self, actions: list[Any]) -> list[float]:
        return [float(a) for a in actions]

    def decisions(self, actions: list[Any], present: list[int] | None = None
                  ) -> list[Decision]:
        if not actions:  # no order: nothing decided
            return []
        present = list(range(len(self.run.symbols))) if present is None else present
        targets = self.targets(actions)
        return [Decision(self.run.symbols[s], str(self.book.at), float(actions[s]), targets[s])
                for s in present]

    # -- stepping -----------------------------------------------------------------------

    def step(self, weights: list[float]) -> list[Step]:
        """Fills ``weights`` (decided at the book's bar; [] sends no order) at the next
        bar, marks its close and moves the book there."""
        book, env, panel = self.book, self.env, self.block
        before = env.get_state()
        t = int(before["bar_index"][0])
        ended = book.ended[0]
        hold = len(weights) == 0
        if not ended:
            if hold:
                _, _, terminated, truncated, _ = env.step_orders(
                    np.zeros((1, len(self.run.symbols))), np.array([False]))
            else:
                _, _, terminated, truncated, _ = env.step(np.asarray([weights],
                                                                     dtype=np.float64))
            if terminated[0] or truncated[0]:
                ended = True
        self.opening = False
        accounts = book.accounts
        # anchored: the env's last rebalance target rides along, so an unchanged target
        # holds here as it does in the backtest (step_holding ignores it otherwise)
        holding = PortfolioHolding(shares=np.asarray(accounts["shares"], dtype=np.float64),
                                   cash=float(accounts["cash"]),
                                   target=np.asarray(book.env["last_target"], dtype=np.float64))
        order = None if book.ended[0] or hold else np.asarray(weights, dtype=np.float64)
        # the portfolio backtest's own accounting, one step from the carried holding
        result = step_holding(panel, self.config, t, holding, order)
        if result.terminated_step is not None:
            ended = True
            final_shares, final_cash = np.zeros(len(self.run.symbols)), float(result.equity[1])
        else:
            final_shares, final_cash = result.final_shares, float(result.final_cash)
        after = env.get_state()
        env_state = ({k: plain(after[k][0]) for k in PORTFOLIO_STATE} if not ended
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

    # -- blocks and sessions ------------------------------------------------------------

    @staticmethod
    def sentinel(block: PanelBlock) -> PanelBlock:
        def grow(values: np.ndarray) -> np.ndarray:
            return np.concatenate([values, values[-1:]])

        stamps = np.asarray(block.timestamps)
        return PanelBlock(symbols=block.symbols, open=grow(block.open), close=grow(block.close),
                          features=grow(block.features), tradable=grow(block.tradable),
                          feature_names=block.feature_names,
                          timestamps=np.concatenate([stamps, [next_day(stamps[-1])]]),
                          freq=block.freq, meta=dict(block.meta))

    @classmethod
    def trade_session(cls, run: LiveRun, bars: LiveBars, book: Book | None,
                      session: pd.Timestamp, rows: dict[str, list[pd.Timestamp]],
                      first: pd.Timestamp, last: pd.Timestamp) -> SessionResult:
        """The union calendar, its untradable cells as the panel holds them."""
        start = first if book is None else book.stamp
        env = cls(run, live_block(run, bars, start, last), book, start, bars=bars)
        decisions: list[Decision] = []
        steps: list[Step] = []
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

    # -- signals and journals -----------------------------------------------------------

    @classmethod
    def accounts(cls, run: LiveRun) -> int:
        return 1

    def held_book(self, closes: np.ndarray, capital: float,
                  positions: dict[str, dict[str, float]]) -> Book:
        """One account of ``capital`` holding the shares, the rest in cash."""
        book = self.book
        shares = np.array([positions.get(s, {}).get("shares", 0.0) for s in self.run.symbols])
        cash = capital - float(np.sum(shares * closes))
        state = dict(book.env, shares=shares.tolist(), cash=cash, equity=capital,
                     peak_equity=capital)
        return Book(kind=book.kind, at=book.at, env=state, pending=[],
                    accounts={"shares": shares.tolist(), "cash": cash}, ended=[False])

    def holding(self, s: int, closes: np.ndarray) -> tuple[float, float]:
        env = self.book.env
        return (float(env["shares"][s]),
                float(env["cash"]) + float(np.dot(env["shares"], closes)))

    def order_band(self, equity: float) -> float:
        """The simulator skips legs under ``trade_band`` x equity."""
        return self.config.trade_band * equity

    @staticmethod
    def session_equity(result: SessionResult) -> float:
        """The portfolio's equity by the backtest's accounting (simulate), not the env's own
        sums."""
        marks = [s.equity for s in result.steps if s.symbol == PORTFOLIO]
        return float(marks[-1]) if marks else float(result.book.accounts["cash"])


__all__ = ["PORTFOLIO_STATE", "PortfolioLiveEnv"]
