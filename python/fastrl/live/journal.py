"""The paper-trading journal: an append-only database, one transaction per session.

SQLite by default (a file path), PostgreSQL by URL (``postgresql://user@host/db``; the
driver policy is :mod:`fastrl.dburl`'s), through SQLAlchemy Core. Tables:

- ``journal_run``: the run that writes the journal (``run_id``, the hash of its checkpoint,
  its folder, symbols, frequency and kind). Another run's journal is refused.
- ``sessions``: one row per traded session: its date, the SHA-256 of the bars it used, the
  book after it (JSON: the simulator state and the pending decision) and the equity.
- ``decisions``: every decision (symbol, the bar whose close decided it, action, target).
- ``steps``: every fill and mark (decided at, filled at, marked at, fill price, shares
  traded, orders, cost, position, shares, cash, equity, turnover).

A session's rows and its ``sessions`` row are written in one transaction, and nothing is
ever updated or deleted: a process killed at any point leaves the journal at the end of
its last committed session, and the next call continues from there. The session date is
the primary key, so no session can be written twice.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastrl.dburl import is_database_url, redact, with_driver
from fastrl.live.decide import PORTFOLIO, Book, SessionResult
from fastrl.live.run import LiveInputError, LiveRun

SCHEMA_VERSION = 1


def _tables() -> tuple[Any, dict[str, Any]]:
    import sqlalchemy as sa

    meta = sa.MetaData()
    text, real, integer = sa.String(200), sa.Float(precision=53), sa.Integer
    tables = {
        "journal_run": sa.Table("journal_run", meta,
                                sa.Column("key", sa.String(64), primary_key=True),
                                sa.Column("value", sa.Text, nullable=False)),
        "sessions": sa.Table("sessions", meta,
                             sa.Column("session", sa.String(10), primary_key=True),
                             sa.Column("seq", integer, nullable=False, unique=True),
                             sa.Column("bars_hash", sa.String(64), nullable=False),
                             sa.Column("equity", real, nullable=False),
                             sa.Column("book", sa.Text, nullable=False),
                             sa.Column("committed_at", sa.String(40), nullable=False)),
        "decisions": sa.Table("decisions", meta,
                              sa.Column("session", sa.String(10), nullable=False),
                              sa.Column("symbol", text, nullable=False),
                              sa.Column("decided_at", sa.String(40), nullable=False),
                              sa.Column("action", real), sa.Column("target", real),
                              sa.PrimaryKeyConstraint("session", "symbol", "decided_at")),
        "steps": sa.Table("steps", meta,
                          sa.Column("session", sa.String(10), nullable=False),
                          sa.Column("symbol", text, nullable=False),
                          sa.Column("decided_at", sa.String(40), nullable=False),
                          sa.Column("filled_at", sa.String(40), nullable=False),
                          sa.Column("marked_at", sa.String(40), nullable=False),
                          sa.Column("action", real), sa.Column("fill_price", real),
                          sa.Column("traded_shares", real), sa.Column("trades", integer),
                          sa.Column("cost", real), sa.Column("position", real),
                          sa.Column("shares", real), sa.Column("cash", real),
                          sa.Column("equity", real), sa.Column("turnover", real),
                          sa.PrimaryKeyConstraint("session", "symbol", "marked_at")),
    }
    return meta, tables


def _finite(value: Any) -> Any:
    """NaN (not applicable) as NULL: databases disagree on storing it."""
    return None if isinstance(value, float) and math.isnan(value) else value


class Journal:
    """An open journal (``Journal.open(target)``); nothing is written until a session is."""

    def __init__(self, url: str, label: str) -> None:
        import sqlalchemy as sa

        self.url, self.label = url, label
        try:
            self.engine = sa.create_engine(url, future=True)
        except Exception as exc:  # bad URL, unknown dialect
            raise LiveInputError(f"cannot open journal {label}: {exc}") from None
        self.meta, self.tables = _tables()

    @classmethod
    def open(cls, target: str) -> Journal:
        """A journal at a file path (SQLite) or an SQLAlchemy URL (``postgresql://...``)."""
        if is_database_url(target):
            return cls(with_driver(target), redact(target))
        path = Path(target).expanduser()
        if path.is_dir():
            raise LiveInputError(f"--journal {target} is a folder; give a file path")
        if not path.parent.is_dir():
            raise LiveInputError(f"--journal {target}: folder {path.parent} does not exist")
        return cls(f"sqlite:///{path.resolve()}", str(path))

    # -- reading ------------------------------------------------------------------------

    def _exists(self) -> bool:
        import sqlalchemy as sa

        if self.url.startswith("sqlite:///"):
            path = Path(self.url[len("sqlite:///"):])
            if not path.exists():  # never create the file just to look at it
                return False
        try:
            with self.engine.connect() as conn:
                return sa.inspect(conn).has_table("journal_run")
        except Exception as exc:  # server down, not a database file
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            raise LiveInputError(f"cannot read journal {self.label}: {first}") from None

    def identity(self) -> dict[str, Any] | None:
        """The run that wrote the journal, or None for a new journal."""
        if not self._exists():
            return None
        with self.engine.connect() as conn:
            rows = conn.execute(self.tables["journal_run"].select()).all()
        return {key: json.loads(value) for key, value in rows}

    def check_run(self, run: LiveRun) -> None:
        """Refuses a journal written by another run."""
        identity = self.identity()
        if identity is None:
            return
        if identity.get("run_id") != run.run_id:
            raise LiveInputError(
                f"journal {self.label} was written by another run ({identity.get('run_dir')}, "
                f"checkpoint {identity.get('checkpoint')}, id {identity.get('run_id')}), not "
                f"by {run.run_dir} (id {run.run_id}); use a new journal for this run")

    def last(self) -> tuple[str, Book, int] | None:
        """(session date, book after it, its sequence number) of the last committed
        session, or None."""
        if not self._exists():
            return None
        table = self.tables["sessions"]
        with self.engine.connect() as conn:
            row = conn.execute(table.select().order_by(table.c.seq.desc()).limit(1)).first()
        if row is None:
            return None
        return row.session, Book.from_dict(json.loads(row.book)), int(row.seq)

    def session_hash(self, session: str) -> str | None:
        table = self.tables["sessions"]
        if not self._exists():
            return None
        with self.engine.connect() as conn:
            return conn.execute(sa_select(table.c.bars_hash).where(
                table.c.session == session)).scalar()

    def rows(self, table: str) -> list[dict[str, Any]]:
        """Every row of ``table`` in insertion order of sessions (for reports and tests)."""
        if not self._exists():
            return []
        t = self.tables[table]
        order = [t.c[k] for k in ("session", "symbol", "marked_at") if k in t.c] or list(t.c)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(t.select().order_by(*order))]

    # -- writing ------------------------------------------------------------------------

    def write_session(self, run: LiveRun, result: SessionResult, bars_hash: str, seq: int,
                      before_commit: Callable[[str], None] | None = None) -> None:
        """Writes one session in one transaction (creating the tables the first time)."""
        import sqlalchemy as sa

        self.meta.create_all(self.engine)  # checkfirst: a no-op once the tables exist
        t = self.tables
        equity = session_equity(run, result)
        try:
            with self.engine.begin() as conn:
                if conn.execute(sa.select(sa.func.count()).select_from(
                        t["journal_run"])).scalar() == 0:
                    conn.execute(t["journal_run"].insert(), [
                        {"key": key, "value": json.dumps(value)} for key, value in
                        {**run.identity(), "schema": SCHEMA_VERSION}.items()])
                if result.decisions:
                    conn.execute(t["decisions"].insert(), [
                        {"session": result.session, **{k: _finite(v) for k, v in
                                                       vars(d).items()}}
                        for d in result.decisions])
                if result.steps:
                    conn.execute(t["steps"].insert(), [
                        {"session": result.session, **{k: _finite(v) for k, v in
                                                       vars(s).items()}}
                        for s in result.steps])
                conn.execute(t["sessions"].insert(), {
                    "session": result.session, "seq": seq, "bars_hash": bars_hash,
                    "equity": float(equity), "book": json.dumps(result.book.to_dict()),
                    "committed_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
                if before_commit is not None:  # tests kill the process here
                    before_commit(result.session)
        except sa.exc.IntegrityError:
            raise LiveInputError(f"journal {self.label} already holds session "
                                 f"{result.session} (another process writing it?)") from None

    def dispose(self) -> None:
        self.engine.dispose()


def session_equity(run: LiveRun, result: SessionResult) -> float:
    """The account's equity at the session's last close: the portfolio's, or the sum of the
    symbols' equal-capital sub-accounts (the combined backtest's total)."""
    book = result.book
    if run.portfolio:  # the backtest's accounting (simulate), not the env's own sums
        marks = [s.equity for s in result.steps if s.symbol == PORTFOLIO]
        return float(marks[-1]) if marks else float(book.accounts["cash"])
    return float(sum(book.env["equity"]))


def sa_select(*columns: Any) -> Any:
    import sqlalchemy as sa

    return sa.select(*columns)


__all__ = ["Journal", "SCHEMA_VERSION"]
