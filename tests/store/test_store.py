"""The store: URL mapping, SQLite pragmas, migrations, secrets at rest, crash recovery
of open call records, and the call-record indexes the list query uses."""

from __future__ import annotations

import hashlib
import os
import stat
import uuid
from datetime import timedelta

import pytest
from alembic import command
from sqlalchemy import inspect, text

from dbutil import BACKENDS, open_store
from opentrunk.services.accounts import account_id_of, authenticate, create_account
from opentrunk.services.calls import (
    close_abandoned_records,
    close_call_record,
    insert_call_record,
)
from opentrunk.services.clock import utcnow
from opentrunk.store.db import make_engine, normalize_url
from opentrunk.store.migrate import alembic_config, current_revision, upgrade
from opentrunk.store.models import accounts, call_records
from opentrunk.store.secrets import SecretBox, load_or_create_key, new_auth_id


def test_url_mapping():
    assert normalize_url("postgresql+asyncpg://u@h:5432/db") == "postgresql+psycopg://u@h:5432/db"
    assert normalize_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("sqlite+aiosqlite:////tmp/x.db") == "sqlite:////tmp/x.db"
    assert normalize_url("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"


def test_sqlite_pragmas(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'a.db'}")
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 5000
    engine.dispose()


@pytest.mark.parametrize("backend", BACKENDS)
def test_migrations_create_schema_and_are_idempotent(backend, tmp_path):
    with open_store(backend, tmp_path) as store:
        assert current_revision(store.engine) == "0004"
        upgrade(store.engine)  # again: a no-op
        tables = set(inspect(store.engine).get_table_names())
        assert {
            "accounts",
            "trunks",
            "credentials",
            "ip_acls",
            "origination_uris",
            "numbers",
            "carriers",
            "call_records",
            "alembic_version",
        } <= tables
        indexes = {i["name"] for i in inspect(store.engine).get_indexes("call_records")}
        assert {
            "ix_calls_account_end",
            "ix_calls_account_to_end",
            "ix_calls_account_dir_to_end",
        } <= indexes


@pytest.mark.parametrize("backend", BACKENDS)
def test_subaccount_migration_keeps_each_accounts_state(backend, tmp_path):
    """0003 down to 0002 and up again over existing accounts: `own_enabled` takes the old
    `enabled`, and nobody is a subaccount."""
    with open_store(backend, tmp_path) as store:
        with store.engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0002")
        assert current_revision(store.engine) == "0002"
        with store.engine.begin() as conn:
            for auth_id, enabled in (("MA" + "1" * 18, True), ("MA" + "2" * 18, False)):
                conn.execute(
                    text(
                        "INSERT INTO accounts (auth_id, name, token_hash, enabled, created_at,"
                        " cps, caller_id_policy, billing_increment, barred_prefixes)"
                        " VALUES (:a, 'n', :h, :e, :t, 2.0, :e, 60, '')"
                    ),
                    {"a": auth_id, "h": "0" * 64, "e": enabled, "t": utcnow()},
                )
        upgrade(store.engine)
        assert current_revision(store.engine) == "0004"
        with store.engine.connect() as conn:
            rows = conn.execute(
                text("SELECT auth_id, enabled, own_enabled, parent_id FROM accounts ORDER BY id")
            ).all()
        assert [(bool(r[1]), bool(r[2]), r[3]) for r in rows] == [
            (True, True, None),
            (False, False, None),
        ]


def test_ids_and_token_hash_at_rest(tmp_path):
    for _ in range(50):
        auth_id = new_auth_id()
        assert len(auth_id) == 20 and auth_id.startswith("MA") and auth_id[2:].isalnum()
        assert auth_id == auth_id.upper()
    with open_store("sqlite", tmp_path) as store:
        created = create_account(store, "acme")
        with store.engine.connect() as conn:
            row = conn.execute(accounts.select()).one()
        assert row.token_hash == hashlib.sha256(created["auth_token"].encode()).hexdigest()
        assert created["auth_token"] not in " ".join(str(v) for v in row)
        assert authenticate(store, created["auth_id"], created["auth_token"]) == row.id
        assert authenticate(store, created["auth_id"], "x" * 40) is None
        assert authenticate(store, "MA" + "0" * 18, created["auth_token"]) is None


def test_key_file_created_private_and_reused(tmp_path):
    key = load_or_create_key("", str(tmp_path))
    path = tmp_path / "secret.key"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_or_create_key("", str(tmp_path)) == key
    box = SecretBox(key)
    sealed = box.encrypt("hunter2!")
    assert "hunter2" not in sealed and box.decrypt(sealed) == "hunter2!"
    other = SecretBox(load_or_create_key("", str(tmp_path / "elsewhere")))
    with pytest.raises(ValueError, match="cannot be decrypted"):
        other.decrypt(sealed)


@pytest.mark.parametrize("backend", BACKENDS)
def test_open_records_closed_after_crash(backend, tmp_path):
    with open_store(backend, tmp_path) as store:
        aid = account_id_of(store, create_account(store, "a")["auth_id"])
        now = utcnow()
        base = {
            "account_id": aid,
            "from_number": "+14155550100",
            "to_number": "+14155550101",
            "call_direction": "outbound",
            "initiation_time": now - timedelta(seconds=30),
        }
        live, done = str(uuid.uuid4()), str(uuid.uuid4())
        # A length and charge written before the crash are not billed: nobody saw the end.
        insert_call_record(
            store.engine,
            {**base, "call_uuid": live, "call_duration": 25, "total_amount": "0.50000"},
        )
        insert_call_record(store.engine, {**base, "call_uuid": done})
        close_call_record(
            store.engine,
            done,
            {
                "hangup_cause_code": 3000,
                "hangup_cause_name": "normal_hangup",
                "hangup_source": "carrier",
            },
        )
        assert close_abandoned_records(store.engine) == 1
        with store.engine.connect() as conn:
            rows = {r.call_uuid: r for r in conn.execute(call_records.select())}
        assert rows[live].state == "closed" and rows[live].hangup_source == "zentrunk"
        assert rows[live].hangup_cause_code == 5250 and rows[live].end_time is not None
        assert rows[live].call_duration == 0 and rows[live].total_amount == "0.00000"
        assert rows[done].hangup_cause_code == 3000
        assert close_abandoned_records(store.engine) == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_recovery_keeps_the_running_process_live_calls_open(backend, tmp_path):
    with open_store(backend, tmp_path) as store:
        aid = account_id_of(store, create_account(store, "a")["auth_id"])
        base = {
            "account_id": aid,
            "from_number": "+14155550100",
            "to_number": "+14155550101",
            "call_direction": "outbound",
            "initiation_time": utcnow(),
        }
        orphan, ours = str(uuid.uuid4()), str(uuid.uuid4())
        insert_call_record(store.engine, {**base, "call_uuid": orphan})
        insert_call_record(store.engine, {**base, "call_uuid": ours})
        assert close_abandoned_records(store.engine, live=[ours]) == 1
        with store.engine.connect() as conn:
            states = {r.call_uuid: r.state for r in conn.execute(call_records.select())}
        assert states == {orphan: "closed", ours: "open"}


@pytest.mark.parametrize("backend", BACKENDS)
def test_call_list_query_uses_an_account_index(backend, tmp_path):
    """The two-filter list query must be served by an (account_id, ...) index, not a scan."""
    with open_store(backend, tmp_path) as store:
        sql = (
            "SELECT call_uuid FROM call_records WHERE account_id = 1 AND state = 'closed' "
            "AND to_number >= '1415' AND to_number < '1415:' AND call_direction = 'outbound' "
            "AND end_time >= '2024-01-01' ORDER BY end_time DESC LIMIT 20"
        )
        with store.engine.connect() as conn:
            if backend == "sqlite":
                plan = " ".join(str(r[-1]) for r in conn.execute(text("EXPLAIN QUERY PLAN " + sql)))
            else:
                conn.execute(text("SET enable_seqscan = off"))
                plan = " ".join(r[0] for r in conn.execute(text("EXPLAIN " + sql)))
        assert "ix_calls_account" in plan, plan


def test_number_and_direction_list_is_answered_from_the_covering_index(tmp_path):
    """The count and the page-key query of a to_number + call_direction list (the
    statements services.calls.list_calls runs) read ix_calls_account_dir_to_end alone."""
    from sqlalchemy import event

    from opentrunk.services import calls

    with open_store("sqlite", tmp_path) as store:
        seen: list[tuple[str, tuple[object, ...]]] = []

        def capture(conn, cursor, statement, params, context, many):  # type: ignore[no-untyped-def]
            seen.append((statement, tuple(params)))

        event.listen(store.engine, "before_cursor_execute", capture)
        try:
            calls.list_calls(store, 1, {"to_number": "1415", "call_direction": "outbound"}, 20, 0)
        finally:
            event.remove(store.engine, "before_cursor_execute", capture)
        (count, count_params), (page, page_params) = seen
        # The page statement is "... WHERE call_uuid IN (<key query>) ORDER BY ...": its
        # parameters all belong to the key query.
        key_query = page[page.index("IN (") + 4 : page.rindex(")")]
        with store.engine.connect() as conn:
            raw = conn.connection.driver_connection
            assert raw is not None
            for sql, params in ((count, count_params), (key_query, page_params)):
                plan = " ".join(
                    str(r[-1]) for r in raw.execute("EXPLAIN QUERY PLAN " + sql, params)
                )
                assert "COVERING INDEX ix_calls_account_dir_to_end" in plan, (sql, plan)
