"""Delayed-offer calls through a live `opentrunk serve` (docs/media.md "Delayed offer"):
an INVITE without SDP, the far side's 200 carrying the offer and the near side's ACK the
answer, with the media anchored by the relay in between.

sipp plays the caller and the called side (`delayed_offer_scenarios`), with SDP naming
the test's own RTP sockets: RTP is sent both ways through the relay and compared, and
the record and its Insights are read back through the API. Both directions: outbound
(PBX -> edge -> carrier) and inbound (carrier -> edge -> PBX), and a re-INVITE without
SDP mid-call, each on the embedded relay and on rtpengine. Then the ways such a call
breaks: an ACK without the answer (4580), an answer the relay cannot anchor (4430), a
200 without the offer (488, 4630), no ACK at all within 64*T1 (the far leg still gets
its ACK, then BYE); and secure trunks both ways (SDES towards the PBX, or 4430 / 4640).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from e2e import delayed_offer_scenarios as scenario
from e2e.harness import (
    Api,
    EdgeProcess,
    Sipp,
    SippRun,
    carrier_args,
    describe,
    free_port,
    pbx_args,
    sipp_binary,
    wait_udp,
)
from e2e.inbound_harness import ORIGINATION_TIMEOUTS, Inbound, inbound_client, setup_inbound
from e2e.media_peers import Pbx, SipSocket, close_all
from e2e.media_traffic import Impairment, RtcpResponder, Stream, send_stream
from e2e.test_inbound_secure_inbound import Certs, TlsPbx, certs, secure_setup
from e2e.test_media_calls import Setup, run
from media.peers import RtpPeer, sdp_crypto_key, sdp_port, srtp_session
from media.rtpengine_daemon import require_rtpengine, rtpengine_daemon
from opentrunk.edge.tls_cert import write_dev_cert
from opentrunk.sip.message import Request, Response

pytestmark = pytest.mark.sipp

__all__ = ["certs"]  # a fixture used by name

HOST = "127.0.0.1"
# The media ranges, below the kernel's ephemeral range (see test_media_calls): the
# embedded relay's, rtpengine's, and the short-T1 edge's relay.
LOW, HIGH = 25700, 25799
ENGINE_LOW, ENGINE_HIGH = 25800, 25899
SHORT_T1_LOW, SHORT_T1_HIGH = 25900, 25999
SECURE_IN_LOW, SECURE_IN_HIGH = 25650, 25699
COUNT = 100  # RTP packets each way (2 s of G.711)


def _edge(data: Path, low: int, high: int, **env: str) -> EdgeProcess:
    cert = write_dev_cert(data / "tls", [HOST])
    tls_port = free_port()
    process = EdgeProcess(
        data,
        env={
            "OPENTRUNK_RTP_TIMEOUT": "10",
            "OPENTRUNK_MEDIA_PORTS": f"{low}-{high}",
            "OPENTRUNK_SIP_TLS": f"{HOST}:{tls_port}",
            "OPENTRUNK_TLS_CERT": str(cert.cert_path),
            "OPENTRUNK_TLS_KEY": str(cert.key_path),
            **env,
        },
    )
    process.tls_port = tls_port  # type: ignore[attr-defined]
    process.cafile = str(cert.cert_path)  # type: ignore[attr-defined]
    return process


@pytest.fixture(scope="module", params=["relay", "rtpengine"])
def do_edge(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EdgeProcess]:
    """The edge on the embedded relay, and on rtpengine (the same offer/answer calls
    either way, the far side's leg offering first)."""
    sipp_binary()
    data = tmp_path_factory.mktemp(f"delayed-offer-{request.param}")
    with contextlib.ExitStack() as stack:
        env: dict[str, str] = {}
        ports = (LOW, HIGH)
        if request.param == "rtpengine":
            ng_port = stack.enter_context(
                rtpengine_daemon(
                    require_rtpengine(), ENGINE_LOW, ENGINE_HIGH, ("--config-file=none",)
                )
            )
            env = {
                "OPENTRUNK_MEDIA_BACKEND": "rtpengine",
                "OPENTRUNK_RTPENGINE_NG": f"{HOST}:{ng_port}",
            }
            ports = (ENGINE_LOW, ENGINE_HIGH)
        process = stack.enter_context(_edge(data, LOW, HIGH, **env))
        process.media_ports = ports  # type: ignore[attr-defined]
        yield process


@pytest.fixture(scope="module")
def do_api(do_edge: EdgeProcess) -> Iterator[Api]:
    # Inbound calls come from 127.0.0.1: the inbound carrier owns that source.
    with inbound_client(do_edge) as client:
        yield client


# -- helpers ----------------------------------------------------------------------------


async def relay_port(workdir: Path, name: str, timeout: float = 10.0) -> int:
    """The relay port a sipp wrote to `name` in `workdir` (once it has the SDP)."""
    path = workdir / name
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if path.exists() and path.read_text().strip():
            return int(path.read_text())
        await asyncio.sleep(0.02)
    raise AssertionError(f"sipp wrote no {name}")


async def exchange_media(
    workdir: Path,
    caller_rtp: RtpPeer,
    called_rtp: RtpPeer,
    files: tuple[str, str] = (scenario.CALLER_PORT_FILE, scenario.CALLED_PORT_FILE),
) -> tuple[int, int]:
    """Once both sides know their relay port (from sipp's `files`): RTP (and RTCP) both
    ways through the relay. Returns the relay's ports (caller's leg, called leg)."""
    caller_port = await relay_port(workdir, files[0])
    called_port = await relay_port(workdir, files[1])
    from_caller = Stream(0x1111, COUNT, Impairment())
    from_called = Stream(0x2222, COUNT, Impairment())
    caller_rtcp = RtcpResponder(caller_rtp, 0x1111)
    called_rtcp = RtcpResponder(called_rtp, 0x2222)
    caller_rtcp.start((HOST, caller_port + 1))
    called_rtcp.start((HOST, called_port + 1))
    await asyncio.gather(
        send_stream(caller_rtp, (HOST, caller_port), from_caller),
        send_stream(called_rtp, (HOST, called_port), from_called),
    )
    await asyncio.sleep(0.3)
    caller_rtcp.stop()
    called_rtcp.stop()
    return caller_port, called_port


def assert_media_crossed(
    edge: EdgeProcess, caller_rtp: RtpPeer, called_rtp: RtpPeer, ports: tuple[int, int]
) -> None:
    """Every packet reached the other side, from the relay's port of that side's leg,
    never straight from the other peer, and the relay's ports are in its range."""
    caller_port, called_port = ports
    low, high = edge.media_ports  # type: ignore[attr-defined]
    assert low <= caller_port <= high and low <= called_port <= high
    assert caller_port != called_port
    assert len(called_rtp.received.rtp) == COUNT
    assert len(caller_rtp.received.rtp) == COUNT
    assert {addr[1] for _at, _d, addr in called_rtp.received.rtp} == {called_port}
    assert {addr[1] for _at, _d, addr in caller_rtp.received.rtp} == {caller_port}
    sent = {d[12:] for _at, d in caller_rtp.sent}
    assert {d[12:] for _at, d, _a in called_rtp.received.rtp} == sent


def first_invite(run: SippRun) -> str:
    """The INVITE a sipp UAS received, head and body, as logged."""
    return "INVITE sip:" + run.messages.split("INVITE sip:", 1)[1].split("\n\n\n", 1)[0]


def without_offer(invite: str) -> bool:
    return re.search(r"^Content-Length:\s*0\s*$", invite, re.M | re.I) is not None and (
        "m=audio" not in invite
    )


def acks(run: SippRun) -> list[str]:
    """The ACKs a sipp received, as logged (start line to the next blank line pair)."""
    return ["ACK sip:" + part.split("\n\n\n", 1)[0] for part in run.messages.split("ACK sip:")[1:]]


def wait_all(*runs: Sipp, timeout: float = 30.0) -> list[SippRun]:
    try:
        return [run.wait(timeout) for run in runs]
    finally:
        for run in runs:
            run.kill()


def ok(edge: EdgeProcess, *runs: SippRun) -> None:
    for result in runs:
        assert result.returncode == 0, describe(*runs, edge=edge)


def assert_figures(view: dict[str, object]) -> None:
    """Insights as on an early-offer call: loss, jitter, round trip, score measured."""
    assert view["packet_loss"] == pytest.approx(0.0, abs=1.0), view
    assert isinstance(view["jitter"], float | int), view
    assert isinstance(view["rtt"], float | int), view
    assert view["plivo_quality_score"] is not None, view


class DelayedPbx(Pbx):
    """A hand-driven PBX whose INVITE has no SDP and which decides when (and with what)
    it ACKs the 200."""

    def ack(self, answer: bytes) -> None:
        self.sock.send(self._in_dialog("ACK", 1, answer))


def called_sipp(workdir: Path, xml: str, port: int) -> Sipp:
    run = Sipp(xml, carrier_args(timeout=20), workdir, "called", port=port).start()
    wait_udp(port)
    return run


StartSipp = Callable[[RtpPeer], Sipp]


def carry_call(
    edge: EdgeProcess,
    workdir: Path,
    start_called: StartSipp,
    start_caller: StartSipp,
    files: tuple[str, str] = (scenario.CALLER_PORT_FILE, scenario.CALLED_PORT_FILE),
    check: Callable[[tuple[int, int]], Awaitable[None]] | None = None,
) -> tuple[SippRun, SippRun]:
    """One call with RTP (and RTCP) both ways: the called side's sipp starts first, then
    the caller's, each given its own RTP peer; the media must cross the relay
    (`exchange_media` with sipp's port `files`, then `check`). Returns (caller's run,
    called side's run), both ended and successful."""
    results: list[SippRun] = []

    async def call() -> None:
        caller_rtp, called_rtp = await RtpPeer().open(), await RtpPeer().open()
        called = start_called(called_rtp)
        caller = start_caller(caller_rtp)
        try:
            ports = await exchange_media(workdir, caller_rtp, called_rtp, files)
            assert_media_crossed(edge, caller_rtp, called_rtp, ports)
            if check is not None:
                await check(ports)
        finally:
            results.extend(await asyncio.to_thread(wait_all, caller, called))
            caller_rtp.close()
            called_rtp.close()

    run(call)
    caller_run, called_run = results
    ok(edge, caller_run, called_run)
    return caller_run, called_run


# -- calls carried ----------------------------------------------------------------------


def test_outbound_delayed_offer_carries_rtp_both_ways(
    do_edge: EdgeProcess, do_api: Api, tmp_path: Path
) -> None:
    setup = Setup(do_api)
    _pbx_run, carrier_run = carry_call(
        do_edge,
        tmp_path,
        lambda rtp: called_sipp(
            tmp_path, scenario.called(scenario.peer_sdp(rtp.port, "carrier")), setup.carrier_port
        ),
        lambda rtp: Sipp(
            scenario.caller(
                scenario.pbx_invite(setup.domain, setup.account.caller),
                scenario.peer_sdp(rtp.port, "pbx"),
                hold_ms=3500,
            ),
            pbx_args(do_edge, setup.destination, timeout=20),
            tmp_path,
            "pbx",
        ).start(),
    )
    # The carrier was asked without an offer; the PBX's answer reached it in the ACK.
    assert without_offer(first_invite(carrier_run)), carrier_run.messages
    (ack,) = acks(carrier_run)
    assert "m=audio" in ack and "c=IN IP4 127.0.0.1" in ack
    record = setup.account.call_record(setup.destination)
    assert (record["hangup_cause_code"], record["hangup_source"]) == ("3010", "customer")
    assert_figures(setup.account.insights(record))


def test_inbound_delayed_offer_carries_rtp_both_ways(
    do_edge: EdgeProcess, do_api: Api, tmp_path: Path
) -> None:
    pbx_port = free_port()
    setup = setup_inbound(do_api, f"{HOST}:{pbx_port}")
    # The PBX rings with a 183 carrying its offer: the carrier must get the 183 without
    # it (an unreliable 18x cannot carry an offer to answer).
    args = [f"{HOST}:{do_edge.sip_port}", "-s", "+" + setup.number, *carrier_args(timeout=20)]
    carrier_run, pbx_run = carry_call(
        do_edge,
        tmp_path,
        lambda rtp: called_sipp(
            tmp_path,
            scenario.called(scenario.peer_sdp(rtp.port, "pbx"), early_offer=True),
            pbx_port,
        ),
        lambda rtp: Sipp(
            scenario.caller(
                scenario.carrier_invite("14155550123"),
                scenario.peer_sdp(rtp.port, "carrier"),
                hold_ms=3500,
            ),
            args,
            tmp_path,
            "carrier",
        ).start(),
    )
    assert without_offer(first_invite(pbx_run)), pbx_run.messages
    progress = carrier_run.messages.split("SIP/2.0 183", 1)[1].split("SIP/2.0 200", 1)[0]
    assert "m=audio" not in progress, carrier_run.messages
    record = setup.account.call_record(setup.number)
    assert record["call_direction"] == "inbound"
    assert (record["hangup_cause_code"], record["hangup_source"]) == ("3000", "carrier")
    assert_figures(setup.account.insights(record))


def test_reinvite_without_sdp_gets_the_answer_in_the_far_ack(
    do_edge: EdgeProcess, do_api: Api, tmp_path: Path
) -> None:
    """Mid-call, a re-INVITE without SDP (a session refresh, a CUBE re-INVITE): the
    carrier's 200 carries the offer, the PBX's ACK the answer, which the carrier's ACK
    must carry; media still flows through the same relay ports."""
    setup = Setup(do_api)

    async def same_carrier_port(ports: tuple[int, int]) -> None:
        first = await relay_port(tmp_path, scenario.CALLED_PORT_FILE)
        assert ports[1] == first  # the carrier's relay port did not move

    _pbx_run, carrier_run = carry_call(
        do_edge,
        tmp_path,
        lambda rtp: called_sipp(
            tmp_path,
            scenario.called(scenario.peer_sdp(rtp.port, "carrier"), reinvite=True),
            setup.carrier_port,
        ),
        lambda rtp: Sipp(
            scenario.caller(
                scenario.pbx_invite(setup.domain, setup.account.caller),
                scenario.peer_sdp(rtp.port, "pbx"),
                hold_ms=3500,
                reinvite=True,
            ),
            pbx_args(do_edge, setup.destination, timeout=20),
            tmp_path,
            "pbx",
        ).start(),
        files=(scenario.CALLER_REINVITE_PORT_FILE, scenario.CALLED_REINVITE_PORT_FILE),
        check=same_carrier_port,
    )
    reinvite = carrier_run.messages.split("INVITE sip:")[2]
    assert without_offer("INVITE sip:" + reinvite.split("\n\n\n", 1)[0]), reinvite
    record = setup.account.call_record(setup.destination)
    assert (record["hangup_cause_code"], record["hangup_source"]) == ("3010", "customer")


# -- calls that break -------------------------------------------------------------------


def _broken_outbound(
    edge: EdgeProcess, api: Api, workdir: Path, answer: str | None
) -> tuple[Setup, SippRun, SippRun]:
    """An outbound delayed-offer call whose PBX ACKs with `answer`: the edge must end
    it with BYE both ways, the carrier getting its ACK (a rejecting answer) first."""
    setup = Setup(api)
    carrier = called_sipp(
        workdir,
        scenario.called(scenario.peer_sdp(free_port(), "carrier"), expect_answer=False),
        setup.carrier_port,
    )
    xml = scenario.caller(
        scenario.pbx_invite(setup.domain, setup.account.caller), answer, expect_bye=True
    )
    pbx = Sipp(xml, pbx_args(edge, setup.destination, timeout=20), workdir, "pbx").start()
    carrier_run, pbx_run = wait_all(carrier, pbx)
    ok(edge, carrier_run, pbx_run)
    (ack,) = acks(carrier_run)
    # RFC 3261 13.2.2.4: the 200's offer still gets a valid answer (every stream
    # rejected) before the BYE.
    assert re.search(r"^m=audio 0 RTP/AVP", ack, re.M), ack
    return setup, carrier_run, pbx_run


def test_ack_without_the_answer_ends_the_call_4580(
    do_edge: EdgeProcess, do_api: Api, tmp_path: Path
) -> None:
    setup, _carrier, _pbx = _broken_outbound(do_edge, do_api, tmp_path, None)
    record = setup.account.call_record(setup.destination)
    assert (record["hangup_cause_code"], record["hangup_source"]) == ("4580", "zentrunk")
    assert record["hangup_cause_name"] == "invalid_sip_packet"


def test_answer_the_relay_cannot_anchor_ends_the_call_4430(
    do_edge: EdgeProcess, do_api: Api, tmp_path: Path
) -> None:
    answer = scenario.peer_sdp(free_port(), "pbx", no_connection=True)
    setup, _carrier, _pbx = _broken_outbound(do_edge, do_api, tmp_path, answer)
    record = setup.account.call_record(setup.destination)
    assert (record["hangup_cause_code"], record["hangup_source"]) == ("4430", "zentrunk")


def test_200_without_the_offer_is_488_and_the_carrier_gets_ack_and_bye(
    do_edge: EdgeProcess, do_api: Api, tmp_path: Path
) -> None:
    setup = Setup(do_api)
    carrier = called_sipp(tmp_path, scenario.called(None, expect_answer=False), setup.carrier_port)
    invite = scenario.pbx_invite(setup.domain, setup.account.caller)
    xml = scenario.caller_refused(invite, f"sip:[service]@{setup.domain}", 488)
    pbx = Sipp(xml, pbx_args(do_edge, setup.destination, timeout=20), tmp_path, "pbx").start()
    carrier_run, pbx_run = wait_all(carrier, pbx)
    ok(do_edge, carrier_run, pbx_run)
    (ack,) = acks(carrier_run)
    assert "m=audio" not in ack  # no offer in its 200, so nothing to answer
    record = setup.account.call_record(setup.destination)
    assert (record["hangup_cause_code"], record["hangup_source"]) == ("4630", "carrier")


@pytest.fixture(scope="module")
def short_t1_edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeProcess]:
    # T1 = 50 ms: 64*T1 is 3.2 s instead of 32 s.
    data = tmp_path_factory.mktemp("delayed-offer-short-t1")
    with _edge(data, SHORT_T1_LOW, SHORT_T1_HIGH, OPENTRUNK_SIP_T1="0.05") as process:
        yield process


