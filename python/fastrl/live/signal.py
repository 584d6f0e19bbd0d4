"""Tomorrow's orders: the agent's (or a rule's) target at the latest close, in exposure,
shares and costs.

:func:`make_signal` decides through the live path (:class:`fastrl.live.book.LiveEnv`, the
one paper trading uses) at the close of the expected session's last bar, from the current
holdings (``positions``, or flat), and turns the target into an order for the next
session's open:

- ``target``: the exposure (single-symbol runs; each symbol an equal-capital sub-account,
  as in the backtest) or the weight (portfolio runs);
- ``target_shares`` / ``order_shares``: whole shares under the NSE presets'
  ``integer_shares`` (the order rounded toward zero, as the simulator rounds it), valued at
  ``capital`` (default: the run's ``initial_cash``);
- ``expected_cost``: the cost model's charge for that order at the last close (the fill is at
  the next open, so it is an estimate); under the intraday preset (MIS: squared off before
  the session's cutoff, nothing carried overnight) the exit at the cutoff is added.

Long/flat under delivery is the run's own action space: the policy cannot ask for a short.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from fastrl.atomic import write_atomic
from fastrl.live.bars import LiveBars, check_sessions, decision_bars
from fastrl.live.book import LiveEnv, LiveInputError
from fastrl.live.decide import live_block
from fastrl.live.run import LiveRun

if TYPE_CHECKING:
    from fastrl.live.rule import RuleRun


@dataclass
class OrderLine:
    """One symbol's target and the order that reaches it."""

    symbol: str
    close: float
    shares_held: float
    exposure_held: float  # shares x close / the capital it belongs to
    action: float
    target: float  # exposure (single) or weight (portfolio)
    target_shares: float
    order_shares: float  # > 0 buy, < 0 sell
    order_notional: float
    expected_cost: float


@dataclass
class Signal:
    """The orders for the session after ``session``, decided at the close of ``decided_at``."""

    run_id: str
    run_dir: str
    kind: str
    session: str
    decided_at: str
    fill: str
    capital: float
    cost_model: str
    lines: list[OrderLine]
    notes: list[str] = field(default_factory=list)
    policy: str = ""  # "run <id>" or "rule <name> (<params>)"
    rule: dict[str, Any] | None = None  # a rule's name and parameters (None: a trained run)

    @property
    def expected_cost(self) -> float:
        return float(sum(line.expected_cost for line in self.lines))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["expected_cost"] = self.expected_cost
        return out

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame([asdict(line) for line in self.lines])


