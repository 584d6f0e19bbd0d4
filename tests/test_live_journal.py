"""The paper journal: killed mid-session it continues with no day twice and none skipped,
new bars trade only the new days, PostgreSQL works from a bare postgresql:// URL, and one
driver policy (fastrl.dburl) serves the journal and fastrl-tune."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import fastrl
from fastrl.cli.paper import main as paper_main
from fastrl.dburl import DriverError, with_driver
from fastrl.live.journal import Journal

from live_runs import backtest, bundled_copy, first_session, train_run
from postgres_server import postgres_server

pytest.importorskip("fastrl._core")

# the fastrl this test imported (the installed package in CI, the source tree with its built
# core in development): the child process must import the same one
FASTRL_PATH = str(Path(fastrl.__file__).resolve().parents[1])


@pytest.fixture(scope="module")
def daily(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    run_dir = train_run("daily", tmp_path_factory.mktemp("live-journal"))
    return run_dir, first_session(backtest(run_dir))


def paper(run_dir: Path, bars: str, start: str, journal: str, capsys, *extra: str) -> str:
    code = paper_main([str(run_dir), "--bars", bars, "--from", start, "--journal", journal,
                       "--quiet", *extra])
    err = capsys.readouterr().err
    assert code == 0, err
    return err


def content(journal: str) -> dict[str, list[dict]]:
    """Every journal row but the commit times (which differ between runs)."""
    opened = Journal.open(journal)
    out = {table: opened.rows(table) for table in ("decisions", "steps")}
    # the chain's hashes cover the commit times
    out["sessions"] = [{k: v for k, v in row.items()
                        if k not in ("committed_at", "prev_hash", "row_hash")}
                       for row in opened.rows("sessions")]
    opened.dispose()
    return out


KILLER = textwrap.dedent("""
    import os, signal, sys
    from fastrl.live.bars import load_live_bars
    from fastrl.live.journal import Journal
    from fastrl.live.paper import paper_trade
    from fastrl.live.run import open_run

    run_dir, start, journal, kill_at = sys.argv[1:5]
    run = open_run(run_dir)
    seen = []

    def before_commit(session):
        seen.append(session)
        if len(seen) == int(kill_at):  # inside the transaction: rows written, not committed
            os.kill(os.getpid(), signal.SIGKILL)

    paper_trade(run, load_live_bars(run, "bundled"), Journal.open(journal), start,
                before_commit=before_commit)
