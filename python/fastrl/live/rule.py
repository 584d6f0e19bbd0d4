"""A classical rule as the live path's policy: ``fastrl-signal --rule NAME``, ``fastrl-paper
--rule NAME``.

A :class:`RuleRun` stands where a trained run's :class:`~fastrl.live.run.LiveRun` stands:
it names the symbols, frequency and env (a config: the fast preset's, a ``--config`` file,
``--set`` keys, the rule's parameters from its ``rules`` section) and decides at the
latest close. Everything else is the agent's live path (:mod:`fastrl.live.decide`): the
same live env, book, fills, costs and journal. Its env is the one the rule's backtest
steps (:func:`fastrl.markets.single.backtest.rule_config`, or the portfolio baselines'
:func:`fastrl.markets.portfolio.backtest.baseline_config`), which is why a rule's paper
replay equals :func:`fastrl.rules.backtest_single` / :func:`fastrl.rules.backtest_portfolio`
over the same days bit for bit.

A decision is the rule's on every bar of the feed up to the decision bar (never one after
it: a rule's schedule is causal, see :meth:`RuleRun.exposure`), so a rule has its whole
history for its warm-up (momentum's 252 bars, ma10's 10 month ends); a shorter feed leaves
it flat, as the backtest on the same bars is, and says so. The one
thing a series cannot say at its newest row is whether that row ends a month (nothing
follows it): live, the exchange calendar answers
(:func:`fastrl.live.clock.next_bar_in_new_month`), so a monthly rule rebalances at the row
its backtest does.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from fastrl.config import ConfigError, TrainConfig, build_config, config_to_dict
from fastrl.data.months import month_ends
from fastrl.features import WARMUP_BARS
from fastrl.live.book import LiveInputError
from fastrl.live.clock import next_bar_in_new_month
from fastrl.live.config_view import ConfigView
from fastrl.markets import kind_overrides
from fastrl.markets.portfolio.backtest import baseline_config as portfolio_baseline_config
from fastrl.markets.portfolio.backtest import fills_open_month
from fastrl.markets.single.backtest import rule_config
from fastrl.rules import RULES, Rule, rule_from_config, rule_names
from fastrl.rules.registry import RuleKind

if TYPE_CHECKING:
    from fastrl.live.bars import LiveBars
    from fastrl.live.book import LiveEnv

KIND_NAMES = {"single": "single-symbol rules", "portfolio": "portfolio rules (with --portfolio)"}
RULE_PREFIX = "rule:"  # a rule's name where a run folder's path stands (journals, signals)


@dataclass
class RuleRun(ConfigView):
    """A rule with the config it trades under; ``run_id`` hashes the rule, its parameters,
    the symbols, the frequency and the env (costs, market rules), so a journal refuses to
    be continued by another rule or the same rule under other settings."""

    rule: Rule
    config: TrainConfig
    run_id: str = field(init=False)
    # per feed frame (by id, checked by identity): closes, month ends, the rule's schedule
    _schedules: dict[int, tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]] = field(
        default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        text = json.dumps(self._fingerprint(), sort_keys=True, separators=(",", ":"))
        self.run_id = hashlib.sha256(text.encode()).hexdigest()[:32]

    def _fingerprint(self) -> dict[str, Any]:
        saved = config_to_dict(self.config)
        return {"rule": self.rule.name, "params": self.params, "symbols": list(self.symbols),
                "freq": self.freq, "env": saved["env"], "portfolio": saved["portfolio"]}

    @property
    def params(self) -> dict[str, Any]:
        return json.loads(json.dumps(self.rule.params.model_dump()))

    @property
    def long_features(self) -> bool:
        """False: a rule reads no feature (its history is the feed's closes)."""
        return False

    @property
    def normaliser_state(self) -> None:
        """None: the live block's features are normalised on the bars before it (a rule
        reads no feature; the simulator's observation only needs finite values)."""
        return None

    @property
    def run_dir(self) -> str:
        return f"{RULE_PREFIX}{self.rule.name}"

    def env_config(self) -> Any:
        """The env the rule's backtest steps (see the module doc)."""
        config = self.market.evaluation_env_config()
        if self.market.kind == "portfolio":
            return portfolio_baseline_config(config)
        return rule_config(config)

    def describe(self) -> str:
        """``rule momentum (lookback=252, skip=21, rebalance=monthly)``."""
        shown = ", ".join(f"{k}={v}" for k, v in self.params.items())
        return f"rule {self.rule.name}" + (f" ({shown})" if shown else "")

    def identity(self) -> dict[str, Any]:
        """What a journal records about the rule that writes it (instead of a run folder
        and checkpoint)."""
        return {"run_id": self.run_id, "run_dir": self.run_dir, "rule": self.rule.name,
                "params": self.params, "symbols": list(self.symbols), "freq": self.freq,
                "kind": self.market.kind}

    # -- deciding -----------------------------------------------------------------------

    def act(self, env: LiveEnv) -> np.ndarray | None:
        """The rule's decision at ``env``'s current bars: one exposure per symbol (each at
        its own bar), or the portfolio's target weights [1, A], or None where a portfolio
        rule sends no order (between its rebalances)."""
        bars = _bars(env)
        if self.market.kind == "portfolio":
            return self._weights(env, bars)
        exposures = np.zeros(len(self.symbols))
        for s, symbol in enumerate(self.symbols):
            mark = env.book.marks[s]
            if mark is not None:  # a symbol not started is asked and ignored
                exposures[s] = self.exposure(bars.bars[symbol], pd.Timestamp(mark))
        return exposures

    def exposure(self, frame: pd.DataFrame, stamp: pd.Timestamp) -> float:
        """A single rule's exposure decided at the close of ``stamp`` from the bars up to
        it: the last value of the rule's schedule over that history
        (:func:`fastrl.rules.exposure_schedule` on the same bars), its newest row a month
        end by the exchange calendar (:func:`live_month_ends`).

        A rule's schedule is causal (its value at a row reads that row and earlier ones
        only: ``tests/test_rules.py::test_single_rules_are_causal``), so the schedule over
        the feed, computed once, holds at each row the value its history gives, wherever
        the bars' month ends there are the calendar's; at a row where they are not (the
        feed's last bar, a missing session) the history is decided again."""
        stop = int(frame.index.searchsorted(stamp, side="right"))
        close, ends, schedule = self._feed_schedule(frame)
        if self.rule.reads_month_ends:
            here = next_bar_in_new_month(frame.index[stop - 1], self.freq)
            if here != ends[stop - 1]:
                history = ends[:stop].copy()
                history[-1] = here
                return float(self.rule.spec.decide(self.rule.params, close[:stop], history,
                                                   self.freq)[-1])
        return float(schedule[stop - 1])

    def _feed_schedule(self, frame: pd.DataFrame
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(closes, month ends by the bars, the rule's schedule) over all of ``frame``, kept
        for the frame (a feed's frames do not change while it is traded)."""
        cached = self._schedules.get(id(frame))
        if cached is None or cached[0] is not frame:
            if len(self._schedules) >= len(self.symbols):  # another feed's frames
                self._schedules.clear()
            close = frame["close"].to_numpy(dtype=np.float64)
            ends = month_ends(frame.index.to_numpy(dtype="datetime64[ns]"), len(frame))
            schedule = self.rule.spec.decide(self.rule.params, close, ends, self.freq)
            cached = (frame, close, ends, np.asarray(schedule, dtype=np.float64))
            self._schedules[id(frame)] = cached
        return cached[1], cached[2], cached[3]

    def _weights(self, env: LiveEnv, bars: LiveBars) -> np.ndarray | None:
        stamp = env.book.stamp
        if not (env.opening or self.rebalances(bars, stamp, env.config.execution)):
            return None
        marks, tradable = self.panel_marks(bars, stamp)
        # one BLAS thread, as the backtest's weight_schedule decides
        with threadpool_limits(limits=1):
            weights = self.rule.spec.decide(self.rule.params, marks, tradable)
        return np.asarray(weights, dtype=np.float64)[None]

    def panel_marks(self, bars: LiveBars, stamp: pd.Timestamp
                    ) -> tuple[np.ndarray, np.ndarray]:
        """(marks [T, A], tradable at ``stamp`` [A]) of the market's panel of the bars up
        to ``stamp``: what a portfolio rule reads, as its backtest on the market's panel
        and the live env's block hold them. A cell is tradable with a bar and a feature
        row, so a symbol in its feature warm-up (a bar the simulator cannot fill) is not
        eligible, and its mark is the close of its last tradable row (0 before).

        A symbol with fewer bars than the features' warm-up has no feature row yet: it is
        left out of the panel (untradable, no mark), which is what the panel of all its
        bars holds up to ``stamp``."""
        prefix = {s: f for s, f in bars.through(stamp).items() if len(f) > WARMUP_BARS}
        count = len(self.symbols)
        if not prefix:
            return np.zeros((1, count)), np.zeros(count, dtype=bool)
        after = pd.Timestamp(stamp).normalize() + pd.Timedelta(days=1)  # no test split
        try:
            panel = self.market.from_bars(prefix, val_days=0, source=bars.source,
                                          test_start=after).train
        except ValueError as exc:  # too little history, features of bad bars
            raise LiveInputError(f"cannot build the panel up to {stamp}: {exc}") from None
        columns = [self.symbols.index(s) for s in panel.symbols]
        marks = np.zeros((panel.num_bars, count))
        marks[:, columns] = panel.mark
        tradable = np.zeros(count, dtype=bool)
        if pd.Timestamp(panel.timestamps[-1]) == pd.Timestamp(stamp):
            tradable[columns] = panel.tradable[-1]
        return marks, tradable

    def rebalances(self, bars: LiveBars, stamp: pd.Timestamp, execution: str) -> bool:
        """Whether a running portfolio book sends the rule's order decided at ``stamp``:
        a monthly rule when its fill opens a month (next-open fills: ``stamp`` ends its
        month, by the calendar; close fills: the bar before ``stamp`` ended one), as
        :func:`fastrl.markets.portfolio.backtest.rebalance_steps` schedules it; a rule
        bought once never again."""
        if self.rule.spec.schedule == "once":
            return False
        # the union calendar's last two rows up to ``stamp`` are all a fill's month reads
        tail = _union_tail(bars, stamp, 2)
        ends = live_month_ends(tail, self.freq)
        return bool(fills_open_month(ends, np.array([len(tail) - 1]), execution)[0])

    # -- what the user is told ----------------------------------------------------------

    def notes(self, env: LiveEnv, bars: LiveBars, stamp: pd.Timestamp) -> list[str]:
        """The rule's warm-up and, for a portfolio rule, whether ``stamp``'s decision is a
        rebalance of a running book."""
        notes = [f"policy: {self.describe()}"]
        notes += self.warmup_notes(bars, stamp)
        if self.market.kind == "portfolio":
            if self.rebalances(bars, stamp, env.config.execution):
                notes.append(f"{self.rule.name} rebalances at the next open (a new month's "
                             "first fill)")
            else:
                notes.append(f"{self.rule.name} does not rebalance at the next open: a book "
                             "that holds its portfolio holds it; the target shown is what it "
                             "buys from these holdings")
        return notes

    def warmup_notes(self, bars: LiveBars, stamp: pd.Timestamp) -> list[str]:
        """Symbols whose history up to ``stamp`` is shorter than the rule's warm-up (the
        rule is flat there, as its backtest on the same bars)."""
        need, unit = self.rule.warmup
        short = []
        for symbol in self.symbols:
            history = bars.bars[symbol].loc[:stamp]
            if unit == "month ends":
                have = int(live_month_ends(history.index, self.freq).sum()) if len(history) else 0
            else:
                have = len(history)
            if have < need:
                short.append(f"{symbol} ({have})")
        if not short:
            return []
        return [f"{self.rule.name} needs {need} {unit} of history for its first decision; "
                f"up to {stamp.date()} the feed holds fewer for {', '.join(short)}: the rule "
                "is flat there until it has them (load longer history to trade it)"]


def live_month_ends(index: pd.DatetimeIndex, freq: str) -> np.ndarray:
    """:func:`fastrl.data.months.month_ends` of a history whose newest row is the decision
    bar: that row by the exchange calendar (the next bar opens a new month), the others by
    the bar after them."""
    ends = month_ends(index.to_numpy(dtype="datetime64[ns]"), len(index))
    if len(index):
        ends[-1] = next_bar_in_new_month(index[-1], freq)
    return ends


def _union_tail(bars: LiveBars, stamp: pd.Timestamp, rows: int) -> pd.DatetimeIndex:
    """The last ``rows`` rows up to ``stamp`` of the symbols' union calendar (each symbol's
    last ``rows`` bars up to it hold them), without building the whole calendar."""
    tails = []
    for frame in bars.bars.values():
        stop = int(frame.index.searchsorted(stamp, side="right"))
        tails.append(frame.index[max(0, stop - rows):stop])
    return pd.DatetimeIndex(np.unique(np.concatenate([t.to_numpy() for t in tails])))[-rows:]


def _bars(env: LiveEnv) -> LiveBars:
    bars = getattr(env, "bars", None)
    if bars is None:
        raise LiveInputError("a rule decides from the bars: the live env was built without "
                             "them")
    return bars


def open_rule(name: str, *, symbols: Sequence[str] | None = None, portfolio: bool = False,
              preset: str | None = None, config_file: str | None = None,
              set_options: Sequence[str] = ()) -> RuleRun:
    """The rule ``name`` for the live path: its kind must be the market's (``portfolio``),
    its config the preset (default :data:`fastrl.presets.DEFAULT_PRESET`), then
    ``config_file``, then ``symbols``, then the ``--set`` keys
    (``rules.momentum.lookback=126`` sets its parameters). LiveInputError (or ConfigError)
    naming the problem and the known rules of the right kind."""
    kind: RuleKind = "portfolio" if portfolio else "single"
    if name not in RULES:
        raise LiveInputError(f"unknown rule {name!r}; known {KIND_NAMES[kind]}: "
                             f"{', '.join(rule_names(kind))}")
    if RULES[name].kind != kind:
        if kind == "single":
            raise LiveInputError(f"rule {name!r} is a portfolio rule: add --portfolio (or use "
                                 f"a single-symbol rule: {', '.join(rule_names('single'))})")
        raise LiveInputError(f"rule {name!r} is a single-symbol rule; --portfolio needs a "
                             f"portfolio rule: {', '.join(rule_names('portfolio'))}")
    # A rule observes no feature (the base set's 33-bar warm-up is all its feed needs) and
    # steps absolute exposures, whatever the preset's agents observe and act in: so its
    # run_id, and the journals it keys, is the same under every preset.
    overrides: dict[str, Any] = {**kind_overrides(kind), "data.features": ("base",),
                                 "env.action_mode": "absolute"}
    if symbols:
        overrides["data.symbols"] = list(symbols)
    config = build_config(preset, config_file, overrides, list(set_options))
    try:
        rule = rule_from_config(name, config)
    except ConfigError as exc:
        raise LiveInputError(str(exc)) from None
    return RuleRun(rule=rule, config=config)


__all__ = ["RULE_PREFIX", "RuleRun", "live_month_ends", "open_rule"]
