"""Zentrunk origination URIs: where inbound calls of a trunk are delivered. The optional
password (to answer the PBX's digest challenge) is kept Fernet-encrypted."""

from __future__ import annotations

from typing import Any

from sqlalchemy import update

from opentrunk.domain.validation import InvalidParameter, MissingParameter, check_origination_uri
from opentrunk.services.clock import utcnow
from opentrunk.services.paging import Page
from opentrunk.services.resources import (
    OwnedRead,
    delete_owned,
    fetch_owned,
    insert_row,
    list_owned,
    new_uuid,
    stored_secret,
)
from opentrunk.store.models import origination_uris, trunks
from opentrunk.store.store import Store

MAX_SECRET_LEN = 128


READ = OwnedRead(
    origination_uris,
    "uri_uuid",
    "uri",
    ("uri_uuid", "name", "uri", "authentication_needed", "username"),
)


def uri_view(row: Any) -> dict[str, Any]:
    return {
        "uri_uuid": row.uri_uuid,
        "name": row.name,
        "uri": row.uri,
        "authentication_needed": bool(row.authentication_needed),
        "username": row.username,
    }


def _check_auth(auth: bool, username: str | None, password: str | None, stored: bool) -> None:
    """With authentication_needed, a username and a password (new or stored) are required."""
    if not auth:
        return
    missing = []
    if not username:
        missing.append("username")
    if not password and not stored:
        missing.append("password")
    if missing:
        raise MissingParameter(
            f"authentication_needed is true: missing required parameter: {', '.join(missing)}"
        )
    if len(username or "") > MAX_SECRET_LEN or len(password or "") > MAX_SECRET_LEN:
        raise InvalidParameter(f"username and password must be at most {MAX_SECRET_LEN} characters")


def create_uri(store: Store, account_id: int, fields: dict[str, Any]) -> str:
    uri = check_origination_uri(fields["uri"])
    auth = bool(fields.get("authentication_needed") or False)
    username, password = fields.get("username"), fields.get("password")
    _check_auth(auth, username, password, stored=False)
    uri_uuid = new_uuid()
    insert_row(
        store,
        origination_uris,
        dict(
            uri_uuid=uri_uuid,
            account_id=account_id,
            name=fields.get("name") or "",
            uri=uri,
            authentication_needed=auth,
            username=username if auth else None,
            password_enc=store.box.encrypt(password) if auth and password else None,
            created_at=utcnow(),
        ),
    )
    return uri_uuid


def get_uri(store: Store, account_id: int, uri_uuid: str) -> dict[str, Any]:
    return uri_view(READ.fetch_sync(store, account_id, uri_uuid))


async def read_uri(store: Store, account_id: int, uri_uuid: str) -> dict[str, Any]:
    """get_uri for the event loop (see opentrunk.store.reader)."""
    return uri_view(await READ.fetch(store, account_id, uri_uuid))


def list_uris(store: Store, account_id: int, limit: int, offset: int) -> Page:
    return list_owned(store, origination_uris, "uri_uuid", account_id, limit, offset, uri_view)


def update_uri(store: Store, account_id: int, uri_uuid: str, changes: dict[str, Any]) -> str:
    with store.engine.begin() as conn:
        row = fetch_owned(conn, origination_uris, "uri_uuid", uri_uuid, account_id, "uri")
        values: dict[str, Any] = {}
        if "name" in changes:
            values["name"] = changes["name"] or ""
        if "uri" in changes:
            if changes["uri"] is None:
                raise InvalidParameter("uri may not be null")
            values["uri"] = check_origination_uri(changes["uri"])
        auth = row.authentication_needed
        if "authentication_needed" in changes:
            auth = bool(changes["authentication_needed"])
            values["authentication_needed"] = auth
        username = changes.get("username", row.username)
        password = changes.get("password")
        stored = row.password_enc is not None and "password" not in changes
        _check_auth(auth, username, password, stored)
        if auth:
            values["username"] = username
            if password:
                values["password_enc"] = store.box.encrypt(password)
        else:
            values["username"] = None
            values["password_enc"] = None
        conn.execute(
            update(origination_uris).where(origination_uris.c.uri_uuid == uri_uuid).values(values)
        )
    return uri_uuid


def delete_uri(store: Store, account_id: int, uri_uuid: str) -> None:
    delete_owned(
        store,
        origination_uris,
        "uri_uuid",
        uri_uuid,
        account_id,
        READ.label,
        detach=[(trunks, "primary_uri_uuid"), (trunks, "fallback_uri_uuid")],
    )


def uri_password(store: Store, uri_uuid: str) -> str | None:
    """For the SIP edge: the decrypted password of an origination URI, if any."""
    return stored_secret(
        store, origination_uris.c.password_enc, origination_uris.c.uri_uuid, uri_uuid
    )
