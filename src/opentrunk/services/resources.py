"""Shared helpers for account-owned resources: id generation, paging queries, lookups,
the insert and delete every resource makes."""

from __future__ import annotations

import secrets
import uuid
from collections import namedtuple
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    Row,
    Select,
    Table,
    and_,
    bindparam,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

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
    stamp: str = "created_at",
) -> tuple[int, list[Row[Any]]]:
    """Total and one page, newest first by the `stamp` column, ties broken by the key so
    the order is total."""
    where = and_(*conditions)
    total = conn.execute(select(func.count()).select_from(table).where(where)).scalar_one()
    rows = conn.execute(
        select(table)
        .where(where)
        .order_by(table.c[stamp].desc(), table.c[key].desc())
        .limit(limit)
        .offset(offset)
    ).all()
    return int(total), list(rows)


def list_owned(
    store: Store,
    table: Table,
    key: str,
    account_id: int,
    limit: int,
    offset: int,
    view: Callable[[Row[Any]], dict[str, Any]],
    conditions: Sequence[ColumnElement[bool]] = (),
    stamp: str = "created_at",
) -> Page:
    """One page of an account's objects (page_of), each shaped by `view`."""
    with store.engine.connect() as conn:
        total, rows = page_of(
            conn, table, [table.c.account_id == account_id, *conditions], key, limit, offset, stamp
        )
    return Page(total, [view(r) for r in rows], limit, offset)


def insert_row(
    store: Store, table: Table, values: dict[str, Any], duplicate: Exception | None = None
) -> None:
    """One INSERT in its own transaction; with `duplicate`, a unique-constraint violation
    raises that instead (the caller words what already exists)."""
    try:
        with store.engine.begin() as conn:
            conn.execute(insert(table).values(values))
    except IntegrityError:
        if duplicate is None:
            raise
        raise duplicate from None


def delete_owned(
    store: Store,
    table: Table,
    key: str,
    value: str,
    account_id: int,
    label: str,
    detach: Sequence[tuple[Table, str]] = (),
) -> None:
    """Delete one account-owned object, first clearing the `detach` (table, column)
    references to it in the same account, in one transaction. The explicit detach keeps
    this correct where the database does not enforce foreign keys."""
    with store.engine.begin() as conn:
        for referrer, column in detach:
            conn.execute(
                update(referrer)
                .where(and_(referrer.c[column] == value, referrer.c.account_id == account_id))
                .values({column: None})
            )
        result = conn.execute(
            delete(table).where(and_(table.c[key] == value, table.c.account_id == account_id))
        )
    if result.rowcount == 0:
        raise NotFound(f"{label} {value} not found")


def stored_secret(store: Store, secret: Column[Any], key: Column[Any], value: str) -> str | None:
    """For the SIP edge: the decrypted secret in column `secret` of the row whose `key`
    is `value`; None when there is no such row or no secret."""
    with store.engine.connect() as conn:
        enc = conn.execute(select(secret).where(key == value)).scalar_one_or_none()
    return None if enc is None else store.box.decrypt(enc)
