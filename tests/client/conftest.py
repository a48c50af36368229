"""A live `opentrunk serve` on a fresh store (SQLite; PostgreSQL too when
OPENTRUNK_TEST_DATABASE_URL is set), for the tests that drive it from the outside."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from api_live import LiveServer, server_on


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest) -> Iterator[LiveServer]:
    pg_url = ""
    if request.param == "postgresql":
        pg_url = os.environ.get("OPENTRUNK_TEST_DATABASE_URL", "")
        if not pg_url:
            pytest.skip("OPENTRUNK_TEST_DATABASE_URL not set")
    with server_on(pg_url) as srv:
        yield srv
