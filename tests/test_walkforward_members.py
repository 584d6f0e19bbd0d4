"""Windows as members: a walk-forward's windows and seeds trained as one population give
every window the result fastrl-walkforward gives it alone, bit for bit (the same weights,
validations, chosen update and trades), daily and portfolio, whatever the split into
processes and populations."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest
import torch

from fastrl.config import build_config
from fastrl.data.loaders import load_bars_report
from fastrl.markets import market_for
from fastrl.ppo.member_envs import MemberEnvs
from fastrl.ppo.update import default_amp
from fastrl.walkforward.members import member_bytes, members_per_population
from fastrl.walkforward.plan import WalkForwardSpec
from fastrl.walkforward.run import run_walkforward

SYMBOLS = ["BPCL", "HDFCLIFE"]
TINY = {"data.symbols": SYMBOLS, "total_timesteps": 1024, "num_envs": 8, "num_steps": 32,
        "minibatch_size": 128, "n_epochs": 2, "hidden_sizes": [16, 16], "device": "cpu",
        "torch_threads": 1, "patience": 2}
SPEC = WalkForwardSpec(step=63, start="2022-01-03", val_days=40, min_train_days=120)


@pytest.fixture(scope="module")
def bars() -> dict[str, pd.DataFrame]:
    return dict(load_bars_report(SYMBOLS, "1d", "bundled").bars)


def _config(portfolio: bool = False, **extra):
    return build_config("fast", None, {**TINY, "portfolio.enabled": portfolio, **extra}, [])


def assert_same_windows(a, b) -> None:
    """Every window of ``a`` and ``b`` (WalkForwardRuns of the same configs and seeds): the
    same weights, chosen update, stop and trades, bit for bit. The validation Sharpes that
    chose the update agree to rounding (a lone Trainer backtests a copy of its network laid
    out as it is served, the population its stacked weights: the same greedy actions)."""
    assert a.trained.keys() == b.trained.keys()
    for key, lone in a.trained.items():
        other = b.trained[key]
        assert (lone.chosen_update, lone.updates, lone.env_steps, lone.reason) == \
            (other.chosen_update, other.updates, other.env_steps, other.reason), key
        assert len(lone.val_curve) == len(other.val_curve) > 0
        np.testing.assert_allclose(np.asarray(other.val_curve), np.asarray(lone.val_curve),
                                   rtol=1e-9, atol=1e-12, err_msg=str(key))
        for part in ("policy", "final"):
            for name, value in getattr(lone, part)["network"].items():
                assert torch.equal(getattr(other, part)["network"][name], value), \
                    (key, part, name)
        for name, value in lone.policy["feature_normaliser"].items():
            assert np.array_equal(np.asarray(other.policy["feature_normaliser"][name]),
                                  np.asarray(value)), (key, name)
    for key, record in a.records.items():
        pd.testing.assert_frame_equal(b.records[key], record, check_exact=True)


@pytest.mark.parametrize("portfolio", [False, True], ids=["daily", "portfolio"])
def test_windows_as_members_equal_each_window_trained_alone(bars, portfolio):
    """Three windows x two seeds as one population against six lone Trainers (the pool
    path fastrl-walkforward took until now): early stops and chosen updates included."""
    configs = {"fast": _config(portfolio)}
    alone = run_walkforward(configs, SPEC, bars=bars, seeds=2, engine="pool")
    together = run_walkforward(configs, SPEC, bars=bars, seeds=2, engine="population")
    assert len(alone.windows) >= 3
    reasons = {r.reason for r in alone.trained.values()}
    assert reasons == {"completed", "early_stop"}  # members end on their own clocks
    assert_same_windows(alone, together)


def test_the_split_into_processes_and_populations_changes_no_trade(bars):
    """--workers 2 (two processes, each its populations) and --members 1 (one member per
    population) give the trades of one population. The precision is this process's default,
    set in the config: a worker process would take its machine's (tests/conftest.py)."""
    configs = {"fast": _config(amp=default_amp(torch.device("cpu")))}
    whole = run_walkforward(configs, SPEC, bars=bars, seeds=2, engine="population")
    for split in ({"workers": 2}, {"max_members": 1}, {"max_members": 4}):
        run = run_walkforward(configs, SPEC, bars=bars, seeds=2, engine="population", **split)
        assert_same_windows(whole, run)


