"""Via handling at the transport edge: RFC 3261 section 18.2.1/18.2.2 and RFC 3581 (rport).

Incoming requests get `received=` (when the sent-by host is not the packet's source IP, and
always when rport is asked for, RFC 3581 section 4) and a filled-in `rport=` (when the
client asked for it) on their top Via. Responses go to the request's real source IP,
always: never to a name or address written in the message, and never to a `maddr` (a
multicast/foreign maddr is how a reflected-traffic attack starts). The port is the source
port when rport was requested, else the sent-by port (or the transport's default port).
"""

from __future__ import annotations

from opentrunk.sip.headers import Via
from opentrunk.sip.message import Request
from opentrunk.sip.transaction import Address
from opentrunk.transport.base import DEFAULT_PORTS, same_host


def stamp_top_via(request: Request, source: Address) -> Via | None:
    """Add received/rport to the request's top Via; return it (None if it has no Via).

    Raises SipParseError when the top Via cannot be parsed.
    """
    if request.headers.get("Via") is None:
        return None
    # The parsed Via is shared with the message's cache: change a copy, then write it back.
    via = request.top_via.copy()
    changed = False
    # RFC 3581 section 4: with rport, received is added even when it equals sent-by.
    if via.wants_rport or not same_host(via.host, source.host):
        via.params["received"] = source.host
        changed = True
    elif via.received is not None and via.received != source.host:
        # A received= forged by the sender is replaced by what we saw.
        via.params["received"] = source.host
        changed = True
    if via.wants_rport:
        for key in list(via.params):
            if key.lower() == "rport":
                del via.params[key]
        via.params["rport"] = str(source.port)
        changed = True
    if changed:
        request.set_top_via(via)
    return via


def response_address(top_via: Via | None, source: Address) -> Address:
    """Where to send responses to a request that came from `source` with `top_via`.

    The host is always the source IP. Over UDP the port is the source port when the client
    asked for rport (or when its Via is unusable), else the sent-by port or 5060. Over TCP
    and TLS this is the source itself: responses go back on the same connection.
    """
    if source.transport != "udp" or top_via is None or top_via.wants_rport:
        return source
    port = top_via.port or DEFAULT_PORTS.get(source.transport, 5060)
    return Address(source.transport, source.host, port)


def reconnect_address(top_via: Via | None, source: Address) -> Address:
    """For a stream whose connection is gone: the source IP at the sent-by port (18.2.2)."""
    port = source.port
    if top_via is not None:
        port = top_via.port or DEFAULT_PORTS.get(source.transport, 5060)
    return Address(source.transport, source.host, port)
