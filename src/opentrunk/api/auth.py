"""Request authentication: HTTP Basic for customers (plus the per-account rate limit), a
bearer operator token for the admin API, and who may read `/metrics`."""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
from dataclasses import dataclass
from typing import Annotated

from fastapi import Path, Request
from starlette.concurrency import run_in_threadpool

from opentrunk.api.errors import ApiError
from opentrunk.api.ratelimit import RateLimiter
from opentrunk.services.accounts import authenticate
from opentrunk.store.secrets import token_matches
from opentrunk.store.store import Store

REALM = "opentrunk"
_CHALLENGE = {"WWW-Authenticate": f'Basic realm="{REALM}"'}


@dataclass(frozen=True)
class Caller:
    """The authenticated account a customer request acts for."""

    store: Store
    account_id: int
    auth_id: str


def _basic_credentials(request: Request) -> tuple[str, str]:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        raise ApiError(
            401, "authentication required: use HTTP Basic with auth_id and auth_token", _CHALLENGE
        )
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise ApiError(401, "malformed Basic credentials", _CHALLENGE) from None
    user, sep, password = decoded.partition(":")
    if not sep:
        raise ApiError(401, "malformed Basic credentials", _CHALLENGE)
    return user, password


AuthIdPath = Annotated[
    str, Path(description="the account's auth_id (the same as the Basic-auth user name)")
]


async def customer(request: Request, auth_id: AuthIdPath) -> Caller:
    """Dependency of every customer route: Basic auth, path ownership, rate limit.

    Declares the `{auth_id}` path parameter, so every customer operation publishes it in
    /openapi.json. Runs on the event loop: with the account cached, it is one dict lookup
    and one SHA-256 (no thread hop, no query).
    """
    store: Store = request.app.state.store
    user, token = _basic_credentials(request)
    cached = store.cached_account(user)
    account_id: int | None
    if cached is not None:
        ok = cached.enabled and token_matches(token, cached.token_hash)
        account_id = cached.account_id if ok else None
    else:
        account_id = await run_in_threadpool(authenticate, store, user, token)
    if account_id is None:
        raise ApiError(
            401,
            "authentication failed: wrong auth_id or auth_token, or account disabled",
            _CHALLENGE,
        )
    if user != auth_id:
        # Another account's path: answer as for a path that does not exist, so that the
        # caller learns nothing about the other account, not even whether it exists.
        raise ApiError(404, f"not found: no resource at {request.url.path}")
    limiter: RateLimiter = request.app.state.limiter
    wait = await limiter.acquire(auth_id)
    if wait > 0:
        raise ApiError(
            429,
            "rate limit exceeded for this account; retry later",
            {"Retry-After": limiter.retry_after_header(wait)},
        )
    return Caller(store, account_id, auth_id)


async def operator(request: Request) -> Store:
    """Dependency of every admin route: the operator bearer token."""
    expected: str = request.app.state.admin_token
    if not expected:
        raise ApiError(
            403,
            "the admin API is disabled: no admin token is configured "
            "(set OPENTRUNK_ADMIN_TOKEN or serve --admin-token)",
        )
    _check_bearer(request, expected)
    store: Store = request.app.state.store
    return store


async def metrics_reader(request: Request) -> None:
    """Dependency of `/metrics`. The API port faces customers, and the edge's figures
    (calls by outcome, active calls, failed logins) are the operator's business: with an
    admin token configured, the scrape must send it (Prometheus: `authorization`
    credentials); without one, only clients on loopback are answered (a local agent)."""
    expected: str = request.app.state.admin_token
    if expected:
        _check_bearer(request, expected)
        return
    host = request.client.host if request.client is not None else ""
    if not _is_loopback(host):
        raise ApiError(
            403,
            "/metrics is served on loopback only while no admin token is configured; "
            "set OPENTRUNK_ADMIN_TOKEN and scrape with Authorization: Bearer <admin token>",
        )


def _is_loopback(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False  # a test client's name, a Unix socket: not a loopback address
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback  # ::ffff:127.0.0.1 on a dual-stack socket
    return address.is_loopback


def _check_bearer(request: Request, expected: str) -> None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        value.strip().encode(), expected.encode()
    ):
        raise ApiError(
            401,
            "operator authentication failed: send Authorization: Bearer <admin token>",
            {"WWW-Authenticate": f'Bearer realm="{REALM}-admin"'},
        )
