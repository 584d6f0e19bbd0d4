"""fastrl-signal: the paper path's decision, deterministic, in whole shares with costs; and
--bars yfinance from a recorded response (never the network)."""

from __future__ import annotations

import json
import sys
import types

import numpy as np
import pandas as pd
import pytest

from fastrl.cli.paper import main as paper_main
from fastrl.cli.signal import main as signal_main
from fastrl.live.journal import Journal
from test_data_download import yahoo_frame

from live_runs import backtest, first_session, train_run

pytest.importorskip("fastrl._core")


BUNDLED_LAST = "2022-11-09"  # the bundled daily bars' last session (BPCL, INFY, TCS)


def pin_clock(monkeypatch: pytest.MonkeyPatch, when: str) -> None:
    """The live path's clock at ``when`` (IST): the bundled bars end years before now."""
    import fastrl.live.clock

    monkeypatch.setattr(fastrl.live.clock, "now",
                        lambda: pd.Timestamp(when, tz="Asia/Kolkata"))


@pytest.fixture(autouse=True)
def _evening_after_the_last_bundled_session(monkeypatch: pytest.MonkeyPatch) -> None:
    pin_clock(monkeypatch, f"{BUNDLED_LAST} 20:00")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("live-signal")
    return {kind: train_run(kind, folder) for kind in ("daily", "portfolio", "discrete")}


def signal(run_dir, tmp_path, capsys, *extra: str, name: str = "signal.json") -> dict:
    out = tmp_path / name
    code = signal_main([str(run_dir), "--bars", "bundled", "--out", str(out), *extra])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "next session's open" in captured.out
    return json.loads(out.read_text()) if out.suffix == ".json" else out.read_text()


def test_signal_is_the_paper_decision_and_deterministic(runs, tmp_path, capsys):
    run_dir = runs["daily"]
    start = first_session(backtest(run_dir))
    first = signal(run_dir, tmp_path, capsys, "--asof", start)
    again = signal(run_dir, tmp_path, capsys, "--asof", start, name="again.json")
    assert first == again
    journal = tmp_path / "j.db"
    assert paper_main([str(run_dir), "--bars", "bundled", "--from", start, "--to", start,
                       "--journal", str(journal), "--quiet"]) == 0
    decision = Journal.open(str(journal)).rows("decisions")[0]
    line = first["lines"][0]
    assert (line["symbol"], line["action"], line["target"]) == (
        decision["symbol"], decision["action"], decision["target"])
    assert first["decided_at"].startswith(start) and first["session"] == start


def test_shares_and_costs_under_the_run_rules(runs, tmp_path, capsys):
    run_dir = runs["daily"]
    held = tmp_path / "positions.csv"
    held.write_text("symbol,shares,entry_price\nBPCL,500,300\n")
    result = signal(run_dir, tmp_path, capsys, "--capital", "250000", "--positions", str(held))
    line = result["lines"][0]
    assert result["capital"] == 250000 and line["shares_held"] == 500
    assert 0.0 <= line["target"] <= 1.0  # delivery: long/flat
    assert line["target_shares"] == int(line["target_shares"])  # whole shares
    assert line["order_shares"] == line["target_shares"] - 500
    from fastrl.env_config import EnvConfig

    cost = EnvConfig(cost="nse_delivery").cost_model()  # the charges, half-spread, slippage
    expected = (cost.order_cost(line["order_shares"] > 0,
                                abs(line["order_shares"]) * line["close"])
                if line["order_shares"] else 0.0)
    assert line["expected_cost"] == pytest.approx(float(expected))
    assert any("long/flat" in note for note in result["notes"])
    csv = signal(run_dir, tmp_path, capsys, "--capital", "250000", name="signal.csv")
    assert csv.splitlines()[0].startswith("session,decided_at,symbol,close")


def test_portfolio_signal_gives_weights_and_shares_per_symbol(runs, tmp_path, capsys):
    result = signal(runs["portfolio"], tmp_path, capsys, "--capital", "3000000")
    weights = np.array([line["target"] for line in result["lines"]])
    assert [line["symbol"] for line in result["lines"]] == ["BPCL", "INFY", "TCS"]
    assert np.all(weights >= 0) and np.all(weights <= 0.5 + 1e-9) and weights.sum() <= 1 + 1e-9
    for line in result["lines"]:
        assert line["target_shares"] == int(line["target_shares"])
        assert line["target_shares"] * line["close"] <= line["target"] * 3_000_000 + 1e-6


