"""A throwaway PostgreSQL server for tests (fastrl-tune's storage, fastrl-paper's journal).

``postgres_server(user, database)`` starts one on a free localhost port in a temporary
folder (as the ``postgres`` user when the tests run as root: initdb refuses root), creates
the role and the database, yields a bare ``postgresql://`` URL, and removes everything
afterwards. It skips the test when psycopg2 or the server binaries are missing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pg_bindir() -> Path | None:
    candidates = []
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        candidates.append(Path(out.stdout.strip()))
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    return None


@contextlib.contextmanager
def postgres_server(user: str, database: str) -> Iterator[str]:
    """A running server with ``database`` owned by ``user``; yields its URL."""
    pytest.importorskip("psycopg2", reason="psycopg2 is not installed (pip install .[test])")
    bindir = _pg_bindir()
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) on this machine")
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root: run the server as the postgres user
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser: cannot start PostgreSQL")
        as_user = ["runuser", "-u", "postgres", "--"]
    folder = Path(tempfile.mkdtemp(prefix="fastrl-pg-", dir="/tmp"))
    data = folder / "data"
    if as_user:
        shutil.chown(folder, "postgres", "postgres")
    port = _free_port()

    def run(*cmd: str) -> None:
        subprocess.run([*as_user, *cmd], check=True, capture_output=True, timeout=60)

    run(str(bindir / "initdb"), "-D", str(data), "--auth=trust", "-U", "postgres")
    run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(folder / "server.log"), "-w", "-o",
        f"-p {port} -k {folder} -c listen_addresses=127.0.0.1", "start")
    try:
        host = ["-h", "127.0.0.1", "-p", str(port), "-U", "postgres"]
        run(str(bindir / "createuser"), *host, user)
        run(str(bindir / "createdb"), *host, "-O", user, database)
        yield f"postgresql://{user}@127.0.0.1:{port}/{database}"
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast",
                        "stop"], capture_output=True, timeout=60)
        shutil.rmtree(folder, ignore_errors=True)
