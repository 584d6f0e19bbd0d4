"""Population-based training: a population of one is a Trainer, members are independent,
exploit copies exactly, the rounds and the pick use disjoint windows, the winner is replayed
on fresh seeds, bad settings are refused with a clear message."""

from __future__ import annotations

import csv
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from fastrl.cli.tune import main as tune_main
from fastrl.config import build_config
from fastrl.ppo.checkpoint import load_agent, load_checkpoint
from fastrl.ppo.members import PopulationDivergedError, PopulationError
from fastrl.ppo.population import Population
from fastrl.ppo.schedules import ScheduleSpec
from fastrl.ppo.trainer import Trainer
from fastrl.tune.pbt import PBT, explore_bounds
from test_ppo_trainer import random_block, tiny_config

pytest.importorskip("fastrl._core")

# A Trainer is the engine with one member, so P = 1 against a Trainer is equal by construction;
# against the plain reference loop (PPOLoss + torch.optim) the draws are the same, and weights
# differ only by float32 rounding of batched matmuls and the per-member Adam arithmetic.
# Those comparisons pin fp32 (FP32): under bf16 autocast a matmul's rounding depends on its
# shapes (a batch of members, a member alone, members stopped early left out).
WEIGHT_ATOL = 1e-6
FP32 = "amp=false"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def market():
    # ``pick``: window B for PBT (a block after the validation block, in a real market)
    return SimpleNamespace(train=random_block(), val=random_block(n_bars=80, seed=1),
                           pick=random_block(n_bars=80, seed=2), normaliser=None)


def make_pbt(config, population: int, ready: int, market, **kwargs) -> PBT:
    """A PBT on the in-memory market: window B from it, no replay (it needs real splits)."""
    return PBT(config, population, ready, market=market, pick_block=market.pick,
               replay_seeds=0, **kwargs)


def read_csv(path) -> list[dict[str, str]]:
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream))


def member_state(pop: Population, m: int) -> dict[str, torch.Tensor]:
    opt, norm = pop.optimizer, pop.obs_normaliser
    state = {f"param.{k}": v[m] for k, v in pop.params.items()}
    state.update({f"exp_avg.{k}": v[m] for k, v in opt.exp_avg.items()})
    state.update({f"exp_avg_sq.{k}": v[m] for k, v in opt.exp_avg_sq.items()})
    state.update(step=opt.step_count[m], obs_mean=norm.stats.mean[m],
                 obs_var=norm.stats.var[m], obs_count=norm.stats.count[m],
                 obs_shift=norm.shift[m], obs_scale=norm.scale[m],
                 reward_var=pop.reward_scaler.stats.var[m])
    return {k: v.detach().clone() for k, v in state.items()}


@pytest.mark.precision
@pytest.mark.parametrize("extra", [(), ("n_epochs=4", "optimizer=adam", "weight_decay=0.01")])
def test_population_of_one_is_a_trainer_step_for_step(market, extra):
    trainer = Trainer(tiny_config(*extra), market=market)
    pop = Population(tiny_config(*extra), 1, market=market)
    for name, value in trainer.network.state_dict().items():
        assert torch.equal(value, pop.params[name][0].detach()), name  # same initial weights
    for _ in range(3):
        row_t, row_p = trainer.step(), pop.step()
        assert torch.equal(trainer.storage.actions, pop.storage.actions)  # same draws
        assert row_p["epochs"] == [row_t["losses/epochs"]]
        assert row_p["losses/value_loss"][0] == pytest.approx(row_t["losses/value_loss"],
                                                              rel=1e-4, abs=1e-7)
        for name, value in trainer.network.state_dict().items():
            torch.testing.assert_close(pop.params[name][0].detach(), value, rtol=0,
                                       atol=WEIGHT_ATOL)
        torch.testing.assert_close(pop.obs_normaliser.stats.mean[0],
                                   trainer.obs_normaliser.stats.mean)
        assert row_p["learning_rate"][0] == pytest.approx(row_t["charts/learning_rate"])
    assert trainer.generator.get_state().equal(pop.generator.get_state())  # same stream used


