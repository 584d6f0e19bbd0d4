"""fastrl's CPU thread policy (fastrl.threads): passive OpenMP waiting, threads from the work."""

from __future__ import annotations

import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

from fastrl.config import build_config
from fastrl.threads import (
    ONE_THREAD_WORK,
    available_cores,
    config_work,
    torch_threads,
    trunk_parameters,
)


def test_a_requested_count_wins():
    assert torch_threads(3, 10) == 3
    assert torch_threads(1, 10**9) == 1


def test_small_work_gets_one_thread_and_large_work_the_cores_shared_by_workers(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    assert available_cores() == 4
    assert torch_threads(0, ONE_THREAD_WORK - 1) == 1
    assert torch_threads(0, ONE_THREAD_WORK) == 4
    assert torch_threads(0, 10**7, share=2) == 2
    assert torch_threads(0, 10**7, share=8) == 1


def test_trunk_parameters_count_the_built_network():
    from fastrl.ppo.network import ActorCritic

    for hidden, shared in (((64, 64), False), ((256,), True), ((32, 16, 8), False)):
        net = ActorCritic(40, 3, hidden, shared_trunk=shared)
        trunks = sum(p.numel() for name, p in net.named_parameters() if "trunk" in name)
        assert trunk_parameters(40, hidden, shared) == trunks


def test_config_work_uses_the_markets_observation_size():
    config = build_config(set_options=["hidden_sizes=[64,64]", "env.window=4"])
    market = SimpleNamespace(train=SimpleNamespace(num_features=5))
    assert config_work(config, market) == trunk_parameters(4 * 5 + 3, (64, 64))
    # the shipped (64, 64) preset on daily bars is one-thread work; the default network is not
    assert config_work(build_config(set_options=["hidden_sizes=[64,64]"]), market) \
        < ONE_THREAD_WORK
    assert config_work(build_config(), market) > ONE_THREAD_WORK


def test_the_commands_make_openmp_wait_passively_unless_the_user_chose():
    code = "import os, fastrl.cli; print(os.environ.get('OMP_WAIT_POLICY'))"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "PASSIVE"
    out = subprocess.run([sys.executable, "-c", code], env={**env, "OMP_WAIT_POLICY": "ACTIVE"},
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ACTIVE"


@pytest.mark.parametrize("module", ["fastrl.cli"])
def test_importing_the_commands_does_not_load_torch(module):
    # the wait policy only holds if it is set before torch loads libgomp
    code = f"import sys, {module}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
