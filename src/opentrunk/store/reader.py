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
- PostgreSQL: a few psycopg async connections per event loop, in autocommit mode
  (opentrunk.store.pg_async): one round trip that waits on the loop, no thread hop.
- Otherwise (in-memory SQLite, or an async PostgreSQL connection that cannot be had): a
  pooled raw connection on one of a few dedicated worker threads.

Rows come back as plain tuples in the select's column order: the driver's own types (a
SQLite boolean is 0/1), which the caller's view function normalises.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import psycopg
from sqlalchemy import Engine, Select

from opentrunk.store.pg_async import PerLoop

# The inline reader waits at most this long for a lock before it hands the read to the
# threadpool (SQLite readers only ever wait during WAL recovery or a schema change).
INLINE_BUSY_TIMEOUT_MS = 20

# Worker threads for reads that cannot run inline (PostgreSQL): enough to overlap a few
# network round trips, few enough that they do not fight over the GIL.
READ_THREADS = 4

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
        self._autocommit = engine.dialect.driver == "psycopg"
        # Few threads on purpose: with one per concurrent request (the default threadpool
        # holds 40), a read cost ~1 ms of CPU at 32 concurrent requests instead of ~0.3,
        # spent handing the GIL around threads that mostly wait for the network.
        self._executor = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="opentrunk-read")
        self._closed = False
        self._pg = PerLoop(self._pg_connect) if self._autocommit else None
        self._search_path: str | None = None

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
        elif self._pg is not None:
            try:
                return await self._pg.current().fetch_one(statement.sql, params)
            except psycopg.OperationalError:
                pass  # cannot connect or connection lost: try a pooled connection
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._fetch_pooled, statement.sql, params)

    def async_backend_pids(self) -> list[int]:
        """PostgreSQL: the server pids of this event loop's read connections (else [])."""
        return [] if self._pg is None else self._pg.current().backend_pids()

    async def _pg_connect(self) -> psycopg.AsyncConnection[Any]:
        if self._search_path is None:
            # The engine may pin a schema through its connect arguments (tests, operators):
            # read the effective search_path once and give the async connections the same.
            loop = asyncio.get_running_loop()
            self._search_path = await loop.run_in_executor(self._executor, self._show_search_path)
        args, kwargs = self.engine.dialect.create_connect_args(self.engine.url)
        conn = await psycopg.AsyncConnection.connect(*args, **kwargs, autocommit=True)
        await conn.execute("SELECT set_config('search_path', %s, false)", (self._search_path,))
        return conn

    def _show_search_path(self) -> str:
        raw = self.engine.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute("SHOW search_path")
            row = cursor.fetchone()
            cursor.close()
            raw.rollback()
        finally:
            raw.close()
        return str(row[0]) if row else "public"

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
            driver = raw.driver_connection
            # psycopg: read in autocommit mode, so the SELECT is the only round trip: no
            # BEGIN before it, and no ROLLBACK when the pool takes the connection back
            # (psycopg sends none for an idle connection). The mode is restored before the
            # connection returns to the pool, where SQLAlchemy expects transactions.
            autocommit = self._autocommit and driver is not None
            if autocommit:
                driver.autocommit = True  # type: ignore[union-attr]
            try:
                cursor = raw.cursor()
                try:
                    cursor.execute(sql, params)
                    found = cursor.fetchone()
                finally:
                    cursor.close()
            finally:
                if autocommit:
                    driver.autocommit = False  # type: ignore[union-attr]
        finally:
            raw.close()
        return None if found is None else tuple(found)

    def close(self) -> None:
        self._executor.shutdown(wait=False)
        if self._pg is not None:
            self._pg.close()
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
