"""On-net calls to a `secure` inbound trunk (issue 6 leftovers): a customer's outbound
call to a number on another trunk of the platform reaches that trunk's PBX the way a
carrier's call would, over TLS with an SDES SRTP offer, while the calling PBX (on a
trunk that is not secure) keeps plain RTP over UDP. A called PBX answering plain RTP
ends the call 4640; an edge without TLS refuses it 4110.

The called PBX is the secure inbound test's TLS UAS (a development certificate the edge
trusts through SSL_CERT_FILE), the calling PBX the media tests' UDP UAC; media is the
test's own RTP sockets, the SRTP side checked by decrypting what the called PBX got.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from e2e.harness import Api, EdgeProcess, free_port
from e2e.inbound_harness import Inbound, inbound_client, setup_inbound
from e2e.media_peers import Pbx, SipSocket, close_all
from e2e.test_inbound_secure_inbound import TlsPbx, tls_edge_env
from e2e.test_media_calls import HOST, run
from media.peers import RtpPeer, sdp_crypto_key, sdp_port, srtp_session
from opentrunk.edge.tls_cert import write_dev_cert
from opentrunk.media.rtp import build_rtp
from opentrunk.sip.message import Request, Response

pytestmark = pytest.mark.sipp

# Media ports of this module's edge, apart from the other secure tests' ranges.
LOW, HIGH = 27200, 27399
COUNT = 30


@pytest.fixture(scope="module")
def pbx_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    pair = write_dev_cert(tmp_path_factory.mktemp("onnet-pbx") / "pbx", [HOST])
    return pair.cert_path, pair.key_path


@pytest.fixture(scope="module")
def secure_edge(
    tmp_path_factory: pytest.TempPathFactory, pbx_cert: tuple[Path, Path]
) -> Iterator[EdgeProcess]:
    """An edge with a TLS listener, trusting the called PBX's certificate."""
    data = tmp_path_factory.mktemp("onnet-secure")
    env = tls_edge_env(data, pbx_cert[0], (LOW, HIGH))
    with EdgeProcess(data, env=env) as process:
        yield process


@pytest.fixture(scope="module")
def secure_api(secure_edge: EdgeProcess) -> Iterator[Api]:
    with inbound_client(secure_edge) as client:
        yield client


def secure_number(api: Api, pbx_port: int) -> tuple[Inbound, str]:
    """A number on a secure inbound trunk whose URI is the TLS PBX (no transport given:
    the trunk's flag alone decides TLS), and the domain of an outbound trunk of the same
    account (plain, IP-authenticated) to call it from."""
    setup = setup_inbound(api, f"{HOST}:{pbx_port}")
    setup.account.post(f"Zentrunk/Trunk/{setup.trunk_id}/", {"secure": True})
    return setup, setup.account.trunk(acl=["127.0.0.0/8"])


def records(setup: Inbound, timeout: float = 5.0) -> dict[str, dict[str, object]]:
    """Both (closed) records of the on-net call, by direction; they close on their own
    schedule after the call ends."""
    deadline = time.monotonic() + timeout
    while True:
        found = {r["call_direction"]: r for r in setup.account.call_records(setup.number)}
        if sorted(found) == ["inbound", "outbound"] or time.monotonic() > deadline:
            assert sorted(found) == ["inbound", "outbound"], found
            return found
        time.sleep(0.1)


@dataclass
class OnNetCall:
    """An on-net call placed from the calling PBX (UDP, plain RTP) to a secure number
    whose TLS PBX answers; `final` is what the calling PBX got, `invite` what the called
    PBX did."""

    called: TlsPbx
    calling: Pbx
    calling_rtp: RtpPeer
    called_rtp: RtpPeer
    final: Response
    invite: Request

    def close(self) -> None:
        close_all(self.calling_rtp, self.called_rtp, self.calling, self.called)


async def place_on_net(
    edge: EdgeProcess,
    api: Api,
    pbx_cert: tuple[Path, Path],
    holder: dict[str, Inbound],
    *,
    srtp_answer: bool,
) -> OnNetCall:
    called = await TlsPbx(pbx_cert).listen()
    setup, domain = secure_number(api, called.port)
    holder["setup"] = setup
    calling_rtp, called_rtp = await RtpPeer().open(), await RtpPeer().open()
    sock = await SipSocket.udp((HOST, edge.sip_port))
    calling = Pbx(sock, domain, setup.account.caller, setup.number)
    answering = asyncio.create_task(called.answer(lambda _o: called_rtp.sdp(srtp=srtp_answer)))
    final = await calling.call(calling_rtp.sdp())
    invite = await answering
    return OnNetCall(called, calling, calling_rtp, called_rtp, final, invite)