@pytest.mark.precision
@pytest.mark.parametrize("extra", [(), ("env.action=continuous", "clip_vloss=true"),
                                   ("optimizer=adam", "weight_decay=0.01", "n_epochs=3")])
def test_one_engine_update_equals_the_plain_reference_loop(market, extra):
    """The Trainer and PBT share the engine, so the check against an independent PPO is this:
    one update of a one-member engine equals PPOLoss + torch.optim + ppo_update (the textbook
    single-network loop in fastrl.ppo.update) on the same batch and minibatch draws."""
    from fastrl.ppo.update import PPOLoss, make_optimizer, ppo_update

    pop = Population(tiny_config(FP32, *extra), 1, market=market)  # the reference is fp32
    pop.collect()
    pop.set_step(pop.batch_size)
    batch = pop.finish_rollout()
    network = pop.member_network(0)
    h = {k: v[0].clone() for k, v in pop.hparams.items()}
    config = pop.config
    optimizer = make_optimizer(list(network.parameters()), config.optimizer,
                               h["learning_rate"], config.weight_decay, config.adam_eps,
                               pop.device)
    generator = torch.Generator().set_state(pop.generator.get_state())
    expected = ppo_update(
        PPOLoss(network, config.clip_vloss, config.norm_adv), optimizer,
        list(network.parameters()), {k: v[0] for k, v in batch.items()},
        n_epochs=config.n_epochs, minibatch_size=config.minibatch_size,
        max_grad_norm=float(h["max_grad_norm"]), target_kl=config.target_kl,
        clip_range=h["clip_range"], ent_coef=h["ent_coef"], vf_coef=h["vf_coef"],
        clip_range_vf=pop.clip_range_vf[0].clone(), generator=generator)
    got = pop.ppo_update(batch)
    assert got["epochs"].tolist() == [expected.epochs]
    for i, name in enumerate(("policy_loss", "value_loss", "entropy", "approx_kl")):
        assert float(got["stats"][0, i]) == pytest.approx(expected.stats[name], rel=1e-4,
                                                          abs=1e-6), name
    for name, value in network.state_dict().items():
        torch.testing.assert_close(pop.params[name][0].detach(), value, rtol=0,
                                   atol=WEIGHT_ATOL, msg=name)


@pytest.mark.precision
def test_a_population_of_one_matches_with_continuous_actions(market):
    extra = ("env.action=continuous", "clip_vloss=true")
    trainer = Trainer(tiny_config(*extra), market=market)
    pop = Population(tiny_config(*extra), 1, market=market)
    for _ in range(2):
        trainer.step()
        pop.step()
    torch.testing.assert_close(pop.storage.actions, trainer.storage.actions, rtol=0, atol=1e-5)
    for name, value in trainer.network.state_dict().items():
        torch.testing.assert_close(pop.params[name][0].detach(), value, rtol=0, atol=1e-5)


@pytest.mark.precision
@pytest.mark.parametrize("target_kl", ["null", "0.01"])
@pytest.mark.parametrize("env", [(), ("env.cost=zero",), ("env.initial_cash=2e6",),
                                 ("env.half_spread_bps=0", "env.slippage_bps=0")])
def test_changing_one_members_lr_changes_nothing_in_the_others(market, target_kl, env):
    # With the KL stop on, member 2 stops its epochs early when its lr is 0.05: the others'
    # later epochs are computed without it, their weights gathered in the stored layout, so
    # on the GEMM kernels that run when every member trains (the market decides only
    # whether member 2 stops). The shared sampling stream then moves on by as many minibatch
    # draws as the longest member took, so later rollouts are compared only without the
    # stop.
    steps = 3 if target_kl == "null" else 1
    options = (FP32, f"target_kl={target_kl}", *env)
    a = Population(tiny_config(*options), 3, market=market)
    b = Population(tiny_config(*options), 3, market=market)
    b.set_member_hparams(2, learning_rate=0.05)
    for _ in range(steps):
        a.step()
        row = b.step()
    if target_kl != "null":  # the case under test: member 2 stopped, the others trained on
        assert row["epochs"][2] < row["epochs"][0] == row["epochs"][1]
    for m in (0, 1):
        for key, value in member_state(a, m).items():
            assert torch.equal(value, member_state(b, m)[key]), (m, key)
    assert not torch.equal(a.params["policy_head.weight"][2], b.params["policy_head.weight"][2])


