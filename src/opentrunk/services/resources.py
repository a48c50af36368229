"""Shared helpers for account-owned resources: id generation, paging queries, lookups."""

from __future__ import annotations

import secrets
import uuid
from collections import namedtuple
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Connection, Row, Select, Table, and_, bindparam, func, select

from opentrunk.services.errors import NotFound
from opentrunk.services.paging import Page
from opentrunk.store.store import Store


def new_uuid() -> str:
    return str(uuid.uuid4())


def new_trunk_id() -> str:
    """A 15-digit numeric trunk id (no leading zero, so it stays 15 digits as a number)."""
    return str(secrets.randbelow(9 * 10**14) + 10**14)


# One prebuilt select per (table, key): building a select() per call cost ~110 us, and a
# statement that is the same object each time also hits SQLAlchemy's compiled cache at once.
_OWNED: dict[tuple[str, str], Select[Any]] = {}


def _owned_select(table: Table, key: str) -> Select[Any]:
    found = _OWNED.get((table.name, key))
    if found is None:
        found = _OWNED[(table.name, key)] = select(table).where(
            and_(table.c[key] == bindparam("key"), table.c.account_id == bindparam("account_id"))
        )
    return found


def fetch_owned(
    conn: Connection, table: Table, key: str, value: str, account_id: int, label: str
) -> Row[Any]:
    row = conn.execute(_owned_select(table, key), {"key": value, "account_id": account_id}).first()
    if row is None:
        raise NotFound(f"{label} {value} not found")
    return row


class OwnedRead:
    """The hot-path read of one account-owned object by its key (a single-object GET):
    the listed columns through the store's RowReader (opentrunk.store.reader), returned as
    a named tuple so the resource's view function reads it like a SQLAlchemy Row. The
    driver's own types come back: a SQLite boolean is 0/1, so views apply bool()."""

    def __init__(self, table: Table, key: str, label: str, columns: Sequence[str]) -> None:
        self.label = label
        self.statement = select(*(table.c[name] for name in columns)).where(
            and_(table.c[key] == bindparam("key"), table.c.account_id == bindparam("account_id"))
        )
        self._row: Any = namedtuple(f"{table.name}_row", columns)  # type: ignore[misc]

    async def fetch(self, store: Store, account_id: int, value: str) -> Any:
        """The row as a named tuple; NotFound when it is not in this account."""
        found = await store.reader.fetch_one(
            self.statement, {"key": value, "account_id": account_id}
        )
        if found is None:
            raise NotFound(f"{self.label} {value} not found")
        return self._row._make(found)

    def fetch_sync(self, store: Store, account_id: int, value: str) -> Any:
        """The same read for synchronous callers (worker threads, the CLI)."""
        found = store.reader.fetch_one_sync(
            self.statement, {"key": value, "account_id": account_id}
        )
        if found is None:
            raise NotFound(f"{self.label} {value} not found")
        return self._row._make(found)


def page_of(
    conn: Connection,
    table: Table,
    conditions: list[ColumnElement[bool]],
    key: str,
    limit: int,
    offset: int,
) -> tuple[int, list[Row[Any]]]:
    """Total and one page, newest first, ties broken by the key so the order is total."""
    where = and_(*conditions)
    total = conn.execute(select(func.count()).select_from(table).where(where)).scalar_one()
    rows = conn.execute(
        select(table)
        .where(where)
        .order_by(table.c.created_at.desc(), table.c[key].desc())
        .limit(limit)
        .offset(offset)
    ).all()
    return int(total), list(rows)


def make_page(total: int, objects: list[dict[str, Any]], limit: int, offset: int) -> Page:
    return Page(total, objects, limit, offset)
