"""Test databases for the store, API and CLI tests: SQLite always, PostgreSQL too when
OPENTRUNK_TEST_DATABASE_URL is set (each run in a fresh schema, dropped afterwards)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import text

from opentrunk.config import Settings
from opentrunk.store.db import make_engine
from opentrunk.store.store import Store

PG_URL = os.environ.get("OPENTRUNK_TEST_DATABASE_URL", "")
BACKENDS = ["sqlite", "postgresql"] if PG_URL else ["sqlite"]


@contextmanager
def open_store(backend: str, data_dir: Path, **settings: object) -> Iterator[Store]:
    if backend == "sqlite":
        cfg = Settings(data_dir=str(data_dir), **settings)  # type: ignore[arg-type]
        store = Store.open(cfg)
        try:
            yield store
        finally:
            store.close()
        return
    schema = "t_" + uuid.uuid4().hex[:16]
    admin = make_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    cfg = Settings(data_dir=str(data_dir), database_url=PG_URL, **settings)  # type: ignore[arg-type]
    try:
        store = Store.open(cfg, schema=schema)
        try:
            yield store
        finally:
            store.close()
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