def read_positions(path: str | Path, symbols: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """Holdings from a CSV or JSON file: ``symbol, shares`` and optionally ``entry_price``
    and ``bars_since_trade``. Symbols the run does not trade are an error; absent ones are
    flat."""
    path = Path(path)
    if not path.is_file():
        raise LiveInputError(f"--positions {path}: no such file")
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
            rows = data if isinstance(data, list) else [
                {"symbol": k, **(v if isinstance(v, dict) else {"shares": v})}
                for k, v in data.items()]
            frame = pd.DataFrame(rows)
        else:
            frame = pd.read_csv(path)
    except (ValueError, pd.errors.ParserError) as exc:
        raise LiveInputError(f"--positions {path}: cannot read it ({exc})") from None
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    for column in ("symbol", "shares"):
        if column not in frame:
            raise LiveInputError(f"--positions {path}: no {column!r} column (need symbol, "
                                 "shares[, entry_price, bars_since_trade])")
    out: dict[str, dict[str, float]] = {}
    for row_number, row in enumerate(frame.to_dict("records"), start=1):
        symbol = str(row["symbol"]).strip()
        if symbol not in symbols:
            raise LiveInputError(f"--positions {path} row {row_number}: symbol {symbol!r} is "
                                 f"not one the run trades ({', '.join(symbols)})")
        values = {}
        for key in ("shares", "entry_price", "bars_since_trade"):
            value = row.get(key)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            try:
                values[key] = float(value)
            except (TypeError, ValueError):
                raise LiveInputError(f"--positions {path} row {row_number}: {key} "
                                     f"{value!r} is not a number") from None
            if not math.isfinite(values[key]) or (key != "shares" and values[key] < 0):
                raise LiveInputError(f"--positions {path} row {row_number}: bad {key} "
                                     f"{value!r}")
        out[symbol] = values
    return out


def make_signal(run: LiveRun | RuleRun, bars: LiveBars, *, asof: str | None = None,
                positions: dict[str, dict[str, float]] | None = None,
                capital: float | None = None) -> Signal:
    """The target for the next session's open at the close of the expected session."""
    bars, session, _ = decision_bars(bars, asof)  # never a bar after the clock
    check_sessions(run, bars, [session])
    stamp = bars.session_end(session)
    if stamp is None:
        raise LiveInputError(f"stale bar: no symbol has a bar on the expected session "
                             f"{session.date()}")
    for symbol, stamps in bars.session_rows(session).items():
        if stamps[-1] != stamp:
            raise LiveInputError(f"stale bar: {symbol}'s last bar of {session.date()} is "
                                 f"{stamps[-1]}, the other symbols' {stamp}")
    if capital is not None and not (math.isfinite(capital) and capital > 0):
        raise LiveInputError(f"--capital must be a positive amount, got {capital}")
    config_cash = float(run.config.env.initial_cash)
    live_env = run.market.live_env_class()
    total = float(capital) if capital is not None else config_cash * live_env.accounts(run)
    block = live_block(run, bars, stamp, stamp)
    env = live_env(run, block, None, start=stamp, bars=bars)
    closes = np.array([float(bars.bars[s].loc[stamp, "close"]) for s in run.symbols])
    if positions or capital is not None:
        env.load(env.held_book(closes, total, positions or {}))
    actions = env.decide()
    targets = env.targets(actions)
    lines = _orders(run, env, closes, total, actions, targets)
    cost = env.config.cost_model()
    notes = [f"targets are for the open of the session after {session.date()}; shares and "
             f"costs are estimated at the {_when(stamp, run.freq)} close"]
    if getattr(cost, "square_off", False):
        notes.append("intraday (MIS): every position is squared off by the "
                     f"{run.config.env.intraday_cutoff} cutoff, nothing is carried overnight; "
                     "expected_cost includes that exit")
    notes += env.signal_notes(total)
    notes += run.notes(env, bars, stamp)
    identity = run.identity()
    rule = ({"name": identity["rule"], "params": identity["params"]} if "rule" in identity
            else None)
    return Signal(run_id=run.run_id, run_dir=str(run.run_dir),
                  kind=run.market.kind, session=str(session.date()),
                  decided_at=_when(stamp, run.freq), fill="next session's open", capital=total,
                  cost_model=cost.name, lines=lines, notes=notes, policy=run.describe(),
                  rule=rule)


def _when(stamp: pd.Timestamp, freq: str) -> str:
    """A daily bar's date (its timestamp is midnight, not a time of day); an intraday bar's
    time."""
    return str(stamp.date()) if freq == "1d" else str(stamp)


def _orders(run: LiveRun | RuleRun, env: LiveEnv, closes: np.ndarray, total: float,
            actions: list[Any], targets: list[float]) -> list[OrderLine]:
    """Orders as the simulator would size them, at the last close (see sim.cpp /
    sim_portfolio.cpp): target x equity / price, rounded toward zero to whole
    shares under integer_shares, less the shares held; a target of 0 sells (or covers)
    every held share (in portfolio runs, unless the order is under trade_band x equity: the
    simulator does not send such an order, and neither does the signal).

    The simulator sends no order when the target equals its position, because its position
    is the level it last traded to. Held shares (``--positions``) are not a level: the
    nearest one is only what the agent observes, so an order always moves the holding to
    the target's shares (886 shares at 30% exposure and a target of 0 give -886, not 0)."""
    config = env.config
    cost = config.cost_model()
    lines = []
    for s, symbol in enumerate(run.symbols):
        price = float(closes[s])
        held, equity = env.holding(s, closes)
        target_shares = targets[s] * equity / price if equity > 0 else 0.0
        traded = target_shares - held
        if config.integer_shares and targets[s] != 0:
            traded = float(np.trunc(traded))
        if abs(traded) * price < env.order_band(equity):
            traded = 0.0
        notional = abs(traded) * price
        expected = float(cost.order_cost(traded > 0, notional)) if traded else 0.0
        final = held + traded
        if getattr(cost, "square_off", False) and final != 0:
            expected += float(cost.order_cost(final < 0, abs(final) * price))
        lines.append(OrderLine(symbol=symbol, close=price, shares_held=held,
                               exposure_held=held * price / equity if equity > 0 else 0.0,
                               action=float(actions[s]), target=float(targets[s]),
                               target_shares=final, order_shares=traded,
                               order_notional=notional, expected_cost=expected))
    return lines


def write_signal(signal: Signal, path: str | Path) -> Path:
    """``.json`` (everything) or ``.csv`` (one row per symbol), written atomically."""
    path = Path(path)
    if path.suffix.lower() not in (".json", ".csv"):
        raise LiveInputError(f"--out {path}: use a .json or .csv file name")
    if not path.parent.is_dir():
        raise LiveInputError(f"--out {path}: folder {path.parent} does not exist")
    if path.suffix.lower() == ".json":
        text = json.dumps(signal.to_dict(), indent=2) + "\n"
    else:
        frame = signal.frame()
        frame.insert(0, "decided_at", signal.decided_at)
        frame.insert(0, "session", signal.session)
        text = frame.to_csv(index=False, lineterminator="\n")
    return write_atomic(path, lambda stream: stream.write(text), binary=False)


__all__ = ["OrderLine", "Signal", "make_signal", "read_positions", "write_signal"]
