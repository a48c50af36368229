"""Migration 0004 (call_records.node) on both stores: the column is there at head, goes
on downgrade with the records kept, and comes back null for the records written before
it, which crash recovery then treats as orphans of the upgrade."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import inspect, text

from dbutil import BACKENDS, open_store
from opentrunk.services.accounts import account_id_of, create_account
from opentrunk.services.calls import close_abandoned_records
from opentrunk.services.clock import utcnow
from opentrunk.store.migrate import alembic_config, current_revision, upgrade
from opentrunk.store.store import Store


def _columns(store: Store) -> set[str]:
    return {c["name"] for c in inspect(store.engine).get_columns("call_records")}


def _open_record(store: Store, account_id: int, node: str | None = None) -> str:
    """An open record through plain SQL, as a process of that revision writes it."""
    call_uuid = str(uuid.uuid4())
    values: dict[str, Any] = {"u": call_uuid, "a": account_id, "t": utcnow()}
    columns = "call_uuid, account_id, state, from_number, to_number, call_direction,"
    columns += " call_duration, bill_duration, initiation_time, total_rate, total_amount,"
    columns += " trunk_domain, transport_protocol, srtp, secure_trunking,"
    columns += " secure_trunking_rate, stir_verification"
    params = ":u, :a, 'open', '14155550100', '14155550101', 'outbound', 0, 0, :t,"
    params += " '0.00000', '0.00000', '', 'udp', false, false, '0.00000', 'Not Applicable'"
    if node is not None:
        columns += ", node"
        params += ", :n"
        values["n"] = node
    with store.engine.begin() as conn:
        conn.execute(text(f"INSERT INTO call_records ({columns}) VALUES ({params})"), values)
    return call_uuid


def _states(store: Store) -> dict[str, tuple[str, str | None]]:
    with store.engine.connect() as conn:
        rows = conn.execute(text("SELECT call_uuid, state, node FROM call_records")).all()
    return {r[0]: (r[1], r[2]) for r in rows}


@pytest.mark.parametrize("backend", BACKENDS)
def test_node_column_down_and_up_keeps_records(backend: str, tmp_path: Path) -> None:
    with open_store(backend, tmp_path) as store:
        assert current_revision(store.engine) == "0004"
        assert "node" in _columns(store)
        account_id = account_id_of(store, create_account(store, "m")["auth_id"])
        named = _open_record(store, account_id, node="edge-a:5060")

        with store.engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0003")
        assert current_revision(store.engine) == "0003"
        assert "node" not in _columns(store)
        # A process of the old revision keeps writing records, which name no node.
        before_upgrade = _open_record(store, account_id)

        upgrade(store.engine)
        assert current_revision(store.engine) == "0004"
        assert "node" in _columns(store)
        states = _states(store)
        # The downgrade lost which node opened `named`: both are now records of no node.
        assert states == {named: ("open", None), before_upgrade: ("open", None)}

        after_upgrade = _open_record(store, account_id, node="edge-b:5060")
        # Node a's restart closes the records of no node too, never node b's.
        assert close_abandoned_records(store.engine, node="edge-a:5060") == 2
        states = _states(store)
        assert states[named][0] == states[before_upgrade][0] == "closed"
        assert states[after_upgrade] == ("open", "edge-b:5060")
