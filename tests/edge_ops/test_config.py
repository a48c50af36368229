"""EdgeConfig against a real store: trunk lookup by domain with ACL and credential,
account policy and limits, carriers with decrypted passwords, and how API changes reach
the edge (in-process at once, from another process within the TTL)."""

from __future__ import annotations

import asyncio
import random
import time
from decimal import Decimal
from ipaddress import ip_address, ip_network

import pytest
from sqlalchemy import update

from edge_ops.conftest import Account
from opentrunk.domain.hangup_codes import CallEnd
from opentrunk.edge.config import CarrierTable, EdgeConfig, invalidate_all, trunk_id_of_host
from opentrunk.services import accounts as accounts_svc
from opentrunk.services import carriers as carriers_svc
from opentrunk.services import numbers as numbers_svc
from opentrunk.services.credentials import create_credential
from opentrunk.services.ipacls import create_ipacl, update_ipacl
from opentrunk.services.trunks import create_trunk, update_trunk
from opentrunk.store.db import make_engine
from opentrunk.store.models import trunks
from opentrunk.store.store import Store


def _trunk(store: Store, account: Account, *, acl: list[str] | None = None, cred: bool = True):
    ipacl = create_ipacl(store, account.account_id, acl, "pbx") if acl else None
    credential = None
    if cred:
        username = "u" + account.auth_id[-10:].lower()
        credential = create_credential(store, account.account_id, username, "pa$$w0rd", "c")
    trunk_id = create_trunk(
        store,
        account.account_id,
        {"trunk_direction": "outbound", "ipacl_uuid": ipacl, "credential_uuid": credential},
    )
    return trunk_id, ipacl


def test_trunk_id_of_host() -> None:
    assert trunk_id_of_host("123456789012345.zt.example.test", "zt.example.test") == (
        "123456789012345"
    )
    assert trunk_id_of_host("123.ZT.Example.Test.", "zt.example.test") == "123"
    assert trunk_id_of_host("zt.example.test", "zt.example.test") is None
    assert trunk_id_of_host(".zt.example.test", "zt.example.test") is None
    assert trunk_id_of_host("a.b.zt.example.test", "zt.example.test") is None
    assert trunk_id_of_host("123.other.test", "zt.example.test") is None
    assert trunk_id_of_host("123.evilzt.example.test", "zt.example.test") is None


def test_trunk_view_with_acl_and_credential(store: Store, account: Account) -> None:
    trunk_id, _ = _trunk(store, account, acl=["127.0.0.1", "10.1.0.0/16", "2001:db8::/32"])
    config = EdgeConfig(store)

    async def scenario() -> None:
        trunk = await config.trunk_for_host(f"{trunk_id}.{store.sip_domain}")
        assert trunk is not None
        assert trunk.trunk_id == trunk_id
        assert trunk.account_id == account.account_id
        assert trunk.auth_id == account.auth_id
        assert trunk.domain == f"{trunk_id}.zt.example.test"
        assert trunk.enabled and trunk.direction == "outbound" and not trunk.secure
        assert trunk.acl == (
            ip_network("127.0.0.1/32"),
            ip_network("10.1.0.0/16"),
            ip_network("2001:db8::/32"),
        )
        assert trunk.acl_allows("10.1.200.3") and trunk.acl_allows(ip_address("2001:db8::5"))
        assert trunk.acl_allows("::ffff:127.0.0.1")
        assert not trunk.acl_allows("10.2.0.1") and not trunk.acl_allows("2001:db9::1")
        assert trunk.credential is not None
        assert trunk.credential.realm == store.sip_domain
        assert len(trunk.credential.ha1_md5) == 32 and len(trunk.credential.ha1_sha256) == 64
        assert trunk.credential.ha1_md5 not in repr(trunk)
        # Unknown trunk, other domain, bare domain.
        assert await config.trunk_for_host(f"999999999999999.{store.sip_domain}") is None
        assert await config.trunk_for_host(f"{trunk_id}.elsewhere.test") is None
        assert await config.trunk_for_host(store.sip_domain) is None

    asyncio.run(scenario())


