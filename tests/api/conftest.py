"""Fixtures: one store per database backend per session, an app over it, and fresh
accounts (tests isolate themselves by account, not by database)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from dbutil import BACKENDS, open_store
from opentrunk.api.app import create_app
from opentrunk.config import Settings
from opentrunk.services.accounts import create_account
from opentrunk.store.store import Store

ADMIN_TOKEN = "operator-secret-token-for-tests"


@pytest.fixture(scope="session", params=BACKENDS)
def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Store]:
    data_dir: Path = tmp_path_factory.mktemp(f"data-{request.param}")
    with open_store(request.param, data_dir) as s:
        yield s


@pytest.fixture(scope="session")
def client(store: Store) -> Iterator[TestClient]:
    settings = Settings(
        sip_domain=store.sip_domain, admin_token=ADMIN_TOKEN, api_rate_limit=0, api_rate_burst=1
    )
    with TestClient(create_app(settings, store)) as c:
        yield c


@dataclass
class Account:
    auth_id: str
    auth_token: str
    client: TestClient

    @property
    def auth(self) -> tuple[str, str]:
        return (self.auth_id, self.auth_token)

    def url(self, rest: str) -> str:
        return f"/v1/Account/{self.auth_id}/{rest}"

    def get(self, rest: str, **kw: object):  # type: ignore[no-untyped-def]
        return self.client.get(self.url(rest), auth=self.auth, **kw)  # type: ignore[arg-type]

    def post(self, rest: str, body: object = None, **kw: object):  # type: ignore[no-untyped-def]
        return self.client.post(self.url(rest), json=body, auth=self.auth, **kw)  # type: ignore[arg-type]

    def delete(self, rest: str):  # type: ignore[no-untyped-def]
        return self.client.delete(self.url(rest), auth=self.auth)


@pytest.fixture
def account(store: Store, client: TestClient) -> Account:
    created = create_account(store, "test")
    return Account(created["auth_id"], created["auth_token"], client)


@pytest.fixture
def other(store: Store, client: TestClient) -> Account:
    created = create_account(store, "other")
    return Account(created["auth_id"], created["auth_token"], client)
