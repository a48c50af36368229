"""Following call records as the edge writes them (`opentrunk calls tail`).

Records are polled from the store by end time. The edge writes a closed record up to a
few hundred milliseconds after the call's end (records.py batches), so a record can
arrive with an end time a little before the newest one already shown: each poll looks
back `lag` seconds and skips the call_uuids it has already printed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, select

from opentrunk.services.calls import call_view
from opentrunk.services.clock import utcnow
from opentrunk.store.models import accounts, call_records

DEFAULT_LAG = timedelta(seconds=10)


def _query(
    engine: Engine, since: datetime, auth_id: str | None, limit: int | None = None
) -> list[dict[str, Any]]:
    c = call_records.c
    cond = [c.state == "closed", c.end_time >= since]
    if auth_id is not None:
        cond.append(accounts.c.auth_id == auth_id)
    statement = (
        select(call_records, accounts.c.auth_id)
        .select_from(call_records.join(accounts, accounts.c.id == c.account_id))
        .where(and_(*cond))
    )
    if limit is not None:
        statement = statement.order_by(c.end_time.desc(), c.call_uuid.desc()).limit(limit)
    else:
        statement = statement.order_by(c.end_time, c.call_uuid)
    with engine.connect() as conn:
        rows = conn.execute(statement).all()
    out = []
    for row in rows:
        view = call_view(row)
        view["auth_id"] = row.auth_id
        view["_end"] = row.end_time
        out.append(view)
    if limit is not None:
        out.reverse()
    return out


def follow_records(
    engine: Engine,
    *,
    auth_id: str | None = None,
    last: int = 0,
    interval: float = 0.5,
    lag: timedelta = DEFAULT_LAG,
    stop: Callable[[], bool] = lambda: False,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[dict[str, Any]]:
    """Yield closed call records (API field names plus `auth_id`) as they appear: first the
    `last` most recent ones, then every new one, until `stop()` is true."""
    start = utcnow()
    seen: dict[str, datetime] = {}
    newest = start
    # What is already there is not new: remember it without printing it.
    for view in _query(engine, start - lag, auth_id):
        seen[view["call_uuid"]] = view["_end"]
        newest = max(newest, view["_end"])
    if last > 0:
        for view in _query(engine, start - timedelta(days=90), auth_id, last):
            end = view.pop("_end")
            seen[view["call_uuid"]] = end
            newest = max(newest, end)
            yield view
    while not stop():
        for view in _query(engine, min(newest, utcnow()) - lag, auth_id):
            end = view.pop("_end")
            if view["call_uuid"] in seen:
                continue
            seen[view["call_uuid"]] = end
            newest = max(newest, end)
            yield view
        # Forget what fell out of the look-back window, so memory stays bounded.
        horizon = newest - lag - timedelta(seconds=1)
        for call_uuid in [k for k, end in seen.items() if end < horizon]:
            del seen[call_uuid]
        if stop():
            return
        sleep(interval)


def format_line(view: dict[str, Any]) -> str:
    """One human-readable line per record."""
    answered = "answered" if view.get("answer_time") else "unanswered"
    return (
        f"{view['end_time']} {view['call_uuid']} {view.get('auth_id', '')} "
        f"{view['call_direction']} +{view['from_number']} -> +{view['to_number']} "
        f"{view['hangup_cause_code']} {view['hangup_cause_name']} ({view['hangup_source']}) "
        f"{answered} duration={view['call_duration']}s bill={view['bill_duration']}s "
        f"amount={view['total_amount']}"
    )