def test_cache_serves_repeated_lookups_and_unknown_trunks(store: Store, account: Account) -> None:
    trunk_id, _ = _trunk(store, account)
    config = EdgeConfig(store, ttl=60)
    host = f"{trunk_id}.{store.sip_domain}"
    unknown = f"888888888888888.{store.sip_domain}"

    async def scenario() -> None:
        first = await config.trunk_for_host(host)
        loads = config.loads
        for _ in range(50):
            assert await config.trunk_for_host(host) is first
            assert await config.trunk_for_host(unknown) is None
        # One more load for the unknown trunk, then none: a flood costs one query.
        assert config.loads == loads + 1

    asyncio.run(scenario())


def test_concurrent_misses_share_one_load(store: Store, account: Account) -> None:
    trunk_id, _ = _trunk(store, account)
    config = EdgeConfig(store, ttl=60)

    async def scenario() -> None:
        host = f"{trunk_id}.{store.sip_domain}"
        results = await asyncio.gather(*(config.trunk_for_host(host) for _ in range(40)))
        assert all(r is results[0] and r is not None for r in results)
        assert config.loads == 1

    asyncio.run(scenario())


def test_change_through_service_applies_to_next_call(store: Store, account: Account) -> None:
    trunk_id, ipacl = _trunk(store, account, acl=["192.0.2.1"])
    config = EdgeConfig(store, ttl=3600)  # only the commit hook can make this pass
    host = f"{trunk_id}.{store.sip_domain}"

    async def scenario() -> None:
        before = await config.trunk_for_host(host)
        assert before is not None and before.enabled and before.acl_allows("192.0.2.1")
        await asyncio.to_thread(
            update_trunk, store, account.account_id, trunk_id, {"trunk_status": "disabled"}
        )
        after = await config.trunk_for_host(host)
        assert after is not None and not after.enabled
        assert ipacl is not None
        await asyncio.to_thread(
            update_ipacl, store, account.account_id, ipacl, {"ip_addresses": ["198.51.100.7"]}
        )
        changed = await config.trunk_for_host(host)
        assert changed is not None
        assert changed.acl_allows("198.51.100.7") and not changed.acl_allows("192.0.2.1")

    asyncio.run(scenario())


def test_change_from_another_process_applies_within_ttl(store: Store, account: Account) -> None:
    trunk_id, _ = _trunk(store, account)
    config = EdgeConfig(store, ttl=0.3)
    host = f"{trunk_id}.{store.sip_domain}"
    # A separate engine stands for the CLI or another API worker: no shared commit hook.
    url = store.engine.url.render_as_string(hide_password=False)
    schema = None
    if store.engine.dialect.name == "postgresql":
        with store.engine.connect() as conn:
            schema = conn.exec_driver_sql("SHOW search_path").scalar_one()
    other = make_engine(url, schema=schema)

    async def scenario() -> None:
        assert (await config.trunk_for_host(host)).enabled  # type: ignore[union-attr]
        with other.begin() as conn:
            conn.execute(
                update(trunks).where(trunks.c.trunk_id == trunk_id).values(trunk_status="disabled")
            )
        deadline = time.monotonic() + 3
        seen = True
        while time.monotonic() < deadline:
            trunk = await config.trunk_for_host(host)
            assert trunk is not None
            seen = trunk.enabled
            if not seen:
                break
            await asyncio.sleep(0.05)
        assert not seen

    try:
        asyncio.run(scenario())
    finally:
        other.dispose()


