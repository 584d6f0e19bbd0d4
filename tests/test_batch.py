"""Batched trials: a population of members with their own configs (own schedules, gamma,
GAE lambda, epochs, weight decay, KL stop) keeps every member's training its own, and a
batch of one is today's engine."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from fastrl.ppo.population import Population, PopulationError
from test_pbt import member_state
from test_ppo_trainer import random_block, tiny_config

pytest.importorskip("fastrl._core")


@pytest.fixture(autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def market():
    return SimpleNamespace(train=random_block(), val=random_block(n_bars=80, seed=1),
                           normaliser=None)


def assert_same_member(a: Population, b: Population, m: int) -> None:
    for key, value in member_state(a, m).items():
        assert torch.equal(value, member_state(b, m)[key]), (m, key)


def test_a_list_of_one_shared_config_is_the_plain_engine_bit_for_bit(market):
    a = Population(tiny_config("target_kl=0.01"), 3, market=market)
    b = Population([tiny_config("target_kl=0.01")] * 3, market=market)
    for _ in range(3):
        row_a, row_b = a.step(), b.step()
        assert row_a["epochs"] == row_b["epochs"]
    for m in range(3):
        assert_same_member(a, b, m)


@pytest.mark.parametrize("changed", [
    ("gamma=0.9",), ("gae_lambda=0.5",), ("n_epochs=1",), ("weight_decay=0.05",),
    ("optimizer=adam", "weight_decay=0.05"), ("learning_rate=0.01", "lr_schedule=constant"),
    ("lr_warmup_steps=0", "lr_min=0.0005"), ("ent_coef=0.3", "ent_coef_final=0.2"),
    ("clip_range=0.001", "clip_range_final=0.001"), ("vf_coef=0.1",), ("max_grad_norm=0.05",),
    ("clip_range_vf=0.01", "clip_vloss=true"),
])
def test_one_members_own_setting_changes_it_and_nothing_in_the_others(market, changed):
    # member 1's n_epochs only goes down (2 -> 1), so the shared generator draws as many
    # minibatch orders as before and later rollouts stay comparable
    base = ("target_kl=null",) + (("optimizer=adam",) if "optimizer=adam" in changed else ()) \
        + (("clip_vloss=true",) if "clip_vloss=true" in changed else ())
    same = [tiny_config(*base)] * 3
    mixed = [tiny_config(*base), tiny_config(*base, *changed), tiny_config(*base)]
    a, b = Population(same, market=market), Population(mixed, market=market)
    for _ in range(3):
        a.step()
        b.step()
    for m in (0, 2):
        assert_same_member(a, b, m)
    theirs, ours = member_state(a, 1), member_state(b, 1)
    assert any(not torch.equal(v, ours[k]) for k, v in theirs.items() if k.startswith("param"))


def test_a_members_own_target_kl_stops_only_its_epochs(market):
    same = [tiny_config("target_kl=null", "n_epochs=3")] * 2
    mixed = [same[0], tiny_config("target_kl=1e-9", "n_epochs=3")]
    a, b = Population(same, market=market), Population(mixed, market=market)
    row_a, row_b = a.step(), b.step()
    assert row_a["epochs"] == [3.0, 3.0] and row_b["epochs"] == [3.0, 1.0]
    assert_same_member(a, b, 0)


def test_members_own_schedules_follow_their_configs(market):
    configs = [tiny_config("learning_rate=0.001"),
               tiny_config("learning_rate=0.004", "lr_warmup_steps=0", "ent_coef=0.2",
                           "max_grad_norm=0.5")]
    pop = Population(configs, market=market)
    for step in (0, 64, 200, 384):
        pop.set_step(step)
        for m, config in enumerate(configs):
            expected = pop.specs[m].values_at(step)
            assert float(pop.hparams["learning_rate"][m]) == pytest.approx(
                expected["learning_rate"], rel=1e-6)
            assert float(pop.hparams["ent_coef"][m]) == pytest.approx(expected["ent_coef"],
                                                                      rel=1e-6)
            assert float(pop.hparams["max_grad_norm"][m]) == pytest.approx(
                config.max_grad_norm)
    # PBT's factors multiply member m's own schedule
    pop.factors["learning_rate"][1] = 2.0
    pop.set_step(384)
    assert float(pop.hparams["learning_rate"][1]) == pytest.approx(
        2.0 * pop.specs[1].learning_rate_at(384), rel=1e-6)


@pytest.mark.parametrize("key", ["hidden_sizes=[8,8]", "num_steps=32", "minibatch_size=16",
                                 "seed=3", "total_timesteps=768", "env.window=5"])
def test_members_that_differ_in_a_shared_key_are_refused_by_name(market, key):
    with pytest.raises(PopulationError, match=key.split("=")[0].split(".")[-1]):
        Population([tiny_config(), tiny_config(key)], market=market)


def test_a_population_size_that_does_not_match_the_configs_is_refused(market):
    with pytest.raises(PopulationError, match="does not match"):
        Population([tiny_config()] * 2, 3, market=market)
