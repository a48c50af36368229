"""`CallRecorder`: writes call records for the edge without blocking the call path.

`open()`, `answered()` and `close()` only queue an operation and return; a background
task writes the queue in one transaction every `flush_interval` seconds (100 ms by
default) in a worker thread. So:

- a record is in the database at most ~`flush_interval` (plus one write) after it was
  opened, which is what crash recovery relies on: a call the edge accepted is never lost;
- a call that ended appears in `GET /Zentrunk/Call/` a few hundred milliseconds later;
- a short call opened and closed within one interval is written as one closed row.

A failed write (database locked or unreachable) keeps the batch and retries with a
growing delay, in order; nothing is dropped. A batch that fails with a data error is
written row by row so that one bad record cannot hold the others back; only that row is
logged and dropped.

Billing fields are computed at close from the answer and end times, the carrier's rate
and the account's billing plan (`opentrunk.domain.billing`). Times are stored as naive
UTC with whole seconds, as the store keeps them.

Every record names the edge node that opened it (`node`, `config.node_id_of`,
stable across the node's restarts; column added by migration 0004).

Crash recovery (`recover_open_calls`, run once at start before any call): a record of
this node still open was cut by the death of the node's previous process. It is closed
with 5250 internal_error (source zentrunk, `hangup_codes.crash_recovery`), end time = the
time of recovery, and durations and charge 0: the edge did not see the call end and does
not bill a length it cannot vouch for (docs/edge.md). Other nodes' open records are their
live calls and are left alone, so several edge nodes can share one database. Records
that name no node were written before the upgrade that added the column; every node
was restarted for that upgrade, so they are orphans too and recovery closes them as well
(docs/edge.md "Several edge nodes" on rolling upgrades). The open records of a node that
is gone for good are closed by the operator: `opentrunk calls recover --node NODE_ID`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import operator
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import Dialect, Engine, bindparam, insert, update
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from opentrunk.domain.billing import charge_call
from opentrunk.edge.views import CallFinish, CallStart
from opentrunk.services.calls import close_abandoned_records
from opentrunk.store.models import call_records
from opentrunk.store.store import Store

log = logging.getLogger("opentrunk.edge.records")

DEFAULT_FLUSH_INTERVAL: Final = 0.1
MAX_RETRY_DELAY: Final = 5.0
# Above this many queued operations a flush is started at once instead of waiting.
EAGER_FLUSH: Final = 2000


def db_time(moment: datetime) -> datetime:
    """A datetime as the store keeps it: naive UTC, whole seconds."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.replace(microsecond=0)


def _digits(number: str) -> str:
    return number.lstrip("+")


def open_values(start: CallStart, node: str | None = None) -> dict[str, Any]:
    """The columns of a freshly opened record, opened by edge node `node`."""
    return {
        "node": node,
        "call_uuid": start.call_uuid,
        "account_id": start.account_id,
        "trunk_id": start.trunk_id,
        "state": "open",
        "from_number": _digits(start.from_number),
        "to_number": _digits(start.to_number),
        "call_direction": start.call_direction,
        "initiation_time": db_time(start.initiation_time),
        "trunk_domain": start.trunk_domain,
        "from_country": start.from_country,
        "to_country": start.to_country,
        "transport_protocol": start.transport_protocol,
        "secure_trunking": start.secure_trunking,
        "srtp": start.srtp,
    }


def close_values(finish: CallFinish) -> dict[str, Any]:
    """The columns a close sets. Durations use the exact times (a 59.2 s call is 60 s);
    the stored times are rounded down to the second."""
    charge = charge_call(finish.answer_time, finish.end_time, finish.rate, finish.billing)
    values: dict[str, Any] = {
        "state": "closed",
        "end_time": db_time(finish.end_time),
        "answer_time": None if finish.answer_time is None else db_time(finish.answer_time),
        "hangup_cause_code": finish.end.code,
        "hangup_cause_name": finish.end.name,
        "hangup_source": finish.end.source.value,
        "call_duration": charge.call_duration,
        "bill_duration": charge.bill_duration,
        "total_rate": charge.total_rate,
        "total_amount": charge.total_amount,
        "post_dial_delay": finish.post_dial_delay,
        "rtt": finish.rtt,
        "jitter": finish.jitter,
        "packet_loss": finish.packet_loss,
        "quality_score": finish.quality_score,
    }
    for key in ("from_number", "to_number"):
        number = getattr(finish, key)
        if number is not None:
            values[key] = _digits(number)
    for key in ("from_country", "to_country"):
        country = getattr(finish, key)
        if country is not None:
            values[key] = country
    for key in ("from_carrier", "to_carrier"):
        carrier = getattr(finish, key)
        if carrier is not None:
            values[key] = carrier[:100]
    return values


