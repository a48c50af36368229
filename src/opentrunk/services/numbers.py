"""Phone numbers in accounts' inventories: the operator adds and removes them; customers
list them, alias them and attach an inbound trunk."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row, and_, delete, select, update

from opentrunk.domain.numbers import InvalidNumber, country_of, normalize_e164, number_type
from opentrunk.domain.validation import InvalidParameter
from opentrunk.services.accounts import account_id_of
from opentrunk.services.clock import fmt, utcnow
from opentrunk.services.errors import Conflict, NotFound
from opentrunk.services.paging import Page
from opentrunk.services.resources import delete_owned, fetch_owned, insert_row, list_owned
from opentrunk.store.models import accounts, numbers, trunks
from opentrunk.store.store import Store


def to_digits(text: str) -> str:
    """E.164 digits without '+', or InvalidParameter."""
    try:
        return normalize_e164(text)[1:]
    except InvalidNumber as exc:
        raise InvalidParameter(str(exc)) from None


def number_view(row: Row[Any], auth_id: str) -> dict[str, Any]:
    return {
        "number": row.number,
        "alias": row.alias,
        "application": (
            f"/v1/Account/{auth_id}/Zentrunk/Trunk/{row.trunk_id}/" if row.trunk_id else None
        ),
        "country": row.country,
        "number_type": row.number_type,
        "voice_enabled": row.voice_enabled,
        "added_on": fmt(row.added_on),
        "resource_uri": f"/v1/Account/{auth_id}/Number/{row.number}/",
    }


def add_number(store: Store, number: str, auth_id: str) -> dict[str, Any]:
    """Operator: put a number into an account's inventory."""
    digits = to_digits(number)
    account_id = account_id_of(store, auth_id)
    insert_row(
        store,
        numbers,
        dict(
            number=digits,
            account_id=account_id,
            alias=None,
            trunk_id=None,
            country=country_of(digits),
            number_type=number_type(digits),
            voice_enabled=True,
            added_on=utcnow(),
        ),
        duplicate=Conflict(f"number {digits} is already in an account"),
    )
    return get_number(store, account_id, auth_id, digits)


def remove_number(store: Store, number: str) -> None:
    """Operator: take a number out of whatever account holds it."""
    digits = to_digits(number)
    with store.engine.begin() as conn:
        result = conn.execute(delete(numbers).where(numbers.c.number == digits))
    if result.rowcount == 0:
        raise NotFound(f"number {digits} not found")


def list_all_numbers(store: Store, auth_id: str | None = None) -> list[dict[str, Any]]:
    """Operator: every number, or one account's, with the owning auth_id."""
    query = select(numbers, accounts.c.auth_id).join(
        accounts, accounts.c.id == numbers.c.account_id
    )
    if auth_id is not None:
        query = query.where(accounts.c.auth_id == auth_id)
    with store.engine.connect() as conn:
        rows = conn.execute(query.order_by(numbers.c.number)).all()
    return [{**number_view(r, r.auth_id), "account": r.auth_id} for r in rows]


def _lookup_key(number: str) -> str:
    # Path segments come as the API shows numbers (digits) but '+' forms are tolerated.
    digits = number.strip().lstrip("+")
    if not digits.isdigit() or len(digits) > 15:
        raise NotFound(f"number {number} not found")
    return digits


def get_number(store: Store, account_id: int, auth_id: str, number: str) -> dict[str, Any]:
    with store.engine.connect() as conn:
        row = fetch_owned(conn, numbers, "number", _lookup_key(number), account_id, "number")
    return number_view(row, auth_id)


def list_numbers(
    store: Store,
    account_id: int,
    auth_id: str,
    *,
    limit: int,
    offset: int,
    number_startswith: str | None = None,
    number_type_filter: str | None = None,
    alias: str | None = None,
) -> Page:
    cond = []
    if number_startswith:
        cond += [numbers.c.number >= number_startswith, numbers.c.number < number_startswith + ":"]
    if number_type_filter:
        cond.append(numbers.c.number_type == number_type_filter)
    if alias is not None:
        cond.append(numbers.c.alias == alias)
    return list_owned(
        store,
        numbers,
        "number",
        account_id,
        limit,
        offset,
        lambda row: number_view(row, auth_id),
        cond,
        stamp="added_on",
    )


_UNSET: Any = object()


def update_number(
    store: Store,
    account_id: int,
    number: str,
    *,
    app_id: str | None = _UNSET,
    alias: str | None = _UNSET,
) -> str:
    """Customer: attach/detach an inbound trunk (`app_id`) and set the alias."""
    digits = _lookup_key(number)
    values: dict[str, Any] = {}
    with store.engine.begin() as conn:
        fetch_owned(conn, numbers, "number", digits, account_id, "number")
        if app_id is not _UNSET:
            if app_id in (None, ""):
                values["trunk_id"] = None
            else:
                trunk = conn.execute(
                    select(trunks.c.trunk_direction).where(
                        and_(trunks.c.trunk_id == app_id, trunks.c.account_id == account_id)
                    )
                ).first()
                if trunk is None:
                    raise InvalidParameter(f"app_id {app_id!r} is not a trunk of this account")
                if trunk.trunk_direction != "inbound":
                    raise InvalidParameter(
                        f"app_id {app_id!r} is an outbound trunk; only inbound trunks "
                        "can be attached to numbers"
                    )
                values["trunk_id"] = app_id
        if alias is not _UNSET:
            if alias is not None and len(alias) > 100:
                raise InvalidParameter("alias must be at most 100 characters")
            values["alias"] = alias
        if values:
            conn.execute(update(numbers).where(numbers.c.number == digits).values(values))
    return digits


def release_number(store: Store, account_id: int, number: str) -> None:
    """Customer: release a number from the account."""
    delete_owned(store, numbers, "number", _lookup_key(number), account_id, "number")
