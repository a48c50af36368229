"""Accounts: creation, listing, disabling, token rotation, limits and policy, and the
Basic-auth check the API runs on every request."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row, insert, select, update
from sqlalchemy.exc import IntegrityError

from opentrunk.domain.validation import InvalidParameter, check_prefixes, parse_countries
from opentrunk.services.clock import fmt, utcnow
from opentrunk.services.errors import NotFound
from opentrunk.store.models import accounts
from opentrunk.store.secrets import hash_token, new_auth_id, new_auth_token, token_matches
from opentrunk.store.store import Store


def account_view(row: Row[Any]) -> dict[str, Any]:
    """What the operator sees of an account (never the token hash)."""
    return {
        "auth_id": row.auth_id,
        "name": row.name,
        "enabled": row.enabled,
        "created_at": fmt(row.created_at),
        "limits": {
            "cps": row.cps,
            "max_calls": row.max_calls,
            "countries": row.countries.split(",") if row.countries else "all",
            "caller_id_policy": row.caller_id_policy,
            "billing_increment": row.billing_increment,
            "barred_prefixes": row.barred_prefixes.split(",") if row.barred_prefixes else [],
        },
    }


def create_account(store: Store, name: str) -> dict[str, Any]:
    """Create an account; the only time its token is returned in clear."""
    name = name.strip()
    if not name or len(name) > 100:
        raise InvalidParameter("name must be 1 to 100 characters")
    token = new_auth_token()
    for _ in range(5):
        auth_id = new_auth_id()
        try:
            with store.engine.begin() as conn:
                conn.execute(
                    insert(accounts).values(
                        auth_id=auth_id,
                        name=name,
                        token_hash=hash_token(token),
                        enabled=True,
                        created_at=utcnow(),
                        cps=2.0,
                        max_calls=None,
                        countries=None,
                        caller_id_policy=True,
                        billing_increment=60,
                        barred_prefixes="",
                    )
                )
        except IntegrityError:  # an auth_id collision: 36^18 makes this theoretical
            continue
        return {"auth_id": auth_id, "auth_token": token, "name": name}
    raise RuntimeError("could not allocate a unique auth_id")


def _get_row(store: Store, auth_id: str) -> Row[Any]:
    with store.engine.connect() as conn:
        row = conn.execute(select(accounts).where(accounts.c.auth_id == auth_id)).first()
    if row is None:
        raise NotFound(f"account {auth_id} not found")
    return row


def get_account(store: Store, auth_id: str) -> dict[str, Any]:
    return account_view(_get_row(store, auth_id))


def account_id_of(store: Store, auth_id: str) -> int:
    return int(_get_row(store, auth_id).id)


def list_accounts(store: Store) -> list[dict[str, Any]]:
    with store.engine.connect() as conn:
        rows = conn.execute(select(accounts).order_by(accounts.c.id)).all()
    return [account_view(r) for r in rows]


def _update(store: Store, auth_id: str, **values: Any) -> None:
    with store.engine.begin() as conn:
        result = conn.execute(update(accounts).where(accounts.c.auth_id == auth_id).values(values))
    if result.rowcount == 0:
        raise NotFound(f"account {auth_id} not found")
    store.invalidate_account(auth_id)


def disable_account(store: Store, auth_id: str) -> dict[str, Any]:
    _update(store, auth_id, enabled=False)
    return get_account(store, auth_id)


def enable_account(store: Store, auth_id: str) -> dict[str, Any]:
    _update(store, auth_id, enabled=True)
    return get_account(store, auth_id)


def rotate_token(store: Store, auth_id: str) -> dict[str, Any]:
    token = new_auth_token()
    _update(store, auth_id, token_hash=hash_token(token))
    return {"auth_id": auth_id, "auth_token": token}


def set_limits(
    store: Store,
    auth_id: str,
    *,
    cps: float | None = None,
    max_calls: int | None = None,
    unlimited_calls: bool = False,
    countries: str | None = None,
    caller_id_policy: bool | None = None,
    billing_increment: int | None = None,
    barred_prefixes: list[str] | None = None,
) -> dict[str, Any]:
    """Change an account's call limits and policy; None leaves a value as it is."""
    values: dict[str, Any] = {}
    if cps is not None:
        if not 0 < cps <= 10_000:
            raise InvalidParameter("cps must be greater than 0 and at most 10000")
        values["cps"] = float(cps)
    if unlimited_calls:
        values["max_calls"] = None
    elif max_calls is not None:
        if not 0 <= max_calls <= 1_000_000:
            raise InvalidParameter("max_calls must be 0 to 1000000")
        values["max_calls"] = max_calls
    if countries is not None:
        parsed = parse_countries(countries)
        values["countries"] = None if parsed is None else ",".join(parsed)
    if caller_id_policy is not None:
        values["caller_id_policy"] = caller_id_policy
    if billing_increment is not None:
        if not 1 <= billing_increment <= 3600:
            raise InvalidParameter("billing_increment must be 1 to 3600 seconds")
        values["billing_increment"] = billing_increment
    if barred_prefixes is not None:
        values["barred_prefixes"] = ",".join(check_prefixes(barred_prefixes))
    if values:
        _update(store, auth_id, **values)
    return get_account(store, auth_id)


def authenticate(store: Store, auth_id: str, token: str) -> int | None:
    """The account id when `auth_id`/`token` are valid and the account is enabled.

    Runs on every API request: the verified hash is cached per process (see
    `AUTH_CACHE_TTL_S`), so the common case is one SHA-256 and a dict lookup.
    """
    cached = store.cached_account(auth_id)
    if cached is None:
        with store.engine.connect() as conn:
            row = conn.execute(
                select(
                    accounts.c.id, accounts.c.auth_id, accounts.c.token_hash, accounts.c.enabled
                ).where(accounts.c.auth_id == auth_id)
            ).first()
        if row is None:
            # Spend the same hash either way so timing does not reveal which ids exist.
            token_matches(token, "0" * 64)
            return None
        store.cache_account(row.id, row.auth_id, row.token_hash, row.enabled)
        cached = store.cached_account(auth_id)
        if cached is None:  # pragma: no cover - TTL of zero
            return None
    if not token_matches(token, cached.token_hash) or not cached.enabled:
        return None
    return cached.account_id
