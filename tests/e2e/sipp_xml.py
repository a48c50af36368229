"""Building blocks of sipp scenario XML: the scenario document, one `<send>` of a SIP
request or response, and a `<recv>` that stores headers of what it received in sipp
variables. The scenario modules (scenarios.py, inbound_scenarios.py, ...) compose
their calls from these.

Header lines use sipp's keywords: `[last_Via:]` and friends copy the header of the last
message received, `[$name]` reads a variable, `[len]` is the length of the body.
"""

from __future__ import annotations

from collections.abc import Sequence

VIA = "Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]"
# sipp's usual tags: `SIPpTag00` on the UAC's side, `SIPpTag01` on the UAS's.
UAS_TAG = "SIPpTag01"
PROVISIONALS = (
    '<recv response="100" optional="true"/>\n'
    '<recv response="180" optional="true"/>\n'
    '<recv response="183" optional="true"/>\n'
)


def wrap(name: str, body: str) -> str:
    """The scenario document around `body`."""
    return f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="{name}">
{body}
</scenario>
"""


def contact(user: str) -> str:
    return f"Contact: <sip:{user}@[local_ip]:[local_port];transport=[transport]>"


def send(start_line: str, headers: Sequence[str], sdp: str | None, *, retrans: bool) -> str:
    """One `<send>`: the start line, the headers (empty ones left out, a multi-line one
    kept whole), then the SDP body if any; `retrans` has sipp resend it over UDP until
    it is answered."""
    lines = [start_line, *(h.rstrip("\n") for h in headers if h)]
    if sdp is None:
        lines.append("Content-Length: 0")
        body = ""
    else:
        lines += ["Content-Type: application/sdp", "Content-Length: [len]"]
        body = sdp + "\n"
    opening = '<send retrans="500">' if retrans else "<send>"
    return f"{opening}<![CDATA[\n" + "\n".join(lines) + f"\n\n{body}]]></send>\n"


def request(
    method: str,
    cseq: int,
    *,
    uri: str = "[next_url]",
    via: str = VIA,
    from_: str = "[last_From:]",
    to: str = "[last_To:]",
    call_id: str = "Call-ID: [call_id]",
    contact_user: str | None = None,
    extra: str = "",
    sdp: str | None = None,
    retrans: bool | None = None,
) -> str:
    """A request; by default inside the dialog of the last message (its Request-URI the
    remote target, its From and To those of that message). Every request but ACK is
    retransmitted unless `retrans` says otherwise."""
    headers = [via, from_, to, call_id, f"CSeq: {cseq} {method}"]
    if contact_user is not None:
        headers.append(contact(contact_user))
    headers += ["Max-Forwards: 70", extra]
    if retrans is None:
        retrans = method != "ACK"
    return send(f"{method} {uri} SIP/2.0", headers, sdp, retrans=retrans)


def response(
    status: str,
    *,
    tag: str | None = UAS_TAG,
    contact_user: str | None = "carrier",
    cseq: str = "[last_CSeq:]",
    extra: str = "",
    sdp: str | None = None,
    retrans: bool = False,
) -> str:
    """A response to the last request received; `tag` (None: keep the To as it came)
    is the local tag of a dialog-creating answer."""
    to = "[last_To:]" if tag is None else f"[last_To:];tag=[pid]{tag}[call_number]"
    headers = ["[last_Via:]", "[last_From:]", to, "[last_Call-ID:]", cseq]
    if contact_user is not None:
        headers.append(contact(contact_user))
    return send(f"SIP/2.0 {status}", [*headers, extra], sdp, retrans=retrans)


def uas_request(
    method: str,
    cseq: int,
    *,
    from_var: str = "remote_from",
    to_var: str = "remote_to",
    tag: str | None = UAS_TAG,
    contact_user: str | None = None,
    sdp: str | None = None,
) -> str:
    """A request the UAS sends in its dialog, from the From and To it stored (in
    `from_var`, `to_var`) off a request it received: its From is that To (plus its own
    `tag` when the stored To had none yet), its To that From."""
    own = f"[${to_var}]" if tag is None else f"[${to_var}];tag=[pid]{tag}[call_number]"
    return request(
        method,
        cseq,
        from_=f"From: {own}",
        to=f"To: [${from_var}]",
        call_id="[last_Call-ID:]",
        contact_user=contact_user,
        sdp=sdp,
    )


# 200 to an in-dialog request without a body (BYE, ...).
OK_TO_REQUEST = response("200 OK", tag=None, contact_user=None)


def recv_capturing(attributes: str, **variables: str) -> str:
    """`<recv attributes>` that stores the named headers of what it received in sipp
    variables: `recv_capturing('request="INVITE"', remote_from="From:")`."""
    actions = "".join(
        f'\n    <ereg regexp=".*" search_in="hdr" header="{header}" assign_to="{name}"/>'
        for name, header in variables.items()
    )
    return f"<recv {attributes}>\n  <action>{actions}\n  </action>\n</recv>\n"
