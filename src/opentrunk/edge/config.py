"""`EdgeConfig`: the edge's read-through cache of what the API configures (trunks with
their ACL and credential, accounts with their limits, policy and numbers, carriers).

Why a cache: an INVITE needs a trunk, an account and the carrier table; reading them from
the database on every call costs a few milliseconds of a worker thread and, at hundreds
of calls per second, most of the CPU. Each entry lives `ttl` seconds (default 1 s):

- A change made through the API (or the CLI, another process) applies to calls that
  arrive at most `ttl` seconds later, without a restart.
- A change made in this process (the API app shares the `Store` with the edge in `serve`)
  applies to the next call: the config listens to the engine's commits and drops its
  cache when a committed transaction wrote a configuration table (`watch_engine`).
- `invalidate()` drops everything at once (tests, admin actions).

Loads run in a worker thread (`asyncio.to_thread`); concurrent misses for the same key
share one load. When a reload fails (database briefly unavailable) and a previous value
exists, the stale value is served and the failure logged, so calls keep flowing.
Unknown trunks are cached too (as None), so a flood of INVITEs for made-up trunk domains
costs one query per name per `ttl`.
"""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import json
import logging
import random
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final, Generic, TypeVar

from sqlalchemy import Connection, Engine, event, select

from opentrunk.config import Settings, split_host_port
from opentrunk.domain.billing import BillingPlan, parse_rate
from opentrunk.domain.hangup_codes import CallEnd
from opentrunk.domain.policy import AccountPolicy, GeoPermissions
from opentrunk.domain.routing import CarrierRoute, RoutingTable
from opentrunk.edge.views import (
    AccountView,
    CarrierView,
    CredentialView,
    InboundRoute,
    IPNetwork,
    OriginationUriView,
    TrunkView,
)
from opentrunk.store.models import (
    accounts,
    carriers,
    credentials,
    ip_acls,
    numbers,
    origination_uris,
    trunks,
)
from opentrunk.store.store import Store

log = logging.getLogger("opentrunk.edge.config")

DEFAULT_TTL: Final = 1.0
# Writes to these tables change what the edge does with the next call.
CONFIG_TABLES: Final = (
    "trunks",
    "credentials",
    "ip_acls",
    "accounts",
    "numbers",
    "carriers",
    "origination_uris",
)
_WRITE_VERBS: Final = ("INSERT", "UPDATE", "DELETE")

K = TypeVar("K")
V = TypeVar("V")


class Missing(enum.Enum):
    """Not in a cache (a cached None means "no such row")."""

    MISSING = "missing"


MISSING: Final = Missing.MISSING


@dataclass
class _Entry(Generic[V]):
    value: V
    expires: float