def test_members_on_their_own_blocks_step_as_lone_envs(bars):
    """MemberEnvs: member m's rows are a lone env over its block, seeded with its seed,
    stepped with its actions (outputs, episodes and snapshots), in one set of buffers."""
    config = _config()
    kind = market_for(config)
    blocks = [kind.from_bars({s: f[f.index < day] for s, f in bars.items()}, val_days=0,
                             test_days=30).train for day in ("2021-01-01", "2022-06-01")]
    n, seeds = 4, [7, 11]

    def make(block, num_envs, *, seed, buffers=None):
        return kind.make_env(block, num_envs, num_threads=1, seed=seed, buffers=buffers)

    envs = MemberEnvs(make, blocks, n, seeds)
    envs.reset_members(seeds)
    lone = [make(block, n, seed=seed) for block, seed in zip(blocks, seeds, strict=True)]
    for env, seed in zip(lone, seeds, strict=True):
        env.reset(seed=seed)
    rng = np.random.default_rng(0)
    levels = len(config.env.position_levels)
    snapshot = None
    for step in range(300):  # long enough for episodes to end
        actions = rng.integers(0, levels, size=2 * n)
        obs, rewards, terminated, truncated, info = envs.step(actions)
        for m, env in enumerate(lone):
            rows = slice(m * n, (m + 1) * n)
            o, r, te, tr, i = env.step(actions[rows])
            assert np.array_equal(obs[rows], o) and np.array_equal(rewards[rows], r)
            assert np.array_equal(terminated[rows], te) and np.array_equal(truncated[rows], tr)
            assert np.array_equal(info["_episode"][rows], i["_episode"])
            assert np.array_equal(info["episode"]["r"][rows], i["episode"]["r"])
        if step == 100:  # a snapshot is every member's own, stacked by rows
            snapshot = envs.get_state()
            for m, env in enumerate(lone):
                for key, value in env.get_state().items():
                    rows = snapshot[key][m * n:(m + 1) * n]
                    assert np.array_equal(rows, value if value.ndim else np.repeat(value, n))
            after = [rng.integers(0, levels, size=2 * n) for _ in range(5)]
            outputs = [envs.step(a)[0].copy() for a in after]
            envs.set_state(snapshot)  # and replays exactly
            for a, expected in zip(after, outputs, strict=True):
                assert np.array_equal(envs.step(a)[0], expected)
                for m, env in enumerate(lone):
                    env.step(a[m * n:(m + 1) * n])
    assert snapshot is not None and all(v.shape[0] == 2 * n for v in snapshot.values())


def test_population_size_follows_the_memory_available(bars):
    config = _config()
    kind = market_for(config)
    market = kind.from_bars(bars, val_days=40)
    obs_dim = kind.obs_dim(market.train)
    one = member_bytes(config, market, obs_dim)
    assert one > market.train.features.nbytes
    assert members_per_population(config, market, obs_dim, memory=10 * one) == 5
    assert members_per_population(config, market, obs_dim, workers=2, memory=10 * one) == 2
    assert members_per_population(config, market, obs_dim, memory=one // 4) == 1


def test_population_engine_refuses_what_it_cannot_train(bars, tmp_path, monkeypatch, capsys):
    ensemble = build_config("fast", None, {**TINY, "ensemble": 2}, [])
    with pytest.raises(ValueError, match="--engine population"):
        run_walkforward({"fast": ensemble}, SPEC, bars=bars, engine="population")
    with pytest.raises(ValueError, match="--engine must be one of"):
        run_walkforward({"fast": _config()}, SPEC, bars=bars, engine="gpu")
    from fastrl.cli import walkforward as cli

    monkeypatch.setattr(sys, "argv", ["fastrl-walkforward", "--symbols", *SYMBOLS,
                                      "--engine", "population", "--warm-start",
                                      "--run-dir", str(tmp_path / "run")])
    assert cli.main() == 2
    assert "--engine population" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
