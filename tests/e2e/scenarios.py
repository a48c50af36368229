"""sipp scenarios for the PBX (UAC) and the carrier (UAS), generated per test.

PBX scenarios send the INVITE to `sip:[service]@{trunk domain}` (the trunk is found by
that host) from `caller`; with `auth=True` they expect the edge's 407 first, ACK it and
retry with sipp's [authentication] (-au/-ap).
"""

from __future__ import annotations

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


def _invite(domain: str, caller: str, cseq: int, auth: bool) -> str:
    credentials = "[authentication]\n" if auth else ""
    return f"""<send retrans="500"><![CDATA[
INVITE sip:[service]@{domain} SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:+{caller}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@{domain}>
Call-ID: [call_id]
CSeq: {cseq} INVITE
Contact: <sip:pbx@[local_ip]:[local_port];transport=[transport]>
Max-Forwards: 70
{credentials}Content-Type: application/sdp
Content-Length: [len]

{SDP}
]]></send>
"""


def _ack_failure(domain: str, cseq: int) -> str:
    return f"""<send><![CDATA[
ACK sip:[service]@{domain} SIP/2.0
[last_Via:]
[last_From:]
[last_To:]
Call-ID: [call_id]
CSeq: {cseq} ACK
Max-Forwards: 70
Content-Length: 0

]]></send>
"""


def _start(domain: str, caller: str, auth: bool) -> tuple[str, int]:
    """The INVITE (and the digest round when `auth`); returns (xml, CSeq in use)."""
    xml = _invite(domain, caller, 1, False)
    if not auth:
        return xml, 1
    xml += """<recv response="100" optional="true"/>
<recv response="407" auth="true"/>
"""
    xml += _ack_failure(domain, 1)
    xml += _invite(domain, caller, 2, True)
    return xml, 2


