"""UDP transport: one datagram one message, Via received/rport, bad input, sending."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest
from transport_helpers import Collector, options, recv_datagram, run

from opentrunk.sip.message import Message, Request, Response, make_response, parse_message
from opentrunk.sip.transaction import Address
from opentrunk.transport.base import Transport
from opentrunk.transport.udp import UdpTransport


def client_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    return sock


async def started(handler: Collector | None = None, **kwargs: object) -> UdpTransport:
    udp = UdpTransport(handler or Collector(), **kwargs)  # type: ignore[arg-type]
    await udp.start("127.0.0.1", 0)
    return udp


@pytest.mark.parametrize("use_uvloop", [False, True], ids=["asyncio", "uvloop"])
def test_request_gets_received_and_rport_and_real_source(use_uvloop: bool) -> None:
    async def main() -> None:
        collector = Collector()
        udp = await started(collector)
        sock = client_socket()
        try:
            port = sock.getsockname()[1]
            # sent-by names another loopback address: received= must say what we saw.
            data = options(sent_by="127.0.0.2:5999", via_params=";rport")
            sock.sendto(data, udp.local_address[1:])
            await collector.wait_for(1)
            message, source, transport = collector.items[0]
            assert isinstance(message, Request) and transport is udp
            assert source == Address("udp", "127.0.0.1", port)
            via = message.top_via
            assert via.received == "127.0.0.1"
            assert via.rport == port
            assert udp.stats.received == 1 and udp.stats.parse_errors == 0
        finally:
            sock.close()
            await udp.close()

    run(main(), uvloop=use_uvloop)


def test_no_received_when_sent_by_matches_and_no_rport_when_not_asked() -> None:
    async def main() -> None:
        collector = Collector()
        udp = await started(collector)
        sock = client_socket()
        try:
            sock.sendto(options(sent_by="127.0.0.1:5999", via_params=""), udp.local_address[1:])
            await collector.wait_for(1)
            via = collector.items[0][0].top_via
            assert via.received is None
            assert not via.wants_rport
            assert "received" not in collector.items[0][0].headers.get("Via", "")
        finally:
            sock.close()
            await udp.close()

    run(main())


def test_forged_received_is_replaced() -> None:
    async def main() -> None:
        collector = Collector()
        udp = await started(collector)
        sock = client_socket()
        try:
            data = options(sent_by="127.0.0.2:5999", via_params=";received=127.0.0.3")
            sock.sendto(data, udp.local_address[1:])
            await collector.wait_for(1)
            assert collector.items[0][0].top_via.received == "127.0.0.1"
        finally:
            sock.close()
            await udp.close()

    run(main())


def test_garbage_is_counted_and_transport_keeps_serving() -> None:
    async def main() -> None:
        collector = Collector()
        udp = await started(collector)
        sock = client_socket()
        try:
            junk = [
                os.urandom(300),
                b"\x00" * 50,
                b"INVITE",
                b"SIP/2.0 200\r\n\r\n",
                b"INVITE sip:a@b SIP/2.0\r\nVia: nonsense\r\n\r\n",
                options()[:60],
                b"\xff\xfe" * 700,
            ]
            for datagram in junk:
                sock.sendto(datagram, udp.local_address[1:])
            sock.sendto(options(branch="z9hG4bK-good"), udp.local_address[1:])
            await collector.wait_for(1)
            assert collector.items[0][0].top_via.branch == "z9hG4bK-good"
            assert udp.stats.parse_errors == len(junk) - 1  # the NUL datagram is a keep-alive
            assert udp.stats.received == len(junk)
        finally:
            sock.close()
            await udp.close()

    run(main())


def test_answerable_invalid_request_gets_400_with_warning() -> None:
    async def main() -> None:
        udp = await started()
        sock = client_socket()
        try:
            # RFC 4475 mismatch01-style: CSeq method differs from the request method.
            data = options(sent_by="127.0.0.2:5999", via_params=";rport", cseq_method="INVITE")
            sock.sendto(data, udp.local_address[1:])
            reply, addr = await recv_datagram(sock)
            response = parse_message(reply)
            assert isinstance(response, Response)
            assert response.status == 400
            warning = response.headers.get("Warning")
            assert warning is not None and warning.startswith("399 ")
            # The response went to the real source and says what it saw.
            assert addr == udp.local_address[1:]
            assert response.top_via.received == "127.0.0.1"
            assert udp.stats.error_responses == 1 and udp.stats.parse_errors == 1
        finally:
            sock.close()
            await udp.close()

    run(main())


def test_bad_version_answered_505() -> None:
    async def main() -> None:
        udp = await started()
        sock = client_socket()
        try:
            data = options().replace(b"SIP/2.0\r\n", b"SIP/7.0\r\n", 1)
            sock.sendto(data, udp.local_address[1:])
            reply, _ = await recv_datagram(sock)
            response = parse_message(reply)
            assert isinstance(response, Response) and response.status == 505
        finally:
            sock.close()
            await udp.close()

    run(main())


def test_invalid_ack_and_responses_are_not_answered() -> None:
    async def main() -> None:
        collector = Collector()
        udp = await started(collector)
        sock = client_socket()
        try:
            bad_ack = options(method="ACK", cseq_method="INVITE").replace(
                b"CSeq: 1 INVITE", b"CSeq: 99999999999 ACK"
            )
            sock.sendto(bad_ack, udp.local_address[1:])
            sock.sendto(b"SIP/2.0 99999 Bad\r\nVia: x\r\n\r\n", udp.local_address[1:])
            sock.sendto(options(branch="z9hG4bK-after"), udp.local_address[1:])
            await collector.wait_for(1)
            await asyncio.sleep(0.05)
            assert udp.stats.error_responses == 0
            assert udp.stats.dropped == 2
            sock.setblocking(False)
            try:
                sock.recvfrom(70000)
                raise AssertionError("nothing must be answered")
            except BlockingIOError:
                pass
        finally:
            sock.close()
            await udp.close()

    run(main())


def test_oversized_datagram_dropped() -> None:
    async def main() -> None:
        collector = Collector()
        udp = await started(collector, max_datagram=1000)
        sock = client_socket()
        try:
            big = options(body=b"x" * 2000)
            sock.sendto(big, udp.local_address[1:])
            sock.sendto(options(branch="z9hG4bK-small"), udp.local_address[1:])
            await collector.wait_for(1)
            assert collector.items[0][0].top_via.branch == "z9hG4bK-small"
            assert udp.stats.oversized == 1 and udp.stats.dropped == 1
        finally:
            sock.close()
            await udp.close()

    run(main())


def test_handler_exception_is_contained() -> None:
    async def main() -> None:
        calls: list[str] = []

        def handler(message: Message, source: Address, transport: Transport) -> None:
            calls.append(message.call_id)
            if len(calls) == 1:
                raise RuntimeError("bug in the TU")

        udp = UdpTransport(handler)
        await udp.start("127.0.0.1", 0)
        sock = client_socket()
        try:
            sock.sendto(options(call_id="one"), udp.local_address[1:])
            sock.sendto(options(call_id="two"), udp.local_address[1:])
            for _ in range(100):
                if len(calls) == 2:
                    break
                await asyncio.sleep(0.01)
            assert calls == ["one", "two"]
            assert udp.stats.handler_errors == 1
        finally:
            sock.close()
            await udp.close()

    run(main())


def test_send_response_per_via_without_rport_goes_to_sent_by_port() -> None:
    """The endpoint answers through transport.send; without rport the port comes from
    sent-by (RFC 3261 18.2.2), the host is still the packet's source."""
    from opentrunk.transport.via import response_address

    async def main() -> None:
        collector = Collector()
        udp = await started(collector)
        source_sock = client_socket()
        listen_sock = client_socket()
        try:
            listen_port = listen_sock.getsockname()[1]
            data = options(sent_by=f"127.0.0.2:{listen_port}", via_params="")
            source_sock.sendto(data, udp.local_address[1:])
            await collector.wait_for(1)
            request, source, _ = collector.items[0]
            assert isinstance(request, Request)
            dest = response_address(request.top_via, source)
            assert dest == Address("udp", "127.0.0.1", listen_port)
            udp.send(make_response(request, 200), dest)
            reply, _ = await recv_datagram(listen_sock)
            response = parse_message(reply)
            assert isinstance(response, Response) and response.status == 200
        finally:
            source_sock.close()
            listen_sock.close()
            await udp.close()

    run(main())


