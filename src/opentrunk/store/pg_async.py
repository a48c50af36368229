"""A few psycopg async connections per event loop, for the hot-path one-row reads on
PostgreSQL (opentrunk.store.reader).

Why not a worker thread: with the read on a thread, the HTTP worker spent ~1.2 ms of CPU
per `GET trunk` under 32 concurrent requests (GIL hand-offs between the loop and threads
that mostly wait for the network), ~2x the SQLite figure. An async connection waits on
the event loop itself. Connections run in autocommit mode, so a read is one round trip
(psycopg prepares the statement server-side after a few executions).

The connections belong to the event loop that opened them (tests run several loops in
one process): `LoopConnections.for_loop` keeps one small set per loop. A connection whose
read failed or was cancelled is closed, not reused; the next read opens a new one.

Each connection keeps one cursor for all its reads: `AsyncConnection.execute` builds a
new cursor per call, which measured ~20-30 us of CPU per read under 32 concurrent reads
(bench/api_read_paths.py, docs/perf-api.md); reusing it brought the read level with
asyncpg without a second driver.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import Any

import psycopg

# Concurrent reads per event loop; more would wait for one of these.
CONNECTIONS_PER_LOOP = 4


class LoopConnections:
    """Up to `size` autocommit connections of one event loop, opened on demand."""

    def __init__(self, connect: Callable[[], Any], size: int = CONNECTIONS_PER_LOOP) -> None:
        self._connect = connect  # returns an awaitable of a psycopg.AsyncConnection
        self._slots = asyncio.Semaphore(size)
        self._idle: list[psycopg.AsyncCursor[Any]] = []  # one cursor per idle connection
        self._all: weakref.WeakSet[psycopg.AsyncConnection[Any]] = weakref.WeakSet()

    async def fetch_one(self, sql: str, params: Any) -> tuple[Any, ...] | None:
        async with self._slots:
            cursor = self._idle.pop() if self._idle else (await self._open()).cursor()
            try:
                await cursor.execute(sql, params)
                row = await cursor.fetchone()
            except BaseException:
                self._discard(cursor.connection)
                raise
            self._idle.append(cursor)
        return None if row is None else tuple(row)

    async def _open(self) -> psycopg.AsyncConnection[Any]:
        conn: psycopg.AsyncConnection[Any] = await self._connect()
        self._all.add(conn)
        return conn

    def _discard(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self._all.discard(conn)
        conn.pgconn.finish()  # state unknown after a failure: drop the socket

    def backend_pids(self) -> list[int]:
        """The server process ids of the open connections (operations, tests)."""
        return [conn.info.backend_pid for conn in self._all]

    def close(self) -> None:
        """Close every connection without awaiting (the loop may be gone already)."""
        for conn in list(self._all):
            conn.pgconn.finish()
        self._all = weakref.WeakSet()
        self._idle.clear()


class PerLoop:
    """One LoopConnections per running event loop."""

    def __init__(self, connect: Callable[[], Any]) -> None:
        self._connect = connect
        self._sets: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopConnections] = (
            weakref.WeakKeyDictionary()
        )

    def current(self) -> LoopConnections:
        loop = asyncio.get_running_loop()
        found = self._sets.get(loop)
        if found is None:
            found = self._sets[loop] = LoopConnections(self._connect)
        return found

    def close(self) -> None:
        for connections in list(self._sets.values()):
            connections.close()
        self._sets.clear()
