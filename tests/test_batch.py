"""Batched trials: a population of members with their own configs (own schedules, gamma,
GAE lambda, epochs, weight decay, KL stop) keeps every member's training its own, and a
batch of one is today's engine."""

from __future__ import annotations

import csv
import json
from types import SimpleNamespace
from typing import Any

import numpy as np
import optuna
import pytest
import torch

from fastrl.cli.tune import main as tune_main
from fastrl.ppo.members import PopulationError
from fastrl.ppo.population import Population
from fastrl.tune.objective import (
    BatchMember,
    RunResult,
    TrialDiverged,
    train_batch,
    train_run,
)
from fastrl.tune.settings import ConfirmationSettings
from fastrl.tune.space import load_space
from fastrl.tune.storage import claim_trial, make_storage, open_study, peer_median_prune
from fastrl.tune.study import TrialRunner
from test_pbt import WEIGHT_ATOL, member_state
from test_ppo_trainer import random_block, tiny_config
from test_tune import (  # noqa: F401 (postgres_url: a fixture)
    TINY_SPACE,
    _check_shared_study,
    _trials_of,
    cli_args,
    postgres_url,
    settings,
)

pytest.importorskip("fastrl._core")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_space(tmp_path_factory: pytest.TempPathFactory):
    path = tmp_path_factory.mktemp("space") / "space.yaml"
    path.write_text(TINY_SPACE)
    return path


@pytest.fixture(scope="module")
def market():
    return SimpleNamespace(train=random_block(), val=random_block(n_bars=80, seed=1),
                           normaliser=None)


def assert_same_member(a: Population, b: Population, m: int, atol: float = 0.0) -> None:
    for key, value in member_state(a, m).items():
        if atol == 0.0:
            assert torch.equal(value, member_state(b, m)[key]), (m, key)
        else:
            torch.testing.assert_close(value, member_state(b, m)[key], rtol=0, atol=atol,
                                       msg=lambda text, m=m, key=key: f"{m} {key}: {text}")


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
    # once member 1 stops (n_epochs=1) the other members' later epochs are computed
    # without it, their weights gathered in the stored layout: the same GEMM kernels, bit
    # for bit
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
    # its last epochs computed alone: a batch of one runs other GEMM kernels (the value
    # head's one output), so to float32 rounding
    assert_same_member(a, b, 0, WEIGHT_ATOL)


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


# ------------------------------------------------------------ independent members


def alone(pop_config, market, seed: int, steps: int) -> Population:
    lone = Population([pop_config], market=market, member_seeds=[seed])
    for _ in range(steps):
        lone.step()
    return lone


@pytest.mark.precision
@pytest.mark.parametrize("extra", [(), ("env.action=continuous", "clip_vloss=true")])
def test_an_independent_member_is_what_it_would_be_alone(market, extra):
    # fp32: under bf16 autocast a matmul's rounding depends on how many members it stacks
    extra = ("amp=false", *extra)
    configs = [tiny_config(*extra, "target_kl=null"),
               tiny_config(*extra, "target_kl=null", "learning_rate=0.01", "n_epochs=1"),
               tiny_config(*extra, "target_kl=0.001", "n_epochs=3", "gamma=0.9")]
    batch = Population(configs, market=market, member_seeds=[0, 0, 5])
    for _ in range(4):
        batch.step()
    for m, seed in enumerate([0, 0, 5]):
        lone = alone(configs[m], market, seed, 4)
        state = member_state(lone, 0)
        # the same draws; weights to float32 rounding (members whose own configs differ
        # take their gamma, lambda and KL threshold as [P] tensors, a lone member as floats:
        # 1 ulp apart, measured not to grow), so discrete actions are equal and continuous
        # ones (mean + std * noise) that close; the normaliser's scale (1 / std, large for
        # quiet features) to the same relative rounding
        torch.testing.assert_close(batch.storage.actions[:, m * 4:(m + 1) * 4],
                                   lone.storage.actions, rtol=0, atol=WEIGHT_ATOL)
        for key, value in member_state(batch, m).items():
            torch.testing.assert_close(value, state[key], atol=WEIGHT_ATOL,
                                       rtol=WEIGHT_ATOL if key == "obs_scale" else 0,
                                       msg=f"member {m}: {key}")


def test_one_independent_member_is_the_plain_engine_and_a_trainer_bit_for_bit(market):
    plain = Population(tiny_config("seed=3"), 1, market=market)
    independent = Population([tiny_config()], market=market, member_seeds=[3])
    for _ in range(3):
        plain.step()
        independent.step()
    assert_same_member(plain, independent, 0)


