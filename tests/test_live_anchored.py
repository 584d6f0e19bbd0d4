"""The live path on anchored runs (env.action_mode 'anchored'): a paper replay equals the
backtest bit for bit (single discrete, single continuous, portfolio), the journal's and the
signal's targets are exposures (1 - the underweight), an untrained anchored agent's signal
is buy-and-hold / equal weight, and a held position maps to the nearest exposure the
anchored actions reach."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from fastrl.cli.paper import main as paper_main
from fastrl.cli.signal import main as signal_main
from fastrl.live.journal import Journal

from live_runs import backtest, column, first_session, rewrite_policy, train_run

pytest.importorskip("fastrl._core")

BUNDLED_LAST = "2022-11-09"  # the bundled daily bars' last session (BPCL, INFY, TCS)


@pytest.fixture(autouse=True)
def _evening_after_the_last_bundled_session(monkeypatch: pytest.MonkeyPatch) -> None:
    import fastrl.live.clock

    monkeypatch.setattr(fastrl.live.clock, "now",
                        lambda: pd.Timestamp(f"{BUNDLED_LAST} 20:00", tz="Asia/Kolkata"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("live-anchored")
    out = {kind: train_run(f"anchored-{kind}", folder)
           for kind in ("daily", "discrete", "portfolio")}
    out["absolute-portfolio"] = train_run("portfolio", folder)
    # a tiny discrete run stays at its benchmark level: shaken, it trades all three levels
    rewrite_policy(out["discrete"], "shaken")
    out["untrained-discrete"] = rewrite_policy(
        train_run("anchored-discrete", folder, seed=1), "untrained")
    out["untrained-portfolio"] = rewrite_policy(
        train_run("anchored-portfolio", folder, seed=1), "untrained")
    return out


def paper(run_dir, journal_path, start: str, capsys) -> Journal:
    code = paper_main([str(run_dir), "--bars", "bundled", "--from", start, "--journal",
                       str(journal_path), "--quiet"])
    assert code == 0, capsys.readouterr().err
    return Journal.open(str(journal_path))


def signal(run_dir, tmp_path, capsys, *extra: str) -> dict:
    out = tmp_path / "signal.json"
    code = signal_main([str(run_dir), "--bars", "bundled", "--out", str(out), *extra])
    assert code == 0, capsys.readouterr().err
    capsys.readouterr()
    return json.loads(out.read_text())


@pytest.mark.parametrize("kind", ["discrete", "daily"])
def test_anchored_single_paper_equals_the_backtest_bit_for_bit(runs, kind, tmp_path, capsys):
    bt = backtest(runs[kind])
    journal = paper(runs[kind], tmp_path / "journal.db", first_session(bt), capsys)
    rows = journal.rows("steps")
    assert [pd.Timestamp(r["marked_at"]) for r in rows] == [
        pd.Timestamp(t) for t in bt.timestamps[1:]]
    for key, expected in (("equity", bt.equity[1:]), ("position", bt.positions),
                          ("shares", bt.shares_held), ("cost", bt.step_costs),
                          ("fill_price", bt.fill_prices)):
        np.testing.assert_array_equal(column(rows, "BPCL", key), expected, err_msg=key)
    assert bt.fills.sum() >= 3, "the agent must trade for parity to mean anything"
    assert len(set(bt.positions)) >= 2
    # each decision's target is the exposure its fill reaches (1 - the underweight), not
    # the underweight itself
    decided = {pd.Timestamp(r["decided_at"]): r["target"] for r in journal.rows("decisions")}
    filled = [(pd.Timestamp(r["decided_at"]), p)
              for r, p, f in zip(rows, bt.positions, bt.fills, strict=True) if f]
    assert [decided[t] for t, _ in filled] == [p for _, p in filled]


def test_anchored_portfolio_paper_equals_the_backtest(runs, tmp_path, capsys):
    bt = backtest(runs["portfolio"])
    journal = paper(runs["portfolio"], tmp_path / "journal.db", first_session(bt), capsys)
    rows = journal.rows("steps")
    np.testing.assert_array_equal(column(rows, "PORTFOLIO", "equity"), bt.equity[1:])
    np.testing.assert_array_equal(column(rows, "PORTFOLIO", "cost"), bt.step_costs)
    np.testing.assert_array_equal(column(rows, "PORTFOLIO", "trades"), bt.legs)
    np.testing.assert_allclose(column(rows, "PORTFOLIO", "turnover"), bt.turnover,
                               rtol=1e-12, atol=0)  # summation order: test_live_parity


def test_untrained_anchored_portfolio_paper_buys_equal_weight_once_then_holds(
        runs, tmp_path, capsys):
    bt = backtest(runs["untrained-portfolio"])
    journal = paper(runs["untrained-portfolio"], tmp_path / "journal.db", first_session(bt),
                    capsys)
    legs = column(journal.rows("steps"), "PORTFOLIO", "trades")
    assert legs[0] == 3 and legs[1:].sum() == 0
    np.testing.assert_array_equal(legs, bt.legs)


def test_untrained_anchored_signal_is_buy_and_hold(runs, tmp_path, capsys):
    line, = signal(runs["untrained-discrete"], tmp_path, capsys, "--asof", BUNDLED_LAST)["lines"]
    assert line["action"] == 0 and line["target"] == 1.0  # no underweight: fully invested
    assert line["order_shares"] == line["target_shares"] > 0


def test_untrained_anchored_portfolio_signal_is_equal_weight(runs, tmp_path, capsys):
    lines = signal(runs["untrained-portfolio"], tmp_path, capsys, "--asof",
                   BUNDLED_LAST)["lines"]
    assert [line["target"] for line in lines] == [1 / 3] * 3


@pytest.mark.parametrize(("held_exposure", "observed"), [(1.0, 1.0), (0.8, 0.75), (0.1, 0.5)])
def test_a_held_position_maps_to_the_nearest_anchored_exposure(runs, held_exposure, observed):
    """Levels (0, 0.25, 0.5) are underweights: the exposures (1, 0.75, 0.5) are what a
    holding maps to (the simulator's position is an exposure)."""
    from fastrl.live.bars import load_live_bars
    from fastrl.live.decide import live_block
    from fastrl.live.run import open_run
    from fastrl.markets.single.live import SingleLiveEnv

    run = open_run(runs["discrete"])
    bars = load_live_bars(run, "bundled")
    stamp = pd.Timestamp(BUNDLED_LAST)
    env = SingleLiveEnv(run, live_block(run, bars, stamp, stamp), None, start=stamp, bars=bars)
    close = float(bars.bars["BPCL"].loc[stamp, "close"])
    capital = 100 * close / held_exposure
    book = env.held_book(np.array([close]), capital, {"BPCL": {"shares": 100.0}})
    assert book.env["position"] == [observed]


def test_a_held_continuous_anchored_position_is_clipped_to_the_reachable_exposures(runs):
    from fastrl.live.bars import load_live_bars
    from fastrl.live.decide import live_block
    from fastrl.live.run import open_run
    from fastrl.markets.single.live import SingleLiveEnv

    run = open_run(runs["daily"])
    bars = load_live_bars(run, "bundled")
    stamp = pd.Timestamp(BUNDLED_LAST)
    env = SingleLiveEnv(run, live_block(run, bars, stamp, stamp), None, start=stamp, bars=bars)
    assert env.config.action_bounds() == (0.0, 0.6)  # underweights: exposures 0.4 .. 1
    close = float(bars.bars["BPCL"].loc[stamp, "close"])
    book = env.held_book(np.array([close]), 1000 * close, {"BPCL": {"shares": 100.0}})
    assert book.env["position"] == [pytest.approx(0.4)]  # held at 0.1


# ------------------------------------------------- books journaled before the bench state


def drop_state(journal_path, keys: tuple[str, ...]) -> None:
    """Removes ``keys`` from the last journaled book's simulator state, as an older fastrl
    (before the benchmark's shadow book and the portfolio's last target) wrote it."""
    import sqlite3

    with sqlite3.connect(journal_path) as conn:
        seq, text = conn.execute("SELECT seq, book FROM sessions ORDER BY seq DESC LIMIT 1"
                                 ).fetchone()
        book = json.loads(text)
        assert all(k in book["env"] for k in keys)
        book["env"] = {k: v for k, v in book["env"].items() if k not in keys}
        conn.execute("UPDATE sessions SET book = ? WHERE seq = ?", (json.dumps(book), seq))


def paper_to(run_dir, journal_path, start: str, through: str | None, capsys) -> int:
    extra = ["--to", through] if through else []
    code = paper_main([str(run_dir), "--bars", "bundled", "--from", start, "--journal",
                       str(journal_path), "--quiet", *extra])
    return code


OLD_KEYS = {"daily": ("bench_position", "bench_shares", "bench_cash"),
            "portfolio": ("bench_shares", "bench_cash"),
            "absolute-portfolio": ("bench_shares", "bench_cash", "last_target")}


@pytest.mark.parametrize("kind", list(OLD_KEYS))
def test_a_book_saved_before_the_bench_state_goes_on_as_the_backtest(runs, kind, tmp_path,
                                                                      capsys):
    bt = backtest(runs[kind])
    start = first_session(bt)
    middle = str(pd.Timestamp(bt.timestamps[4]).date())
    journal_path = tmp_path / "journal.db"
    assert paper_to(runs[kind], journal_path, start, middle, capsys) == 0
    drop_state(journal_path, OLD_KEYS[kind])
    assert paper_to(runs[kind], journal_path, start, None, capsys) == 0, \
        capsys.readouterr().err
    rows = Journal.open(str(journal_path)).rows("steps")
    symbol = "BPCL" if kind == "daily" else "PORTFOLIO"
    np.testing.assert_array_equal(column(rows, symbol, "equity"), bt.equity[1:])
    np.testing.assert_array_equal(column(rows, symbol, "cost"), bt.step_costs)


def test_an_anchored_portfolio_book_without_its_last_target_is_refused(runs, tmp_path, capsys):
    bt = backtest(runs["portfolio"])
    start = first_session(bt)
    journal_path = tmp_path / "journal.db"
    assert paper_to(runs["portfolio"], journal_path, start,
                    str(pd.Timestamp(bt.timestamps[4]).date()), capsys) == 0
    drop_state(journal_path, ("last_target",))
    before = len(Journal.open(str(journal_path)).rows("sessions"))
    capsys.readouterr()
    assert paper_to(runs["portfolio"], journal_path, start, None, capsys) == 2
    err = capsys.readouterr().err
    assert str(journal_path) in err and "last_target" in err and "new journal" in err
    assert len(Journal.open(str(journal_path)).rows("sessions")) == before


# ----------------------------------------------------------------------- reports and console


@pytest.mark.parametrize(("kind", "words"), [
    ("discrete", ("underweights (0.0, 0.25, 0.5) (exposures (1.0, 0.75, 0.5))",
                  "action mode: anchored", "reward: log_return")),
    ("daily", ("underweight in [0.0, 0.6] (exposure in [0.4, 1.0])", "action mode: anchored",
               "reward: active")),
    ("portfolio", ("equal weight plus a tilt", "reward: active")),
])
def test_eval_report_and_console_say_the_levels_are_underweights(runs, kind, words, tmp_path,
                                                                 capsys):
    from fastrl.cli.evaluate import main

    out = tmp_path / "eval"
    assert main([str(runs[kind]), "--rungs", "none", "--out", str(out)]) == 0
    printed = " ".join(capsys.readouterr().out.split())  # rich wraps long lines
    report = (out / "report.md").read_text()
    assert "setup: action mode: anchored" in printed
    for word in words:
        assert word in report, word
