"""fastrl's CPU thread policy (fastrl.threads): the cores shared by the command's workers,
and passive OpenMP waiting on request."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from fastrl.threads import available_cores, torch_threads, wait_passively


def test_a_requested_count_wins():
    assert torch_threads(3) == 3
    assert torch_threads(1, share=4) == 1


def test_the_cores_this_process_may_use_are_shared_by_the_workers(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    assert available_cores() == 4
    assert torch_threads() == 4
    assert torch_threads(share=2) == 2
    assert torch_threads(share=8) == 1


def test_wait_passively_sets_a_default_and_keeps_the_users_choice(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    wait_passively()
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    wait_passively()
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


@pytest.mark.parametrize("module", ["fastrl.cli"])
def test_importing_the_commands_does_not_load_torch(module):
    # --help stays fast, and a wait policy set by a command would still reach libgomp
    code = f"import sys, {module}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