def test_independent_members_resume_bit_for_bit(market):
    configs = [tiny_config(), tiny_config("learning_rate=0.01")]
    whole = Population(configs, market=market, member_seeds=[1, 2])
    half = Population(configs, market=market, member_seeds=[1, 2])
    for _ in range(2):
        whole.step()
        half.step()
    state = half.state_dict()
    resumed = Population(configs, market=market, member_seeds=[1, 2])
    resumed.load_state_dict(state)
    for _ in range(2):
        whole.step()
        resumed.step()
    for m in range(2):
        assert_same_member(whole, resumed, m)


def test_keep_drops_members_and_the_rest_continue_exactly(market):
    configs = [tiny_config(), tiny_config("learning_rate=0.01"), tiny_config("gamma=0.9")]
    full = Population(configs, market=market, member_seeds=[0, 1, 2])
    part = Population(configs, market=market, member_seeds=[0, 1, 2])
    for _ in range(2):
        full.step()
        part.step()
    kept = part.keep([2, 0])
    assert kept.population == 2 and kept.env.num_envs == 2 * part.n
    assert kept.update == part.update and kept.global_step == part.global_step
    assert part.population == 3  # left as it was
    for _ in range(3):
        full.step()
        kept.step()
    for new, old in ((0, 2), (1, 0)):
        state = member_state(kept, new)
        for key, value in member_state(full, old).items():
            assert torch.equal(value, state[key]), (old, key)
    assert part.keep([0, 1, 2]) is part
    for bad in ([], [0, 0], [3], [-1]):
        with pytest.raises(PopulationError, match="keep"):
            part.keep(bad)


def test_a_member_that_joins_mid_run_is_what_it_would_be_alone(market):
    """join: a fresh member takes rows in a running population on its own clock (schedules,
    Adam steps, env streams, generator); the running members continue exactly."""
    configs = [tiny_config("target_kl=null"), tiny_config("learning_rate=0.01", "gamma=0.9")]
    # a warmup longer than the others' steps: its schedule must run on its own clock
    late = tiny_config("target_kl=null", "gae_lambda=0.8", "lr_warmup_steps=256")
    running = Population(configs, market=market, member_seeds=[0, 1])
    reference = Population(configs, market=market, member_seeds=[0, 1])
    for _ in range(2):
        running.step()
        reference.step()
    joined = running.join(Population([late], market=market, member_seeds=[7]))
    assert joined.population == 3 and joined.global_step == running.global_step
    assert joined.start_steps.tolist() == [0, 0, running.global_step]
    assert [joined.member_update(m) for m in range(3)] == [2, 2, 0]
    for _ in range(3):
        joined.step()
        reference.step()
    for m in range(2):
        assert_same_member(reference, joined, m)
    lone = alone(late, market, 7, 3)
    assert joined.member_step(2) == lone.global_step
    for key, value in member_state(lone, 0).items():
        torch.testing.assert_close(member_state(joined, 2)[key], value, rtol=0,
                                   atol=WEIGHT_ATOL, msg=f"joined member: {key}")
    assert joined.member_hparams(2) == pytest.approx(lone.member_hparams(0))
    # a joined population snapshots and resumes like any other
    resumed = Population(joined.member_configs, market=market, member_seeds=[0, 1, 7])
    resumed.load_state_dict(joined.state_dict())
    assert resumed.start_steps.tolist() == joined.start_steps.tolist()
    joined.step()
    resumed.step()
    for m in range(3):
        assert_same_member(joined, resumed, m)
    # keep and join at once: the kept members then the new one, one engine built
    both = running.join(Population([late], market=market, member_seeds=[7]), keep=[1])
    assert both.population == 2 and both.member_seeds == [1, 7]
    assert both.start_steps.tolist() == [0, running.global_step]
    for key, value in member_state(running, 1).items():
        assert torch.equal(member_state(both, 0)[key], value), key
    for bad in ([], [0, 0], [2]):
        with pytest.raises(PopulationError, match="join: keep"):
            running.join(Population([late], market=market, member_seeds=[7]), keep=bad)
    with pytest.raises(PopulationError, match="join: only independent"):
        Population(configs, market=market).join(running)
    with pytest.raises(PopulationError, match="must be shared"):
        running.join(Population([tiny_config("num_steps=32")], market=market, member_seeds=[3]))


