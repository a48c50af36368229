"""Call records: written by the SIP edge (open on accept, close on end), read through the
API (list with filters and the 30/90-day windows, get, Insights)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Engine, and_, func, insert, or_, select, update

from opentrunk.domain.hangup_codes import crash_recovery
from opentrunk.domain.validation import InvalidParameter
from opentrunk.services.clock import fmt, utcnow
from opentrunk.services.errors import NotFound
from opentrunk.services.paging import Page
from opentrunk.store.models import call_records
from opentrunk.store.store import Store

DEFAULT_WINDOW = timedelta(days=30)
MAX_AGE = timedelta(days=90)
RANGE_SUFFIXES = {"": "eq", "__gt": "gt", "__gte": "gte", "__lt": "lt", "__lte": "lte"}
TIME_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M")
# Internal-error code for records closed by recovery after a crash (CALLS.md).

CALL_FIELDS = (
    "call_uuid",
    "from_number",
    "to_number",
    "call_direction",
    "call_duration",
    "bill_duration",
    "initiation_time",
    "answer_time",
    "end_time",
    "hangup_cause_name",
    "hangup_cause_code",
    "hangup_source",
    "total_rate",
    "total_amount",
    "trunk_domain",
    "from_country",
    "to_country",
    "transport_protocol",
    "srtp",
    "secure_trunking",
    "secure_trunking_rate",
    "stir_verification",
    "attestation_indicator",
)
_TIMES = ("initiation_time", "answer_time", "end_time")


def call_view(row: Any) -> dict[str, Any]:
    view = {f: getattr(row, f) for f in CALL_FIELDS}
    for f in _TIMES:
        view[f] = fmt(view[f])
    view["billed_duration"] = row.bill_duration
    view["hangup_cause_code"] = (
        None if row.hangup_cause_code is None else f"{row.hangup_cause_code:04d}"
    )
    return view


def _record_values(record: Mapping[str, Any]) -> dict[str, Any]:
    values = {k: v for k, v in record.items() if k in call_records.c}
    for key in ("from_number", "to_number"):
        if key in values:
            values[key] = str(values[key]).lstrip("+")
    values.setdefault("state", "closed" if values.get("end_time") else "open")
    return values


def insert_call_record(engine: Engine, record: Mapping[str, Any]) -> None:
    """Insert one record; keys are call_records columns (extra keys are ignored).

    Required: call_uuid, account_id, from_number, to_number, call_direction,
    initiation_time. Without end_time the record is open.
    """
    with engine.begin() as conn:
        conn.execute(insert(call_records).values(_record_values(record)))


def insert_call_records(engine: Engine, records: Iterable[Mapping[str, Any]]) -> int:
    """Bulk insert (executemany in one transaction): for seeding and benchmarks."""
    rows = [_record_values(r) for r in records]
    if not rows:
        return 0
    # executemany needs the same keys in every row: fill gaps with the column defaults.
    keys = set().union(*rows)
    fill = {}
    for key in keys:
        default = call_records.c[key].default
        fill[key] = getattr(default, "arg", None) if default is not None else None
    rows = [{**fill, **row} for row in rows]
    with engine.begin() as conn:
        conn.execute(insert(call_records), rows)
    return len(rows)


def close_call_record(engine: Engine, call_uuid: str, values: Mapping[str, Any]) -> None:
    """Close an open record with its end fields (end_time, durations, hangup cause...)."""
    changes = _record_values(values)
    changes["state"] = "closed"
    changes.setdefault("end_time", utcnow())
    with engine.begin() as conn:
        conn.execute(
            update(call_records).where(call_records.c.call_uuid == call_uuid).values(changes)
        )


def close_abandoned_records(
    engine: Engine,
    now: datetime | None = None,
    live: Iterable[str] = (),
    node: str | None = None,
    *,
    unnamed: bool = True,
) -> int:
    """Close the records a crashed edge process left open, with 5250 internal_error,
    source `zentrunk`, end time `now`, and durations and charge 0: nobody saw the call
    end, so no length is billed. Returns how many were closed.

    Which records: the open ones of `node` (none when `node` is None), plus, when
    `unnamed`, the open ones that name no node (written before migration 0004, when
    records did not carry one), less the `live` calls of the running process. Another
    node's records are never touched: they are its live calls."""
    now = now or utcnow()
    cause = crash_recovery()
    c = call_records.c
    owners: list[ColumnElement[bool]] = []
    if node is not None:
        owners.append(c.node == node)
    if unnamed:
        owners.append(c.node.is_(None))
    if not owners:
        return 0
    statement = update(call_records).where(c.state == "open", or_(*owners))
    keep = list(live)
    if keep:
        statement = statement.where(c.call_uuid.not_in(keep))
    with engine.begin() as conn:
        result = conn.execute(
            statement.values(
                state="closed",
                end_time=now,
                hangup_cause_code=cause.code,
                hangup_cause_name=cause.name,
                hangup_source=cause.source.value,
                call_duration=0,
                bill_duration=0,
                total_amount="0.00000",
            )
        )
    return int(result.rowcount)


def open_records_by_node(engine: Engine) -> dict[str | None, int]:
    """How many records are open per edge node (None: records that name no node)."""
    c = call_records.c
    with engine.connect() as conn:
        rows = conn.execute(
            select(c.node, func.count()).where(c.state == "open").group_by(c.node)
        ).all()
    return {row[0]: int(row[1]) for row in rows}


