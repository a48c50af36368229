"""TCP transport: framing on real sockets, connection reuse, caps, idle timeout, pongs."""

from __future__ import annotations

import asyncio

import pytest
from transport_helpers import Collector, options, run

from opentrunk.sip.message import Request, Response, make_response, parse_message
from opentrunk.sip.transaction import Address
from opentrunk.transport.framing import StreamFramer
from opentrunk.transport.tcp import StreamTransport


async def started(collector: Collector | None = None, **kwargs: object) -> StreamTransport:
    tcp = StreamTransport(collector or Collector(), **kwargs)  # type: ignore[arg-type]
    await tcp.start("127.0.0.1", 0)
    return tcp


async def connect(tcp: StreamTransport) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", tcp.local_address.port)


async def read_message(reader: asyncio.StreamReader, timeout: float = 3.0) -> Response:
    framer = StreamFramer()
    while True:
        chunk = await asyncio.wait_for(reader.read(65536), timeout)
        assert chunk, "connection closed before a whole message arrived"
        frames = framer.feed(chunk)
        if frames:
            message = parse_message(frames[0])
            assert isinstance(message, Response)
            return message


async def closed_by_peer(reader: asyncio.StreamReader, timeout: float = 3.0) -> bool:
    try:
        while True:
            chunk = await asyncio.wait_for(reader.read(65536), timeout)
            if not chunk:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True


def test_partial_message_byte_by_byte() -> None:
    async def main() -> None:
        collector = Collector()
        tcp = await started(collector)
        try:
            _reader, writer = await connect(tcp)
            data = options(transport="TCP", body=b"v=0\r\n", extra="Content-Type: x/y\r\n")
            for i in range(len(data)):
                writer.write(data[i : i + 1])
                await writer.drain()
            await collector.wait_for(1)
            message, source, transport = collector.items[0]
            assert isinstance(message, Request) and message.body == b"v=0\r\n"
            assert source.transport == "tcp" and transport is tcp
            assert source.port == writer.get_extra_info("sockname")[1]
            writer.close()
        finally:
            await tcp.close()

    run(main())


@pytest.mark.parametrize("use_uvloop", [False, True], ids=["asyncio", "uvloop"])
def test_pipelined_messages_and_response_on_same_connection(use_uvloop: bool) -> None:
    async def main() -> None:
        collector = Collector()
        tcp = await started(collector)
        try:
            reader, writer = await connect(tcp)
            writer.write(
                b"".join(
                    options(transport="TCP", branch=f"z9hG4bK-p{i}", call_id=f"c{i}")
                    for i in range(3)
                )
            )
            await collector.wait_for(3)
            assert [m.call_id for m, _, _ in collector.items] == ["c0", "c1", "c2"]
            request, source, _ = collector.items[1]
            assert isinstance(request, Request)
            # A response sent to the request's source goes back on the same connection.
            tcp.send(make_response(request, 200), source)
            response = await read_message(reader)
            assert response.status == 200 and response.call_id == "c1"
            assert tcp.stats.connections_opened == 1
            writer.close()
        finally:
            await tcp.close()

    run(main(), uvloop=use_uvloop)


@pytest.mark.parametrize("use_uvloop", [False, True], ids=["asyncio", "uvloop"])
def test_request_to_peer_reuses_open_connection(use_uvloop: bool) -> None:
    async def main() -> None:
        received = Collector()
        peer = await started(received)
        ours = await started()
        try:
            dest = peer.local_address
            ours.send(options(transport="TCP", call_id="first"), dest)
            ours.send(options(transport="TCP", call_id="second"), dest)  # while connecting
            await received.wait_for(2)
            ours.send(options(transport="TCP", call_id="third"), dest)
            await received.wait_for(3)
            assert [m.call_id for m, _, _ in received.items] == ["first", "second", "third"]
            assert peer.stats.connections_opened == 1
            assert ours.stats.connections_opened == 1
            assert len({source for _, source, _ in received.items}) == 1
        finally:
            await ours.close()
            await peer.close()

    run(main(), uvloop=use_uvloop)


def test_keepalive_ping_gets_pong() -> None:
    async def main() -> None:
        collector = Collector()
        tcp = await started(collector)
        try:
            reader, writer = await connect(tcp)
            writer.write(b"\r\n\r\n")
            pong = await asyncio.wait_for(reader.read(10), 3)
            assert pong == b"\r\n"
            writer.write(options(transport="TCP"))
            await collector.wait_for(1)
            assert tcp.stats.keepalive_pings == 1
            writer.close()
        finally:
            await tcp.close()

    run(main())


def test_negative_content_length_answered_then_closed() -> None:
    async def main() -> None:
        collector = Collector()
        tcp = await started(collector)
        try:
            reader, writer = await connect(tcp)
            data = options(transport="TCP").replace(b"Content-Length: 0", b"Content-Length: -999")
            writer.write(data + options(transport="TCP", call_id="never"))
            response = await read_message(reader)
            assert response.status == 400
            assert await closed_by_peer(reader)
            assert collector.items == []
            assert tcp.stats.framing_errors == 1
            assert tcp.stats.error_responses == 1
        finally:
            await tcp.close()

    run(main())


