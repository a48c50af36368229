"""Fixtures for the edge-ops tests: a real store per backend (SQLite always, PostgreSQL
when OPENTRUNK_TEST_DATABASE_URL is set) and accounts made through the service layer."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dbutil import BACKENDS, open_store
from opentrunk.services.accounts import account_id_of, create_account
from opentrunk.store.store import Store


@pytest.fixture(scope="module", params=BACKENDS)
def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Store]:
    data_dir: Path = tmp_path_factory.mktemp(f"edge-ops-{request.param}")
    with open_store(request.param, data_dir, sip_domain="zt.example.test") as s:
        yield s


@dataclass
class Account:
    auth_id: str
    auth_token: str
    account_id: int


@pytest.fixture
def account(store: Store) -> Account:
    created = create_account(store, "edge-ops")
    return Account(
        created["auth_id"], created["auth_token"], account_id_of(store, created["auth_id"])
    )
