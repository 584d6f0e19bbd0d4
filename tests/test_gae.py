"""GAE against hand-computed examples, with termination and truncation bootstrapping."""

from __future__ import annotations

import pytest
import torch

from fastrl.ppo.storage import RolloutStorage, compute_gae


def column(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32).reshape(-1, 1)


def test_gae_without_episode_end_matches_hand_computation():
    gamma, lam = 0.9, 0.8
    rewards = column([1.0, 2.0])
    values = column([0.5, 1.0])
    dones = torch.zeros(2, 1, dtype=torch.bool)
    last_value = torch.tensor([2.0])
    adv, ret = compute_gae(rewards, values, dones, dones, torch.zeros(2, 1), last_value,
                           gamma, lam)
    delta1 = 2.0 + 0.9 * 2.0 - 1.0  # 2.8
    delta0 = 1.0 + 0.9 * 1.0 - 0.5  # 1.4
    assert adv[1, 0].item() == pytest.approx(delta1)
    assert adv[0, 0].item() == pytest.approx(delta0 + 0.9 * 0.8 * delta1)
    assert torch.allclose(ret, adv + values)


def test_termination_cuts_the_chain_and_bootstraps_nothing():
    gamma, lam = 0.9, 0.8
    rewards = column([1.0, 2.0, 3.0])
    values = column([0.5, 1.0, 4.0])
    dones = torch.tensor([[False], [True], [False]])
    adv, _ = compute_gae(rewards, values, dones, torch.zeros_like(dones), column([0, 9.0, 0]),
                         torch.tensor([1.5]), gamma, lam)
    delta2 = 3.0 + 0.9 * 1.5 - 4.0
    delta1 = 2.0 - 1.0  # terminal: no next value, final_values ignored without truncation
    delta0 = 1.0 + 0.9 * 1.0 - 0.5
    assert adv[2, 0].item() == pytest.approx(delta2)
    assert adv[1, 0].item() == pytest.approx(delta1)
    assert adv[0, 0].item() == pytest.approx(delta0 + 0.72 * delta1)


def test_truncation_bootstraps_the_final_observation_value():
    gamma, lam = 0.9, 0.8
    rewards = column([1.0, 2.0, 3.0])
    values = column([0.5, 1.0, 4.0])
    dones = torch.tensor([[False], [True], [False]])
    truncated = dones.clone()
    final_values = column([0.0, 5.0, 0.0])  # V(final obs) of the truncated episode
    adv, _ = compute_gae(rewards, values, dones, truncated, final_values,
                         torch.tensor([1.5]), gamma, lam)
    delta1 = 2.0 + 0.9 * 5.0 - 1.0  # bootstraps 5.0, not values[2] (next episode's start)
    delta0 = 1.0 + 0.9 * 1.0 - 0.5
    assert adv[1, 0].item() == pytest.approx(delta1)
    assert adv[0, 0].item() == pytest.approx(delta0 + 0.72 * delta1)
    assert adv[2, 0].item() == pytest.approx(3.0 + 0.9 * 1.5 - 4.0)


def test_envs_are_independent_columns():
    rewards = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    values = torch.zeros(2, 2)
    dones = torch.tensor([[True, False], [False, False]])
    adv, _ = compute_gae(rewards, values, dones, torch.zeros_like(dones), torch.zeros(2, 2),
                         torch.zeros(2), 1.0, 1.0)
    assert adv[:, 0].tolist() == pytest.approx([1.0, 0.0])
    assert adv[:, 1].tolist() == pytest.approx([1.0, 1.0])


def test_storage_finish_and_flat_views():
    storage = RolloutStorage(num_steps=3, num_envs=2, obs_dim=4, continuous=False, device="cpu")
    storage.rewards.fill_(1.0)
    storage.finish(torch.zeros(2), gamma=0.5, gae_lambda=1.0)
    assert storage.returns[:, 0].tolist() == pytest.approx([1.75, 1.5, 1.0])
    flat = storage.flat()
    assert flat["obs"].shape == (6, 4) and flat["actions"].dtype == torch.int64
    assert flat["obs"].data_ptr() == storage.obs.data_ptr()
