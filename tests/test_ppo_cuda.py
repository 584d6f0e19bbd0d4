"""The CUDA path: bf16 autocast + torch.compile + pinned buffers, checkpoint read on CPU."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from fastrl.config import build_config

pytestmark = [
    pytest.mark.cuda,
    # torch.compile's own imports and Inductor emit these on some torch versions
    pytest.mark.filterwarnings("ignore::DeprecationWarning:torch"),
    pytest.mark.filterwarnings(r"ignore:\s*Online softmax is disabled:UserWarning"),
    # Inductor's advice to enable TF32 (fastrl keeps fp32 matmuls exact unless amp is on)
    pytest.mark.filterwarnings(r"ignore:.*TensorFloat32:UserWarning"),
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU"),
]


def _market():
    from fastrl.data import build_synthetic_market

    return build_synthetic_market(kind="planted_signal", n_symbols=2, n_bars=1500,
                                  test_days=60, val_days=120, window=4, seed=0,
                                  signal_strength=0.3)


def test_training_on_cuda_with_amp_and_compile(tmp_path):
    pytest.importorskip("fastrl._core")
    from fastrl.ppo.checkpoint import load_agent
    from fastrl.ppo.trainer import Trainer

    config = build_config(set_options=[
        "hidden_sizes=[256,256]", "num_envs=64", "num_steps=32", "minibatch_size=512",
        "n_epochs=4", "total_timesteps=8192", "env.window=4", "env.cost=zero",
        "data.source=synthetic", "data.val_days=120", "device=cuda",
    ])
    trainer = Trainer(config, market=_market(), run_dir=tmp_path / "run")
    assert trainer.amp and trainer.compile  # the CUDA defaults
    assert trainer.staging["obs"].is_pinned()
    result = trainer.train()
    assert result.reason == "completed" and result.global_step == 8192
    from torch._dynamo.utils import counters

    graphs = counters["stats"]["unique_graphs"]
    trainer.set_hparams(learning_rate=3e-4, ent_coef=0.02, clip_range=0.15, vf_coef=0.5,
                        clip_range_vf=0.3, max_grad_norm=0.7, n_epochs=2)
    row = trainer.step()
    assert row["losses/epochs"] <= 2 and np.isfinite(row["losses/value_loss"])
    assert counters["stats"]["unique_graphs"] == graphs  # new values, no recompile
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    updates = [r for r in rows if "update" in r and "event" not in r]
    assert all(np.isfinite(r["losses/value_loss"]) for r in updates)
    assert next(trainer.network.parameters()).dtype == torch.float32  # autocast, fp32 master
    agent = load_agent(tmp_path / "run" / "checkpoints" / "final.pt", device="cpu")
    obs = np.random.default_rng(0).normal(size=(3, trainer.obs_dim)).astype(np.float32)
    cpu_actions = agent.act(obs)
    assert cpu_actions.shape == (3,) and cpu_actions.dtype == np.int64


def test_update_step_on_cuda_matches_the_schedule_tensors():
    from fastrl.ppo.network import ActorCritic
    from fastrl.ppo.schedules import ScheduleSpec, ScheduleTensors
    from fastrl.ppo.update import PPOLoss, make_optimizer, ppo_update

    device = torch.device("cuda")
    config = SimpleNamespace(**{k: v for k, v in vars(build_config()).items()})
    schedules = ScheduleTensors(ScheduleSpec.from_config(config), device)
    agent = ActorCritic(16, 3, (64, 64)).to(device)
    optimizer = make_optimizer(list(agent.parameters()), "adamw", schedules.learning_rate,
                               1e-4, 1e-5, device)
    loss_fn = torch.compile(PPOLoss(agent), dynamic=False)
    obs = torch.randn(1024, 16, device=device)
    with torch.no_grad():
        actions, logprobs, values = agent.act(obs)
    batch = {"obs": obs, "actions": actions, "logprobs": logprobs, "values": values,
             "advantages": torch.randn(1024, device=device), "returns": values}
    from torch._dynamo.utils import counters

    graphs_after_first = None
    for step in (8192, 16384, 32768):  # new schedule values must not recompile the loss
        schedules.set_step(step)
        result = ppo_update(loss_fn, optimizer, list(agent.parameters()), batch, n_epochs=2,
                            minibatch_size=256, max_grad_norm=1.0, target_kl=None,
                            clip_range=schedules.clip_range, ent_coef=schedules.ent_coef,
                            vf_coef=schedules.vf_coef, clip_range_vf=schedules.clip_range_vf,
                            amp=True, generator=torch.Generator(device=device))
        assert np.isfinite(result.stats["policy_loss"])
        if graphs_after_first is None:
            graphs_after_first = counters["stats"]["unique_graphs"]
        assert counters["stats"]["unique_graphs"] == graphs_after_first
    assert optimizer.param_groups[0]["lr"] is schedules.learning_rate
