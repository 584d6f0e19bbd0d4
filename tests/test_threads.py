"""fastrl's CPU thread policy (fastrl.threads): passive OpenMP waiting, the cores shared by
the command's workers."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from fastrl.threads import available_cores, torch_threads


def test_a_requested_count_wins():
    assert torch_threads(3) == 3
    assert torch_threads(1, share=4) == 1


def test_the_cores_this_process_may_use_are_shared_by_the_workers(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    assert available_cores() == 4
    assert torch_threads() == 4
    assert torch_threads(share=2) == 2
    assert torch_threads(share=8) == 1


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
