"""sipp carrier scenarios for calls that fail mid-call (test_outbound_midcall_failures.py).

`carrier_reinvites(status)`: a carrier that answers the call, then sends a re-INVITE
(with a new SDP offer) through the edge and expects the PBX's failure `status` relayed
back; it ACKs that final response (same branch, RFC 3261 17.1.1.3) and then expects the
edge's BYE, which it answers 200.
"""

from __future__ import annotations

from e2e import scenarios

REOFFER = scenarios.CARRIER_SDP.replace("2353687637", "2353687638")


def carrier_reinvites(status: int) -> str:
    answer = scenarios._answer_headers()
    return scenarios._wrap(
        f"carrier re-INVITE answered {status}",
        f"""<recv request="INVITE" rrs="true">
  <action>
    <ereg regexp=".*" search_in="hdr" header="From:" assign_to="remote_from"/>
    <ereg regexp=".*" search_in="hdr" header="To:" assign_to="remote_to"/>
  </action>
</recv>
<send><![CDATA[
SIP/2.0 180 Ringing
{answer}
Content-Length: 0

]]></send>
<send retrans="500"><![CDATA[
SIP/2.0 200 OK
{answer}
Content-Type: application/sdp
Content-Length: [len]

{scenarios.CARRIER_SDP}
]]></send>
<recv request="ACK"/>
<pause milliseconds="300"/>
<send retrans="500"><![CDATA[
INVITE [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: [$remote_to];tag=[pid]SIPpTag01[call_number]
To: [$remote_from]
[last_Call-ID:]
CSeq: 1 INVITE
Contact: <sip:carrier@[local_ip]:[local_port];transport=[transport]>
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

{REOFFER}
]]></send>
<recv response="100" optional="true"/>
<recv response="{status}"/>
<send><![CDATA[
ACK [next_url] SIP/2.0
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0

]]></send>
<recv request="BYE" timeout="10000"/>
{scenarios._OK_TO_REQUEST}
<pause milliseconds="300"/>
""",
    )
