"""Call endpoints: list with every filter and the 30/90-day windows, get, Insights."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from api.helpers import assert_error
from opentrunk.services.accounts import account_id_of
from opentrunk.services.calls import insert_call_record, insert_call_records
from opentrunk.services.clock import utcnow


def record(account_id: int, minutes_ago: float, **over: Any) -> dict[str, Any]:
    end = utcnow() - timedelta(minutes=minutes_ago)
    base = {
        "call_uuid": str(uuid.uuid4()),
        "account_id": account_id,
        "trunk_id": "123456789012345",
        "from_number": "+14155550100",
        "to_number": "+442079460000",
        "call_direction": "outbound",
        "call_duration": 42,
        "bill_duration": 60,
        "initiation_time": end - timedelta(seconds=50),
        "answer_time": end - timedelta(seconds=42),
        "end_time": end,
        "hangup_cause_name": "normal_hangup",
        "hangup_cause_code": 3010,
        "hangup_source": "customer",
        "total_rate": "0.00500",
        "total_amount": "0.00500",
        "trunk_domain": "123456789012345.zt.localhost",
        "from_country": "US",
        "to_country": "GB",
        "transport_protocol": "udp",
    }
    base.update(over)
    return base


def seed(store: Any, auth_id: str, rows: list[dict[str, Any]]) -> None:
    insert_call_records(store.engine, rows)


def uuids(resp: Any) -> list[str]:
    assert resp.status_code == 200, resp.text
    return [o["call_uuid"] for o in resp.json()["objects"]]


def test_get_call_fields(account, store):
    aid = account_id_of(store, account.auth_id)
    rec = record(aid, 5)
    insert_call_record(store.engine, rec)
    got = account.get(f"Zentrunk/Call/{rec['call_uuid']}/").json()
    assert got["from_number"] == "14155550100" and got["to_number"] == "442079460000"
    assert got["hangup_cause_code"] == "3010"
    assert got["bill_duration"] == got["billed_duration"] == 60
    assert got["end_time"] == rec["end_time"].strftime("%Y-%m-%d %H:%M:%S")
    assert got["total_amount"] == "0.00500" and got["srtp"] is False
    assert got["stir_verification"] == "Not Applicable"
    for key in (
        "call_direction",
        "call_duration",
        "initiation_time",
        "answer_time",
        "hangup_cause_name",
        "hangup_source",
        "total_rate",
        "trunk_domain",
        "from_country",
        "to_country",
        "transport_protocol",
        "secure_trunking",
        "secure_trunking_rate",
        "attestation_indicator",
    ):
        assert key in got


def test_insights_nulls_until_measured(account, store):
    aid = account_id_of(store, account.auth_id)
    measured = record(
        aid,
        5,
        rtt=23.5,
        jitter=4.25,
        packet_loss=0.5,
        post_dial_delay=820.0,
        quality_score=4.2,
        to_region="London",
        to_carrier="BT",
    )
    bare = record(aid, 6)
    seed(store, account.auth_id, [measured, bare])
    got = account.get(f"Zentrunk/Call/{measured['call_uuid']}/Insights/").json()
    assert got["from"] == {"number": "14155550100", "region": None, "carrier": None}
    assert got["to"] == {"number": "442079460000", "region": "London", "carrier": "BT"}
    assert (got["rtt"], got["jitter"], got["packet_loss"]) == (23.5, 4.25, 0.5)
    assert got["post_dial_delay"] == 820.0 and got["plivo_quality_score"] == 4.2
    assert got["hangup_cause"] == "normal_hangup" and got["hangup_source"] == "customer"
    empty = account.get(f"Zentrunk/Call/{bare['call_uuid']}/Insights/").json()
    assert empty["rtt"] is None and empty["plivo_quality_score"] is None


def test_isolation_and_open_calls_hidden(account, other, store):
    aid = account_id_of(store, other.auth_id)
    theirs = record(aid, 5)
    live = record(account_id_of(store, account.auth_id), 1, end_time=None, state="open")
    seed(store, other.auth_id, [theirs, live])
    assert_error(account.get(f"Zentrunk/Call/{theirs['call_uuid']}/"), 404)
    assert_error(account.get(f"Zentrunk/Call/{theirs['call_uuid']}/Insights/"), 404)
    assert_error(account.get(f"Zentrunk/Call/{live['call_uuid']}/"), 404)
    assert uuids(account.get("Zentrunk/Call/")) == []


def test_windows_30_and_90_days(account, store):
    aid = account_id_of(store, account.auth_id)
    recent = record(aid, 60)
    d45 = record(aid, 45 * 24 * 60)
    d100 = record(aid, 100 * 24 * 60)
    seed(store, account.auth_id, [recent, d45, d100])
    assert uuids(account.get("Zentrunk/Call/")) == [recent["call_uuid"]]
    since = (utcnow() - timedelta(days=120)).strftime("%Y-%m-%d %H:%M")
    got = uuids(account.get(f"Zentrunk/Call/?end_time__gte={since}"))
    assert got == [recent["call_uuid"], d45["call_uuid"]]  # never older than 90 days
    assert_error(account.get(f"Zentrunk/Call/{d100['call_uuid']}/"), 404)
    assert account.get(f"Zentrunk/Call/{d45['call_uuid']}/").status_code == 200


def test_filters(account, store):
    aid = account_id_of(store, account.auth_id)
    a = record(aid, 10, to_number="14155550123", bill_duration=60)
    b = record(
        aid,
        20,
        to_number="14155559999",
        call_direction="inbound",
        bill_duration=120,
        hangup_cause_code=4410,
        hangup_source="carrier",
        hangup_cause_name="user_busy",
    )
    c = record(
        aid,
        30,
        to_number="442079460001",
        from_number="33142685300",
        bill_duration=0,
        stir_verification="Verified",
    )
    seed(store, account.auth_id, [a, b, c])
    A, B, C = a["call_uuid"], b["call_uuid"], c["call_uuid"]

    def q(query: str) -> list[str]:
        return uuids(account.get(f"Zentrunk/Call/?{query}"))

    assert q("") == [A, B, C]
    assert q("to_number=1415555") == [A, B]  # prefix
    assert q("to_number=14155550123") == [A]  # exact
    assert q("to_number=%2B14155550123") == [A]
    assert q("to_number=1415555&call_direction=inbound") == [B]
    assert q("from_number=33") == [C]
    assert q("hangup_cause_code=4410") == [B]
    assert q("hangup_source=carrier") == [B]
    assert q("stir_verification=Verified") == [C]
    assert q("bill_duration=60") == [A]
    assert q("bill_duration__gt=60") == [B]
    assert q("bill_duration__gte=60") == [A, B]
    assert q("bill_duration__lt=60") == [C]
    assert q("bill_duration__lte=60") == [A, C]
    t = (utcnow() - timedelta(minutes=15)).strftime("%Y-%m-%d %H:%M:%S")
    assert q(f"end_time__gt={t}") == [A]
    assert q(f"end_time__lt={t}") == [B, C]
    assert q(f"end_time__lte={t}&end_time__gte={t[:16]}") == []
    exact = a["end_time"].strftime("%Y-%m-%d %H:%M:%S")
    assert q(f"end_time={exact}") == [A]
    page = account.get("Zentrunk/Call/?limit=2&call_direction=outbound").json()
    assert page["meta"]["total_count"] == 2 and page["meta"]["next"] is None
    page = account.get("Zentrunk/Call/?limit=1").json()
    assert page["meta"]["next"].endswith("/Zentrunk/Call/?limit=1&offset=1")


def test_bad_filters_are_400(account):
    for query in (
        "to_number=abc",
        "call_direction=up",
        "hangup_cause_code=12",
        "hangup_source=nobody",
        "bill_duration__gt=-1",
        "bill_duration=x",
        "end_time=yesterday",
        "end_time__gt=2024-13-01 00:00",
        "limit=50",
        "offset=x",
    ):
        assert_error(account.get(f"Zentrunk/Call/?{query}"), 400)
