"""Transaction-cost models: a plain bps model and NSE equity presets.

Every order pays ``|notional| x side_rate + min(|notional| x brokerage_rate, brokerage_cap) x
(1 + GST) + fixed fee``. Statutory charges are folded into the per-side rates so the
simulator's hot loop does one multiply per order; the presets below keep each component
and its source visible.

NSE presets (rates as published for late 2024 / 2025; check them before trading real money):

- brokerage: delivery 0; intraday min(0.03%, Rs 20) per executed order
  (discount-broker schedule, e.g. Zerodha's published charges).
- STT (Securities Transaction Tax, Finance Act 2004 Chapter VII): delivery 0.1% on buy and
  on sell; intraday 0.025% on the sell side only.
- Exchange transaction charge: NSE 0.00297% of turnover (NSE circular, from 1 Oct 2024).
- SEBI turnover fee: Rs 10 per crore (0.0001%).
- GST: 18% on brokerage + exchange charge + SEBI fee.
- Stamp duty (Indian Stamp Act as amended by the Finance Act 2019, in force 1 Jul 2020):
  delivery 0.015% and intraday 0.003%, on the buy side only.
- Depository (DP) charge, delivery sells only: Rs 13.50 + GST per sell order (CDSL plus broker
  schedule, e.g. Zerodha); charged per order here, per scrip per day in reality.

Execution costs (not charges; :data:`EXECUTION_DEFAULTS`, set by ``EnvConfig.half_spread_bps``
and ``EnvConfig.slippage_bps``): the simulator fills at the bar's open, a price nobody is
sure to get. A fill pays a fixed half-spread (the mid to the touch) plus slippage (impact,
latency), both per side in bps of notional, on buys and on sells. The spread is a fixed
number, not estimated bar by bar (abdi_ranaldo_half_spread estimates one from bars, to choose
and report the default). Both are charged as a cost on the open-price notional: the same as
filling at ``open x (1 +/- (half_spread + slippage))`` except that the charges are levied on
the open-price notional, not on the worse price (a difference of the charges' rate times the
extra, under 1e-6 of notional at the defaults), and orders are sized at the open. The
presets' own ``slippage_bps`` argument adds to the same rates, for callers that build a
CostModel.

Market rules carried by the presets (flags on CostModel; the simulator, cpp/src/sim.cpp, and
fastrl.reference apply them; EnvConfig holds their settings):

- No overnight shorts in delivery (``overnight_shorts=False`` on nse_delivery). A cash-market
  (CNC) sell must be delivered at settlement, and SEBI's short-selling framework (SEBI
  circular "Framework for Short Selling", 5 January 2024, restating the circular of
  20 December 2007) allows no naked short selling: a short is either closed the same day
  (an intraday short, see nse_intraday) or covered by stock borrowed through the Securities
  Lending and Borrowing scheme (SLB, NSE Clearing's SLBM). So nse_delivery defaults to long/flat
  (``position_levels=(0, 1)``, ``min_pos=0``) and refuses a negative level or ``min_pos < 0``
  unless ``EnvConfig.short_borrow_rate`` (an annual lending fee) is > 0. Then a short still
  open at a session's last close pays ``short_borrow_rate / 252 x |shares| x close`` for that
  night (day count: one 252nd of the annual rate per trading session held overnight, the
  same 252 the Sharpe annualisation uses; weekends and holidays are not charged extra). SLB
  fees are in reality bid per contract on NSE's SLBM; an annual rate is the usual summary.
  The fee counts in ``episode_costs``.
- Intraday square-off (``square_off=True`` on nse_intraday). MIS positions are squared off
  by the broker from the cutoff on (Zerodha: equity 3:20 PM IST, "Intraday auto square-off
  timings", support.zerodha.com; fresh MIS orders are refused after it). The simulator
  closes every position at the close of the last bar that ends at or before
  ``EnvConfig.intraday_cutoff`` (default "15:20"; with 5-minute bars the 15:15 bar, closing at
  15:20), or at the session's last bar if that comes first, paying that exit's costs as
  a normal order (the agent exits itself, so the broker's Rs 50 + GST auto-square-off charge
  is not applied). Fills after that close may not open a position, so nothing is carried
  across a session boundary. On daily bars every bar is a session: a position filled at the
  open is closed at that bar's close (with ``execution="close"`` no position can be opened).
- Whole shares (``whole_shares=True`` on both NSE presets; the default of
  ``EnvConfig.integer_shares``). NSE cash equities trade in lots of one share: every order is
  rounded toward zero to whole shares (an order that rounds to zero shares is not sent, and
  the position is left as it was); cash moves by exactly shares x price + costs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

GST = 0.18
NSE_EXCHANGE_FEE = 0.0000297  # 0.00297% of turnover
SEBI_FEE = 10.0 / 1e7  # Rs 10 per crore (1e7 rupees)
STT_DELIVERY = 0.001  # 0.1% on buy and on sell
STT_INTRADAY_SELL = 0.00025  # 0.025% on the sell side
STAMP_DELIVERY_BUY = 0.00015  # 0.015%
STAMP_INTRADAY_BUY = 0.00003  # 0.003%
DP_CHARGE = 13.5  # rupees per sell order (before GST)
INTRADAY_BROKERAGE_RATE = 0.0003  # 0.03% ...
INTRADAY_BROKERAGE_CAP = 20.0  # ... or Rs 20 per executed order, whichever is lower


@dataclass(frozen=True)
class CostModel:
    """Per-order costs. Rates are fractions of traded notional; fees are in currency."""

    buy_rate: float = 0.0
    sell_rate: float = 0.0
    brokerage_rate: float = 0.0
    brokerage_cap: float = math.inf
    gst_on_brokerage: float = 0.0
    fixed_fee_buy: float = 0.0
    fixed_fee_sell: float = 0.0
    name: str = "custom"
    overnight_shorts: bool = True
    """False: a short may not be held over a session close without a borrow rate (delivery)."""
    square_off: bool = False
    """True: every position is closed by the session's intraday cutoff (MIS)."""
    whole_shares: bool = False
    """True: orders are whole shares by default (EnvConfig.integer_shares)."""

    def __post_init__(self) -> None:
        for field_name in ("buy_rate", "sell_rate", "brokerage_rate", "gst_on_brokerage",
                           "fixed_fee_buy", "fixed_fee_sell"):
            value = getattr(self, field_name)
            if not (math.isfinite(value) and value >= 0.0):
                raise ValueError(f"CostModel.{field_name} must be finite and >= 0, got {value}")
        if not self.brokerage_cap >= 0.0:
            raise ValueError(f"CostModel.brokerage_cap must be >= 0, got {self.brokerage_cap}")

    def order_cost(self, buy: Any, notional: Any) -> Any:
        """Cost of executed orders; ``buy`` and ``notional`` may be numpy arrays."""
        notional = np.asarray(notional, dtype=np.float64)
        buy = np.asarray(buy, dtype=bool)
        brokerage = np.minimum(notional * self.brokerage_rate, self.brokerage_cap)
        rate = np.where(buy, self.buy_rate, self.sell_rate)
        fee = np.where(buy, self.fixed_fee_buy, self.fixed_fee_sell)
        return notional * rate + brokerage * (1.0 + self.gst_on_brokerage) + fee

    def round_trip_cost(self, notional: float) -> float:
        """Buying and later selling the same notional."""
        return float(self.order_cost(True, notional) + self.order_cost(False, notional))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_core(self) -> Any:
        # lazy: config validation reads cost models and must not load the compiled simulator
        from fastrl import _core

        core = _core.CostModel()
        for key, value in asdict(self).items():
            if key not in ("name", "overnight_shorts", "square_off", "whole_shares"):
                setattr(core, key, float(value))
        return core


