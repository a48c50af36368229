"""Crash recovery with several edge nodes on one database (SQLite, and PostgreSQL when
OPENTRUNK_TEST_DATABASE_URL is set): each record names the node that opened it; a node's
restart closes only its own open records (and those that name no node, written before
migration 0004); `opentrunk calls recover --node` closes a gone node's; the node is
never in the API's JSON; the settings that name a node."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from typer.testing import CliRunner

from dbutil import PG_URL
from edge_ops.conftest import Account
from opentrunk.api.app import create_app
from opentrunk.cli.main import app
from opentrunk.config import NODE_ID_FILE, Settings, load_settings, node_id_of
from opentrunk.domain.hangup_codes import Side, bye_from
from opentrunk.edge.records import CallRecorder
from opentrunk.edge.views import CallFinish, CallStart
from opentrunk.services.calls import insert_call_record, open_records_by_node
from opentrunk.store.models import call_records
from opentrunk.store.store import Store

NODE_A = "edge-a.example.test:5060"
NODE_B = "edge-b.example.test:5060"


def _start(account: Account) -> CallStart:
    return CallStart(
        call_uuid=str(uuid.uuid4()),
        account_id=account.account_id,
        trunk_id="123456789012345",
        from_number="+14155550100",
        to_number="+442071234567",
        initiation_time=datetime.now(UTC) - timedelta(seconds=5),
        trunk_domain="123456789012345.zt.example.test",
    )


def _row(store: Store, call_uuid: str) -> Any:
    with store.engine.connect() as conn:
        return conn.execute(
            select(call_records).where(call_records.c.call_uuid == call_uuid)
        ).first()


def _finish() -> CallFinish:
    now = datetime.now(UTC)
    return CallFinish(
        end=bye_from(Side.CUSTOMER),
        end_time=now,
        answer_time=now - timedelta(seconds=3),
        rate=Decimal("0.01"),
    )


async def _crash(recorder: CallRecorder) -> None:
    """The process dies after its records were written: nothing else reaches the store."""
    await recorder.flush()
    assert recorder._task is not None
    recorder._task.cancel()


def test_restart_closes_only_its_own_nodes_records(store: Store, account: Account) -> None:
    on_a, on_b = _start(account), _start(account)
    unnamed = str(uuid.uuid4())
    insert_call_record(  # an open record from before the upgrade: no node
        store.engine,
        {
            "call_uuid": unnamed,
            "account_id": account.account_id,
            "from_number": "14155550100",
            "to_number": "14155550199",
            "call_direction": "outbound",
            "initiation_time": datetime.now(UTC).replace(tzinfo=None, microsecond=0),
        },
    )

    async def scenario() -> None:
        node_a = CallRecorder(store, flush_interval=0.05, node=NODE_A)
        node_b = CallRecorder(store, flush_interval=0.05, node=NODE_B)
        await node_a.start()
        await node_b.start()
        node_a.open(on_a)
        node_b.open(on_b)
        await node_a.flush()
        await _crash(node_b)
        assert _row(store, on_a.call_uuid).node == NODE_A
        assert _row(store, on_b.call_uuid).node == NODE_B

        restarted_b = CallRecorder(store, node=NODE_B)
        assert await restarted_b.recover_open_calls() == 2  # its own, and the unnamed one
        assert await restarted_b.recover_open_calls() == 0
        # Node a's call is still up: its record stays open, and its real end is written.
        assert _row(store, on_a.call_uuid).state == "open"
        assert node_a.close(on_a.call_uuid, _finish())
        await node_a.stop()

    asyncio.run(scenario())
    a, b, old = (_row(store, u) for u in (on_a.call_uuid, on_b.call_uuid, unnamed))
    assert (a.state, a.hangup_cause_code, a.hangup_source) == ("closed", 3010, "customer")
    assert a.call_duration == 3 and a.node == NODE_A
    for row in (b, old):
        assert (row.state, row.hangup_cause_code, row.hangup_source) == (
            "closed",
            5250,
            "zentrunk",
        )
        assert row.call_duration == 0 and row.total_amount == "0.00000"


def _database_url(store: Store) -> str:
    """A URL for the CLI that reaches `store`, its test schema included."""
    if store.engine.dialect.name == "sqlite":
        return store.engine.url.render_as_string(hide_password=False)
    with store.engine.connect() as conn:
        schema = conn.execute(text("SHOW search_path")).scalar_one()
    return f"{PG_URL}?options=-csearch_path%3D{schema}"


def test_cli_recover_closes_a_gone_nodes_records_only(store: Store, account: Account) -> None:
    gone_node = f"gone-{uuid.uuid4().hex[:8]}:5060"
    live_node = f"live-{uuid.uuid4().hex[:8]}:5060"
    gone, live = _start(account), _start(account)

    async def scenario() -> None:
        gone_recorder = CallRecorder(store, flush_interval=0.05, node=gone_node)
        live_recorder = CallRecorder(store, flush_interval=0.05, node=live_node)
        await gone_recorder.start()
        gone_recorder.open(gone)
        await _crash(gone_recorder)
        live_recorder.open(live)
        await live_recorder.flush()

    asyncio.run(scenario())
    counts = open_records_by_node(store.engine)
    assert counts[gone_node] == counts[live_node] == 1

    runner = CliRunner()
    url = _database_url(store)
    listed = runner.invoke(app, ["calls", "open", "--json", "--database-url", url])
    assert listed.exit_code == 0, (listed.output, listed.exception)
    assert {"node": gone_node, "open": 1} in json.loads(listed.stdout)
    result = runner.invoke(
        app, ["calls", "recover", "--node", gone_node, "--json", "--database-url", url]
    )
    assert result.exit_code == 0, (result.output, result.exception)
    # No OPENTRUNK_REDIS_URL in this environment: no slots to give back.
    assert json.loads(result.stdout) == {
        "node": gone_node,
        "records_closed": 1,
        "slots_released": None,
    }
    assert _row(store, gone.call_uuid).hangup_cause_code == 5250
    assert _row(store, live.call_uuid).state == "open"
    again = runner.invoke(app, ["calls", "recover", "--node", gone_node, "--database-url", url])
    assert again.exit_code == 0 and "0 open call records closed" in again.stdout

    help_text = runner.invoke(app, ["calls", "recover", "--help"]).stdout
    assert "not running" in help_text


def test_the_node_is_not_in_the_apis_json(store: Store, account: Account) -> None:
    settings = Settings(sip_domain=store.sip_domain, api_rate_limit=0, api_rate_burst=1)
    client = TestClient(create_app(settings, store))
    start = _start(account)

    async def scenario() -> None:
        recorder = CallRecorder(store, node=NODE_A)
        recorder.open(start)
        recorder.close(start.call_uuid, _finish())
        await recorder.flush()

    asyncio.run(scenario())
    assert _row(store, start.call_uuid).node == NODE_A
    base = f"/v1/Account/{account.auth_id}/Zentrunk/Call/"
    auth = (account.auth_id, account.auth_token)
    one = client.get(f"{base}{start.call_uuid}/", auth=auth)
    assert one.status_code == 200, one.text
    assert one.json()["call_uuid"] == start.call_uuid and "node" not in one.json()
    listed = client.get(base, auth=auth).json()["objects"]
    assert listed and all("node" not in view for view in listed)


def test_node_id_kept_in_the_data_dir_or_set(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: "edge7.example.test")
    first = node_id_of(Settings(data_dir=str(tmp_path / "one"), sip="0.0.0.0:5060"))
    assert re.fullmatch(r"edge7-[0-9a-f]{6}", first)
    assert (tmp_path / "one" / NODE_ID_FILE).read_text() == first + "\n"
    # A restart, on another port and after the host name changed: the same node.
    monkeypatch.setattr(socket, "gethostname", lambda: "edge8")
    assert node_id_of(Settings(data_dir=str(tmp_path / "one"), sip="0.0.0.0:5080")) == first
    other = node_id_of(Settings(data_dir=str(tmp_path / "two")))
    assert other.startswith("edge8-") and other != first
    assert [p.name for p in (tmp_path / "one").iterdir()] == [NODE_ID_FILE]  # no drafts

    from_env = load_settings(env={"OPENTRUNK_NODE_ID": "paris-1", "OPENTRUNK_DATA_DIR": "x"})
    assert node_id_of(from_env) == "paris-1"
    assert node_id_of(from_env.with_overrides(node_id="paris-2")) == "paris-2"
    assert not (Path("x") / NODE_ID_FILE).exists()  # a set id writes no file
    for bad in ("x" * 65, "two words"):
        with pytest.raises(ValueError, match="node id"):
            node_id_of(Settings(node_id=bad))
