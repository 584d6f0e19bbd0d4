"""The paper-trading journal: an append-only database, one transaction per session.

SQLite by default (a file path), PostgreSQL by URL (``postgresql://user@host/db``; the
driver policy is :mod:`fastrl.dburl`'s), through SQLAlchemy Core. Tables:

- ``journal_run``: the run that writes the journal (``run_id``, the hash of its checkpoint,
  its folder, symbols, frequency and kind; for a rule, ``rule`` and ``params`` instead of a
  folder and checkpoint, ``run_id`` the hash of the rule, its parameters, symbols,
  frequency and env). Another run's (or rule's) journal is refused.
- ``sessions``: one row per traded session: its date, the SHA-256 of the bars it used, the
  book after it (JSON: the simulator state and the pending decision) and the equity.
- ``decisions``: every decision (symbol, the bar whose close decided it, action, target).
- ``steps``: every fill and mark (decided at, filled at, marked at, fill price, shares
  traded, orders, cost, position, shares, cash, equity, turnover).

A session's rows and its ``sessions`` row are written in one transaction, and nothing is
ever updated or deleted: a process killed at any point leaves the journal at the end of
its last committed session, and the next call continues from there. The session date is
the primary key, so no session can be written twice.

Append-only is also checked, not only promised: each ``sessions`` row carries
``row_hash``, the SHA-256 of a canonical JSON of the row, its decisions and steps and
``prev_hash`` (the row before it's ``row_hash``), so :meth:`Journal.verify`
(``fastrl-paper --verify``) finds the first edited, deleted or reordered row. A journal
written before the chain (schema 1) gains the two columns on its next write; its older rows
are hashed into the first new row's ``prev_hash``, so they are checked from then on, and
``journal_run`` records that row's ``seq`` (``chain_from``). From there on (from the first
row in a journal written with the chain, schema 2) every row must carry its hash: one
without is reported by :meth:`Journal.verify` and refused by the next write, which never
recomputes the chain over it. What
the chain cannot see is the newest sessions removed whole, rows and all: compare the head
that ``--verify`` prints with one kept elsewhere.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastrl.dburl import is_database_url, redact, with_driver
from fastrl.live.book import Book, LiveInputError, SessionResult
from fastrl.live.run import LiveRun

SCHEMA_VERSION = 2  # 2: the sessions' hash chain (prev_hash, row_hash)
GENESIS = "0" * 64  # the prev_hash of a journal's first session
CHAIN = ("prev_hash", "row_hash")
SESSION_FIELDS = ("session", "seq", "bars_hash", "equity", "book", "committed_at")


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
                             sa.Column("committed_at", sa.String(40), nullable=False),
                             # nullable: rows of a journal written before the chain have none
                             sa.Column("prev_hash", sa.String(64)),
                             sa.Column("row_hash", sa.String(64))),
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


def _canonical(table: Any, row: dict[str, Any]) -> dict[str, Any]:
    """A row's values as its column types store them (an int in a REAL column reads back as
    a float; SQLite reads -0.0 back as 0.0), so a row hashes alike when written and when
    read back."""
    import sqlalchemy as sa

    out = {}
    for column in table.c:
        if column.name in CHAIN:
            continue
        value = row.get(column.name)
        if value is not None:
            if isinstance(column.type, sa.Float):
                value = float(value) + 0.0  # -0.0 + 0.0 is 0.0
            elif isinstance(column.type, sa.Integer):
                value = int(value)
            else:
                value = str(value)
        out[column.name] = value
    return out


def chain_hash(tables: dict[str, Any], prev_hash: str, session: dict[str, Any],
               decisions: list[dict[str, Any]], steps: list[dict[str, Any]]) -> str:
    """SHA-256 of one session: its ``sessions`` row, its decisions and steps (in primary-key
    order) and the hash of the session before it."""
    def ordered(name: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        table = tables[name]
        keys = [c.name for c in table.primary_key.columns]
        rows = [_canonical(table, r) for r in rows]
        return sorted(rows, key=lambda r: [str(r[k]) for k in keys])

    payload = {"prev_hash": prev_hash,
               "session": {k: v for k, v in _canonical(tables["sessions"], session).items()
                           if k in SESSION_FIELDS},
               "decisions": ordered("decisions", decisions), "steps": ordered("steps", steps)}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


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
                f"journal {self.label} was written by another run ({writer(identity)}), not "
                f"by {writer(run.identity())}; use a new journal for this run")

    def last(self) -> tuple[str, Book, int] | None:
        """(session date, book after it, its sequence number) of the last committed
        session, or None."""
        if not self._exists():
            return None
        table = self.tables["sessions"]
        with self.engine.connect() as conn:
            row = conn.execute(sa_select(table.c.session, table.c.book, table.c.seq)
                               .order_by(table.c.seq.desc()).limit(1)).first()
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
            present = self._columns(conn, table)  # a schema-1 journal has no chain columns
            columns = [c for c in t.c if c.name in present]
            return [dict(r._mapping) for r in conn.execute(
                sa_select(*columns).order_by(*order))]

    @staticmethod
    def _columns(conn: Any, table: str) -> set[str]:
        import sqlalchemy as sa

        return {c["name"] for c in sa.inspect(conn).get_columns(table)}

    # -- writing ------------------------------------------------------------------------

    def write_session(self, run: LiveRun, result: SessionResult, bars_hash: str, seq: int,
                      before_commit: Callable[[str], None] | None = None) -> None:
        """Writes one session in one transaction (creating the tables the first time)."""
        import sqlalchemy as sa

        self.meta.create_all(self.engine)  # checkfirst: a no-op once the tables exist
        self._add_chain_columns()
        t = self.tables
        equity = session_equity(run, result)
        try:
            with self.engine.begin() as conn:
                if conn.execute(sa.select(sa.func.count()).select_from(
                        t["journal_run"])).scalar() == 0:
                    conn.execute(t["journal_run"].insert(), [
                        {"key": key, "value": json.dumps(value)} for key, value in
                        {**run.identity(), "schema": SCHEMA_VERSION}.items()])
                decisions = [{"session": result.session,
                              **{k: _finite(v) for k, v in vars(d).items()}}
                             for d in result.decisions]
                steps = [{"session": result.session,
                          **{k: _finite(v) for k, v in vars(s).items()}}
                         for s in result.steps]
                if decisions:
                    conn.execute(t["decisions"].insert(), decisions)
                if steps:
                    conn.execute(t["steps"].insert(), steps)
                row = {"session": result.session, "seq": seq, "bars_hash": bars_hash,
                       "equity": float(equity), "book": json.dumps(result.book.to_dict()),
                       "committed_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
                # read in this transaction: a concurrent writer of the same seq fails on
                # the seq's unique key, so the chain never forks
                prev = self._prev_hash(conn, seq)
                row.update(prev_hash=prev,
                           row_hash=chain_hash(t, prev, row, decisions, steps))
                conn.execute(t["sessions"].insert(), row)
                if before_commit is not None:  # tests kill the process here
                    before_commit(result.session)
        except sa.exc.IntegrityError:
            raise LiveInputError(f"journal {self.label} already holds session "
                                 f"{result.session} (another process writing it?)") from None

    def _add_chain_columns(self) -> None:
        """Gives a schema-1 journal the chain's columns (nullable: its rows keep none)."""
        import sqlalchemy as sa

        with self.engine.begin() as conn:
            present = self._columns(conn, "sessions")
            for name in CHAIN:
                if name not in present:
                    conn.execute(sa.text(f"ALTER TABLE sessions ADD COLUMN {name} "
                                         "VARCHAR(64)"))

    def _prev_hash(self, conn: Any, seq: int) -> str:
        """The hash the session ``seq`` chains to: the previous row's ``row_hash``; for the
        first row written after a schema-1 journal gained the chain, the chain recomputed
        over the older rows (so they are checked from then on; ``chain_from`` records the
        row); GENESIS for a journal's first session. A row of the chain without its hash is
        refused: the chain is never recomputed over rows it should have covered."""
        table = self.tables["sessions"]
        prev = conn.execute(sa_select(table.c.row_hash).where(table.c.seq == seq - 1)).first()
        if prev is not None and prev.row_hash is not None:
            return str(prev.row_hash)
        start = self._chain_start(conn)
        if start is not None and seq > start:
            what = "has no hash" if prev is not None else "is missing"
            raise LiveInputError(
                f"journal {self.label}: session row {seq - 1} {what}, but the journal keeps "
                f"the hash chain from row {start}: it was edited (fastrl-paper --verify "
                f"{self.label} names the first broken row); nothing written")
        head = GENESIS
        for row, decisions, steps in self._sessions(conn)[0]:
            head = chain_hash(self.tables, head, row, decisions, steps)
        if start is None:  # a schema-1 journal: the chain starts at this row
            conn.execute(self.tables["journal_run"].insert(),
                         [{"key": "chain_from", "value": json.dumps(seq)}])
        return head

    def _chain_start(self, conn: Any) -> int | None:
        """The ``seq`` from which every session row carries a hash: 1 in a journal written
        with the chain (schema >= 2), the first row written after a schema-1 journal gained
        it (``chain_from``), None for a schema-1 journal not chained yet."""
        table = self.tables["journal_run"]
        values = {key: json.loads(value) for key, value in
                  conn.execute(sa_select(table.c.key, table.c.value)).all()}
        if int(values.get("schema", 1)) >= 2:
            return 1
        start = values.get("chain_from")
        return int(start) if start is not None else None

    def _sessions(self, conn: Any) -> tuple[list[tuple[dict, list, list]], list[str]]:
        """Each ``sessions`` row in ``seq`` order with its decisions and steps, and the
        sessions that have decisions or steps but no ``sessions`` row."""
        t = self.tables
        grouped: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for name in ("decisions", "steps"):
            for r in conn.execute(t[name].select()):
                row = dict(r._mapping)
                grouped.setdefault(str(row["session"]), {"decisions": [], "steps": []})
                grouped[str(row["session"])][name].append(row)
        present = self._columns(conn, "sessions")
        columns = [c for c in t["sessions"].c if c.name in present]
        out = []
        for r in conn.execute(sa_select(*columns).order_by(t["sessions"].c.seq)):
            row = dict(r._mapping)
            rows = grouped.pop(str(row["session"]), {"decisions": [], "steps": []})
            out.append((row, rows["decisions"], rows["steps"]))
        return out, sorted(grouped)

    def verify(self) -> Verification:
        """Checks the hash chain; the first edited, deleted or reordered row, or the rows
        written before the chain, are reported in the result (nothing is written)."""
        if not self._exists():
            raise LiveInputError(f"no journal at {self.label}")
        with self.engine.connect() as conn:
            return _verify(self, *self._sessions(conn), self._chain_start(conn))

    def dispose(self) -> None:
        self.engine.dispose()