""")


def test_killed_inside_a_session_it_continues_with_no_day_twice_and_none_skipped(
        daily, tmp_path, capsys):
    run_dir, start = daily
    whole = str(tmp_path / "whole.db")
    paper(run_dir, "bundled", start, whole, capsys)
    killed = str(tmp_path / "killed.db")
    env = {**os.environ, "PYTHONPATH": FASTRL_PATH, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", KILLER, str(run_dir), start, killed, "4"],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == -9, result.stderr  # SIGKILL, mid-transaction
    sessions = [row["session"] for row in content(killed)["sessions"]]
    expected = [row["session"] for row in content(whole)["sessions"]]
    assert sessions == expected[:3]  # the fourth session's rows were rolled back
    err = paper(run_dir, "bundled", start, killed, capsys)
    assert f"continued after {expected[2]}" in err
    assert content(killed) == content(whole)  # every session once, in order, same numbers


def test_new_bars_appended_trade_only_the_new_days(daily, tmp_path, capsys):
    run_dir, start = daily
    whole = str(tmp_path / "whole.db")
    paper(run_dir, "bundled", start, whole, capsys)
    sessions = [row["session"] for row in content(whole)["sessions"]]
    feed = tmp_path / "feed"
    bundled_copy(["BPCL"], feed, through=sessions[4])
    grown = str(tmp_path / "grown.db")
    paper(run_dir, str(feed), start, grown, capsys)
    assert [r["session"] for r in content(grown)["sessions"]] == sessions[:5]
    bundled_copy(["BPCL"], feed)  # the feed appends the later sessions
    err = paper(run_dir, str(feed), start, grown, capsys)
    assert f"traded {len(sessions) - 5} session(s) {sessions[5]}" in err
    assert content(grown) == content(whole)
    err = paper(run_dir, str(feed), start, grown, capsys)  # nothing new: nothing written
    assert "nothing new to trade" in err
    assert content(grown) == content(whole)


def test_from_past_the_journal_end_would_skip_days_and_is_refused(daily, tmp_path, capsys):
    run_dir, start = daily
    journal = str(tmp_path / "j.db")
    feed = tmp_path / "feed"
    bundled_copy(["BPCL"], feed)
    paper(run_dir, str(feed), start, journal, capsys, "--to", "2022-11-01")
    before = Path(journal).read_bytes()
    code = paper_main([str(run_dir), "--bars", str(feed), "--from", "2022-11-07", "--journal",
                       journal])
    assert code == 2
    assert "would skip sessions" in capsys.readouterr().err
    assert Path(journal).read_bytes() == before


def test_postgresql_journal_from_a_bare_url(daily, tmp_path, capsys):
    run_dir, start = daily
    local = str(tmp_path / "local.db")
    paper(run_dir, "bundled", start, local, capsys)
    with postgres_server("trader", "paper") as url:
        assert url.startswith("postgresql://")
        paper(run_dir, "bundled", start, url, capsys, "--to", "2022-11-01")
        paper(run_dir, "bundled", start, url, capsys)  # continues on the server
        assert content(url) == content(local)  # doubles survive the round trip exactly
        assert paper_main(["--verify", url]) == 0, capsys.readouterr().err
        assert "OK" in capsys.readouterr().out
        tamper(url, "UPDATE steps SET cost = cost + 1 WHERE session = "
               "(SELECT session FROM sessions WHERE seq = 2)")
        assert paper_main(["--verify", url]) == 2
        assert "session row 2" in capsys.readouterr().err
        other = train_run("daily", tmp_path, seed=1)
        code = paper_main([str(other), "--bars", "bundled", "--from", start, "--journal", url])
        assert code == 2 and "written by another run" in capsys.readouterr().err


def test_one_driver_policy_for_journal_and_tune(monkeypatch):
    import importlib.util

    from fastrl.tune.storage import storage_label

    def installed(*modules):  # which drivers importlib finds
        monkeypatch.setattr(importlib.util, "find_spec",
                            lambda name, *a: object() if name in modules else None)

    installed("psycopg2", "psycopg")
    assert with_driver("postgresql://u@h:5432/db") == "postgresql+psycopg2://u@h:5432/db"
    assert with_driver("postgres://u@h/db") == "postgresql+psycopg2://u@h/db"
    assert with_driver("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"
    assert with_driver("sqlite:///x.db") == "sqlite:///x.db"
    # the dashboard line fastrl-tune prints names the driver too
    assert storage_label("postgresql://u@h/db", "study") == "postgresql+psycopg2://u@h/db"
    installed("psycopg")
    assert with_driver("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    installed()
    with pytest.raises(DriverError, match=r"pip install 'fastrl\[postgres\]'"):
        with_driver("postgresql://u:secret@h/db")
    with pytest.raises(DriverError) as error:
        Journal.open("postgresql://u:secret@h/db")
    assert "secret" not in str(error.value)


def tamper(journal: str, *statements: str) -> None:
    """Runs SQL on a journal behind fastrl's back (a hand edit)."""
    import sqlalchemy as sa

    opened = Journal.open(journal)
    with opened.engine.begin() as conn:
        for statement in statements:
            conn.execute(sa.text(statement))
    opened.dispose()


def verify(journal: str, capsys) -> tuple[int, str]:
    code = paper_main(["--verify", journal])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.fixture(scope="module")
