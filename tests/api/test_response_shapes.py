"""The customer routes answer prebuilt JSON (no response_model validation at run time), so
these tests hold every answer to the model the OpenAPI document declares for it: exactly
its fields, with strict types (a SQLite 0/1 is not a boolean). Also: the document declares
`{auth_id}` and the security schemes, and the hot-path reader sees writes at once."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import pytest
from pydantic import BaseModel
from sqlalchemy import (
    Column,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    create_engine,
    select,
    text,
)
from sqlalchemy.pool import StaticPool

from api.helpers import make_acl, make_credential, make_trunk, make_uri
from opentrunk.api import schemas
from opentrunk.services import trunks as trunk_svc
from opentrunk.services.accounts import account_id_of
from opentrunk.services.calls import insert_call_record
from opentrunk.services.clock import utcnow
from opentrunk.services.errors import NotFound
from opentrunk.services.numbers import add_number
from opentrunk.store.models import accounts
from opentrunk.store.reader import RowReader
from opentrunk.store.store import Store


def conforms(resp: Any, model: type[BaseModel], status: int = 200) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/json"
    body: dict[str, Any] = resp.json()
    model.model_validate_json(resp.content, strict=True)
    expected = {f.alias or name for name, f in model.model_fields.items()}
    assert set(body) == expected, set(body) ^ expected
    return body


def test_single_object_answers_match_their_models(account, store):
    acl = make_acl(account)
    cred = make_credential(account)
    uri = make_uri(account)
    out = make_trunk(account, "outbound", ipacl_uuid=acl, credential_uuid=cred, secure=True)
    inbound = make_trunk(account, "inbound", primary_uri_uuid=uri)
    trunk = conforms(account.get(f"Zentrunk/Trunk/{out}/"), schemas.TrunkOne)
    assert trunk["secure"] is True and trunk["ipacl_uuid"] == acl
    trunk = conforms(account.get(f"Zentrunk/Trunk/{inbound}/"), schemas.TrunkOne)
    assert trunk["secure"] is False and trunk["trunk_direction"] == "inbound"
    assert trunk["trunk_domain"] == f"{inbound}.{store.sip_domain}"
    conforms(account.get(f"Zentrunk/IPAccessControlList/{acl}/"), schemas.IPACLOne)
    conforms(account.get(f"Zentrunk/Credential/{cred}/"), schemas.CredentialOne)
    body = conforms(account.get(f"Zentrunk/URI/{uri}/"), schemas.URIOne)
    assert body["authentication_needed"] is False
    r = account.post(
        "Zentrunk/URI/",
        {
            "uri": "pbx2.example.com",
            "authentication_needed": True,
            "username": "u",
            "password": "p",
        },
    )
    secured = conforms(r, schemas.URIWritten, 201)["uri_uuid"]
    body = conforms(account.get(f"Zentrunk/URI/{secured}/"), schemas.URIOne)
    assert body["authentication_needed"] is True and body["username"] == "u"

    add_number(store, "+14155550123", account.auth_id)
    conforms(account.get("Number/14155550123/"), schemas.NumberOne)
    account_id = account_id_of(store, account.auth_id)
    now = utcnow()
    insert_call_record(
        store.engine,
        {
            "call_uuid": "6a1f0b7e-5d7e-4f55-9f0e-3d1f4c2b9a01",
            "account_id": account_id,
            "trunk_id": out,
            "from_number": "14155550123",
            "to_number": "442071838750",
            "call_direction": "outbound",
            "initiation_time": now,
            "answer_time": now,
            "end_time": now,
            "call_duration": 61,
            "bill_duration": 120,
            "hangup_cause_code": 4000,
            "hangup_cause_name": "normal_hangup",
            "hangup_source": "customer",
        },
    )
    call = "Zentrunk/Call/6a1f0b7e-5d7e-4f55-9f0e-3d1f4c2b9a01/"
    conforms(account.get(call), schemas.CallOne)
    conforms(account.get(call + "Insights/"), schemas.CallInsights)


def test_lists_and_writes_match_their_models(account, store):
    acl = make_acl(account)
    cred = make_credential(account)
    uri = make_uri(account)
    trunk = make_trunk(account, "outbound", ipacl_uuid=acl)
    add_number(store, "+14155550124", account.auth_id)
    for rest, model in (
        ("Zentrunk/Trunk/", schemas.TrunkList),
        ("Zentrunk/IPAccessControlList/", schemas.IPACLList),
        ("Zentrunk/Credential/", schemas.CredentialList),
        ("Zentrunk/URI/", schemas.URIList),
        ("Number/", schemas.NumberList),
        ("Zentrunk/Call/", schemas.CallList),
    ):
        body = conforms(account.get(rest), model)
        if rest != "Zentrunk/Call/":
            assert body["meta"]["total_count"] >= 1, rest
    for rest, change, model in (
        (f"Zentrunk/Trunk/{trunk}/", {"name": "t"}, schemas.TrunkWritten),
        (f"Zentrunk/IPAccessControlList/{acl}/", {"name": "a"}, schemas.IPACLWritten),
        (f"Zentrunk/Credential/{cred}/", {"name": "c"}, schemas.CredentialWritten),
        (f"Zentrunk/URI/{uri}/", {"name": "u"}, schemas.URIWritten),
        ("Number/14155550124/", {"alias": "n"}, schemas.NumberWritten),
    ):
        conforms(account.post(rest, change), model, 202)
    assert account.get(f"Zentrunk/Trunk/{trunk}/").json()["name"] == "t"


def test_openapi_declares_auth_id_and_security_schemes(client):
    doc = client.get("/openapi.json").json()
    schemes = doc["components"]["securitySchemes"]
    assert {s["scheme"] for s in schemes.values()} == {"basic", "bearer"}
    basic = next(name for name, s in schemes.items() if s["scheme"] == "basic")
    bearer = next(name for name, s in schemes.items() if s["scheme"] == "bearer")
    customer_ops = 0
    for path, item in doc["paths"].items():
        for method, op in item.items():
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            for name in (part[1:-1] for part in path.split("/") if part.startswith("{")):
                assert name in declared, f"{method.upper()} {path}: {name} undeclared"
            if path.startswith("/v1/"):
                customer_ops += 1
                assert op["security"] == [{basic: []}], path
            elif path.startswith("/admin/"):
                assert op["security"] == [{bearer: []}], path
    assert customer_ops >= 25
    get_trunk = doc["paths"]["/v1/Account/{auth_id}/Zentrunk/Trunk/{trunk_id}/"]["get"]
    ok = get_trunk["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok["$ref"].endswith("/TrunkOne")


def test_reader_sees_each_committed_write_at_once(account, store):
    account_id = account_id_of(store, account.auth_id)
    trunk = make_trunk(account, "outbound")
    read = asyncio.run(trunk_svc.read_trunk(store, account_id, trunk))
    assert read["name"] == "" and read["trunk_status"] == "enabled"
    for status in ("disabled", "enabled", "disabled"):
        assert account.post(f"Zentrunk/Trunk/{trunk}/", {"trunk_status": status}).status_code == 202
        assert account.get(f"Zentrunk/Trunk/{trunk}/").json()["trunk_status"] == status
    assert account.delete(f"Zentrunk/Trunk/{trunk}/").status_code == 204
    assert account.get(f"Zentrunk/Trunk/{trunk}/").status_code == 404
    with pytest.raises(NotFound):
        asyncio.run(trunk_svc.read_trunk(store, account_id, trunk))


def test_reader_sees_writes_of_another_connection(account, store: Store) -> None:
    """A write by another process (here: another sqlite3 connection, like the CLI) is seen
    by the next read: the inline reader holds no snapshot between reads."""
    if store.engine.dialect.name != "sqlite":
        pytest.skip("the inline reader is the SQLite path")
    reader = store.reader
    assert reader.inline
    query = select(accounts.c.name).where(accounts.c.auth_id == bindparam("a"))
    key = {"a": account.auth_id}
    assert asyncio.run(reader.fetch_one(query, key)) == ("test",)
    other = sqlite3.connect(str(store.engine.url.database))
    try:
        for name in ("renamed", "renamed again"):
            other.execute("UPDATE accounts SET name = ? WHERE auth_id = ?", (name, account.auth_id))
            other.commit()
            assert asyncio.run(reader.fetch_one(query, key)) == (name,)
            assert reader.fetch_one_sync(query, key) == (name,)
    finally:
        other.close()
    assert asyncio.run(reader.fetch_one(query, {"a": "MA-no-such-account"})) is None


def test_reader_on_memory_sqlite_uses_pooled_connections() -> None:
    engine = create_engine(
        "sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False}
    )
    table = Table("t", MetaData(), Column("k", Integer, primary_key=True), Column("v", String))
    table.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(table.insert().values(k=1, v="one"))
    reader = RowReader(engine)
    assert not reader.inline
    query = select(table.c.v).where(table.c.k == bindparam("k"))
    assert asyncio.run(reader.fetch_one(query, {"k": 1})) == ("one",)
    assert asyncio.run(reader.fetch_one(query, {"k": 2})) is None
    reader.close()
    engine.dispose()


def test_reader_survives_a_lost_postgresql_connection(account, store: Store) -> None:
    """On PostgreSQL the hot-path reads use async connections of the running loop; one
    killed under it (server restart, idle timeout) costs no failed request."""
    if store.engine.dialect.name != "postgresql":
        pytest.skip("the async connections are the PostgreSQL path")
    query = select(accounts.c.name).where(accounts.c.auth_id == bindparam("a"))
    key = {"a": account.auth_id}

    async def scenario() -> list[tuple[Any, ...] | None]:
        seen = [await store.reader.fetch_one(query, key)]
        pids = store.reader.async_backend_pids()
        assert pids
        with store.engine.connect() as conn:
            for pid in pids:
                conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        for _ in range(3):
            seen.append(await store.reader.fetch_one(query, key))
        return seen

    assert asyncio.run(scenario()) == [("test",)] * 4