def bps(buy_bps: float = 10.0, sell_bps: float | None = None, fixed_fee: float = 0.0,
        slippage_bps: float = 0.0) -> CostModel:
    """Plain model: ``buy_bps``/``sell_bps`` basis points of notional plus a fixed fee per order."""
    sell_bps = buy_bps if sell_bps is None else sell_bps
    return CostModel(
        buy_rate=(buy_bps + slippage_bps) * 1e-4,
        sell_rate=(sell_bps + slippage_bps) * 1e-4,
        fixed_fee_buy=fixed_fee,
        fixed_fee_sell=fixed_fee,
        name="bps",
    )


def nse_delivery(slippage_bps: float = 0.0, dp_charge: float = DP_CHARGE) -> CostModel:
    """NSE equity delivery (CNC) with zero brokerage; long/flat, whole shares (module notes)."""
    taxed_fees = (NSE_EXCHANGE_FEE + SEBI_FEE) * (1.0 + GST)
    slip = slippage_bps * 1e-4
    return CostModel(
        buy_rate=STT_DELIVERY + STAMP_DELIVERY_BUY + taxed_fees + slip,
        sell_rate=STT_DELIVERY + taxed_fees + slip,
        gst_on_brokerage=GST,
        fixed_fee_sell=dp_charge * (1.0 + GST),
        name="nse_delivery",
        overnight_shorts=False,
        whole_shares=True,
    )