def parse_time(text: str, field: str) -> datetime:
    for form in TIME_FORMATS:
        try:
            return datetime.strptime(text, form)
        except ValueError:
            continue
    raise InvalidParameter(f"{field} must be a UTC time as YYYY-MM-DD HH:MM[:SS], got {text!r}")


def _compare(column: Any, op: str, value: Any) -> ColumnElement[bool]:
    result: ColumnElement[bool]
    if op == "eq":
        result = column == value
    elif op == "gt":
        result = column > value
    elif op == "gte":
        result = column >= value
    elif op == "lt":
        result = column < value
    else:
        result = column <= value
    return result


def _digits_prefix(value: str, field: str) -> str:
    digits = value.strip().lstrip("+")
    if not digits.isdigit() or len(digits) > 32:
        raise InvalidParameter(f"{field} must be digits (an E.164 number or its prefix)")
    return digits


def list_calls(
    store: Store,
    account_id: int,
    filters: Mapping[str, str | None],
    limit: int,
    offset: int,
    now: datetime | None = None,
) -> Page:
    """Filters: from_number/to_number (prefix; a full number is its own prefix),
    call_direction, hangup_cause_code, hangup_source, stir_verification,
    bill_duration[__gt|__gte|__lt|__lte] and end_time[...]."""
    now = now or utcnow()
    c = call_records.c
    cond: list[ColumnElement[bool]] = [c.account_id == account_id, c.state == "closed"]
    for field in ("from_number", "to_number"):
        value = filters.get(field)
        if value:
            p = _digits_prefix(value, field)
            # A range rather than LIKE: it uses the (account_id, number, end_time) index on
            # both SQLite (LIKE is case-insensitive there) and PostgreSQL (C collation).
            cond += [c[field] >= p, c[field] < p + ":"]
    for field in ("call_direction", "hangup_source", "stir_verification"):
        value = filters.get(field)
        if value is not None:
            cond.append(c[field] == value)
    code = filters.get("hangup_cause_code")
    if code is not None:
        if not code.isdigit() or len(code) > 4:
            raise InvalidParameter("hangup_cause_code must be a four-digit code")
        cond.append(c.hangup_cause_code == int(code))
    has_time_filter = False
    for suffix, op in RANGE_SUFFIXES.items():
        raw = filters.get("bill_duration" + suffix)
        if raw is not None:
            if not raw.isdigit():
                raise InvalidParameter(f"bill_duration{suffix} must be a whole number of seconds")
            cond.append(_compare(c.bill_duration, op, int(raw)))
        raw = filters.get("end_time" + suffix)
        if raw is not None:
            has_time_filter = True
            cond.append(_compare(c.end_time, op, parse_time(raw, "end_time" + suffix)))
    cond.append(c.end_time >= now - MAX_AGE)
    if not has_time_filter:
        cond.append(c.end_time >= now - DEFAULT_WINDOW)
    where = and_(*cond)
    order = (c.end_time.desc(), c.call_uuid.desc())
    # Deferred join: pick the page's keys first, then read only those rows. The key query
    # can be answered from an index alone (ix_calls_account_dir_to_end holds every column
    # of the number + direction filters, end_time and call_uuid), so a filter matching
    # thousands of records sorts index entries, not whole rows read one by one.
    page_keys = select(c.call_uuid).where(where).order_by(*order).limit(limit).offset(offset)
    with store.engine.connect() as conn:
        total = conn.execute(
            select(func.count()).select_from(call_records).where(where)
        ).scalar_one()
        rows = conn.execute(
            select(call_records).where(c.call_uuid.in_(page_keys)).order_by(*order)
        ).all()
    return Page(int(total), [call_view(r) for r in rows], limit, offset)


def _get_row(store: Store, account_id: int, call_uuid: str, now: datetime | None) -> Any:
    now = now or utcnow()
    c = call_records.c
    with store.engine.connect() as conn:
        row = conn.execute(
            select(call_records).where(
                and_(
                    c.call_uuid == call_uuid,
                    c.account_id == account_id,
                    c.state == "closed",
                    c.end_time >= now - MAX_AGE,
                )
            )
        ).first()
    if row is None:
        raise NotFound(f"call {call_uuid} not found")
    return row


def get_call(
    store: Store, account_id: int, call_uuid: str, now: datetime | None = None
) -> dict[str, Any]:
    return call_view(_get_row(store, account_id, call_uuid, now))


def call_insights(
    store: Store, account_id: int, call_uuid: str, now: datetime | None = None
) -> dict[str, Any]:
    row = _get_row(store, account_id, call_uuid, now)
    return {
        "call_uuid": row.call_uuid,
        "from": {"number": row.from_number, "region": row.from_region, "carrier": row.from_carrier},
        "to": {"number": row.to_number, "region": row.to_region, "carrier": row.to_carrier},
        "hangup_cause": row.hangup_cause_name,
        "hangup_source": row.hangup_source,
        "rtt": row.rtt,
        "jitter": row.jitter,
        "packet_loss": row.packet_loss,
        "post_dial_delay": row.post_dial_delay,
        "plivo_quality_score": row.quality_score,
    }
