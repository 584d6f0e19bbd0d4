"""Trainer on the real simulator with tiny markets and networks: run folder, resume, agent."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from fastrl.config import build_config
from fastrl.data.block import MarketBlock
from fastrl.ppo.checkpoint import CheckpointError, load_agent, load_checkpoint
from fastrl.ppo.trainer import Trainer

pytest.importorskip("fastrl._core")


def random_block(n_symbols: int = 2, n_bars: int = 300, n_features: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    segments = []
    for s in range(n_symbols):
        close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n_bars)))
        segments.append({
            "symbol": f"S{s}",
            "open": close * np.exp(rng.normal(0, 0.002, n_bars)),
            "close": close,
            "features": rng.normal(size=(n_bars, n_features)).astype(np.float32),
        })
    return MarketBlock.from_segments(segments)


@pytest.fixture(scope="module")
def market():
    return SimpleNamespace(train=random_block(), val=random_block(n_bars=80, seed=1),
                           normaliser=None)


def tiny_config(*extra: str):
    # the fast preset (the dataclass defaults): what these tests pin down
    return build_config("fast", set_options=[
        "hidden_sizes=[16,16]", "num_envs=4", "num_steps=16", "minibatch_size=32",
        "total_timesteps=384", "env.window=4", "env.episode_length=40", "data.val_days=10",
        "n_epochs=2", "lr_warmup_steps=64", "torch_threads=1", "device=cpu", *extra,
    ])


def test_run_folder_is_complete(market, tmp_path):
    result = Trainer(tiny_config(), market=market, run_dir=tmp_path / "run").train()
    run = tmp_path / "run"
    assert result.reason == "completed" and result.updates == 6 and result.global_step == 384
    for name in ("config.json", "metrics.jsonl", "checkpoints/last.pt", "checkpoints/best.pt",
                 "checkpoints/final.pt"):
        assert (run / name).is_file(), name
    assert list((run / "tb").iterdir())
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert lines[0]["event"] == "start" and lines[0]["total_timesteps"] == 384
    assert lines[-1]["event"] == "end" and lines[-1]["reason"] == "completed"
    updates = lines[1:-1]
    assert [u["update"] for u in updates] == [1, 2, 3, 4, 5, 6]
    for key in ("charts/SPS", "charts/learning_rate", "losses/approx_kl", "losses/clipfrac",
                "losses/explained_variance", "time/env_frac", "val/sharpe", "losses/epochs"):
        assert key in updates[-1], key
    # the logged schedules are the pure functions of the env steps
    assert updates[0]["charts/learning_rate"] == pytest.approx(1e-3)  # 64 steps: warmup done
    assert updates[0]["charts/ent_coef"] == pytest.approx(0.1 - 0.09 * 64 / 50_000)
    assert json.loads((run / "config.json").read_text())["hidden_sizes"] == [16, 16]


@pytest.mark.precision
def test_interrupted_then_resumed_run_matches_an_uninterrupted_one(market, tmp_path):
    full = Trainer(tiny_config(), market=market, run_dir=tmp_path / "full")
    full.train()

    def stop_after_three(row):
        if row["update"] == 3:
            first.request_stop()

    first = Trainer(tiny_config(), market=market, run_dir=tmp_path / "split",
                    callback=stop_after_three)
    assert first.train().reason == "interrupted"
    resumed = Trainer.resume(tmp_path / "split", market=market)
    assert resumed.update == 3
    result = resumed.train()
    assert result.reason == "completed" and result.global_step == 384
    for (name, a), b in zip(full.network.state_dict().items(),
                            resumed.network.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert torch.equal(full.obs_normaliser.stats.mean, resumed.obs_normaliser.stats.mean)
    lines = (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()
    events = [json.loads(line).get("event") for line in lines]
    assert events.count("start") == 2 and events.count("end") == 2


@pytest.mark.precision
@pytest.mark.parametrize("amp", ["false", "true"])
def test_load_agent_reproduces_the_trained_policy(market, tmp_path, amp):
    # bit for bit in either precision: the checkpoint says which one the policy acts in
    trainer = Trainer(tiny_config("env.action=continuous", f"amp={amp}"), market=market,
                      run_dir=tmp_path / "run")
    trainer.train()
    agent = load_agent(tmp_path / "run" / "checkpoints" / "final.pt")
    assert agent.precision == trainer.agent.precision == ("bf16" if amp == "true" else "fp32")
    obs = np.random.default_rng(0).normal(size=(5, trainer.obs_dim)).astype(np.float32)
    actions = agent.act(obs)
    assert actions.dtype == np.float64 and actions.shape == (5,)
    assert np.all((actions >= -1) & (actions <= 1))
    np.testing.assert_array_equal(actions, trainer.validation_agent().act(obs))
    assert agent.config.env.action == "continuous"
    assert agent.config.data.val_days == 10
    with pytest.raises(ValueError, match="shape"):
        agent.act(obs[:, :3])


def test_early_stopping_on_validation_sharpe(market, tmp_path):
    config = tiny_config("patience=2", "min_delta=1000")
    result = Trainer(config, market=market, run_dir=tmp_path / "run").train()
    # the first validation sets the best; two more without a 1000-point gain stop the run
    assert result.reason == "early_stop" and result.updates == 3
    assert (tmp_path / "run" / "checkpoints" / "best.pt").is_file()


def test_bad_checkpoints_give_clear_errors(market, tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "missing.pt")
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="corrupted"):
        load_agent(broken)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(CheckpointError, match="not a fastrl PPO checkpoint"):
        load_checkpoint(foreign)
    Trainer(tiny_config(), market=market, run_dir=tmp_path / "run").train()
    with pytest.raises(ValueError, match="cannot change"):
        Trainer.resume(tmp_path / "run", overrides={"learning_rate": 1.0}, market=market)
    with pytest.raises(ValueError, match="already took 384"):
        Trainer.resume(tmp_path / "run", market=market)
    other = SimpleNamespace(train=random_block(n_features=5), val=market.val, normaliser=None)
    with pytest.raises((CheckpointError, ValueError)):
        Trainer.resume(tmp_path / "run", overrides={"total_timesteps": 1000}, market=other)


def test_continuous_bounds_that_float32_cannot_hold_are_respected(market, tmp_path):
    # 0.3 and -0.1 are not float32 numbers: clipping must happen in float64, or the env
    # refuses actions like 0.30000001 on the first step that samples past the bound.
    from fastrl.markets.single.env import TradingVecEnv

    sent: list[np.ndarray] = []

    class Recording(TradingVecEnv):
        def step(self, actions):
            sent.append(np.array(actions, copy=True))
            return super().step(actions)

    def factory(block, num_envs, *, num_threads, seed, buffers=None, env_config=None):
        return Recording(block, num_envs, env_config, num_threads=num_threads, seed=seed,
                         buffers=buffers)

    # (bps costs: a short bound is not allowed under the default nse_delivery's long/flat rule)
    config = tiny_config("env.action=continuous", "env.min_pos=-0.1", "env.max_pos=0.3",
                         "env.cost=bps", "log_std_init=1.0")
    trainer = Trainer(config, market=market, run_dir=tmp_path / "run", env_factory=factory)
    result = trainer.train()
    assert result.reason == "completed"
    history = np.stack(sent)
    assert history.dtype == np.float64
    assert history.min() >= -0.1 and history.max() <= 0.3
    assert (history == 0.3).any() and (history == -0.1).any()  # the bounds were hit
    resumed = Trainer.resume(tmp_path / "run", overrides={"total_timesteps": 512}, market=market)
    assert resumed.train().reason == "completed"


def test_bad_device_strings_are_value_errors():
    from fastrl.device import resolve_device

    with pytest.raises(ValueError, match="not a device"):
        resolve_device("cuda:abc")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda:0")


def test_resume_after_a_hard_interrupt_logs_each_update_once(market, tmp_path):
    def stop_after_three(row):
        if row["update"] == 3:
            first.request_stop()

    first = Trainer(tiny_config(), market=market, run_dir=tmp_path / "run",
                    callback=stop_after_three)
    first.train()
    # A hard Ctrl-C after two more updates: logged, but never checkpointed.
    metrics = tmp_path / "run" / "metrics.jsonl"
    with metrics.open("a") as stream:
        for update in (4, 5):
            stream.write(json.dumps({"update": update, "global_step": 64 * update}) + "\n")
        stream.write('{"update": 6, "glo')  # cut short mid-line
    Trainer.resume(tmp_path / "run", market=market).train()
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [r["update"] for r in rows if "event" not in r] == [1, 2, 3, 4, 5, 6]


# the simulator state keys a checkpoint or PBT state saved before issue 33 lacks
SINGLE_LATER = ("bench_position", "bench_shares", "bench_cash")


def without(state: dict, keys) -> dict:
    """``state`` as an older fastrl saved it: the simulator snapshot(s) without ``keys``."""
    old = {**state, "env": {k: v for k, v in state["env"].items() if k not in keys}}
    if "engine" in state:  # an ensemble's whole engine
        old["engine"] = without(state["engine"], keys)
    return old


@pytest.mark.parametrize("ensemble", ["1", "2"])
def test_a_state_saved_before_the_benchmark_book_resumes_bit_for_bit(market, ensemble):
    config = tiny_config(f"ensemble={ensemble}")
    source = Trainer(config, market=market)
    source.step()
    state = source.state_dict()
    assert set(SINGLE_LATER) <= set(state["env"])
    full, old = Trainer(config, market=market), Trainer(config, market=market)
    full.load_state_dict(state)
    old.load_state_dict(without(state, SINGLE_LATER))
    for trainer in (full, old):
        trainer.step()
        trainer.step()
    for (name, a), b in zip(full.network.state_dict().items(),
                            old.network.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    after_full, after_old = full.env.get_state(), old.env.get_state()
    for key, value in after_full.items():
        np.testing.assert_array_equal(value, after_old[key], err_msg=key)


@pytest.mark.parametrize("ensemble", ["1", "2"])
def test_a_state_without_the_benchmark_book_an_active_reward_reads_is_refused(market,
                                                                               ensemble):
    config = tiny_config("env.reward=active", f"ensemble={ensemble}")
    state = Trainer(config, market=market).state_dict()
    trainer = Trainer(config, market=market)
    before = {k: v.clone() for k, v in trainer.network.state_dict().items()}
    env_before = trainer.env.get_state()
    with pytest.raises(ValueError, match=r"missing 'bench_position', 'bench_shares', "
                                         r"'bench_cash' \(saved by an older fastrl.*afresh"):
        trainer.load_state_dict(without(state, SINGLE_LATER))
    for name, value in trainer.network.state_dict().items():
        assert torch.equal(value, before[name]), name  # nothing written
    for key, value in trainer.env.get_state().items():
        np.testing.assert_array_equal(value, env_before[key], err_msg=key)


@pytest.mark.parametrize("ensemble", ["1", "2"])
def test_a_state_that_fails_to_load_leaves_the_trainer_unchanged(market, ensemble):
    # the failure comes after the policy and the simulator would have been written
    config = tiny_config(f"ensemble={ensemble}")
    source = Trainer(config, market=market)
    source.step()
    broken = {**source.state_dict(), "hparams": {"max_grad_norm": 0.5}}
    trainer = Trainer(config, market=market)
    before = trainer.state_dict()
    with pytest.raises(KeyError, match="n_epochs"):
        trainer.load_state_dict(broken)
    after = trainer.state_dict()
    engine = (("engine", "params"),) if ensemble == "2" else ()
    for path in (("network",), ("obs_normaliser",), *engine):
        a, b = before, after
        for key in path:
            a, b = a[key], b[key]
        for name, value in a.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(b[name])), (path, name)
    for key, value in before["env"].items():
        assert torch.equal(value, after["env"][key]), key
    assert after["global_step"] == before["global_step"] == 0
    trainer.step()  # and it trains on
