"""Ensembles (``ensemble: K``, ``--ensemble K``): K seeds trained side by side as one
population and deployed as one policy acting with the mean of the members' exposures."""

from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from fastrl.cli.paper import main as paper_main
from fastrl.cli.signal import main as signal_main
from fastrl.config import ConfigError, TrainConfig
from fastrl.live.journal import Journal
from fastrl.markets.single.backtest import continuous_twin, run_agent
from fastrl.ppo.checkpoint import load_agent
from fastrl.ppo.ensemble import EnsembleAgent
from fastrl.ppo.trainer import Trainer
from test_pbt import WEIGHT_ATOL, member_state
from test_ppo_trainer import random_block, tiny_config

from live_runs import backtest, first_session, run_config

pytest.importorskip("fastrl._core")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def market():
    return SimpleNamespace(train=random_block(), val=random_block(n_bars=80, seed=1),
                           normaliser=None)


def stepped(config: TrainConfig, market, steps: int) -> Trainer:
    trainer = Trainer(config, market=market)
    for _ in range(steps):
        trainer.step()
    return trainer


def observations(agent, rows: int = 6) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(rows, agent.network.obs_dim)).astype(np.float32)


# ----------------------------------------------------------------------------- training


def test_an_ensemble_of_one_is_todays_single_run_bit_for_bit(market):
    plain = stepped(tiny_config(), market, 3)
    one = stepped(tiny_config("ensemble=1"), market, 3)
    assert one.members == 1 and one.engine.member_seeds is None
    assert "members" not in one.state_dict()
    assert_same = [torch.equal(v, member_state(one.engine, 0)[k])
                   for k, v in member_state(plain.engine, 0).items()]
    assert all(assert_same)
    obs = observations(plain.agent)
    np.testing.assert_array_equal(plain.validation_agent().act(obs),
                                  one.validation_agent().act(obs))
    assert type(one.validation_agent()).__name__ == "Agent"


@pytest.mark.parametrize("extra", [(), ("env.action=continuous",)])
def test_members_train_in_one_population_each_as_its_seed_alone(market, extra):
    # fp32: under bf16 autocast a matmul's rounding depends on how many members it stacks
    config = tiny_config("amp=false", "seed=4", "ensemble=3", *extra)
    ensemble = stepped(config, market, 3)
    assert ensemble.engine.population == 3 and ensemble.engine.member_seeds == [4, 5, 6]
    states = [member_state(ensemble.engine, m) for m in range(3)]
    for m in range(3):
        lone = stepped(tiny_config("amp=false", f"seed={4 + m}", *extra), market, 3)
        for key, value in member_state(lone.engine, 0).items():
            torch.testing.assert_close(states[m][key], value, rtol=0, atol=WEIGHT_ATOL,
                                       msg=f"member {m}: {key}")
    key = next(k for k in states[0] if k.startswith("param."))
    assert not torch.equal(states[0][key], states[1][key])  # members differ
    assert not torch.equal(states[1][key], states[2][key])


@pytest.mark.parametrize("bad", ["ensemble=0", "ensemble=-2", "ensemble=1.5"])
def test_a_bad_ensemble_size_is_refused_by_name(bad):
    with pytest.raises(ConfigError, match="ensemble"):
        tiny_config(bad)


# ------------------------------------------------------------------------ the policy


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, market) -> dict:
    folder = tmp_path_factory.mktemp("ensemble")
    out = {}
    for name, extra in (("discrete", ()), ("continuous", ("env.action=continuous",))):
        run_dir = folder / name
        trainer = Trainer(tiny_config("ensemble=3", "amp=false", *extra), market=market,
                          run_dir=run_dir)
        trainer.train()
        out[name] = (run_dir, trainer)
    return out


def test_the_ensemble_acts_with_the_mean_of_its_members_exposures(runs):
    for name in ("discrete", "continuous"):
        agent = load_agent(runs[name][0])
        assert isinstance(agent, EnsembleAgent) and len(agent) == 3
        obs = observations(agent, 32)
        members = [m.act(obs) for m in agent.members]
        if name == "discrete":
            levels = np.asarray(agent.config.env.position_levels)
            members = [levels[a] for a in members]
        expected = (members[0] + members[1] + members[2]) / 3
        np.testing.assert_array_equal(agent.act(obs), expected)
        assert agent.act(obs).dtype == np.float64


def test_an_anchored_discrete_ensemble_trades_the_mean_underweight(market):
    trainer = stepped(tiny_config("ensemble=2", "env.action_mode=anchored"), market, 1)
    agent = trainer.validation_agent()
    levels = np.asarray(agent.config.env.position_levels)  # underweights (0, 0.5, 1)
    obs = observations(agent, 16)
    u = agent.act(obs)
    np.testing.assert_array_equal(u, sum(levels[m.act(obs)] for m in agent.members) / 2)
    result = trainer.kind.evaluate(agent, market.val, baselines=False)
    assert result.env_config["action"] == "continuous"  # it traded in the twin
    assert np.isfinite(trainer.validate()["sharpe"])