def test_bars_from_yfinance_use_a_recorded_response(runs, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FASTRL_DATA_CACHE", str(tmp_path / "cache"))
    calls: list[str] = []

    def download(ticker, **kwargs):  # the recorded response of yfinance.download
        calls.append(ticker)
        return yahoo_frame(ticker.removesuffix(".NS"))

    monkeypatch.setitem(sys.modules, "yfinance", types.SimpleNamespace(download=download))
    recorded_last = yahoo_frame("BPCL").index[-1].date()
    pin_clock(monkeypatch, f"{recorded_last} 18:00")  # the evening the response was recorded
    run_dir = runs["daily"]
    out = tmp_path / "yf.json"
    assert signal_main([str(run_dir), "--bars", "yfinance", "--out", str(out)]) == 0
    assert calls == ["BPCL.NS"]
    cached = tmp_path / "cache" / "daily" / "BPCL.csv"
    assert cached.is_file()
    # the same bars from the cache file give the same signal: one loader for both
    assert signal_main([str(run_dir), "--bars", str(cached), "--out",
                        str(tmp_path / "file.json")]) == 0
    from_yahoo, from_file = (json.loads(p.read_text()) for p in (out, tmp_path / "file.json"))
    assert from_yahoo["lines"] == from_file["lines"]
    assert signal_main([str(run_dir), "--bars", "yfinance"]) == 0
    assert calls == ["BPCL.NS", "BPCL.NS"]  # every call refreshes the newest session
    journal = tmp_path / "yf.db"
    last = from_yahoo["session"]
    code = paper_main([str(run_dir), "--bars", "yfinance", "--from", "2012-12-20", "--to", last,
                       "--journal", str(journal), "--quiet"])
    assert code == 0, capsys.readouterr().err
    sessions = Journal.open(str(journal)).rows("sessions")
    assert sessions and sessions[-1]["session"] == last


def test_a_positions_file_with_another_symbol_is_refused(runs, tmp_path, capsys):
    held = tmp_path / "positions.csv"
    held.write_text("symbol,shares\nBPCL,10\nHPCL,5\n")
    out = tmp_path / "signal.json"
    code = signal_main([str(runs["daily"]), "--bars", "bundled", "--positions", str(held),
                        "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and str(held) in err and "row 2" in err and "HPCL" in err, err
    assert not out.exists()


def test_a_daily_signal_prints_dates(runs, tmp_path, capsys):
    code = signal_main([str(runs["daily"]), "--bars", "bundled", "--asof", "2022-11-09"])
    printed = capsys.readouterr().out
    assert code == 0 and "decided at the 2022-11-09 close" in printed, printed
    assert "00:00:00" not in printed


def test_a_stale_feed_is_refused_by_default_and_asof_moves_the_clock(runs, tmp_path, capsys,
                                                                      monkeypatch):
    pin_clock(monkeypatch, "2022-11-14 20:00")  # two sessions after the bundled bars end
    out = tmp_path / "signal.json"
    code = signal_main([str(runs["daily"]), "--bars", "bundled", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "stale bar" in err, err
    assert "2022-11-09" in err and "expected session 2022-11-14" in err, err
    assert not out.exists()
    result = signal(runs["daily"], tmp_path, capsys, "--asof", BUNDLED_LAST)
    assert result["session"] == BUNDLED_LAST


def test_the_exchange_calendar_sets_the_expected_session(runs, tmp_path, capsys, monkeypatch):
    # 2022-11-08 (Guru Nanak Jayanti) is an NSE/BSE holiday: the session before it is 11-07
    result = signal(runs["daily"], tmp_path, capsys, "--asof", "2022-11-08")
    assert result["session"] == "2022-11-07"
    # mid-session, today's daily bar is not a close yet: the decision is at the last close
    pin_clock(monkeypatch, f"{BUNDLED_LAST} 12:00")
    result = signal(runs["daily"], tmp_path, capsys)
    assert result["session"] == "2022-11-07" and result["decided_at"] == "2022-11-07"
    journal = tmp_path / "to-holiday.db"
    code = paper_main([str(runs["daily"]), "--bars", "bundled", "--from", "2022-11-03",
                       "--to", "2022-11-08", "--journal", str(journal), "--quiet"])
    assert code == 0, capsys.readouterr().err
    assert Journal.open(str(journal)).rows("sessions")[-1]["session"] == "2022-11-07"


@pytest.mark.parametrize(("level", "held_exposure"), [(0, 0.3), (1, 0.7)])
def test_a_held_position_on_the_target_level_still_trades_to_the_target(
        runs, tmp_path, capsys, monkeypatch, level, held_exposure):
    """886 shares at about 30% exposure map to the level 0 the agent observes; a target of 0
    sells all 886 (and at about 70%, a target of 1 buys the rest), never "order 0"."""
    from fastrl.markets.single.live import SingleLiveEnv

    monkeypatch.setattr(SingleLiveEnv, "decide", lambda self: [level])  # the policy's level index
    held = 886
    first = signal(runs["discrete"], tmp_path, capsys, "--asof", BUNDLED_LAST)
    price = first["lines"][0]["close"]
    capital = held * price / held_exposure
    positions = tmp_path / "positions.csv"
    positions.write_text(f"symbol,shares\nBPCL,{held}\n")
    result = signal(runs["discrete"], tmp_path, capsys, "--asof", BUNDLED_LAST, "--positions",
                    str(positions), "--capital", str(capital), name="held.json")
    line = result["lines"][0]
    target = (0.0, 1.0)[level]
    assert line["shares_held"] == held and line["target"] == target
    assert line["exposure_held"] == pytest.approx(held_exposure)
    want = int(target * capital / price)  # whole shares the target asks for
    assert line["target_shares"] == want and line["order_shares"] == want - held
    assert line["order_shares"] != 0


def test_paper_trades_only_sessions_closed_by_the_clock(runs, tmp_path, capsys, monkeypatch):
    """Mid-session the bar of today is not a close: paper trading journals up to the last
    closed session, with or without --to today, and the next call after the close trades
    today."""
    pin_clock(monkeypatch, f"{BUNDLED_LAST} 12:00")
    for name, extra in (("default", ()), ("to-today", ("--to", BUNDLED_LAST))):
        journal = tmp_path / f"{name}.db"
        code = paper_main([str(runs["daily"]), "--bars", "bundled", "--from", "2022-11-03",
                           "--journal", str(journal), "--quiet", *extra])
        err = capsys.readouterr().err
        assert code == 0 and "stale" not in err, err
        sessions = Journal.open(str(journal)).rows("sessions")
        assert sessions[-1]["session"] == "2022-11-07", name  # 11-08 is a holiday
    pin_clock(monkeypatch, f"{BUNDLED_LAST} 15:31")
    code = paper_main([str(runs["daily"]), "--bars", "bundled", "--from", "2022-11-03",
                       "--journal", str(journal), "--quiet"])
    assert code == 0, capsys.readouterr().err
    assert Journal.open(str(journal)).rows("sessions")[-1]["session"] == BUNDLED_LAST


def test_paper_leaves_a_half_finished_intraday_session(tmp_path, capsys, monkeypatch):
    run_dir = train_run("intraday", tmp_path)
    start = first_session(backtest(run_dir))  # 2024-06-26; the bars end 2024-06-28 15:25
    pin_clock(monkeypatch, "2024-06-28 11:00")
    journal = tmp_path / "intraday.db"
    code = paper_main([str(run_dir), "--bars", "bundled", "--from", start, "--journal",
                       str(journal), "--quiet"])
    err = capsys.readouterr().err
    assert code == 0 and "stale" not in err, err
    opened = Journal.open(str(journal))
    assert opened.rows("sessions")[-1]["session"] == "2024-06-27"
    assert max(row["marked_at"] for row in opened.rows("steps")) < "2024-06-28"


def test_a_portfolio_target_of_0_keeps_a_holding_under_the_trade_band(runs, tmp_path, capsys,
                                                                        monkeypatch):
    """A target of 0 sells every held share, except in portfolio runs where the order is
    under trade_band x equity: the simulator sends no such order, nor does the signal (and
    the --positions help says so)."""
    import dataclasses

    from fastrl.cli.signal import build_parser
    from fastrl.live.run import LiveRun
    from fastrl.markets.portfolio.live import PortfolioLiveEnv

    config = LiveRun.env_config
    monkeypatch.setattr(LiveRun, "env_config",
                        lambda self: dataclasses.replace(config(self), trade_band=0.05))
    monkeypatch.setattr(PortfolioLiveEnv, "targets", lambda self, actions: [0.0] * len(actions))
    positions = tmp_path / "positions.csv"
    positions.write_text("symbol,shares\nBPCL,10\nINFY,1000\n")
    result = signal(runs["portfolio"], tmp_path, capsys, "--positions", str(positions),
                    "--capital", "3000000")
    lines = {line["symbol"]: line for line in result["lines"]}
    assert lines["BPCL"]["close"] * 10 < 0.05 * 3_000_000 < lines["INFY"]["close"] * 1000
    assert lines["BPCL"]["order_shares"] == 0 and lines["BPCL"]["target_shares"] == 10
    assert lines["INFY"]["order_shares"] == -1000 and lines["INFY"]["target_shares"] == 0
    help_text = " ".join(build_parser().format_help().split())
    assert "in portfolio runs, unless the order is under trade_band" in help_text