@pytest.mark.precision
def test_exploit_copies_weights_adam_state_and_normaliser_exactly(market):
    pop = Population(tiny_config(), 3, market=market)
    pop.step()
    pop.set_member_hparams(0, ent_coef=0.05)
    before_1 = member_state(pop, 1)
    pop.copy_member(0, 2)
    source, target = member_state(pop, 0), member_state(pop, 2)
    for key, value in source.items():
        if key != "reward_var":
            assert torch.equal(target[key], value), key
    assert torch.equal(target["reward_var"], source["reward_var"])
    assert pop.member_hparams(2) == pop.member_hparams(0)
    for key, value in member_state(pop, 1).items():  # bystanders untouched
        assert torch.equal(value, before_1[key]), key
    pop.step()  # and the copy trains on


def test_pbt_refuses_a_portfolio_config(market):
    # the engine itself trains portfolio members (a portfolio Trainer is one); PBT does not yet
    with pytest.raises(PopulationError, match="portfolio"):
        PBT(tiny_config("portfolio.enabled=true"), 2, 64, market=market)


@pytest.mark.parametrize("population", [0, -1, 2.5, True])
def test_a_bad_population_size_is_refused(market, population):
    with pytest.raises(PopulationError, match="population must be an integer >= 1"):
        Population(tiny_config(), population, market=market)


def test_exploit_copies_top_into_bottom_and_explore_stays_in_bounds(market):
    runner = make_pbt(tiny_config(), 4, 64, market)
    runner.pop.step()
    copies = runner.exploit_and_explore([3.0, 2.0, float("nan"), 1.0])  # nan ranks last
    assert copies == {2: 0}
    for name, value in runner.pop.params.items():
        assert torch.equal(value[2], value[0]), name
    bounds = explore_bounds()
    for m in range(4):
        for name, value in runner.pop.member_hparams(m).items():
            low, high, _ = bounds[name]
            seed_value = runner.pop.seed_values(runner.pop.global_step)[name]
            if m > 0 and seed_value > 0:  # member 0 is the seed config, unexplored
                assert low * (1 - 1e-6) <= value <= high * (1 + 1e-6), (m, name, value)


