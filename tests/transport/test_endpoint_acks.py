"""The endpoint's table of sent 2xx ACKs (re-sent when a 2xx is retransmitted) forgets
each ACK 64*T1 after it was sent, dropping expired entries from its oldest end."""

from __future__ import annotations

import asyncio

from transport_helpers import run

from opentrunk.sip.dialog import new_tag
from opentrunk.sip.message import Request
from opentrunk.sip.timers import TimerConfig
from opentrunk.transport.endpoint import SipEndpoint

TINY = TimerConfig(t1=0.005, t2=0.04, t4=0.05)  # 64*T1 = 0.32 s


def ack(call_id: str) -> Request:
    return Request(
        "ACK",
        "sip:bob@127.0.0.1",
        [
            ("From", f"<sip:alice@127.0.0.1>;tag={new_tag()}"),
            ("To", "<sip:bob@127.0.0.1>;tag=b"),
            ("Call-ID", call_id),
            ("CSeq", "1 ACK"),
        ],
    )


def test_expired_acks_are_dropped_and_a_resent_one_moves_to_the_end() -> None:
    async def main() -> None:
        endpoint = SipEndpoint(timers=TINY)
        sink = SipEndpoint(timers=TINY)
        try:
            await endpoint.listen("udp", "127.0.0.1", 0)
            await sink.listen("udp", "127.0.0.1", 0)
            dest = sink.local_address()
            first, second = ack("first@x"), ack("second@x")
            endpoint.send_ack(first, dest)
            endpoint.send_ack(second, dest)
            assert [k[0] for k in endpoint._acks] == ["first@x", "second@x"]
            # Sending "first" again renews it: it is now the youngest entry.
            endpoint.send_ack(first, dest)
            assert [k[0] for k in endpoint._acks] == ["second@x", "first@x"]
            await asyncio.sleep(TINY.timeout + 0.05)
            third = ack("third@x")
            endpoint.send_ack(third, dest)
            assert [k[0] for k in endpoint._acks] == ["third@x"]
            # The ACK kept for re-sending still serializes as it was sent.
            assert endpoint._acks[("third@x", 1, "b")][0].to_bytes() == third.to_bytes()
        finally:
            await endpoint.close()
            await sink.close()

    run(main())