def _wrap(name: str, body: str) -> str:
    return f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="{name}">
{body}
</scenario>
"""


_ACK_2XX = """<send><![CDATA[
ACK [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
[last_From:]
[last_To:]
Call-ID: [call_id]
CSeq: {cseq} ACK
Max-Forwards: 70
Content-Length: 0

]]></send>
"""

_BYE = """<send retrans="500"><![CDATA[
BYE [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
[last_From:]
[last_To:]
Call-ID: [call_id]
CSeq: {cseq} BYE
Max-Forwards: 70
Content-Length: 0

]]></send>
<recv response="200" crlf="true"/>
"""

_OK_TO_REQUEST = """<send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
"""


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
    xml += """<recv response="100" optional="true"/>
<recv response="180" optional="true"/>
<recv response="183" optional="true"/>
<recv response="200" rtd="true" rrs="true"/>
"""
    xml += _ACK_2XX.format(cseq=cseq)
    if carrier_hangs_up:
        xml += '<recv request="BYE" timeout="10000"/>\n' + _OK_TO_REQUEST
        xml += '<pause milliseconds="300"/>\n'
    else:
        xml += f'<pause milliseconds="{hold_ms}"/>\n' + _BYE.format(cseq=cseq + 1)
    return _wrap("pbx call", xml)


def pbx_refused(
    domain: str, caller: str, status: int, *, auth: bool = False, also: tuple[int, ...] = ()
) -> str:
    """An INVITE that must end with final `status` (or one of `also`), ACKed."""
    xml, cseq = _start(domain, caller, auth)
    xml += """<recv response="100" optional="true"/>
<recv response="180" optional="true"/>
<recv response="183" optional="true"/>
"""
    for other in also:
        xml += f'<recv response="{other}" optional="true" next="final"/>\n'
    xml += f'<recv response="{status}"/>\n<label id="final"/>\n'
    xml += _ack_failure(domain, cseq)
    xml += '<pause milliseconds="200"/>\n'
    return _wrap(f"pbx refused {status}", xml)


def pbx_cancel(domain: str, caller: str) -> str:
    """INVITE, wait for 180, CANCEL, expect 200 (CANCEL) and 487 (INVITE), ACK."""
    xml, cseq = _start(domain, caller, False)
    xml += """<recv response="100" optional="true"/>
<recv response="180"/>
<pause milliseconds="200"/>
<send><![CDATA[
CANCEL sip:[service]@{domain} SIP/2.0
[last_Via:]
From: <sip:+{caller}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@{domain}>
Call-ID: [call_id]
CSeq: 1 CANCEL
Max-Forwards: 70
Content-Length: 0

]]></send>
<recv response="200"/>
<recv response="487"/>
""".replace("{domain}", domain).replace("{caller}", caller)
    xml += _ack_failure(domain, cseq)
    xml += '<pause milliseconds="200"/>\n'
    return _wrap("pbx cancel", xml)


def _answer_headers(tag: str = "01") -> str:
    return f"""[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag{tag}[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:carrier@[local_ip]:[local_port];transport=[transport]>"""


CARRIER_SDP = SDP.replace("o=pbx", "o=carrier")


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
    capture = ""
    if hangs_up_after_ms is not None:
        capture = """
    <ereg regexp=".*" search_in="hdr" header="From:" assign_to="remote_from"/>
    <ereg regexp=".*" search_in="hdr" header="To:" assign_to="remote_to"/>"""
    if challenge:
        xml += """<recv request="INVITE"/>
<send><![CDATA[
SIP/2.0 407 Proxy Authentication Required
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag09[call_number]
[last_Call-ID:]
[last_CSeq:]
Proxy-Authenticate: Digest realm="carrier.test", nonce="47364c23432d2e131a5fb210812c", algorithm=MD5
Content-Length: 0

]]></send>
<recv request="ACK"/>
"""
        # The credentials are checked by the test from sipp's message log (sipp's own
        # verifyauth rejects valid answers to a challenge it did not make itself).
        action = f"\n  <action>{capture}\n  </action>\n" if capture else ""
        xml += f"""<recv request="INVITE" rrs="true">{action}</recv>
"""
    else:
        action = f"\n  <action>{capture}\n  </action>\n" if capture else ""
        xml += f"""<recv request="INVITE" rrs="true">{action}</recv>
"""
    if early_media:
        xml += f"""<send><![CDATA[
SIP/2.0 183 Session Progress
{_answer_headers()}
Content-Type: application/sdp
Content-Length: [len]

{CARRIER_SDP}
]]></send>
"""
    elif ring:
        xml += f"""<send><![CDATA[
SIP/2.0 180 Ringing
{_answer_headers()}
Content-Length: 0

]]></send>
"""
    xml += f"""<pause milliseconds="100"/>
<send retrans="500"><![CDATA[
SIP/2.0 200 OK
{_answer_headers()}
Content-Type: application/sdp
Content-Length: [len]

{CARRIER_SDP}
]]></send>
<recv request="ACK" crlf="true"/>
"""
    if hangs_up_after_ms is None:
        xml += '<recv request="BYE"/>\n' + _OK_TO_REQUEST
    else:
        xml += f"""<pause milliseconds="{hangs_up_after_ms}"/>
<send retrans="500"><![CDATA[
BYE [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: [$remote_to];tag=[pid]SIPpTag01[call_number]
To: [$remote_from]
[last_Call-ID:]
CSeq: 1 BYE
Max-Forwards: 70
Content-Length: 0

]]></send>
<recv response="200"/>
"""
    xml += '<label id="end"/>\n<pause milliseconds="300"/>\n'
    return _wrap("carrier answer", xml)


def carrier_refuse(status: int, *, ring: bool = False) -> str:
    """A carrier that answers the INVITE with a final `status`."""
    xml = '<recv request="INVITE"/>\n'
    if ring:
        xml += f"""<send><![CDATA[
SIP/2.0 180 Ringing
{_answer_headers()}
Content-Length: 0

]]></send>
"""
    xml += f"""<send><![CDATA[
SIP/2.0 {status} Refused
{_answer_headers()}
Content-Length: 0

]]></send>
<recv request="ACK"/>
<pause milliseconds="200"/>
"""
    return _wrap(f"carrier {status}", xml)


def carrier_ring_until_cancel() -> str:
    """A carrier that rings until it is cancelled: 200 to CANCEL, 487, ACK."""
    xml = f"""<recv request="INVITE"/>
<send><![CDATA[
SIP/2.0 180 Ringing
{_answer_headers()}
Content-Length: 0

]]></send>
<recv request="CANCEL"/>
<send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
<send><![CDATA[
SIP/2.0 487 Request Terminated
{_answer_headers()}
Content-Length: 0

]]></send>
<recv request="ACK"/>
<pause milliseconds="200"/>
"""
    # The 487 must carry the INVITE's CSeq, not the CANCEL's.
    xml = xml.replace(
        "SIP/2.0 487 Request Terminated\n" + _answer_headers(),
        "SIP/2.0 487 Request Terminated\n"
        + _answer_headers().replace("[last_CSeq:]", "CSeq: 1 INVITE"),
    )
    return _wrap("carrier rings", xml)