def test_no_ack_within_64_t1_acks_the_far_leg_then_byes_both(
    short_t1_edge: EdgeProcess, tmp_path: Path
) -> None:
    with Api(short_t1_edge.http_port) as api:
        setup = Setup(api)
        results: list[SippRun] = []

        async def call() -> None:
            carrier = called_sipp(
                tmp_path,
                scenario.called(scenario.peer_sdp(free_port(), "carrier"), expect_answer=False),
                setup.carrier_port,
            )
            sock = await SipSocket.udp((HOST, short_t1_edge.sip_port))
            pbx = DelayedPbx(sock, setup.domain, setup.account.caller, setup.destination)
            try:
                final = await pbx.invite(None)
                assert final.status == 200 and b"m=audio" in final.body, final.start_line()
                # Never ACKed: after 64*T1 the edge gives up on the PBX's ACK.
                bye = await pbx.wait_request("BYE", 8)
                pbx.respond(bye, 200)
            finally:
                results.extend(await asyncio.to_thread(wait_all, carrier))
                sock.close()

        run(call)
        (carrier_run,) = results
        ok(short_t1_edge, carrier_run)
        (ack,) = acks(carrier_run)
        assert re.search(r"^m=audio 0 ", ack, re.M), ack
        record = setup.account.call_record(setup.destination)
        # As for any 2xx the PBX never ACKed: its mid-call timeout.
        assert (record["hangup_cause_code"], record["hangup_source"]) == ("5340", "customer")


