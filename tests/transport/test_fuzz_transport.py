"""Hypothesis feeds mutated SIP messages to a live endpoint over UDP and TCP.

Whatever arrives, the parser may only raise SipParseError (anything else is counted as
`internal_errors`), the endpoint never fails carrying out its transaction layer's actions,
and it keeps answering a well-formed request afterwards.
"""

from __future__ import annotations

import asyncio
import socket

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transport_helpers import options

from opentrunk.sip.message import Response, parse_message
from opentrunk.transport.endpoint import IncomingRequest, SipEndpoint

INVITE = (
    b"INVITE sip:bob@127.0.0.1:5080;transport=udp SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-fz1;rport\r\n"
    b"Via: SIP/2.0/TCP 127.0.0.2:5060;branch=z9hG4bK-fz0;received=127.0.0.3\r\n"
    b"Max-Forwards: 70\r\n"
    b'From: "Alice \\"A\\"" <sip:alice@127.0.0.1>;tag=9fxced76sl\r\n'
    b"To: Bob <sip:bob@127.0.0.1>\r\n"
    b"Call-ID: 3848276298220188511@127.0.0.1\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Contact: <sip:alice@127.0.0.1:5070>, <sip:alice@127.0.0.1:5071>;q=0.5\r\n"
    b"Record-Route: <sip:127.0.0.2;lr>\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 68\r\n\r\n"
    b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\n"
    b"c=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4 RTP/AVP 0\r\n"
)
SEEDS = [
    INVITE,
    options(),
    options(method="ACK", cseq_method="ACK"),
    options(method="BYE"),
    options(method="CANCEL"),
    b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-x\r\n"
    b"From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:b@127.0.0.1>;tag=2\r\nCall-ID: r\r\n"
    b"CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "dup_line", "drop_line", "cl"]))
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[at] = draw(st.integers(0, 255))
        elif kind == "cut":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(
                st.one_of(
                    st.binary(min_size=1, max_size=20),
                    st.sampled_from([b"\r\n", b"\r\n\r\n", b",", b";", b"<", b">", b'"', b"%"]),
                )
            )
        else:
            lines = bytes(data).split(b"\r\n")
            index = draw(st.integers(0, len(lines) - 1))
            if kind == "dup_line":
                lines.insert(index, lines[index])
            elif kind == "drop_line":
                del lines[index]
            else:
                lines.insert(1, b"Content-Length: " + str(draw(st.integers(-5, 99999))).encode())
            data = bytearray(b"\r\n".join(lines))
    return bytes(data)


def test_mutated_messages_only_ever_fail_to_parse() -> None:
    loop = asyncio.new_event_loop()

    def handler(incoming: IncomingRequest) -> None:
        if incoming.method != "ACK":
            incoming.respond(486 if incoming.method == "INVITE" else 200)

    endpoint = SipEndpoint(handler)

    async def start() -> None:
        await endpoint.listen("udp", "127.0.0.1", 0)
        await endpoint.listen("tcp", "127.0.0.1", 0, idle_timeout=5)

    loop.run_until_complete(start())
    udp_port = endpoint.local_address("udp").port
    tcp_port = endpoint.local_address("tcp").port
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.bind(("127.0.0.1", 0))
    sender.setblocking(False)

    async def feed(data: bytes) -> None:
        udp = endpoint.transports["udp"]
        before = udp.stats.received
        sender.sendto(data, ("127.0.0.1", udp_port))
        _, writer = await asyncio.open_connection("127.0.0.1", tcp_port)
        writer.write(data)
        await writer.drain()
        writer.close()
        for _ in range(200):  # bounded: the datagram is processed within a few turns
            if udp.stats.received > before or not data.strip(b"\r\n\x00 "):
                break
            await asyncio.sleep(0.001)
        await asyncio.sleep(0)

    @settings(
        max_examples=300,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(mutated())
    def fuzz(data: bytes) -> None:
        loop.run_until_complete(feed(data))

    try:
        fuzz()

        async def probe() -> Response:
            probe_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            probe_sock.bind(("127.0.0.1", 0))
            probe_sock.setblocking(False)
            try:
                probe_sock.sendto(
                    options(branch="z9hG4bK-probe", call_id="probe"), ("127.0.0.1", udp_port)
                )
                reply = await asyncio.wait_for(loop.sock_recv(probe_sock, 70000), 3)
            finally:
                probe_sock.close()
            response = parse_message(reply)
            assert isinstance(response, Response)
            return response

        assert loop.run_until_complete(probe()).status == 200
        stats = endpoint.stats
        assert stats.internal_errors == 0
        assert stats.handler_errors == 0
        assert endpoint.internal_errors == 0
        assert stats.parse_errors > 0  # the mutations did reach the parser
        assert stats.received > 300
    finally:
        sender.close()
        loop.run_until_complete(endpoint.close())
        loop.close()