@pytest.mark.precision
@pytest.mark.parametrize("extra", [(), ("env.action=continuous",)])
def test_members_validated_together_get_the_backtests_they_get_alone(market, extra):
    """One batched env and one forward per bar for every member (validation_evals) gives
    each member the backtest evaluate_agent gives its own Agent: equity, positions, costs."""
    from fastrl.markets.single.backtest import evaluate_agent

    configs = [tiny_config("target_kl=null", *extra),
               tiny_config("target_kl=null", "learning_rate=0.01", *extra),
               tiny_config("target_kl=null", "gamma=0.9", *extra)]
    pop = Population(configs, market=market, member_seeds=[0, 1, 2])
    for _ in range(2):
        pop.step()
    together = pop.validation_evals([2, 0], baselines=True)
    assert len(together) == 2
    for m, result in zip([2, 0], together, strict=True):
        agent = pop.member_agent(m)
        agent.network.eval()
        alone = evaluate_agent(agent, market.val, pop.env_config, baselines=True)
        assert [(b.symbol, b.strategy) for b in result.backtests] == \
            [(b.symbol, b.strategy) for b in alone.backtests]
        for a, b in zip(alone.backtests, result.backtests, strict=True):
            np.testing.assert_array_equal(a.decision_bars, b.decision_bars)
            np.testing.assert_allclose(b.positions, a.positions, rtol=0, atol=1e-6)
            np.testing.assert_allclose(b.equity, a.equity, rtol=1e-9, atol=0)
            np.testing.assert_allclose(b.step_costs, a.step_costs, rtol=1e-9, atol=1e-12)
        assert result.combined["agent"].sharpe == pytest.approx(
            alone.combined["agent"].sharpe, abs=1e-9)
    # the members trade differently, so the rows were not mixed up
    assert not np.array_equal(together[0].backtests[0].positions,
                              together[1].backtests[0].positions)


@pytest.mark.cuda
@pytest.mark.filterwarnings("ignore::DeprecationWarning:torch")
@pytest.mark.filterwarnings(r"ignore:\s*Online softmax is disabled:UserWarning")
@pytest.mark.filterwarnings("ignore:TensorFloat32 tensor cores:UserWarning")
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")
@pytest.mark.parametrize("fast", [False, True])
def test_on_cuda_a_batch_trains_validates_and_compacts(market, fast):
    """The batched study's engine on the GPU (eager fp32, and compiled with bf16 autocast):
    members with their own epochs and target KL train, a pruned member is compacted away,
    and the members' validation in one env is each member's own backtest."""
    from fastrl.markets.single.backtest import evaluate_agent

    cuda = ("device=cuda",) + (("compile=true", "amp=true") if fast
                               else ("compile=false", "amp=false"))
    configs = [tiny_config(*cuda, "target_kl=null", "n_epochs=3"),
               tiny_config(*cuda, "target_kl=1e-9", "n_epochs=3"),
               tiny_config(*cuda, "target_kl=null", "n_epochs=1", "gamma=0.9")]
    pop = Population(configs, market=market, member_seeds=[0, 0, 0])
    row = pop.step()
    assert row["epochs"] == [3.0, 1.0, 1.0]
    together = pop.validation_evals(baselines=True)
    for m, result in enumerate(together):
        agent = pop.member_agent(m)
        agent.network.eval()
        alone = evaluate_agent(agent, market.val, pop.env_config, baselines=True)
        if not fast:  # bf16 can flip a near-tie between levels; fp32 agrees
            assert result.combined["agent"].sharpe == pytest.approx(
                alone.combined["agent"].sharpe, abs=1e-6)
    def prune(progress: float, area: float) -> None:
        raise optuna.TrialPruned("pruned in the test")

    out = train_batch(configs, market, seed=0, fold=0, val_interval_steps=128,
                      reports=[None, prune, None])
    assert isinstance(out[1], optuna.TrialPruned)
    assert isinstance(out[0], RunResult) and isinstance(out[2], RunResult)
    assert out[0].steps == [0, 128, 256, 384] and np.isfinite(out[2].excess).all()


def test_member_seeds_must_match_the_members(market):
    with pytest.raises(PopulationError, match="member_seeds"):
        Population([tiny_config()] * 2, market=market, member_seeds=[0])


# ------------------------------------------------------------------ batched training runs


def test_train_batch_of_one_is_train_run(market):
    config = tiny_config()
    alone = train_run(config, market, seed=0, fold=0, val_interval_steps=128)
    (batched,) = train_batch([config], market, seed=0, fold=0, val_interval_steps=128)
    assert batched.steps == alone.steps == [0, 128, 256, 384]
    assert batched.score == pytest.approx(alone.score, abs=1e-9)
    assert batched.excess == pytest.approx(alone.excess, abs=1e-9)
    assert batched.val_returns == pytest.approx(alone.val_returns, abs=1e-12)