def test_pbt_leaves_records_and_a_winner_that_eval_and_train_read(market, tmp_path):
    runner = make_pbt(tiny_config("total_timesteps=256"), 4, 128, market,
                      run_dir=tmp_path / "pbt")
    result = runner.run()
    files = result.files
    for name in ("hparams", "lineage", "plot", "winner_config", "summary", "report",
                 "report_html", "winner_checkpoint"):
        assert files[name].is_file(), name
    lineage = read_csv(files["lineage"])
    assert len(lineage) == 2 * 4 and {r["round"] for r in lineage} == {"1", "2"}
    # the last round's rows carry both scores: window A's and the pick's on window B
    assert [float(r["pick_sharpe"]) for r in lineage if r["round"] == "2"] == \
        pytest.approx(result.pick_scores, rel=1e-12)
    assert all(r["pick_sharpe"] == "" for r in lineage if r["round"] == "1")
    summary = json.loads(files["summary"].read_text())
    assert summary["final_val_sharpe"] == pytest.approx(result.final_scores)
    assert summary["pick_sharpe"] == pytest.approx(result.pick_scores)
    assert summary["winner"] == result.winner == int(np.argmax(result.pick_scores))
    assert summary["replay"] is None and "unconfirmed" in summary["verdict"]
    assert summary["dsr"]["n_trials"] == 4 and "reading" in summary["dsr"]
    report = files["report"].read_text()
    for needle in ("window B", "Deflated Sharpe Ratio", "unconfirmed", "A (rounds)",
                   "B (pick)"):
        assert needle in report, needle
    exploited = [r for r in lineage if r["event"] == "exploit"]
    assert len(exploited) == 1 and exploited[0]["parent"] != exploited[0]["member"]
    assert len(read_csv(files["hparams"])) == 4 * 4  # updates x members
    # fastrl-eval's loader reads the winner; its weights are the winning member's
    agent = load_agent(tmp_path / "pbt" / "winner")
    for name, value in agent.network.state_dict().items():
        assert torch.equal(value, runner.pop.params[name][result.winner].detach()), name
    # the checkpoint holds the member's env rows and observation, so a resume continues them
    state = load_checkpoint(files["winner_checkpoint"])["trainer"]
    n = runner.pop.n
    rows = slice(result.winner * n, (result.winner + 1) * n)
    assert torch.equal(state["env_obs"], runner.pop.raw_obs[rows])
    assert np.array_equal(np.asarray(state["env"]["equity"]),
                          runner.pop.env.get_state()["equity"][rows])
    # fastrl-train --config winner.yaml replays the lineage schedule at every update
    spec = ScheduleSpec.from_config(build_config(config_file=files["winner_config"]))
    for name in ("learning_rate", "ent_coef", "clip_range"):
        for step, value in result.winner_schedule[name][1:]:
            assert spec.values_at(step)[name] == pytest.approx(value, rel=1e-12), (name, step)
    assert np.isfinite(result.winner_val_sharpe) and np.isfinite(result.winner_pick_sharpe)
    # winner.yaml is laid out as the replay trains it: every bar before window C
    replayed = build_config(config_file=files["winner_config"])
    assert (replayed.data.test_days, replayed.data.val_days) == (30, 120)


def _interrupt_after_round(rounds: int):
    """A callback that raises KeyboardInterrupt (as Ctrl-C would) once ``rounds`` are done."""
    done = []

    def callback(row: dict) -> None:
        if "val_sharpe" in row:
            done.append(row["global_step"])
            if len(done) == rounds:
                raise KeyboardInterrupt
    return callback


def test_an_interrupted_run_resumes_to_the_uninterrupted_result(market, tmp_path):
    """Ctrl-C after round 1 of 3, PBT.resume from pbt_state.pt: weights, records, scores
    and winner equal the uninterrupted run's exactly."""
    config = tiny_config("total_timesteps=384")
    whole_runner = make_pbt(config, 4, 128, market, run_dir=tmp_path / "whole")
    whole = whole_runner.run()
    runner = make_pbt(config, 4, 128, market, run_dir=tmp_path / "cut",
                      callback=_interrupt_after_round(1))
    with pytest.raises(KeyboardInterrupt):
        runner.run()
    assert runner.pop.global_step == 128 and (tmp_path / "cut" / "pbt_state.pt").is_file()
    resumed_runner = PBT.resume(tmp_path / "cut", market=market, pick_block=market.pick)
    assert resumed_runner.pop.global_step == 128 and resumed_runner.rounds == 1
    assert resumed_runner.windows == whole_runner.windows and resumed_runner.replay_seeds == 0
    resumed = resumed_runner.run()
    assert resumed.final_scores == whole.final_scores and resumed.winner == whole.winner
    assert resumed.pick_scores == whole.pick_scores and resumed.dsr == whole.dsr
    assert resumed.lineage == whole.lineage and resumed.rounds == whole.rounds == 3
    assert resumed_runner.rows == whole_runner.rows
    for name, value in whole_runner.pop.params.items():
        assert torch.equal(value, resumed_runner.pop.params[name]), name
    for name, value in whole_runner.pop.optimizer.exp_avg_sq.items():
        assert torch.equal(value, resumed_runner.pop.optimizer.exp_avg_sq[name]), name
    a, b = load_agent(tmp_path / "whole" / "winner"), load_agent(tmp_path / "cut" / "winner")
    for name, value in a.network.state_dict().items():
        assert torch.equal(value, b.network.state_dict()[name]), name