@dataclass
class _Pending:
    """Queued writes for one call: an insert (when not written yet) and/or an update."""

    insert: dict[str, Any] | None = None
    update: dict[str, Any] = field(default_factory=dict)


class CallRecorder:
    """Queues call-record writes and flushes them in batches; see the module docstring."""

    def __init__(
        self,
        db: Store | Engine,
        *,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
        node: str | None = None,
    ) -> None:
        self.engine: Engine = db.engine if isinstance(db, Store) else db
        # Written into every record opened here; None writes records that name no node
        # (tests and tools; a serving edge always has one).
        self.node = node
        self.flush_interval = flush_interval
        # Insertion-ordered: calls are written in the order they were first queued.
        self._pending: dict[str, _Pending] = {}
        self._open: set[str] = set()  # calls opened and not closed yet
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._stopping = False
        self._flush_lock: asyncio.Lock | None = None
        self.written = 0
        self.write_errors = 0
        self.dropped = 0
        self.recovered = 0

    # -- the call path (non-blocking) --------------------------------------------------

    def open(self, start: CallStart) -> None:
        """Queue a new open record for a call that passed trunk identification."""
        if start.call_uuid in self._open or start.call_uuid in self._pending:
            raise ValueError(f"call record {start.call_uuid} is already open")
        self._pending[start.call_uuid] = _Pending(insert=open_values(start, self.node))
        self._open.add(start.call_uuid)
        self._nudge()

    def answered(self, call_uuid: str, answer_time: datetime) -> None:
        """Record the answer time now (so the database knows the call was up)."""
        if call_uuid not in self._open:
            return
        self._queue_update(call_uuid, {"answer_time": db_time(answer_time)})

    def close(self, call_uuid: str, finish: CallFinish) -> bool:
        """Queue the close of an open record. False (and nothing written) when the call is
        not open here: a second BYE or a late retransmission must not close it twice."""
        if call_uuid not in self._open:
            return False
        self._open.discard(call_uuid)
        self._queue_update(call_uuid, close_values(finish))
        return True

    def is_open(self, call_uuid: str) -> bool:
        return call_uuid in self._open

    def _queue_update(self, call_uuid: str, values: Mapping[str, Any]) -> None:
        pending = self._pending.get(call_uuid)
        if pending is None:
            self._pending[call_uuid] = _Pending(update=dict(values))
        elif pending.insert is not None:
            pending.insert.update(values)
        else:
            pending.update.update(values)
        self._nudge()

    def _nudge(self) -> None:
        if self._wake is not None and len(self._pending) >= EAGER_FLUSH:
            self._wake.set()

    def stats(self) -> dict[str, int]:
        return {
            "pending": len(self._pending),
            "open": len(self._open),
            "written": self.written,
            "write_errors": self.write_errors,
            "dropped": self.dropped,
            "recovered": self.recovered,
        }

    # -- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        if self._task is not None:
            return
        self._stopping = False
        self._wake = asyncio.Event()
        self._flush_lock = asyncio.Lock()
        self._task = asyncio.create_task(self._run(), name="call-recorder")

    async def stop(self, timeout: float = 10.0) -> None:
        """Write everything queued, then stop the background task."""
        self._stopping = True
        if self._task is not None:
            assert self._wake is not None
            self._wake.set()
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout)
            except TimeoutError:
                log.error(
                    "call records not written at stop",
                    extra={"fields": {"pending": len(self._pending)}},
                )
                self._task.cancel()
            self._task = None
        elif self._pending:
            await asyncio.wait_for(self.flush(), timeout)

    async def flush(self) -> None:
        """Write what is queued now (tests, shutdown)."""
        if self._flush_lock is None:
            self._flush_lock = asyncio.Lock()
        async with self._flush_lock:
            await self._flush_once()

    async def _run(self) -> None:
        assert self._wake is not None
        delay = 0.0
        while True:
            if delay == 0.0 and not self._stopping:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.flush_interval)
            elif delay:
                await asyncio.sleep(delay)
            self._wake.clear()
            try:
                await self.flush()
                delay = 0.0
            except (OperationalError, DBAPIError, OSError) as exc:
                self.write_errors += 1
                delay = min(MAX_RETRY_DELAY, max(self.flush_interval, delay * 2))
                log.error(
                    "writing call records failed; will retry",
                    extra={"fields": {"error": type(exc).__name__, "retry_in": delay}},
                )
                if self._stopping and delay >= MAX_RETRY_DELAY:
                    return
                continue
            if self._stopping and not self._pending:
                return

    async def _flush_once(self) -> None:
        if not self._pending:
            return
        batch = self._pending
        self._pending = {}
        try:
            written = await asyncio.to_thread(self._write, batch)
        except BaseException:
            # Put the batch back in front, merged with anything queued meanwhile.
            self._pending = _merge(batch, self._pending)
            raise
        self.written += written

    # -- database work (worker thread) -------------------------------------------------

    def _write(self, batch: Mapping[str, _Pending]) -> int:
        try:
            with self.engine.begin() as conn:
                _write_batch(conn, batch.items())
            return len(batch)
        except IntegrityError:
            self.write_errors += 1
            return self._write_one_by_one(batch)

    def _write_one_by_one(self, batch: Mapping[str, _Pending]) -> int:
        written = 0
        for call_uuid, pending in batch.items():
            try:
                with self.engine.begin() as conn:
                    _write_batch(conn, [(call_uuid, pending)])
                written += 1
            except IntegrityError as exc:
                self.dropped += 1
                log.error(
                    "dropping a call record the database refuses",
                    extra={"fields": {"call_uuid": call_uuid, "error": type(exc).__name__}},
                )
        return written

    # -- crash recovery -------------------------------------------------------------

    async def recover_open_calls(self, now: datetime | None = None) -> int:
        """Close the records this node's previous process left open (and those naming
        no node: see the module docstring); returns how many."""
        moment = db_time(now or datetime.now(UTC))
        closed = await asyncio.to_thread(
            close_abandoned_records, self.engine, moment, self._open, self.node
        )
        self.recovered += closed
        if closed:
            log.warning(
                "closed call records left open by a previous run",
                extra={"fields": {"count": closed, "node": self.node}},
            )
        return closed