def nse_intraday(slippage_bps: float = 0.0) -> CostModel:
    """NSE equity intraday (MIS): brokerage min(0.03%, Rs 20) per order; squared off by the
    intraday cutoff, whole shares (see the module notes)."""
    taxed_fees = (NSE_EXCHANGE_FEE + SEBI_FEE) * (1.0 + GST)
    slip = slippage_bps * 1e-4
    return CostModel(
        buy_rate=STAMP_INTRADAY_BUY + taxed_fees + slip,
        sell_rate=STT_INTRADAY_SELL + taxed_fees + slip,
        brokerage_rate=INTRADAY_BROKERAGE_RATE,
        brokerage_cap=INTRADAY_BROKERAGE_CAP,
        gst_on_brokerage=GST,
        name="nse_intraday",
        square_off=True,
        whole_shares=True,
    )


@dataclass(frozen=True)
class ExecutionCosts:
    """Per-side execution costs beyond the charges, in bps of traded notional."""

    half_spread_bps: float
    slippage_bps: float

    @property
    def total_bps(self) -> float:
        return self.half_spread_bps + self.slippage_bps


# Defaults per preset for NSE large caps (Nifty 50 names), each named preset on the bars it is
# meant for: nse_delivery on daily bars, ordered for the open (the 09:00-09:08 pre-open call
# auction sets the open); nse_intraday on 5-minute bars, a market order in the continuous
# book at the next bar's open.
# - half-spread 2 bps on both: NSE publishes an impact cost (the mid to the average fill of a
#   market order of a set size) of a few hundredths of a percent for Nifty 50 stocks, and
#   the bars' own estimate agrees: Abdi and Ranaldo's (2017, Review of Financial Studies
#   30(12)) close/high/low estimator, abdi_ranaldo_half_spread, on the bundled 5-minute NSE
#   large caps (the README gives the figures). Bar estimators on daily bars mostly measure
#   volatility, not the spread, so they set neither default.
# - slippage 3 bps daily, 5 bps on 5-minute bars: an allowance, not a measurement. A daily
#   order meets the auction, whose one price every matched order gets, but moves it; an
#   intraday order trades whatever the book holds when it arrives after the bar's close, with
#   no auction, and an intraday strategy sends many more of them.
# A preset traded on other bars (nse_delivery on 5-minute bars) keeps its own defaults; set
# EnvConfig.half_spread_bps and slippage_bps for it. The other presets and a CostModel the
# caller built are taken as complete (no defaults).
EXECUTION_DEFAULTS = {
    "nse_delivery": ExecutionCosts(half_spread_bps=2.0, slippage_bps=3.0),
    "nse_intraday": ExecutionCosts(half_spread_bps=2.0, slippage_bps=5.0),
}
NO_EXECUTION_COSTS = ExecutionCosts(half_spread_bps=0.0, slippage_bps=0.0)


