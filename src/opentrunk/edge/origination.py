"""Origination URIs as the edge uses them: from the text the customer configured (any
form the API accepts) to the address an inbound call's INVITE goes to.

Forms (API.md "Origination URI"): `192.0.2.10`, `192.0.2.10:5060`, `pbx.example.com`,
`pbx.example.com:5060`, `sip:pbx@example.com[:port]`, each with an optional
`;transport=udp|tcp|tls`. `parse_origination_uri` splits them into an
`OriginationTarget`; `locate_target` finds the address per RFC 3263 (an IP literal is
used as it is; a name with a port is looked up by A/AAAA; a name with a transport but no
port by SRV, then A/AAAA; a bare name by NAPTR, SRV, A/AAAA), keeping only targets over a
transport the edge listens on. Over TLS to a name the address is a
`transport.tls.NamedAddress`: the connection sends that name as SNI and verifies the
PBX's certificate against it (RFC 5922); an IP literal is verified as an IP address.

The user part of the `sip:user@host` form is not put in the Request-URI: the edge always
sends the called number there (issue 5, "Delivery"); the form is accepted because PBXes
are often configured by a full URI.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from opentrunk.domain.validation import InvalidParameter, check_origination_uri, parse_host_port
from opentrunk.sip.transaction import Address
from opentrunk.transport.dns import LocateError

if TYPE_CHECKING:
    from collections.abc import Container

    from opentrunk.transport.dns import SipLocator


class BadOriginationUri(ValueError):
    """The stored URI text is not one of the accepted forms (a hand-edited row)."""


@dataclass(frozen=True)
class OriginationTarget:
    """Where a URI points: host (name or IP, IPv6 without brackets), optional port and
    explicit transport, and the user of the `sip:` form."""

    host: str
    port: int | None = None
    transport: str | None = None
    user: str | None = None


def parse_origination_uri(text: str) -> OriginationTarget:
    """Split a configured origination URI; `BadOriginationUri` when it is not valid."""
    try:
        check_origination_uri(text)
    except InvalidParameter as exc:
        raise BadOriginationUri(str(exc)) from None
    rest, transport = text, None
    if ";" in rest:
        rest, param = rest.split(";", 1)
        transport = param.partition("=")[2].lower()
    user = None
    if rest.lower().startswith("sip:"):
        user, _, rest = rest[4:].rpartition("@")
    host_port = parse_host_port(rest)
    return OriginationTarget(host_port.host, host_port.port, transport, user)


async def locate_target(
    locator: SipLocator, target: OriginationTarget, transports: Container[str]
) -> Address | None:
    """The first located address over a transport in `transports`; None when the name
    does not resolve (code 4320) or only to transports the edge does not have."""
    try:
        found = await locator.locate(target.host, port=target.port, transport=target.transport)
    except LocateError:
        return None
    for server in found:
        if server.transport in transports:
            # Over TLS to a name, the address carries the name: the PBX's certificate is
            # verified against the domain the customer configured (RFC 5922), not the IP.
            return server.address()
    return None