@dataclass
class Verification:
    """What :meth:`Journal.verify` found: ``problem`` (the first one, None when the chain
    holds), the sessions, the rows written before the chain (``legacy``) and the head."""

    label: str
    sessions: list[str]
    legacy: int
    head: str | None
    problem: str | None

    @property
    def verified(self) -> bool:
        """The chain holds and covers every row."""
        return self.problem is None and self.head is not None

    def line(self) -> str:
        if self.problem is not None:
            return f"journal {self.label}: {self.problem}"
        if not self.sessions:
            return f"journal {self.label}: OK, no sessions yet"
        span = f"{len(self.sessions)} session(s) {self.sessions[0]} .. {self.sessions[-1]}"
        if self.head is None:
            return (f"journal {self.label}: cannot verify: its {span} were written before the "
                    "hash chain (schema 1); the next session written adds it and checks them "
                    "from then on")
        older = (f"; the first {self.legacy} predate the chain and are checked only since "
                 "it began" if self.legacy else "")
        return f"journal {self.label}: OK, {span} chained, head {self.head}{older}"


def _verify(journal: Journal, sessions: list[Any], orphans: list[str],
            start: int | None) -> Verification:
    names = [str(row["session"]) for row, _, _ in sessions]

    def found(problem: str, head: str | None = None) -> Verification:
        return Verification(journal.label, names, legacy, head, problem)

    head, stored_head, legacy = GENESIS, None, 0
    for number, (row, decisions, steps) in enumerate(sessions, start=1):
        where = f"session row {number} ({row['session']})"
        if int(row["seq"]) != number:
            return found(f"{where} has seq {row['seq']}, not {number}: a row before it was "
                         "deleted or the rows were renumbered")
        if number > 1 and str(row["session"]) <= names[number - 2]:
            return found(f"{where} is not after row {number - 1} ({names[number - 2]}): rows "
                         "reordered")
        expected_prev = head
        head = chain_hash(journal.tables, head, row, decisions, steps)
        if row.get("row_hash") is None:
            if stored_head is not None:
                return found(f"{where} has no hash, but rows before it do: its hash was "
                             "removed")
            if start is not None and number >= start:
                return found(f"{where} has no hash, but the journal keeps the hash chain "
                             f"from row {start}: its hash was removed")
            legacy += 1
            continue
        if row["prev_hash"] != expected_prev:
            what = (f"rows 1 to {number - 1}, written before the chain, changed after it began"
                    if stored_head is None and legacy else
                    "the row before it was edited, deleted or replaced")
            return found(f"{where} does not chain to the row before it: {what}")
        if row["row_hash"] != head:
            return found(f"{where} was edited: its session row, decisions or steps no longer "
                         "match its hash")
        stored_head = head
    if orphans:
        return found(f"decisions or steps of session(s) {', '.join(orphans)} have no session "
                     "row: their session row was deleted")
    return Verification(journal.label, names, legacy, stored_head, None)


def writer(identity: dict[str, Any]) -> str:
    """Who wrote (or writes) a journal, from its identity: a run folder and checkpoint, or
    a rule and its parameters."""
    if "rule" in identity:
        params = identity.get("params") or {}
        shown = ", ".join(f"{k}={v}" for k, v in params.items())
        return (f"rule {identity['rule']}" + (f" ({shown})" if shown else "")
                + f" on {', '.join(identity.get('symbols', []))}, id {identity.get('run_id')}")
    return (f"{identity.get('run_dir')}, checkpoint {identity.get('checkpoint')}, id "
            f"{identity.get('run_id')}")


def session_equity(run: LiveRun, result: SessionResult) -> float:
    """The account's equity at the session's last close: the portfolio's, or the sum of the
    symbols' equal-capital sub-accounts (the combined backtest's total)."""
    return run.market.live_env_class().session_equity(result)


def sa_select(*columns: Any) -> Any:
    import sqlalchemy as sa

    return sa.select(*columns)


__all__ = ["Journal", "SCHEMA_VERSION", "Verification", "chain_hash"]