# -- secure trunks ----------------------------------------------------------------------


def _secure_call(edge: EdgeProcess, api: Api, workdir: Path, srtp_answer: bool) -> Setup:
    """A delayed offer from a PBX on a secure trunk (TLS), to a plain-RTP carrier."""
    setup = Setup(api, secure=True)

    async def call() -> None:
        pbx_rtp, carrier_rtp = await RtpPeer().open(), await RtpPeer().open()
        carrier = called_sipp(
            workdir,
            scenario.called(
                scenario.peer_sdp(carrier_rtp.port, "carrier"), expect_answer=srtp_answer
            ),
            setup.carrier_port,
        )
        sock = await SipSocket.tls((HOST, edge.tls_port), edge.cafile)  # type: ignore[attr-defined]
        pbx = DelayedPbx(sock, setup.domain, setup.account.caller, setup.destination)
        try:
            final = await pbx.invite(None)
            assert final.status == 200, final.start_line()
            # The carrier offered plain RTP; the PBX is offered SRTP (SDES) by the relay.
            assert b"RTP/SAVP" in final.body and b"a=crypto:" in final.body, final.body
            pbx.ack(pbx_rtp.sdp(srtp=srtp_answer))
            if srtp_answer:
                await _srtp_towards_pbx(workdir, final.body, pbx_rtp, carrier_rtp)
                assert (await pbx.bye()).status == 200
            else:
                bye = await pbx.wait_request("BYE", 5)
                pbx.respond(bye, 200)
        finally:
            (carrier_run,) = await asyncio.to_thread(wait_all, carrier)
            sock.close()
            pbx_rtp.close()
            carrier_rtp.close()
        ok(edge, carrier_run)

    run(call)
    return setup


