"""sipp scenarios for inbound calls: the carrier as UAC (sending INVITE to
`sip:[service]@edge`, with `[service]` the called number) and the customer's PBX as UAS
(the outbound suite's carrier scenarios in `scenarios.py` serve as PBX scenarios too,
plus the ones here for mid-call requests)."""

from __future__ import annotations

from e2e.scenarios import _OK_TO_REQUEST, SDP, _answer_headers, _wrap

_INVITE = """<send retrans="500"><![CDATA[
INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: "Caller" <sip:{caller}@[local_ip]:[local_port]>;tag=[pid]CarrierTag[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: <sip:carrier@[local_ip]:[local_port];transport=[transport]>
Max-Forwards: 70
{extra}Content-Type: application/sdp
Content-Length: [len]

{sdp}
]]></send>
"""

_ACK_FAILURE = """<send><![CDATA[
ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
[last_Via:]
[last_From:]
[last_To:]
Call-ID: [call_id]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0

]]></send>
"""

_IN_DIALOG = """<send retrans="500"><![CDATA[
{method} [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
[last_From:]
[last_To:]
Call-ID: [call_id]
CSeq: {cseq} {method}
Contact: <sip:carrier@[local_ip]:[local_port];transport=[transport]>
Max-Forwards: 70
{extra}Content-Length: {length}
{content_type}
{body}]]></send>
"""

CARRIER_SDP = SDP.replace("o=pbx", "o=network")
REINVITE_SDP = CARRIER_SDP.replace("2353687637", "2353687638").replace("0 8 101", "8 101")


def _in_dialog(method: str, cseq: int, *, sdp: str | None = None, extra: str = "") -> str:
    if sdp is None:
        return _IN_DIALOG.format(
            method=method, cseq=cseq, extra=extra, length="0", content_type="", body=""
        )
    return _IN_DIALOG.format(
        method=method,
        cseq=cseq,
        extra=extra,
        length="[len]",
        content_type="Content-Type: application/sdp\n",
        body=sdp + "\n",
    )


def _start(caller: str, extra: str = "") -> str:
    return _INVITE.format(caller=caller, extra=extra, sdp=CARRIER_SDP) + (
        '<recv response="100" optional="true"/>\n'
        '<recv response="180" optional="true"/>\n'
        '<recv response="183" optional="true"/>\n'
    )


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
        extra = f"Supported: timer\nSession-Expires: {session_expires}\nMin-SE: 1\n"
    xml = _start(caller, extra)
    xml += '<recv response="200" rtd="true" rrs="true"/>\n' + _ACK_2XX.format(cseq=1)
    cseq = 1
    if reinvite:
        if reinvite_after_ms:
            xml += f'<pause milliseconds="{reinvite_after_ms}"/>\n'
        cseq += 1
        xml += _in_dialog("INVITE", cseq, sdp=REINVITE_SDP)
        xml += '<recv response="100" optional="true"/>\n<recv response="200"/>\n'
        xml += _ACK_2XX.format(cseq=cseq)
    if update:
        cseq += 1
        xml += _in_dialog("UPDATE", cseq, sdp=REINVITE_SDP)
        xml += '<recv response="200"/>\n'
    if expect_reinvite_from_pbx:
        xml += """<recv request="INVITE" timeout="8000">
  <action>
    <ereg regexp=".*" search_in="hdr" header="From:" assign_to="their_from"/>
    <ereg regexp=".*" search_in="hdr" header="To:" assign_to="their_to"/>
  </action>
</recv>
"""
        xml += f"""<send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:carrier@[local_ip]:[local_port];transport=[transport]>
Content-Type: application/sdp
Content-Length: [len]

{CARRIER_SDP}
]]></send>
<recv request="ACK"/>
"""
    if expect_bye:
        xml += '<recv request="BYE" timeout="10000"/>\n' + _OK_TO_REQUEST
        xml += '<pause milliseconds="200"/>\n'
    else:
        xml += f'<pause milliseconds="{hold_ms}"/>\n'
        bye = _in_dialog("BYE", cseq + 1)
        if expect_reinvite_from_pbx:
            # The last message received was the edge's re-INVITE: its From is our To.
            bye = bye.replace("[last_From:]", "From: [$their_to]").replace(
                "[last_To:]", "To: [$their_from]"
            )
        xml += bye + '<recv response="200" crlf="true"/>\n'
    return _wrap("carrier inbound call", xml)