def test_a_members_curve_is_its_curve_alone_whatever_the_others_do(market):
    """Members are independent (own network seed, env streams and generator), and ended
    members are compacted away: a member's curve is the one it has alone, whatever the other
    members' configs and whether they are pruned."""
    base = tiny_config("target_kl=null")
    one = train_batch([base, tiny_config("target_kl=null", "learning_rate=0.01"),
                       tiny_config("target_kl=null", "gamma=0.9")], market, seed=0, fold=0,
                      val_interval_steps=128)
    calls = {"n": 0}

    def prune_at_once(progress: float, area: float) -> None:
        calls["n"] += 1
        raise optuna.TrialPruned("pruned in the test")

    two = train_batch([base, tiny_config("target_kl=null", "gae_lambda=0.5",
                                         "weight_decay=0.1"), base],
                      market, seed=0, fold=0, val_interval_steps=128,
                      reports=[None, prune_at_once, None])
    assert calls["n"] == 1 and isinstance(two[1], optuna.TrialPruned)
    assert one[0].excess == two[0].excess and one[0].sharpe == two[0].sharpe
    assert one[0].val_returns == two[0].val_returns
    assert two[2].steps == [0, 128, 256, 384]
    assert two[2].excess == one[0].excess  # the same config, its own curve
    (lone,) = train_batch([configs_1 := tiny_config("target_kl=null", "learning_rate=0.01")],
                          market, seed=0, fold=0, val_interval_steps=128)
    seq = train_run(configs_1, market, seed=0, fold=0, val_interval_steps=128)
    assert lone.excess == one[1].excess and lone.sharpe == one[1].sharpe
    assert seq.excess == one[1].excess and seq.val_returns == one[1].val_returns


def test_one_config_on_several_seeds_is_each_seeds_run_alone(market):
    """The confirmation trains a config's fresh seeds as one population (own seed per
    member): each member is its seed's sequential run, and the kept agent is its policy."""
    from fastrl.markets.single.backtest import evaluate_agent
    from fastrl.strategies import COMBINED

    config = tiny_config("target_kl=null")
    batched = train_batch([config] * 3, market, seed=[5, 7, 5], fold=0,
                          val_interval_steps=128, keep_agents=True)
    for run, seed in zip(batched, [5, 7, 5], strict=True):
        alone = train_run(config, market, seed=seed, fold=0, val_interval_steps=128,
                          keep_agent=True)
        assert run.seed == seed and run.steps == alone.steps
        assert run.excess == pytest.approx(alone.excess, abs=1e-9)
        assert run.val_returns == pytest.approx(alone.val_returns, abs=1e-12)
        ours = evaluate_agent(run.agent, market.val, config.env).returns(COMBINED, "agent")
        its = evaluate_agent(alone.agent, market.val, config.env).returns(COMBINED, "agent")
        np.testing.assert_allclose(ours, its, rtol=0, atol=1e-12)
    assert batched[0].excess == batched[2].excess  # the same seed, the same run
    assert batched[0].excess != batched[1].excess
    with pytest.raises(ValueError, match="2 seeds for 3 configs"):
        train_batch([config] * 3, market, seed=[1, 2], fold=0)


def test_freed_rows_are_refilled_and_a_joined_run_is_its_run_alone(market):
    """Continuous batching: when a member is pruned its rows go to the next run refill
    gives; that run trains its own full budget on its own clock and its curve is the one it
    has alone, and the running members' curves do not change."""
    first, pruned = tiny_config("target_kl=null"), tiny_config("target_kl=null", "gamma=0.9")
    late = tiny_config("target_kl=null", "learning_rate=0.01", "lr_warmup_steps=256")
    offered, ended = [], []

    def prune_at_once(progress: float, area: float) -> None:
        raise optuna.TrialPruned("pruned in the test")

    def refill(free: int) -> list[BatchMember]:
        offered.append(free)
        return [BatchMember(late, 3)] if len(offered) == 1 else []

    out = train_batch([first, pruned], market, seed=0, fold=0, val_interval_steps=128,
                      reports=[None, prune_at_once], refill=refill,
                      on_end=lambda m, outcome: ended.append((m, type(outcome).__name__)))
    assert offered == [1, 1]  # a second offer got nothing: refill is not asked again
    assert len(out) == 3 and isinstance(out[1], optuna.TrialPruned)
    assert ended == [(1, "TrialPruned"), (0, "RunResult"), (2, "RunResult")]
    (alone_first,) = train_batch([first], market, seed=0, fold=0, val_interval_steps=128)
    (alone_late,) = train_batch([late], market, seed=3, fold=0, val_interval_steps=128)
    assert out[0].steps == out[2].steps == [0, 128, 256, 384]
    assert out[0].excess == alone_first.excess and out[0].sharpe == alone_first.sharpe
    assert out[2].excess == alone_late.excess and out[2].sharpe == alone_late.sharpe
    assert out[2].val_returns == pytest.approx(alone_late.val_returns, abs=1e-12)
    assert out[2].seed == 3 and out[2].seconds[0] == 0.0
    with pytest.raises(ValueError, match="refill returned 2 members for 1 free slots"):
        train_batch([first, pruned], market, seed=0, fold=0, val_interval_steps=128,
                    reports=[None, prune_at_once],
                    refill=lambda free: [BatchMember(late, 1), BatchMember(late, 2)])


