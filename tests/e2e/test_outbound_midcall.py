"""An answered outbound call, mid-call, end to end (sipp PBX -> live edge -> sipp carrier):

- re-INVITE and UPDATE with SDP are relayed in both directions (PBX -> carrier, then
  carrier -> PBX), each offer reaching the other side and each answer coming back;
- the edge re-sends its own 200 to a PBX that has not ACKed yet, and the call goes on
  once the ACK comes (a carrier's repeated 200 is in test_outbound_retransmissions.py);
- after the PBX's BYE, a second BYE gets 481 and the call has exactly one record, 3010
  (customer) (a retransmitted BYE is in test_outbound_retransmissions.py);
- neither side sees the other's Call-ID or SIP address.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from e2e import scenarios
from e2e.harness import Api, EdgeProcess
from e2e.sipp_xml import OK_TO_REQUEST, PROVISIONALS, recv_capturing, request, response, wrap
from e2e.test_outbound_calls import assert_record, call, carriers, ok

pytestmark = pytest.mark.sipp


def sdp(origin: str, session: str, version: int) -> str:
    return (
        f"v=0\no={origin} 53655765 {2353687637 + version} IN IP[local_ip_type] [local_ip]\n"
        f"s={session}\nc=IN IP[media_ip_type] [media_ip]\nt=0 0\n"
        "m=audio [media_port] RTP/AVP 0 8 101\na=rtpmap:0 PCMU/8000\na=rtpmap:8 PCMA/8000\n"
        "a=rtpmap:101 telephone-event/8000\n"
    )


def _request(
    method: str, cseq: int, from_: str, to: str, body: str | None = None, retrans: bool = True
) -> str:
    return request(
        method,
        cseq,
        from_=f"From: {from_}",
        to=f"To: {to}",
        contact_user="me",
        sdp=body,
        retrans=retrans and method != "ACK",
    )


def _ok(body: str, contact: str) -> str:
    return response("200 OK", tag=None, contact_user=contact, sdp=body)


def pbx_midcall(domain: str, caller: str) -> str:
    me = f"<sip:+{caller}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]"
    them = "[$remote_to]"
    xml = scenarios.pbx_invite(domain, caller) + PROVISIONALS
    xml += recv_capturing('response="200" rrs="true"', remote_to="To:")
    xml += '<pause milliseconds="1300"/>\n'  # no ACK yet: the edge must retransmit its 200
    xml += _request("ACK", 1, me, them)
    xml += '<pause milliseconds="200"/>\n'
    xml += _request("INVITE", 2, me, them, sdp("pbx", "pbx-reinvite", 1))
    xml += '<recv response="100" optional="true"/>\n<recv response="200"/>\n'
    xml += _request("ACK", 2, me, them)
    xml += _request("UPDATE", 3, me, them, sdp("pbx", "pbx-update", 2))
    xml += '<recv response="200"/>\n'
    # The carrier's turn: its re-INVITE and UPDATE arrive through the edge.
    xml += '<recv request="INVITE" timeout="5000"/>\n'
    xml += _ok(sdp("pbx", "pbx-answers-reinvite", 3), "pbx")
    xml += '<recv request="ACK"/>\n<recv request="UPDATE"/>\n'
    xml += _ok(sdp("pbx", "pbx-answers-update", 4), "pbx")
    xml += '<pause milliseconds="300"/>\n'
    xml += _request("BYE", 4, me, them) + '<recv response="200"/>\n'
    # A new BYE for the ended call: 481.
    xml += _request("BYE", 5, me, them, retrans=False)
    xml += '<recv response="481"/>\n<pause milliseconds="800"/>\n'
    return wrap("pbx mid-call", xml)


def carrier_midcall() -> str:
    me = "[$remote_to];tag=[pid]SIPpTag01[call_number]"
    them = "[$remote_from]"
    xml = recv_capturing('request="INVITE" rrs="true"', remote_from="From:", remote_to="To:")
    xml += response("180 Ringing")
    xml += response("200 OK", sdp=sdp("carrier", "carrier-answer", 0), retrans=True)
    xml += '<recv request="ACK"/>\n'
    xml += '<recv request="INVITE" timeout="5000"/>\n'
    xml += _ok(sdp("carrier", "carrier-answers-reinvite", 1), "carrier")
    xml += '<recv request="ACK"/>\n<recv request="UPDATE"/>\n'
    xml += _ok(sdp("carrier", "carrier-answers-update", 2), "carrier")
    xml += '<pause milliseconds="300"/>\n'
    xml += _request("INVITE", 1, me, them, sdp("carrier", "carrier-reinvite", 3))
    xml += '<recv response="100" optional="true"/>\n<recv response="200"/>\n'
    xml += _request("ACK", 1, me, them)
    xml += _request("UPDATE", 2, me, them, sdp("carrier", "carrier-update", 4))
    xml += '<recv response="200"/>\n<recv request="BYE" timeout="5000"/>\n'
    xml += OK_TO_REQUEST
    xml += '<pause milliseconds="300"/>\n'
    return wrap("carrier mid-call", xml)


def received(log: str) -> list[str]:
    """The messages a sipp received, from its -trace_msg log."""
    blocks = log.split("\n-----------------------------------------------")
    out = []
    for block in blocks:
        head, _, message = block.partition("\n\n")
        if "message received" in head:
            out.append(message.strip())
    return out


def first_lines(messages: list[str], start: str) -> list[str]:
    return [m for m in messages if m.startswith(start)]


def header(message: str, name: str) -> str:
    for line in message.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return ""


def test_reinvite_update_both_ways_and_harmless_retransmissions(
    edge: EdgeProcess, api: Api, workdir: Path
) -> None:
    account, domain, destination = api.outbound()
    uas = carriers(api, workdir, destination, carrier_midcall())
    carrier_port = uas[0].port
    pbx_run, uas_runs = call(edge, workdir, pbx_midcall(domain, account.caller), destination, uas)
    ok(pbx_run, uas_runs, edge)

    pbx_log = (workdir / "pbx.msg").read_text(errors="replace")
    carrier_log = (workdir / "carrier0.msg").read_text(errors="replace")
    at_pbx, at_carrier = received(pbx_log), received(carrier_log)

    # Offers crossed both ways, and so did the answers.
    reinvites_at_carrier = first_lines(at_carrier, "INVITE ")[1:]
    assert len(reinvites_at_carrier) == 1 and "s=pbx-reinvite" in reinvites_at_carrier[0]
    assert any("s=pbx-update" in m for m in first_lines(at_carrier, "UPDATE "))
    assert any("s=carrier-reinvite" in m for m in first_lines(at_pbx, "INVITE "))
    assert any("s=carrier-update" in m for m in first_lines(at_pbx, "UPDATE "))
    ok_at_pbx = first_lines(at_pbx, "SIP/2.0 200")
    assert any("s=carrier-answers-reinvite" in m for m in ok_at_pbx)
    assert any("s=carrier-answers-update" in m for m in ok_at_pbx)
    ok_at_carrier = first_lines(at_carrier, "SIP/2.0 200")
    assert any("s=pbx-answers-reinvite" in m for m in ok_at_carrier)
    assert any("s=pbx-answers-update" in m for m in ok_at_carrier)

    # The edge retransmitted its 200 to the PBX that held its ACK back.
    answers = [m for m in ok_at_pbx if header(m, "CSeq") == "1 INVITE"]
    assert len(answers) >= 2, answers
    # Topology hiding: no Call-ID or SIP address crosses from one side to the other.
    pbx_call_ids = {header(m, "Call-ID") for m in at_carrier if header(m, "Call-ID")}
    carrier_call_ids = {header(m, "Call-ID") for m in at_pbx if header(m, "Call-ID")}
    assert pbx_call_ids.isdisjoint(carrier_call_ids)
    assert f"127.0.0.1:{carrier_port}" not in "\n".join(at_pbx)
    assert f"127.0.0.1:{pbx_run_port(pbx_log)}" not in "\n".join(at_carrier)

    assert len(account.call_records(destination)) == 1
    record = assert_record(account, destination, "3010", "customer")
    assert record["answer_time"] is not None
    assert edge.alive()


def pbx_run_port(pbx_log: str) -> int:
    """The PBX's own SIP port, read from the Via of the first message it sent."""
    for line in pbx_log.splitlines():
        if line.startswith("Via: SIP/2.0/UDP 127.0.0.1:"):
            return int(line.split(":")[2].split(";")[0])
    raise AssertionError("no Via in the PBX log")