def carrier_refused(caller: str, status: int) -> str:
    """An inbound INVITE that must end with final `status`, ACKed."""
    xml = _start(caller)
    xml += f'<recv response="{status}"/>\n' + _ACK_FAILURE
    xml += '<pause milliseconds="100"/>\n'
    return _wrap(f"carrier refused {status}", xml)


def carrier_cancel(caller: str) -> str:
    """INVITE, wait for 180, CANCEL, expect 200 (CANCEL) and 487 (INVITE), ACK."""
    xml = (
        _start(caller)
        .replace('<recv response="180" optional="true"/>', '<recv response="180"/>')
        .replace('<recv response="183" optional="true"/>\n', "")
    )
    xml += """<pause milliseconds="200"/>
<send><![CDATA[
CANCEL sip:[service]@[remote_ip]:[remote_port] SIP/2.0
[last_Via:]
[last_From:]
To: <sip:[service]@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 CANCEL
Max-Forwards: 70
Content-Length: 0

]]></send>
<recv response="200"/>
<recv response="487"/>
"""
    xml += _ACK_FAILURE + '<pause milliseconds="100"/>\n'
    return _wrap("carrier cancel", xml)


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
        xml += f"""<recv request="INVITE"/>
<send><![CDATA[
SIP/2.0 {challenge} Unauthorized
[last_Via:]
[last_From:]
[last_To:];tag=[pid]PbxTag09[call_number]
[last_Call-ID:]
[last_CSeq:]
{header}: Digest realm="pbx.test", nonce="5f2d6c0a9b1e4d3c", algorithm=MD5
Content-Length: 0

]]></send>
<recv request="ACK"/>
"""
    xml += '<recv request="INVITE" rrs="true"/>\n'
    extra = f"Session-Expires: {session_expires}\nRequire: timer\n" if session_expires else ""
    xml += f"""<send><![CDATA[
SIP/2.0 180 Ringing
{_answer_headers()}
Content-Length: 0

]]></send>
<pause milliseconds="50"/>
<send retrans="500"><![CDATA[
SIP/2.0 200 OK
{_answer_headers()}
{extra}Content-Type: application/sdp
Content-Length: [len]

{SDP}
]]></send>
<recv request="ACK" crlf="true"/>
"""
    for method, wanted in (("INVITE", reinvite), ("UPDATE", update)):
        if not wanted:
            continue
        xml += f"""<recv request="{method}"/>
<send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:pbx@[local_ip]:[local_port];transport=[transport]>
Content-Type: application/sdp
Content-Length: [len]

{SDP}
]]></send>
"""
        if method == "INVITE":
            xml += '<recv request="ACK"/>\n'
    if sends_reinvite:
        xml += '<pause milliseconds="200"/>\n'
        xml += (
            _IN_DIALOG.format(
                method="INVITE",
                cseq=1,
                extra="",
                length="[len]",
                content_type="Content-Type: application/sdp\n",
                body=SDP + "\n",
            )
            .replace("[last_From:]", "From: [$remote_to];tag=[pid]SIPpTag01[call_number]")
            .replace("[last_To:]", "To: [$remote_from]")
            .replace("Call-ID: [call_id]", "[last_Call-ID:]")
            .replace("sip:carrier@", "sip:pbx@")
        )
        xml += '<recv response="100" optional="true"/>\n<recv response="200"/>\n'
        xml += """<send><![CDATA[
ACK [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: [$remote_to];tag=[pid]SIPpTag01[call_number]
To: [$remote_from]
[last_Call-ID:]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0

]]></send>
"""
    if expect_bye:
        xml += '<recv request="BYE" timeout="10000"/>\n' + _OK_TO_REQUEST
    xml += '<pause milliseconds="200"/>\n'
    if sends_reinvite:
        capture = """<recv request="INVITE" rrs="true">
  <action>
    <ereg regexp=".*" search_in="hdr" header="From:" assign_to="remote_from"/>
    <ereg regexp=".*" search_in="hdr" header="To:" assign_to="remote_to"/>
  </action>
</recv>
"""
        xml = xml.replace('<recv request="INVITE" rrs="true"/>\n', capture, 1)
    return _wrap("pbx answer", xml)