async def _srtp_towards_pbx(
    workdir: Path, offer: bytes, pbx_rtp: RtpPeer, carrier_rtp: RtpPeer
) -> None:
    """Plain RTP from the carrier arrives at the PBX encrypted with the relay's key, and
    the PBX's SRTP arrives at the carrier decrypted."""
    carrier_port = await relay_port(workdir, scenario.CALLED_PORT_FILE)
    pbx_port = sdp_port(offer)
    from_carrier = Stream(0x3333, 50, Impairment())
    from_pbx = Stream(0x4444, 50, Impairment())
    await asyncio.gather(
        send_stream(carrier_rtp, (HOST, carrier_port), from_carrier),
        send_stream(pbx_rtp, (HOST, pbx_port), from_pbx, protect=srtp_session(pbx_rtp.key, False)),
    )
    await asyncio.sleep(0.3)
    unprotect = srtp_session(sdp_crypto_key(offer), True)
    plain = [unprotect.unprotect(d) for _at, d, _a in pbx_rtp.received.rtp]
    assert len(plain) == 50
    assert {p[12:] for p in plain} == {d[12:] for _at, d in carrier_rtp.sent}
    assert len(carrier_rtp.received.rtp) == 50
    assert all(d[1] & 0x7F == 0 for _at, d, _a in carrier_rtp.received.rtp)  # PCMU, plain


