"""CallRecorder against a real store: non-blocking open/close written in batches, billing
fields, idempotent close, crash recovery, retry while the database is locked, and the
record readable through the API within a second of the call's end."""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert, select, update
from sqlalchemy.exc import OperationalError

from edge_ops.conftest import Account
from opentrunk.api.app import create_app
from opentrunk.config import Settings
from opentrunk.domain.billing import BillingPlan
from opentrunk.domain.hangup_codes import Side, bye_from, customer_cancelled, refusal
from opentrunk.edge.records import CallRecorder, close_values, open_values
from opentrunk.edge.views import CallFinish, CallStart
from opentrunk.store.models import call_records
from opentrunk.store.store import Store


def _start(account: Account, **over: Any) -> CallStart:
    values: dict[str, Any] = {
        "call_uuid": str(uuid.uuid4()),
        "account_id": account.account_id,
        "trunk_id": "123456789012345",
        "from_number": "+14155550100",
        "to_number": "+442071234567",
        "initiation_time": datetime.now(UTC),
        "trunk_domain": "123456789012345.zt.example.test",
        "from_country": "US",
        "to_country": "GB",
        "transport_protocol": "tcp",
    }
    values.update(over)
    return CallStart(**values)


def _row(store: Store, call_uuid: str) -> Any:
    with store.engine.connect() as conn:
        return conn.execute(
            select(call_records).where(call_records.c.call_uuid == call_uuid)
        ).first()


