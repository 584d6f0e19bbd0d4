"""Walk-forward rungs: classical rules traded on the agent's days, the ladder table that opens
the report (Holm across the rungs), its verdict, and the refusals of --compare."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from fastrl.config import build_config
from fastrl.data.block import MarketBlock
from fastrl.data.loaders import load_bars_report
from fastrl.data.panel import build_panel_from_bars
from fastrl.ladder import ladder_note, ladder_of, ladder_table
from fastrl.markets import market_for
from fastrl.markets.portfolio.backtest import evaluation_config as portfolio_evaluation
from fastrl.markets.single.backtest import evaluation_config
from fastrl.rules import backtest_portfolio, backtest_single, rule_for
from fastrl.stats import holm
from fastrl.walkforward.ladder import ladder
from fastrl.walkforward.plan import WalkForwardSpec
from fastrl.walkforward.run import run_walkforward
from fastrl.walkforward.rungs import rung_records

TINY = {"data.symbols": ["BPCL", "HDFCLIFE"], "total_timesteps": 512, "num_envs": 8,
        "num_steps": 32, "minibatch_size": 128, "n_epochs": 1, "hidden_sizes": [16, 16],
        "device": "cpu", "torch_threads": 1}
SPEC = WalkForwardSpec(step=63, start="2022-01-03", val_days=40, min_train_days=120)
PORTFOLIO_SYMBOLS = ["BPCL", "INFY", "TCS"]
CLI_TINY = ["--start", "2022-04-01", "--val-days", "40", "--min-train-days", "120",
            "--timesteps", "512", "--workers", "1", "--set", "num_envs=8", "num_steps=32",
            "minibatch_size=128", "n_epochs=1", "hidden_sizes=[16,16]", "device=cpu"]


@pytest.fixture(scope="module")
def single_run():
    bars = dict(load_bars_report(["BPCL", "HDFCLIFE"], "1d", "bundled").bars)
    config = build_config("fast", None, TINY, [])
    run = run_walkforward({"fast": config}, SPEC, bars=bars, rungs=["momentum", "voltarget"])
    return run, bars, config


@pytest.fixture(scope="module")
def portfolio_run():
    bars = dict(load_bars_report(PORTFOLIO_SYMBOLS, "1d", "bundled").bars)
    config = build_config("fast", None, {**TINY, "data.symbols": PORTFOLIO_SYMBOLS,
                                         "portfolio.enabled": True}, [])
    run = run_walkforward({"fast": config}, SPEC, bars=bars,
                          rungs=["min_variance", "xs_momentum"])
    return run, bars, config


def _returns(frame: pd.DataFrame) -> np.ndarray:
    return frame["agent_return"].to_numpy()


def test_single_rungs_trade_the_agents_days_as_a_direct_backtest(single_run):
    """Each rung's record: the agent's rows, the buy_and_hold rung bit for bit the record's
    buy-and-hold, and every rung equal to backtest_single on each symbol's whole history
    from its first decision bar."""
    run, bars, config = single_run
    record = run.record()
    assert run.rungs == ["buy_and_hold", "momentum", "voltarget"]
    hold = run.rung_records[("fast", "buy_and_hold")]
    assert np.array_equal(_returns(hold), record["bh_return"].to_numpy())
    assert np.array_equal(hold["cost_frac"].to_numpy(), record["bh_cost_frac"].to_numpy())
    env_config = evaluation_config(config.env)
    decision = run.windows[0].decision_end
    for name in ("momentum", "voltarget"):
        rung = run.rung_records[("fast", name)]
        assert list(rung.columns) == list(record.columns)
        assert rung[["time", "symbol", "window"]].equals(record[["time", "symbol", "window"]])
        for symbol in ("BPCL", "HDFCLIFE"):
            frame = bars[symbol]
            frame = frame.loc[frame.index.normalize()
                              <= pd.Timestamp(run.windows[-1].last_traded)]
            block = MarketBlock.from_bars({symbol: frame}, "1d")
            start = int(np.searchsorted(frame.index, decision)) - 1
            (direct,) = backtest_single([rule_for(name)], block, env_config, [start])
            mine = rung[rung["symbol"] == symbol]
            np.testing.assert_array_equal(_returns(mine), direct.returns)
            np.testing.assert_array_equal(mine["position"].to_numpy(), direct.positions)
    momentum = run.rung_records[("fast", "momentum")]
    assert momentum["position"].nunique() > 1  # the rule traded: the check is not of cash


def test_rule_parameters_come_from_the_first_configs_rules_section(single_run):
    run, bars, config = single_run
    shorter = build_config("fast", None, TINY, ["rules.momentum.lookback=126"])
    record = run.record()
    default = run.rung_records[("fast", "momentum")]
    (mine,) = rung_records(config, shorter, bars, run.windows, record, ["momentum"]).values()
    assert not np.array_equal(_returns(mine), _returns(default))
    (again,) = rung_records(config, config, bars, run.windows, record, ["momentum"]).values()
    assert np.array_equal(_returns(again), _returns(default))


def test_portfolio_rungs_trade_the_agents_days_as_a_direct_backtest(portfolio_run):
    run, bars, config = portfolio_run
    record = run.record()
    assert run.rungs == ["ew_hold", "min_variance", "xs_momentum"]
    hold = run.rung_records[("fast", "ew_hold")]
    assert np.array_equal(_returns(hold), record["bh_return"].to_numpy())
    assert np.array_equal(hold["cost_frac"].to_numpy(), record["bh_cost_frac"].to_numpy())
    # the agent's own panel builder, every bar through the last traded day as history
    last = pd.Timestamp(run.windows[-1].last_traded)
    cut = {s: f.loc[f.index.normalize() <= last] for s, f in bars.items()}
    panel = build_panel_from_bars(cut, "1d", val_days=0, window=int(config.env.window),
                                  test_start=last + pd.Timedelta(days=1)).train
    start = int(np.searchsorted(panel.timestamps,
                                run.windows[0].decision_end.to_datetime64())) - 1
    env_config = portfolio_evaluation(market_for(config).env_config)
    direct = backtest_portfolio([rule_for("min_variance")], panel, env_config, start)[0]
    rung = run.rung_records[("fast", "min_variance")]
    assert rung[["time", "symbol"]].equals(record[["time", "symbol"]])
    np.testing.assert_array_equal(_returns(rung), direct.returns)


def _record(days: pd.DatetimeIndex, returns: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"time": days, "symbol": "X", "window": 0, "agent_return": returns,
                         "bh_return": 0.0, "cost_frac": 0.0, "bh_cost_frac": 0.0})


DAYS = pd.bdate_range("2015-01-01", periods=750)


def _noise(seed: int, scale: float = 0.01) -> np.ndarray:
    z = np.random.default_rng(seed).normal(0.0, 1.0, DAYS.shape[0])
    return scale * (z - z.mean()) / z.std(ddof=1)


def test_ladder_names_the_strongest_rung_beaten():
    """Agent = ma10 + a clear edge, momentum far stronger than both, buy-and-hold weak: the
    agent beats ma10 and buy-and-hold, and the verdict names ma10 (higher Sharpe)."""
    market = 0.0003 + _noise(1)
    rungs = {"buy_and_hold": market - 0.0004, "ma10": market + 0.0002,
             "momentum": market + 0.004}
    agent = rungs["ma10"] + 0.002 + _noise(2, 0.002)
    result = ladder("fast", _record(DAYS, agent),
                    {name: _record(DAYS, r) for name, r in rungs.items()}, "1d", "buy_and_hold")
    by_name = {row["rung"]: row for row in result["rungs"]}
    assert by_name["ma10"]["beaten"] and by_name["buy_and_hold"]["beaten"]
    assert not by_name["momentum"]["beaten"]
    assert result["strongest_beaten"] == "ma10"
    assert result["verdict"].startswith("fast beats 10-month MA, the strongest rung it beats")
    header, rows = ladder_table(result)
    assert header == ["rung", "pooled Sharpe ± SE", "agent - rung a year [90%]",
                      "P(agent > rung)"]
    # strongest first, the agent in its place
    assert [row[0] for row in rows] == ["TS momentum 12-1", "**fast** (the agent)",
                                        "10-month MA", "buy & hold (benchmark)"]


def test_ladder_adjusts_across_the_rungs_by_holm():
    """Three rungs each behind the agent at raw p < 0.10 but not after Holm: none beaten."""
    agent = 0.0003 + _noise(3)
    rungs = {}
    for k, name in enumerate(("buy_and_hold", "momentum", "ma10")):
        gap = _noise(10 + k, 0.01)
        # a mean gap at t = 1.6 on the i.i.d. SE: raw p about 0.06
        rungs[name] = agent - (gap + 1.6 * 0.01 / np.sqrt(DAYS.shape[0]))
    result = ladder("fast", _record(DAYS, agent),
                    {name: _record(DAYS, r) for name, r in rungs.items()}, "1d", "buy_and_hold")
    rows = result["rungs"]
    raw = np.array([row["p_value"] for row in rows])
    assert np.all(raw < 0.10)
    np.testing.assert_allclose([row["p_holm"] for row in rows], holm(raw))
    assert not any(row["beaten"] for row in rows)
    assert result["strongest_beaten"] is None
    assert result["verdict"].startswith("fast beats no rung of the ladder")


def test_voltarget_at_matched_volatility_is_a_paper_rung():
    market = 0.0004 + _noise(4, 0.02)
    voltarget = 0.5 * market
    result = ladder("fast", _record(DAYS, market),
                    {"buy_and_hold": _record(DAYS, market),
                     "voltarget": _record(DAYS, voltarget)}, "1d", "buy_and_hold")
    by_name = {row["rung"]: row for row in result["rungs"]}
    matched = by_name["voltarget @ B&H vol"]
    assert matched["paper"] and matched["label"] == "vol target @ B&H vol"
    assert matched["sharpe"]["sharpe"] == pytest.approx(by_name["voltarget"]["sharpe"]["sharpe"])
    assert matched["diff_annual"] == pytest.approx(0.0, abs=1e-12)  # scaled back to market
    assert by_name["voltarget"]["diff_annual"] == pytest.approx(0.5 * np.mean(market) * 252)


def test_the_paper_row_is_not_tested_nor_named_as_beaten():
    """voltarget is volatile with the highest Sharpe; scaled to buy-and-hold's volatility
    (the paper row) its mean falls below the agent's by far. The agent clearly beats the
    paper row and buy-and-hold, not voltarget: the paper row keeps its raw figures but is
    outside Holm's family (two traded rungs) and never beaten, so the strongest rung beaten
    is buy-and-hold."""
    bench = 0.0002 + _noise(20, 0.005)
    voltarget = 0.002 + _noise(21, 0.02)
    agent = 0.0012 + _noise(22, 0.003)
    result = ladder("fast", _record(DAYS, agent),
                    {"buy_and_hold": _record(DAYS, bench),
                     "voltarget": _record(DAYS, voltarget)}, "1d", "buy_and_hold")
    by_name = {row["rung"]: row for row in result["rungs"]}
    paper = by_name["voltarget @ B&H vol"]
    assert paper["p_value"] < 0.01  # its raw test says the agent is far ahead of it
    assert paper["p_holm"] is None and not paper["beaten"]
    assert paper["sharpe"]["sharpe"] > by_name["buy_and_hold"]["sharpe"]["sharpe"]
    traded = [by_name["buy_and_hold"]["p_value"], by_name["voltarget"]["p_value"]]
    np.testing.assert_allclose([by_name["buy_and_hold"]["p_holm"],
                                by_name["voltarget"]["p_holm"]], holm(np.array(traded)))
    assert result["strongest_beaten"] == "buy_and_hold"
    assert "1 of 2 traded rungs beaten after Holm" in result["verdict"]
    _, rows = ladder_table(result)
    row = next(r for r in rows if r[0] == "vol target @ B&H vol")
    assert row[3] == "not tested (paper leverage)"
    assert row[2].startswith(f"{100 * paper['diff_annual']:+.1f}% [")  # raw figures shown


def test_the_table_states_the_one_sided_bound_and_one_minus_p():
    """A rung behind the agent at one-sided 0.05 < p < 0.10: its lower bound (one-sided 90%)
    is above 0, as the raw claim says, and P(agent > rung) is 1 - p, raw and after Holm."""
    agent = 0.0003 + _noise(30)
    gap = _noise(31, 0.01)
    rung = agent - (gap + 1.55 * 0.01 / np.sqrt(DAYS.shape[0]))
    result = ladder("fast", _record(DAYS, agent),
                    {"buy_and_hold": _record(DAYS, agent - 0.5 * gap),
                     "ma10": _record(DAYS, rung)}, "1d", "buy_and_hold")
    row = next(r for r in result["rungs"] if r["rung"] == "ma10")
    assert 0.05 < row["p_value"] < 0.10
    header, rows = ladder_table(result)
    assert header == ["rung", "pooled Sharpe ± SE", "agent - rung a year [90%]",
                      "P(agent > rung)"]
    cells = next(r for r in rows if r[0] == "10-month MA")
    low = float(cells[2].split("[")[1].split("%")[0])
    assert low > 0 and cells[2].endswith(", ∞)")
    assert low == pytest.approx(100 * row["diff_low"], abs=0.05)
    assert cells[3] == f"{1 - row['p_value']:.3f} (Holm {1 - row['p_holm']:.3f})"
    note = ladder_note(result)
    assert "the larger of the Newey-West and i.i.d. SEs" in note
    assert "not a posterior probability" in note and "one-sided 90% interval" in note


def test_the_ladder_bound_is_above_zero_exactly_when_raw_p_is_below_the_level():
    """Over many rungs, the one-sided bound and the raw p never disagree."""
    agent = 0.0003 + _noise(40)
    for k in range(30):
        edge = (k - 10) * 0.2 * 0.01 / np.sqrt(DAYS.shape[0])
        rung = agent - (_noise(100 + k) + edge)
        out = ladder_of(agent, {"ma10": (rung, 0.0)}, "1d").as_dict()["rungs"][0]
        assert (out["diff_low"] > 0) == (out["p_value"] < 0.10)
        assert out["probability"] == pytest.approx(1 - out["p_value"])


def test_one_holm():
    """fastrl.stats.holm is the only Holm: the walk-forward's per-symbol p-values use it."""
    from fastrl.walkforward import analysis

    assert not hasattr(analysis, "holm")