def test_a_population_state_that_does_not_fit_is_refused_by_name(market, tmp_path):
    pop = Population(tiny_config(), 2, market=market)
    state = pop.state_dict()
    bigger = Population(tiny_config(), 3, market=market).state_dict()
    with pytest.raises(PopulationError, match="holds 3 members"):
        pop.load_state_dict(bigger)
    before = {k: v.clone() for k, v in pop.params.items()}
    key = next(k for k in state["params"] if k.endswith("weight"))
    broken = dict(state, params={**state["params"], key: torch.zeros(2, 3, 3)})
    with pytest.raises(PopulationError, match=f"params.{key}"):
        pop.load_state_dict(broken)
    for k, v in pop.params.items():
        assert torch.equal(v, before[k]), k  # nothing written
    with pytest.raises(FileNotFoundError, match="pbt_state.pt"):
        PBT.resume(tmp_path / "nothing-here", market=market)


def test_a_population_state_saved_before_the_benchmark_book_resumes_bit_for_bit(market):
    # a PBT state of an older fastrl: its simulator snapshot has no benchmark book
    source = Population(tiny_config(), 2, market=market)
    source.step()
    state = source.state_dict()
    later = ("bench_position", "bench_shares", "bench_cash")
    old = {**state, "env": {k: v for k, v in state["env"].items() if k not in later}}
    full, resumed = (Population(tiny_config(), 2, market=market) for _ in range(2))
    full.load_state_dict(state)
    resumed.load_state_dict(old)
    full.step()
    resumed.step()
    for m in range(2):
        a, b = member_state(full, m), member_state(resumed, m)
        for key, value in a.items():
            assert torch.equal(value, b[key]), key
    for key, value in full.env.get_state().items():
        np.testing.assert_array_equal(value, resumed.env.get_state()[key], err_msg=key)


TINY_SET = ["num_envs=4", "num_steps=16", "minibatch_size=32", "hidden_sizes=[16,16]",
            "device=cpu", "torch_threads=1"]


def synthetic_config(**overrides):
    """A tiny config on the synthetic market (3,000 daily bars): PBT builds its windows."""
    from fastrl.config import resolve_defaults

    return resolve_defaults(build_config("fast", overrides={
        "total_timesteps": 256, "data.symbols": ["A"], "data.source": "synthetic",
        "data.test_days": 30, "data.val_days": 60, **overrides}, set_options=TINY_SET))


