"""The per-account API rate limit shared across workers through Redis (OPENTRUNK_REDIS_URL):
two app instances (two workers) on one store and one Redis draw from the same bucket;
without Redis each worker has its own. CI sets OPENTRUNK_TEST_REDIS_URL, and then a
missing Redis fails the test instead of skipping it."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from urllib.parse import urlparse

import pytest
import redis
from fastapi.testclient import TestClient

from api.conftest import Account
from api.helpers import assert_error
from opentrunk.api.app import create_app
from opentrunk.api.ratelimit import KEY_PREFIX
from opentrunk.config import Settings
from opentrunk.services.accounts import create_account
from opentrunk.store.store import Store

REDIS_URL = os.environ.get("OPENTRUNK_TEST_REDIS_URL", "")
LOCAL_REDIS = "redis://127.0.0.1:6379/0"
BURST = 4


def _redis_reachable() -> bool:
    if REDIS_URL or os.environ.get("CI"):
        return True  # asked for: a missing server must fail, not skip
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5):
            return True
    except OSError:
        return False


needs_redis = pytest.mark.skipif(
    not _redis_reachable(), reason="no Redis at 127.0.0.1:6379 (set OPENTRUNK_TEST_REDIS_URL)"
)


@contextmanager
def workers(store: Store, redis_url: str, count: int = 2) -> Iterator[list[TestClient]]:
    # A slow refill: the test's requests all come out of the burst.
    settings = Settings(
        sip_domain=store.sip_domain, api_rate_limit=0.01, api_rate_burst=BURST, redis_url=redis_url
    )
    with ExitStack() as stack:
        yield [stack.enter_context(TestClient(create_app(settings, store))) for _ in range(count)]


def statuses_alternating(clients: list[TestClient], auth: tuple[str, str], n: int) -> list[int]:
    codes = []
    for i in range(n):
        client = clients[i % len(clients)]
        codes.append(client.get(f"/v1/Account/{auth[0]}/Zentrunk/Trunk/", auth=auth).status_code)
    return codes


@needs_redis
def test_workers_share_one_bucket_in_redis(store):
    url = REDIS_URL or LOCAL_REDIS
    assert urlparse(url).hostname in ("127.0.0.1", "localhost", "::1")
    created = create_account(store, "shared-limit")
    auth = (created["auth_id"], created["auth_token"])
    direct = redis.Redis.from_url(url)
    try:
        with workers(store, url) as clients:
            codes = statuses_alternating(clients, auth, BURST + 2)
            assert codes == [200] * BURST + [429, 429]
            refused = clients[0].get(f"/v1/Account/{auth[0]}/Zentrunk/Trunk/", auth=auth)
            assert_error(refused, 429, "rate limit")
            assert int(refused.headers["retry-after"]) >= 1
            # The bucket is in Redis, under the account's auth_id.
            assert direct.exists(KEY_PREFIX + auth[0]) == 1
            # Another account has its own bucket, in Redis too.
            other = create_account(store, "neighbour")
            neighbour = Account(other["auth_id"], other["auth_token"], clients[1])
            assert neighbour.get("Zentrunk/Trunk/").status_code == 200
            direct.delete(KEY_PREFIX + other["auth_id"])
    finally:
        direct.delete(KEY_PREFIX + auth[0])
        direct.close()


def test_without_redis_each_worker_has_its_own_bucket(store):
    created = create_account(store, "per-worker-limit")
    auth = (created["auth_id"], created["auth_token"])
    with workers(store, "") as clients:
        codes = statuses_alternating(clients, auth, 2 * BURST + 2)
        assert codes == [200] * (2 * BURST) + [429, 429]


def test_unreachable_redis_lets_requests_through(store):
    created = create_account(store, "redis-down")
    auth = (created["auth_id"], created["auth_token"])
    # A port nothing listens on: the limiter fails open rather than failing the API.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"redis://127.0.0.1:{probe.getsockname()[1]}/0"
    with workers(store, dead, count=1) as clients:
        assert statuses_alternating(clients, auth, BURST + 2) == [200] * (BURST + 2)
