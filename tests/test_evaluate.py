"""Backtests use test rows only, baselines go through the simulator's costs, tables add up."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest

pytest.importorskip("fastrl._core")

from fastrl.costs import bps  # noqa: E402
from fastrl.data.block import MarketBlock  # noqa: E402
from fastrl.env_config import EnvConfig  # noqa: E402
from fastrl.evaluate import (  # noqa: E402
    COMBINED,
    EvaluationError,
    baseline_backtest,
    evaluate_agent,
    evaluation_config,
    find_checkpoint,
)
from fastrl.markets.base import Result  # noqa: E402

WINDOW = 4
FLAT, LONG = 0, 1  # the default cost (nse_delivery) is long/flat: levels (0, 1)


def make_market(
    lengths: tuple[int, ...] = (40, 30),
    context_rows: int = WINDOW - 1,
    drift: float = 0.0,
    seed: int = 0,
    timestamps: bool = True,
) -> MarketBlock:
    rng = np.random.default_rng(seed)
    segments = []
    for k, n in enumerate(lengths):
        close = 100.0 * np.cumprod(1.0 + drift + rng.normal(0.0, 0.01, n))
        segment = {
            "symbol": f"SYM{k}",
            "open": close * (1.0 + rng.normal(0.0, 0.003, n)),
            "close": close,
            "features": rng.normal(size=(n, 3)),
        }
        if timestamps:
            days = np.datetime64("2024-01-01") + np.arange(n).astype("timedelta64[D]")
            segment["timestamps"] = days.astype("datetime64[ns]")
        segments.append(segment)
    return MarketBlock.from_segments(segments, meta={"context_rows": context_rows})


def constant(level: int):
    return lambda obs: np.full(obs.shape[0], level, dtype=np.int64)


def test_evaluation_config_keeps_costs_and_execution():
    train = EnvConfig(window=WINDOW, cost="nse_intraday", execution="close", episode_length=64)
    evaluation = evaluation_config(train)
    assert evaluation.random_start is False
    assert evaluation.episode_length == 0
    assert evaluation.segment_assignment == "round_robin"
    assert evaluation.cost == "nse_intraday" and evaluation.execution == "close"
    assert train.random_start is True  # the training config is not modified


@pytest.mark.parametrize("execution", ["next_open", "close"])
def test_every_fill_and_mark_is_a_test_row(execution):
    market = make_market()
    config = EnvConfig(window=WINDOW, execution=execution, cost="nse_delivery")
    result = evaluate_agent(lambda obs: (obs[:, 0] > 0).astype(np.int64) * LONG, market, config)
    for s, symbol in enumerate(market.symbols):
        seg = market.segment(s)
        first_test = seg.start + market.meta["context_rows"]
        for strategy in ("agent", "buy_and_hold", "flat"):
            backtest = result.get(symbol, strategy)
            assert backtest.start_bar == seg.start + WINDOW - 1
            # one step per test bar after the first decision, through the segment's last row
            np.testing.assert_array_equal(
                backtest.bars, np.arange(backtest.start_bar + 1, seg.stop)
            )
            assert backtest.fill_bars.min() >= first_test
            assert backtest.bars.min() >= first_test and backtest.bars.max() == seg.stop - 1
            offset = 1 if execution == "next_open" else 0
            np.testing.assert_array_equal(backtest.fill_bars, backtest.decision_bars + offset)
            prices = market.open if execution == "next_open" else market.close
            np.testing.assert_array_equal(backtest.fill_prices, prices[backtest.fill_bars])


def test_context_rows_are_never_traded():
    # the env's first decision is at row window-1; with 'close' execution it would fill on a
    # context row if the test split carried a whole window of context
    market = make_market(context_rows=WINDOW)
    config = EnvConfig(window=WINDOW, execution="close")
    with pytest.raises(EvaluationError, match="outside the test rows"):
        evaluate_agent(constant(LONG), market, config)
    # next-open execution fills at the first test row's open: allowed
    evaluate_agent(constant(LONG), market, dataclasses.replace(config, execution="next_open"))


@pytest.mark.parametrize("cost", ["nse_delivery", "nse_intraday", "bps"])
def test_buy_and_hold_is_price_ratio_minus_two_costs(cost):
    market = make_market(drift=0.002)
    config = EnvConfig(window=WINDOW, cost=cost)
    model = config.cost_model()
    for s in range(market.num_segments):
        seg = market.segment(s)
        backtest = baseline_backtest(market, s, config, "buy_and_hold")
        first_fill = market.open[seg.start + WINDOW]  # decision at row window-1, next open
        last_close = market.close[seg.stop - 1]
        e0 = config.initial_cash
        # Whole shares under the NSE presets: the uninvested remainder stays in cash.
        shares = np.trunc(e0 / first_fill) if config.integer_shares else e0 / first_fill
        buy_cost = float(model.order_cost(True, shares * first_fill))
        sell_cost = float(model.order_cost(False, shares * last_close))
        final = e0 - shares * first_fill + shares * last_close - buy_cost - sell_cost
        assert backtest.equity[-1] == pytest.approx(final, rel=1e-12)
        assert backtest.metrics.costs_paid == pytest.approx(buy_cost + sell_cost, rel=1e-12)
        assert backtest.metrics.num_trades == 2  # the entry and the final sale
        assert backtest.metrics.num_round_trips == 1
        assert buy_cost > 0 and sell_cost > 0


def test_buy_and_hold_with_close_execution_enters_at_the_decision_close():
    market = make_market()
    config = EnvConfig(window=WINDOW, cost=bps(10.0), execution="close")
    backtest = baseline_backtest(market, 0, config, "buy_and_hold")
    ratio = market.close[market.segment(0).stop - 1] / market.close[WINDOW - 1]
    e0 = config.initial_cash
    assert backtest.equity[-1] == pytest.approx(e0 * ratio - 1e-3 * e0 - 1e-3 * e0 * ratio)


def test_always_long_agent_matches_buy_and_hold_exactly():
    # the simulator (agent) and the baseline's own accounting agree to the last cent
    market = make_market()
    result = evaluate_agent(constant(LONG), market, EnvConfig(window=WINDOW))
    for symbol in market.symbols:
        agent = result.get(symbol, "agent")
        hold = result.get(symbol, "buy_and_hold")
        np.testing.assert_allclose(agent.equity, hold.equity, rtol=1e-12)
        np.testing.assert_allclose(agent.step_costs, hold.step_costs, rtol=1e-12, atol=1e-9)
        assert agent.metrics.num_trades == 2 and agent.liquidation_cost > 0


def test_flat_agent_matches_flat_baseline():
    market = make_market()
    result = evaluate_agent(constant(FLAT), market, EnvConfig(window=WINDOW))
    for symbol in market.symbols:
        agent = result.get(symbol, "agent").metrics
        assert agent.total_return == 0.0 and agent.num_trades == 0 and agent.costs_paid == 0.0
        assert result.get(symbol, "flat").metrics.final_equity == 1_000_000.0


def test_agent_costs_and_trades_match_the_simulator():
    market = make_market()
    # flips between short, flat and long on a feature sign, so it trades often (shorts under
    # delivery need a stock-lending rate; its nightly fee is one more simulator cost)
    config = EnvConfig(window=WINDOW, cost="nse_delivery", short_borrow_rate=0.05)
    result = evaluate_agent(lambda obs: (np.sign(obs[:, 1]) + 1).astype(np.int64), market, config)
    from fastrl.markets.single.env import TradingVecEnv

    env = TradingVecEnv(market, market.num_segments, evaluation_config(config))
    obs, _ = env.reset(seed=0)
    episode_costs = np.zeros(market.num_segments)
    episode_equity = np.zeros(market.num_segments)
    episode_trades = np.zeros(market.num_segments, dtype=np.int64)
    finished = np.zeros(market.num_segments, dtype=bool)
    while not finished.all():
        obs, _, term, trunc, info = env.step((np.sign(obs[:, 1]) + 1).astype(np.int64))
        newly = (term | trunc) & ~finished
        episode_costs[newly] = info["episode"]["costs"][newly]
        episode_equity[newly] = info["episode"]["equity"][newly]
        episode_trades[newly] = info["episode"]["trades"][newly]
        finished |= newly
    for s, symbol in enumerate(market.symbols):
        agent = result.get(symbol, "agent")
        assert agent.metrics.num_trades == episode_trades[s] + (agent.positions[-1] != 0)
        assert agent.fills.sum() == episode_trades[s]
        assert agent.step_costs.sum() == pytest.approx(
            episode_costs[s] + agent.liquidation_cost, rel=1e-12
        )
        assert agent.equity[-1] == pytest.approx(
            episode_equity[s] - agent.liquidation_cost, rel=1e-12
        )
        assert agent.metrics.num_trades > 4


def test_continuous_policy_is_clipped_into_range():
    market = make_market()
    config = EnvConfig(window=WINDOW, action="continuous", min_pos=0.0, max_pos=1.0)
    result = evaluate_agent(lambda obs: np.full((obs.shape[0], 1), 1.7), market, config)
    agent = result.get("SYM0", "agent")
    assert np.all(agent.positions == 1.0)
    np.testing.assert_allclose(agent.equity, result.get("SYM0", "buy_and_hold").equity)


def test_floor_ends_the_agent_and_it_stays_flat():
    market = make_market(drift=-0.02)
    config = EnvConfig(window=WINDOW, equity_floor=0.9)
    result = evaluate_agent(constant(LONG), market, config)
    agent = result.get("SYM0", "agent")
    assert agent.terminated_step is not None
    hold = result.get("SYM0", "buy_and_hold")
    assert agent.num_steps == hold.num_steps
    after = agent.terminated_step + 1
    assert np.all(agent.positions[after:] == 0.0)
    assert np.all(agent.equity[after + 1 :] == agent.equity[-1])
    assert agent.equity[-1] <= 0.9 * config.initial_cash
    assert agent.liquidation_cost > 0


def test_combined_is_the_sum_of_equal_capital_segments():
    market = make_market(lengths=(30, 30))
    result = evaluate_agent(constant(LONG), market, EnvConfig(window=WINDOW))
    combined = result.metrics(COMBINED, "agent")
    parts = [result.get(s, "agent") for s in market.symbols]
    assert combined.final_equity == pytest.approx(sum(p.equity[-1] for p in parts))
    assert combined.start_equity == 2 * 1_000_000.0
    assert combined.costs_paid == pytest.approx(sum(p.metrics.costs_paid for p in parts))
    assert combined.num_trades == 4 and combined.num_round_trips == 2
    table = result.table()
    assert table.loc[(COMBINED, "agent"), "final_equity"] == pytest.approx(combined.final_equity)
    assert list(table.index.get_level_values(0).unique()) == ["SYM0", "SYM1", COMBINED]


def test_eval_result_follows_the_result_protocol():
    market = make_market()
    result = evaluate_agent(constant(LONG), market, EnvConfig(window=WINDOW))
    assert isinstance(result, Result)
    assert result.metrics(strategy="agent") is result.metrics() is result.combined["agent"]
    assert result.metrics(strategy="buy_and_hold") is result.metrics(COMBINED, "buy_and_hold")
    assert result.uncertainty().verdict == result.verdict
    assert set(result.steps_frame()["strategy"]) == {"agent", "buy_and_hold", "flat"}


def test_combined_aligns_segments_of_different_lengths_by_time():
    market = make_market(lengths=(40, 25))
    result = evaluate_agent(constant(LONG), market, EnvConfig(window=WINDOW))
    combined = result.metrics(COMBINED, "buy_and_hold")
    parts = [result.get(s, "buy_and_hold") for s in market.symbols]
    assert combined.final_equity == pytest.approx(sum(p.equity[-1] for p in parts))
    assert combined.bars == parts[0].num_steps  # the shorter one lies inside the longer
    untimed = evaluate_agent(
        constant(LONG), make_market((40, 25), timestamps=False), EnvConfig(window=WINDOW)
    )
    assert untimed.metrics(COMBINED, "agent").bars == 36


def test_bad_policy_output_is_named():
    market = make_market()
    with pytest.raises(EvaluationError, match="shape"):
        evaluate_agent(lambda obs: np.zeros(5, dtype=np.int64), market, EnvConfig(window=WINDOW))
    with pytest.raises(EvaluationError, match="outside"):
        evaluate_agent(constant(3), market, EnvConfig(window=WINDOW))
    with pytest.raises(TypeError, match="policy"):
        evaluate_agent(42, market, EnvConfig(window=WINDOW))


def test_run_folder_without_checkpoints(tmp_path):
    with pytest.raises(EvaluationError, match="no checkpoint"):
        find_checkpoint(tmp_path)
    with pytest.raises(EvaluationError, match="no such run folder"):
        find_checkpoint(tmp_path / "missing")
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.pt").write_bytes(b"x")
    (tmp_path / "checkpoints" / "final.pt").write_bytes(b"x")
    assert find_checkpoint(tmp_path) == (tmp_path / "checkpoints" / "final.pt", tmp_path)
    assert find_checkpoint(tmp_path / "checkpoints" / "last.pt")[1] == tmp_path


# --- a real (tiny) training run: evaluate_run and the fastrl-eval command -----------------


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory):
    from fastrl.config import DataConfig, TrainConfig
    from fastrl.ppo.trainer import train

    run_dir = tmp_path_factory.mktemp("run") / "tiny"
    config = TrainConfig(
        env=EnvConfig(window=8),
        data=DataConfig(symbols=("BPCL", "HDFCLIFE"), test_days=20, val_days=5),
        total_timesteps=128,
        num_envs=4,
        num_steps=16,
        n_epochs=1,
        minibatch_size=64,
        hidden_sizes=(16,),
        device="cpu",
        torch_threads=1,
        lr_warmup_steps=0,
    )
    train(config, run_dir=run_dir)
    return run_dir


def _bundled_tail(folder, rows: int, drop: tuple[str, ...] = ()):
    import pandas as pd

    from fastrl.data.loaders import BUNDLED_DIR

    folder.mkdir(parents=True, exist_ok=True)
    frame = pd.read_csv(BUNDLED_DIR / "daily" / "BPCL.csv.gz").tail(rows)
    frame.drop(columns=list(drop)).to_csv(folder / "BPCL.csv", index=False)
    return folder


def test_evaluate_run_on_held_out_days_and_the_report_the_cli_writes(trained_run):
    from fastrl.cli.evaluate import write_run_report
    from fastrl.evaluate import evaluate_run, load_run

    run = load_run(trained_run)
    result = evaluate_run(run)
    assert result.info["checkpoint"].endswith(("best.pt", "final.pt"))
    assert not (trained_run / "report.md").exists()  # evaluation writes nothing
    assert write_run_report(run.market, result) == trained_run
    for name in ("report.md", "report.html", "report.json", "equity.png", "training.png",
                 "test_returns.csv", "test_trades.csv"):
        assert (trained_run / name).is_file(), name
    assert f"**Verdict: {result.verdict}.**" in (trained_run / "report.md").read_text()
    from fastrl.data import build_market

    training = build_market(["BPCL", "HDFCLIFE"], test_days=20, val_days=5, window=8)
    for symbol in ("BPCL", "HDFCLIFE"):
        first, last = result.info["test_bars"][symbol]
        assert first[:10] == training.summary["date_ranges"]["test"][symbol][0][:10]
        assert last[:10] == training.summary["date_ranges"]["test"][symbol][1][:10]
        # decide on the first test day, trade the rest (BPCL's bars end 4 days earlier)
        days = training.summary["rows"]["test"][symbol]
        assert result.get(symbol, "agent").num_steps == days - 1
    assert training.summary["rows"]["test"]["HDFCLIFE"] == 20
    # one symbol alone is tested on the days it was held out on beside the other
    alone = evaluate_run(trained_run, symbols=["BPCL"])
    assert alone.info["test_bars"]["BPCL"] == result.info["test_bars"]["BPCL"]


def test_fastrl_eval_command(trained_run, tmp_path, capsys):
    from rich.console import Console

    from fastrl.cli.evaluate import main, run

    console = Console(file=io.StringIO(), width=200)
    out = tmp_path / "report"
    assert (
        run(
            [str(trained_run), "--symbols", "BPCL", "--test-days", "10", "--out", str(out)],
            console,
        )
        == 0
    )
    printed = console.file.getvalue()
    assert "BPCL" in printed and "buy & hold" in printed and "Sharpe" in printed
    assert "Sharpe std. error" in printed and "Mean return over buy & hold" in printed
    # the last 10 days of the calendar hold 6 of BPCL's (its bars end 4 days before
    # HDFCLIFE's): 5 daily returns, below stats.MIN_BARS, no interval and no verdict
    assert "verdict: too few bars (n=5) to say anything" in printed and "n/a" in printed
    assert "HDFCLIFE" not in printed
    assert (out / "report.html").is_file()

    newer = _bundled_tail(tmp_path / "newer", 300)
    assert (
        run(
            [
                str(trained_run),
                "--data",
                str(newer),
                "--symbols",
                "BPCL",
                "--test-days",
                "15",
                "--no-report",
            ],
            console,
        )
        == 0
    )
    capsys.readouterr()

    def fails(args: list[str], message: str) -> None:
        assert main(args) == 2
        err = capsys.readouterr().err
        assert err.startswith("fastrl-eval: error: ") and err.count("\n") == 1, err
        assert message in err, err

    empty = tmp_path / "empty"
    empty.mkdir()
    fails([str(empty)], "has no checkpoint")
    fails([str(tmp_path / "missing")], "no such run folder")
    fails([str(trained_run), "--test-days", "21"], "exceeds the 20 test days held out")
    fails([str(trained_run), "--test-days", "0"], "--test-days must be >= 1")
    fails([str(trained_run), "--symbols", "TCS"], "trained on symbols ['BPCL', 'HDFCLIFE']")
    fails(
        [str(trained_run), "--data", str(newer), "--symbols", "BPCL", "--test-days", "5000"],
        "cannot hold test_days=5000",
    )
    fails(
        [str(trained_run), "--data", str(newer), "--symbols", "BPCL", "--test-days", "40"],
        "trained or was validated on bars",
    )
    no_volume = _bundled_tail(tmp_path / "novolume", 300, drop=("volume",))
    fails(
        [str(trained_run), "--data", str(no_volume), "--symbols", "BPCL", "--test-days", "5"],
        "normaliser_state was fitted on features",
    )
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    fails([str(broken)], "broken.pt")


def test_evaluate_run_on_a_synthetic_market_run(tmp_path):
    from fastrl.config import DataConfig, TrainConfig
    from fastrl.evaluate import evaluate_run
    from fastrl.markets import market_for
    from fastrl.ppo.trainer import train

    config = TrainConfig(
        env=EnvConfig(window=8),
        data=DataConfig(source="synthetic", synthetic_bars=300, test_days=25, val_days=10),
        total_timesteps=64,
        num_envs=4,
        num_steps=16,
        n_epochs=1,
        minibatch_size=64,
        hidden_sizes=(8,),
        device="cpu",
        torch_threads=1,
        lr_warmup_steps=0,
    )
    train(config, run_dir=tmp_path)
    result = evaluate_run(tmp_path)
    test = market_for(config).load().test
    assert result.symbols == list(test.symbols)
    for s, symbol in enumerate(test.symbols):
        assert result.get(symbol, "agent").bars[-1] == test.offsets[s + 1] - 1
    with pytest.raises(EvaluationError, match="its own 25 test days"):
        evaluate_run(tmp_path, test_days=10)
