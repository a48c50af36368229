"""Accounts: creation (main accounts and their subaccounts), listing, disabling, token
rotation, limits and policy, and the Basic-auth check the API runs on every request.

A subaccount (auth_id `SA...`) belongs to one main account (`MA...`); it has its own
token, resources, numbers and limits, and is reached only on its own path. Disabling a main
account disables its subaccounts: `accounts.enabled` is the effective state that every
reader checks (API auth, the SIP edge), `own_enabled` what the operator set on the account
itself, and every change here rewrites both in one transaction (migration 0003).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Row, Select, insert, select, update
from sqlalchemy.exc import IntegrityError

from opentrunk.domain.validation import InvalidParameter, check_prefixes, parse_countries
from opentrunk.services.clock import fmt, utcnow
from opentrunk.services.errors import NotFound
from opentrunk.store.models import accounts
from opentrunk.store.secrets import hash_token, new_auth_id, new_auth_token, token_matches
from opentrunk.store.store import Store

MAIN_PREFIX = "MA"
SUB_PREFIX = "SA"

_parents = accounts.alias("parent")


def _with_parent() -> Select[Any]:
    """Accounts with their parent's auth_id and own flag (None for a main account)."""
    return select(
        accounts,
        _parents.c.auth_id.label("parent_auth_id"),
        _parents.c.own_enabled.label("parent_own_enabled"),
    ).select_from(accounts.outerjoin(_parents, _parents.c.id == accounts.c.parent_id))


def account_view(row: Row[Any]) -> dict[str, Any]:
    """What the operator sees of an account (never the token hash)."""
    view: dict[str, Any] = {
        "auth_id": row.auth_id,
        "name": row.name,
        "enabled": bool(row.enabled),
        "parent_auth_id": row.parent_auth_id,
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
    if row.parent_auth_id is not None:
        # Enabled itself, but off because its main account is.
        view["disabled_by_parent"] = bool(row.own_enabled) and not row.parent_own_enabled
    return view


def create_account(store: Store, name: str, parent: str | None = None) -> dict[str, Any]:
    """Create a main account, or with `parent` (a main account's auth_id) a subaccount of
    it; the only time its token is returned in clear."""
    name = name.strip()
    if not name or len(name) > 100:
        raise InvalidParameter("name must be 1 to 100 characters")
    token = new_auth_token()
    for _ in range(5):
        auth_id = new_auth_id(MAIN_PREFIX if parent is None else SUB_PREFIX)
        try:
            with store.engine.begin() as conn:
                parent_id, enabled = (None, True) if parent is None else _lock_parent(conn, parent)
                conn.execute(
                    insert(accounts).values(
                        auth_id=auth_id,
                        name=name,
                        token_hash=hash_token(token),
                        enabled=enabled,
                        own_enabled=True,
                        parent_id=parent_id,
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
        created = {"auth_id": auth_id, "auth_token": token, "name": name}
        if parent is not None:
            created["parent_auth_id"] = parent
        return created
    raise RuntimeError("could not allocate a unique auth_id")


def _lock_parent(conn: Connection, auth_id: str) -> tuple[int, bool]:
    """A main account's id and own flag, its row locked until the transaction ends, so that
    a concurrent enable or disable of it waits for the subaccount being written."""
    row = conn.execute(
        select(accounts.c.id, accounts.c.parent_id, accounts.c.own_enabled)
        .where(accounts.c.auth_id == auth_id)
        .with_for_update()
    ).first()
    if row is None:
        raise NotFound(f"account {auth_id} not found")
    if row.parent_id is not None:
        raise InvalidParameter(f"{auth_id} is a subaccount; a subaccount has no subaccounts")
    return int(row.id), bool(row.own_enabled)


def _get_row(store: Store, auth_id: str) -> Row[Any]:
    with store.engine.connect() as conn:
        row = conn.execute(_with_parent().where(accounts.c.auth_id == auth_id)).first()
    if row is None:
        raise NotFound(f"account {auth_id} not found")
    return row


def get_account(store: Store, auth_id: str) -> dict[str, Any]:
    return account_view(_get_row(store, auth_id))


def account_id_of(store: Store, auth_id: str) -> int:
    return int(_get_row(store, auth_id).id)


def list_accounts(store: Store, parent: str | None = None) -> list[dict[str, Any]]:
    """Every account, or with `parent` that main account's subaccounts."""
    statement = _with_parent().order_by(accounts.c.id)
    if parent is not None:
        statement = statement.where(accounts.c.parent_id == account_id_of(store, parent))
    with store.engine.connect() as conn:
        rows = conn.execute(statement).all()
    return [account_view(r) for r in rows]


def _update(store: Store, auth_id: str, **values: Any) -> None:
    with store.engine.begin() as conn:
        result = conn.execute(update(accounts).where(accounts.c.auth_id == auth_id).values(values))
    if result.rowcount == 0:
        raise NotFound(f"account {auth_id} not found")
    store.invalidate_account(auth_id)


def _set_own_enabled(store: Store, auth_id: str, own: bool) -> None:
    """Set the account's own flag and rewrite the effective flag of it and, for a main
    account, of its subaccounts, in one transaction."""
    with store.engine.begin() as conn:
        row = conn.execute(
            select(accounts.c.id, accounts.c.parent_id).where(accounts.c.auth_id == auth_id)
        ).first()
        if row is None:
            raise NotFound(f"account {auth_id} not found")
        parent_on = True
        if row.parent_id is not None:
            # Locked: a concurrent change of the parent's flag waits for this one.
            parent_on = bool(
                conn.execute(
                    select(accounts.c.own_enabled)
                    .where(accounts.c.id == row.parent_id)
                    .with_for_update()
                ).scalar_one()
            )
        conn.execute(
            update(accounts)
            .where(accounts.c.id == row.id)
            .values(own_enabled=own, enabled=own and parent_on)
        )
        children = _refresh_children(conn, int(row.id), own)
    for changed in (auth_id, *children):
        store.invalidate_account(changed)


def _refresh_children(conn: Connection, parent_id: int, parent_on: bool) -> list[str]:
    """Subaccounts follow their parent: effective = own AND parent's own. Their auth_ids."""
    effective = accounts.c.own_enabled if parent_on else False
    conn.execute(
        update(accounts).where(accounts.c.parent_id == parent_id).values(enabled=effective)
    )
    return list(
        conn.execute(select(accounts.c.auth_id).where(accounts.c.parent_id == parent_id)).scalars()
    )


def disable_account(store: Store, auth_id: str) -> dict[str, Any]:
    """Disable an account; a main account's subaccounts go with it."""
    _set_own_enabled(store, auth_id, False)
    return get_account(store, auth_id)


def enable_account(store: Store, auth_id: str) -> dict[str, Any]:
    """Enable an account; a main account's subaccounts get back their own state."""
    _set_own_enabled(store, auth_id, True)
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
