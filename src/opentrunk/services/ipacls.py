"""Zentrunk IP access control lists: addresses and CIDR ranges a trunk accepts calls from."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import update

from opentrunk.domain.validation import check_acl_entries
from opentrunk.services.clock import utcnow
from opentrunk.services.paging import Page
from opentrunk.services.resources import (
    OwnedRead,
    delete_owned,
    fetch_owned,
    insert_row,
    list_owned,
    new_uuid,
)
from opentrunk.store.models import ip_acls, trunks
from opentrunk.store.store import Store

READ = OwnedRead(ip_acls, "ipacl_uuid", "ip access list", ("ipacl_uuid", "name", "ip_addresses"))


def ipacl_view(row: Any) -> dict[str, Any]:
    return {
        "ipacl_uuid": row.ipacl_uuid,
        "name": row.name,
        "ip_addresses": json.loads(row.ip_addresses),
    }


def create_ipacl(store: Store, account_id: int, ip_addresses: list[str], name: str | None) -> str:
    entries = check_acl_entries(ip_addresses)
    ipacl_uuid = new_uuid()
    insert_row(
        store,
        ip_acls,
        dict(
            ipacl_uuid=ipacl_uuid,
            account_id=account_id,
            name=name or "",
            ip_addresses=json.dumps(entries),
            created_at=utcnow(),
        ),
    )
    return ipacl_uuid


def get_ipacl(store: Store, account_id: int, ipacl_uuid: str) -> dict[str, Any]:
    return ipacl_view(READ.fetch_sync(store, account_id, ipacl_uuid))


async def read_ipacl(store: Store, account_id: int, ipacl_uuid: str) -> dict[str, Any]:
    """get_ipacl for the event loop (see opentrunk.store.reader)."""
    return ipacl_view(await READ.fetch(store, account_id, ipacl_uuid))


def list_ipacls(store: Store, account_id: int, limit: int, offset: int) -> Page:
    return list_owned(store, ip_acls, "ipacl_uuid", account_id, limit, offset, ipacl_view)


def update_ipacl(store: Store, account_id: int, ipacl_uuid: str, changes: dict[str, Any]) -> str:
    values: dict[str, Any] = {}
    if "name" in changes:
        values["name"] = changes["name"] or ""
    if "ip_addresses" in changes:
        if changes["ip_addresses"] is None:
            check_acl_entries([])
        values["ip_addresses"] = json.dumps(check_acl_entries(changes["ip_addresses"]))
    with store.engine.begin() as conn:
        fetch_owned(conn, ip_acls, "ipacl_uuid", ipacl_uuid, account_id, "ip access list")
        if values:
            conn.execute(update(ip_acls).where(ip_acls.c.ipacl_uuid == ipacl_uuid).values(values))
    return ipacl_uuid


def delete_ipacl(store: Store, account_id: int, ipacl_uuid: str) -> None:
    delete_owned(
        store,
        ip_acls,
        "ipacl_uuid",
        ipacl_uuid,
        account_id,
        READ.label,
        detach=[(trunks, "ipacl_uuid")],
    )