def test_secure_trunk_delayed_offer_gets_sdes_towards_the_pbx(
    do_edge: EdgeProcess, do_api: Api, tmp_path: Path
) -> None:
    setup = _secure_call(do_edge, do_api, tmp_path, srtp_answer=True)
    record = setup.account.call_record(setup.destination)
    assert (record["hangup_cause_code"], record["hangup_source"]) == ("3010", "customer")
    assert record["srtp"] is True or record["srtp"] == "true", record


def test_secure_trunk_plain_answer_in_the_ack_ends_the_call_4430(
    do_edge: EdgeProcess, do_api: Api, tmp_path: Path
) -> None:
    setup = _secure_call(do_edge, do_api, tmp_path, srtp_answer=False)
    record = setup.account.call_record(setup.destination)
    assert (record["hangup_cause_code"], record["hangup_source"]) == ("4430", "zentrunk")


@pytest.fixture(scope="module")
def secure_in_edge(tmp_path_factory: pytest.TempPathFactory, certs: Certs) -> Iterator[EdgeProcess]:
    """An edge that trusts the PBX's certificate, for secure inbound trunks."""
    data = tmp_path_factory.mktemp("delayed-offer-secure-inbound")
    env = {**ORIGINATION_TIMEOUTS, "SSL_CERT_FILE": str(certs.trusted[0])}
    with _edge(data, SECURE_IN_LOW, SECURE_IN_HIGH, **env) as process:
        yield process


