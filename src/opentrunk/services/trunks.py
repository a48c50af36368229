"""Zentrunk trunks: create, read, update, delete, with the trunk-shape rules."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, and_, insert, select, update
from sqlalchemy.exc import IntegrityError

from opentrunk.domain.validation import InvalidParameter, TrunkShape, check_trunk_shape, check_uuid
from opentrunk.services.clock import utcnow
from opentrunk.services.paging import Page
from opentrunk.services.resources import (
    OwnedRead,
    delete_owned,
    fetch_owned,
    list_owned,
    new_trunk_id,
)
from opentrunk.store.models import credentials, ip_acls, numbers, origination_uris, trunks
from opentrunk.store.store import Store

REFERENCES = {
    "ipacl_uuid": (ip_acls, "ipacl_uuid"),
    "credential_uuid": (credentials, "credential_uuid"),
    "primary_uri_uuid": (origination_uris, "uri_uuid"),
    "fallback_uri_uuid": (origination_uris, "uri_uuid"),
}
FIELDS = ("name", "trunk_status", "trunk_direction", "secure", *REFERENCES)
READ = OwnedRead(trunks, "trunk_id", "trunk", ("trunk_id", *FIELDS))


def trunk_view(row: Any, sip_domain: str) -> dict[str, Any]:
    """The API shape of a trunk row (a SQLAlchemy Row or a READ named tuple)."""
    return {
        "trunk_id": row.trunk_id,
        "trunk_domain": f"{row.trunk_id}.{sip_domain}",
        "name": row.name,
        "trunk_status": row.trunk_status,
        "trunk_direction": row.trunk_direction,
        "secure": bool(row.secure),
        "ipacl_uuid": row.ipacl_uuid,
        "credential_uuid": row.credential_uuid,
        "primary_uri_uuid": row.primary_uri_uuid,
        "fallback_uri_uuid": row.fallback_uri_uuid,
    }


def _check_references(conn: Connection, account_id: int, values: dict[str, Any]) -> None:
    for field, (table, key) in REFERENCES.items():
        ref = values.get(field)
        if ref is None:
            continue
        values[field] = ref = check_uuid(ref, field)
        found = conn.execute(
            select(table.c[key]).where(and_(table.c[key] == ref, table.c.account_id == account_id))
        ).first()
        if found is None:
            raise InvalidParameter(f"{field} {ref} does not exist in this account")


def _shape(values: dict[str, Any]) -> TrunkShape:
    return TrunkShape(
        trunk_direction=str(values.get("trunk_direction")),
        ipacl_uuid=values.get("ipacl_uuid"),
        credential_uuid=values.get("credential_uuid"),
        primary_uri_uuid=values.get("primary_uri_uuid"),
        fallback_uri_uuid=values.get("fallback_uri_uuid"),
    )


def _normalize_refs(values: dict[str, Any]) -> None:
    # An empty string clears a reference, like null.
    for field in REFERENCES:
        if field in values and values[field] == "":
            values[field] = None


def create_trunk(store: Store, account_id: int, values: dict[str, Any]) -> str:
    values = {k: v for k, v in values.items() if k in FIELDS}
    _normalize_refs(values)
    values.setdefault("trunk_status", "enabled")
    values.setdefault("secure", False)
    if values.get("name") is None:
        values["name"] = ""
    check_trunk_shape(_shape(values))
    with store.engine.begin() as conn:
        _check_references(conn, account_id, values)
        for _ in range(5):
            trunk_id = new_trunk_id()
            try:
                with conn.begin_nested():
                    conn.execute(
                        insert(trunks).values(
                            trunk_id=trunk_id, account_id=account_id, created_at=utcnow(), **values
                        )
                    )
            except IntegrityError:
                continue
            return trunk_id
    raise RuntimeError("could not allocate a unique trunk_id")


def get_trunk(store: Store, account_id: int, trunk_id: str) -> dict[str, Any]:
    return trunk_view(READ.fetch_sync(store, account_id, trunk_id), store.sip_domain)


async def read_trunk(store: Store, account_id: int, trunk_id: str) -> dict[str, Any]:
    """get_trunk for the event loop: inline on SQLite, a worker thread on PostgreSQL."""
    return trunk_view(await READ.fetch(store, account_id, trunk_id), store.sip_domain)


def list_trunks(
    store: Store, account_id: int, filters: dict[str, Any], limit: int, offset: int
) -> Page:
    return list_owned(
        store,
        trunks,
        "trunk_id",
        account_id,
        limit,
        offset,
        lambda row: trunk_view(row, store.sip_domain),
        [trunks.c[field] == value for field, value in filters.items() if value is not None],
    )


def update_trunk(store: Store, account_id: int, trunk_id: str, changes: dict[str, Any]) -> str:
    changes = {k: v for k, v in changes.items() if k in FIELDS}
    _normalize_refs(changes)
    if "name" in changes and changes["name"] is None:
        changes["name"] = ""
    for field in ("trunk_status", "trunk_direction", "secure"):
        if field in changes and changes[field] is None:
            raise InvalidParameter(f"{field} may not be null")
    with store.engine.begin() as conn:
        row = fetch_owned(conn, trunks, "trunk_id", trunk_id, account_id, "trunk")
        merged = {f: changes.get(f, getattr(row, f)) for f in ("trunk_direction", *REFERENCES)}
        check_trunk_shape(_shape(merged))
        _check_references(conn, account_id, changes)
        if changes.get("trunk_direction") == "outbound":
            # Only inbound trunks may be attached to numbers (API.md).
            conn.execute(
                update(numbers).where(numbers.c.trunk_id == trunk_id).values(trunk_id=None)
            )
        if changes:
            conn.execute(update(trunks).where(trunks.c.trunk_id == trunk_id).values(changes))
    return trunk_id


def delete_trunk(store: Store, account_id: int, trunk_id: str) -> None:
    delete_owned(
        store, trunks, "trunk_id", trunk_id, account_id, READ.label, detach=[(numbers, "trunk_id")]
    )