async def _until(predicate: Any, timeout: float = 3.0) -> float:
    """Seconds until `predicate()` (run in a thread) is true; fails after `timeout`."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if await asyncio.to_thread(predicate):
            return time.monotonic() - began
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached in time")


def test_open_then_close_with_billing(store: Store, account: Account) -> None:
    recorder = CallRecorder(store, flush_interval=0.05)
    start = _start(account)

    async def scenario() -> None:
        await recorder.start()
        began = time.perf_counter()
        recorder.open(start)
        assert time.perf_counter() - began < 0.005  # queued, not written inline
        await _until(lambda: _row(store, start.call_uuid) is not None, 1.0)
        row = _row(store, start.call_uuid)
        assert row.state == "open" and row.end_time is None
        assert row.from_number == "14155550100" and row.to_number == "442071234567"
        assert row.transport_protocol == "tcp" and row.trunk_id == "123456789012345"
        answer = start.initiation_time + timedelta(seconds=2.5)
        recorder.answered(start.call_uuid, answer)
        end = answer + timedelta(seconds=61.2)  # 62 s of call, 6/6 billing: 66 s
        closed = recorder.close(
            start.call_uuid,
            CallFinish(
                end=bye_from(Side.CARRIER),
                end_time=end,
                answer_time=answer,
                rate=Decimal("0.0125"),
                billing=BillingPlan(increment=6),
                post_dial_delay=0.8,
            ),
        )
        assert closed
        await _until(lambda: _row(store, start.call_uuid).state == "closed", 1.0)
        await recorder.stop()

    asyncio.run(scenario())
    row = _row(store, start.call_uuid)
    assert row.hangup_cause_code == 3000 and row.hangup_cause_name == "normal_hangup"
    assert row.hangup_source == "carrier"
    assert row.call_duration == 62 and row.bill_duration == 66
    assert row.total_rate == "0.01250" and row.total_amount == "0.01375"
    assert row.answer_time is not None and row.end_time is not None
    assert row.end_time.microsecond == 0
    assert row.post_dial_delay == pytest.approx(0.8)


def test_short_call_written_once_closed_and_second_close_is_ignored(
    store: Store, account: Account
) -> None:
    recorder = CallRecorder(store, flush_interval=10)  # nothing flushes until we say so
    start = _start(account)

    async def scenario() -> None:
        await recorder.start()
        recorder.open(start)
        finish = CallFinish(end=customer_cancelled(), end_time=datetime.now(UTC))
        assert recorder.close(start.call_uuid, finish)
        assert not recorder.close(start.call_uuid, finish)  # a second BYE/CANCEL
        assert recorder.stats()["pending"] == 1
        await recorder.flush()
        assert recorder.stats()["pending"] == 0
        # A late retransmission after the write: still nothing more to do.
        assert not recorder.close(start.call_uuid, finish)
        await recorder.stop()

    asyncio.run(scenario())
    row = _row(store, start.call_uuid)
    assert row.state == "closed" and row.hangup_cause_code == 4550
    assert row.hangup_source == "customer"
    assert row.call_duration == 0 and row.bill_duration == 0 and row.total_amount == "0.00000"
    assert row.answer_time is None


def test_refused_call_takes_normalised_numbers(store: Store, account: Account) -> None:
    recorder = CallRecorder(store)
    start = _start(account, to_number="0044 20 7123 4567", to_country=None)

    async def scenario() -> None:
        await recorder.start()
        recorder.open(start)
        recorder.close(
            start.call_uuid,
            CallFinish(
                end=refusal(4560),
                end_time=datetime.now(UTC),
                to_number="+442071234567",
                to_country="GB",
            ),
        )
        await recorder.stop()

    asyncio.run(scenario())
    row = _row(store, start.call_uuid)
    assert (row.to_number, row.to_country, row.hangup_cause_code) == ("442071234567", "GB", 4560)


def test_stop_flushes_everything(store: Store, account: Account) -> None:
    recorder = CallRecorder(store, flush_interval=10)
    starts = [_start(account) for _ in range(300)]

    async def scenario() -> None:
        await recorder.start()
        for start in starts:
            recorder.open(start)
        for start in starts[:150]:
            recorder.close(
                start.call_uuid, CallFinish(end=refusal(5180), end_time=datetime.now(UTC))
            )
        await recorder.stop()

    asyncio.run(scenario())
    ids = [s.call_uuid for s in starts]
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(call_records.c.call_uuid, call_records.c.state).where(
                call_records.c.call_uuid.in_(ids)
            )
        ).all()
    states = dict(rows)
    assert len(states) == 300
    assert sum(1 for s in states.values() if s == "closed") == 150
    assert recorder.written == 300


def test_crash_recovery_closes_calls_left_open(store: Store, account: Account) -> None:
    start = _start(account)
    answered = start.initiation_time + timedelta(seconds=1)

    async def first_life() -> None:
        recorder = CallRecorder(store, flush_interval=0.05)
        await recorder.start()
        recorder.open(start)
        recorder.answered(start.call_uuid, answered)
        await _until(lambda: (r := _row(store, start.call_uuid)) is not None and r.answer_time)
        # The process dies: no stop(), no close. Only the background task goes away.
        assert recorder._task is not None
        recorder._task.cancel()

    asyncio.run(first_life())
    assert _row(store, start.call_uuid).state == "open"

    async def second_life() -> int:
        recorder = CallRecorder(store)
        closed = await recorder.recover_open_calls()
        assert recorder.stats()["recovered"] == closed
        # Idempotent: nothing left open the second time.
        assert await recorder.recover_open_calls() == 0
        return closed

    assert asyncio.run(second_life()) >= 1
    row = _row(store, start.call_uuid)
    assert row.state == "closed"
    assert (row.hangup_cause_code, row.hangup_cause_name) == (5250, "internal_error")
    assert row.hangup_source == "zentrunk"
    assert row.end_time is not None and row.answer_time is not None
    assert row.bill_duration == 0 and row.total_amount == "0.00000"


def test_locked_database_delays_but_never_loses(
    store: Store, account: Account, tmp_path: Any
) -> None:
    if store.engine.dialect.name != "sqlite":
        pytest.skip("the write lock is SQLite's")
    database = store.engine.url.database
    assert database
    # A short busy timeout so the locked write fails fast and is retried.
    recorder = CallRecorder(store, flush_interval=0.05)
    start = _start(account)
    blocker = sqlite3.connect(database, timeout=0.1)

    async def scenario() -> None:
        await recorder.start()
        blocker.execute("BEGIN IMMEDIATE")  # hold the write lock
        blocker.execute("PRAGMA busy_timeout=100")
        recorder.open(start)
        await asyncio.sleep(0.3)
        assert _row(store, start.call_uuid) is None  # could not be written yet
        blocker.rollback()
        await _until(lambda: _row(store, start.call_uuid) is not None, 10.0)
        await recorder.stop()

    try:
        asyncio.run(scenario())
    finally:
        blocker.close()
    assert _row(store, start.call_uuid).state == "open"


def test_closed_call_visible_through_api_within_a_second(store: Store, account: Account) -> None:
    settings = Settings(sip_domain=store.sip_domain, api_rate_limit=0, api_rate_burst=1)
    client = TestClient(create_app(settings, store))
    recorder = CallRecorder(store)  # default interval
    start = _start(account)

    def listed() -> bool:
        response = client.get(
            f"/v1/Account/{account.auth_id}/Zentrunk/Call/",
            auth=(account.auth_id, account.auth_token),
        )
        assert response.status_code == 200
        return any(o["call_uuid"] == start.call_uuid for o in response.json()["objects"])

    async def scenario() -> float:
        await recorder.start()
        recorder.open(start)
        answer = datetime.now(UTC)
        recorder.close(
            start.call_uuid,
            CallFinish(
                end=bye_from(Side.CUSTOMER),
                end_time=answer + timedelta(seconds=3),
                answer_time=answer,
                rate=Decimal("0.01"),
            ),
        )
        waited = await _until(listed, 1.0)
        await recorder.stop()
        return waited

    waited = asyncio.run(scenario())
    assert waited < 1.0
    body = client.get(
        f"/v1/Account/{account.auth_id}/Zentrunk/Call/{start.call_uuid}/",
        auth=(account.auth_id, account.auth_token),
    ).json()
    assert body["hangup_cause_code"] == "3010" and body["hangup_source"] == "customer"
    assert body["call_duration"] == 3 and body["bill_duration"] == 60
    assert body["total_amount"] == "0.01000"
    assert body["from_number"] == "14155550100" and body["to_country"] == "GB"
    assert body["transport_protocol"] == "tcp"


def test_failed_writes_are_retried_in_order(store: Store, account: Account) -> None:
    recorder = CallRecorder(store, flush_interval=0.02)
    start = _start(account)
    real_write = recorder._write
    failures = [2]

    def flaky(batch: Any) -> int:
        if failures[0] > 0:
            failures[0] -= 1
            raise OperationalError("INSERT", {}, Exception("database is locked"))
        return real_write(batch)

    recorder._write = flaky  # type: ignore[method-assign]

    async def scenario() -> None:
        await recorder.start()
        recorder.open(start)
        await asyncio.sleep(0.01)
        # Closed while the open is still failing: both land, merged, once the DB is back.
        recorder.close(start.call_uuid, CallFinish(end=refusal(5190), end_time=datetime.now(UTC)))
        await _until(lambda: _row(store, start.call_uuid) is not None, 5.0)
        await recorder.stop()

    asyncio.run(scenario())
    assert recorder.write_errors == 2
    row = _row(store, start.call_uuid)
    assert row.state == "closed" and row.hangup_cause_code == 5190


@pytest.mark.parametrize("one_flush", [False, True], ids=["open-then-close", "short-call"])
def test_rows_match_what_sqlalchemy_writes(store: Store, account: Account, one_flush: bool) -> None:
    """The recorder's batched writes (the driver's executemany with prepared rows on
    SQLite) store every column as SQLAlchemy's own INSERT and UPDATE do: types, defaults
    and NULLs alike."""
    start = _start(account, secure_trunking=True, srtp=True, trunk_id=None)
    answer = start.initiation_time + timedelta(seconds=1.7)
    finish = CallFinish(
        end=bye_from(Side.CUSTOMER),
        end_time=answer + timedelta(seconds=30.4),
        answer_time=answer,
        rate=Decimal("0.0125"),
        from_carrier="Carrier One",
        to_country="FR",
        rtt=12.5,
        jitter=None,
        packet_loss=0.25,
    )
    recorder = CallRecorder(store, flush_interval=10)

    async def scenario() -> None:
        recorder.open(start)
        if not one_flush:
            await recorder.flush()
        recorder.answered(start.call_uuid, answer)
        assert recorder.close(start.call_uuid, finish)
        await recorder.flush()

    asyncio.run(scenario())
    reference = str(uuid.uuid4())
    with store.engine.begin() as conn:
        conn.execute(insert(call_records), {**open_values(start), "call_uuid": reference})
        conn.execute(
            update(call_records)
            .where(call_records.c.call_uuid == reference)
            .values(close_values(finish))
        )
    written, expected = _row(store, start.call_uuid)._asdict(), _row(store, reference)._asdict()
    assert written.pop("call_uuid") == start.call_uuid
    expected.pop("call_uuid")
    assert written == expected
    # As stored, too: SQLite keeps times and booleans as SQLAlchemy formats them, and
    # the API's time-range filters compare those strings.
    with store.engine.connect() as conn:
        raw = [
            conn.exec_driver_sql(
                f"SELECT * FROM call_records WHERE call_uuid = '{call_uuid}'"
            ).one()[1:]
            for call_uuid in (start.call_uuid, reference)
        ]
    assert raw[0] == raw[1]
    assert written["secure_trunking"] is True and written["trunk_id"] is None
    assert written["stir_verification"] == "Not Applicable"  # a column default
    assert written["from_carrier"] == "Carrier One" and written["jitter"] is None