def _merge(first: dict[str, _Pending], later: dict[str, _Pending]) -> dict[str, _Pending]:
    merged = dict(first)
    for call_uuid, pending in later.items():
        earlier = merged.get(call_uuid)
        if earlier is None:
            merged[call_uuid] = pending
        elif earlier.insert is not None:
            earlier.insert.update(pending.update)
        else:
            earlier.update.update(pending.update)
    return merged


def _write_batch(conn: Any, items: Iterable[tuple[str, _Pending]]) -> None:
    inserts: list[dict[str, Any]] = []
    updates: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for call_uuid, pending in items:
        if pending.insert is not None:
            inserts.append(pending.insert)
        elif pending.update:
            keys = tuple(sorted(pending.update))
            updates.setdefault(keys, []).append({"b_call_uuid": call_uuid, **pending.update})
    # executemany needs one key set per statement: group inserts by their keys too (an
    # insert merged with its close has more columns than one still open).
    by_keys: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in inserts:
        by_keys.setdefault(tuple(sorted(row)), []).append(row)
    if conn.dialect.name == "sqlite":
        _write_sqlite(conn, by_keys, updates)
        return
    for rows in by_keys.values():
        conn.execute(_INSERT, rows)
    for keys, rows in updates.items():
        conn.execute(_update_statement(keys), rows)


_INSERT: Final = insert(call_records)


@functools.lru_cache(maxsize=64)
def _update_statement(keys: tuple[str, ...]) -> Any:
    """The UPDATE setting `keys` of one record. A handful of key sets occur (answered,
    closed, closed with carriers...): built once each, rather than per flush."""
    return (
        update(call_records)
        .where(call_records.c.call_uuid == bindparam("b_call_uuid"))
        .values({key: bindparam(key) for key in keys})
    )


