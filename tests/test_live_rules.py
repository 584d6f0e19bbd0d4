"""A classical rule on the live path: fastrl-paper --rule replays its backtest bit for bit,
fastrl-signal --rule prints the backtest's decision, and bad input is refused.

The backtests are :func:`fastrl.rules.backtest_single` / :func:`fastrl.rules.backtest_portfolio`
on blocks of the same bars (every bar a rule may read, as bench/ladder.py builds them), started
at the paper account's first decision bar (start_bars / start_row). They close the last
position at the last close (the paper account goes on): the same path less that one cost.

The portfolio's ``turnover`` is compared to 1e-12 relative, as in test_live_parity.py: the
one-step replay divides by the carried holding's value summed in another order.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from fastrl.cli.paper import main as paper_main
from fastrl.cli.signal import main as signal_main
from fastrl.data.block import MarketBlock
from fastrl.data.loaders import load_bars_report
from fastrl.data.panel import PanelBlock
from fastrl.live.journal import Journal
from fastrl.live.rule import live_month_ends, open_rule
from fastrl.rules import backtest_portfolio, backtest_single, exposure_schedule, weight_schedule

from live_runs import PAIR_SYMBOLS, PORTFOLIO_SYMBOLS, bundled_copy

pytest.importorskip("fastrl._core")

# ma10 flips HDFCLIFE at the July and August 2021 month ends, voltarget moves both symbols'
# exposure at each; momentum holds (it buys at the first fill)
START, THROUGH = "2021-07-19", "2021-09-03"
HISTORY_ROWS = 400  # more than momentum's 253 bars and ma10's 10 month ends


@pytest.fixture(scope="module")
def feed(tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("rule-bars")
    symbols = sorted(set(PAIR_SYMBOLS) | set(PORTFOLIO_SYMBOLS))
    return str(bundled_copy(symbols, folder, through=THROUGH, rows=HISTORY_ROWS))


def load(feed: str, symbols) -> dict[str, pd.DataFrame]:
    return load_bars_report(list(symbols), "1d", feed, "raise").bars


def single_block(bars: dict[str, pd.DataFrame]) -> MarketBlock:
    return MarketBlock.from_bars(bars, "1d")


def raw_panel(bars: dict[str, pd.DataFrame]) -> PanelBlock:
    return PanelBlock.from_bars(bars, "1d")


def first_row(index: pd.DatetimeIndex, day: str) -> int:
    return int(np.searchsorted(index, pd.Timestamp(day), side="left"))


def paper(args: list[str], journal, capsys) -> list[dict]:
    code = paper_main([*args, "--from", START, "--to", THROUGH, "--journal", str(journal),
                       "--quiet"])
    err = capsys.readouterr().err
    assert code == 0, err
    return Journal.open(str(journal)).rows("steps")


def column(rows: list[dict], symbol: str, key: str) -> np.ndarray:
    return np.array([r[key] for r in rows if r["symbol"] == symbol], dtype=np.float64)


@pytest.mark.parametrize("name", ["momentum", "ma10", "voltarget"])
def test_a_single_rule_paper_replay_equals_its_backtest_bit_for_bit(name, feed, tmp_path,
                                                                      capsys):
    journal = tmp_path / "journal.db"
    rows = paper(["--rule", name, "--symbols", *PAIR_SYMBOLS, "--bars", feed], journal, capsys)
    run = open_rule(name, symbols=PAIR_SYMBOLS)
    bars = load(feed, PAIR_SYMBOLS)
    block = single_block(bars)
    starts = [block.segment(s).start + first_row(bars[symbol].index, START)
              for s, symbol in enumerate(block.symbols)]
    backtests = backtest_single([run.rule], block, run.market.env_config, starts)
    traded = 0
    for bt in backtests:
        symbol = bt.symbol
        assert [pd.Timestamp(r["marked_at"]) for r in rows if r["symbol"] == symbol] == [
            pd.Timestamp(t) for t in bt.timestamps[1:]]
        for key, expected in (("position", bt.positions), ("shares", bt.shares_held),
                              ("fill_price", bt.fill_prices)):
            np.testing.assert_array_equal(column(rows, symbol, key), expected,
                                          err_msg=f"{symbol} {key}")
        equity, cost = column(rows, symbol, "equity"), column(rows, symbol, "cost")
        np.testing.assert_array_equal(equity[:-1], bt.equity[1:-1])
        np.testing.assert_array_equal(cost[:-1], bt.step_costs[:-1])
        # the backtest sells what is left at the last close; the paper account goes on
        assert equity[-1] - bt.liquidation_cost == bt.equity[-1]
        assert cost[-1] + bt.liquidation_cost == bt.step_costs[-1]
        np.testing.assert_array_equal(column(rows, symbol, "trades") > 0, bt.fills)
        traded += int(bt.fills.sum())
    assert traded >= 2, "the rule must trade for parity to mean anything"
    identity = Journal.open(str(journal)).identity()
    assert identity["rule"] == name and identity["params"] == run.params
    assert "checkpoint" not in identity


@pytest.mark.parametrize(("name", "sets"), [("inverse_vol", []),
                                            ("xs_momentum", ["rules.xs_momentum.top_k=1"])])
def test_a_portfolio_rule_paper_replay_equals_its_backtest_bit_for_bit(name, sets, feed,
                                                                         tmp_path, capsys):
    symbols = PORTFOLIO_SYMBOLS
    journal = tmp_path / f"{name}.db"
    rows = paper(["--rule", name, "--portfolio", "--symbols", *symbols, "--bars", feed,
                  *(["--set", *sets] if sets else [])], journal, capsys)
    run = open_rule(name, symbols=symbols, portfolio=True, set_options=sets)
    panel = raw_panel(load(feed, symbols))
    start = first_row(pd.DatetimeIndex(panel.timestamps), START)
    (bt,) = backtest_portfolio([run.rule], panel, run.market.env_config, start_row=start)
    equity, cost = column(rows, "PORTFOLIO", "equity"), column(rows, "PORTFOLIO", "cost")
    np.testing.assert_array_equal(equity[:-1], bt.equity[1:-1])
    assert equity[-1] - bt.liquidation_cost == bt.equity[-1]
    np.testing.assert_array_equal(cost[:-1], bt.step_costs[:-1])
    np.testing.assert_array_equal(column(rows, "PORTFOLIO", "trades"), bt.legs)
    np.testing.assert_allclose(column(rows, "PORTFOLIO", "turnover"), bt.turnover,
                               rtol=1e-12, atol=0)
    for a, symbol in enumerate(bt.symbols):
        np.testing.assert_array_equal(column(rows, symbol, "position"), bt.weights[:, a],
                                      err_msg=symbol)
    # the first decision and the month ends' rebalances, nothing between
    assert bt.rebalanced.sum() >= 3 and (bt.legs > 0).sum() >= 3
    decisions = Journal.open(str(journal)).rows("decisions")
    decided = sorted({r["decided_at"] for r in decisions})
    stamps = pd.DatetimeIndex(panel.timestamps)
    rebalanced = [str(stamps[start + k]) for k in np.flatnonzero(bt.rebalanced)]
    # the last session's decision is pending (the backtest has no step after it)
    assert decided[:len(rebalanced)] == rebalanced
    assert set(decided[len(rebalanced):]) <= {str(stamps[-1])}


def month_end_flip(exposure: np.ndarray, stamps: pd.DatetimeIndex, lo: str, hi: str) -> int:
    """A row in [lo, hi] where the rule's exposure changes (a month end of a monthly rule)."""
    rows = [i for i in range(1, len(stamps)) if exposure[i] != exposure[i - 1]
            and pd.Timestamp(lo) <= stamps[i] <= pd.Timestamp(hi)]
    assert rows, "the span must hold a decision that changes"
    return rows[0]


