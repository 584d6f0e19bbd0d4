"""An untrained anchored agent's walk-forward record is buy-and-hold's (equal weight held for
a portfolio), bar for bar, across window boundaries; an untrained absolute agent's is not."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fastrl.config import build_config
from fastrl.markets import kind_overrides
from fastrl.ppo.checkpoint import build_network
from fastrl.walkforward.plan import WalkForwardSpec
from fastrl.walkforward.run import load_walkforward_bars, run_walkforward, trade_record

pytest.importorskip("fastrl._core")

SYMBOLS = ["BPCL", "HDFCLIFE", "INFY"]
TINY = {"total_timesteps": 256, "num_envs": 8, "num_steps": 32, "minibatch_size": 128,
        "n_epochs": 1, "hidden_sizes": (16,), "device": "cpu"}


def untrained_record(tmp_path, mode: str, portfolio: bool, ensemble: int = 1):
    """The record of a walk-forward whose every window trades a freshly initialised network
    (the windows, feature normalisers and observation normalisers of a tiny real run)."""
    overrides = {**TINY, "data.symbols": SYMBOLS, "env.action_mode": mode,
                 "ensemble": ensemble,
                 **(kind_overrides("portfolio") if portfolio else {})}
    config = build_config("fast", None, overrides)
    spec = WalkForwardSpec(step=40, start="2022-05-02", val_days=40, min_train_days=120,
                           test_days=30)
    run = run_walkforward({"fast": config}, spec, run_dir=tmp_path / "run")
    generator = torch.Generator().manual_seed(11)

    def fresh(policy: dict) -> dict:
        members = policy.get("members") or [policy]
        nets = [build_network(config, int(policy["obs_dim"]), int(policy["num_actions"]),
                              generator=generator).state_dict() for _ in members]
        if policy.get("members"):
            return {**policy, "members": [{**m, "network": n}
                                          for m, n in zip(members, nets, strict=True)]}
        return {**policy, "network": nets[0]}

    policies = [fresh(run.trained[("fast", 0, w.index)].policy) for w in run.windows]
    assert len(run.windows) >= 3  # boundaries to carry the holding across
    bars = load_walkforward_bars(config)
    return trade_record(config, bars, run.windows, policies)


@pytest.mark.parametrize(("portfolio", "ensemble"), [(False, 1), (True, 1), (False, 3)])
def test_untrained_anchored_walkforward_record_is_buy_and_hold(tmp_path, portfolio, ensemble):
    record = untrained_record(tmp_path, "anchored", portfolio, ensemble)
    np.testing.assert_array_equal(record["agent_equity"], record["bh_equity"])
    np.testing.assert_array_equal(record["cost"], record["bh_cost"])
    # the same equity bit for bit; a portfolio window's first return divides by its start
    # mark re-summed from the carried shares (another order of the same sum): 1 ulp apart
    np.testing.assert_allclose(record["agent_return"], record["bh_return"], rtol=0,
                               atol=1e-15)


def test_untrained_absolute_walkforward_record_is_not_buy_and_hold(tmp_path):
    # the test above can fail: an unanchored network starts as a coin flip
    record = untrained_record(tmp_path, "absolute", False)
    assert not np.array_equal(record["agent_return"], record["bh_return"])