@pytest.fixture(scope="module")
def secure_in_api(secure_in_edge: EdgeProcess) -> Iterator[Api]:
    with inbound_client(secure_in_edge) as client:
        yield client


@dataclass
class SecureInbound:
    final: Response  # the carrier's final response
    invite: Request  # the INVITE the PBX got
    ack: Request  # the ACK the PBX got
    setup: Inbound


def _secure_inbound_call(
    edge: EdgeProcess, api: Api, certs: Certs, srtp_offer: bool
) -> SecureInbound:
    """A carrier's delayed offer to a number on a secure trunk: the PBX (over TLS) puts
    its offer in the 200, SRTP with a key (`srtp_offer`) or plain RTP."""
    result: list[SecureInbound] = []

    async def call() -> None:
        pbx = await TlsPbx(certs.trusted).listen()
        carrier_rtp, pbx_rtp = await RtpPeer().open(), await RtpPeer().open()
        setup = secure_setup(api, pbx)
        sock = await SipSocket.udp((HOST, edge.sip_port))
        carrier = DelayedPbx(sock, HOST, "14155550199", setup.number)
        answering = asyncio.create_task(pbx.answer(lambda _o: pbx_rtp.sdp(srtp=srtp_offer)))
        try:
            final = await carrier.invite(None)
            if final.status == 200:
                carrier.ack(carrier_rtp.sdp())
            invite = await answering
            ack = next(m for m in pbx.received if isinstance(m, Request) and m.method == "ACK")
            if final.status == 200:
                assert (await carrier.bye()).status == 200
            pbx_bye = await pbx.wait_request("BYE", 5)
            pbx.respond(pbx_bye, 200)
            result.append(SecureInbound(final, invite, ack, setup))
        finally:
            answering.cancel()
            close_all(sock, pbx, carrier_rtp, pbx_rtp)

    run(call)
    return result[0]