@pytest.mark.parametrize(("name", "sets"), [
    ("buy_and_hold", []), ("ma200", ["rules.ma200.window=50"]), ("ma10", ["rules.ma10.months=3"]),
    ("momentum", ["rules.momentum.lookback=60", "rules.momentum.skip=5"]),
    ("momentum", ["rules.momentum.lookback=60", "rules.momentum.rebalance=daily"]),
    ("voltarget", ["rules.voltarget.window=20"])])
def test_a_live_exposure_is_the_rule_decided_on_the_history_up_to_it(name, sets):
    """The live decision (from the feed's schedule, kept per frame) equals the rule's
    schedule over the bars up to the decision with the calendar's month end at its last
    row, at every bar: here a feed without the 2021-06-30 session, whose bars say June ends
    a session early."""
    frame = load_bars_report(["BPCL"], "1d", "bundled", "raise").bars["BPCL"]
    frame = frame.loc["2020-09-01":"2021-09-03"]
    frame = frame.drop(pd.Timestamp("2021-06-30"))
    run = open_rule(name, symbols=["BPCL"], set_options=sets)
    rule = run.rule
    close = frame["close"].to_numpy(dtype=np.float64)
    for stop in range(100, len(frame) + 1):
        ends = live_month_ends(frame.index[:stop], "1d")
        expected = rule.spec.decide(rule.params, close[:stop], ends, "1d")[-1]
        assert run.exposure(frame, frame.index[stop - 1]) == expected, frame.index[stop - 1]