def test_account_view(store: Store, account: Account) -> None:
    accounts_svc.set_limits(
        store,
        account.auth_id,
        cps=5,
        max_calls=3,
        countries="US,GB",
        caller_id_policy=False,
        billing_increment=6,
        barred_prefixes=["1900", "44870"],
    )
    number = f"1415{random.randrange(2_000_000, 9_999_999)}"
    numbers_svc.add_number(store, number, account.auth_id)
    config = EdgeConfig(store)

    async def scenario() -> None:
        view = await config.account(account.account_id)
        assert view is not None
        assert view.auth_id == account.auth_id and view.enabled
        assert view.cps == 5.0 and view.max_calls == 3
        assert view.billing.increment == 6
        assert view.policy.caller_id_policy is False
        assert view.policy.geo.allows("US") and view.policy.geo.allows("GB")
        assert not view.policy.geo.allows("FR")
        assert set(view.policy.barred_digits) == {"1900", "44870"}
        assert number in view.policy.number_digits
        assert await config.account(10**9) is None

    asyncio.run(scenario())


def test_account_defaults(store: Store, account: Account) -> None:
    config = EdgeConfig(store)
    view = asyncio.run(config.account(account.account_id))
    assert view is not None
    assert view.cps == 2.0 and view.max_calls is None
    assert view.billing.increment == 60
    assert view.policy.caller_id_policy is True
    assert view.policy.geo.countries is None


def test_carriers_with_routing_and_decrypted_password(store: Store) -> None:
    suffix = str(random.randrange(10**9))
    made = [
        carriers_svc.add_carrier(
            store,
            name=f"gen-{suffix}",
            address="127.0.0.1:5070",
            prefix="",
            priority=10,
            rate="0.01",
        ),
        carriers_svc.add_carrier(
            store,
            name=f"uk-a-{suffix}",
            address="uk.carrier.test",
            transport="tcp",
            prefix="44",
            priority=1,
            username="edgeuser",
            password="s3cret-carrier",
            rate="0.02",
        ),
        carriers_svc.add_carrier(
            store,
            name=f"uk-b-{suffix}",
            address="[::1]:5080",
            prefix="44",
            priority=2,
            rate="0.03",
        ),
    ]
    ids = [m["carrier_id"] for m in made]
    config = EdgeConfig(store)
    try:

        async def scenario() -> None:
            table = await config.carriers()
            uk_a = table.by_id[ids[1]]
            assert uk_a.host == "uk.carrier.test" and uk_a.port is None
            assert uk_a.transport == "tcp" and uk_a.username == "edgeuser"
            assert uk_a.password == "s3cret-carrier"
            assert "s3cret" not in repr(uk_a) and "s3cret" not in repr(table)
            assert uk_a.rate == Decimal("0.02")
            gen = table.by_id[ids[0]]
            assert (gen.host, gen.port, gen.password) == ("127.0.0.1", 5070, None)
            uk_b = table.by_id[ids[2]]
            assert (uk_b.host, uk_b.port) == ("::1", 5080)
            plan = table.plan("+442071234567")
            assert not isinstance(plan, CallEnd)
            assert [c.carrier_id for c in plan][:2] == [ids[1], ids[2]]
            other = table.plan("+14155550123")
            assert not isinstance(other, CallEnd)
            assert ids[0] in [c.carrier_id for c in other]

        asyncio.run(scenario())
    finally:
        for carrier_id in ids:
            carriers_svc.remove_carrier(store, carrier_id)
        invalidate_all()


def test_no_route_is_4090() -> None:
    table = CarrierTable.of([])
    plan = table.plan("+33123456789")
    assert isinstance(plan, CallEnd) and plan.code == 4090


def test_stale_value_served_when_reload_fails(store: Store, account: Account) -> None:
    trunk_id, _ = _trunk(store, account)
    now = [0.0]
    config = EdgeConfig(store, ttl=1.0, clock=lambda: now[0], watch=False)
    host = f"{trunk_id}.{store.sip_domain}"

    async def scenario() -> None:
        first = await config.trunk_for_host(host)
        assert first is not None
        now[0] = 5.0  # expired

        async def broken(_work: object) -> object:
            raise OSError("database unreachable")

        config._run = broken  # type: ignore[method-assign, assignment]
        assert await config.trunk_for_host(host) is first
        # Nothing cached: the failure reaches the caller.
        with pytest.raises(OSError):
            await config.trunk_for_host(f"777777777777777.{store.sip_domain}")

    asyncio.run(scenario())