class _TtlCache(Generic[K, V]):
    """A per-key TTL cache whose misses are loaded once, however many callers wait."""

    def __init__(self, ttl: float, clock: Callable[[], float]) -> None:
        self.ttl = ttl
        self._clock = clock
        self._entries: dict[K, _Entry[V]] = {}
        self._loading: dict[K, asyncio.Future[V]] = {}
        self.generation = 0

    def clear(self) -> None:
        self._entries.clear()
        # Loads in flight may have read the old rows: their results must not be stored.
        self.generation += 1

    def peek(self, key: K) -> V | Missing:
        """The fresh cached value, or MISSING (absent or expired: `get` loads it)."""
        entry = self._entries.get(key)
        if entry is not None and entry.expires > self._clock():
            return entry.value
        return MISSING

    async def get(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        entry = self._entries.get(key)
        now = self._clock()
        if entry is not None and entry.expires > now:
            return entry.value
        pending = self._loading.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        generation = self.generation
        try:
            try:
                value = await load()
            except Exception as exc:
                if entry is None:
                    raise
                log.warning(
                    "config reload failed, serving the previous value",
                    extra={"fields": {"key": str(key), "error": type(exc).__name__}},
                )
                value = entry.value
            if generation == self.generation:
                self._entries[key] = _Entry(value, self._clock() + self.ttl)
            future.set_result(value)
            return value
        except BaseException as exc:
            future.set_exception(exc)
            # Nobody may be waiting on it; mark the exception retrieved.
            future.exception()
            raise
        finally:
            self._loading.pop(key, None)


@dataclass(frozen=True)
class CarrierTable:
    """The carriers and the routing table built from them, as of one load."""

    by_id: dict[str, CarrierView]
    routing: RoutingTable

    @classmethod
    def of(cls, views: Iterable[CarrierView]) -> CarrierTable:
        by_id = {view.carrier_id: view for view in views}
        routes = [
            CarrierRoute(v.carrier_id, v.prefix, v.priority, v.weight) for v in by_id.values()
        ]
        return cls(by_id, RoutingTable(routes))

    def plan(
        self, destination_e164: str, rng: random.Random | None = None
    ) -> list[CarrierView] | CallEnd:
        """The carriers to try in order (longest prefix, priority, weight), or the 4090
        refusal when no carrier takes the destination."""
        planned = self.routing.plan_route(destination_e164, rng)
        if isinstance(planned, CallEnd):
            return planned
        return [self.by_id[route.carrier_id] for route in planned]

    def for_source(self, source: str) -> CarrierView | None:
        """The carrier that lists `source` among its inbound sources (the first listed
        wins when ranges overlap), or None: inbound calls are only taken from them."""
        for view in self.by_id.values():
            if view.sends_from(source):
                return view
        return None

    def __len__(self) -> int:
        return len(self.by_id)


# ---- loading (worker thread) ------------------------------------------------------------


def parse_acl(raw: str | None) -> tuple[IPNetwork, ...]:
    """The IP ACL's JSON list of addresses/CIDRs as networks; bad entries are skipped
    (the API validates them; a hand-edited row must not stop the edge)."""
    if not raw:
        return ()
    try:
        entries = json.loads(raw)
    except ValueError:
        log.error("ip acl entries are not JSON; ignoring them")
        return ()
    networks: list[IPNetwork] = []
    for entry in entries if isinstance(entries, list) else ():
        try:
            networks.append(ipaddress.ip_network(str(entry).strip(), strict=False))
        except ValueError:
            log.error("ignoring an invalid ip acl entry", extra={"fields": {"entry": entry}})
    return tuple(networks)


def trunk_id_of_host(host: str, sip_domain: str) -> str | None:
    """`{trunk_id}.{sip_domain}` -> trunk_id (case-insensitive, a trailing dot allowed)."""
    name = host.strip().rstrip(".").lower()
    suffix = "." + sip_domain.strip().rstrip(".").lower()
    if not name.endswith(suffix):
        return None
    trunk_id = name[: -len(suffix)]
    if not trunk_id or "." in trunk_id:
        return None
    return trunk_id


def load_trunk(conn: Connection, trunk_id: str, sip_domain: str) -> TrunkView | None:
    row = conn.execute(
        select(
            trunks.c.trunk_id,
            trunks.c.account_id,
            trunks.c.trunk_status,
            trunks.c.trunk_direction,
            trunks.c.secure,
            accounts.c.auth_id,
            ip_acls.c.ip_addresses,
            credentials.c.username,
            credentials.c.realm,
            credentials.c.ha1_md5,
            credentials.c.ha1_sha256,
        )
        .select_from(
            trunks.join(accounts, accounts.c.id == trunks.c.account_id)
            .outerjoin(ip_acls, ip_acls.c.ipacl_uuid == trunks.c.ipacl_uuid)
            .outerjoin(credentials, credentials.c.credential_uuid == trunks.c.credential_uuid)
        )
        .where(trunks.c.trunk_id == trunk_id)
    ).first()
    if row is None:
        return None
    credential = None
    if row.username is not None:
        credential = CredentialView(row.username, row.realm, row.ha1_md5, row.ha1_sha256)
    return TrunkView(
        trunk_id=row.trunk_id,
        account_id=row.account_id,
        auth_id=row.auth_id,
        domain=f"{row.trunk_id}.{sip_domain}",
        enabled=row.trunk_status == "enabled",
        direction=row.trunk_direction,
        secure=bool(row.secure),
        acl=parse_acl(row.ip_addresses),
        credential=credential,
    )


def _split_list(raw: str | None) -> list[str]:
    return [part.strip() for part in (raw or "").split(",") if part.strip()]


def load_account(
    conn: Connection, account_id: int, operator_barred: tuple[str, ...] = ()
) -> AccountView | None:
    row = conn.execute(select(accounts).where(accounts.c.id == account_id)).first()
    if row is None:
        return None
    owned = conn.execute(
        select(numbers.c.number).where(numbers.c.account_id == account_id)
    ).scalars()
    countries = _split_list(row.countries)
    geo = GeoPermissions.everywhere() if row.countries is None else GeoPermissions.only(countries)
    policy = AccountPolicy(
        numbers=frozenset(owned),
        caller_id_policy=bool(row.caller_id_policy),
        geo=geo,
        barred_prefixes=(*operator_barred, *_split_list(row.barred_prefixes)),
    )
    return AccountView(
        account_id=row.id,
        auth_id=row.auth_id,
        enabled=bool(row.enabled),
        cps=float(row.cps),
        max_calls=row.max_calls,
        policy=policy,
        billing=BillingPlan(increment=int(row.billing_increment or 60)),
    )


def _carrier_view(row: Any, decrypt: Callable[[str], str]) -> CarrierView:
    host, port = split_host_port(row.address, 0)
    password = None
    if row.password_enc is not None:
        password = decrypt(row.password_enc)
    try:
        rate = parse_rate(row.rate)
    except ValueError:
        rate = Decimal(0)
    return CarrierView(
        carrier_id=row.carrier_id,
        name=row.name,
        host=host,
        port=port or None,
        transport=row.transport,
        prefix=row.prefix,
        priority=row.priority,
        weight=row.weight,
        username=row.username,
        password=password,
        rate=rate,
        inbound_sources=parse_acl(row.inbound_sources),
    )


def _uri_view(
    conn: Connection, uri_uuid: str | None, decrypt: Callable[[str], str]
) -> OriginationUriView | None:
    if uri_uuid is None:
        return None
    row = conn.execute(
        select(origination_uris).where(origination_uris.c.uri_uuid == uri_uuid)
    ).first()
    if row is None:
        return None
    password = None
    if row.authentication_needed and row.password_enc is not None:
        password = decrypt(row.password_enc)
    return OriginationUriView(
        uri_uuid=row.uri_uuid,
        uri=row.uri,
        authentication_needed=bool(row.authentication_needed),
        username=row.username,
        password=password,
    )


def load_inbound_route(
    conn: Connection, number: str, sip_domain: str, decrypt: Callable[[str], str]
) -> InboundRoute | None:
    """The number (E.164 digits) with its account, trunk and URIs, or None when the
    operator has no such number."""
    row = conn.execute(
        select(
            numbers.c.number,
            numbers.c.account_id,
            accounts.c.enabled.label("account_enabled"),
            trunks.c.trunk_id,
            trunks.c.trunk_status,
            trunks.c.trunk_direction,
            trunks.c.primary_uri_uuid,
            trunks.c.fallback_uri_uuid,
        )
        .select_from(
            numbers.join(accounts, accounts.c.id == numbers.c.account_id).outerjoin(
                trunks, trunks.c.trunk_id == numbers.c.trunk_id
            )
        )
        .where(numbers.c.number == number)
    ).first()
    if row is None:
        return None
    if row.trunk_id is None:
        return InboundRoute(row.number, row.account_id, bool(row.account_enabled))
    return InboundRoute(
        number=row.number,
        account_id=row.account_id,
        account_enabled=bool(row.account_enabled),
        trunk_id=row.trunk_id,
        trunk_domain=f"{row.trunk_id}.{sip_domain}",
        trunk_enabled=row.trunk_status == "enabled",
        trunk_direction=row.trunk_direction,
        primary=_uri_view(conn, row.primary_uri_uuid, decrypt),
        fallback=_uri_view(conn, row.fallback_uri_uuid, decrypt),
    )


def load_carriers(conn: Connection, decrypt: Callable[[str], str]) -> CarrierTable:
    rows = conn.execute(select(carriers).order_by(carriers.c.created_at, carriers.c.name)).all()
    views = []
    for row in rows:
        try:
            views.append(_carrier_view(row, decrypt))
        except Exception:
            # One unusable row (undecryptable password after a key change) must not take
            # every route down; it is logged without the secret.
            log.error(
                "skipping carrier that cannot be loaded", extra={"fields": {"name": row.name}}
            )
    return CarrierTable.of(views)


# ---- in-process change notification ------------------------------------------------------

_watchers: weakref.WeakSet[EdgeConfig] = weakref.WeakSet()
_watched_engines: weakref.WeakSet[Engine] = weakref.WeakSet()


def _writes_config(statement: str) -> bool:
    head = statement.lstrip()[:6].upper()
    if head not in _WRITE_VERBS:
        return False
    lowered = statement[:200].lower()
    return any(table in lowered for table in CONFIG_TABLES)


def _after_execute(
    conn: Connection, cursor: Any, statement: str, params: Any, context: Any, many: bool
) -> None:
    if _writes_config(statement):
        conn.info["opentrunk_config_dirty"] = True


def _on_commit(conn: Connection) -> None:
    if conn.info.pop("opentrunk_config_dirty", False):
        for config in list(_watchers):
            if config.store.engine is conn.engine:
                config.invalidate()


def _on_rollback(conn: Connection) -> None:
    conn.info.pop("opentrunk_config_dirty", None)


def watch_engine(engine: Engine) -> None:
    """Invalidate every EdgeConfig on `engine` when a committed transaction wrote a
    configuration table (the API and the edge share the engine in `serve`)."""
    if engine in _watched_engines:
        return
    _watched_engines.add(engine)
    event.listen(engine, "after_cursor_execute", _after_execute)
    event.listen(engine, "commit", _on_commit)
    event.listen(engine, "rollback", _on_rollback)


def invalidate_all() -> None:
    """Drop the caches of every EdgeConfig of this process."""
    for config in list(_watchers):
        config.invalidate()


class EdgeConfig:
    """Cached views of the store for the call path; see the module docstring."""

    def __init__(
        self,
        store: Store,
        settings: Settings | None = None,
        ttl: float = DEFAULT_TTL,
        *,
        operator_barred_prefixes: tuple[str, ...] = (),
        clock: Callable[[], float] = time.monotonic,
        watch: bool = True,
    ) -> None:
        self.store = store
        self.sip_domain = settings.sip_domain if settings is not None else store.sip_domain
        self.ttl = ttl
        self.operator_barred_prefixes = operator_barred_prefixes
        self._trunks: _TtlCache[str, TrunkView | None] = _TtlCache(ttl, clock)
        self._accounts: _TtlCache[int, AccountView | None] = _TtlCache(ttl, clock)
        self._carriers: _TtlCache[str, CarrierTable] = _TtlCache(ttl, clock)
        self._inbound: _TtlCache[str, InboundRoute | None] = _TtlCache(ttl, clock)
        self.loads = 0  # database loads done (for tests and metrics)
        _watchers.add(self)
        if watch:
            watch_engine(store.engine)

    def invalidate(self) -> None:
        self._trunks.clear()
        self._accounts.clear()
        self._carriers.clear()
        self._inbound.clear()

    async def _run(self, work: Callable[[Connection], V]) -> V:
        def in_thread() -> V:
            with self.store.engine.connect() as conn:
                return work(conn)

        self.loads += 1
        return await asyncio.to_thread(in_thread)

    def cached_trunk_for_host(self, host: str) -> TrunkView | Missing | None:
        """`trunk_for_host` when the answer is cached and fresh, without waiting; MISSING
        when it would need a load."""
        trunk_id = trunk_id_of_host(host, self.sip_domain)
        if trunk_id is None:
            return None
        return self._trunks.peek(trunk_id.lower())

    def cached_account(self, account_id: int) -> AccountView | Missing | None:
        """`account` when cached and fresh, without waiting; MISSING otherwise."""
        return self._accounts.peek(account_id)

    async def trunk_for_host(self, host: str) -> TrunkView | None:
        """The trunk whose domain is `host` (the Request-URI host), or None."""
        trunk_id = trunk_id_of_host(host, self.sip_domain)
        if trunk_id is None:
            return None
        return await self.trunk(trunk_id)

    async def trunk(self, trunk_id: str) -> TrunkView | None:
        # Trunk ids are digits; the host was lowercased, so any stored form matches.
        key = trunk_id.lower()
        domain = self.sip_domain

        async def load() -> TrunkView | None:
            return await self._run(lambda conn: load_trunk(conn, key, domain))

        return await self._trunks.get(key, load)

    async def account(self, account_id: int) -> AccountView | None:
        barred = self.operator_barred_prefixes

        async def load() -> AccountView | None:
            return await self._run(lambda conn: load_account(conn, account_id, barred))

        return await self._accounts.get(account_id, load)

    async def carriers(self) -> CarrierTable:
        """Every carrier, with the routing table (`.plan(destination)`)."""
        decrypt = self.store.box.decrypt

        async def load() -> CarrierTable:
            return await self._run(lambda conn: load_carriers(conn, decrypt))

        return await self._carriers.get("all", load)

    async def inbound_route(self, number: str) -> InboundRoute | None:
        """The operator's number (E.164 digits, no "+") and where its calls go, or None."""
        domain = self.sip_domain
        decrypt = self.store.box.decrypt

        async def load() -> InboundRoute | None:
            return await self._run(lambda conn: load_inbound_route(conn, number, domain, decrypt))

        return await self._inbound.get(number, load)
