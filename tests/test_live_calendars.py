"""Symbols on their own calendars: the README's BPCL + HDFCLIFE run paper-trades as its
backtest trades it.

A single-symbol run backtests each symbol as its own segment (its own bars on the test
days, an equal-capital sub-account), so the live path steps each symbol on its own bars: a
symbol without a bar at a time keeps its state. In the bundled data BPCL ends on 2022-11-09
and HDFCLIFE on 2022-11-15: a paper account or a signal up to 2022-11-09 ignores HDFCLIFE's
later bars, and one that expects a later session refuses BPCL as stale.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from fastrl.cli.paper import main as paper_main
from fastrl.cli.signal import main as signal_main
from fastrl.live.journal import Journal
from fastrl.markets.single.result import aligned_paths

from live_runs import (
    PAIR_SYMBOLS,
    backtest_window,
    backtests,
    bundled_copy,
    first_session,
    train_run,
)

pytest.importorskip("fastrl._core")

LAST = "2022-11-09"  # BPCL's last bundled bar; HDFCLIFE goes on to 2022-11-15


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("live-calendars")
    run_dir = train_run("pair", folder)
    return {"folder": folder, "run": run_dir, "backtests": backtests(run_dir)}


def paper(run_dir, bars, journal, start: str, capsys, *extra: str) -> tuple[int, str]:
    code = paper_main([str(run_dir), "--bars", str(bars), "--from", start, "--journal",
                       str(journal), "--quiet", *extra])
    return code, capsys.readouterr().err


def column(rows: list[dict], symbol: str, key: str) -> np.ndarray:
    return np.array([r[key] for r in rows if r["symbol"] == symbol], dtype=np.float64)


def assert_equal_to(rows: list[dict], bt, symbol: str) -> None:
    """The journal's rows of ``symbol`` are the backtest's steps, bit for bit."""
    assert bt.symbol == symbol
    marked = [pd.Timestamp(r["marked_at"]) for r in rows if r["symbol"] == symbol]
    assert marked == [pd.Timestamp(t) for t in bt.timestamps[1:]], symbol
    for key, expected in (("equity", bt.equity[1:]), ("position", bt.positions),
                          ("shares", bt.shares_held), ("cost", bt.step_costs),
                          ("fill_price", bt.fill_prices)):
        np.testing.assert_array_equal(column(rows, symbol, key), expected,
                                      err_msg=f"{symbol} {key}")
    np.testing.assert_array_equal(column(rows, symbol, "trades") > 0, bt.fills)


def test_the_pair_paper_trades_as_its_backtest(pair, tmp_path, capsys):
    run_dir, own = pair["run"], pair["backtests"]
    assert [b.symbol for b in own] == list(PAIR_SYMBOLS)
    start = first_session(own[0])  # BPCL's first test day
    journal = tmp_path / "journal.db"
    code, err = paper(run_dir, "bundled", journal, start, capsys, "--to", LAST)
    assert code == 0, err
    rows = Journal.open(str(journal)).rows("steps")
    # BPCL: its test days are these days, so its rows are the run's own backtest
    assert_equal_to(rows, own[0], "BPCL")
    # both symbols: the backtest of the same checkpoint on the same days
    same_days = backtest_window(run_dir, "bundled", start, LAST)
    for bt, symbol in zip(same_days, PAIR_SYMBOLS, strict=True):
        assert_equal_to(rows, bt, symbol)
        assert bt.fills.sum() >= 2, f"{symbol} must trade for parity to mean anything"
    # the account is the combined backtest's equal-capital total
    sessions = Journal.open(str(journal)).rows("sessions")
    total = aligned_paths(same_days)[0].sum(axis=0)
    np.testing.assert_array_equal([s["equity"] for s in sessions], total)  # day 1: cash
    assert sessions[-1]["session"] == LAST  # HDFCLIFE's later bars were not traded


def test_each_symbol_steps_on_its_own_calendar(pair, tmp_path, capsys):
    """HDFCLIFE misses the first session and one in the middle, BPCL another one: each
    symbol steps only on its own bars, as its backtest segment does."""
    run_dir, own = pair["run"], pair["backtests"]
    days = [str(pd.Timestamp(t).date()) for t in own[0].timestamps]
    start = days[0]
    feed = bundled_copy(PAIR_SYMBOLS, tmp_path / "feed")
    dropped = {"HDFCLIFE": [days[0], days[4]], "BPCL": [days[6]]}
    for symbol, drop in dropped.items():
        frame = pd.read_csv(feed / f"{symbol}.csv")
        frame[~frame.iloc[:, 0].astype(str).str[:10].isin(drop)].to_csv(
            feed / f"{symbol}.csv", index=False)
    journal = tmp_path / "journal.db"
    code, err = paper(run_dir, feed, journal, start, capsys, "--to", LAST)
    assert code == 0, err
    rows = Journal.open(str(journal)).rows("steps")
    same_days = backtest_window(run_dir, feed, start, LAST)
    for bt, symbol in zip(same_days, PAIR_SYMBOLS, strict=True):
        assert_equal_to(rows, bt, symbol)
        marked = {str(pd.Timestamp(r["marked_at"]).date()) for r in rows
                  if r["symbol"] == symbol}
        assert not marked & set(dropped[symbol])
    decisions = Journal.open(str(journal)).rows("decisions")
    first = [d for d in decisions if d["symbol"] == "HDFCLIFE"][0]
    assert first["decided_at"].startswith(days[1])  # it started at its first bar


def test_a_symbol_behind_the_expected_session_is_stale(pair, tmp_path, capsys):
    run_dir, own = pair["run"], pair["backtests"]
    start = first_session(own[0])
    journal = tmp_path / "journal.db"
    for extra in (["--to", "2022-11-15"], []):  # the default expects the newest session
        code, err = paper(run_dir, "bundled", journal, start, capsys, *extra)
        assert code == 2 and "stale bar" in err and "BPCL" in err, err
        assert "HDFCLIFE" not in err
        assert not journal.exists()
    out = tmp_path / "signal.json"
    assert signal_main([str(run_dir), "--bars", "bundled", "--asof", "2022-11-15", "--out",
                        str(out)]) == 2
    err = capsys.readouterr().err
    assert "stale bar" in err and "BPCL" in err and not out.exists(), err


def test_the_pair_signal_ignores_bars_after_asof(pair, tmp_path, capsys):
    run_dir = pair["run"]
    cut = bundled_copy(PAIR_SYMBOLS, tmp_path / "cut", through=LAST)
    signals = []
    for source in ("bundled", cut):
        out = tmp_path / f"signal-{len(signals)}.json"
        code = signal_main([str(run_dir), "--bars", str(source), "--asof", LAST, "--out",
                            str(out)])
        assert code == 0, capsys.readouterr().err
        signals.append(json.loads(out.read_text()))
    capsys.readouterr()
    assert [line["symbol"] for line in signals[0]["lines"]] == list(PAIR_SYMBOLS)
    assert signals[0]["lines"] == signals[1]["lines"]
    assert signals[0]["decided_at"].startswith(LAST)
