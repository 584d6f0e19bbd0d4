"""Walk-forward: windows never see their traded days, carry stitches windows into one
record, resume and workers change nothing, and bad input exits 2 naming the problem."""

from __future__ import annotations

import dataclasses
import json
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from fastrl.config import build_config
from fastrl.data.loaders import load_bars_report
from fastrl.data.splits import build_market_from_bars
from fastrl.markets.single.backtest import Holding, evaluation_config, run_agent
from fastrl.stats import holm
from fastrl.walkforward import plan as plan_module
from fastrl.walkforward import run as run_module
from fastrl.walkforward.analysis import analyse, benjamini_hochberg
from fastrl.walkforward.plan import (
    REWARD_HORIZON_BARS,
    WalkForwardSpec,
    min_embargo_days,
    plan_windows,
)
from fastrl.walkforward.run import run_walkforward, trade_market, train_window

TINY = {"data.symbols": ["BPCL", "HDFCLIFE"], "total_timesteps": 512, "num_envs": 8,
        "num_steps": 32, "minibatch_size": 128, "n_epochs": 2, "hidden_sizes": [16, 16],
        "device": "cpu", "torch_threads": 1}
SPEC = WalkForwardSpec(step=63, start="2022-01-03", val_days=40, min_train_days=120)


@pytest.fixture(scope="module")
def bars() -> dict[str, pd.DataFrame]:
    return dict(load_bars_report(["BPCL", "HDFCLIFE"], "1d", "bundled").bars)


@pytest.fixture(scope="module")
def config():
    return build_config("fast", None, TINY, [])


def test_windows_never_reach_their_traded_days(bars):
    windows = plan_windows(bars, SPEC)
    assert len(windows) >= 3
    calendar = plan_module.trading_calendar(bars)
    for window in windows:
        gap = calendar.searchsorted(pd.Timestamp(window.first_traded)) - \
            calendar.searchsorted(pd.Timestamp(window.last_seen))
        assert gap == min_embargo_days("1d") + 1  # embargo days lie strictly between
        assert window.last_seen < window.decision_day < window.first_traded
    # the default embargo is the reward's one-bar horizon: the decision day only
    assert min_embargo_days("1d") == min_embargo_days("5min") == 1
    for before, after in zip(windows, windows[1:], strict=False):
        assert before.last_traded == after.decision_day  # contiguous, no overlap
    # the held-out test days at the end, fastrl-train's test split, are never traded, and
    # the walk-forward trades up to the day before them
    test_start = pd.Timestamp(build_market_from_bars(bars, test_days=30).summary[
        "split_dates"]["test"])
    assert test_start == calendar[-30]
    assert windows[-1].last_traded == str(calendar[-31].date())
    through = plan_windows(bars, dataclasses.replace(SPEC, through_test=True))
    assert through[-1].last_traded > windows[-1].last_traded


