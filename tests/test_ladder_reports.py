"""The ladder in fastrl-train's and fastrl-eval's backtests: every rung trades the agent's
own test days (history before them read, never traded), buy-and-hold's and equal weight's
rungs are their baselines bit for bit, the p-values are Holm-adjusted, the report and the
JSON show the ladder, and --rungs is validated."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("fastrl._core")

SINGLE_RUNGS = ["buy_and_hold", "voltarget", "momentum", "ma10", "ma200"]
PORTFOLIO_RUNGS = ["ew_hold", "ew_monthly", "inverse_vol", "min_variance", "xs_momentum"]
TINY = ["--timesteps", "128", "--num-envs", "4", "--device", "cpu", "--set",
        "hidden_sizes=[16]", "num_steps=16", "minibatch_size=64", "n_epochs=1",
        "env.window=8", "torch_threads=1"]


@pytest.fixture(scope="module")
def single_run(tmp_path_factory: pytest.TempPathFactory):
    from fastrl.cli.train import main

    run = tmp_path_factory.mktemp("ladder") / "single"
    # fast: an agent that trades (an untrained anchored one is buy-and-hold, bar for bar)
    code = main(["--symbols", "BPCL", "HDFCLIFE", "--test-days", "20", "--val-days", "5",
                 "--preset", "fast", "--run-dir", str(run), "--rungs", "momentum", "ma10",
                 *TINY])
    assert code == 0
    return run


@pytest.fixture(scope="module")
def portfolio_run(tmp_path_factory: pytest.TempPathFactory):
    from fastrl.cli.train import main

    run = tmp_path_factory.mktemp("ladder") / "portfolio"
    code = main(["--portfolio", "--symbols", "BPCL", "HDFCLIFE", "INFY", "--test-days", "30",
                 "--val-days", "10", "--run-dir", str(run), "--rungs", "none", *TINY])
    assert code == 0
    return run


def test_holm_adjusts_step_down_and_leaves_untested_out():
    from fastrl.stats import holm

    adjusted = holm(np.array([0.01, 0.04, 0.03, np.nan]))
    # m = 3 tested: 3 x 0.01, then max(0.03, 2 x 0.03), then max(0.06, 1 x 0.04)
    np.testing.assert_allclose(adjusted[:3], [0.03, 0.06, 0.06])
    assert np.isnan(adjusted[3])
    assert holm(np.array([0.5, 0.9])).tolist() == [1.0, 1.0]


def test_train_report_shows_the_chosen_rungs_on_the_agents_days(single_run):
    report = json.loads((single_run / "report.json").read_text())
    assert report["rungs"] == ["momentum", "ma10"]
    for symbol in ("BPCL", "HDFCLIFE", "ALL"):
        assert set(report["metrics"][symbol]) >= {"agent", "buy_and_hold", "momentum", "ma10"}
        ladder = report["ladder"][symbol]
        assert [r["rung"] for r in ladder["rungs"]] == ["momentum", "ma10"]
        assert " beats " in ladder["line"]
        assert "2 traded rungs" in ladder["line"]
    md = (single_run / "report.md").read_text()
    assert "### Ladder: BPCL" in md and "| rung | return | Sharpe ± SE |" in md
    assert "Ladder: the agent (all symbols, equal capital) beats " in md
    assert "| agent - rung a year [90%] | P(agent > rung) |" in md


def test_every_rung_trades_the_agents_test_days_and_holm_is_applied(single_run):
    from fastrl import stats
    from fastrl.evaluate import evaluate_run, load_run

    run = load_run(single_run)
    result = evaluate_run(run)  # default: every single-symbol rule
    assert result.rungs == SINGLE_RUNGS
    for symbol in result.symbols:
        agent = result.get(symbol, "agent")
        for rung in SINGLE_RUNGS:
            b = result.get(symbol, rung)
            assert b.start_bar == agent.start_bar
            np.testing.assert_array_equal(b.timestamps, agent.timestamps)
            np.testing.assert_array_equal(b.bars, agent.bars)
            np.testing.assert_array_equal(b.fill_bars, agent.fill_bars)
            np.testing.assert_array_equal(b.price, agent.price)
    for symbol in [*result.symbols, "ALL"]:
        ladder = result.ladder(symbol)
        # voltarget at buy-and-hold's volatility: a paper row, shown and never tested
        (paper,) = [r for r in ladder.rungs if r.paper]
        assert paper.rung == "voltarget @ B&H vol" and np.isnan(paper.p_holm)
        volt = next(r for r in ladder.rungs if r.rung == "voltarget")
        assert paper.sharpe.sharpe == pytest.approx(volt.sharpe.sharpe)
        bh, vt = result.returns(symbol, "buy_and_hold"), result.returns(symbol, "voltarget")
        scaled = vt * np.std(bh, ddof=1) / np.std(vt, ddof=1)
        assert paper.vs.mean_active == pytest.approx(
            np.mean(result.returns(symbol, "agent") - scaled), rel=1e-9, abs=1e-15)
        tested = [r for r in ladder.rungs if not r.paper]
        assert [r.rung for r in tested] == SINGLE_RUNGS
        raw = np.array([r.vs.p_value for r in tested])
        np.testing.assert_array_equal([r.p_holm for r in tested], stats.holm(raw))
        assert all(r.p_holm >= r.vs.p_value for r in ladder.rungs if np.isfinite(r.p_holm))
        for r in ladder.rungs:  # the one-sided 90% lower bound, above 0 iff p < 0.10
            if np.isfinite(r.vs.p_value):
                assert r.lower_bound(0.9) == pytest.approx(r.vs.lower_bound(0.9) * 252)
                assert (r.lower_bound(0.9) > 0) == (r.vs.p_value < 0.1)
        direct = stats.prob_agent_beats(result.returns(symbol, "agent"),
                                        result.returns(symbol, "momentum"), result.freq)
        assert ladder.rungs[2].vs.p_value == direct.p_value


def test_rules_read_the_history_before_the_test_days(single_run):
    """The test block holds only window - 1 = 7 context rows, too few for voltarget's 60-bar
    volatility; its rung reads the bars before them: its first exposure is the target over
    the trailing volatility at the last month end, computed here with pandas from the
    bundled bars."""
    import math

    import pandas as pd

    from fastrl.data.loaders import load_bars
    from fastrl.evaluate import evaluate_run, load_run

    run = load_run(single_run)
    result = evaluate_run(run, rungs=["voltarget"])
    params = run.agent.config.rules.params("voltarget")
    for symbol in result.symbols:
        close = load_bars([symbol], "1d")[symbol]["close"]
        months = close.index.to_period("M")
        month_end = np.flatnonzero(months[:-1] != months[1:])  # a month's last bar
        b = result.get(symbol, "voltarget")
        first = int(np.searchsorted(close.index, pd.Timestamp(b.timestamps[0])))
        decided = month_end[month_end <= first][-1]  # held from the last month end
        returns = close.pct_change().iloc[decided - params.window + 1:decided + 1]
        vol = returns.std(ddof=1) * math.sqrt(252)
        expected = min(params.max_exposure, params.target_vol / vol)
        assert 0 < expected < 1
        assert b.positions[0] == pytest.approx(expected, rel=1e-9)


def test_buy_and_hold_rung_is_the_baseline_bit_for_bit(single_run):
    from fastrl.evaluate import evaluate_run, load_run
    from fastrl.rules import backtest_single, rule_from_config

    run = load_run(single_run)
    result = evaluate_run(run, rungs=["buy_and_hold", "momentum"])
    block, _ = run.market.test_block(run.agent)
    history, starts = run.market.rung_history(run.agent, block)
    rule = rule_from_config("buy_and_hold", run.agent.config)
    for b in backtest_single([rule], history, run.market.env_config, starts):
        baseline = result.get(b.symbol, "buy_and_hold")
        for name in ("equity", "positions", "step_costs", "fill_prices", "timestamps"):
            np.testing.assert_array_equal(getattr(b, name), getattr(baseline, name), name)
        assert b.liquidation_cost == baseline.liquidation_cost
    assert result.ladder().rungs[0].total_return == result.metrics("ALL",
                                                                    "buy_and_hold").total_return


def test_portfolio_rungs_trade_the_agents_rows_and_ew_hold_is_its_baseline(portfolio_run):
    from fastrl.evaluate import evaluate_run, load_run
    from fastrl.rules import backtest_portfolio, rule_from_config

    report = json.loads((portfolio_run / "report.json").read_text())
    assert "ladder" not in report and "rungs" not in report  # --rungs none
    run = load_run(portfolio_run)
    result = evaluate_run(run)
    assert result.rungs == PORTFOLIO_RUNGS
    agent = result.get("agent")
    for rung in PORTFOLIO_RUNGS:
        b = result.get(rung)
        np.testing.assert_array_equal(b.timestamps, agent.timestamps)
        np.testing.assert_array_equal(b.decision_rows, agent.decision_rows)
        np.testing.assert_array_equal(b.fill_rows, agent.fill_rows)
    block, _ = run.market.test_block(run.agent)
    history, start = run.market.rung_history(run.agent, block)
    assert start > run.agent.config.env.window - 1  # earlier rows are history
    rules = [rule_from_config(name, run.agent.config) for name in ("ew_hold", "ew_monthly")]
    for b in backtest_portfolio(rules, history, run.market.env_config, start_row=start):
        baseline = result.get(b.strategy)
        for name in ("equity", "weights", "step_costs", "legs", "timestamps"):
            np.testing.assert_array_equal(getattr(b, name), getattr(baseline, name), name)
    ladder = result.ladder()
    assert [r.rung for r in ladder.rungs] == PORTFOLIO_RUNGS
    tables = run.market.tables(result)
    assert tables[-1].title == "ladder" and len(tables[-1].rows) == 5


@pytest.mark.parametrize(("argv", "message"), [
    (["--rungs", "nope"], "unknown rule 'nope' for a single run; known single rules: "
                          "buy_and_hold, voltarget, momentum, ma10, ma200"),
    (["--rungs", "ew_hold"], "unknown rule 'ew_hold' for a single run"),
    (["--rungs", "none", "momentum"], "'none' cannot be combined"),
    (["--portfolio", "--symbols", "BPCL", "INFY", "--rungs", "momentum"],
     "known portfolio rules: ew_hold, ew_monthly, inverse_vol, min_variance, xs_momentum"),
])
def test_bad_rungs_exit_2_before_training(argv, message, tmp_path, capsys):
    from fastrl.cli.train import main

    run = tmp_path / "run"
    assert main([*argv, "--run-dir", str(run), *TINY]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not run.exists()


def test_fastrl_eval_rungs_flag(single_run, tmp_path, capsys):
    from fastrl.cli.evaluate import main

    assert main([str(single_run), "--rungs", "bogus", "--no-report"]) == 2
    assert "known single rules" in capsys.readouterr().err
    out = tmp_path / "eval"
    assert main([str(single_run), "--rungs", "ma200", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "ladder:" in printed and "200-day MA" in printed
    assert json.loads((out / "report.json").read_text())["rungs"] == ["ma200"]


# ----------------------------------------------------------------------- the tuner's ladder


def test_tuner_ladder_on_the_confirmation_days():
    """The winner's confirmation runs against every single rule on the confirmation window:
    the rungs trade the runs' days, buy-and-hold's rung is the baseline, Holm is applied and
    the winner's record is the mean of its seeds'."""
    from types import SimpleNamespace

    from fastrl import stats
    from fastrl.config import build_config
    from fastrl.markets import market_for
    from fastrl.markets.single.backtest import evaluate_agent
    from fastrl.tune.ladder import confirmation_ladder, ladder_section

    config = build_config("fast", None, {"data.symbols": ["BPCL", "HDFCLIFE"],
                                         "data.test_days": 20, "data.val_days": 30,
                                         "env.window": 8}, [])
    market = market_for(config).load()
    levels = len(config.env.position_levels)

    def policy(level: int):
        return lambda obs: np.full(len(obs), level, dtype=np.int64)

    runs = [SimpleNamespace(agent=policy(0), seed=1000),
            SimpleNamespace(agent=policy(levels - 1), seed=1001)]
    out = confirmation_ladder(runs, config, market)
    assert [r["rung"] for r in out["rungs"]] == SINGLE_RUNGS and out["seeds"] == [1000, 1001]
    results = [evaluate_agent(run.agent, market.val, config.env) for run in runs]
    agent = np.mean([r.returns("ALL", "agent") for r in results], axis=0)
    assert out["bars"] == agent.shape[0]
    bh = results[0].returns("ALL", "buy_and_hold")
    first = out["rungs"][0]
    assert first["agent_vs_rung"]["p_value"] == stats.prob_agent_beats(
        agent, bh, "1d").p_value
    raw = np.array([r["agent_vs_rung"]["p_value"] for r in out["rungs"]], dtype=float)
    np.testing.assert_array_equal([r["p_holm"] for r in out["rungs"]], stats.holm(raw))
    assert out["dates"][0] == str(results[0].get("BPCL", "agent").timestamps[0])[:10]
    section = ladder_section({"ladder": out})
    assert section is not None and len(section.table.rows) == len(SINGLE_RUNGS)
    assert out["line"] in section.closing[0]
    assert ladder_section({}) is None


# ----------------------------------------------------------------------- one ladder table


def test_train_and_walkforward_tables_come_from_one_row_formatter():
    """fastrl-train's ladder rows and the walk-forward's are the same cells (the train table
    adds the return column; the walk-forward marks its benchmark and ranks the rows)."""
    import pandas as pd

    from fastrl.ladder import HEADER, LADDER_HEADER, ladder_of, ladder_table
    from fastrl.walkforward.ladder import ladder

    days = pd.bdate_range("2020-01-01", periods=300)
    rng = np.random.default_rng(5)
    market = 0.0004 + rng.normal(0.0, 0.01, days.shape[0])
    rungs = {"buy_and_hold": market, "ma10": market - 0.0005 + rng.normal(0, 0.003, 300),
             "momentum": market + rng.normal(0, 0.004, 300)}
    agent = market + 0.0006 + rng.normal(0, 0.003, 300)

    def record(returns: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame({"time": days, "symbol": "X", "agent_return": returns,
                             "bh_return": 0.0, "cost_frac": 0.0, "bh_cost_frac": 0.0})

    train = ladder_of(agent, {n: (r, float(np.prod(1 + r) - 1)) for n, r in rungs.items()},
                      "1d")
    walk = ladder("fast", record(agent), {n: record(r) for n, r in rungs.items()}, "1d",
                  "buy_and_hold")
    _, walk_rows = ladder_table(walk, rank=False)
    assert LADDER_HEADER[3:] == HEADER[2:] == ["agent - rung a year [90%]", "P(agent > rung)"]
    for train_row, walk_row, name in zip(train.table_rows(), walk_rows, rungs, strict=True):
        assert walk_row[0] == train_row[0] + (" (benchmark)" if name == "buy_and_hold" else "")
        assert train_row[2:] == walk_row[1:]
        assert train_row[1] == f"{100 * (np.prod(1 + rungs[name]) - 1):+.2f}%"
    assert train.line.replace("the agent", "fast", 1) == walk["verdict"]


def test_a_holm_p_capped_at_one_reads_as_no_claim_not_as_a_small_p():
    from fastrl.ladder import probability_cell

    assert probability_cell(0.5, 1.0) == "0.500 (Holm 0)"
    assert probability_cell(0.02, 0.06, mark="beaten") == "0.980 (Holm 0.940), beaten"
    assert probability_cell(1e-6, 3e-6) == "> 0.999 (Holm > 0.999)"


def test_the_ladders_level_is_the_verdicts():
    # fastrl.ladder keeps its own copy so that importing it does not load arch
    from fastrl import ladder, stats

    assert ladder.LEVEL == stats.DEFAULT_LEVEL
