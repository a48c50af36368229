"""A live `opentrunk serve` on a fresh SQLite store, with an operator token and one customer
account, for the property-based run over the server's own OpenAPI document."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from api_live import Account, LiveServer, live_server

ADMIN_TOKEN = "fuzz-admin-" + uuid.uuid4().hex


@pytest.fixture(scope="session")
def admin_token() -> str:
    return ADMIN_TOKEN


@pytest.fixture(scope="session")
def fuzz_server() -> Iterator[LiveServer]:
    with live_server(OPENTRUNK_ADMIN_TOKEN=ADMIN_TOKEN) as srv:
        yield srv


@pytest.fixture(scope="session")
def fuzz_account(fuzz_server: LiveServer) -> Account:
    acct = fuzz_server.create_account("fuzz")
    fuzz_server.add_number("+14155550199", acct)
    return acct


@pytest.fixture(scope="session")
def admin_target(fuzz_server: LiveServer) -> Account:
    """The account the admin operations act on (disable, rotate-token...), so that they
    never lock the fuzzing customer out mid-run."""
    return fuzz_server.create_account("fuzz-admin-target")


@pytest.fixture(scope="session")
def real_ids(fuzz_server: LiveServer, fuzz_account: Account) -> dict[str, str]:
    """One real object of each kind in the fuzzing account, keyed by path-parameter name, so
    that generated updates meet existing objects instead of stopping at a 404."""
    base = f"{fuzz_server.base_url}/v1/Account/{fuzz_account.auth_id}/Zentrunk"
    with httpx.Client(auth=fuzz_account.basic, timeout=10) as http:

        def create(kind: str, body: dict[str, object], key: str) -> str:
            answer = http.post(f"{base}/{kind}/", json=body)
            assert answer.status_code == 201, answer.text
            return str(answer.json()[key])

        ids = {
            "ipacl_uuid": create(
                "IPAccessControlList", {"ip_addresses": ["198.51.100.9"]}, "ipacl_uuid"
            ),
            "credential_uuid": create(
                "Credential", {"username": "fuzzuser1", "password": "fuzz!pass1"}, "credential_uuid"
            ),
            "uri_uuid": create("URI", {"uri": "127.0.0.1:5998"}, "uri_uuid"),
            "number": "14155550199",
        }
        ids["trunk_id"] = create(
            "Trunk", {"trunk_direction": "inbound", "primary_uri_uuid": ids["uri_uuid"]}, "trunk_id"
        )
    return ids
