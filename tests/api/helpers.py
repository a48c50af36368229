"""Builders for the resources trunks refer to."""

from __future__ import annotations

import uuid
from typing import Any


def is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def assert_error(resp: Any, status: int, *words: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"api_id", "error"}, body
    assert is_uuid(body["api_id"])
    assert resp.headers["x-api-id"] == body["api_id"]
    for word in words:
        assert word.lower() in body["error"].lower(), body["error"]
    return body


def make_acl(acct: Any, ips: list[str] | None = None) -> str:
    r = acct.post("Zentrunk/IPAccessControlList/", {"ip_addresses": ips or ["198.51.100.0/24"]})
    assert r.status_code == 201, r.text
    return str(r.json()["ipacl_uuid"])


def make_credential(acct: Any, username: str = "pbxuser1") -> str:
    r = acct.post("Zentrunk/Credential/", {"username": username, "password": "s3cret!pw"})
    assert r.status_code == 201, r.text
    return str(r.json()["credential_uuid"])


def make_uri(acct: Any, uri: str = "pbx.example.com:5060") -> str:
    r = acct.post("Zentrunk/URI/", {"uri": uri})
    assert r.status_code == 201, r.text
    return str(r.json()["uri_uuid"])


def make_trunk(acct: Any, direction: str = "outbound", **fields: Any) -> str:
    body: dict[str, Any] = {"trunk_direction": direction, **fields}
    if direction == "outbound" and "ipacl_uuid" not in fields and "credential_uuid" not in fields:
        body["ipacl_uuid"] = make_acl(acct)
    if direction == "inbound" and "primary_uri_uuid" not in fields:
        body["primary_uri_uuid"] = make_uri(acct)
    r = acct.post("Zentrunk/Trunk/", body)
    assert r.status_code == 201, r.text
    return str(r.json()["trunk_id"])
