"""fastrl's CPU thread policy (fastrl.threads): the cores shared by the command's workers,
torch's threads governed by the cores other processes leave free, and passive OpenMP
waiting on request."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from fastrl import threads
from fastrl.threads import ThreadGovernor, available_cores, torch_threads, wait_passively


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


@pytest.fixture
def torch_threads_restored():
    import torch

    before = torch.get_num_threads()
    yield torch
    threads.stop_governing()
    torch.set_num_threads(before)


def scripted(governor: ThreadGovernor, samples: list[tuple[float, float, float]]) -> None:
    """Feed the governor (monotonic time, own CPU seconds, busy CPU seconds) samples."""
    feed = iter(samples)
    governor._sample = lambda: next(feed)
    governor._last = next(feed)


def test_the_governor_leaves_the_cores_others_use(monkeypatch, torch_threads_restored):
    torch = torch_threads_restored
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    governor = ThreadGovernor(2, every=0.0)
    assert governor.threads == 2 and torch.get_num_threads() == 2
    # 10 s: this process used 19.5 CPU s of the 20 busy: quiet, every core
    # then 20 busy of which 9 ours: others took 1.1 cores -> one thread
    # then others take 0.3 of a core: back to both
    scripted(governor, [(0.0, 0.0, 0.0), (10.0, 19.5, 20.0), (20.0, 28.5, 40.0),
                        (30.0, 46.5, 61.0)])
    monkeypatch.setattr(threads.time, "monotonic", lambda: 1e9)
    assert governor.tick() == 2
    assert governor.tick() == 1 and torch.get_num_threads() == 1
    assert governor.tick() == 2 and torch.get_num_threads() == 2


def test_the_governor_looks_only_every_few_seconds_and_never_below_one(
        monkeypatch, torch_threads_restored):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    governor = ThreadGovernor(2, every=5.0)
    scripted(governor, [(100.0, 0.0, 0.0), (110.0, 0.0, 40.0)])  # others: 4 cores' worth
    monkeypatch.setattr(threads.time, "monotonic", lambda: 101.0)
    assert governor.tick() == 2  # 1 s after the last look: no new look
    monkeypatch.setattr(threads.time, "monotonic", lambda: 110.0)
    assert governor.tick() == 1


def test_a_requested_thread_count_is_not_governed(torch_threads_restored):
    torch = torch_threads_restored
    assert threads.set_torch_threads(1) == 1 and threads._GOVERNOR is None
    assert torch.get_num_threads() == 1
    threads.set_torch_threads(0)
    assert threads._GOVERNOR is not None
    assert threads._GOVERNOR.max_threads == available_cores()


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="reads Linux's /proc/stat")
def test_the_governor_sees_a_busy_neighbour(torch_threads_restored):
    governor = ThreadGovernor(available_cores())
    governor.others()  # a fresh window
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(1.5)
        load = governor.others()
    finally:
        hog.kill()
        hog.wait()
    assert load is not None and load >= 0.5  # a busy loop takes most of a core