def test_the_confirmation_batched_as_on_a_gpu_is_the_one_after_another(market):
    from fastrl.tune.report_study import confirm_and_test

    confirm_market = SimpleNamespace(train=market.train, val=market.val,
                                     test=random_block(n_bars=60, seed=2), normaliser=None)
    configs = {"tuned": tiny_config("target_kl=null"),
               "fast": tiny_config("target_kl=null", "learning_rate=0.01"),
               "baseline": tiny_config("target_kl=null", "gamma=0.9")}
    # fold 0's layout (no confirmation window): only the seeds and the grid are read
    study = ConfirmationSettings(symbols=["A"], freq="1d", val_days=1, test_days=1, timesteps=1,
                                 seeds=1, confirm_seeds=2, confirm_days=0,
                                 val_interval_steps=128)
    one_by_one, together = (confirm_and_test(configs, study, confirm_market, lambda line: None,
                                             batched=batched) for batched in (False, True))
    for name in configs:
        ours, its = together["confirmation"][name], one_by_one["confirmation"][name]
        assert ours["seeds"] == its["seeds"] == [1000, 1001]
        assert ours["scores"] == pytest.approx(its["scores"], abs=1e-9)
        assert [r["sharpe"] for r in together["test"][name]["runs"]] == pytest.approx(
            [r["sharpe"] for r in one_by_one["test"][name]["runs"]], abs=1e-9)


def test_a_batch_asks_its_verdicts_once_every_member_reported_the_step(market):
    calls = []

    def reporter(m):
        def report(progress, area):
            calls.append(("report", m, progress))

            def verdict():
                calls.append(("verdict", m, progress))
                if m == 1 and progress >= 0.5:
                    raise optuna.TrialPruned("pruned in the test")
            return verdict
        return report

    out = train_batch([tiny_config()] * 3, market, seed=0, fold=0, val_interval_steps=128,
                      reports=[reporter(m) for m in range(3)])
    assert isinstance(out[1], optuna.TrialPruned) and isinstance(out[0], RunResult)
    for progress in sorted({c[2] for c in calls}):
        kinds = [(kind, m) for kind, m, at in calls if at == progress]
        members = sorted(m for kind, m in kinds if kind == "report")
        # all of this step's reports first, then the verdicts, for the same members
        assert kinds == [("report", m) for m in members] + [("verdict", m) for m in members]
    assert all(m != 1 for kind, m, at in calls if at > 2 / 3)  # pruned at 2/3: gone after


def _study_with(values_by_trial, running):
    """A maximising study: each trial's intermediate values {step: value}; the trials named
    in ``running`` stay running, the others complete."""
    study = optuna.create_study(direction="maximize")
    trials = []
    for number, values in enumerate(values_by_trial):
        trial = study.ask()
        for step, value in values.items():
            trial.report(value, step)
        trials.append(trial)
        if number not in running:
            study.tell(trial, max(values.values()))
    return study, trials


def test_the_peer_median_rule_is_median_pruner_when_no_other_trial_runs():
    rng = np.random.default_rng(0)
    for _ in range(60):
        completed = [{s: float(rng.normal()) for s in range(int(rng.integers(1, 5)))}
                     for _ in range(int(rng.integers(0, 6)))]
        mine = {s: float(rng.normal()) for s in range(int(rng.integers(1, 5)))}
        study, trials = _study_with(completed + [mine], running={len(completed)})
        frozen = study._storage.get_trial(trials[-1]._trial_id)
        expected = optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2).prune(
            study, frozen)
        assert peer_median_prune(study, frozen, 3, 2) == expected


def test_the_peer_median_rule_judges_running_peers_at_the_step():
    # four members of a first batch at step 2, nothing completed: the lower half goes
    study, trials = _study_with([{2: v} for v in (1.0, 2.0, 3.0, 4.0)], running={0, 1, 2, 3})
    verdicts = [peer_median_prune(study, study._storage.get_trial(t._trial_id), 3, 2)
                for t in trials]
    assert verdicts == [True, True, False, False]
    assert optuna.pruners.MedianPruner(3, 2).prune(
        study, study._storage.get_trial(trials[0]._trial_id)) is False  # the old rule: none
    # before the warm-up step and with fewer than 3 peers at the step: no verdict
    study, trials = _study_with([{1: v} for v in (1.0, 2.0, 3.0, 4.0)], running={0, 1, 2, 3})
    assert not peer_median_prune(study, study._storage.get_trial(trials[0]._trial_id), 3, 2)
    study, trials = _study_with([{2: 1.0}, {2: 5.0}, {1: 9.0}], running={0, 1, 2})
    assert not peer_median_prune(study, study._storage.get_trial(trials[0]._trial_id), 3, 2)


