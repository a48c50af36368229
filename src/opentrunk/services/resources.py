"""Shared helpers for account-owned resources: id generation, paging queries, lookups."""

from __future__ import annotations

import secrets
import uuid
from typing import Any

from sqlalchemy import ColumnElement, Connection, Row, Table, and_, func, select

from opentrunk.services.errors import NotFound
from opentrunk.services.paging import Page


def new_uuid() -> str:
    return str(uuid.uuid4())


def new_trunk_id() -> str:
    """A 15-digit numeric trunk id (no leading zero, so it stays 15 digits as a number)."""
    return str(secrets.randbelow(9 * 10**14) + 10**14)


def fetch_owned(
    conn: Connection, table: Table, key: str, value: str, account_id: int, label: str
) -> Row[Any]:
    row = conn.execute(
        select(table).where(and_(table.c[key] == value, table.c.account_id == account_id))
    ).first()
    if row is None:
        raise NotFound(f"{label} {value} not found")
    return row


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
