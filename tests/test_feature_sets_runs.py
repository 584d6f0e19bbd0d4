"""The long feature sets end to end: fastrl-train records them, fastrl-signal and fastrl-paper
build the same features (train/serve parity), single-symbol and portfolio."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from fastrl.cli.paper import main as paper_main
from fastrl.cli.signal import main as signal_main
from fastrl.cli.train import main as train_main
from fastrl.features import feature_names
from fastrl.features_long import warmup_features
from fastrl.live.journal import Journal

pytest.importorskip("fastrl._core")

TINY = ["--num-envs", "8", "--set", "hidden_sizes=[16,16]", "num_steps=32",
        "minibatch_size=128", "n_epochs=1", "env.window=8", "torch_threads=1",
        "--device", "cpu", "--test-days", "10", "--val-days", "5"]
SINGLE_SETS = ("base", "momentum", "market")
PORTFOLIO_SETS = ("base", "momentum", "market", "xs_rank")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("feature-sets")
    single, portfolio = folder / "single", folder / "portfolio"
    code = train_main(["--symbols", "BPCL", "HDFCLIFE", "--timesteps", "4096",
                       "--set", "data.features=[base,momentum,market]", "env.action=continuous",
                       "--run-dir", str(single), *TINY])
    assert code == 0
    code = train_main(["--symbols", "BPCL", "INFY", "TCS", "--portfolio", "--timesteps", "1024",
                       "--set", "data.features=[base,momentum,market,xs_rank]",
                       "--run-dir", str(portfolio), *TINY])
    assert code == 0
    return {"single": single, "portfolio": portfolio}


@pytest.mark.parametrize(("kind", "sets"), [("single", SINGLE_SETS),
                                            ("portfolio", PORTFOLIO_SETS)])
def test_the_checkpoint_records_the_feature_sets(runs, kind, sets):
    from fastrl.live.run import open_run

    saved = json.loads((runs[kind] / "config.json").read_text())
    assert tuple(saved["data"]["features"]) == sets
    run = open_run(runs[kind])
    assert run.config.data.features == sets
    names = feature_names("1d", True, (), sets)
    assert run.normaliser_state["feature_names"] == names
    assert run.normaliser_state["warmup"] == warmup_features(names)


def _window_rows(block, s: int, day: pd.Timestamp, window: int) -> np.ndarray:
    """The ``window`` feature rows of segment ``s`` (a MarketBlock) up to ``day``."""
    rows = block.segment(s)
    stamps = np.asarray(block.timestamps)[rows]
    end = rows.start + int(np.searchsorted(stamps, day.to_datetime64(), side="right"))
    return block.features[end - window:end]


def test_the_live_observation_equals_the_backtests_on_the_same_day(runs):
    """Each test day: the observation window the live path builds from the bars up to that
    day (fastrl-signal's) holds the backtest's feature rows, bit for bit."""
    from fastrl.live.bars import load_live_bars
    from fastrl.live.decide import live_block
    from fastrl.live.run import open_run

    run = open_run(runs["single"])
    test, _ = run.market.test_block(run.agent)
    bars = load_live_bars(run, "bundled")
    window = run.window
    days = pd.DatetimeIndex(np.asarray(test.timestamps)).unique()
    for day in (days[window], days[len(days) // 2], days[-1]):
        live = live_block(run, bars, day, day)
        for s, symbol in enumerate(test.symbols):
            stamps = np.asarray(test.timestamps)[test.segment(s)]
            if day.to_datetime64() not in stamps:
                continue
            expected = _window_rows(test, s, day, window)
            assert np.array_equal(_window_rows(live, live.symbols.index(symbol), day, window),
                                  expected), (symbol, day)
            assert (expected[:, -8:] != 0).any()  # the market features are in the window


def test_signal_runs_on_both_checkpoints(runs, tmp_path, capsys):
    for kind, asof in (("single", "2022-11-09"), ("portfolio", "2022-11-09")):
        out = tmp_path / f"{kind}.json"
        code = signal_main([str(runs[kind]), "--bars", "bundled", "--asof", asof,
                            "--out", str(out)])
        assert code == 0, capsys.readouterr().err
        assert json.loads(out.read_text())["lines"]


def _paper(run_dir, journal, start: str, capsys, *extra: str) -> list[dict]:
    code = paper_main([str(run_dir), "--bars", "bundled", "--from", start, "--journal",
                       str(journal), "--quiet", *extra])
    assert code == 0, capsys.readouterr().err
    return Journal.open(str(journal)).rows("steps")


def _column(rows: list[dict], symbol: str, key: str) -> np.ndarray:
    return np.array([r[key] for r in rows if r["symbol"] == symbol], dtype=np.float64)


def test_paper_replays_equal_the_backtests(runs, tmp_path, capsys):
    """A paper account from the first test day trades as the backtest of the same days, bit
    for bit: both symbols of the pair (to BPCL's last bar, the pair's common last session)
    and the portfolio."""
    from fastrl.data.loaders import load_bars_report
    from fastrl.live.run import open_run
    from fastrl.markets.portfolio.backtest import run_agent as run_portfolio
    from fastrl.markets.single.backtest import run_agent as run_single

    run = open_run(runs["single"])
    last = "2022-11-09"  # BPCL's last bundled bar; HDFCLIFE goes on to 2022-11-15
    own, _ = run.market.test_block(run.agent)
    start = str(pd.Timestamp(own.timestamps[own.segment(0)][0]).date())  # BPCL's first
    rows = _paper(runs["single"], tmp_path / "single.db", start, capsys, "--to", last)
    bars = load_bars_report(["BPCL", "HDFCLIFE"], "1d", "bundled", "raise").bars
    end = pd.Timestamp(last) + pd.Timedelta(days=1)
    block = run.market.from_bars({s: f[f.index < end] for s, f in bars.items()}, val_days=0,
                                 normaliser_state=run.normaliser_state,
                                 test_start=pd.Timestamp(start)).test
    backtests = run_single(run.agent, block, run.config.env, liquidate=False)
    for symbol, bt in zip(block.symbols, backtests, strict=True):
        assert len(_column(rows, symbol, "equity")) == bt.num_steps > 0
        np.testing.assert_array_equal(_column(rows, symbol, "equity"), bt.equity[1:])
        np.testing.assert_array_equal(_column(rows, symbol, "position"), bt.positions)
        np.testing.assert_array_equal(_column(rows, symbol, "cost"), bt.step_costs)
    assert sum(int(bt.fills.sum()) for bt in backtests) >= 2  # the agent trades

    run = open_run(runs["portfolio"])
    panel, _ = run.market.test_block(run.agent)
    bt = run_portfolio(run.agent, panel, run.env_config(), liquidate=False)
    start = str(pd.Timestamp(bt.timestamps[0]).date())
    rows = _paper(runs["portfolio"], tmp_path / "portfolio.db", start, capsys)
    assert len(_column(rows, "PORTFOLIO", "equity")) == len(bt.equity) - 1
    np.testing.assert_array_equal(_column(rows, "PORTFOLIO", "equity"), bt.equity[1:])
    np.testing.assert_array_equal(_column(rows, "PORTFOLIO", "cost"), bt.step_costs)


def test_walk_forward_windows_build_the_long_features_as_the_whole_history_does():
    """A window's training market and traded block carry the sets; the traded rows' features
    are those of the whole bars (causal: the later bars change nothing), normalised with the
    window's normaliser."""
    from fastrl.config import build_config
    from fastrl.data.loaders import load_bars_report
    from fastrl.markets import market_for
    from fastrl.walkforward.plan import WalkForwardSpec, plan_windows
    from fastrl.walkforward.run import trade_market, train_market

    config = build_config("fast", None, {"data.symbols": ["BPCL", "HDFCLIFE"],
                                         "data.features": list(SINGLE_SETS),
                                         "env.window": 8}, [])
    bars = dict(load_bars_report(["BPCL", "HDFCLIFE"], "1d", "bundled").bars)
    spec = WalkForwardSpec(step=63, start="2022-01-03", val_days=40, min_train_days=120)
    window = plan_windows(bars, spec)[1]
    train = train_market(bars, window, config, spec)
    names = feature_names("1d", True, (), SINGLE_SETS)
    assert list(train.feature_names) == names
    state = train.normaliser.state_dict()
    traded = trade_market(bars, window, config, state)
    whole = market_for(config).from_bars(bars, val_days=0, normaliser_state=state,
                                         test_start=pd.Timestamp("2021-06-01")).test
    checked = 0
    for s, symbol in enumerate(traded.symbols):
        rows = traded.segment(s)
        stamps = np.asarray(traded.timestamps)[rows]
        other = whole.segment(whole.symbols.index(symbol))
        where = np.searchsorted(np.asarray(whole.timestamps)[other], stamps)
        assert np.array_equal(traded.features[rows], whole.features[other][where])
        checked += len(stamps)
    assert checked > 20


def test_evaluating_some_symbols_on_new_data_keeps_the_trained_universe(runs, tmp_path):
    """fastrl-eval --symbols HDFCLIFE --data FILE: the market features still read every
    trained symbol, so HDFCLIFE's rows are those of the evaluation of both."""
    from fastrl.live.run import open_run

    from live_runs import bundled_copy

    run = open_run(runs["single"])
    feed = bundled_copy(("BPCL", "HDFCLIFE"), tmp_path / "feed")
    both, _ = run.market.test_block(run.agent, test_days=10, data=feed)
    one, _ = run.market.test_block(run.agent, symbols=["HDFCLIFE"], test_days=10, data=feed)
    assert one.symbols == ("HDFCLIFE",)
    expected = both.features[both.segment(both.symbols.index("HDFCLIFE"))]
    assert np.array_equal(one.features[one.segment(0)], expected)


def _signal_code(run_dir, feed, capsys, asof: str = "2022-11-09") -> tuple[int, str]:
    code = signal_main([str(run_dir), "--bars", str(feed), "--asof", asof, "--out",
                        str(feed / "signal.json")])
    return code, capsys.readouterr().err


def test_a_feed_too_short_for_the_long_features_is_refused(runs, tmp_path, capsys):
    """With fewer bars than the long sets' warm-up before the decision, the live features
    would be 0 where the backtest had values: refused, naming the bars needed and held."""
    from fastrl.features_long import LONG_WARMUP_BARS

    from live_runs import bundled_copy

    need = LONG_WARMUP_BARS + 8 - 1  # the warm-up and the 8-bar observation window
    short = bundled_copy(("BPCL", "HDFCLIFE"), tmp_path / "short", through="2022-11-09",
                         rows=need)  # the decision bar and need - 1 bars before it
    code, err = _signal_code(runs["single"], short, capsys)
    assert code == 2
    assert f"has {need - 1} bars before 2022-11-09, they need {need}" in err
    assert "momentum" in err and len(err.strip().splitlines()) == 1
    enough = bundled_copy(("BPCL", "HDFCLIFE"), tmp_path / "enough", through="2022-11-09",
                          rows=need + 1)
    assert _signal_code(runs["single"], enough, capsys)[0] == 0


def test_the_gap_check_reaches_over_the_long_warm_up(runs, tmp_path, capsys):
    """A 50-weekday hole 200 bars before the decision is outside the base features' look-
    back but inside the long ones': refused for a run with long sets."""
    from live_runs import bundled_copy

    feed = bundled_copy(("BPCL", "HDFCLIFE"), tmp_path / "gap", through="2022-11-09")
    path = feed / "BPCL.csv"
    frame = pd.read_csv(path)
    end = len(frame) - 200
    frame.drop(index=frame.index[end - 50:end]).to_csv(path, index=False)
    code, err = _signal_code(runs["single"], feed, capsys)
    assert code == 2
    assert "gap longer than the feature look-back: BPCL" in err


def test_a_rolling_train_window_trains_with_the_long_features_defined():
    """--train-window N: the window keeps the long sets' warm-up before its train_start, so
    its first training row's long features are the whole history's (not the NaN -> 0 of a
    33-bar warm-up); a base-only config keeps the base warm-up as before."""
    from fastrl.config import build_config
    from fastrl.data.loaders import load_bars_report
    from fastrl.features import WARMUP_BARS
    from fastrl.features_long import LONG_WARMUP_BARS
    from fastrl.walkforward.plan import WalkForwardSpec, plan_windows
    from fastrl.walkforward.run import train_market, training_bars

    bars = dict(load_bars_report(["BPCL", "HDFCLIFE"], "1d", "bundled").bars)
    spec = WalkForwardSpec(step=63, start="2022-01-03", val_days=40, min_train_days=120,
                           train_window=250)
    window = plan_windows(bars, spec)[1]
    start = pd.Timestamp(window.train_start)
    for sets, warmup in ((("base",), WARMUP_BARS), (SINGLE_SETS, LONG_WARMUP_BARS)):
        kept = training_bars(bars, window, spec, sets)["BPCL"]
        assert int((kept.index < start).sum()) == warmup
    config = build_config("fast", None, {"data.symbols": ["BPCL", "HDFCLIFE"],
                                         "data.features": list(SINGLE_SETS),
                                         "env.window": 8}, [])
    train = train_market(bars, window, config, spec)
    names = list(train.feature_names)
    long_columns = [names.index(n) for n in ("mom_252", "macd_32_96", "rel_ret_252")]
    block = train.train
    rows = block.segment(block.symbols.index("BPCL"))
    assert pd.Timestamp(np.asarray(block.timestamps)[rows][0]) == start  # N days, no more
    assert np.all(block.features[rows][0, long_columns] != 0)
    portfolio = build_config("fast", None, {"data.symbols": ["BPCL", "INFY", "TCS"],
                                            "data.features": list(PORTFOLIO_SETS),
                                            "portfolio.enabled": True, "env.window": 8}, [])
    bars = dict(load_bars_report(["BPCL", "INFY", "TCS"], "1d", "bundled").bars)
    window = plan_windows(bars, spec)[1]
    panel = train_market(bars, window, portfolio, spec).train
    names = list(panel.feature_names)
    assert pd.Timestamp(panel.timestamps[0]) == pd.Timestamp(window.train_start)
    assert np.all(panel.features[0][:, [names.index("mom_252"), names.index("macd_32_96")]]
                  != 0)  # (a rank may be the mean, 0 once normalised)