def test_a_diverged_member_fails_alone(market, monkeypatch):
    original = Population.step

    def poisoned(self, raise_on_divergence=True):
        row = original(self, raise_on_divergence=raise_on_divergence)
        if self.update == 1:
            with torch.no_grad():
                self.params["policy_head.weight"][1].fill_(float("nan"))
            row["diverged"] = [1]
        return row

    monkeypatch.setattr(Population, "step", poisoned)
    out = train_batch([tiny_config()] * 3, market, seed=0, fold=0, val_interval_steps=128)
    assert isinstance(out[1], TrialDiverged)
    assert isinstance(out[0], RunResult) and isinstance(out[2], RunResult)
    assert all(np.isfinite(out[0].excess))


# ------------------------------------------------------------------------- batched studies


def test_a_batch_of_one_trial_scores_as_the_sequential_trial(tiny_space, tmp_path):
    space = load_space(tiny_space)
    records = []
    for name in ("sequential", "batched"):
        runner = TrialRunner(settings(tiny_space, sampler_seed=7), space,
                             study_dir=tmp_path / name)
        study = open_study(make_storage(None, tmp_path / name), name, runner.settings, 1)
        trial = claim_trial(study)
        records.append(runner.run_trial(study, trial) if name == "sequential"
                       else runner.run_batch(study, [trial])[0])
    sequential, batched = records
    assert sequential.params == batched.params and batched.state == "COMPLETE"
    assert batched.score == pytest.approx(sequential.score, abs=WEIGHT_ATOL)
    curve_a, curve_b = sequential.runs[0]["curve"], batched.runs[0]["curve"]
    assert curve_a["steps"] == curve_b["steps"]
    assert curve_b["excess"] == pytest.approx(curve_a["excess"], abs=WEIGHT_ATOL)


