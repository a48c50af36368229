"""sipp carrier scenarios for calls that fail mid-call (test_outbound_midcall_failures.py).

`carrier_reinvites(status)`: a carrier that answers the call, then sends a re-INVITE
(with a new SDP offer) through the edge and expects the PBX's failure `status` relayed
back; it ACKs that final response (same branch, RFC 3261 17.1.1.3) and then expects the
edge's BYE, which it answers 200.
"""

from __future__ import annotations

from e2e.scenarios import CARRIER_SDP
from e2e.sipp_xml import OK_TO_REQUEST, recv_capturing, request, response, uas_request, wrap

REOFFER = CARRIER_SDP.replace("2353687637", "2353687638")


def carrier_reinvites(status: int) -> str:
    xml = recv_capturing('request="INVITE" rrs="true"', remote_from="From:", remote_to="To:")
    xml += response("180 Ringing")
    xml += response("200 OK", sdp=CARRIER_SDP, retrans=True)
    xml += '<recv request="ACK"/>\n<pause milliseconds="300"/>\n'
    xml += uas_request("INVITE", 1, contact_user="carrier", sdp=REOFFER)
    xml += f'<recv response="100" optional="true"/>\n<recv response="{status}"/>\n'
    # The ACK of a failure response: same branch as the re-INVITE.
    xml += request("ACK", 1, via="[last_Via:]", call_id="[last_Call-ID:]")
    xml += '<recv request="BYE" timeout="10000"/>\n' + OK_TO_REQUEST
    xml += '<pause milliseconds="300"/>\n'
    return wrap(f"carrier re-INVITE answered {status}", xml)
