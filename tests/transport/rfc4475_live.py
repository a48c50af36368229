"""Feed every RFC 4475 torture message to live SipEndpoints over UDP and TCP; print JSON.

Run ONLY inside a loopback-only network namespace (tests/netns.py): the messages name
192.0.2.x and example.com, and the point is to show the server answers the packet's real
source and nothing else. Each message gets its own endpoint (several messages reuse
branches and Call-IDs, which would otherwise match one another's transactions).
A final liveness probe is not needed per message: every UDP run starts a fresh endpoint,
and the test checks separately that one endpoint survives all of them in a row.

Usage: python rfc4475_live.py DATA_DIR  -> JSON on stdout
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from opentrunk.sip.message import SipParseError, parse_message
from opentrunk.sip.uri import SipURI
from opentrunk.transport.endpoint import IncomingRequest, SipEndpoint
from opentrunk.transport.framing import FramingError, StreamFramer

QUIET = 0.3  # seconds to wait for an answer (loopback answers take milliseconds)
MORE = 0.2  # TCP: after a final response, how long to wait for more


def handler(incoming: IncomingRequest) -> None:
    request = incoming.request
    if request.method == "ACK":
        return
    # A UAS never routes on To: a Request-URI scheme it cannot serve gets 416.
    incoming.respond(200 if isinstance(request.uri, SipURI) else 416)


def status_of(data: bytes) -> tuple[int | None, str | None]:
    """Status code (and Warning) of a response. Error responses copy the request's
    broken headers (a To with an open quote...), so fall back to the status line."""
    try:
        message = parse_message(data)
    except SipParseError:
        words = data.split(b"\r\n", 1)[0].split(b" ")
        if len(words) >= 2 and words[0] == b"SIP/2.0" and words[1].isdigit():
            warning = b"\r\nWarning: 399 " in data
            return int(words[1]), "399" if warning else None
        return None, None
    status = getattr(message, "status", None)
    return status, message.headers.get("Warning")


def sent_by_port(data: bytes) -> int:
    """The port responses without rport go to: the top Via's sent-by port (or 5060)."""
    try:
        message = parse_message(data)
    except SipParseError as exc:
        message = exc.partial  # type: ignore[assignment]
    try:
        via = message.top_via if message is not None else None
    except SipParseError:
        return 5060
    if via is None:
        return 5060
    return via.port or (5061 if via.transport.upper() == "TLS" else 5060)


class Inbox(asyncio.DatagramProtocol):
    """Collects the datagrams arriving on one socket."""

    def __init__(self) -> None:
        self.items: list[bytes] = []
        self.arrived = asyncio.Event()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.items.append(data)
        self.arrived.set()


async def inbox(port: int) -> Inbox:
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_datagram_endpoint(Inbox, local_addr=("127.0.0.1", port))
    return protocol


async def over_udp(data: bytes, receivers: dict[int, Inbox]) -> dict[str, Any]:
    """Send from an ephemeral socket; listen there (rport) and on the sent-by port."""
    endpoint = SipEndpoint(handler)
    await endpoint.listen("udp", "127.0.0.1", 0)
    port = sent_by_port(data)
    if port not in receivers:
        receivers[port] = await inbox(port)
    sender = await inbox(0)
    boxes = [sender, receivers[port]]
    for box in boxes:
        box.items.clear()
        box.arrived.clear()
    try:
        assert sender.transport is not None
        sender.transport.sendto(data, ("127.0.0.1", endpoint.local_address("udp").port))
        waits = [asyncio.ensure_future(box.arrived.wait()) for box in boxes]
        _, pending = await asyncio.wait(waits, timeout=QUIET, return_when="FIRST_COMPLETED")
        for task in pending:
            task.cancel()
        await asyncio.sleep(0.01)  # anything sent together with the first answer
        stats = endpoint.stats.as_dict()
    finally:
        assert sender.transport is not None
        sender.transport.close()
        await endpoint.close()
    answers = [status_of(item) for box in boxes for item in box.items]
    return {
        "statuses": [status for status, _ in answers],
        "warnings": [warning for _, warning in answers],
        "to_sender": len(sender.items),
        "stats": stats,
    }


async def over_tcp(data: bytes, endpoint: SipEndpoint) -> dict[str, Any]:
    reader, writer = await asyncio.open_connection("127.0.0.1", endpoint.local_address("tcp").port)
    statuses: list[int | None] = []
    closed = False
    framer = StreamFramer()
    try:
        writer.write(data)
        wait = QUIET
        while True:
            try:
                chunk = await asyncio.wait_for(reader.read(65536), wait)
            except TimeoutError:
                break
            except ConnectionError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            try:
                frames = framer.feed(chunk)
            except FramingError:
                statuses.append(None)
                break
            for frame in frames:
                status, _ = status_of(frame)
                statuses.append(status)
                if status is not None and status >= 200:
                    wait = MORE
    finally:
        writer.close()
    return {"statuses": statuses, "closed": closed}


async def over_tcp_alone(data: bytes) -> dict[str, Any]:
    endpoint = SipEndpoint(handler)
    try:
        await endpoint.listen("tcp", "127.0.0.1", 0, idle_timeout=30)
        result = await over_tcp(data, endpoint)
        result["stats"] = endpoint.stats.as_dict()
    finally:
        await endpoint.close()
    return result


async def main(data_dir: Path) -> dict[str, Any]:
    paths = sorted(data_dir.glob("*.dat"))
    # TCP answers go back on the connection: every message can run at once, each with
    # its own endpoint (several messages share branches, which would match each other).
    tcp_runs = asyncio.gather(*(over_tcp_alone(p.read_bytes()) for p in paths))
    # UDP answers without rport go to the sent-by port, shared by most messages: one
    # message at a time so each answer is attributed to the right message.
    receivers: dict[int, Inbox] = {}
    udp: dict[str, Any] = {}
    try:
        for path in paths:
            udp[path.stem] = await over_udp(path.read_bytes(), receivers)
    finally:
        for receiver in receivers.values():
            if receiver.transport is not None:
                receiver.transport.close()
    tcp = await tcp_runs
    return {
        path.stem: {"udp": udp[path.stem], "tcp": tcp_result}
        for path, tcp_result in zip(paths, tcp, strict=True)
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(Path(sys.argv[1])))))