def test_cli_batch_of_two_leaves_what_a_sequential_study_leaves(tiny_space, tmp_path):
    folders = {}
    for name, extra in (("sequential", ()), ("batched", ("--batch", "2"))):
        folders[name] = tmp_path / name
        args = cli_args(tiny_space, folders[name], "--no-report", "--sampler-seed", "3",
                        *extra, trials=3, timesteps=128)
        assert tune_main(args) == 0
    for name, folder in folders.items():
        assert (folder / "best.yaml").is_file() and (folder / "trials.csv").is_file(), name
    seq = sorted((folders["sequential"] / "trials").glob("trial_*.json"))
    bat = sorted((folders["batched"] / "trials").glob("trial_*.json"))
    assert len(seq) == len(bat) == 3
    for a, b in zip(seq, bat, strict=True):
        assert set(json.loads(a.read_text())) == set(json.loads(b.read_text()))
    with open(folders["batched"] / "trials.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    with open(folders["sequential"] / "trials.csv", newline="") as stream:
        assert list(csv.DictReader(stream))[0].keys() == rows[0].keys()
    assert len(rows) == 3


@pytest.mark.parametrize("storage", ["journal", "postgresql"])
def test_two_workers_run_their_own_batches(tiny_space, tmp_path, request, storage):
    """--workers 2 --batch 2: each worker claims and trains its own batches; the study runs
    exactly its budget, on the journal file or a real PostgreSQL server (heartbeats on)."""
    extra: list[str] = []
    where: Any = tmp_path / "study"
    if storage == "postgresql":
        where = request.getfixturevalue("postgres_url")
        extra = ["--storage", where, "--heartbeat", "1"]
    args = cli_args(tiny_space, tmp_path / "study", "--workers", "2", "--batch", "2",
                    "--no-report", "--study", "batched", *extra, trials=6, timesteps=512)
    code = tune_main(args)
    worker_log = "".join(p.read_text() for p in (tmp_path / "study").glob("worker_*.log"))
    assert code == 0, f"exit {code}; worker log:\n{worker_log}"
    trials = _trials_of(where, "batched")
    _check_shared_study(trials, 6)
    for trial in trials:  # a batch is one worker's: its trials name each other
        mates = [t for t in trials if t.number in trial.user_attrs["batch"]]
        assert trial.number in trial.user_attrs["batch"] and len(mates) >= 1
        assert {t.user_attrs["worker"] for t in mates} == {trial.user_attrs["worker"]}
    assert (tmp_path / "study" / "best.yaml").is_file()


@pytest.mark.parametrize("extra, words", [
    (["--batch", "0"], ["--batch", ">= 1"]),
    (["--batch", "-2"], ["--batch", ">= 1"]),
    (["--batch", "2", "--pbt"], ["--batch", "--pbt"]),
])
def test_bad_batch_is_one_line_and_exit_2(tiny_space, tmp_path, capsys, extra, words):
    assert tune_main(cli_args(tiny_space, tmp_path / "study") + extra) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("fastrl-tune: error:")
    for word in words:
        assert word in err


@pytest.mark.parametrize("space_text, one_group", [
    ("learning_rate: {type: float, low: 1.0e-4, high: 3.0e-3, log: true}\n"
     "gamma: {type: float, low: 0.9, high: 0.999}\n"
     "gae_lambda: {type: float, low: 0.8, high: 1.0}\n"
     "n_epochs: {type: int, low: 1, high: 2}\n"
     "weight_decay: {type: float, low: 0.0, high: 0.01}\n"
     "target_kl: {type: float, low: 0.005, high: 0.05}\n", True),
    # a shape knob is drawn once per batch, by its first trial: still one population
    ("width: {type: categorical, choices: [8, 16]}\n"
     "depth: {type: int, low: 1, high: 3}\n"
     "learning_rate: {type: float, low: 1.0e-4, high: 3.0e-3, log: true}\n", True),
    # trials queued with their own shapes (enqueued, or a resumed study's) keep them: one
    # population per shape
    ("width: {type: categorical, choices: [8, 16]}\n"
     "learning_rate: {type: float, low: 1.0e-4, high: 3.0e-3, log: true}\n", False),
])
def test_a_batch_trains_same_shaped_trials_as_one_population(tmp_path, monkeypatch,
                                                             space_text, one_group):
    from fastrl.ppo.members import shared_key
    from fastrl.tune import batched  # the module that calls train_batch

    path = tmp_path / "space.yaml"
    path.write_text(space_text)
    calls: list[list] = []
    real = batched.train_batch

    def recording(configs, *args, **kwargs):
        call = list(configs)  # a population's members: the first ones, then those joining
        calls.append(call)
        refill = kwargs.get("refill")
        if refill is not None:
            def counting(free):
                new = refill(free)
                call.extend(m.config for m in new)
                return new
            kwargs["refill"] = counting
        return real(configs, *args, **kwargs)

    monkeypatch.setattr(batched, "train_batch", recording)
    runner = TrialRunner(settings(path, timesteps=128, sampler_seed=1), load_space(path),
                         study_dir=tmp_path / "study", batch=3)
    study = open_study(make_storage(None, tmp_path / "study"), "b", runner.settings, 3)
    if not one_group:  # three more slots, queued with their widths: a second batch
        for width in (8, 16, 8):
            study.enqueue_trial({"width": width})
    n = 3 if one_group else 6
    assert runner.run(study) == n
    assert sum(len(c) for c in calls) == n
    for configs in calls:
        assert len({shared_key(c) for c in configs}) == 1
    trials = study.get_trials()
    for knob in ("width", "depth"):  # the first batch: its shape drawn once
        assert len({t.params.get(knob) for t in trials[:3]}) == 1
    if one_group:
        assert len(calls) == 1 and len(calls[0]) == 3
    else:
        # the queued trials keep their widths: those of the first batch's width take its
        # freed rows (continuous batching), the others train as a population of their own
        assert [t.params["width"] for t in trials[3:]] == [8, 16, 8]
        width = trials[0].params["width"]
        joining = sum(t.params["width"] == width for t in trials[3:])
        assert len(calls) == 2 and [len(c) for c in calls] == [3 + joining, 3 - joining]
    # the first batch has too few peers to prune (n_startup_trials 3); the second may be
    assert [t.state.name for t in trials[:3]] == ["COMPLETE"] * 3
    assert all(t.state.name in ("COMPLETE", "PRUNED") for t in trials[3:])
    assert all(t.user_attrs["batch"] == [0, 1, 2] for t in trials[:3])
    assert len({json.dumps(t.params, sort_keys=True) for t in trials}) == n


def test_ctrl_c_in_a_batch_marks_its_trials_and_resume_runs_them(tiny_space, tmp_path,
                                                                 monkeypatch):
    from fastrl.tune import batched  # the module that calls train_batch

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    runner = TrialRunner(settings(tiny_space, timesteps=128), load_space(tiny_space),
                         study_dir=tmp_path, batch=2)
    storage = make_storage(None, tmp_path)
    study = open_study(storage, "c", runner.settings, 2)
    monkeypatch.setattr(batched, "train_batch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        runner.run(study)
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["FAIL", "FAIL"]
    assert all(t.user_attrs["interrupted"] for t in trials)
    monkeypatch.undo()
    resumed = open_study(storage, "c", runner.settings, 2, resume=True)
    assert runner.run(resumed) == 2
    assert [t.state.name for t in resumed.get_trials()][2:] == ["COMPLETE", "COMPLETE"]


@pytest.mark.parametrize("folds", [1, 2])
def test_freed_rows_take_the_next_trials_and_each_is_told_when_it_ends(
        tiny_space, tmp_path, monkeypatch, folds):
    """Continuous batching in a study: --batch 2 with 5 trials is one call of run_batch;
    the first run's population takes every trial (2 at a time), a trial is told to the study
    when it ends, and a second fold trains the survivors as one population again."""
    from fastrl.tune import batched  # the module that calls train_batch

    calls: list[dict] = []
    real = batched.train_batch

    def recording(configs, *args, **kwargs):
        call = {"fold": kwargs["fold"], "members": len(configs), "slots": kwargs["slots"]}
        calls.append(call)
        refill = kwargs["refill"]

        def counting(free):
            new = refill(free)
            call["members"] += len(new)
            return new
        return real(configs, *args, **{**kwargs, "refill": counting})

    monkeypatch.setattr(batched, "train_batch", recording)
    runner = TrialRunner(settings(tiny_space, timesteps=256, folds=folds, sampler_seed=2),
                         load_space(tiny_space), study_dir=tmp_path, batch=2)
    study = open_study(make_storage(None, tmp_path), "continuous", runner.settings, 5)
    claimed = []
    real_claim = runner.run_batch

    def counting_batches(study, trials, **kwargs):
        claimed.append(len(trials))
        return real_claim(study, trials, **kwargs)

    monkeypatch.setattr(runner, "run_batch", counting_batches)
    assert runner.run(study) == 5
    assert claimed == [2]  # one call: the freed rows took the other three
    trials = study.get_trials()
    assert all(t.state.name in ("COMPLETE", "PRUNED") for t in trials)
    assert len({t.params["width"] for t in trials}) == 1  # the batch's shape, kept
    assert calls[0] == {"fold": 0, "members": 5, "slots": 2}
    survivors = [t for t in trials if t.state.name == "COMPLETE"]
    if folds == 2:
        assert calls[1:] == [{"fold": 1, "members": len(survivors), "slots": 2}]
        assert all(len(t.user_attrs["run_scores"]) == 2 for t in survivors)
    else:
        assert len(calls) == 1
        # told when it ended: the first trials finished before the last ones started
        assert trials[0].datetime_complete <= trials[4].datetime_start
    for trial in trials[2:]:  # a joining trial names the trials it trained beside
        assert trial.number in trial.user_attrs["batch"]
    assert len(list(tmp_path.glob("trials/trial_*.json"))) == 5


def test_no_trial_joins_after_the_deadline(tiny_space, tmp_path):
    runner = TrialRunner(settings(tiny_space, timesteps=256), load_space(tiny_space),
                         study_dir=tmp_path, batch=2)
    study = open_study(make_storage(None, tmp_path), "deadline", runner.settings, 5)
    trials = [claim_trial(study), claim_trial(study)]
    records = runner.run_batch(study, trials, deadline=0.0)  # long past
    assert [r.number for r in records] == [0, 1]
    assert [t.state.name for t in study.get_trials()].count("WAITING") == 3


def test_gae_with_per_row_gamma_and_lambda_is_each_rows_own_gae():
    from fastrl.ppo.storage import compute_gae

    g = torch.Generator().manual_seed(0)
    t, n = 7, 6
    rewards, values = torch.randn(t, n, generator=g), torch.randn(t, n, generator=g)
    dones = torch.rand(t, n, generator=g) < 0.2
    truncated = dones & (torch.rand(t, n, generator=g) < 0.5)
    final, last = torch.randn(t, n, generator=g), torch.randn(n, generator=g)
    gammas = torch.tensor([0.9, 0.9, 0.99, 0.99, 0.5, 0.5])
    lambdas = torch.tensor([0.95, 0.95, 0.0, 0.0, 1.0, 1.0])
    adv, ret = compute_gae(rewards, values, dones, truncated, final, last, gammas, lambdas)
    for row in range(0, n, 2):
        cols = slice(row, row + 2)
        a, r = compute_gae(rewards[:, cols], values[:, cols], dones[:, cols],
                           truncated[:, cols], final[:, cols], last[cols],
                           float(gammas[row]), float(lambdas[row]))
        torch.testing.assert_close(adv[:, cols], a, rtol=0, atol=1e-6)
        torch.testing.assert_close(ret[:, cols], r, rtol=0, atol=1e-6)
