"""Zentrunk credentials: username plus digest HA1 values; the password is never stored.

The digest realm is the deployment's SIP domain (one realm per deployment): a credential
may be attached to several trunks, each with its own trunk domain, so the realm cannot be
the trunk domain. The realm used is stored with the hashes.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from opentrunk.domain.validation import (
    InvalidParameter,
    check_credential_password,
    check_credential_username,
)
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
from opentrunk.store.models import credentials, trunks
from opentrunk.store.secrets import digest_ha1
from opentrunk.store.store import Store

READ = OwnedRead(
    credentials, "credential_uuid", "credential", ("credential_uuid", "name", "username")
)


def credential_view(row: Any) -> dict[str, Any]:
    return {"credential_uuid": row.credential_uuid, "name": row.name, "username": row.username}


def _duplicate(username: str) -> InvalidParameter:
    return InvalidParameter(
        f"username {username!r} is already used by a credential of this account"
    )


def create_credential(
    store: Store, account_id: int, username: str, password: str, name: str | None
) -> str:
    check_credential_username(username)
    check_credential_password(password)
    ha1_md5, ha1_sha256 = digest_ha1(username, store.sip_domain, password)
    credential_uuid = new_uuid()
    insert_row(
        store,
        credentials,
        dict(
            credential_uuid=credential_uuid,
            account_id=account_id,
            name=name or "",
            username=username,
            realm=store.sip_domain,
            ha1_md5=ha1_md5,
            ha1_sha256=ha1_sha256,
            created_at=utcnow(),
        ),
        duplicate=_duplicate(username),
    )
    return credential_uuid


def get_credential(store: Store, account_id: int, credential_uuid: str) -> dict[str, Any]:
    return credential_view(READ.fetch_sync(store, account_id, credential_uuid))


async def read_credential(store: Store, account_id: int, credential_uuid: str) -> dict[str, Any]:
    """get_credential for the event loop (see opentrunk.store.reader)."""
    return credential_view(await READ.fetch(store, account_id, credential_uuid))


def list_credentials(store: Store, account_id: int, limit: int, offset: int) -> Page:
    return list_owned(
        store, credentials, "credential_uuid", account_id, limit, offset, credential_view
    )


def update_credential(
    store: Store, account_id: int, credential_uuid: str, changes: dict[str, Any]
) -> str:
    values: dict[str, Any] = {}
    if "name" in changes:
        values["name"] = changes["name"] or ""
    for field in ("username", "password"):
        if field in changes and changes[field] is None:
            raise InvalidParameter(f"{field} may not be null")
    try:
        with store.engine.begin() as conn:
            row = fetch_owned(
                conn, credentials, "credential_uuid", credential_uuid, account_id, "credential"
            )
            username = changes.get("username", row.username)
            if "username" in changes:
                check_credential_username(username)
                values["username"] = username
            if "password" in changes:
                check_credential_password(changes["password"])
                md5, sha = digest_ha1(username, store.sip_domain, changes["password"])
                values.update(ha1_md5=md5, ha1_sha256=sha, realm=store.sip_domain)
            elif "username" in changes and username != row.username:
                # HA1 covers the username; without the password it cannot be recomputed.
                raise InvalidParameter("changing the username requires the password as well")
            if values:
                conn.execute(
                    update(credentials)
                    .where(credentials.c.credential_uuid == credential_uuid)
                    .values(values)
                )
    except IntegrityError:
        raise _duplicate(changes.get("username", "")) from None
    return credential_uuid


def delete_credential(store: Store, account_id: int, credential_uuid: str) -> None:
    delete_owned(
        store,
        credentials,
        "credential_uuid",
        credential_uuid,
        account_id,
        READ.label,
        detach=[(trunks, "credential_uuid")],
    )


def digest_secrets(store: Store, credential_uuid: str) -> dict[str, str] | None:
    """For the SIP edge: username, realm and both HA1 values of a credential."""
    with store.engine.connect() as conn:
        row = conn.execute(
            select(credentials).where(credentials.c.credential_uuid == credential_uuid)
        ).first()
    if row is None:
        return None
    return {
        "username": row.username,
        "realm": row.realm,
        "ha1_md5": row.ha1_md5,
        "ha1_sha256": row.ha1_sha256,
    }