@pytest.mark.parametrize(("name", "symbol"), [("ma10", "HDFCLIFE"), ("voltarget", "BPCL")])
def test_a_signal_on_a_month_end_is_the_backtests_decision_there(name, symbol, feed, tmp_path,
                                                                 capsys):
    """The series' last row is never a month end by itself (nothing follows it); live, the
    exchange calendar says the next session opens a new month, so the signal changes at the
    row its backtest does."""
    bars = load(feed, [symbol])
    block = single_block(bars)
    exposure = exposure_schedule(open_rule(name, symbols=[symbol]).rule, block)
    stamps = pd.DatetimeIndex(block.timestamps)
    row = month_end_flip(exposure, stamps, START, THROUGH)
    assert stamps[row].month != stamps[row + 1].month  # a month end
    out = tmp_path / "signal.json"
    code = signal_main(["--rule", name, "--symbols", symbol, "--bars", feed, "--asof",
                        str(stamps[row].date()), "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    result = json.loads(out.read_text())
    assert result["decided_at"] == str(stamps[row].date())
    assert result["rule"]["name"] == name
    (line,) = result["lines"]
    assert line["target"] == exposure[row] != exposure[row - 1]


def test_a_portfolio_signal_is_the_backtests_first_decision(feed, tmp_path, capsys):
    symbols = PORTFOLIO_SYMBOLS
    panel = raw_panel(load(feed, symbols))
    run = open_rule("inverse_vol", symbols=symbols, portfolio=True)
    stamps = pd.DatetimeIndex(panel.timestamps)
    row = first_row(stamps, "2021-08-31")  # a month end: the next open rebalances
    targets, orders = weight_schedule(run.rule, panel, run.market.env_config, start_row=row)
    out = tmp_path / "signal.json"
    code = signal_main(["--rule", "inverse_vol", "--portfolio", "--symbols", *symbols,
                        "--bars", feed, "--asof", "2021-08-31", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    result = json.loads(out.read_text())
    assert orders[0] and targets[0].sum() == pytest.approx(1.0)
    np.testing.assert_array_equal([line["target"] for line in result["lines"]], targets[0])
    assert any("rebalances at the next open" in note for note in result["notes"])


def test_the_calendar_says_which_bar_ends_a_month():
    from fastrl.live.clock import next_bar_in_new_month

    assert next_bar_in_new_month(pd.Timestamp("2021-07-30"), "1d")  # a Friday, month end
    assert not next_bar_in_new_month(pd.Timestamp("2021-07-29"), "1d")
    # 2021-04-30 is a session; 2021-04-29's next session is the 30th
    assert not next_bar_in_new_month(pd.Timestamp("2021-04-29"), "1d")
    # intraday: only the session's last bar can end a month
    assert not next_bar_in_new_month(pd.Timestamp("2021-07-30 15:20"), "5min")
    assert next_bar_in_new_month(pd.Timestamp("2021-07-30 15:25"), "5min")


def test_the_cached_calendar_answers_as_the_library_and_the_session_table():
    """next_bar_in_new_month looks the next session up in a schedule built once; it answers
    as the library's own session list inside its years and as ``sessions`` (weekdays)
    across their end."""
    import exchange_calendars as xc

    from fastrl.live.clock import _LOOKBACK, EXCHANGE, next_bar_in_new_month, sessions

    with warnings.catch_warnings():  # the library's own pandas deprecation notices
        warnings.simplefilter("ignore")
        library = xc.get_calendar(EXCHANGE, start="2020-01-01", end="2022-12-31").sessions
    table, note = sessions(pd.Timestamp("2020-01-01"), pd.Timestamp("2022-12-31"))
    assert note is None
    assert table.index.equals(pd.DatetimeIndex(library))
    days = [*pd.date_range("2020-12-01", "2021-05-10"), *pd.date_range("2026-10-01", "2027-02-10")]
    for day in days:
        following, _ = sessions(day + pd.Timedelta(days=1), day + _LOOKBACK)
        expected = following.index[0].to_period("M") != day.to_period("M")
        assert next_bar_in_new_month(day, "1d") == expected, day


@pytest.mark.parametrize(("argv", "message"), [
    (["--rule", "nope"], "unknown rule 'nope'; known single-symbol rules: buy_and_hold, "
                         "voltarget, momentum, ma10, ma200"),
    (["--rule", "nope", "--portfolio"], "known portfolio rules (with --portfolio): ew_hold"),
    (["--rule", "inverse_vol"], "rule 'inverse_vol' is a portfolio rule: add --portfolio"),
    (["--rule", "momentum", "--portfolio"], "rule 'momentum' is a single-symbol rule; "
                                            "--portfolio needs a portfolio rule: ew_hold"),
    (["somerun", "--rule", "momentum"], "give a run folder or --rule momentum, not both"),
    (["somerun", "--symbols", "BPCL"], "--symbols go with --rule NAME"),
    ([], "give a run folder (RUN) or --rule NAME"),
    (["--rule", "momentum", "--set", "rules.momentum.lookback=1"],
     "config key 'rules.momentum.lookback' must be >= 2"),
])
@pytest.mark.parametrize("command", ["signal", "paper"])
def test_bad_rule_input_exits_2_naming_the_problem(command, argv, message, tmp_path, capsys):
    journal = tmp_path / "journal.db"
    if command == "signal":
        code = signal_main([*argv, "--bars", "bundled"])
    else:
        code = paper_main([*argv, "--bars", "bundled", "--from", START, "--journal",
                           str(journal)])
    err = capsys.readouterr().err
    assert code == 2
    assert message in " ".join(err.split()), err
    assert not journal.exists()  # nothing written


def test_a_rule_journal_refuses_another_rule_and_verifies(feed, tmp_path, capsys):
    journal = tmp_path / "journal.db"
    common = ["--symbols", *PAIR_SYMBOLS, "--bars", feed, "--from", START, "--to",
              "2021-07-23", "--journal", str(journal), "--quiet"]
    assert paper_main(["--rule", "momentum", *common]) == 0
    capsys.readouterr()
    # the same rule under other parameters is another policy
    assert paper_main(["--rule", "momentum", "--set", "rules.momentum.lookback=126",
                       *common]) == 2
    err = capsys.readouterr().err
    assert "was written by another run (rule momentum (lookback=252" in err
    assert "not by rule momentum (lookback=126" in err
    assert paper_main(["--verify", str(journal)]) == 0
    out = capsys.readouterr().out
    # 2021-07-21 was a holiday
    assert "OK, 4 session(s) 2021-07-19 .. 2021-07-23 chained" in out
    assert "written by rule momentum (lookback=252, skip=21, rebalance=monthly) on BPCL, " \
        "HDFCLIFE" in out
    # continued with more bars by the same rule: the book carries on
    assert paper_main(["--rule", "momentum", *common[:-5], "--to", "2021-07-30",
                       "--journal", str(journal), "--quiet"]) == 0
    assert paper_main(["--verify", str(journal)]) == 0


def test_an_intraday_rule_paper_replay_equals_its_backtest_bit_for_bit(tmp_path, capsys):
    """ma200 on 5-minute bars under the MIS square-off: the rule's env squares off at the
    cutoff, as the agent's does."""
    feed = str(bundled_copy(["BPCL"], tmp_path / "bars", freq="5min", rows=600))
    sets = ["data.freq=5min", "env.cost=nse_intraday"]
    journal = tmp_path / "journal.db"
    code = paper_main(["--rule", "ma200", "--symbols", "BPCL", "--set", *sets, "--bars", feed,
                       "--from", "2024-06-27", "--journal", str(journal), "--quiet"])
    assert code == 0, capsys.readouterr().err
    rows = Journal.open(str(journal)).rows("steps")
    run = open_rule("ma200", symbols=["BPCL"], set_options=sets)
    bars = load_bars_report(["BPCL"], "5min", feed, "raise").bars
    block = MarketBlock.from_bars(bars, "5min")
    start = first_row(bars["BPCL"].index, "2024-06-27")
    (bt,) = backtest_single([run.rule], block, run.market.env_config, [start])
    for key, expected in (("position", bt.positions), ("shares", bt.shares_held),
                          ("equity", bt.equity[1:]), ("cost", bt.step_costs)):
        np.testing.assert_array_equal(column(rows, "BPCL", key), expected, err_msg=key)
    assert bt.liquidation_cost == 0  # squared off at the cutoff: nothing left to sell
    assert bt.fills.sum() >= 2


def test_a_feed_shorter_than_the_warm_up_leaves_the_rule_flat_and_says_so(tmp_path, capsys):
    feed = str(bundled_copy(["BPCL"], tmp_path / "bars", through="2021-08-31", rows=120))
    out = tmp_path / "signal.json"
    code = signal_main(["--rule", "momentum", "--symbols", "BPCL", "--bars", feed, "--asof",
                        "2021-08-31", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    result = json.loads(out.read_text())
    assert result["lines"][0]["target"] == 0.0
    assert any("momentum needs 253 bars of history for its first decision" in note
               and "BPCL (120)" in note for note in result["notes"])
    journal = tmp_path / "journal.db"
    assert paper_main(["--rule", "ma10", "--symbols", "BPCL", "--bars", feed, "--from",
                       "2021-08-02", "--to", "2021-08-31", "--journal", str(journal),
                       "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "warning: ma10 needs 10 month ends of history" in err


@pytest.mark.parametrize(("first_bar", "warm"), [("2024-05-29 14:15", False),
                                                 ("2024-05-29 12:10", True)])
def test_a_portfolio_rule_reads_a_late_symbol_as_the_envs_panel_holds_it(first_bar, warm,
                                                                        tmp_path, capsys):
    """INFY's 5-minute bars start 15 (40) bars before the replay's first decision. With 16
    bars it has a bar but no feature row there (its feature warm-up): the env's panel
    cannot fill it. With 41 it is tradable, but 10 returns back reach into its warm-up,
    where the panel holds no mark. The rule reads the panel's eligibility and marks, so its
    replay equals its backtest on the market's panel (as fastrl-train's rungs read it):
    BPCL alone at first, both after the month end's rebalance."""
    from fastrl.markets.portfolio.rungs import history_panel

    feed = bundled_copy(["BPCL", "INFY"], tmp_path / "bars", freq="5min", through="2024-06-03",
                        rows=400)
    infy = pd.read_csv(feed / "INFY.csv")
    infy[infy.iloc[:, 0] >= first_bar].to_csv(feed / "INFY.csv", index=False)
    symbols = ["BPCL", "INFY"]
    sets = ["data.freq=5min", "rules.inverse_vol.window=10"]
    journal = tmp_path / "journal.db"
    code = paper_main(["--rule", "inverse_vol", "--portfolio", "--symbols", *symbols, "--set",
                       *sets, "--bars", str(feed), "--from", "2024-05-30", "--to", "2024-06-03",
                       "--journal", str(journal), "--quiet"])
    assert code == 0, capsys.readouterr().err
    rows = Journal.open(str(journal)).rows("steps")
    run = open_rule("inverse_vol", symbols=symbols, portfolio=True, set_options=sets)
    bars = load_bars_report(symbols, "5min", str(feed), "raise").bars
    splits = run.market.from_bars(bars, val_days=0, test_start=pd.Timestamp("2024-05-30"))
    panel = history_panel([splits.train, splits.val, splits.test])
    stamps = pd.DatetimeIndex(panel.timestamps)
    start = first_row(stamps, "2024-05-30")
    infy_col = panel.symbols.index("INFY")
    assert stamps[start] in bars["INFY"].index  # a bar at the first decision
    assert panel.tradable[start, infy_col] == warm
    # 11 bars of marks: 10 returns back
    assert (panel.mark[start - 10:start + 1, infy_col] == 0).any()
    (bt,) = backtest_portfolio([run.rule], panel, run.market.env_config, start_row=start)
    assert bt.weights[0, infy_col] == 0 and bt.weights[-1, infy_col] > 0
    equity, cost = column(rows, "PORTFOLIO", "equity"), column(rows, "PORTFOLIO", "cost")
    np.testing.assert_array_equal(equity[:-1], bt.equity[1:-1])
    np.testing.assert_array_equal(cost[:-1], bt.step_costs[:-1])
    for a, symbol in enumerate(bt.symbols):
        np.testing.assert_array_equal(column(rows, symbol, "position"), bt.weights[:, a],
                                      err_msg=symbol)


@pytest.mark.parametrize("execution", ["next_open", "close"])
def test_a_live_rebalance_is_the_backtests_rebalance_step(execution):
    """RuleRun.rebalances (the feed's last rows up to the decision, the calendar at the
    newest) marks the decisions rebalance_steps marks on the panel of the same bars."""
    from fastrl.env_config import PortfolioConfig
    from fastrl.live.bars import LiveBars
    from fastrl.markets.portfolio.backtest import rebalance_steps

    symbols = ["BPCL", "INFY"]
    bars = {s: f.loc["2021-05-01":"2021-09-30"] for s, f in
            load_bars_report(symbols, "1d", "bundled", "raise").bars.items()}
    bars["INFY"] = bars["INFY"].drop(pd.Timestamp("2021-07-30"))  # the union still has it
    panel = raw_panel(bars)
    config = PortfolioConfig(window=1, execution=execution)
    steps = set(rebalance_steps(panel, config).tolist())
    run = open_rule("ew_monthly", symbols=symbols, portfolio=True)
    live = LiveBars(bars=bars, freq="1d", source="test")
    stamps = pd.DatetimeIndex(panel.timestamps)
    marked = [k for k in range(1, panel.num_bars - 1)
              if run.rebalances(live, stamps[k], execution)]
    assert marked == sorted(steps - {0}) and len(marked) >= 4


@pytest.mark.parametrize(("name", "portfolio", "sets"), [
    ("momentum", False, []), ("ew_monthly", True, ["portfolio.max_weight=0.3"])])
def test_a_rule_is_the_same_run_under_every_preset(name, portfolio, sets):
    # a rule observes no feature and steps absolute exposures: its run_id (the journal's
    # key) and config do not follow the preset's anchored actions or long feature sets, and
    # caps an anchored agent could not take are the rule's to ignore
    symbols = PORTFOLIO_SYMBOLS if portfolio else ["BPCL"]
    runs = [open_rule(name, symbols=symbols, portfolio=portfolio, preset=preset,
                      set_options=sets) for preset in (None, "fast", "anchored")]
    assert len({run.run_id for run in runs}) == 1
    assert all(run.config.data.features == ("base",) for run in runs)
