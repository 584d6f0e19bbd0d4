"""Training and backtesting the portfolio env: the simplex head, the trainer, the backtest
and its baselines, the report, the CLI, resume and bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from fastrl.config import ConfigError, build_config
from fastrl.data.panel import PanelBlock, build_panel
from fastrl.env_config import PortfolioConfig
from fastrl.markets.base import Result
from fastrl.markets.portfolio.backtest import (
    baseline_backtest,
    evaluate_portfolio,
    rebalance_steps,
    run_agent,
)
from fastrl.ppo.network import ActorCritic, sample
from fastrl.ppo.simplex import simplex_weights
from fastrl.strategies import EW_HOLD, EW_MONTHLY

pytest.importorskip("fastrl._core")

SYMBOLS = ["BPCL", "HDFCLIFE", "INFY"]
TINY = {"hidden_sizes": (16, 16), "num_envs": 4, "num_steps": 16, "minibatch_size": 32,
        "n_epochs": 2, "env.window": 4, "env.episode_length": 20, "torch_threads": 1,
        "device": "cpu", "lr_schedule": "constant", "checkpoint_every": 1}


# ----------------------------------------------------------------------------- simplex head


def test_simplex_head_log_probs_and_entropy_match_a_direct_computation():
    gen = torch.Generator().manual_seed(0)
    net = ActorCritic(7, 0, (8,), simplex=4, log_std_init=-0.3, generator=gen)
    with torch.no_grad():
        net.log_std.copy_(torch.tensor([-0.3, 0.1, -1.0, 0.4]))
    obs = torch.randn(5, 7, generator=gen)
    mean, _ = net(obs)
    dist = net.distribution(mean)
    logits = sample(dist, gen)
    assert logits.shape == (5, 4)
    logp, entropy, _ = net.evaluate(obs, logits)
    std = net.log_std.exp()
    direct = (-0.5 * ((logits - mean) / std) ** 2 - torch.log(std)
              - 0.5 * math.log(2 * math.pi)).sum(-1)
    torch.testing.assert_close(logp, direct)
    direct_entropy = (0.5 + 0.5 * math.log(2 * math.pi) + torch.log(std)).sum().expand(5)
    torch.testing.assert_close(entropy, direct_entropy)
    torch.testing.assert_close(net.greedy(obs), mean)  # deterministic: the mean logits


@pytest.mark.parametrize(("max_weight", "max_gross"), [(1.0, 1.0), (0.4, 1.0), (0.5, 0.7)])
def test_sampled_weights_are_valid_env_actions(max_weight, max_gross):
    rng = np.random.default_rng(1)
    logits = rng.normal(0.0, 3.0, (64, 4))
    logits[0] = [50.0, -50.0, -50.0, -50.0]  # a corner: everything in one name
    logits[1] = [-50.0, -50.0, -50.0, 50.0]  # all cash
    weights = simplex_weights(logits, max_weight, max_gross)
    assert weights.shape == (64, 3)
    assert np.all(weights >= 0.0) and np.all(weights <= max_weight)
    assert np.all(weights.sum(axis=1) <= max_gross + 1e-12)
    if max_weight == 1.0 and max_gross == 1.0:  # no caps: symbols + cash = softmax
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        np.testing.assert_allclose(weights, (shifted / shifted.sum(1, keepdims=True))[:, :3])
    from fastrl.markets.portfolio.env import PortfolioVecEnv

    panel = build_panel(SYMBOLS, test_days=30, window=4).test
    env = PortfolioVecEnv(panel, 64, PortfolioConfig(window=4, max_weight=max_weight,
                                                     max_gross=max_gross))
    env.step(weights)  # raises on any cap violation
    with pytest.raises(ValueError, match="shape"):
        simplex_weights(np.zeros(4))


# ----------------------------------------------------------------------------- backtests


def _panel(dates: list[str], open_: list[list[float]], close: list[list[float]]) -> PanelBlock:
    open_arr, close_arr = np.array(open_, float), np.array(close, float)
    return PanelBlock(symbols=("A", "B"), open=open_arr, close=close_arr,
                      features=np.zeros((len(dates), 2, 1), np.float32),
                      tradable=np.ones(open_arr.shape, bool),
                      timestamps=np.array(dates, dtype="datetime64[ns]"))


def test_equal_weight_held_without_costs_earns_the_average_price_ratio():
    rng = np.random.default_rng(2)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.02, (12, 2)), axis=0))
    open_ = close * np.exp(rng.normal(0, 0.005, (12, 2)))
    dates = [f"2024-03-{d:02d}" for d in range(1, 13)]
    panel = _panel(dates, open_.tolist(), close.tolist())
    config = PortfolioConfig(window=1, cost="zero")
    held = baseline_backtest(panel, config, EW_HOLD)
    # next-open execution: bought at the open of row 1, valued at the last close
    ratio = np.mean(close[-1] / open_[1])
    assert held.equity[-1] / held.equity[0] == pytest.approx(ratio, rel=1e-12)
    assert held.rebalanced.tolist() == [True] + [False] * 10
    assert held.legs.sum() == 2


@pytest.mark.parametrize(("execution", "expected"), [("next_open", [0, 1, 3]),
                                                     ("close", [0, 2, 4])])
def test_monthly_rebalancing_fills_on_the_first_trading_day_of_each_month(execution, expected):
    dates = ["2024-01-30", "2024-01-31", "2024-02-01", "2024-02-02", "2024-03-01",
             "2024-03-04"]
    # B doubles in February: a rebalance has to sell some of it
    close = [[10, 10], [10, 10], [10, 20], [10, 20], [10, 20], [10, 20]]
    panel = _panel(dates, close, close)
    config = PortfolioConfig(window=1, cost="zero", execution=execution)
    assert rebalance_steps(panel, config).tolist() == expected
    monthly = baseline_backtest(panel, config, EW_MONTHLY)
    assert np.flatnonzero(monthly.rebalanced).tolist() == expected
    fill_days = np.array(dates, dtype="datetime64[D]")[monthly.fill_rows[expected]]
    first_days = {"next_open": ["2024-01-31", "2024-02-01", "2024-03-01"],
                  "close": ["2024-01-30", "2024-02-01", "2024-03-01"]}[execution]
    assert [str(d) for d in fill_days] == first_days
    # after the February rebalance (from B's doubling), the weights are equal again
    step = expected[1]
    np.testing.assert_allclose(monthly.weights[step, :2], [0.5, 0.5])


@pytest.mark.parametrize("extra", [{}, {"integer_shares": True, "trade_band": 0.02,
                                        "execution": "close"}])
def test_agent_replay_matches_the_env_and_the_report_sees_every_baseline(extra):
    panel = build_panel(SYMBOLS, test_days=40, window=4).test
    config = PortfolioConfig(window=4, max_weight=0.5, **extra)
    rng = np.random.default_rng(3)
    policy = lambda obs: simplex_weights(rng.normal(0, 1, (1, 4)), 0.5)  # noqa: E731
    agent = run_agent(policy, panel, config)
    assert agent.num_steps == 40 - 1 and agent.liquidation_cost > 0
    np.testing.assert_allclose(agent.weights.sum(axis=1), 1.0)
    result = evaluate_portfolio(lambda obs: np.full((1, 3), 1 / 3), panel, config)
    assert result.strategies == ["agent", EW_MONTHLY, EW_HOLD, "bh:BPCL", "bh:HDFCLIFE",
                                 "bh:INFY"]
    assert "equal-weight buy-and-hold" in result.verdict
    assert json.dumps(result.to_dict(), default=str)
    assert isinstance(result, Result)
    assert result.metrics(strategy="agent") is result.metrics() is result.get("agent").metrics
    assert result.uncertainty().verdict == result.verdict


# ----------------------------------------------------------------------------- trainer


def test_resumed_portfolio_run_continues_exactly(tmp_path):
    from fastrl.ppo.hooks import Hook
    from fastrl.ppo.trainer import Trainer

    config = build_config(overrides={"data.symbols": SYMBOLS, "data.test_days": 30,
                                     "portfolio.enabled": True, "portfolio.max_weight": 0.6,
                                     "total_timesteps": 4 * 64, **TINY})
    market = build_panel(SYMBOLS, test_days=30, window=4)
    whole = Trainer(config, market=market)
    assert whole.storage.actions.shape == (16, 4, 4)  # [T, N, A + 1] logits
    whole.train(hooks=[])

    class StopAfterTwo(Hook):
        def on_step(self, trainer, row):
            if trainer.update == 2:
                trainer.request_stop()

    run = tmp_path / "run"
    first = Trainer(config, market=market, run_dir=run, callback=None)
    from fastrl.ppo.hooks import default_hooks

    assert first.train(hooks=[*default_hooks(first), StopAfterTwo()]).reason == "interrupted"
    resumed = Trainer.resume(run, market=market)
    assert resumed.update == 2
    assert resumed.train().reason == "completed"
    for (name, a), b in zip(whole.network.state_dict().items(),
                            resumed.network.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def test_tiny_portfolio_run_via_the_cli_writes_checkpoints_report_and_weights_plot(
        tmp_path, capsys):
    from PIL import Image

    from fastrl.cli.train import main
    from fastrl.reports.plots import figure_size_px

    run = tmp_path / "run"
    code = main(["--portfolio", "--symbols", *SYMBOLS, "--test-days", "30", "--val-days", "20",
                 "--run-dir", str(run), "--timesteps", "128", "--num-envs", "4", "--device",
                 "cpu", "--set", "hidden_sizes=[16,16]", "num_steps=16", "minibatch_size=32",
                 "n_epochs=1", "env.window=4", "torch_threads=1", "portfolio.max_weight=0.5"])
    err = capsys.readouterr().err
    assert code == 0, err
    for name in ("config.json", "checkpoints/last.pt", "checkpoints/best.pt",
                 "checkpoints/final.pt", "report.md", "report.html", "report.json",
                 "test_returns.csv", "equity.png", "weights.png"):
        assert (run / name).is_file(), name
    assert "verdict: " in err and "equal-weight buy-and-hold" in err
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any(isinstance(r.get("val/sharpe"), float) for r in rows)  # validation ran
    report = json.loads((run / "report.json").read_text())
    assert report["kind"] == "portfolio" and set(report["metrics"]) >= {"agent", "ew_hold"}
    image = np.asarray(Image.open(run / "weights.png").convert("L"), dtype=float)
    width, height = figure_size_px(1)
    assert image.shape == (int(height * 1.5), width)
    assert image.std() > 10  # not blank
    csv_header = (run / "test_returns.csv").read_text().splitlines()[0]
    assert "w_BPCL" in csv_header and "w_cash" in csv_header
    # fastrl-eval recognises the portfolio run: evaluate_run backtests it as a portfolio, on
    # its own symbols and data only
    from fastrl.cli.evaluate import main as evaluate_main
    from fastrl.evaluate import EvaluationError, evaluate_run
    from fastrl.markets.portfolio.backtest import PortfolioResult

    assert evaluate_main([str(run), "--test-days", "20", "--no-report"]) == 0
    assert "equal-weight buy-and-hold on" in capsys.readouterr().out
    assert isinstance(evaluate_run(run, test_days=20), PortfolioResult)
    with pytest.raises(EvaluationError, match="portfolio run is evaluated on its own"):
        evaluate_run(run, symbols=["BPCL"])
    assert main(["--resume", str(run), "--portfolio"]) == 2
    assert "drop --portfolio" in capsys.readouterr().err


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(("argv", "message"), [
    (["--symbols", "BPCL", "NOPE"], "unknown symbol NOPE"),
    (["--symbols", "BPCL"], "at least two symbols"),
    (["--symbols", "BPCL", "BPCL"], "must not repeat"),
    (["--symbols", "BPCL", "INFY", "--data", "synthetic"], "'data.source'"),
    (["--symbols", "BPCL", "INFY", "--set", "portfolio.max_weight=0"],
     "'portfolio.max_weight'"),
    (["--symbols", "BPCL", "INFY", "--set", "portfolio.max_gross=1.5"],
     "'portfolio.max_gross'"),
    (["--symbols", "BPCL", "INFY", "--set", "portfolio.nope=1"], "unknown config key"),
])
def test_bad_portfolio_input_is_one_line_naming_the_problem(argv, message, capsys, tmp_path):
    from fastrl.cli.train import main

    code = main(["--portfolio", "--run-dir", str(tmp_path / "r"), "--device", "cpu", *argv])
    err = capsys.readouterr().err
    assert code == 2 and message in err, err


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="'data.symbols'"):
        build_config(overrides={"portfolio.enabled": True, "data.symbols": ["BPCL"]})
