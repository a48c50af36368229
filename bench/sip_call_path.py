"""CPU the SIP stack spends per B2BUA call, without sockets or the edge's call logic.

One `SipEndpoint` plays the edge with a minimal back-to-back user agent written only on
`opentrunk.sip` / `opentrunk.transport`; its UDP transport is replaced by one that keeps
the octets in memory, and its event loop by a simulated clock, so every timer of the
call (Timer G/H/I of the 407's transaction, the 2xx retransmission until the ACK,
compaction after 2 s, Timers L/M/J/K, the ACK table) fires as it would. The PBX and the
carrier are byte templates answering what the edge sent, like sipp. Per call:

    PBX -> INVITE (SDP)            edge -> 407 (digest challenge)      PBX -> ACK
    PBX -> INVITE (credentials)    edge -> INVITE to the carrier
    carrier -> 100, 180, 200 (SDP) edge -> 180, 200 to the PBX; ACK to the carrier
    PBX -> ACK                     (hold 1 s)
    PBX -> BYE                     edge -> 200; BYE to the carrier      carrier -> 200

Calls start at --rate calls/s of simulated time. Only the edge's work is timed
(`time.process_time` around each message fed in and each timer run; the peers'
template filling is not counted), with the garbage-collector policy of `opentrunk serve`.
Prints microseconds of CPU per call and per message the edge received or sent (best of
--runs).

    .venv/bin/python bench/sip_call_path.py --calls 3000 --runs 5
    .venv/bin/python bench/sip_call_path.py --profile      # cProfile, top functions
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import heapq
import itertools
import os
import pstats
import re
import time
from collections.abc import Callable
from typing import Any

from opentrunk.edge.gc_policy import apply_serving_policy
from opentrunk.sip.dialog import Dialog, new_tag
from opentrunk.sip.message import Request, Response
from opentrunk.sip.transaction import Address
from opentrunk.transport.endpoint import IncomingRequest, SipEndpoint
from opentrunk.transport.udp import UdpTransport

EDGE = Address("udp", "127.0.0.1", 5060)
PBX = Address("udp", "127.0.0.1", 5070)
CARRIER = Address("udp", "127.0.0.1", 5080)
SDP = (
    b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 6000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n"
)
CHALLENGE = (
    'Digest realm="pbx.example", nonce="AAAAAGV4YW1wbGVub25jZXZhbHVlMTIzNDU2Nzg5MA",'
    ' algorithm=MD5, qop="auth"'
)
CREDENTIALS = (
    'Digest username="pbx1", realm="pbx.example",'
    ' nonce="AAAAAGV4YW1wbGVub25jZXZhbHVlMTIzNDU2Nzg5MA", uri="sip:+15551230000@127.0.0.1",'
    ' response="0123456789abcdef0123456789abcdef", algorithm=MD5, cnonce="0a4f113b",'
    " qop=auth, nc=00000001"
)


class SimulatedLoop:
    """The few event-loop calls the endpoint makes, on a clock the bench advances."""

    def __init__(self, real: asyncio.AbstractEventLoop) -> None:
        self.real = real
        self.now = 0.0
        self._due: list[tuple[float, int, asyncio.TimerHandle]] = []
        self._seq = itertools.count()

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[..., object], *args: Any) -> Any:
        handle = asyncio.TimerHandle(when, callback, args, self.real)
        heapq.heappush(self._due, (when, next(self._seq), handle))
        return handle

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> Any:
        return self.call_at(self.now + delay, callback, *args)

    def call_soon(self, callback: Callable[..., object], *args: Any) -> Any:
        return self.call_at(self.now, callback, *args)

    def create_future(self) -> asyncio.Future[Any]:
        return self.real.create_future()

    def next_due(self) -> float | None:
        return self._due[0][0] if self._due else None

    def run_one(self) -> None:
        when, _, handle = heapq.heappop(self._due)
        self.now = max(self.now, when)
        if not handle.cancelled():
            handle._run()


class MemoryUdp(UdpTransport):
    """The UDP transport with its socket replaced by a list of (octets, destination)."""

    def __init__(self, endpoint: SipEndpoint) -> None:
        super().__init__(endpoint._on_message, on_send_error=endpoint._on_send_error)
        self._local = EDGE
        self.outbox: list[tuple[bytes, Address]] = []

    def _sendto(self, data: bytes, dest: Address) -> None:
        self.outbox.append((data, dest))
        self.stats.sent += 1


class Edge:
    """A minimal B2BUA: challenge, forward to the carrier, relay 180/200, bridge BYE."""

    def __init__(self, endpoint: SipEndpoint) -> None:
        self.endpoint = endpoint
        self.calls: dict[str, tuple[IncomingRequest, Request, Dialog | None]] = {}
        self.uac: dict[str, Dialog] = {}

    def __call__(self, incoming: IncomingRequest) -> None:
        request = incoming.request
        method = request.method
        if method == "INVITE":
            if request.headers.get("Proxy-Authorization") is None:
                incoming.respond(407, headers=[("Proxy-Authenticate", CHALLENGE)])
                return
            self._forward(incoming)
        elif method == "BYE":
            incoming.respond(200)
            dialog = self.uac.pop(request.call_id, None)
            if dialog is not None:
                self.endpoint.request(dialog.create_request("BYE"), CARRIER)
        elif method == "ACK":
            _ = request.to.tag  # the ACK of our 2xx; the endpoint stopped the 2xx

    def _forward(self, incoming: IncomingRequest) -> None:
        request = incoming.request
        caller, callee = request.from_, request.to
        out = Request(
            "INVITE",
            "sip:+15551230000@127.0.0.1:5080",
            [
                ("From", f"<{caller.uri}>;tag={new_tag()}"),
                ("To", f"<{callee.uri}>"),
                ("Call-ID", new_tag()),
                ("CSeq", "1 INVITE"),
                ("Contact", f"<{self.endpoint.contact_uri(None, 'udp')}>"),
                ("Content-Type", "application/sdp"),
            ],
            body=request.body,
        )
        contact = self.endpoint.contact_uri(None, "udp")
        pbx_call_id = request.call_id

        def relay(response: Response) -> None:
            status = response.status
            if status == 180:
                incoming.respond(180, contact=contact)
            elif status == 200:
                dialog = Dialog.as_uac(out, response)
                self.endpoint.send_ack(dialog.create_ack(), CARRIER)
                self.uac[pbx_call_id] = dialog
                incoming.respond(
                    200,
                    contact=contact,
                    body=response.body,
                    headers=[("Content-Type", "application/sdp")],
                )

        self.endpoint.request(out, CARRIER, on_response=relay)


_FIELD = re.compile(rb"^(Via|From|To|Call-ID|CSeq): .*$", re.MULTILINE)
_TO_TAG = re.compile(rb"^To: .*;tag=([^;\r\n]+)", re.MULTILINE)


def _answer(
    request: bytes, status: str, to_tag: str, extra: bytes = b"", body: bytes = b""
) -> bytes:
    """A peer's response: Via/From/To/Call-ID/CSeq copied from the request (sipp-like)."""
    lines = [line.rstrip(b"\r") for line in (m.group(0) for m in _FIELD.finditer(request))]
    out = [f"SIP/2.0 {status}".encode()]
    for line in lines:
        if to_tag and line.startswith(b"To: ") and b";tag=" not in line:
            line += b";tag=" + to_tag.encode()
        out.append(line)
    out.append(b"Contact: <sip:carrier@127.0.0.1:5080>" + extra)
    out.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(out) + b"\r\n\r\n" + body