def execution_defaults(spec: Any) -> ExecutionCosts:
    """The default execution costs of a cost spec: a named NSE preset's, else none."""
    if isinstance(spec, str):
        return EXECUTION_DEFAULTS.get(spec, NO_EXECUTION_COSTS)
    return NO_EXECUTION_COSTS


def resolve_execution(spec: Any, half_spread_bps: float | None,
                      slippage_bps: float | None) -> ExecutionCosts:
    """A config's execution costs: each value given, or the cost spec's default for None."""
    default = execution_defaults(spec)
    return ExecutionCosts(
        half_spread_bps=default.half_spread_bps if half_spread_bps is None
        else float(half_spread_bps),
        slippage_bps=default.slippage_bps if slippage_bps is None else float(slippage_bps))


def describe_execution(spec: Any, half_spread_bps: float | None,
                       slippage_bps: float | None) -> str:
    """'half-spread 2 + slippage 3 bps per side' for a config's values (None: the default)."""
    costs = resolve_execution(spec, half_spread_bps, slippage_bps)
    return f"half-spread {costs.half_spread_bps:g} + slippage {costs.slippage_bps:g} bps per side"


def with_execution(model: CostModel, execution: ExecutionCosts) -> CostModel:
    """``model`` with the half-spread and slippage added to both sides' rates."""
    for name in ("half_spread_bps", "slippage_bps"):
        value = getattr(execution, name)
        if not (math.isfinite(value) and value >= 0.0):
            raise ValueError(f"{name} must be finite and >= 0, got {value}")
    extra = execution.total_bps * 1e-4
    if extra == 0.0:
        return model
    return replace(model, buy_rate=model.buy_rate + extra, sell_rate=model.sell_rate + extra)


def abdi_ranaldo_half_spread(high: Any, low: Any, close: Any) -> float:
    """Half-spread (a fraction of price) estimated from bars, after Abdi and Ranaldo (2017):
    ``s^2 = 4 E[(c_t - eta_t)(c_t - eta_t+1)]`` with ``c`` the log close and ``eta`` the log
    mid-range ``(log high + log low) / 2``. The mean over every pair of consecutive bars; a
    negative mean gives 0. Used to choose and report the fixed default, not by the simulator.
    """
    c = np.log(np.asarray(close, dtype=np.float64))
    eta = 0.5 * (np.log(np.asarray(high, dtype=np.float64))
                 + np.log(np.asarray(low, dtype=np.float64)))
    if c.shape != eta.shape or c.ndim != 1 or c.shape[0] < 2:
        raise ValueError("high, low and close must be 1-d of one length >= 2")
    square = float(np.mean(4.0 * (c[:-1] - eta[:-1]) * (c[:-1] - eta[1:])))
    return 0.5 * math.sqrt(max(square, 0.0))


PRESETS = {"nse_delivery": nse_delivery, "nse_intraday": nse_intraday, "bps": bps,
           "zero": lambda: CostModel(name="zero")}


def resolve_cost_model(spec: str | CostModel | dict) -> CostModel:
    """A CostModel from a preset name, a CostModel, or a dict of its fields."""
    if isinstance(spec, CostModel):
        return spec
    if isinstance(spec, dict):
        return CostModel(**spec)
    if isinstance(spec, str) and spec in PRESETS:
        return PRESETS[spec]()
    raise ValueError(
        f"unknown cost model {spec!r}; choose one of {sorted(PRESETS)} or pass a CostModel")