def test_a_discrete_ensemble_acts_in_the_continuous_twin_of_its_env():
    env = run_config("discrete").env
    twin = continuous_twin(env)
    assert env.action == "discrete" and twin.action == "continuous"
    assert (twin.min_pos, twin.max_pos) == (0.0, 1.0) and twin.cost == env.cost
    # a level traded through the twin is the level traded by index: same exposure
    levels = np.asarray(env.position_levels)
    np.testing.assert_array_equal(env.exposure_of(np.arange(len(levels))),
                                  twin.exposure_of(levels))
    anchored = dataclasses.replace(env, action_mode="anchored", position_levels=None)
    assert continuous_twin(anchored).action_bounds() == anchored.action_bounds()


def test_the_checkpoint_holds_every_member_and_serves_what_validation_chose(runs):
    run_dir, trainer = runs["discrete"]
    agent = load_agent(run_dir / "checkpoints" / "final.pt")
    live = trainer.validation_agent()
    for served, trained in zip(agent.members, live.members, strict=True):
        for (k, a), (_, b) in zip(served.network.state_dict().items(),
                                  trained.network.state_dict().items(), strict=True):
            assert torch.equal(a, b), k
    obs = observations(agent, 16)
    np.testing.assert_array_equal(agent.act(obs), live.act(obs))


def test_an_ensemble_run_resumes_exactly(market, tmp_path):
    # constant learning rate: a cosine decay stretches with the extended total_timesteps
    config = tiny_config("ensemble=2", "amp=false", "data.val_days=0", "checkpoint_every=1",
                         "lr_schedule=constant")
    whole = Trainer(config, market=market, run_dir=tmp_path / "whole")
    whole.train()
    half = Trainer(dataclasses.replace(config, total_timesteps=192), market=market,
                   run_dir=tmp_path / "half")
    half.train()
    resumed = Trainer.resume(tmp_path / "half", overrides={"total_timesteps": 384},
                             market=market)
    resumed.train()
    for m in range(2):
        for key, value in member_state(whole.engine, m).items():
            assert torch.equal(value, member_state(resumed.engine, m)[key]), (m, key)


def test_the_validation_backtest_is_the_ensembles(runs, market):
    _, trainer = runs["continuous"]
    scores = trainer.validate()
    direct = trainer.kind.validation_scores(trainer.validation_agent(), market.val,
                                            env_config=trainer.env_config)
    assert scores == direct
    members = [trainer.kind.validation_scores(m, market.val)["sharpe"]
               for m in trainer.validation_agent().members]
    assert len(set(members)) > 1  # the members differ; the ensemble is none of them alone


# ------------------------------------------------------------------ live path parity


@pytest.fixture(scope="module")
def live_run(tmp_path_factory: pytest.TempPathFactory):
    from fastrl.ppo.trainer import train

    run_dir = tmp_path_factory.mktemp("ensemble-live") / "discrete"
    train(dataclasses.replace(run_config("discrete"), ensemble=3), run_dir=run_dir)
    return run_dir


def test_paper_replay_of_an_ensemble_equals_its_backtest_bit_for_bit(live_run, tmp_path,
                                                                     capsys):
    bt = backtest(live_run)
    code = paper_main([str(live_run), "--bars", "bundled", "--from", first_session(bt),
                       "--journal", str(tmp_path / "journal.db"), "--quiet"])
    assert code == 0, capsys.readouterr().err
    rows = [r for r in Journal.open(str(tmp_path / "journal.db")).rows("steps")
            if r["symbol"] == "BPCL"]
    assert len(rows) == bt.num_steps
    for key, expected in (("equity", bt.equity[1:]), ("position", bt.positions),
                          ("shares", bt.shares_held), ("cost", bt.step_costs),
                          ("fill_price", bt.fill_prices)):
        np.testing.assert_array_equal([r[key] for r in rows], expected, err_msg=key)
    assert bt.fills.sum() >= 1, "the ensemble must trade for parity to mean anything"
    # discrete members (levels 0, 1) whose mean lies between levels: the continuous twin
    assert set(np.unique(bt.positions)) - {0.0, 1.0}


def test_signal_serves_an_ensemble_run_as_the_backtest_decides(live_run, tmp_path, capsys):
    bt = backtest(live_run)
    start = first_session(bt)
    out = tmp_path / "signal.json"
    code = signal_main([str(live_run), "--bars", "bundled", "--out", str(out), "--asof", start])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    line = json.loads(out.read_text())["lines"][0]
    # the ensemble's mean exposure at the first decision: the backtest's first position
    assert line["symbol"] == "BPCL" and line["target"] == bt.positions[0]
    agent = load_agent(live_run)
    assert line["action"] == pytest.approx(line["target"])  # the twin takes exposures
    assert isinstance(agent, EnsembleAgent)


