"""ICMP errors on UDP (RFC 3261 18.4, 8.1.3.1, 17.1.4): a request sent to a closed port
fails its client transaction with a transport error as soon as the kernel's "port
unreachable" comes back, under asyncio's loop and uvloop, and only for that destination.

The timers stay at their defaults (Timer B/F: 32 s), so a transaction that ended by
timing out could not finish within the run's bound: the only way to finish is the
ICMP error.
"""

from __future__ import annotations

import asyncio
import socket

import pytest
from transport_helpers import Collector, options, run

from opentrunk.sip.dialog import new_tag
from opentrunk.sip.message import Request
from opentrunk.sip.transaction import Address
from opentrunk.transport.endpoint import SipEndpoint
from opentrunk.transport.icmp import IcmpError
from opentrunk.transport.udp import UdpTransport

LOOPS = pytest.mark.parametrize("use_uvloop", [False, True], ids=["asyncio", "uvloop"])


def closed_port(family: int = socket.AF_INET, host: str = "127.0.0.1") -> int:
    """A UDP port nothing listens on (bound, then released)."""
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


async def received(sock: socket.socket) -> bytes:
    """One datagram from a non-blocking socket (uvloop has no sock_recvfrom)."""
    for _ in range(300):
        try:
            return sock.recv(70000)
        except BlockingIOError:
            await asyncio.sleep(0.01)
    raise TimeoutError("nothing received")


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


def invite(target: str) -> Request:
    return Request(
        "INVITE",
        f"sip:bob@{target}",
        [
            ("From", f"<sip:alice@127.0.0.1>;tag={new_tag()}"),
            ("To", f"<sip:bob@{target}>"),
            ("Call-ID", f"{new_tag()}@127.0.0.1"),
            ("CSeq", "1 INVITE"),
        ],
    )


@LOOPS
def test_port_unreachable_reported_with_its_destination(use_uvloop: bool) -> None:
    async def main() -> None:
        failures: list[tuple[Address, Exception]] = []
        udp = UdpTransport(Collector(), on_send_error=lambda d, e: failures.append((d, e)))
        await udp.start("127.0.0.1", 0)
        live = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        live.bind(("127.0.0.1", 0))
        live.setblocking(False)
        try:
            dead = Address("udp", "127.0.0.1", closed_port())
            alive = Address("udp", "127.0.0.1", live.getsockname()[1])
            udp.send(options(), alive)
            udp.send(options(), dead)
            await received(live)
            while not failures:
                await asyncio.sleep(0.01)
            assert [d for d, _ in failures] == [dead]
            assert isinstance(failures[0][1], ConnectionRefusedError)
            assert udp.stats.icmp_errors == 1 and udp.stats.send_errors == 1
            # The socket keeps working after the error (queue drained, no stale error).
            udp.send(options(), alive)
            await received(live)
            assert udp.stats.sent == 3
        finally:
            live.close()
            await udp.close()

    run(main(), uvloop=use_uvloop)


@LOOPS
def test_invite_to_closed_port_fails_with_transport_error(use_uvloop: bool) -> None:
    async def main() -> None:
        uac = SipEndpoint()
        await uac.listen("udp", "127.0.0.1", 0)
        silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        silent.bind(("127.0.0.1", 0))
        try:
            dead = Address("udp", "127.0.0.1", closed_port())
            other = Address("udp", "127.0.0.1", silent.getsockname()[1])
            failed = uac.request(invite(f"127.0.0.1:{dead.port}"), dead)
            waiting = uac.request(invite(f"127.0.0.1:{other.port}"), other)
            final = await asyncio.wait_for(failed.final, 10)
            assert final.status == 503 and failed.local_failure == "transport"
            assert failed.transaction.terminated
            # A transaction to another destination is not touched.
            assert not waiting.final.done() and not waiting.transaction.terminated
        finally:
            silent.close()
            await uac.close()

    run(main(), uvloop=use_uvloop)


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback")
@LOOPS
def test_ipv6_port_unreachable(use_uvloop: bool) -> None:
    async def main() -> None:
        uac = SipEndpoint()
        await uac.listen("udp", "::1", 0)
        try:
            dead = Address("udp", "::1", closed_port(socket.AF_INET6, "::1"))
            outgoing = uac.request(invite(f"[::1]:{dead.port}"), dead)
            final = await asyncio.wait_for(outgoing.final, 10)
            assert final.status == 503 and outgoing.local_failure == "transport"
        finally:
            await uac.close()

    run(main(), uvloop=use_uvloop)


@pytest.mark.parametrize(
    ("icmp_type", "code", "ipv6", "failed"),
    [
        (3, 3, False, True),  # port unreachable
        (3, 1, False, True),  # host unreachable
        (3, 0, False, True),  # network unreachable
        (3, 2, False, True),  # protocol unreachable
        (3, 4, False, False),  # fragmentation needed: path MTU discovery
        (12, 0, False, True),  # parameter problem
        (11, 0, False, False),  # time exceeded
        (4, 0, False, False),  # source quench
        (1, 4, True, True),  # ICMPv6 port unreachable
        (4, 0, True, True),  # ICMPv6 parameter problem
        (2, 0, True, False),  # ICMPv6 packet too big
        (3, 0, True, False),  # ICMPv6 time exceeded
    ],
)
def test_which_icmp_errors_fail_a_destination(
    icmp_type: int, code: int, ipv6: bool, failed: bool
) -> None:
    error = IcmpError("192.0.2.1", 5060, 111, icmp_type, code, ipv6)
    assert error.delivery_failed is failed