def chained(daily, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A journal of six sessions (2022-10-25 .. 11-02)."""
    run_dir, start = daily
    journal = tmp_path_factory.mktemp("chained") / "journal.db"
    assert paper_main([str(run_dir), "--bars", "bundled", "--from", start, "--to",
                       "2022-11-02", "--journal", str(journal), "--quiet"]) == 0
    assert len(Journal.open(str(journal)).rows("sessions")) == 6
    return journal


@pytest.mark.parametrize(("statements", "reported"), [
    (["UPDATE sessions SET equity = equity + 1 WHERE seq = 3"], "session row 3 ("),
    (["UPDATE steps SET fill_price = fill_price * 1.01 WHERE session = "
      "(SELECT session FROM sessions WHERE seq = 2)"], "session row 2 ("),
    (["DELETE FROM decisions WHERE session = (SELECT session FROM sessions WHERE seq = 4)"],
     "session row 4 ("),
    (["DELETE FROM sessions WHERE seq = 2"], "session row 2 ("),  # deleted: row 3 moves up
    (["DELETE FROM sessions WHERE seq = 6"], "have no session row"),
    (["UPDATE sessions SET seq = 9 WHERE seq = 2", "UPDATE sessions SET seq = 2 WHERE seq = 3",
      "UPDATE sessions SET seq = 3 WHERE seq = 9"], "session row 2 ("),
    (["UPDATE sessions SET row_hash = NULL WHERE seq = 4"], "hash was removed"),
    # every hash removed: the journal was written with the chain (schema 2), so row 1 lacks it
    (["UPDATE sessions SET row_hash = NULL, prev_hash = NULL"], "session row 1 ("),
])
def test_verify_names_the_first_edited_or_deleted_row(chained, tmp_path, capsys, statements,
                                                      reported):
    code, text = verify(str(chained), capsys)
    assert code == 0 and "OK, 6 session(s)" in text and "head " in text, text
    copy = tmp_path / "copy.db"
    copy.write_bytes(chained.read_bytes())
    tamper(str(copy), *statements)
    code, text = verify(str(copy), capsys)
    assert code == 2 and reported in text, text


def test_a_journal_from_before_the_chain_says_so_then_chains_on(daily, chained, tmp_path,
                                                                capsys):
    run_dir, start = daily
    old = tmp_path / "old.db"
    old.write_bytes(chained.read_bytes())
    # a schema-1 journal: no chain columns
    tamper(str(old), "ALTER TABLE sessions DROP COLUMN row_hash",
           "ALTER TABLE sessions DROP COLUMN prev_hash",
           "UPDATE journal_run SET value = '1' WHERE key = 'schema'")
    code, text = verify(str(old), capsys)
    assert code == 1 and "cannot verify" in text and "before the hash chain" in text, text
    assert paper_main([str(run_dir), "--bars", "bundled", "--from", start, "--to",
                       "2022-11-04", "--journal", str(old), "--quiet"]) == 0
    code, text = verify(str(old), capsys)
    assert code == 0 and "OK, 8 session(s)" in text and "the first 6 predate" in text, text
    stripped = tmp_path / "stripped.db"
    stripped.write_bytes(old.read_bytes())
    tamper(str(old), "UPDATE sessions SET equity = equity + 1 WHERE seq = 1")
    code, text = verify(str(old), capsys)
    assert code == 2 and "written before the chain, changed" in text, text
    # the chain began at row 7: with every hash removed, row 7 is named, not "cannot verify"
    tamper(str(stripped), "UPDATE sessions SET row_hash = NULL, prev_hash = NULL")
    code, text = verify(str(stripped), capsys)
    assert code == 2 and "session row 7 (" in text and "chain from row 7" in text, text


def test_a_chained_journal_with_its_hashes_removed_is_not_written_to(daily, chained, tmp_path,
                                                                     capsys):
    """Removing every hash does not make a chained journal one "written before the chain":
    --verify names the first row, and the next write is refused instead of hashing the
    edited rows into a new chain that --verify would then call OK."""
    run_dir, start = daily
    copy = tmp_path / "copy.db"
    copy.write_bytes(chained.read_bytes())
    tamper(str(copy), "UPDATE sessions SET equity = equity + 1 WHERE seq = 2",
           "UPDATE sessions SET row_hash = NULL, prev_hash = NULL")
    code, text = verify(str(copy), capsys)
    assert code == 2 and "session row 1 (" in text and "hash was removed" in text, text
    before = copy.read_bytes()
    code = paper_main([str(run_dir), "--bars", "bundled", "--from", start, "--to", "2022-11-04",
                       "--journal", str(copy), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "session row 6 has no hash" in err, err
    assert copy.read_bytes() == before
    code, text = verify(str(copy), capsys)
    assert code == 2 and "session row 1 (" in text, text


def test_verify_of_a_missing_journal_is_refused(tmp_path, capsys):
    code, text = verify(str(tmp_path / "none.db"), capsys)
    assert code == 2 and "no journal at" in text and not (tmp_path / "none.db").exists()


def test_a_paper_run_on_a_feed_that_stopped_warns(daily, tmp_path, capsys, monkeypatch):
    import pandas as pd

    import fastrl.live.clock

    run_dir, start = daily
    for now, warned in (("2022-11-14 20:00", True), ("2022-11-09 20:00", False)):
        monkeypatch.setattr(fastrl.live.clock, "now",
                            lambda now=now: pd.Timestamp(now, tz="Asia/Kolkata"))
        err = paper(run_dir, "bundled", start, str(tmp_path / "journal.db"), capsys)
        assert ("a stale feed?" in err and "2022-11-14" in err) is warned, err


def test_minus_zero_hashes_as_zero(tmp_path):
    """SQLite stores -0.0 as 0: a row holding -0.0 (np.trunc(-0.4) shares traded) must hash
    alike before and after the round trip, or --verify calls an untouched row edited."""
    import sqlalchemy as sa

    from fastrl.live.journal import GENESIS, _tables, chain_hash

    meta, tables = _tables()
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'zero.db'}")
    meta.create_all(engine)
    session = {"session": "2022-11-01", "seq": 1, "bars_hash": "0" * 64, "equity": -0.0,
               "book": "{}", "committed_at": "2022-11-01T20:00:00+0530"}
    decision = {"session": "2022-11-01", "symbol": "BPCL", "decided_at": "2022-11-01",
                "action": -0.0, "target": -0.0}
    written = chain_hash(tables, GENESIS, session, [decision], [])
    with engine.begin() as conn:
        conn.execute(tables["sessions"].insert(), session)
        conn.execute(tables["decisions"].insert(), decision)
    with engine.connect() as conn:
        read = dict(conn.execute(tables["sessions"].select()).one()._mapping)
        decisions = [dict(r._mapping) for r in conn.execute(tables["decisions"].select())]
    engine.dispose()
    assert chain_hash(tables, GENESIS, read, decisions, []) == written