def test_eval_reports_the_ensemble_and_its_members(live_run, capsys):
    from fastrl.cli.evaluate import main as eval_main

    assert eval_main([str(live_run), "--no-report", "--rungs", "none"]) == 0
    out = capsys.readouterr().out
    assert "Ensemble of 3 members" in out and "median" in out


# ------------------------------------------------------------------------- commands


@pytest.mark.parametrize("value", ["0", "-1"])
def test_train_refuses_a_bad_ensemble_with_exit_2(value, tmp_path, capsys):
    from fastrl.cli.train import main

    code = main(["--symbols", "BPCL", "--ensemble", value, "--run-dir", str(tmp_path / "r")])
    assert code == 2
    assert "ensemble" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_walkforward_refuses_a_bad_ensemble_with_exit_2(tmp_path, capsys):
    from fastrl.cli.walkforward import main

    code = main(["--symbols", "BPCL", "HDFCLIFE", "--ensemble", "0", "--run-dir",
                 str(tmp_path / "run")])
    assert code == 2
    assert "ensemble" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_walkforward_trains_an_ensemble_per_window_and_reports_its_members(tmp_path, capsys):
    from fastrl.cli.walkforward import main

    run_dir = tmp_path / "run"
    argv = ["--symbols", "BPCL", "HDFCLIFE", "--start", "2022-06-01", "--val-days", "40",
            "--min-train-days", "120", "--timesteps", "256", "--ensemble", "3",
            "--run-dir", str(run_dir), "--workers", "1",
            "--set", "num_envs=8", "num_steps=32", "minibatch_size=128", "n_epochs=1",
            "hidden_sizes=[16]", "device=cpu"]
    assert main(argv) == 0
    capsys.readouterr()
    report = json.loads((run_dir / "report.json").read_text())
    spread = report["ensemble_members"]["anchored"]  # the default preset
    assert len(spread["sharpes"]) == 3
    assert spread["min"] <= spread["median"] <= spread["max"]
    assert "Ensemble and its members" in (run_dir / "report.md").read_text()
    window = torch.load(next((run_dir / "windows").rglob("window_000.pt")), weights_only=True)
    assert len(window["policy"]["members"]) == 3
    record = pd.read_csv(run_dir / "oos_returns.csv")
    # discrete members, a mean of their levels: the ensemble may hold between levels
    assert record["position"].between(0.0, 1.0).all()


def test_run_agent_takes_the_ensembles_env(runs, market):
    run_dir, _ = runs["discrete"]
    agent = load_agent(run_dir)
    backtests = run_agent(agent, market.val, agent.config.env)
    assert len(backtests) == market.val.num_segments
    member = run_agent(agent.members[0], market.val, agent.config.env)
    assert len(member) == market.val.num_segments


def test_a_portfolio_ensemble_holds_the_mean_of_its_members_weights(tmp_path):
    from fastrl.ppo.trainer import train

    config = dataclasses.replace(run_config("portfolio"), ensemble=2)
    train(config, run_dir=tmp_path / "run")
    agent = load_agent(tmp_path / "run")
    obs = observations(agent, 8)
    a, b = (m.act(obs) for m in agent.members)
    weights = agent.act(obs)
    np.testing.assert_array_equal(weights, (a + b) / 2)
    assert not np.array_equal(a, b)
    caps = config.portfolio
    assert (weights >= 0).all() and (weights <= caps.max_weight + 1e-12).all()
    assert (weights.sum(axis=1) <= caps.max_gross + 1e-12).all()


def test_batched_trials_refuse_an_ensemble_config(market):
    from fastrl.tune.objective import train_batch

    with pytest.raises(ValueError, match="ensemble 2"):
        train_batch([tiny_config("ensemble=2")], market, seed=0, fold=0)


def test_fastrl_train_reports_the_ensemble_and_its_members(tmp_path, capsys):
    from fastrl.cli.train import main

    code = main(["--symbols", "BPCL", "HDFCLIFE", "--ensemble", "2", "--test-days", "20",
                 "--val-days", "20", "--timesteps", "256", "--run-dir", str(tmp_path / "r"),
                 "--rungs", "none", "--set", "num_envs=4", "num_steps=32", "minibatch_size=64",
                 "n_epochs=1", "hidden_sizes=[16]", "device=cpu", "torch_threads=1"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "Ensemble of 2 members" in captured.err  # the console writes to stderr
    assert "Ensemble of 2 members" in (tmp_path / "r" / "report.md").read_text()
    assert isinstance(load_agent(tmp_path / "r"), EnsembleAgent)


def test_pbt_refuses_an_ensemble_config(market):
    from fastrl.ppo.members import PopulationError
    from fastrl.tune.pbt import PBT

    with pytest.raises(PopulationError, match="not an ensemble of 2"):
        PBT(tiny_config("ensemble=2"), 2, 64, market=market)