def test_fastrl_tune_pbt_resume_finishes_an_interrupted_run(tmp_path, capsys):
    config = synthetic_config()
    run_dir = tmp_path / "pbt"
    with pytest.raises(KeyboardInterrupt):
        PBT(config, 4, 128, pick_days=40, confirm_days=40, replay_seeds=0, run_dir=run_dir,
            callback=_interrupt_after_round(1)).run()
    assert tune_main(["--pbt", "--resume", str(run_dir), "--population", "4"]) == 2
    assert "drop --population" in capsys.readouterr().err
    # the windows and the replay are the run's saved settings too
    assert tune_main(["--pbt", "--resume", str(run_dir), "--pick-days", "30",
                      "--replay-seeds", "2", "--no-replay"]) == 2
    assert "drop --pick-days, --replay-seeds, --no-replay" in capsys.readouterr().err
    assert tune_main(["--pbt", "--resume", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "resumed at step 128 of 256" in out and "winner: member" in out
    assert (run_dir / "winner" / "checkpoints" / "final.pt").is_file()
    assert not (run_dir / "pbt_state.pt").exists()  # finished: nothing left to resume
    assert len(read_csv(run_dir / "lineage.csv")) == 2 * 4
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["windows"]["pick"]["days"] == 40 and summary["replay"] is None


@pytest.mark.parametrize("flags, message", [
    (["--population", "1"], "--population must be >= 2"),
    (["--population", "4", "--ready", "100"], "--ready"),
    (["--population", "4", "--ready", "999936"], "beyond the budget"),
    (["--population", "4", "--pick-days", "0"], "--pick-days must be >= 1, got 0"),
    (["--population", "4", "--confirm-days", "-3"], "--confirm-days must be >= 1, got -3"),
    (["--population", "4", "--replay-seeds", "0"], "--replay-seeds must be >= 1, got 0"),
    (["--population", "4", "--replay-seeds", "2", "--no-replay"], "exclude each other"),
    # the synthetic market has 3,000 bars: windows that leave too few are named by flag
    (["--population", "4", "--pick-days", "5000"], "--pick-days 5000"),
    (["--population", "4", "--confirm-days", "5000"], "--confirm-days 5000"),
    (["--population", "4", "--val-days", "2900"], "--val-days 2900"),
])
def test_bad_population_ready_or_window_is_one_line_and_exit_2(flags, message, capsys,
                                                                tmp_path):
    code = tune_main(["--pbt", "--symbols", "A", "--data", "synthetic", "--timesteps", "4096",
                      "--run-dir", str(tmp_path / "x"), "--set", "num_envs=4", "num_steps=16",
                      "minibatch_size=32", *flags])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_the_rounds_never_score_on_window_b_and_the_pick_does(monkeypatch):
    """Every backtest of the run is recorded: the rounds score window A only, the pick
    scores window B once per member, and train | A | B | C | test follow each other in
    time without a shared day."""
    import fastrl.ppo.population as population

    seen = []
    original = population.Population.validation_evals

    def recording(self, members=None, block=None, baselines=False):
        results = original(self, members, block, baselines)
        used = self.market.val if block is None else block
        seen.extend((used, float(r.combined["agent"].sharpe)) for r in results)
        return results

    monkeypatch.setattr(population.Population, "validation_evals", recording)
    runner = PBT(synthetic_config(), 4, 128, pick_days=40, confirm_days=50, replay_seeds=0)
    result = runner.run()
    window_a, window_b = runner.pop.market.val, runner.pick_block
    rounds = [score for block, score in seen if block is window_a]
    picks = [score for block, score in seen if block is window_b]
    assert len(rounds) + len(picks) == len(seen)  # nothing else was scored
    assert len(rounds) == 2 * 4 and rounds[-4:] == result.final_scores
    assert picks == result.pick_scores  # the pick: each final member once, on B
    windows = result.windows
    assert [windows[k]["days"] for k in ("rounds", "pick", "confirmation", "test")] == \
        [60, 40, 50, 30]
    order = ("train", "rounds", "pick", "confirmation", "test")
    for before, after in zip(order, order[1:], strict=False):
        assert windows[before]["dates"]["SYN000"][1] < windows[after]["dates"]["SYN000"][0], (
            before, after)
    context = window_b.meta["context_rows"]
    assert window_b.segment(0).stop - window_b.segment(0).start - context == 40
    # B's features are normalised as the population's market normalised its own bars
    for key, value in window_a.meta["normaliser"].items():
        np.testing.assert_array_equal(np.asarray(window_b.meta["normaliser"][key]),
                                      np.asarray(value), err_msg=key)


def test_the_winner_is_the_best_on_window_b_not_on_window_a(market, monkeypatch):
    """Members scored by rank on window A (member 3 best) and otherwise on window B
    (member 1 best): the winner is member 1, with its lineage and its DSR over the 4."""
    def scripted(self, members=None, block=None):
        members = range(self.population) if members is None else members
        if block is None or block is self.market.val:  # window A: member 3 leads
            return [{"sharpe": float(m), "return": 0.0} for m in members]
        rng = np.random.default_rng(7)
        return [{"sharpe": 5.0 if m == 1 else -float(m), "return": 0.0,
                 "returns": rng.normal(0.02 if m == 1 else 0.0, 0.01, 60)} for m in members]

    monkeypatch.setattr(Population, "validation_results", scripted)
    runner = make_pbt(tiny_config("total_timesteps=256"), 4, 128, market)
    result = runner.run()
    assert result.final_scores == [0.0, 1.0, 2.0, 3.0]
    assert result.winner == 1 and result.winner_pick_sharpe == 5.0
    assert result.winner_val_sharpe == 1.0
    assert result.winner_schedule == runner.winner_schedule(1)
    assert result.dsr["n_trials"] == 4 and 0.0 <= result.dsr["dsr"] <= 1.0


def test_the_replay_trains_winner_and_presets_on_fresh_seeds_and_reports(tmp_path, capsys,
                                                                          monkeypatch):
    """fastrl-tune --pbt with a replay: the winner's schedule and both presets train on
    seeds 1001, 1002 (1000 is the run's own), laid out before window C; the summary and the
    report carry the paired differences and the verdict."""
    import fastrl.tune.report_study as report_study

    trained = []
    original = report_study.train_run

    def recording(config, market, *, seed, **kwargs):
        trained.append((config, seed))
        return original(config, market, seed=seed, **kwargs)

    monkeypatch.setattr(report_study, "train_run", recording)
    run_dir = tmp_path / "pbt"
    assert tune_main(["--pbt", "--symbols", "A", "--data", "synthetic", "--timesteps", "128",
                      "--population", "2", "--ready", "64", "--seed", "1000", "--val-days",
                      "40", "--pick-days", "40", "--confirm-days", "40", "--replay-seeds", "2",
                      "--run-dir", str(run_dir), "--set", *TINY_SET]) == 0
    out = capsys.readouterr().out
    assert "verdict: " in out and "DSR over the 2 members" in out
    assert sorted(seed for _, seed in trained) == [1001, 1001, 1001, 1002, 1002, 1002]
    for config, _ in trained:  # every bar before window C, scored on C
        assert (config.data.test_days, config.data.val_days) == (30, 40)
    assert {c.lr_schedule for c, _ in trained} >= {"piecewise"}  # the winner's lineage
    summary = json.loads((run_dir / "summary.json").read_text())
    replay = summary["replay"]
    assert replay["seeds"] == [1001, 1002]
    assert set(replay["confirmation"]) == {"pbt_winner", "fast", "baseline"}
    for name in ("fast", "baseline"):
        d = replay["differences"]["score"][name]
        assert len(d["differences"]) == 2 and d["ci"][0] <= d["mean"] <= d["ci"][1]
    assert summary["verdict"] == replay["verdict"] and "PBT" in replay["verdict"]
    report = (run_dir / "report.md").read_text()
    for needle in ("fresh seeds [1001, 1002]", "Paired differences, replayed winner minus "
                   "preset", "Verdict:", "Test days (30)", "never the run's seed 1000",
                   "Ladder: the replayed winner against the classical rules on the "
                   "confirmation days", "the winner (mean of 2 seeds) beats ",
                   "| P(agent > rung) |", "not a posterior probability"):
        assert needle in report, needle
    assert replay["ladder"]["seeds"] == [1001, 1002]
    assert [r["rung"] for r in replay["ladder"]["rungs"]] == [
        "buy_and_hold", "voltarget", "momentum", "ma10", "ma200"]
    assert "unconfirmed" not in report


@pytest.mark.cuda
@pytest.mark.filterwarnings("ignore::DeprecationWarning:torch")
@pytest.mark.filterwarnings(r"ignore:\s*Online softmax is disabled:UserWarning")
@pytest.mark.filterwarnings("ignore:TensorFloat32 tensor cores:UserWarning")
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")
def test_on_cuda_one_member_matches_a_trainer_and_compiled_bf16_trains(market):
    cuda = ("device=cuda", "compile=false", "amp=false")
    trainer = Trainer(tiny_config(*cuda), market=market)
    pop = Population(tiny_config(*cuda), 1, market=market)
    for _ in range(2):
        trainer.step()
        pop.step()
    for name, value in trainer.network.state_dict().items():
        torch.testing.assert_close(pop.params[name][0].detach(), value, rtol=0, atol=1e-5)
    fast = Population(tiny_config("device=cuda", "compile=true", "amp=true"), 4, market=market)
    assert fast.compile and fast.amp
    for _ in range(2):
        row = fast.step()
    assert all(np.isfinite(row["losses/value_loss"]))
    assert len(fast.validate()) == 4


def test_a_diverged_member_is_named_or_replaced_by_a_healthy_one(market):
    pop = Population(tiny_config(), 3, market=market)
    pop.set_member_hparams(2, learning_rate=1e30)
    with pytest.raises(PopulationDivergedError, match=r"member\(s\) \[2\] diverged") as caught:
        pop.step()
    assert caught.value.members == [2]
    runner = make_pbt(tiny_config(), 3, 64, market)
    runner.pop.set_member_hparams(2, learning_rate=1e30)
    row = runner.pop.step(raise_on_divergence=False)
    assert row["diverged"] == [2]
    runner.replace_diverged([2], [])
    source = runner.lineage[-1]["parent"]
    assert runner.lineage[-1]["event"] == "diverged" and source in (0, 1)
    for name, value in runner.pop.params.items():
        assert torch.equal(value[2], value[source]), name
    runner.pop.step()  # trains on without raising


@pytest.mark.parametrize("extra", [(), ("shared_trunk=true", "activation=gelu"),
                                   ("env.action=continuous", "hidden_sizes=[8,8,8]")])
def test_the_eager_stacked_forward_is_vmap_of_functional_call(market, extra):
    from torch.func import functional_call, vmap

    pop = Population(tiny_config(*extra), 3, market=market)
    obs = torch.randn(3, 5, pop.obs_dim)
    expected = vmap(lambda p, b, o: functional_call(pop.base, (p, b), (o,)))(
        pop.params, pop.buffers, obs)
    got = pop._stacked_actor_critic(pop.params, pop.buffers, obs)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name, decay", [("adamw", 0.01), ("adam", 0.01), ("adamw", 0.0)])
def test_fused_adam_of_one_member_equals_the_stacked_loop(name, decay):
    """One member on the CPU takes torch's fused kernel; it must do what the loop does, for
    weights in the engine's transposed layout and gradients in either layout."""
    from fastrl.ppo.batched_adam import BatchedAdam

    gen = torch.Generator().manual_seed(3)
    shapes = {"w": (1, 6, 5), "b": (1, 6), "v": (1, 1, 6)}

    def fresh() -> dict[str, torch.Tensor]:
        gen.manual_seed(3)
        out = {}
        for key, shape in shapes.items():
            value = torch.randn(shape, generator=gen)
            out[key] = value.transpose(1, 2).contiguous().transpose(1, 2) if value.ndim == 3 \
                else value
        return out

    fused, loop = fresh(), fresh()
    a, b = BatchedAdam(fused, name, decay, 1e-5), BatchedAdam(loop, name, decay, 1e-5)
    assert a.fused
    b.fused = False
    for step in range(4):
        grads = {k: torch.randn(v.shape, generator=gen) for k, v in fused.items()}
        lr = torch.tensor([1e-2 * (step + 1)])
        a.step(grads, lr)
        b.step({k: v.clone() for k, v in grads.items()}, lr)
    a.step(grads, lr, active=torch.tensor([False]))  # a stopped member stays as it is
    for key in shapes:
        torch.testing.assert_close(fused[key], loop[key], rtol=0, atol=1e-6)
        torch.testing.assert_close(a.exp_avg_sq[key], b.exp_avg_sq[key], rtol=1e-6, atol=1e-9)
    assert a.step_count.tolist() == b.step_count.tolist() == [4.0]
