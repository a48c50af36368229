"""Engine construction: URL normalisation, SQLite pragmas and PostgreSQL schemas."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

# SQLite waits this long for a competing writer (the CLI, a second worker) instead of
# failing at once with "database is locked".
SQLITE_BUSY_TIMEOUT_MS = 5000


def normalize_url(url: str) -> str:
    """Map the URL to the sync driver we use for its database.

    `postgresql+asyncpg://` (what CI exports, and a common habit) becomes
    `postgresql+psycopg://`: the store runs synchronously in worker threads, which was
    measured faster than the async ORM. A bare `postgresql://` also selects psycopg 3.
    """
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "postgresql" and parsed.drivername != "postgresql+psycopg":
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif backend == "sqlite" and parsed.drivername != "sqlite":
        parsed = parsed.set(drivername="sqlite")
    return parsed.render_as_string(hide_password=False)


def _on_sqlite_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA foreign_keys=ON")
    # WAL makes NORMAL durable against application crashes; only an OS crash can lose
    # the last transactions, which is the usual trade for an embedded store.
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def make_engine(url: str, *, schema: str | None = None, pool_size: int = 10) -> Engine:
    """Create the sync engine for `url`.

    `schema` (PostgreSQL only) puts every table of this engine in that schema through the
    connection's search_path; tests use it to get a fresh schema per run.
    """
    url = normalize_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False},
            pool_size=pool_size,
            max_overflow=20,
        )
        event.listen(engine, "connect", _on_sqlite_connect)
        return engine
    connect_args: dict[str, Any] = {}
    if schema:
        connect_args["options"] = f"-csearch_path={schema}"
    return create_engine(
        url,
        connect_args=connect_args,
        pool_size=pool_size,
        max_overflow=20,
        pool_pre_ping=False,
    )


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"
