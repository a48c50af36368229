"""sipp scenarios for inbound calls: the carrier as UAC (sending INVITE to
`sip:[service]@edge`, with `[service]` the called number) and the customer's PBX as UAS
(the outbound suite's carrier scenarios in `scenarios.py` serve as PBX scenarios too,
plus the ones here for mid-call requests)."""

from __future__ import annotations

from e2e.scenarios import SDP
from e2e.sipp_xml import (
    OK_TO_REQUEST,
    PROVISIONALS,
    recv_capturing,
    request,
    response,
    uas_request,
    wrap,
)

EDGE_URI = "sip:[service]@[remote_ip]:[remote_port]"
CARRIER_SDP = SDP.replace("o=pbx", "o=network")
REINVITE_SDP = CARRIER_SDP.replace("2353687637", "2353687638").replace("0 8 101", "8 101")


def _invite(caller: str, extra: str = "") -> str:
    return request(
        "INVITE",
        1,
        uri=EDGE_URI,
        from_=f'From: "Caller" <sip:{caller}@[local_ip]:[local_port]>'
        ";tag=[pid]CarrierTag[call_number]",
        to=f"To: <{EDGE_URI}>",
        contact_user="carrier",
        extra=extra,
        sdp=CARRIER_SDP,
    )


def _ack_failure() -> str:
    return request("ACK", 1, uri=EDGE_URI, via="[last_Via:]")


def _in_dialog(method: str, cseq: int, *, sdp: str | None = None) -> str:
    return request(method, cseq, contact_user="carrier", sdp=sdp)


def carrier_call(
    caller: str,
    *,
    hold_ms: int = 300,
    reinvite: bool = False,
    update: bool = False,
    expect_reinvite_from_pbx: bool = False,
    session_expires: int | None = None,
    expect_bye: bool = False,
    reinvite_after_ms: int = 0,
) -> str:
    """A complete inbound call from the carrier: INVITE, 200, ACK, (a re-INVITE with a
    new offer, an UPDATE, or answering the PBX's re-INVITE), hold, BYE; or, with
    `expect_bye`, wait for the edge's BYE (the session expired)."""
    extra = ""
    if session_expires is not None:
        extra = f"Supported: timer\nSession-Expires: {session_expires}\nMin-SE: 1"
    xml = _invite(caller, extra) + PROVISIONALS
    xml += '<recv response="200" rtd="true" rrs="true"/>\n' + request("ACK", 1)
    cseq = 1
    if reinvite:
        if reinvite_after_ms:
            xml += f'<pause milliseconds="{reinvite_after_ms}"/>\n'
        cseq += 1
        xml += _in_dialog("INVITE", cseq, sdp=REINVITE_SDP)
        xml += '<recv response="100" optional="true"/>\n<recv response="200"/>\n'
        xml += request("ACK", cseq)
    if update:
        cseq += 1
        xml += _in_dialog("UPDATE", cseq, sdp=REINVITE_SDP)
        xml += '<recv response="200"/>\n'
    if expect_reinvite_from_pbx:
        xml += recv_capturing('request="INVITE" timeout="8000"', their_from="From:", their_to="To:")
        xml += response("200 OK", tag=None, sdp=CARRIER_SDP)
        xml += '<recv request="ACK"/>\n'
    if expect_bye:
        xml += '<recv request="BYE" timeout="10000"/>\n' + OK_TO_REQUEST
        xml += '<pause milliseconds="200"/>\n'
    else:
        xml += f'<pause milliseconds="{hold_ms}"/>\n'
        if expect_reinvite_from_pbx:
            # The last message received was the edge's re-INVITE: its From is our To.
            xml += request(
                "BYE",
                cseq + 1,
                from_="From: [$their_to]",
                to="To: [$their_from]",
                contact_user="carrier",
            )
        else:
            xml += _in_dialog("BYE", cseq + 1)
        xml += '<recv response="200" crlf="true"/>\n'
    return wrap("carrier inbound call", xml)


def carrier_refused(caller: str, status: int) -> str:
    """An inbound INVITE that must end with final `status`, ACKed."""
    xml = _invite(caller) + PROVISIONALS
    xml += f'<recv response="{status}"/>\n' + _ack_failure()
    xml += '<pause milliseconds="100"/>\n'
    return wrap(f"carrier refused {status}", xml)


def carrier_cancel(caller: str) -> str:
    """INVITE, wait for 180, CANCEL, expect 200 (CANCEL) and 487 (INVITE), ACK."""
    xml = _invite(caller)
    xml += '<recv response="100" optional="true"/>\n<recv response="180"/>\n'
    xml += '<pause milliseconds="200"/>\n'
    xml += request(
        "CANCEL", 1, uri=EDGE_URI, via="[last_Via:]", to=f"To: <{EDGE_URI}>", retrans=False
    )
    xml += '<recv response="200"/>\n<recv response="487"/>\n'
    xml += _ack_failure() + '<pause milliseconds="100"/>\n'
    return wrap("carrier cancel", xml)


def pbx_answer(
    *,
    session_expires: str | None = None,
    reinvite: bool = False,
    update: bool = False,
    sends_reinvite: bool = False,
    expect_bye: bool = True,
    challenge: int | None = None,
) -> str:
    """The customer's PBX: (401/407 round), 180, 200 (optionally with Session-Expires),
    ACK; then receives a re-INVITE and/or UPDATE (answering 200), or sends a re-INVITE
    itself; then receives BYE (or, with expect_bye False, nothing more)."""
    xml = ""
    if challenge is not None:
        header = "WWW-Authenticate" if challenge == 401 else "Proxy-Authenticate"
        xml += '<recv request="INVITE"/>\n'
        xml += response(
            f"{challenge} Unauthorized",
            tag="PbxTag09",
            contact_user=None,
            extra=f'{header}: Digest realm="pbx.test", nonce="5f2d6c0a9b1e4d3c", algorithm=MD5',
        )
        xml += '<recv request="ACK"/>\n'
    if sends_reinvite:
        # Its own re-INVITE goes in the dialog of this INVITE (uas_request).
        xml += recv_capturing('request="INVITE" rrs="true"', remote_from="From:", remote_to="To:")
    else:
        xml += '<recv request="INVITE" rrs="true"/>\n'
    extra = f"Session-Expires: {session_expires}\nRequire: timer" if session_expires else ""
    xml += response("180 Ringing") + '<pause milliseconds="50"/>\n'
    xml += response("200 OK", extra=extra, sdp=SDP, retrans=True)
    xml += '<recv request="ACK" crlf="true"/>\n'
    for method, wanted in (("INVITE", reinvite), ("UPDATE", update)):
        if not wanted:
            continue
        xml += f'<recv request="{method}"/>\n'
        xml += response("200 OK", tag=None, contact_user="pbx", sdp=SDP)
        if method == "INVITE":
            xml += '<recv request="ACK"/>\n'
    if sends_reinvite:
        xml += '<pause milliseconds="200"/>\n'
        xml += uas_request("INVITE", 1, contact_user="pbx", sdp=SDP)
        xml += '<recv response="100" optional="true"/>\n<recv response="200"/>\n'
        xml += uas_request("ACK", 1)
    if expect_bye:
        xml += '<recv request="BYE" timeout="10000"/>\n' + OK_TO_REQUEST
    xml += '<pause milliseconds="200"/>\n'
    return wrap("pbx answer", xml)