def test_secure_inbound_delayed_offer_pbx_offers_sdes(
    secure_in_edge: EdgeProcess, secure_in_api: Api, certs: Certs
) -> None:
    call = _secure_inbound_call(secure_in_edge, secure_in_api, certs, srtp_offer=True)
    assert call.final.status == 200, call.final.start_line()
    assert not call.invite.body  # the PBX was asked without an offer
    # The PBX's SRTP offer reaches the carrier as plain RTP; the carrier's plain answer
    # reaches the PBX as SRTP with the relay's own key.
    assert b"RTP/AVP" in call.final.body and b"a=crypto" not in call.final.body
    assert b"RTP/SAVP" in call.ack.body and b"a=crypto:" in call.ack.body, call.ack.body
    record = call.setup.account.call_record(call.setup.number)
    assert (record["hangup_cause_code"], record["hangup_source"]) == ("3000", "carrier")
    assert record["srtp"] is True and record["transport_protocol"] == "tls"


def test_secure_inbound_pbx_offering_plain_rtp_is_refused_4640(
    secure_in_edge: EdgeProcess, secure_in_api: Api, certs: Certs
) -> None:
    call = _secure_inbound_call(secure_in_edge, secure_in_api, certs, srtp_offer=False)
    assert call.final.status == 488, call.final.start_line()
    # The PBX's 200 is ACKed with an answer rejecting its offer, then sent BYE.
    assert b"m=audio 0 " in call.ack.body, call.ack.body
    record = call.setup.account.call_record(call.setup.number)
    assert (record["hangup_cause_code"], record["hangup_source"]) == ("4640", "customer")