def _pbx_request(
    method: str, n: int, cseq: int, branch: str, to_tag: str = "", extra: str = ""
) -> bytes:
    sdp = SDP if method == "INVITE" else b""
    to = "<sip:+15551230000@127.0.0.1>" + (f";tag={to_tag}" if to_tag else "")
    head = (
        f"{method} sip:+15551230000@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK{branch};rport\r\n"
        "Max-Forwards: 70\r\n"
        f'From: "PBX" <sip:+15559870000@127.0.0.1:5070>;tag=pbx{n}\r\n'
        f"To: {to}\r\n"
        f"Call-ID: {n}-bench@127.0.0.1\r\n"
        f"CSeq: {cseq} {method}\r\n"
        "Contact: <sip:pbx@127.0.0.1:5070>\r\n"
        "User-Agent: bench-pbx\r\n"
        f"{extra}"
        + ("Content-Type: application/sdp\r\n" if sdp else "")
        + f"Content-Length: {len(sdp)}\r\n\r\n"
    )
    return head.encode() + sdp


class Run:
    """Drives `calls` calls through one edge endpoint on the simulated clock."""

    def __init__(self, calls: int, rate: float) -> None:
        self.real = asyncio.new_event_loop()
        self.loop = SimulatedLoop(self.real)
        self.endpoint = SipEndpoint()
        self.endpoint._loop = self.loop  # type: ignore[assignment]
        self.udp = MemoryUdp(self.endpoint)
        self.endpoint.transports["udp"] = self.udp
        self.edge = Edge(self.endpoint)
        self.endpoint.handler = self.edge
        self.calls = calls
        self.rate = rate
        self.cpu = 0.0
        self.received = 0
        self.sent = 0
        self._pbx_to_tag: dict[int, str] = {}

    def feed(self, data: bytes, source: Address) -> None:
        started = time.process_time()
        self.udp.ingress.process(data, source, self.udp.reply)
        self.cpu += time.process_time() - started
        self.received += 1
        self._peers()

    def _peers(self) -> None:
        """The PBX and the carrier react to what the edge sent."""
        while self.udp.outbox:
            data, dest = self.udp.outbox.pop(0)
            self.sent += 1
            if dest == CARRIER:
                self._carrier(data)
            else:
                self._pbx(data)

    def _carrier(self, data: bytes) -> None:
        if data.startswith(b"INVITE "):
            tag = new_tag()
            self.feed(_answer(data, "100 Trying", ""), CARRIER)
            self.feed(_answer(data, "180 Ringing", tag), CARRIER)
            self.feed(
                _answer(data, "200 OK", tag, b"\r\nContent-Type: application/sdp", SDP), CARRIER
            )
        elif data.startswith(b"BYE "):
            self.feed(_answer(data, "200 OK", ""), CARRIER)

    def _pbx(self, data: bytes) -> None:
        head = data[:12]
        call = int(data.split(b"Call-ID: ", 1)[1].split(b"-", 1)[0])
        if head.startswith(b"SIP/2.0 407"):
            match = _TO_TAG.search(data)
            assert match is not None
            # The ACK of a non-2xx: the INVITE's branch and the 407's To tag (17.1.1.3).
            self.feed(_pbx_request("ACK", call, 1, f"{call}i", match.group(1).decode()), PBX)
            self.feed(
                _pbx_request(
                    "INVITE", call, 2, f"{call}b", extra=f"Proxy-Authorization: {CREDENTIALS}\r\n"
                ),
                PBX,
            )
        elif head.startswith(b"SIP/2.0 200") and b" INVITE\r\n" in data:
            match = _TO_TAG.search(data)
            assert match is not None
            tag = match.group(1).decode()
            self._pbx_to_tag[call] = tag
            self.feed(_pbx_request("ACK", call, 2, f"{call}c", to_tag=tag), PBX)
            self.loop.call_later(1.0, self._hang_up, call)

    def _hang_up(self, call: int) -> None:
        tag = self._pbx_to_tag.pop(call)
        self.feed(_pbx_request("BYE", call, 3, f"{call}d", to_tag=tag), PBX)

    def _start_call(self, call: int) -> None:
        self.feed(_pbx_request("INVITE", call, 1, f"{call}i"), PBX)

    def run(self) -> None:
        for call in range(self.calls):
            self.loop.call_at(call / self.rate, self._start_call, call)
        loop = self.loop
        while loop.next_due() is not None:
            due = loop.next_due()
            assert due is not None
            loop.now = max(loop.now, due)
            started = time.process_time()
            cpu_before = self.cpu
            loop.run_one()
            # Timer work of the endpoint itself (the peers' feeds timed themselves).
            self.cpu += time.process_time() - started - (self.cpu - cpu_before)
            self._peers()
        self.real.close()