@pytest.mark.parametrize("changes, message", [
    ({"step": 0}, "--step must be an integer >= 1"),
    ({"embargo": 0}, f"shorter than the reward's horizon ({REWARD_HORIZON_BARS} bar"),
    ({"start": "2018-03-01"}, "symbol HDFCLIFE has too little history"),
    ({"start": "2030-01-01"}, "after the last bar"),
])
def test_bad_specs_name_the_problem(bars, changes, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[")):
        plan_windows(bars, dataclasses.replace(SPEC, **changes))


def test_symbol_without_bars_in_a_window_is_refused(bars):
    window = plan_windows(bars, SPEC)[1]
    gappy = dict(bars)
    frame = bars["BPCL"]
    days = frame.index.normalize()
    gappy["BPCL"] = frame[(days < pd.Timestamp(window.first_traded))
                          | (days > pd.Timestamp(window.last_traded))]
    with pytest.raises(ValueError, match="symbol BPCL has no bars in window 1"):
        plan_windows(gappy, SPEC)


def test_late_listings_join_when_they_have_history(bars):
    spec = dataclasses.replace(SPEC, start="2018-01-01", late_listings="join")
    windows = plan_windows(bars, spec)
    assert windows[0].symbols == ("BPCL",)
    assert windows[-1].symbols == ("BPCL", "HDFCLIFE")


def _policy(obs: np.ndarray) -> np.ndarray:
    # long after an up bar: depends on the features and the carried position (obs[-3])
    return ((obs[:, 0] + 0.1 * obs[:, -3]) > 0).astype(np.int64)


def test_carried_windows_equal_one_continuous_backtest(bars, config):
    """A fixed policy traded window by window with the holding carried gives the same
    equity path as one backtest over the whole span: boundaries change nothing."""
    windows = plan_windows(bars, SPEC)
    market = run_module.train_market(bars, windows[0], config, SPEC)
    state = market.normaliser.state_dict()
    env_config = dataclasses.replace(evaluation_config(config.env), equity_floor=0.0)
    holdings: dict = {}
    stitched = {s: [] for s in windows[0].symbols}
    for k, window in enumerate(windows):
        block = trade_market(bars, window, config, state)
        runs = run_agent(_policy, block, env_config, liquidate=k == len(windows) - 1,
                         holdings=[holdings.get(s) for s in block.symbols])
        for symbol, backtest in zip(block.symbols, runs, strict=True):
            holdings[symbol] = Holding.after(backtest, holdings.get(symbol))
            stitched[symbol].append(backtest.equity[1:] / backtest.equity[:-1] - 1)
    whole = dataclasses.replace(windows[0], last_traded=windows[-1].last_traded)
    block = trade_market(bars, whole, config, state)
    for symbol, backtest in zip(block.symbols, run_agent(_policy, block, env_config),
                                strict=True):
        one = backtest.equity[1:] / backtest.equity[:-1] - 1
        np.testing.assert_allclose(np.concatenate(stitched[symbol]), one, rtol=0, atol=1e-12)
        assert backtest.fills.sum() > 4  # the policy trades, across boundaries too


def test_no_window_sees_a_bar_at_or_after_its_first_traded_day(bars, config, monkeypatch):
    from fastrl.markets.single.env import TradingVecEnv

    seen: list[tuple[int, pd.Timestamp]] = []
    current = {"window": -1}
    original_market = run_module.train_market
    original_init = TradingVecEnv.__init__

    def recording_market(bars_, window, *args, **kwargs):
        current["window"] = window.index
        return original_market(bars_, window, *args, **kwargs)

    def recording_init(self, market, *args, **kwargs):
        seen.append((current["window"], pd.Timestamp(np.max(market.timestamps))))
        original_init(self, market, *args, **kwargs)

    monkeypatch.setattr(run_module, "train_market", recording_market)
    monkeypatch.setattr(TradingVecEnv, "__init__", recording_init)
    windows = plan_windows(bars, SPEC)
    for window in windows[:2]:
        train_window(json.loads(json.dumps(_values(config))), window,
                     plan_module.window_bars(bars, window, "train"), SPEC.resolved("1d"),
                     name="fast", seed_index=0)
        current["window"] = -1
    by_window = {}
    for k, newest in seen:
        by_window.setdefault(k, []).append(newest)
    assert set(by_window) == {0, 1}
    for k, newest in by_window.items():
        assert len(newest) >= 2  # the training env and the validation backtests
        assert max(newest) <= pd.Timestamp(windows[k].last_seen) + pd.Timedelta(hours=23)
        assert max(newest) < pd.Timestamp(windows[k].first_traded)


def _values(config):
    from fastrl.config import config_to_dict

    return config_to_dict(config)


def test_later_bars_do_not_change_a_windows_policy(bars, config):
    """The proof of the embargo: every bar after ``last_seen`` (at the default embargo the
    decision day and everything traded) can change without changing the policy by a bit,
    and the window still trains and validates on ``last_seen``, the newest bar it may."""
    window = plan_windows(bars, SPEC)[1]
    calendar = plan_module.trading_calendar(bars)
    # the bars changed start on the decision day: nothing before it is held back
    assert calendar[calendar.searchsorted(pd.Timestamp(window.last_seen)) + 1] == \
        pd.Timestamp(window.decision_day)
    changed = {}
    for symbol, frame in bars.items():
        frame = frame.copy()
        later = frame.index.normalize() > pd.Timestamp(window.last_seen)
        frame.loc[later, ["open", "high", "low", "close"]] *= 1.5
        changed[symbol] = frame
    spec = SPEC.resolved("1d")
    market = run_module.train_market(bars, window, config, spec)
    assert pd.Timestamp(market.val.timestamps.max()) == pd.Timestamp(window.last_seen)
    # train_window gets every bar and must cut them itself
    policies = [train_window(_values(config), window, source, spec,
                             name="fast", seed_index=0).policy
                for source in (bars, changed)]
    for key, value in policies[0]["network"].items():
        assert torch.equal(value, policies[1]["network"][key]), key


def test_train_window_trains_on_all_its_days(bars, config, monkeypatch):
    """--train-window N: the window's bars reach far enough back for the features' warm-up,
    so the N days from train_start to last_seen are all trained or validated on."""
    spec = dataclasses.replace(SPEC, train_window=200)
    counted: dict[str, int] = {}

    class Stop(Exception):
        pass

    def counting(*, window, bars, spec, **kwargs):
        market = run_module.train_market(bars, window, config, spec)
        for symbol in window.symbols:
            counted[symbol] = sum(market.summary["days"][split][symbol]
                                  for split in ("train", "val"))
        raise Stop

    monkeypatch.setattr(run_module, "train_window", counting)
    with pytest.raises(Stop):  # the first window, through run_walkforward's own hand-off
        run_walkforward({"fast": config}, spec, bars=bars, engine="pool")
    window = plan_windows(bars, spec)[0]
    calendar = plan_module.trading_calendar(bars)
    span = calendar[(calendar >= pd.Timestamp(window.train_start))
                    & (calendar <= pd.Timestamp(window.last_seen))]
    assert len(span) == 200
    for symbol, frame in bars.items():
        own = frame.index.normalize()
        assert counted[symbol] == int(((own >= span[0]) & (own <= span[-1])).sum()) == 200


def test_every_symbol_validates_from_the_windows_val_start(bars, config):
    """A symbol with days missing inside a window's validation span validates on the
    window's calendar days like the others, from the ``val_start`` windows.csv records, not
    on its own last ``val_days`` bars (which would reach further back)."""
    window = plan_windows(bars, SPEC)[0]
    gappy = {**bars}
    days = gappy["BPCL"].index.normalize()
    inside = days[(days > pd.Timestamp(window.val_start))
                  & (days <= pd.Timestamp(window.last_seen))]
    gappy["BPCL"] = gappy["BPCL"].loc[~days.isin(inside[5:9])]  # 4 days gone mid-validation
    market = run_module.train_market(gappy, window, config, SPEC)
    for s in range(len(market.val.symbols)):
        rows = market.val.segment(s)
        stamps = pd.DatetimeIndex(market.val.timestamps[rows])[market.val.meta["context_rows"]:]
        assert stamps[0].normalize() <= pd.Timestamp(window.val_start) < stamps[1].normalize()
        assert stamps[-1].normalize() == pd.Timestamp(window.last_seen)


def test_a_missing_bar_on_a_decision_day_keeps_the_move(bars, monkeypatch):
    """BPCL has no bar on a window's decision day (HDFCLIFE does): the move from its last
    close before it to its next close is still in the record, for the agent (a policy that
    is always long) and for buy-and-hold, so each compounds to the price ratio."""
    config = build_config("fast", None, {**TINY, "env.cost": "zero"}, [])
    decision = pd.Timestamp(plan_windows(bars, SPEC)[1].decision_day)
    gappy = {**bars, "BPCL": bars["BPCL"].drop(index=decision)}
    windows = plan_windows(gappy, SPEC)
    assert pd.Timestamp(windows[1].decision_day) == decision  # HDFCLIFE traded that day
    long = list(config.env.position_levels).index(1.0)
    state = run_module.train_market(gappy, windows[0], config, SPEC).normaliser.state_dict()

    class AlwaysLong:
        feature_normaliser = state

        def __call__(self, obs: np.ndarray) -> np.ndarray:
            return np.full(len(obs), long, dtype=np.int64)

    monkeypatch.setattr(run_module, "build_agent", lambda config, policy: AlwaysLong())
    record = run_module.trade_record(config, gappy, windows, [{}] * len(windows))
    frame = gappy["BPCL"]
    traded = frame[(frame.index > pd.Timestamp(windows[0].decision_day))
                   & (frame.index <= pd.Timestamp(windows[-1].last_traded))]
    rows = record[record["symbol"] == "BPCL"]
    assert list(rows["time"]) == list(traded.index)  # every bar, the one after the gap too
    ratio = traded["close"].iloc[-1] / traded["open"].iloc[0]  # bought at the first fill
    for column in ("agent_return", "bh_return"):
        assert np.prod(1.0 + rows[column].to_numpy()) == pytest.approx(ratio, rel=1e-4)


def test_resume_and_workers_give_the_same_record(bars, config, tmp_path):
    configs = {"fast": config}
    whole = run_walkforward(configs, SPEC, bars=bars)

    class Stop(Exception):
        pass

    lines = []

    def stop_after_first(line: str) -> None:
        lines.append(line)
        if len(lines) == 1:
            raise Stop

    with pytest.raises(Stop):
        run_walkforward(configs, SPEC, bars=bars, run_dir=tmp_path, progress=stop_after_first)
    assert len(list((tmp_path / "windows").rglob("window_*.pt"))) == 1
    resumed_lines: list[str] = []
    resumed = run_walkforward(configs, SPEC, bars=bars, run_dir=tmp_path,
                              progress=resumed_lines.append)
    assert resumed_lines[0].startswith("resuming: 1 of")
    pd.testing.assert_frame_equal(resumed.record(), whole.record(), check_exact=True)
    parallel = run_walkforward(configs, SPEC, bars=bars, workers=2)
    pd.testing.assert_frame_equal(parallel.record(), whole.record(), check_exact=True)
    record = whole.record()
    assert set(record["window"]) == set(range(len(whole.windows)))
    analysis = analyse(record, "1d")
    assert analysis["pooled"]["days"] == record["time"].nunique()
    assert "years out of sample" in analysis["verdict"]


QUICK = {**TINY, "num_envs": 4, "n_epochs": 1}


def _drop_day(frame: pd.DataFrame, day: str) -> pd.DataFrame:
    return frame[frame.index.normalize() != pd.Timestamp(day)]


@pytest.mark.parametrize("case", ["daily", "5min", "portfolio 5min"])
def test_every_bar_is_traded_once_and_none_before_start(case):
    """The stitched record holds each bar after the first decision exactly once (no session
    traded by two windows, no bar skipped at a boundary), and nothing before --start."""
    freq = "1d" if case == "daily" else "5min"
    symbols = ["BPCL", "HDFCLIFE"] if case == "daily" else ["BPCL", "INFY"]
    bars = dict(load_bars_report(symbols, freq, "bundled").bars)
    if case == "daily":
        spec = WalkForwardSpec(step=40, start="2022-06-01", val_days=20, min_train_days=60)
    else:
        spec = WalkForwardSpec(step=3, start="2024-06-14", val_days=2, min_train_days=3,
                               test_days=2)
    # a symbol without a bar on a decision day trades from its previous bar
    decision_day = plan_windows(bars, spec, freq)[1].decision_day
    bars[symbols[1]] = _drop_day(bars[symbols[1]], decision_day)
    config = build_config("fast", None, {**QUICK, "data.symbols": symbols, "data.freq": freq,
                                         "portfolio.enabled": case.startswith("portfolio")}, [])
    run = run_walkforward({"fast": config}, spec, bars=bars)
    record = run.record()
    assert not record.duplicated(["symbol", "time"]).any()
    first, last = pd.Timestamp(spec.start), pd.Timestamp(run.windows[-1].last_traded)
    assert record["time"].min() >= first
    for symbol in (symbols if not case.startswith("portfolio") else ["PORTFOLIO"]):
        frames = bars.values() if symbol == "PORTFOLIO" else [bars[symbol]]
        index = pd.DatetimeIndex(sorted(set().union(*(f.index for f in frames))))
        days = index.normalize()
        expected = index[(days >= first) & (days <= last)]
        got = pd.DatetimeIndex(record.loc[record["symbol"] == symbol, "time"])
        assert got.equals(expected), symbol


def test_multiple_testing_adjustments():
    p = np.array([0.01, 0.04, 0.03, 0.20])
    np.testing.assert_allclose(holm(p), [0.04, 0.09, 0.09, 0.20])
    np.testing.assert_allclose(benjamini_hochberg(p), [0.04, 0.16 / 3, 0.16 / 3, 0.20])


@pytest.mark.parametrize("argv, message", [
    (["--step", "0"], "--step must be an integer >= 1"),
    (["--embargo", "0"], "shorter than the reward's horizon"),
    (["--start", "2005-03-01"], "too little history"),
    (["--train-window", "week"], "--train-window must be"),
    (["--set", "env.slippage_bps=-1"], "config key 'env.slippage_bps' must be >= 0"),
    (["--threads", "0"], "--threads must be >= 1, got 0"),
    (["--seeds", "0"], "--seeds must be >= 1, got 0"),
    (["--workers", "0"], "--workers must be >= 1, got 0"),
    (["--warm-start", "--workers", "2"], "--warm-start trains each window from the one before"),
])
def test_cli_bad_input_exits_2(argv, message, tmp_path, capsys):
    from fastrl.cli.walkforward import main

    code = main(["--symbols", "BPCL", "HDFCLIFE", "--run-dir", str(tmp_path / "run"), *argv])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # nothing written


def test_cli_runs_and_resumes(tmp_path, capsys):
    from fastrl.cli.walkforward import main

    run_dir = tmp_path / "run"
    argv = ["--symbols", "BPCL", "HDFCLIFE", "--start", "2022-04-01", "--val-days", "40",
            "--min-train-days", "120", "--timesteps", "512", "--run-dir", str(run_dir),
            "--set", "num_envs=8", "num_steps=32", "minibatch_size=128", "n_epochs=2",
            "hidden_sizes=[16,16]", "device=cpu"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "Verdict:" in out and "years out of sample" in out
    for name in ("report.md", "report.html", "report.json", "oos_returns.csv", "windows.csv",
                 "equity.png", "rolling_sharpe.png", "drawdown.png"):
        assert (run_dir / name).is_file(), name
    record = pd.read_csv(run_dir / "oos_returns.csv")
    assert {"agent_return", "position", "cost", "window", "bh_return"} <= set(record.columns)
    windows = pd.read_csv(run_dir / "windows.csv")
    assert {"first_traded", "val_sharpe", "chosen_update", "seconds"} <= set(windows.columns)
    assert main(["--resume", str(run_dir)]) == 0
    assert "resuming: " in capsys.readouterr().out
    assert main(["--resume", str(run_dir), "--step", "5"]) == 2


def _files(folder) -> dict[str, float]:
    return {str(p): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def test_cli_resume_refuses_changed_config_or_bars_and_needs_no_config_file(
        bars, tmp_path, capsys, monkeypatch):
    """--resume trains and trades on the inputs the run started with: an edited config file
    or changed bars exit 2 naming what changed, writing nothing; the saved configs stand in
    for a config file that is gone, whatever the working directory."""
    from fastrl.cli import walkforward as cli
    from fastrl.cli.walkforward import main

    # the report is test_cli_runs_and_resumes's business: here only what trains and trades
    monkeypatch.setattr("fastrl.walkforward.report.write_walkforward_report",
                        lambda run, folder: {})
    monkeypatch.setattr(cli, "_print_summary", lambda payload: None)
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    data = work / "bars"
    for folder in (work, data, elsewhere):
        folder.mkdir()
    frame = bars["BPCL"].copy()
    frame.index.name = "date"
    frame.to_csv(data / "BPCL.csv")
    config_file = work / "mine.yaml"
    config_file.write_text("hidden_sizes: [16, 16]\nenv:\n  cost: nse_delivery\n")
    monkeypatch.chdir(work)
    run_dir = tmp_path / "run"
    argv = ["--symbols", "BPCL", "--data", "bars", "--config", "mine.yaml", "--start",
            "2022-06-01", "--val-days", "40", "--min-train-days", "120", "--timesteps", "512",
            "--workers", "1", "--run-dir", str(run_dir), "--set", "num_envs=8", "num_steps=32",
            "minibatch_size=128", "n_epochs=1", "device=cpu"]
    monkeypatch.setattr(sys, "argv", ["fastrl-walkforward", *argv])
    assert main(argv) == 0
    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", ["fastrl-walkforward", "--resume", str(run_dir)])

    config_file.write_text("hidden_sizes: [16, 16]\nenv:\n  cost: bps\n")
    before = _files(run_dir)
    assert main(["--resume", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert "config mine: env.cost \"nse_delivery\" -> \"bps\"" in err, err
    assert len(err.strip().splitlines()) == 1
    assert _files(run_dir) == before

    config_file.write_text("hidden_sizes: [16, 16]\nenv:\n  cost: nse_delivery\n")
    changed = frame.copy()
    changed.iloc[-5, [changed.columns.get_loc(c) for c in ("open", "high", "low", "close")]] *= 1.01
    changed.to_csv(data / "BPCL.csv")
    assert main(["--resume", str(run_dir)]) == 2
    assert "the bars of BPCL changed" in capsys.readouterr().err
    assert _files(run_dir) == before

    frame.to_csv(data / "BPCL.csv")
    config_file.unlink()
    monkeypatch.chdir(elsewhere)
    assert main(["--resume", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "resuming: " in out and "already trained" in out


def test_portfolio_windows_carry_and_equal_one_continuous_backtest(config):
    """The portfolio protocol: the same carried-holding identity, then a tiny run."""
    from fastrl.markets.portfolio import portfolio_env_config
    from fastrl.markets.portfolio.backtest import evaluation_config as portfolio_evaluation
    from fastrl.markets.portfolio.backtest import run_agent as run_portfolio

    symbols = ["BPCL", "INFY", "TCS"]
    bars = dict(load_bars_report(symbols, "1d", "bundled").bars)
    portfolio = build_config("fast", None, {**TINY, "data.symbols": symbols,
                                            "portfolio.enabled": True}, [])
    windows = plan_windows(bars, SPEC)
    state = run_module.train_market(bars, windows[0], portfolio, SPEC).normaliser.state_dict()
    env_config = dataclasses.replace(portfolio_evaluation(portfolio_env_config(portfolio)),
                                     equity_floor=0.0)

    def rotate(obs: np.ndarray) -> np.ndarray:  # weights from the features and the holding
        score = obs[:, :3] + 0.2 * obs[:, -4:-1]
        return np.exp(score) / np.exp(score).sum(axis=1, keepdims=True) * 0.9

    holding, stitched = None, []
    for k, window in enumerate(windows):
        panel = trade_market(bars, window, portfolio, state)
        backtest = run_portfolio(rotate, panel, env_config, holding=holding,
                                 liquidate=k == len(windows) - 1)
        holding = backtest.holding
        stitched.append(backtest.equity[1:] / backtest.equity[:-1] - 1)
    whole = dataclasses.replace(windows[0], last_traded=windows[-1].last_traded)
    one = run_portfolio(rotate, trade_market(bars, whole, portfolio, state), env_config)
    np.testing.assert_allclose(np.concatenate(stitched), one.returns, rtol=0, atol=1e-12)
    run = run_walkforward({"fast": portfolio}, SPEC, bars=bars)
    record = run.record()
    assert set(record["symbol"]) == {"PORTFOLIO"}
    assert len(record) == sum(w.days for w in run.windows)
    assert "equal weight bought and held" in analyse(record, "1d")["verdict"]


def test_cli_symbol_without_bars_in_a_window_exits_2(bars, tmp_path, capsys):
    from fastrl.cli.walkforward import main

    folder = tmp_path / "bars"
    folder.mkdir()
    for symbol, frame in bars.items():
        days = frame.index.normalize()
        if symbol == "BPCL":  # no bars from April to June 2022
            frame = frame[(days < pd.Timestamp("2022-03-25")) | (days > pd.Timestamp("2022-07-15"))]
        out = frame.copy()
        out.index = out.index.tz_localize(None).normalize() if out.index.tz else out.index
        out.index.name = "date"
        out.to_csv(folder / f"{symbol}.csv")
    code = main(["--symbols", "BPCL", "HDFCLIFE", "--data", str(folder), "--start", "2022-01-03",
                 "--val-days", "40", "--min-train-days", "120", "--run-dir",
                 str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "symbol BPCL has no bars in window 1" in err
    assert not (tmp_path / "run").exists()


def test_cost_sensitivity_and_regimes_on_a_known_record():
    from fastrl.walkforward.analysis import cost_sensitivity, pooled, regimes

    rng = np.random.default_rng(0)
    days = pd.bdate_range("2015-01-01", periods=3 * 252)
    bh = rng.normal(0.0003, 0.01, days.shape[0])
    cost = np.full(days.shape[0], 0.0002)  # the agent pays 2 bp a day, buy-and-hold nothing
    agent = bh + 0.0004 - cost  # an edge of 4 bp a day before costs
    record = pd.DataFrame({"time": days, "symbol": "X", "agent_return": agent,
                           "bh_return": bh, "cost_frac": cost, "bh_cost_frac": 0.0})
    pool = pooled(record)
    costs = cost_sensitivity(pool, "1d")
    assert costs["breakeven_multiple"] == pytest.approx(2.0)  # 4 bp edge / 2 bp costs
    at = {row["multiple"]: row for row in costs["rows"]}
    assert at[0.0]["active_annual_mean"] == pytest.approx(0.0004 * 252)
    assert at[3.0]["active_annual_mean"] == pytest.approx(-0.0002 * 252)
    found = regimes(pool, "1d")
    assert [row["regime"] for row in found["years"]] == ["2015", "2016", "2017"]
    assert sum(row["days"] for row in found["direction"]) == len(days)
    assert [row["regime"] for row in found["volatility"]] == [
        "low volatility", "middle volatility", "high volatility"]


def test_compare_states_one_verdict_on_one_measure():
    """--compare: the p-value, the bound and the verdict all come from the mean daily
    difference, so they cannot disagree (before, a Sharpe-bootstrap p of 0.06 said "beats"
    beside a mean-difference interval of [-5.2%, +6.7%])."""
    from fastrl.walkforward.analysis import compare

    days = pd.bdate_range("2020-01-01", periods=120)
    base = np.random.default_rng(0).normal(0.0003, 0.01, days.shape[0])

    def record(agent):
        return pd.DataFrame({"time": days, "symbol": "X", "agent_return": agent,
                             "bh_return": base, "cost_frac": 0.0, "bh_cost_frac": 0.0})

    claims = 0
    for seed in range(30):
        rng = np.random.default_rng(seed + 1)
        # a mostly flat config against an always-long one, with a small edge or none
        held = (rng.random(days.shape[0]) < 0.3).astype(float)
        other = held * base + rng.normal(0.0015 * (seed % 3), 0.002, days.shape[0])
        (row,) = compare({"base": record(base), "other": record(other)}, "1d")
        diff = other - base
        assert row["mean_diff_annual"] == pytest.approx(np.mean(diff) * 252)
        beats = row["p_value"] <= 0.1
        assert beats == (row["mean_diff_low"] > 0) == row["verdict"].startswith("other beats")
        assert f"{100 * np.mean(diff):+.3f}% a day" in row["verdict"]
        assert "mean_diff_high" not in row and "p_beats" not in row
        claims += beats
    assert 0 < claims < 30  # both kinds of verdict were checked


def test_a_config_key_added_since_the_run_started_at_its_default_is_no_change():
    from fastrl.config import build_config, config_to_dict
    from fastrl.walkforward.inputs import config_fingerprint, input_changes

    def inputs(values):
        return {"configs": {"fast": values},
                "fingerprints": {"configs": {"fast": config_fingerprint(values)}, "bars": {}},
                "spec": {}, "windows": [], "warm_start": False}

    now = json.loads(json.dumps(config_to_dict(build_config("fast"))))
    now.pop("rules")
    old = json.loads(json.dumps(now))
    del old["patience"]  # as if the key did not exist when the run started
    del old["env"]["slippage_bps"]
    assert input_changes(inputs(old), inputs(now)) == []
    # a key the run predates, set away from its default now, does change the windows
    now["patience"] = 3
    changes = input_changes(inputs(old), inputs(now))
    assert changes == ["config fast: patience 10 -> 3"]
