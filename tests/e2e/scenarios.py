"""sipp scenarios for the PBX (UAC) and the carrier (UAS), generated per test.

PBX scenarios send the INVITE to `sip:[service]@{trunk domain}` (the trunk is found by
that host) from `caller`; with `auth=True` they expect the edge's 407 first, ACK it and
retry with sipp's [authentication] (-au/-ap).
"""

from __future__ import annotations

from e2e.sipp_xml import (
    OK_TO_REQUEST,
    PROVISIONALS,
    UAS_TAG,
    recv_capturing,
    request,
    response,
    uas_request,
    wrap,
)

SDP = """v=0
o=pbx 53655765 2353687637 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0 8 101
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
"""


def pbx_invite(domain: str, caller: str, cseq: int = 1, auth: bool = False) -> str:
    """The PBX's INVITE to `sip:[service]@domain` from `caller`; with `auth`, carrying
    sipp's answer to the last challenge."""
    return request(
        "INVITE",
        cseq,
        uri=f"sip:[service]@{domain}",
        from_=f"From: <sip:+{caller}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]",
        to=f"To: <sip:[service]@{domain}>",
        contact_user="pbx",
        extra="[authentication]" if auth else "",
        sdp=SDP,
    )


def _ack_failure(domain: str, cseq: int) -> str:
    return request("ACK", cseq, uri=f"sip:[service]@{domain}", via="[last_Via:]")


def _start(domain: str, caller: str, auth: bool) -> tuple[str, int]:
    """The INVITE (and the digest round when `auth`); returns (xml, CSeq in use)."""
    xml = pbx_invite(domain, caller)
    if not auth:
        return xml, 1
    xml += """<recv response="100" optional="true"/>
<recv response="407" auth="true"/>
"""
    xml += _ack_failure(domain, 1)
    xml += pbx_invite(domain, caller, 2, True)
    return xml, 2


def pbx_call(
    domain: str,
    caller: str,
    *,
    auth: bool = False,
    hold_ms: int = 200,
    carrier_hangs_up: bool = False,
) -> str:
    """A complete call: INVITE, (407), 100/180/183, 200, ACK, hold, BYE (or wait for the
    carrier's BYE)."""
    xml, cseq = _start(domain, caller, auth)
    xml += PROVISIONALS + '<recv response="200" rtd="true" rrs="true"/>\n'
    xml += request("ACK", cseq)
    if carrier_hangs_up:
        xml += '<recv request="BYE" timeout="10000"/>\n' + OK_TO_REQUEST
        xml += '<pause milliseconds="300"/>\n'
    else:
        xml += f'<pause milliseconds="{hold_ms}"/>\n' + request("BYE", cseq + 1)
        xml += '<recv response="200" crlf="true"/>\n'
    return wrap("pbx call", xml)


def pbx_refused(
    domain: str, caller: str, status: int, *, auth: bool = False, also: tuple[int, ...] = ()
) -> str:
    """An INVITE that must end with final `status` (or one of `also`), ACKed."""
    xml, cseq = _start(domain, caller, auth)
    xml += PROVISIONALS
    for other in also:
        xml += f'<recv response="{other}" optional="true" next="final"/>\n'
    xml += f'<recv response="{status}"/>\n<label id="final"/>\n'
    xml += _ack_failure(domain, cseq)
    xml += '<pause milliseconds="200"/>\n'
    return wrap(f"pbx refused {status}", xml)


def pbx_cancel(domain: str, caller: str) -> str:
    """INVITE, wait for 180, CANCEL, expect 200 (CANCEL) and 487 (INVITE), ACK."""
    xml, cseq = _start(domain, caller, False)
    xml += '<recv response="100" optional="true"/>\n<recv response="180"/>\n'
    xml += '<pause milliseconds="200"/>\n'
    xml += request(
        "CANCEL",
        1,
        uri=f"sip:[service]@{domain}",
        via="[last_Via:]",
        from_=f"From: <sip:+{caller}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]",
        to=f"To: <sip:[service]@{domain}>",
        retrans=False,
    )
    xml += '<recv response="200"/>\n<recv response="487"/>\n'
    xml += _ack_failure(domain, cseq)
    xml += '<pause milliseconds="200"/>\n'
    return wrap("pbx cancel", xml)


CARRIER_SDP = SDP.replace("o=pbx", "o=carrier")
CHALLENGE = (
    'Proxy-Authenticate: Digest realm="carrier.test", '
    'nonce="47364c23432d2e131a5fb210812c", algorithm=MD5'
)


def hang_up(from_var: str, to_var: str, *, tag: str | None = UAS_TAG) -> str:
    """The UAS's own BYE (CSeq 1) in the dialog it stored (`uas_request`), then the 200."""
    return (
        uas_request("BYE", 1, from_var=from_var, to_var=to_var, tag=tag)
        + '<recv response="200"/>\n'
    )


def carrier_answer(
    *,
    ring: bool = True,
    early_media: bool = False,
    hangs_up_after_ms: int | None = None,
    challenge: bool = False,
) -> str:
    """A carrier that answers: (407 round), 180 (or 183 with SDP), 200 with SDP, ACK;
    then BYE from the PBX (200), or its own BYE after `hangs_up_after_ms`."""
    xml = ""
    if challenge:
        xml += '<recv request="INVITE"/>\n'
        xml += response(
            "407 Proxy Authentication Required", tag="SIPpTag09", contact_user=None, extra=CHALLENGE
        )
        # The credentials are checked by the test from sipp's message log (sipp's own
        # verifyauth rejects valid answers to a challenge it did not make itself).
        xml += '<recv request="ACK"/>\n'
    if hangs_up_after_ms is None:
        xml += '<recv request="INVITE" rrs="true"/>\n'
    else:
        xml += recv_capturing('request="INVITE" rrs="true"', remote_from="From:", remote_to="To:")
    if early_media:
        xml += response("183 Session Progress", sdp=CARRIER_SDP)
    elif ring:
        xml += response("180 Ringing")
    xml += '<pause milliseconds="100"/>\n'
    xml += response("200 OK", sdp=CARRIER_SDP, retrans=True)
    xml += '<recv request="ACK" crlf="true"/>\n'
    if hangs_up_after_ms is None:
        xml += '<recv request="BYE"/>\n' + OK_TO_REQUEST
    else:
        xml += f'<pause milliseconds="{hangs_up_after_ms}"/>\n'
        xml += hang_up("remote_from", "remote_to")
    xml += '<label id="end"/>\n<pause milliseconds="300"/>\n'
    return wrap("carrier answer", xml)


def carrier_refuse(status: int, *, ring: bool = False) -> str:
    """A carrier that answers the INVITE with a final `status`."""
    xml = '<recv request="INVITE"/>\n'
    if ring:
        xml += response("180 Ringing")
    xml += response(f"{status} Refused")
    xml += '<recv request="ACK"/>\n<pause milliseconds="200"/>\n'
    return wrap(f"carrier {status}", xml)


def carrier_ring_until_cancel() -> str:
    """A carrier that rings until it is cancelled: 200 to CANCEL, 487, ACK."""
    xml = '<recv request="INVITE"/>\n' + response("180 Ringing")
    xml += '<recv request="CANCEL"/>\n' + response("200 OK", contact_user=None)
    # The 487 must carry the INVITE's CSeq, not the CANCEL's.
    xml += response("487 Request Terminated", cseq="CSeq: 1 INVITE")
    xml += '<recv request="ACK"/>\n<pause milliseconds="200"/>\n'
    return wrap("carrier rings", xml)
