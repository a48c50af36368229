"""The hot-path row reader (opentrunk.store.reader) on each backend: a read sees every
write committed before it, a key with no row reads as None, and a failed read leaves the
reader usable. On PostgreSQL the event loop's connections reuse one cursor each, so these
also check that nothing from one read (a row, an error) leaks into the next."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import bindparam, column, select, table, update

from dbutil import BACKENDS, open_store
from opentrunk.services.accounts import create_account
from opentrunk.store.models import accounts

BY_AUTH_ID = select(accounts.c.name).where(accounts.c.auth_id == bindparam("a"))
# Fails on the server, after the statement reached it: the table does not exist.
FAILING = (
    select(column("x")).select_from(table("no_such_table")).where(column("x") == bindparam("a"))
)


@pytest.mark.parametrize("backend", BACKENDS)
def test_reads_follow_writes_and_survive_a_failed_read(backend, tmp_path):
    with open_store(backend, tmp_path) as store:
        auth_id = create_account(store, "before")["auth_id"]
        reader = store.reader

        def rename(name: str) -> None:
            with store.engine.begin() as conn:
                conn.execute(
                    update(accounts).where(accounts.c.auth_id == auth_id).values(name=name)
                )

        async def scenario() -> list[Any]:
            seen: list[Any] = []
            # More reads at once than the loop has connections: each cursor is reused.
            found = await asyncio.gather(
                *(reader.fetch_one(BY_AUTH_ID, {"a": auth_id}) for _ in range(9))
            )
            seen.append(set(found))
            seen.append(await reader.fetch_one(BY_AUTH_ID, {"a": "no-such-id"}))
            rename("after")
            seen.append(await reader.fetch_one(BY_AUTH_ID, {"a": auth_id}))
            with pytest.raises(Exception, match="no_such_table"):
                await reader.fetch_one(FAILING, {"a": auth_id})
            seen.append(await reader.fetch_one(BY_AUTH_ID, {"a": auth_id}))
            return seen

        assert asyncio.run(scenario()) == [{("before",)}, None, ("after",), ("after",)]
