"""A tiny user agent client and server built only on opentrunk.sip + opentrunk.transport.

They exist to prove the stack against real peers (sipp): `TinyUAS` answers calls (with an
optional digest challenge), `TinyUAC` places one call (INVITE, ACK, BYE) and answers a
401/407 challenge with `DigestClient`. Both run on one `SipEndpoint`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from opentrunk.sip.dialog import Dialog, new_tag
from opentrunk.sip.digest import DigestChallenger, DigestClient, ha1
from opentrunk.sip.message import Request
from opentrunk.sip.transaction import Address
from opentrunk.transport.endpoint import IncomingRequest, SipEndpoint, literal_address


def sdp(port: int = 40000) -> bytes:
    return (
        "v=0\r\n"
        "o=- 1 1 IN IP4 127.0.0.1\r\n"
        "s=-\r\n"
        "c=IN IP4 127.0.0.1\r\n"
        "t=0 0\r\n"
        f"m=audio {port} RTP/AVP 0\r\n"
        "a=rtpmap:0 PCMU/8000\r\n"
    ).encode()


@dataclass
class TinyUAS:
    """Answers INVITE with 180 + 200 (SDP), takes the ACK, answers BYE with 200."""

    endpoint: SipEndpoint
    transport: str = "udp"
    realm: str | None = None  # set to challenge INVITEs (digest, MD5 for sipp)
    users: dict[str, str] = field(default_factory=dict)  # username -> password
    proxy_auth: bool = True  # 407/Proxy-Authenticate, else 401/WWW-Authenticate
    algorithms: tuple[str, ...] = ("MD5",)
    events: list[str] = field(default_factory=list)
    dialogs: dict[str, Dialog] = field(default_factory=dict)
    completed: int = 0
    challenger: DigestChallenger = field(
        default_factory=lambda: DigestChallenger(b"interop-test-key-0123456789")
    )

    def __post_init__(self) -> None:
        self.done = asyncio.Event()
        self.endpoint.handler = self.on_request

    def _lookup(self, username: str, realm: str, algorithm: str) -> str | None:
        password = self.users.get(username)
        return None if password is None else ha1(username, realm, password, algorithm)

    def _authorized(self, incoming: IncomingRequest) -> bool:
        if self.realm is None:
            return True
        request = incoming.request
        status, challenge_name, credentials_name = DigestChallenger.header_names(self.proxy_auth)
        now = time.time()
        for value in request.headers.get_all(credentials_name) or []:
            result = self.challenger.verify(
                value,
                method=request.method,
                realm=self.realm,
                lookup_ha1=self._lookup,
                now=now,
            )
            self.events.append(f"auth:{result.outcome.value}")
            if result.ok:
                return True
        # sipp's [authentication] speaks MD5 only; real phones get SHA-256 first.
        challenges = self.challenger.challenge(self.realm, now=now, algorithms=self.algorithms)
        incoming.respond(status, headers=[(challenge_name, c) for c in challenges])
        self.events.append(f"challenged:{status}")
        return False

    def on_request(self, incoming: IncomingRequest) -> None:
        request = incoming.request
        method = request.method
        self.events.append(method)
        contact = self.endpoint.contact_uri("uas", self.transport)
        if method == "INVITE":
            dialog = self.dialogs.get(request.call_id)
            if dialog is not None:  # re-INVITE
                dialog.on_request(request)
                incoming.respond(
                    200, contact=contact, body=sdp(), headers=[("Content-Type", "application/sdp")]
                )
                return
            if not self._authorized(incoming):
                return
            incoming.respond(180, contact=contact)
            dialog = Dialog.as_uas(request, incoming.local_tag)
            dialog.confirm()
            self.dialogs[request.call_id] = dialog
            incoming.respond(
                200, contact=contact, body=sdp(), headers=[("Content-Type", "application/sdp")]
            )
        elif method == "ACK":
            dialog = self.dialogs.get(request.call_id)
            if dialog is not None:
                dialog.on_request(request)
        elif method == "BYE":
            dialog = self.dialogs.get(request.call_id)
            if dialog is None or not dialog.on_request(request):
                incoming.respond(481)
                return
            incoming.respond(200)
            self.completed += 1
            self.done.set()
        elif method in ("OPTIONS", "INFO", "UPDATE", "NOTIFY"):
            incoming.respond(200)
        else:
            incoming.respond(405, headers=[("Allow", "INVITE, ACK, BYE, CANCEL, OPTIONS")])


@dataclass
class CallResult:
    statuses: list[int] = field(default_factory=list)
    answered: bool = False
    bye_status: int | None = None
    authenticated: bool = False


class TinyUAC:
    """Places one call: INVITE (answering a digest challenge once), ACK, hold, BYE."""

    def __init__(
        self,
        endpoint: SipEndpoint,
        transport: str = "udp",
        *,
        username: str = "alice",
        password: str | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.transport = transport
        self.username = username
        self.password = password

    def _invite(self, dest: Address, call_id: str, from_tag: str, cseq: int) -> Request:
        host = dest.host if ":" not in dest.host else f"[{dest.host}]"
        params = "" if self.transport == "udp" else f";transport={self.transport}"
        target = f"sip:service@{host}:{dest.port}{params}"
        contact = self.endpoint.contact_uri(self.username, self.transport)
        return Request(
            "INVITE",
            target,
            [
                ("From", f"<sip:{self.username}@127.0.0.1>;tag={from_tag}"),
                ("To", f"<sip:service@{host}:{dest.port}>"),
                ("Call-ID", call_id),
                ("CSeq", f"{cseq} INVITE"),
                ("Contact", f"<{contact}>"),
                ("Content-Type", "application/sdp"),
            ],
            sdp(),
        )

    async def call(self, dest: Address, hold: float = 0.2) -> CallResult:
        result = CallResult()
        call_id = f"{new_tag()}@127.0.0.1"
        from_tag = new_tag()
        invite = self._invite(dest, call_id, from_tag, 1)
        final = await self.endpoint.send_request(
            invite, dest, on_response=lambda r: result.statuses.append(r.status)
        )
        if final.status in (401, 407) and self.password is not None:
            # The transaction ACKed the challenge; retry with credentials and CSeq + 1.
            name = "WWW-Authenticate" if final.status == 401 else "Proxy-Authenticate"
            answer_name = "Authorization" if final.status == 401 else "Proxy-Authorization"
            client = DigestClient(self.username, self.password)
            invite = self._invite(dest, call_id, from_tag, 2)
            credentials = client.authorization(
                final.headers.get_all(name)[0], method="INVITE", uri=str(invite.uri)
            )
            invite.headers.add(answer_name, credentials)
            result.authenticated = True
            final = await self.endpoint.send_request(
                invite, dest, on_response=lambda r: result.statuses.append(r.status)
            )
        if not 200 <= final.status < 300:
            return result
        result.answered = True
        dialog = Dialog.as_uac(invite, final)
        next_hop = literal_address(dialog.next_hop(), self.transport)
        self.endpoint.send_ack(dialog.create_ack(), next_hop)
        await asyncio.sleep(hold)
        bye = dialog.create_request("BYE")
        response = await self.endpoint.send_request(bye, next_hop)
        dialog.on_response(bye, response)
        result.bye_status = response.status
        return result
