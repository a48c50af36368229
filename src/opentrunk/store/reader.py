"""Hot-path reads: one row by key through the bare DBAPI driver, with the SQL compiled once.

Why: a single-row read through SQLAlchemy's Connection costs ~300 us of CPU on this
machine class (statement construction, cache-key computation, result processing, pool
checkout), the same read with the bare sqlite3 driver ~10 us (docs/perf-api.md). The API's
single-object GETs run on every PBX poll, so they use this reader; writes and lists keep
the SQLAlchemy path.

- Statements are SQLAlchemy Core selects, compiled once per dialect into the driver's
  SQL text and parameter order (`ReadStatement`), so the SQL stays schema-aware and
  portable, and nothing is built per request.
- File-backed SQLite: a dedicated read-only connection of this process, used inline on the
  caller's thread (the event loop): a WAL reader never waits for a writer, and an indexed
  one-row read costs less than the thread hop that would otherwise carry it. Each SELECT
  runs in autocommit mode, so it sees every transaction committed before it started.
  If the database is momentarily busy (WAL recovery), the read goes through the threadpool
  on a pooled connection instead of blocking the loop.
- PostgreSQL (and in-memory SQLite): a pooled raw connection in a worker thread, since a
  network round trip must not block the loop; psycopg prepares the statement server-side
  after a few executions.

Rows come back as plain tuples in the select's column order: the driver's own types (a
SQLite boolean is 0/1), which the caller's view function normalises.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, Select
from starlette.concurrency import run_in_threadpool

# The inline reader waits at most this long for a lock before it hands the read to the
# threadpool (SQLite readers only ever wait during WAL recovery or a schema change).
INLINE_BUSY_TIMEOUT_MS = 20

Row = tuple[Any, ...]


@dataclass(frozen=True)
class ReadStatement:
    """A select compiled for one dialect: the SQL text and how to order its parameters."""

    sql: str
    positional: tuple[str, ...] | None  # parameter names in order, or None for named style

    @classmethod
    def compile(cls, statement: Select[Any], engine: Engine) -> ReadStatement:
        compiled = statement.compile(dialect=engine.dialect)
        order = compiled.positiontup
        return cls(compiled.string, tuple(order) if order is not None else None)

    def parameters(self, values: Mapping[str, Any]) -> tuple[Any, ...] | Mapping[str, Any]:
        if self.positional is None:
            return values
        return tuple(values[name] for name in self.positional)


class RowReader:
    """One-row reads for one engine; see the module docstring for where each read runs."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._compiled: dict[int, tuple[Select[Any], ReadStatement]] = {}
        self._lock = threading.Lock()
        self._inline: sqlite3.Connection | None = None
        self._inline_path = _sqlite_file(engine)
        self._closed = False

    @property
    def inline(self) -> bool:
        """True when reads run on the caller's thread (file-backed SQLite)."""
        return self._inline_path is not None

    def statement(self, select: Select[Any]) -> ReadStatement:
        # Keyed by identity: callers pass module-level prebuilt selects; the select is kept
        # in the value so its id cannot be reused by another object.
        found = self._compiled.get(id(select))
        if found is None or found[0] is not select:
            found = (select, ReadStatement.compile(select, self.engine))
            self._compiled[id(select)] = found
        return found[1]

    async def fetch_one(self, select: Select[Any], values: Mapping[str, Any]) -> Row | None:
        """The first row of `select` with `values` bound, or None."""
        statement = self.statement(select)
        params = statement.parameters(values)
        if self._inline_path is not None:
            try:
                return self._fetch_inline(statement.sql, params)
            except sqlite3.OperationalError:
                pass  # busy: fall through to a pooled connection in a worker thread
        return await run_in_threadpool(self._fetch_pooled, statement.sql, params)

    def fetch_one_sync(self, select: Select[Any], values: Mapping[str, Any]) -> Row | None:
        """The same read for synchronous callers (worker threads, the CLI)."""
        statement = self.statement(select)
        return self._fetch_pooled(statement.sql, statement.parameters(values))

    def _fetch_inline(self, sql: str, params: Any) -> Row | None:
        with self._lock:
            conn = self._inline
            if conn is None:
                conn = self._inline = self._open_inline()
            row: Row | None = conn.execute(sql, params).fetchone()
            return row

    def _open_inline(self) -> sqlite3.Connection:
        if self._closed:
            raise sqlite3.OperationalError("reader closed")
        assert self._inline_path is not None
        # Autocommit (isolation_level=None): every SELECT is its own read transaction, so
        # it never pins an old snapshot or holds back WAL checkpoints.
        conn = sqlite3.connect(self._inline_path, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout={INLINE_BUSY_TIMEOUT_MS}")
        # Not `mode=ro`: a read-only WAL reader cannot recreate the -shm file if the last
        # writer removed it; query_only gives the same guarantee for this connection.
        conn.execute("PRAGMA query_only=ON")
        return conn

    def _fetch_pooled(self, sql: str, params: Any) -> Row | None:
        raw = self.engine.raw_connection()
        try:
            cursor = raw.cursor()
            try:
                cursor.execute(sql, params)
                found = cursor.fetchone()
            finally:
                cursor.close()
            # End the read transaction the driver may have opened (psycopg does), so the
            # connection goes back to the pool idle rather than idle-in-transaction.
            raw.rollback()
        finally:
            raw.close()
        return None if found is None else tuple(found)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._inline is not None:
                self._inline.close()
                self._inline = None


def _sqlite_file(engine: Engine) -> str | None:
    """The database file of a file-backed SQLite engine, else None."""
    if engine.dialect.name != "sqlite":
        return None
    database = engine.url.database or ""
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return database
