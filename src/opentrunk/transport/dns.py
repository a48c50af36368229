"""Locating SIP servers (RFC 3263): NAPTR, SRV and A/AAAA lookups with a TTL cache.

`SipLocator.locate(host, port=..., transport=..., secure=...)` turns the host part of a
SIP/SIPS URI into an ordered list of `ServerTarget` (transport, IP, port, and the domain
a TLS server must prove) to try in turn (RFC 3263 section 4.3: on a transport error or
timeout, the next target); `ServerTarget.address()` is what the transports send to.

The rules, in the order RFC 3263 section 4 applies them:

* a literal IP address needs no DNS: the URI's transport (default UDP; TLS for sips)
  and port (default 5060, 5061 for TLS);
* an FQDN with an explicit port: A/AAAA of the host, no SRV;
* an FQDN with a transport parameter and no port: SRV ``_sip._udp``, ``_sip._tcp`` or
  ``_sips._tcp``; without SRV records, A/AAAA of the host on the default port;
* an FQDN with neither: NAPTR (services ``SIP+D2U``, ``SIP+D2T``, ``SIPS+D2T``) whose
  replacements are SRV names; without NAPTR, SRV for each transport we support (UDP,
  TCP, TLS; only TLS for sips); without any, A/AAAA on UDP (TLS for sips).

SRV records are ordered by priority, then by the weighted random choice of RFC 2782.
Answers are cached for their TTL (capped), and "no such record" for a short negative
TTL; a lookup that failed (timeout, no reachable server) is not cached. The resolver is
dnspython's asyncio resolver unless one is injected (tests point one at a tiny DNS server
on 127.0.0.1).
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol

import dns.asyncresolver
import dns.exception
import dns.resolver

from opentrunk.sip.transaction import Address
from opentrunk.transport.base import DEFAULT_PORTS
from opentrunk.transport.tls import NamedAddress

__all__ = [
    "DEFAULT_PORTS",
    "LocateError",
    "ServerTarget",
    "SipLocator",
    "make_resolver",
    "order_srv",
]

# NAPTR service field -> our transport name (RFC 3263 section 4.1).
_NAPTR_SERVICES = {"SIP+D2U": "udp", "SIP+D2T": "tcp", "SIPS+D2T": "tls"}
_SRV_PREFIX = {"udp": "_sip._udp", "tcp": "_sip._tcp", "tls": "_sips._tcp"}


class LocateError(Exception):
    """No server could be found for a SIP URI host."""


class ServerTarget(NamedTuple):
    """One place to send a request: transport ('udp'/'tcp'/'tls'), IP address, port.

    `server_name` is the domain the URI named, which a TLS client verifies the peer's
    certificate against (RFC 5922), not the SRV target.
    """

    transport: str
    host: str
    port: int
    server_name: str

    def address(self) -> Address:
        """Where the transport sends: over TLS to a name, a `NamedAddress` carrying the
        name to verify; otherwise (an IP literal, UDP, TCP) the plain address."""
        if self.transport == "tls" and self.server_name != self.host:
            return NamedAddress(self.transport, self.host, self.port, self.server_name)
        return Address(self.transport, self.host, self.port)


class AsyncResolver(Protocol):
    """The part of `dns.asyncresolver.Resolver` we use (so tests can inject one)."""

    async def resolve(
        self, qname: str, rdtype: str = ..., *, raise_on_no_answer: bool = ...
    ) -> Any: ...


def make_resolver(
    nameservers: Sequence[str] | None = None, *, port: int = 53, lifetime: float = 3.0
) -> dns.asyncresolver.Resolver:
    """A dnspython asyncio resolver: the system configuration, or the given servers."""
    if nameservers is None:
        resolver = dns.asyncresolver.Resolver()
    else:
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = list(nameservers)
    resolver.port = port
    resolver.lifetime = lifetime
    return resolver


class _Srv(NamedTuple):
    priority: int
    weight: int
    port: int
    target: str


def order_srv(records: Sequence[_Srv], rng: random.Random) -> list[_Srv]:
    """RFC 2782 order: ascending priority; within one, weighted random without repeats."""
    out: list[_Srv] = []
    for priority in sorted({r.priority for r in records}):
        # Zero-weight records first so they keep a small chance (RFC 2782 page 4).
        group = sorted((r for r in records if r.priority == priority), key=lambda r: r.weight)
        while group:
            total = sum(r.weight for r in group)
            pick = rng.uniform(0, total) if total else 0.0
            running = 0
            chosen = len(group) - 1
            for i, record in enumerate(group):
                running += record.weight
                if running >= pick:
                    chosen = i
                    break
            out.append(group.pop(chosen))
    return out


def _ip_literal(host: str) -> str | None:
    text = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


class SipLocator:
    """Finds the servers for a SIP URI host, with a bounded TTL cache of DNS answers."""

    def __init__(
        self,
        resolver: AsyncResolver | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        use_naptr: bool = True,
        prefer_ipv6: bool = False,
        max_ttl: float = 3600.0,
        negative_ttl: float = 30.0,
        max_entries: int = 4096,
    ) -> None:
        self._resolver: AsyncResolver = resolver if resolver is not None else make_resolver()
        self._clock = clock
        self._rng = rng or random.Random()
        self.use_naptr = use_naptr
        self.prefer_ipv6 = prefer_ipv6
        self.max_ttl = max_ttl
        self.negative_ttl = negative_ttl
        self._max_entries = max_entries
        self._cache: OrderedDict[tuple[str, str], tuple[float, list[Any]]] = OrderedDict()
        self.queries_sent = 0

    async def locate(
        self,
        host: str,
        *,
        port: int | None = None,
        transport: str | None = None,
        secure: bool = False,
    ) -> list[ServerTarget]:
        """Ordered targets for `host` (from a URI with `port`, `transport=` param, sips).

        Raises `LocateError` when nothing is found, or for sips over UDP.
        """
        wanted = transport.lower() if transport else None
        if wanted is not None and wanted not in DEFAULT_PORTS:
            raise LocateError(f"unsupported transport {transport!r}")
        if secure:
            if wanted == "udp":
                raise LocateError("sips URI cannot use UDP")
            if wanted == "tcp":
                wanted = "tls"  # sips with transport=tcp means TLS over TCP (RFC 3261 26.2)
        name = host.rstrip(".").lower()
        literal = _ip_literal(name)
        if literal is not None:
            chosen = wanted or ("tls" if secure else "udp")
            return [ServerTarget(chosen, literal, port or DEFAULT_PORTS[chosen], literal)]
        if port is not None:
            chosen = wanted or ("tls" if secure else "udp")
            targets = await self._addresses(name, chosen, port, name)
        elif wanted is not None:
            targets = await self._via_srv(f"{_SRV_PREFIX[wanted]}.{name}", wanted, name)
            if not targets:
                targets = await self._addresses(name, wanted, DEFAULT_PORTS[wanted], name)
        else:
            targets = await self._without_transport(name, secure)
        if not targets:
            raise LocateError(f"no SIP server found for {host}")
        return targets

    async def _without_transport(self, name: str, secure: bool) -> list[ServerTarget]:
        supported = ("tls",) if secure else ("udp", "tcp", "tls")
        if self.use_naptr:
            naptrs = await self._lookup(name, "NAPTR")
            usable = []
            for r in naptrs:
                service = r.service.decode("ascii", "replace").upper()
                transport = _NAPTR_SERVICES.get(service)
                if (
                    transport is not None
                    and transport in supported
                    and r.flags.decode("ascii", "replace").lower() == "s"
                ):
                    usable.append((r.order, r.preference, transport, r.replacement.to_text()))
            if usable:
                targets: list[ServerTarget] = []
                for _, _, transport, replacement in sorted(usable):
                    targets += await self._via_srv(replacement.rstrip("."), transport, name)
                if targets:
                    return targets
        found = await asyncio.gather(
            *(self._via_srv(f"{_SRV_PREFIX[t]}.{name}", t, name) for t in supported)
        )
        targets = [t for group in found for t in group]
        if targets:
            return targets
        chosen = "tls" if secure else "udp"
        return await self._addresses(name, chosen, DEFAULT_PORTS[chosen], name)

    async def _via_srv(self, srv_name: str, transport: str, domain: str) -> list[ServerTarget]:
        records = [
            _Srv(r.priority, r.weight, r.port, r.target.to_text().rstrip("."))
            for r in await self._lookup(srv_name, "SRV")
        ]
        # A target of "." says the service is decidedly not available (RFC 2782).
        ordered = [r for r in order_srv(records, self._rng) if r.target not in ("", ".")]
        found = await asyncio.gather(
            *(self._addresses(r.target, transport, r.port, domain) for r in ordered)
        )
        return [t for group in found for t in group]

    async def _addresses(
        self, name: str, transport: str, port: int, domain: str
    ) -> list[ServerTarget]:
        literal = _ip_literal(name)
        if literal is not None:
            return [ServerTarget(transport, literal, port, domain)]
        v4, v6 = await asyncio.gather(self._lookup(name, "A"), self._lookup(name, "AAAA"))
        families = (v6, v4) if self.prefer_ipv6 else (v4, v6)
        return [
            ServerTarget(transport, str(r.address), port, domain)
            for family in families
            for r in family
        ]

    async def _lookup(self, name: str, rdtype: str) -> list[Any]:
        key = (name.lower(), rdtype)
        now = self._clock()
        hit = self._cache.get(key)
        if hit is not None:
            if hit[0] > now:
                self._cache.move_to_end(key)
                return hit[1]
            del self._cache[key]
        self.queries_sent += 1
        try:
            answer = await self._resolver.resolve(name, rdtype, raise_on_no_answer=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            self._store(key, [], now + self.negative_ttl)
            return []
        except (dns.exception.DNSException, OSError):
            return []  # a failure is not an answer: do not cache it
        rrset = answer.rrset
        if rrset is None:
            self._store(key, [], now + self.negative_ttl)
            return []
        records = list(rrset)
        self._store(key, records, now + min(float(rrset.ttl), self.max_ttl))
        return records

    def _store(self, key: tuple[str, str], records: list[Any], expires_at: float) -> None:
        self._cache[key] = (expires_at, records)
        self._cache.move_to_end(key)
        while len(self._cache) > self._max_entries:
            self._cache.popitem(last=False)

    def clear_cache(self) -> None:
        self._cache.clear()