@pytest.mark.parametrize("argv, message", [
    (["--symbols", "BPCL", "HDFCLIFE", "--compare", "fast", "ew_monthly"],
     "--compare ew_monthly: ew_monthly is a portfolio rule and this is a single-symbol run; "
     "use one of buy_and_hold, voltarget, momentum, ma10, ma200"),
    (["--portfolio", "--symbols", "BPCL", "HDFCLIFE", "--compare", "fast", "momentum"],
     "--compare momentum: momentum is a single-symbol rule and this is a portfolio run; use "
     "one of ew_hold, ew_monthly, inverse_vol, min_variance, xs_momentum"),
    (["--symbols", "BPCL", "--compare", "fast", "momentun"],
     "--compare momentun: not a preset (fast, baseline"),
    (["--symbols", "BPCL", "--compare", "momentum", "ma10"],
     "--compare names only rules (momentum, ma10): add the agent config"),
])
def test_cli_refuses_bad_rungs(argv, message, tmp_path, capsys):
    from fastrl.cli.walkforward import main

    code = main([*argv, "--run-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err
    assert not (tmp_path / "run").exists()


def _opens_with_the_ladder(run_dir, out: str, agent: str, rungs: list[str]) -> dict:
    lines = (run_dir / "report.md").read_text().splitlines()
    headings = [line for line in lines if line.startswith("## ")]
    assert headings[0] == "## The ladder"
    first_table = next(i for i, line in enumerate(lines) if line.startswith("| "))
    assert lines[first_table] == ("| rung | pooled Sharpe ± SE | agent - rung a year [90%] | "
                                  "P(agent > rung) |")
    page = (run_dir / "report.html").read_text()
    assert page.index("<h2>The ladder</h2>") < page.index("<h2>Setup</h2>")
    assert page.index("<th>P(agent &gt; rung)</th>") < page.index("<h2>Setup</h2>")
    assert out.index(f"the ladder: {agent}") < out.index("walk-forward record")
    payload = json.loads((run_dir / "report.json").read_text())
    result = payload["ladders"][agent]
    assert {row["rung"] for row in result["rungs"]} >= set(rungs)
    assert payload["verdict"].startswith(result["verdict"])
    return payload


def test_cli_ladder_single(tmp_path, capsys):
    from fastrl.cli.walkforward import main

    run_dir = tmp_path / "run"
    argv = ["--symbols", "BPCL", "HDFCLIFE", "--compare", "fast", "momentum", "ma10",
            "voltarget", "--run-dir", str(run_dir), *CLI_TINY]
    assert main(argv) == 0
    out = capsys.readouterr().out
    payload = _opens_with_the_ladder(run_dir, out, "fast",
                                     ["buy_and_hold", "momentum", "ma10", "voltarget",
                                      "voltarget @ B&H vol"])
    assert set(payload["rungs"]) == {"rule momentum", "rule ma10", "rule voltarget"}
    assert "## Per symbol and pooled (rule momentum)" in (run_dir / "report.md").read_text()
    settings = json.loads((run_dir / "walkforward.json").read_text())
    assert settings["compare"] == ["fast", "momentum", "ma10", "voltarget"]
    rungs = pd.read_csv(run_dir / "rung_returns.csv")
    assert set(rungs["rung"]) == {"buy_and_hold", "momentum", "ma10", "voltarget"}
    # the rungs are not trained: only the agent's windows are on disk
    assert {p.name for p in (run_dir / "windows").iterdir()} == {"fast"}
    assert main(["--resume", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "resuming: " in out and "the ladder: fast" in out
    # the walk-forward bench's SUMMARY.md section carries the same ladder
    from bench_modules import load_bench

    setup = {"symbols": ["BPCL", "HDFCLIFE"], "network": "[16,16]", "step": 63,
             "start": "2022-04-01", "windows": 2, "timesteps_per_window": 512, "workers": 1}
    text = load_bench("walkforward").markdown({"setup": setup, "training_seconds": 1.0,
                                              "report": payload})
    assert "| rung | pooled Sharpe ± SE | agent - rung a year [90%] | P(agent > rung) |" in text
    assert f"- {payload['ladders']['fast']['verdict']}." in text


def test_cli_ladder_portfolio(tmp_path, capsys):
    from fastrl.cli.walkforward import main

    run_dir = tmp_path / "run"
    argv = ["--portfolio", "--symbols", "BPCL", "HDFCLIFE", "--compare", "fast", "ew_monthly",
            "inverse_vol", "min_variance", "xs_momentum", "--run-dir", str(run_dir), *CLI_TINY]
    assert main(argv) == 0
    _opens_with_the_ladder(run_dir, capsys.readouterr().out, "fast",
                           ["ew_hold", "ew_monthly", "inverse_vol", "min_variance",
                            "xs_momentum"])


def test_rungs_are_not_trained_nor_part_of_the_runs_inputs(single_run, tmp_path):
    """A run folder trained without rungs serves a run with rungs: every window loads from
    disk (nothing trains for a rule) and inputs.json is the same."""
    run, bars, config = single_run
    folder = tmp_path / "run"
    plain = run_walkforward({"fast": config}, SPEC, bars=bars, run_dir=folder)
    inputs = (folder / "inputs.json").read_text()
    again = run_walkforward({"fast": config}, SPEC, bars=bars, run_dir=folder,
                            rungs=["momentum", "ma200"])
    assert again.resumed == len(again.windows) == len(plain.windows)
    assert (folder / "inputs.json").read_text() == inputs
    assert again.record().equals(plain.record())
    assert again.rungs == ["buy_and_hold", "momentum", "ma200"]
    assert plain.rungs == ["buy_and_hold"]
