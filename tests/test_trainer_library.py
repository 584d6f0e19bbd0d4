"""The trainer as a library: no files or prints without a run folder, in-memory state that
continues exactly, no process-wide state, hyperparameters between steps, checkpoints that do
not grow, one evaluation path, and no evaluate <-> report import cycle."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from fastrl.config import build_config
from fastrl.ppo.checkpoint import CheckpointError, load_agent, save_checkpoint
from fastrl.ppo.trainer import Trainer
from test_ppo_trainer import random_block, tiny_config

pytest.importorskip("fastrl._core")

VOLATILE = ("time", "elapsed", "charts/SPS", "time/env_frac", "time/inference_frac",
            "time/copy_frac", "time/update_frac", "time/val_seconds")


@pytest.fixture(scope="module")
def market():
    return SimpleNamespace(train=random_block(n_bars=400), val=random_block(n_bars=80, seed=1),
                           normaliser=None)


def same_row(a: dict, b: dict) -> None:
    keys = set(a) - set(VOLATILE)
    assert keys == set(b) - set(VOLATILE)
    for key in keys:
        assert a[key] == b[key], key


def same_parameters(a: Trainer, b: Trainer) -> None:
    for (name, x), y in zip(a.network.state_dict().items(), b.network.state_dict().values(),
                            strict=True):
        assert torch.equal(x, y), name
    assert torch.equal(a.obs_normaliser.stats.mean, b.obs_normaliser.stats.mean)


def test_without_a_run_folder_nothing_is_written_or_printed(market, tmp_path, monkeypatch,
                                                            capsys):
    monkeypatch.chdir(tmp_path)
    trainer = Trainer(tiny_config(), market=market)
    row = trainer.step()
    assert row["update"] == 1 and "losses/approx_kl" in row
    result = trainer.train()
    assert result.reason == "completed" and result.run_dir is None
    assert result.best_val_sharpe is not None
    trainer.state_dict()
    assert list(tmp_path.iterdir()) == []
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


@pytest.mark.parametrize("extra", [(), ("env.action=continuous",),
                                   ("env_threads=2", "num_envs=8", "minibatch_size=64",
                                    "env.min_envs_per_thread=1")])
def test_load_state_dict_then_step_equals_step(market, extra):
    a = Trainer(tiny_config(*extra), market=market)
    for _ in range(2):
        a.step()
    b = Trainer(tiny_config(*extra, "seed=7"), market=market)  # other weights, other streams
    b.load_state_dict(a.state_dict())
    same_parameters(a, b)
    for _ in range(2):  # more than one step: env, RNG and optimiser state all carried over
        same_row(a.step(), b.step())
    same_parameters(a, b)
    np.testing.assert_array_equal(a.env.equity, b.env.equity)


def test_state_dict_is_a_copy(market):
    trainer = Trainer(tiny_config(), market=market)
    state = trainer.state_dict()
    before = {k: v.clone() for k, v in state["network"].items()}
    trainer.step()
    for key, value in state["network"].items():
        assert torch.equal(value, before[key]), key


def test_a_state_dict_that_does_not_fit_changes_nothing(market):
    a = Trainer(tiny_config(), market=market)
    b = Trainer(tiny_config("hidden_sizes=[8]"), market=market)
    weights = {k: v.clone() for k, v in a.network.state_dict().items()}
    with pytest.raises((RuntimeError, ValueError)):
        a.load_state_dict(b.state_dict())
    for key, value in a.network.state_dict().items():
        assert torch.equal(value, weights[key]), key
    with pytest.raises(ValueError, match="num_envs"):
        a.load_state_dict(Trainer(tiny_config("num_envs=8", "minibatch_size=64"),
                                  market=market).state_dict())


def test_two_trainers_interleaved_in_one_process_match_each_run_alone(market):
    alone = Trainer(tiny_config(), market=market)
    for _ in range(3):
        alone.step()
    first = Trainer(tiny_config(), market=market)
    second = Trainer(tiny_config(), market=market)
    for i in range(3):
        torch.manual_seed(1000 + i)  # global RNG use elsewhere must not matter
        np.random.seed(i)  # noqa: NPY002 (the legacy global state is the point here)
        first.step()
        torch.rand(17)
        second.step()
    same_parameters(alone, first)
    same_parameters(alone, second)


def test_the_trainer_leaves_torch_threads_and_global_seeds_alone(market):
    threads = torch.get_num_threads()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    trainer = Trainer(tiny_config("torch_threads=1"), market=market)
    trainer.step()
    assert torch.get_num_threads() == threads
    assert torch.equal(torch.rand(3), expected)


def test_set_hparams_between_steps(market):
    trainer = Trainer(tiny_config(), market=market)
    trainer.step()
    values = trainer.set_hparams(learning_rate=5e-4, ent_coef=0.0, clip_range=0.15,
                                 vf_coef=0.3, max_grad_norm=0.4, n_epochs=1)
    assert values["learning_rate"] == pytest.approx(5e-4) and values["n_epochs"] == 1
    row = trainer.step()
    assert row["charts/learning_rate"] == pytest.approx(5e-4)
    assert row["charts/ent_coef"] == 0.0 and row["charts/clip_range"] == pytest.approx(0.15)
    assert row["losses/epochs"] == 1
    # what the update reads: the engine's per-member hyperparameter tensors (one member)
    engine = trainer.engine
    assert float(engine.hparams["learning_rate"][0]) == pytest.approx(5e-4)
    assert float(engine.hparams["max_grad_norm"][0]) == pytest.approx(0.4)
    assert float(engine.hparams["vf_coef"][0]) == pytest.approx(0.3)
    assert engine.n_epochs.tolist() == [1]
    assert float(trainer.schedules.vf_coef) == pytest.approx(0.3)
    # the pinned values survive a copy into another trainer
    other = Trainer(tiny_config(), market=market)
    other.load_state_dict(trainer.state_dict())
    assert other.current_hparams() == trainer.current_hparams()
    with pytest.raises(ValueError, match="unknown hyperparameter"):
        trainer.set_hparams(gamma=0.5)
    with pytest.raises(ValueError, match="n_epochs"):
        trainer.set_hparams(n_epochs=0)
    with pytest.raises(ValueError, match="learning_rate"):
        trainer.set_hparams(learning_rate=float("nan"))


def test_checkpoint_size_does_not_grow_with_steps(market, tmp_path):
    sizes = {}
    last = tmp_path / "run" / "checkpoints" / "last.pt"

    def record(row):
        if row["update"] in (2, 8):
            sizes[row["update"]] = last.stat().st_size

    config = tiny_config("total_timesteps=512", "checkpoint_every=1")
    Trainer(config, market=market, run_dir=tmp_path / "run", callback=record).train()
    assert abs(sizes[8] - sizes[2]) < 0.05 * sizes[2], sizes


def test_old_format_checkpoint_names_the_change(market, tmp_path):
    trainer = Trainer(tiny_config(), market=market)
    from fastrl.config import config_to_dict

    old = {"config": config_to_dict(trainer.config), "obs_dim": trainer.obs_dim,
           "num_actions": trainer.num_actions, "model": trainer.network.state_dict(),
           "obs_normaliser": trainer.obs_normaliser.state_dict(), "global_step": 64,
           "update": 1, "env_actions": torch.zeros(16, 4, dtype=torch.int8)}
    path = save_checkpoint(old, tmp_path / "run" / "checkpoints" / "last.pt")
    torch.save({**torch.load(path, weights_only=True), "version": 1}, path)
    with pytest.raises(CheckpointError, match="old format.*replaying.*snapshots"):
        Trainer.resume(tmp_path / "run", market=market)
    agent = load_agent(path)  # still evaluable
    obs = np.zeros((2, trainer.obs_dim), dtype=np.float32)
    np.testing.assert_array_equal(agent.act(obs), trainer.agent.act(obs))


def test_validation_score_is_the_number_the_backtest_reports(market):
    from fastrl.markets.single.backtest import evaluate_agent

    trainer = Trainer(tiny_config(), market=market)
    trainer.step()
    score = trainer.validate()
    report = evaluate_agent(trainer.agent, market.val, trainer.config.env)
    assert score["sharpe"] == report.combined["agent"].sharpe
    assert score["return"] == report.combined["agent"].total_return


def test_test_days_zero_is_refused_with_a_reason():
    from fastrl.config import ConfigError

    with pytest.raises(ConfigError, match="data.test_days.*>= 1"):
        build_config(set_options=["data.test_days=0"])


def test_evaluate_and_report_do_not_import_each_other():
    code = ("import sys, fastrl.reports.single; assert 'fastrl.evaluate' not in sys.modules; "
            "import fastrl.evaluate, fastrl.reports.single")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_checkpoint_with_a_torch_optim_state_still_resumes(market):
    """Checkpoints from before the Trainer ran on the engine hold torch.optim's Adam state;
    its moments and step count carry over into the engine's optimiser."""
    from fastrl.ppo.update import make_optimizer

    trainer = Trainer(tiny_config(), market=market)
    trainer.step()
    network = trainer.engine.member_network(0)  # a copy with its own parameters
    optimizer = make_optimizer(list(network.parameters()), "adamw", torch.tensor(1e-3), 1e-4,
                               1e-5, torch.device("cpu"))
    for _ in range(3):
        optimizer.zero_grad()
        sum(p.square().sum() for p in network.parameters()).backward()
        optimizer.step()
    state = trainer.state_dict()
    state["optimizer"] = optimizer.state_dict()
    other = Trainer(tiny_config(), market=market)
    other.load_state_dict(state)
    moments = {p: optimizer.state[p] for p in network.parameters()}
    for name, param in network.named_parameters():
        assert torch.equal(other.optimizer.exp_avg[name][0], moments[param]["exp_avg"]), name
        assert torch.equal(other.optimizer.exp_avg_sq[name][0], moments[param]["exp_avg_sq"])
    assert float(other.optimizer.step_count[0]) == 3.0
    other.step()
