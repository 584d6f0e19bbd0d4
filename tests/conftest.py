"""Session options shared by every test module.

``--default-amp on`` runs the tests as on a CPU with native bf16 (AVX512-BF16 / AMX), where
a config that leaves ``amp`` unset trains, validates and serves under bf16 autocast;
``off`` as on one without. bf16 autocast is emulated on any CPU, so either default can be
tested anywhere (``.ci/run`` runs the numerics and parity tests with ``on``). Only this
process sees the option: tests that start fastrl in a subprocess keep the machine's default.
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--default-amp", choices=("auto", "on", "off"), default="auto",
                     help="CPU bf16 autocast default for configs with amp unset: as this "
                          "CPU has it (auto), or as on a CPU with (on) or without (off) "
                          "native bf16")


def pytest_report_header(config: pytest.Config) -> str:
    from fastrl.ppo.update import cpu_has_native_bf16

    choice = config.getoption("--default-amp")
    native = "yes" if cpu_has_native_bf16() else "no"
    return f"CPU native bf16: {native}; default amp: {choice}"


@pytest.fixture(autouse=True)
def default_amp_option(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    choice = request.config.getoption("--default-amp")
    if choice != "auto":
        monkeypatch.setattr("fastrl.ppo.update.cpu_has_native_bf16", lambda: choice == "on")


@pytest.fixture
def one_torch_thread():
    """One torch thread, as the CLI gives a run's torch_threads=1 (two threads on a shared
    2-core machine oversubscribe and crawl); a module opts in with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