def test_conflicting_content_length_closes_stream() -> None:
    async def main() -> None:
        tcp = await started()
        try:
            reader, writer = await connect(tcp)
            data = options(transport="TCP").replace(
                b"Content-Length: 0", b"Content-Length: 13\r\nl: 5"
            )
            writer.write(data + b"x" * 13)
            response = await read_message(reader)
            assert response.status == 400
            assert await closed_by_peer(reader)
        finally:
            await tcp.close()

    run(main())


def test_oversized_message_gets_513_and_close() -> None:
    async def main() -> None:
        tcp = await started(max_message_size=2000)
        try:
            reader, writer = await connect(tcp)
            writer.write(options(transport="TCP", body=b"x" * 5000))
            response = await read_message(reader)
            assert response.status == 513
            assert await closed_by_peer(reader)
            assert tcp.stats.oversized == 1
        finally:
            await tcp.close()

    run(main())


def test_endless_headers_closed_without_growing() -> None:
    async def main() -> None:
        tcp = await started(max_message_size=4096)
        try:
            reader, writer = await connect(tcp)
            writer.write(b"INVITE sip:a@127.0.0.1 SIP/2.0\r\n")
            try:
                for _ in range(200):
                    writer.write(b"X-Flood: " + b"a" * 200 + b"\r\n")
                    await writer.drain()
            except (ConnectionResetError, BrokenPipeError):
                pass
            assert await closed_by_peer(reader)
            assert tcp.stats.oversized == 1 and tcp.stats.framing_errors == 1
            assert not tcp.connections
        finally:
            await tcp.close()

    run(main())


def test_garbage_stream_does_not_stall_other_connections() -> None:
    async def main() -> None:
        collector = Collector()
        tcp = await started(collector)
        try:
            _, bad = await connect(tcp)
            bad.write(b"\x00\xff garbage without end of headers")
            _, bad2 = await connect(tcp)
            bad2.write(b"GARBAGE\r\n\r\n")
            _, good = await connect(tcp)
            good.write(options(transport="TCP", call_id="good"))
            await collector.wait_for(1)
            assert collector.items[0][0].call_id == "good"
            await asyncio.sleep(0.05)
            assert tcp.stats.parse_errors == 1  # GARBAGE framed, then failed to parse
            for writer in (bad, bad2, good):
                writer.close()
        finally:
            await tcp.close()

    run(main())


def test_idle_connection_closed() -> None:
    async def main() -> None:
        tcp = await started(idle_timeout=0.2)
        try:
            reader, writer = await connect(tcp)
            writer.write(options(transport="TCP"))
            await writer.drain()
            assert await closed_by_peer(reader, timeout=3)
            assert tcp.stats.idle_closed == 1
            assert not tcp.connections
        finally:
            await tcp.close()

    run(main())


def test_activity_keeps_connection_open() -> None:
    async def main() -> None:
        tcp = await started(idle_timeout=0.3)
        try:
            reader, writer = await connect(tcp)
            for _ in range(6):
                writer.write(b"\r\n\r\n")  # RFC 5626 keep-alive counts as activity
                await asyncio.wait_for(reader.read(10), 2)
                await asyncio.sleep(0.1)
            assert tcp.stats.idle_closed == 0 and len(tcp.connections) == 1
            writer.close()
        finally:
            await tcp.close()

    run(main())


def test_connection_cap() -> None:
    async def main() -> None:
        tcp = await started(max_connections=2)
        try:
            writers = []
            for _ in range(2):
                _, writer = await connect(tcp)
                writers.append(writer)
            await asyncio.sleep(0.05)
            reader, writer = await connect(tcp)
            assert await closed_by_peer(reader)
            assert tcp.stats.connections_refused == 1
            assert len(tcp.connections) == 2
            for w in [*writers, writer]:
                w.close()
        finally:
            await tcp.close()

    run(main())


def test_connect_failure_reported() -> None:
    async def main() -> None:
        failures: list[Address] = []
        tcp = await started(on_send_error=lambda dest, exc: failures.append(dest))
        # A port we just had and closed: nothing listens there.
        probe = await started()
        dead = probe.local_address
        await probe.close()
        try:
            tcp.send(options(transport="TCP"), dead)
            tcp.send(options(transport="TCP"), dead)
            for _ in range(100):
                if len(failures) == 2:
                    break
                await asyncio.sleep(0.02)
            assert failures == [dead, dead]
            assert tcp.stats.send_errors == 2
        finally:
            await tcp.close()

    run(main())


def test_peer_not_reading_is_dropped() -> None:
    async def main() -> None:
        collector = Collector()
        tcp = await started(collector, max_write_buffer=64 * 1024)
        try:
            _reader, writer = await connect(tcp)
            writer.write(options(transport="TCP"))
            await collector.wait_for(1)
            request, source, _ = collector.items[0]
            assert isinstance(request, Request)
            big = make_response(request, 200)
            big.body = b"x" * 60000
            for _ in range(200):  # the peer never reads
                tcp.send(big, source)
                if not tcp.connections:
                    break
            assert not tcp.connections
            assert tcp.stats.send_errors >= 1
            writer.close()
        finally:
            await tcp.close()

    run(main())