def test_send_errors_reported() -> None:
    async def main() -> None:
        failures: list[Address] = []
        udp = UdpTransport(Collector(), on_send_error=lambda dest, exc: failures.append(dest))
        await udp.start("127.0.0.1", 0)
        try:
            udp.send(options(), Address("udp", "not-an-ip.invalid", 5060))
            assert failures == [Address("udp", "not-an-ip.invalid", 5060)]
            assert udp.stats.send_errors == 1
        finally:
            await udp.close()

    run(main())


def test_advertised_address_used_for_sent_by() -> None:
    async def main() -> None:
        udp = await started(advertised=("203.0.113.7", 5060))
        try:
            assert udp.sent_by == ("203.0.113.7", 5060)
            assert udp.local_address.host == "127.0.0.1"
        finally:
            await udp.close()

    run(main())


def test_ipv6_loopback() -> None:
    async def main() -> None:
        collector = Collector()
        udp = UdpTransport(collector)
        await udp.start("::1", 0)
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        sock.bind(("::1", 0))
        sock.setblocking(False)
        try:
            sock.sendto(options(sent_by="[::1]:5999"), udp.local_address[1:])
            await collector.wait_for(1)
            message, source, _ = collector.items[0]
            assert source.host == "::1"
            # rport asked: received is added even though [::1] is the source (RFC 3581 4).
            assert message.top_via.received == "::1"
            assert message.top_via.rport == sock.getsockname()[1]
        finally:
            sock.close()
            await udp.close()

    run(main())
