"""SipEndpoint: two endpoints on loopback driving real transactions over UDP and TCP."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
from transport_helpers import run

from opentrunk.sip.dialog import Dialog, new_tag
from opentrunk.sip.message import Message, Request, Response
from opentrunk.sip.timers import TimerConfig
from opentrunk.sip.transaction import Address
from opentrunk.transport.endpoint import IncomingRequest, SipEndpoint

FAST = TimerConfig(t1=0.02, t2=0.16, t4=0.2, trying_delay=0.05)


@asynccontextmanager
async def pair(
    transport: str, handler: Callable[[IncomingRequest], object] | None, **kwargs: object
) -> AsyncIterator[tuple[SipEndpoint, SipEndpoint]]:
    uas = SipEndpoint(handler, timers=FAST)  # type: ignore[arg-type]
    uac = SipEndpoint(timers=FAST, **kwargs)  # type: ignore[arg-type]
    try:
        await uas.listen(transport, "127.0.0.1", 0)
        await uac.listen(transport, "127.0.0.1", 0)
        yield uac, uas
    finally:
        await uac.close()
        await uas.close()


def new_request(method: str, uac: SipEndpoint, uas: SipEndpoint, transport: str) -> Request:
    target = uas.contact_uri("bob", transport)
    return Request(
        method,
        target,
        [
            ("From", f"<sip:alice@127.0.0.1>;tag={new_tag()}"),
            ("To", f"<{target}>"),
            ("Call-ID", f"{new_tag()}@127.0.0.1"),
            ("CSeq", f"1 {method}"),
            ("Contact", f"<{uac.contact_uri('alice', transport)}>"),
        ],
    )


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_options_answered(transport: str) -> None:
    async def main() -> None:
        seen: list[IncomingRequest] = []

        def handler(incoming: IncomingRequest) -> None:
            seen.append(incoming)
            incoming.respond(200, headers=[("Allow", "INVITE, ACK, BYE, CANCEL, OPTIONS")])

        async with pair(transport, handler) as (uac, uas):
            request = new_request("OPTIONS", uac, uas, transport)
            response = await uac.send_request(request, uas.local_address(transport))
            assert response.status == 200
            assert response.headers.get("Allow") is not None
            assert response.to.tag == seen[0].local_tag
            via = seen[0].request.top_via
            assert via.branch is not None and via.branch.startswith("z9hG4bK")
            assert via.rport == seen[0].source.port
            if transport == "udp":  # same socket for sending and listening
                assert seen[0].source.port == uac.local_address(transport).port

    run(main())


@pytest.mark.parametrize("use_uvloop", [False, True], ids=["asyncio", "uvloop"])
@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_invite_dialog_ack_bye(transport: str, use_uvloop: bool) -> None:
    async def main() -> None:
        acks: list[Request] = []
        dialogs: dict[str, Dialog] = {}

        async def handler(incoming: IncomingRequest) -> None:
            request = incoming.request
            if request.method == "INVITE":
                incoming.respond(180, contact=incoming.endpoint.contact_uri("bob", transport))
                await asyncio.sleep(0.01)
                dialog = Dialog.as_uas(request, incoming.local_tag)
                dialog.confirm()
                dialogs[request.call_id] = dialog
                incoming.respond(200, contact=incoming.endpoint.contact_uri("bob", transport))
            elif request.method == "ACK":
                acks.append(request)
            elif request.method == "BYE":
                dialog = dialogs[request.call_id]
                assert dialog.on_request(request)
                incoming.respond(200)

        async with pair(transport, handler) as (uac, uas):
            invite = new_request("INVITE", uac, uas, transport)
            provisional: list[int] = []
            outgoing = uac.request(
                invite,
                uas.local_address(transport),
                on_response=lambda r: provisional.append(r.status),
            )
            final = await outgoing.final
            assert final.status == 200
            assert 180 in provisional
            dialog = Dialog.as_uac(invite, final)
            assert dialog.remote_target == uas.contact_uri("bob", transport)
            uac.send_ack(dialog.create_ack(), uas.local_address(transport))
            for _ in range(100):
                if acks:
                    break
                await asyncio.sleep(0.01)
            assert len(acks) == 1
            bye = dialog.create_request("BYE")
            response = await uac.send_request(bye, uas.local_address(transport))
            assert response.status == 200
            assert dialogs[invite.call_id].state.value == "terminated"

    run(main(), uvloop=use_uvloop)


def test_lost_200_is_retransmitted_until_ack() -> None:
    async def main() -> None:
        acks: list[Request] = []
        dropped: list[int] = []

        def handler(incoming: IncomingRequest) -> None:
            if incoming.method == "INVITE":
                incoming.respond(200, contact=incoming.endpoint.contact_uri("bob"))
            elif incoming.method == "ACK":
                acks.append(incoming.request)

        def drop_first_200(message: Message, dest: Address) -> bool:
            if isinstance(message, Response) and message.status == 200 and not dropped:
                dropped.append(200)
                return True
            return False

        async with pair("udp", handler) as (uac, uas):
            uas.drop_outgoing = drop_first_200
            invite = new_request("INVITE", uac, uas, "udp")
            final = await uac.send_request(invite, uas.local_address())
            assert final.status == 200 and dropped == [200]
            dialog = Dialog.as_uac(invite, final)
            uac.send_ack(dialog.create_ack(), uas.local_address())
            await asyncio.sleep(0.3)
            assert len(acks) == 1
            # The ACK stopped the retransmissions.
            assert not uas._retransmissions

    run(main())


@pytest.mark.parametrize("use_uvloop", [False, True], ids=["asyncio", "uvloop"])
def test_unacked_200_retransmitted_with_backoff_then_given_up(use_uvloop: bool) -> None:
    async def main() -> None:
        timed_out = asyncio.Event()
        ok_seen: list[float] = []

        def handler(incoming: IncomingRequest) -> None:
            if incoming.method == "INVITE":
                incoming.on_ack_timeout = timed_out.set
                incoming.respond(200, contact=incoming.endpoint.contact_uri("bob"))

        async with pair("udp", handler) as (uac, uas):
            loop = asyncio.get_running_loop()
            invite = new_request("INVITE", uac, uas, "udp")
            outgoing = uac.request(
                invite,
                uas.local_address(),
                on_response=lambda r: ok_seen.append(loop.time()) if r.status == 200 else None,
            )
            assert (await outgoing.final).status == 200
            # No ACK is ever sent: the 2xx goes again at T1, 2*T1, ... (capped at T2)
            # until 64*T1, then the TU is told.
            await asyncio.wait_for(timed_out.wait(), 5)
            assert not uas._retransmissions
            # 64*T1 = 1.28 s with T1 = 20 ms and T2 = 160 ms: re-sent after 20, 40, 80,
            # then every 160 ms, about ten times (fewer if the loop was held up).
            assert 3 <= len(ok_seen) - 1 <= 12, ok_seen
            count = len(ok_seen)
            await asyncio.sleep(0.4)
            assert len(ok_seen) == count  # given up: nothing more is sent

    run(main(), uvloop=use_uvloop)


def test_lost_ack_is_resent_on_retransmitted_200() -> None:
    async def main() -> None:
        acks: list[Request] = []
        drops: list[str] = []

        def handler(incoming: IncomingRequest) -> None:
            if incoming.method == "INVITE":
                incoming.respond(200, contact=incoming.endpoint.contact_uri("bob"))
            elif incoming.method == "ACK":
                acks.append(incoming.request)

        def drop_first_ack(message: Message, dest: Address) -> bool:
            if isinstance(message, Request) and message.method == "ACK" and not drops:
                drops.append("ACK")
                return True
            return False

        async with pair("udp", handler) as (uac, uas):
            uac.drop_outgoing = drop_first_ack
            invite = new_request("INVITE", uac, uas, "udp")
            final = await uac.send_request(invite, uas.local_address())
            dialog = Dialog.as_uac(invite, final)
            uac.send_ack(dialog.create_ack(), uas.local_address())
            for _ in range(100):
                if acks:
                    break
                await asyncio.sleep(0.01)
            assert drops == ["ACK"] and len(acks) == 1
            assert not uas._retransmissions

    run(main())


def test_lost_invite_is_retransmitted_by_timer_a() -> None:
    async def main() -> None:
        invites: list[Request] = []
        sent: list[str] = []

        def handler(incoming: IncomingRequest) -> None:
            invites.append(incoming.request)
            incoming.respond(486)

        def drop_first_invite(message: Message, dest: Address) -> bool:
            if isinstance(message, Request) and message.method == "INVITE":
                sent.append("INVITE")
                return len(sent) == 1
            return False

        async with pair("udp", handler) as (uac, uas):
            uac.drop_outgoing = drop_first_invite
            final = await uac.send_request(
                new_request("INVITE", uac, uas, "udp"), uas.local_address()
            )
            assert final.status == 486
            assert len(sent) >= 2 and len(invites) == 1

    run(main())


def test_timeout_gives_local_408() -> None:
    async def main() -> None:
        # A peer that takes the datagrams and never answers (a closed port would send
        # back ICMP port unreachable: a transport error, tests/transport/test_udp_icmp.py).
        silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        silent.bind(("127.0.0.1", 0))
        try:
            async with pair("udp", None) as (uac, uas):
                dead = Address("udp", "127.0.0.1", silent.getsockname()[1])
                request = new_request("OPTIONS", uac, uas, "udp")
                outgoing = uac.request(request, dead)
                final = await asyncio.wait_for(outgoing.final, 5)
                assert final.status == 408 and outgoing.local_failure == "timeout"
        finally:
            silent.close()

    run(main())


def test_tcp_connect_failure_gives_local_503() -> None:
    async def main() -> None:
        async with pair("tcp", None) as (uac, uas):
            dead = uas.local_address("tcp")
            request = new_request("OPTIONS", uac, uas, "tcp")
            await uas.close()
            outgoing = uac.request(request, dead)
            final = await asyncio.wait_for(outgoing.final, 5)
            assert final.status == 503 and outgoing.local_failure == "transport"

    run(main())


def test_no_handler_answers_501() -> None:
    async def main() -> None:
        async with pair("udp", None) as (uac, uas):
            response = await uac.send_request(
                new_request("OPTIONS", uac, uas, "udp"), uas.local_address()
            )
            assert response.status == 501

    run(main())


def test_cancel_gets_487() -> None:
    async def main() -> None:
        cancelled: list[str] = []

        def handler(incoming: IncomingRequest) -> None:
            if incoming.method == "INVITE":
                incoming.on_cancel = lambda: cancelled.append(incoming.request.call_id)
                incoming.respond(180, contact=incoming.endpoint.contact_uri("bob"))

        async with pair("udp", handler) as (uac, uas):
            invite = new_request("INVITE", uac, uas, "udp")
            ringing = asyncio.Event()
            outgoing = uac.request(
                invite,
                uas.local_address(),
                on_response=lambda r: ringing.set() if r.status == 180 else None,
            )
            await asyncio.wait_for(ringing.wait(), 3)
            outgoing.cancel()
            final = await asyncio.wait_for(outgoing.final, 3)
            assert final.status == 487
            assert cancelled == [invite.call_id]

    run(main())


def test_trying_sent_for_slow_invite() -> None:
    async def main() -> None:
        async def handler(incoming: IncomingRequest) -> None:
            await asyncio.sleep(0.2)
            incoming.respond(603)

        async with pair("udp", handler) as (uac, uas):
            statuses: list[int] = []
            final = await uac.send_request(
                new_request("INVITE", uac, uas, "udp"),
                uas.local_address(),
                on_response=lambda r: statuses.append(r.status),
            )
            assert final.status == 603
            assert statuses[0] == 100

    run(main())


def test_advertised_address_in_via_and_contact() -> None:
    async def main() -> None:
        endpoint = SipEndpoint(advertised="203.0.113.9")
        try:
            udp = await endpoint.listen("udp", "127.0.0.1", 0)
            via = endpoint.via_for("udp")
            assert via.host == "203.0.113.9" and via.port == udp.local_address.port
            assert via.wants_rport and via.branch is not None
            contact = endpoint.contact_uri("alice")
            assert str(contact) == f"sip:alice@203.0.113.9:{udp.local_address.port}"
        finally:
            await endpoint.close()
        endpoint = SipEndpoint(advertised="[2001:db8::1]:5080")
        try:
            await endpoint.listen("tcp", "127.0.0.1", 0)
            assert str(endpoint.contact_uri(None, "tcp")) == "sip:[2001:db8::1]:5080;transport=tcp"
        finally:
            await endpoint.close()

    run(main())


def test_garbage_between_transactions_does_not_disturb() -> None:
    import os
    import socket

    async def main() -> None:
        def handler(incoming: IncomingRequest) -> None:
            incoming.respond(200)

        async with pair("udp", handler) as (uac, uas):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                for _ in range(50):
                    sock.sendto(os.urandom(200), ("127.0.0.1", uas.local_address().port))
            finally:
                sock.close()
            response = await uac.send_request(
                new_request("OPTIONS", uac, uas, "udp"), uas.local_address()
            )
            assert response.status == 200
            assert uas.stats.parse_errors == 50

    run(main())


def test_overdue_timers_under_uvloop() -> None:
    """When the next deadline has already passed at arming time, uvloop's call_at returns
    a plain Handle (no when()); re-arming must still work (found by bench/sip_transport.py)."""
    import time

    async def main() -> None:
        def answer(incoming: IncomingRequest) -> None:
            incoming.respond(200)

        async with pair("udp", answer) as (uac, uas):
            outgoing = uac.request(new_request("OPTIONS", uac, uas, "udp"), uas.local_address())
            time.sleep(0.05)  # block the loop: timer E (T1 = 20 ms) is now overdue
            assert uac._timer is not None
            uac._timer.cancel()
            uac._timer = None
            uac._arm()  # arms a deadline in the past
            uac._arm()  # and again, with that timer pending
            final = await outgoing.final
            assert final.status == 200
            assert uac.internal_errors == 0

    run(main(), uvloop=True)