def one_run(calls: int, rate: float) -> Run:
    gc.collect()
    run = Run(calls, rate)
    run.run()
    stats = run.endpoint.stats
    assert stats.parse_errors == 0 and stats.handler_errors == 0, stats
    assert run.endpoint.internal_errors == 0
    assert len(run.endpoint.layer) == 0, "transactions left over"
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=100.0, help="calls/s of simulated time")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="cProfile one run")
    args = parser.parse_args()
    apply_serving_policy()  # the collector's settings of `opentrunk serve`
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        one_run(args.calls, args.rate)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(35)
        if os.environ.get("OPENTRUNK_PROFILE_DUMP"):
            profiler.dump_stats(os.environ["OPENTRUNK_PROFILE_DUMP"])
        return
    best: Run | None = None
    for _ in range(args.runs):
        run = one_run(args.calls, args.rate)
        if best is None or run.cpu < best.cpu:
            best = run
    assert best is not None
    per_call = best.cpu / args.calls * 1e6
    messages = (best.received + best.sent) / args.calls
    print(
        f"SIP stack per call: {per_call:.0f} us CPU ({best.received / args.calls:.1f} messages"
        f" received, {best.sent / args.calls:.1f} sent per call: {per_call / messages:.1f} us per"
        f" message), {args.calls} calls at {args.rate:g}/s simulated, best of {args.runs}"
    )


if __name__ == "__main__":
    main()
