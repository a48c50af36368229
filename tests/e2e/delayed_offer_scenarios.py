"""sipp scenarios for delayed-offer calls (RFC 3261 13.2.1): the caller's INVITE has no
SDP, the called side's 200 carries the offer and the caller's ACK the answer.

The SDP bodies name the test's own RTP sockets (`peer_sdp`), so that the test sends and
receives the media itself. The port the edge's relay put in the SDP each sipp receives
(the 200 for the caller, the ACK for the called side) is written by sipp to a file in
its working directory (`<exec command>`), where the test reads it while the call is up.
The same scenarios serve both directions: the PBX calling out through a carrier, and a
carrier calling in to a PBX.
"""

from __future__ import annotations

from e2e.sipp_xml import OK_TO_REQUEST, PROVISIONALS, request, response, wrap

# sipp's working directory holds these once the relay's port is known (after a
# re-INVITE without SDP, the *_REINVITE_* ones).
CALLER_PORT_FILE = "caller_relay_port"
CALLED_PORT_FILE = "called_relay_port"
CALLER_REINVITE_PORT_FILE = "caller_reinvite_relay_port"
CALLED_REINVITE_PORT_FILE = "called_reinvite_relay_port"
# The inbound calls' Request-URI: the called number at the edge.
EDGE_URI = "sip:[service]@[remote_ip]:[remote_port]"


def peer_sdp(port: int, origin: str = "peer", *, no_connection: bool = False) -> str:
    """An SDP body for the test's RTP socket on 127.0.0.1:`port` (PCMU and DTMF);
    `no_connection` leaves out the c= line, which no relay can anchor."""
    lines = [
        "v=0",
        f"o={origin} 4711 1 IN IP4 127.0.0.1",
        "s=-",
        *([] if no_connection else ["c=IN IP4 127.0.0.1"]),
        "t=0 0",
        f"m=audio {port} RTP/AVP 0 101",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=sendrecv",
    ]
    return "\n".join(lines)


def _capture_port(attributes: str, port_file: str) -> str:
    """`<recv attributes>` that must carry SDP, and writes its m= port to `port_file`."""
    return f"""<recv {attributes}>
  <action>
    <ereg regexp="m=audio ([0-9]+)" search_in="body" check_it="true" assign_to="m,port"/>
    <exec command="echo [$port] > {port_file}.tmp; mv {port_file}.tmp {port_file}"/>
  </action>
</recv>
"""


# sipp refuses a scenario with a variable it sets but never reads (the whole match of
# the ereg above, which only its group is wanted from).
USED_WHOLE_MATCH = '<Reference variables="m"/>\n'


def _invite(uri: str, from_: str, to: str) -> str:
    """An INVITE without a body (Content-Length 0): the delayed offer."""
    return request("INVITE", 1, uri=uri, from_=from_, to=to, contact_user="caller")


def pbx_invite(domain: str, caller: str) -> str:
    """The PBX's delayed-offer INVITE to `sip:[service]@domain` (outbound)."""
    return _invite(
        f"sip:[service]@{domain}",
        f"From: <sip:+{caller}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]",
        f"To: <sip:[service]@{domain}>",
    )


def carrier_invite(caller: str) -> str:
    """The carrier's delayed-offer INVITE to the called number at the edge (inbound)."""
    return _invite(
        EDGE_URI,
        f'From: "Caller" <sip:{caller}@[local_ip]:[local_port]>;tag=[pid]CarrierTag[call_number]',
        f"To: <{EDGE_URI}>",
    )


def caller(
    invite: str,
    answer: str | None,
    *,
    hold_ms: int = 2000,
    expect_bye: bool = False,
    reinvite: bool = False,
) -> str:
    """The calling side: `invite` (no SDP), the 200 whose offer must carry the relay's
    port (written to CALLER_PORT_FILE), the ACK with `answer` (None: an ACK without the
    answer, breaking the offer/answer rules); with `reinvite`, a re-INVITE without SDP
    too (its 200's offer port to CALLER_REINVITE_PORT_FILE, `answer` in its ACK); then
    its own BYE after `hold_ms`, or, with `expect_bye`, the edge's BYE."""
    xml = invite + PROVISIONALS
    xml += _capture_port('response="200" rtd="true" rrs="true"', CALLER_PORT_FILE)
    xml += request("ACK", 1, sdp=answer)
    cseq = 1
    if reinvite:
        cseq = 2
        xml += '<pause milliseconds="300"/>\n' + request("INVITE", 2, contact_user="caller")
        xml += '<recv response="100" optional="true"/>\n'
        xml += _capture_port('response="200"', CALLER_REINVITE_PORT_FILE)
        xml += request("ACK", 2, sdp=answer)
    if expect_bye:
        xml += '<recv request="BYE" timeout="10000"/>\n' + OK_TO_REQUEST
        xml += '<pause milliseconds="200"/>\n'
    else:
        xml += f'<pause milliseconds="{hold_ms}"/>\n' + request("BYE", cseq + 1)
        xml += '<recv response="200" crlf="true"/>\n'
    return wrap("delayed-offer caller", xml + USED_WHOLE_MATCH)


def called(
    offer: str | None,
    *,
    expect_answer: bool = True,
    early_offer: bool = False,
    reinvite: bool = False,
) -> str:
    """The called side: takes the INVITE, rings (180, or with `early_offer` a 183 with
    the offer, as PBXes with early media do), answers 200 with `offer` (None: a 200
    without the offer it owes), takes the ACK (which must carry the answer, whose relay
    port goes to CALLED_PORT_FILE, unless `expect_answer` is False); with `reinvite`, a
    re-INVITE without SDP answered 200 with `offer` again (its ACK's relay port to
    CALLED_REINVITE_PORT_FILE); then the BYE."""
    xml = '<recv request="INVITE" rrs="true"/>\n'
    if early_offer:
        xml += response("183 Session Progress", contact_user="called", sdp=offer)
    else:
        xml += response("180 Ringing")
    xml += '<pause milliseconds="50"/>\n'
    xml += response("200 OK", contact_user="called", sdp=offer, retrans=True)
    if expect_answer:
        xml += _capture_port('request="ACK" crlf="true"', CALLED_PORT_FILE)
    else:
        xml += '<recv request="ACK" crlf="true"/>\n'
    if reinvite:
        xml += '<recv request="INVITE"/>\n'
        xml += response("200 OK", tag=None, contact_user="called", sdp=offer, retrans=True)
        xml += _capture_port('request="ACK"', CALLED_REINVITE_PORT_FILE)
    xml += '<recv request="BYE" timeout="10000"/>\n' + OK_TO_REQUEST
    xml += '<pause milliseconds="200"/>\n'
    if expect_answer:
        xml += USED_WHOLE_MATCH
    return wrap("delayed-offer called", xml)


def caller_refused(invite: str, uri: str, status: int) -> str:
    """The calling side's `invite` (no SDP, to `uri`) must end with the final `status`,
    ACKed."""
    xml = invite + PROVISIONALS + f'<recv response="{status}"/>\n'
    xml += request("ACK", 1, via="[last_Via:]", uri=uri)
    xml += '<pause milliseconds="200"/>\n'
    return wrap(f"delayed-offer caller refused {status}", xml)
