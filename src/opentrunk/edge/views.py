"""Read-only snapshots of store rows that the SIP edge works from.

The edge never touches SQLAlchemy rows on the call path: `opentrunk.edge.config.EdgeConfig`
loads these frozen views in a worker thread and caches them for a short time, so a call
reads plain attributes. `CallStart` is what the edge hands `CallRecorder.open()` when a
call passes trunk identification; `CallEnd` fields are given to `CallRecorder.close()`.

Secrets: `CarrierView.password` is the decrypted carrier password (the edge needs it to
answer a carrier's digest challenge); it is excluded from `repr` so it never reaches a
log line. `CredentialView` holds only HA1 hashes, also hidden from `repr`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from opentrunk.domain.billing import BillingPlan
from opentrunk.domain.hangup_codes import CallEnd
from opentrunk.domain.policy import AccountPolicy

IPNetwork = IPv4Network | IPv6Network
IPAddress = IPv4Address | IPv6Address


@dataclass(frozen=True)
class CredentialView:
    """A trunk's digest credential: the username, the realm the HA1s were made for, and
    the HA1 hashes (MD5 and SHA-256, RFC 8760). The password itself is never stored."""

    username: str
    realm: str
    ha1_md5: str = field(repr=False)
    ha1_sha256: str = field(repr=False)


@dataclass(frozen=True)
class TrunkView:
    """A trunk as the edge needs it. `domain` is `{trunk_id}.{sip domain}`; `acl` holds
    the attached IP ACL's entries as networks (a single address is a /32 or /128)."""

    trunk_id: str
    account_id: int
    auth_id: str
    domain: str
    enabled: bool
    direction: str  # "outbound" | "inbound" | "both" (as the API stores it)
    secure: bool
    acl: tuple[IPNetwork, ...] = ()
    credential: CredentialView | None = None

    def acl_allows(self, source: IPAddress | str) -> bool:
        """True when the packet's source address is in one of the ACL's entries."""
        from ipaddress import ip_address

        address = ip_address(source) if isinstance(source, str) else source
        # An IPv4-mapped IPv6 source (dual-stack socket) is compared as the IPv4 address.
        if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address.version == net.version and address in net for net in self.acl)

    @property
    def allows_outbound(self) -> bool:
        return self.direction in ("outbound", "both")


@dataclass(frozen=True)
class AccountView:
    """The calling account's switches and limits. `cps` is calls per second (also used
    as the per-trunk CPS, see docs/edge.md); `max_calls` None means unlimited."""

    account_id: int
    auth_id: str
    enabled: bool
    cps: float
    max_calls: int | None
    policy: AccountPolicy
    billing: BillingPlan


@dataclass(frozen=True)
class CarrierView:
    """One carrier route with what is needed to reach it and to bill the call."""

    carrier_id: str
    name: str
    host: str
    port: int | None  # None: resolve per RFC 3263 (SRV) when host is a name
    transport: str  # "udp" | "tcp" | "tls"
    prefix: str
    priority: int
    weight: int
    username: str | None
    password: str | None = field(repr=False)
    rate: Decimal  # per minute
    # Where the carrier sends inbound calls from (edge/inbound.py recognises it by them).
    inbound_sources: tuple[IPNetwork, ...] = ()

    def sends_from(self, source: IPAddress | str) -> bool:
        """True when `source` is one of the carrier's inbound source addresses."""
        return _in_networks(source, self.inbound_sources)


@dataclass(frozen=True)
class OriginationUriView:
    """An origination URI as configured (`uri` in one of the API's forms), with its
    decrypted password for answering the PBX's digest challenge (hidden from `repr`)."""

    uri_uuid: str
    uri: str
    authentication_needed: bool
    username: str | None
    password: str | None = field(repr=False)


@dataclass(frozen=True)
class InboundRoute:
    """A number of the operator's inventory and where its inbound calls go: the owning
    account, the attached trunk (None when detached) and that trunk's URIs."""

    number: str  # E.164 digits without "+"
    account_id: int
    account_enabled: bool
    trunk_id: str | None = None
    trunk_domain: str = ""
    trunk_enabled: bool = False
    trunk_direction: str = ""
    primary: OriginationUriView | None = None
    fallback: OriginationUriView | None = None

    @property
    def deliverable(self) -> bool:
        """On an enabled inbound trunk of an enabled account (else 404, 4080)."""
        return (
            self.trunk_id is not None
            and self.trunk_enabled
            and self.account_enabled
            and self.trunk_direction in ("inbound", "both")
        )

    @property
    def uris(self) -> tuple[OriginationUriView, ...]:
        """The URIs to try, primary first."""
        return tuple(uri for uri in (self.primary, self.fallback) if uri is not None)


def _in_networks(source: IPAddress | str, networks: tuple[IPNetwork, ...]) -> bool:
    from ipaddress import ip_address

    try:
        address = ip_address(source) if isinstance(source, str) else source
    except ValueError:
        return False
    # An IPv4-mapped IPv6 source (dual-stack socket) is compared as the IPv4 address.
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address.version == net.version and address in net for net in networks)


@dataclass(frozen=True)
class CallStart:
    """What is known about a call when it passes trunk identification; the fields not
    known yet (answer, end, billing) are filled by `CallRecorder.close()`.
    `from_number` / `to_number` are digits without "+" (the API's form)."""

    call_uuid: str
    account_id: int
    trunk_id: str | None
    from_number: str
    to_number: str
    initiation_time: datetime  # UTC, timezone-aware
    call_direction: str = "outbound"
    trunk_domain: str = ""
    from_country: str | None = None
    to_country: str | None = None
    transport_protocol: str = "udp"
    secure_trunking: bool = False
    srtp: bool = False


@dataclass(frozen=True)
class CallFinish:
    """How a call ended, given to `CallRecorder.close(call_uuid, finish)`.

    `end` is the `opentrunk.domain.hangup_codes.CallEnd` the edge got from the rules
    (code, name and source go to the record as they are). The billing fields are
    computed by the recorder from `answer_time`, `end_time`, `rate` (per minute, the
    carrier's) and `billing` (the account's plan). The optional number/country fields
    replace the opened record's when set (e.g. the E.164 normal form, known after
    screening)."""

    end: CallEnd
    end_time: datetime  # UTC, timezone-aware
    answer_time: datetime | None = None
    rate: Decimal = Decimal(0)
    billing: BillingPlan = field(default_factory=BillingPlan)
    from_number: str | None = None
    to_number: str | None = None
    from_country: str | None = None
    to_country: str | None = None
    post_dial_delay: float | None = None  # ms from the INVITE to the first 18x/200
    # Insights' "from"/"to" carrier: for an inbound call, the carrier that sent it and
    # the origination URI that answered (or was tried last).
    from_carrier: str | None = None
    to_carrier: str | None = None
    # Media figures from the media backend at the end of the call (Insights): ms, ms,
    # percent, MOS. None where nothing was measured (no RTP, no RTCP): never invented.
    rtt: float | None = None
    jitter: float | None = None
    packet_loss: float | None = None
    quality_score: float | None = None