def test_on_net_call_to_a_secure_trunk_gets_tls_and_srtp(
    secure_edge: EdgeProcess, secure_api: Api, pbx_cert: tuple[Path, Path]
) -> None:
    holder: dict[str, Inbound] = {}

    async def scenario() -> None:
        on_net = await place_on_net(secure_edge, secure_api, pbx_cert, holder, srtp_answer=True)
        called, calling, final, invite = on_net.called, on_net.calling, on_net.final, on_net.invite
        calling_rtp, called_rtp = on_net.calling_rtp, on_net.called_rtp
        assert final.status == 200, final.start_line()
        # The called PBX: over TLS (its listener took the connection), SDES offer from
        # the relay, nothing of the calling PBX's media in it.
        assert called.connections == 1
        assert ";transport=tls" in str(invite.uri)
        offer, answer = invite.body, final.body
        assert b"RTP/SAVP" in offer and b"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" in offer
        assert str(calling_rtp.port).encode() not in offer
        # The calling PBX: plain RTP, no key.
        assert b"RTP/AVP" in answer and b"RTP/SAVP" not in answer and b"a=crypto" not in answer
        assert LOW <= sdp_port(offer) <= HIGH and LOW <= sdp_port(answer) <= HIGH
        # Calling -> called: plain in, SRTP under the relay's key out.
        plain = [build_rtp(0, 300 + i, 160 * i, 0xA1, os.urandom(160)) for i in range(COUNT)]
        for packet in plain:
            calling_rtp.send_to(packet, (HOST, sdp_port(answer)))
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.3)
        got = [data for _at, data, _addr in called_rtp.received.rtp]
        assert len(got) == COUNT and all(data not in plain for data in got)
        decrypt = srtp_session(sdp_crypto_key(offer), inbound=True)
        assert [decrypt.unprotect(data) for data in got] == plain
        # The calling PBX hangs up; the BYE reaches the called PBX over TLS.
        bye = await calling.bye()
        assert bye.status == 200
        called_bye = await called.wait_request("BYE", 5)
        called.respond(called_bye, 200)
        on_net.close()

    run(scenario)
    found = records(holder["setup"])
    inbound, outbound = found["inbound"], found["outbound"]
    assert (inbound["hangup_cause_code"], inbound["hangup_source"]) == ("3000", "carrier")
    assert inbound["transport_protocol"] == "tls"
    assert inbound["srtp"] is True and inbound["secure_trunking"] is True
    # The calling trunk is not secure: its own record says so.
    assert (outbound["hangup_cause_code"], outbound["hangup_source"]) == ("3010", "customer")
    assert outbound["transport_protocol"] == "udp"
    assert outbound["srtp"] is False and outbound["secure_trunking"] is False


def test_called_pbx_answering_plain_rtp_ends_4640(
    secure_edge: EdgeProcess, secure_api: Api, pbx_cert: tuple[Path, Path]
) -> None:
    holder: dict[str, Inbound] = {}

    async def scenario() -> None:
        on_net = await place_on_net(secure_edge, secure_api, pbx_cert, holder, srtp_answer=False)
        assert on_net.final.status == 488, on_net.final.start_line()
        # The called PBX's answered dialog is not left up.
        called_bye = await on_net.called.wait_request("BYE", 5)
        on_net.called.respond(called_bye, 200)
        on_net.close()

    run(scenario)
    found = records(holder["setup"])
    inbound = found["inbound"]
    assert (inbound["hangup_cause_code"], inbound["hangup_source"]) == ("4640", "customer")
    assert inbound["srtp"] is True and inbound["secure_trunking"] is True
    assert found["outbound"]["answer_time"] is None


def test_on_net_call_to_a_secure_trunk_without_tls_is_refused_4110(
    edge: EdgeProcess, api: Api
) -> None:
    """The session's edge has no TLS listener: the called PBX cannot be reached the only
    way its trunk allows."""
    holder: dict[str, Inbound] = {}

    async def scenario() -> None:
        setup, domain = secure_number(api, free_port())
        holder["setup"] = setup
        calling_rtp = await RtpPeer().open()
        sock = await SipSocket.udp((HOST, edge.sip_port))
        calling = Pbx(sock, domain, setup.account.caller, setup.number)
        final = await calling.call(calling_rtp.sdp())
        assert final.status >= 400, final.start_line()
        close_all(calling_rtp, calling)

    run(scenario)
    inbound = records(holder["setup"])["inbound"]
    assert inbound["hangup_cause_code"] == "4110", inbound
    assert inbound["secure_trunking"] is True
