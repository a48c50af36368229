"""Carriers: the operator's upstream SIP providers, for routing outbound calls (longest
prefix, then priority, then weight) and recognising inbound calls by source address."""

from __future__ import annotations

import ipaddress
import json
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import delete, select

from opentrunk.domain.validation import TRANSPORTS, InvalidParameter, parse_host_port
from opentrunk.services.clock import fmt, utcnow
from opentrunk.services.errors import Conflict, NotFound
from opentrunk.services.resources import insert_row, new_uuid, stored_secret
from opentrunk.store.models import carriers
from opentrunk.store.store import Store


def carrier_view(row: Any) -> dict[str, Any]:
    """What the operator sees (never the password)."""
    return {
        "carrier_id": row.carrier_id,
        "name": row.name,
        "address": row.address,
        "transport": row.transport,
        "prefix": row.prefix,
        "priority": row.priority,
        "weight": row.weight,
        "username": row.username,
        "has_password": row.password_enc is not None,
        "rate": row.rate,
        "inbound_sources": json.loads(row.inbound_sources),
        "created_at": fmt(row.created_at),
    }


def _rate(text: str) -> str:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise InvalidParameter(f"rate {text!r} is not a decimal number") from None
    if not value.is_finite() or value < 0 or value > 1000:
        raise InvalidParameter("rate must be 0 to 1000 per minute")
    return f"{value:.5f}"


def _sources(entries: list[str]) -> list[str]:
    result = []
    for entry in entries:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise InvalidParameter(
                f"inbound source {entry!r} is not an IP address or CIDR"
            ) from None
        result.append(entry)
    return result


def add_carrier(
    store: Store,
    *,
    name: str,
    address: str,
    transport: str = "udp",
    prefix: str = "",
    priority: int = 10,
    weight: int = 100,
    username: str | None = None,
    password: str | None = None,
    rate: str = "0",
    inbound_sources: list[str] | None = None,
) -> dict[str, Any]:
    name = name.strip()
    if not name or len(name) > 100:
        raise InvalidParameter("name must be 1 to 100 characters")
    parse_host_port(address)
    if transport not in TRANSPORTS:
        raise InvalidParameter("transport must be udp, tcp or tls")
    prefix = prefix.lstrip("+")
    if prefix and (not prefix.isdigit() or len(prefix) > 15):
        raise InvalidParameter("prefix must be up to 15 digits")
    if not 0 <= priority <= 1000 or not 0 <= weight <= 1000:
        raise InvalidParameter("priority and weight must be 0 to 1000")
    if bool(username) != bool(password):
        raise InvalidParameter("username and password go together")
    carrier_id = new_uuid()
    insert_row(
        store,
        carriers,
        dict(
            carrier_id=carrier_id,
            name=name,
            address=address,
            transport=transport,
            prefix=prefix,
            priority=priority,
            weight=weight,
            username=username or None,
            password_enc=store.box.encrypt(password) if password else None,
            rate=_rate(rate),
            inbound_sources=json.dumps(_sources(inbound_sources or [])),
            created_at=utcnow(),
        ),
        duplicate=Conflict(f"a carrier named {name!r} already exists"),
    )
    return get_carrier(store, carrier_id)


def get_carrier(store: Store, carrier_id: str) -> dict[str, Any]:
    with store.engine.connect() as conn:
        row = conn.execute(select(carriers).where(carriers.c.carrier_id == carrier_id)).first()
    if row is None:
        raise NotFound(f"carrier {carrier_id} not found")
    return carrier_view(row)


def list_carriers(store: Store) -> list[dict[str, Any]]:
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(carriers).order_by(
                carriers.c.prefix.desc(), carriers.c.priority, carriers.c.name
            )
        ).all()
    return [carrier_view(r) for r in rows]


def remove_carrier(store: Store, carrier_id: str) -> None:
    with store.engine.begin() as conn:
        result = conn.execute(delete(carriers).where(carriers.c.carrier_id == carrier_id))
    if result.rowcount == 0:
        raise NotFound(f"carrier {carrier_id} not found")


def carrier_password(store: Store, carrier_id: str) -> str | None:
    """For the SIP edge: the decrypted password of a carrier, if any."""
    return stored_secret(store, carriers.c.password_enc, carriers.c.carrier_id, carrier_id)
