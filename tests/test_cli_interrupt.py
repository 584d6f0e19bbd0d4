"""Ctrl-C keeps a command's exit status: fastrl.cli.interrupt against CPython's SIGINT exit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

# A KeyboardInterrupt raised inside code run from source text (as dataclasses and namedtuple
# build their methods), caught outside it; main() then returns 130.
SCRIPT = """
import sys
from fastrl.cli.interrupt import ctrl_c_raises_interrupted

def main():
    try:
        exec("import os, signal\\nos.kill(os.getpid(), signal.SIGINT)\\nsum(range(10**6))")
    except KeyboardInterrupt:
        return 130
    return 0

if sys.argv[1] == "handled":
    with ctrl_c_raises_interrupted():
        sys.exit(main())
sys.exit(main())
"""


def _run(folder: Path, mode: str) -> int:
    """Run SCRIPT as ``python -m`` (the way the flag is checked: a script file or ``-c`` that
    raises SystemExit exits straight away)."""
    import fastrl

    (folder / "ctrl_c_script.py").write_text(SCRIPT)
    here = str(Path(fastrl.__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(folder), here, os.environ.get("PYTHONPATH", "")) if p))
    # a background job inherits SIGINT ignored; a terminal's child has the default
    proc = subprocess.run([sys.executable, "-m", "ctrl_c_script", mode], env=env, timeout=60,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    return proc.returncode


def test_ctrl_c_inside_exec_code_still_exits_with_the_returned_status(tmp_path: Path) -> None:
    if _run(tmp_path, "bare") != -signal.SIGINT:
        pytest.skip("this Python keeps main()'s status after a caught KeyboardInterrupt")
    assert _run(tmp_path, "handled") == 130