# -- SQLite: the DBAPI's executemany with prepared rows ------------------------------
#
# SQLAlchemy's executemany runs every parameter of every row through its generic
# machinery (~17 us of Python per record, in a worker thread but holding the edge's
# GIL). The statements and the columns' bind processors depend only on the key set: both
# are prepared once per key set, and each row becomes a tuple (~6 us) handed to the
# driver as it is.

_Processor = Callable[[Any], Any] | None


class _SqliteStatement:
    """One prepared INSERT or UPDATE: the row keys its placeholders take, in order, then
    the constant values (column defaults) that follow them."""

    __slots__ = ("_constants", "_get", "_processed", "sql")

    def __init__(
        self,
        sql: str,
        keys: tuple[str, ...],
        processors: Iterable[_Processor],
        constants: tuple[Any, ...] = (),
    ) -> None:
        self.sql = sql
        # itemgetter returns a bare value for one key: the INSERT always has several (the
        # NOT NULL columns), the UPDATE at least its value and the record's id.
        assert len(keys) > 1
        self._get: Callable[[Mapping[str, Any]], tuple[Any, ...]] = operator.itemgetter(*keys)
        # Only times and booleans need converting on SQLite: the loop below skips the rest.
        self._processed = tuple((i, p) for i, p in enumerate(processors) if p is not None)
        self._constants = constants

    def rows(self, rows: Iterable[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
        out: list[tuple[Any, ...]] = []
        get, processed, constants = self._get, self._processed, self._constants
        for row in rows:
            values = list(get(row))
            for index, process in processed:
                value = values[index]
                if value is not None:
                    values[index] = process(value)
            out.append((*values, *constants))
        return out


def _bind_processor(column: str, dialect: Dialect) -> _Processor:
    type_ = call_records.c[column].type
    return type_.dialect_impl(dialect).bind_processor(dialect)


def _scalar_defaults(present: tuple[str, ...]) -> tuple[tuple[str, Any], ...]:
    """The columns an INSERT without them gets from their (constant) Python default."""
    defaults: list[tuple[str, Any]] = []
    for column in call_records.c:
        default = column.default
        if column.key in present or default is None:
            continue
        if not default.is_scalar:  # none today; a callable default needs SQLAlchemy
            raise ValueError(f"call_records.{column.key}: only constant defaults")
        defaults.append((column.key, default.arg))  # type: ignore[attr-defined]
    return tuple(defaults)


@functools.lru_cache(maxsize=64)
def _sqlite_insert(keys: tuple[str, ...], dialect: Dialect) -> _SqliteStatement:
    defaults = _scalar_defaults(keys)
    columns = keys + tuple(name for name, _ in defaults)
    quote = dialect.identifier_preparer.quote
    sql = (
        f"INSERT INTO {quote(call_records.name)} ({', '.join(map(quote, columns))}) "
        f"VALUES ({', '.join('?' for _ in columns)})"
    )
    constants = []
    for name, value in defaults:
        process = _bind_processor(name, dialect)
        constants.append(value if process is None else process(value))
    processors = [_bind_processor(key, dialect) for key in keys]
    return _SqliteStatement(sql, keys, processors, tuple(constants))


@functools.lru_cache(maxsize=64)
def _sqlite_update(keys: tuple[str, ...], dialect: Dialect) -> _SqliteStatement:
    quote = dialect.identifier_preparer.quote
    assignments = ", ".join(f"{quote(key)} = ?" for key in keys)
    sql = f"UPDATE {quote(call_records.name)} SET {assignments} WHERE call_uuid = ?"
    processors = [*(_bind_processor(key, dialect) for key in keys), None]
    return _SqliteStatement(sql, (*keys, "b_call_uuid"), processors)


def _write_sqlite(
    conn: Any,
    inserts: Mapping[tuple[str, ...], list[dict[str, Any]]],
    updates: Mapping[tuple[str, ...], list[dict[str, Any]]],
) -> None:
    dialect = conn.dialect
    for keys, rows in inserts.items():
        statement = _sqlite_insert(keys, dialect)
        conn.exec_driver_sql(statement.sql, statement.rows(rows))
    for keys, rows in updates.items():
        statement = _sqlite_update(keys, dialect)
        conn.exec_driver_sql(statement.sql, statement.rows(rows))
