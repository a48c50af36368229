"""A `SipEdge` running in the test's own event loop on loopback, with a PBX and a carrier
made of real `SipEndpoint`s, for tests that must look inside the edge while calls run
(what it keeps alive, what it creates per message). The e2e suite drives the
`opentrunk serve` process with sipp; this drives the same classes over real sockets.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dbutil import open_store
from opentrunk.config import Settings
from opentrunk.edge import outbound
from opentrunk.edge.bridge import with_credentials
from opentrunk.edge.config import EdgeConfig
from opentrunk.edge.outbound import OutboundCall
from opentrunk.edge.server import SipEdge
from opentrunk.services import accounts as accounts_svc
from opentrunk.services import carriers as carriers_svc
from opentrunk.services import numbers as numbers_svc
from opentrunk.services.credentials import create_credential
from opentrunk.services.trunks import create_trunk
from opentrunk.sip.dialog import Dialog
from opentrunk.sip.message import Request, Response
from opentrunk.sip.transaction import Address
from opentrunk.store.store import Store
from opentrunk.transport.endpoint import IncomingRequest, SipEndpoint

SIP_DOMAIN = "zt.live.test"
USERNAME, PASSWORD = "livepbx", "Live!pw12"
_numbers = itertools.count(1)


def sdp(port: int) -> bytes:
    return (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    ).encode()


class Carrier:
    """A carrier that rings (180) then answers (200 with SDP) every INVITE, and answers
    BYE 200. `invites` keeps the INVITEs it got, re-INVITEs included."""

    def __init__(self) -> None:
        self.endpoint = SipEndpoint(handler=self._on_request)
        self.byes = 0
        self.invites: list[Request] = []

    def _on_request(self, incoming: IncomingRequest) -> None:
        method = incoming.method
        if method == "INVITE":
            self.invites.append(incoming.request)
        contact = self.endpoint.contact_uri("carrier")
        if method == "INVITE":
            incoming.respond(180, contact=contact)
            headers = (("Content-Type", "application/sdp"),)
            incoming.respond(200, contact=contact, headers=headers, body=sdp(4002))
        elif method == "BYE":
            self.byes += 1
            incoming.respond(200)


@dataclass
class Pbx:
    """The PBX side: sends INVITEs to the edge and answers its challenges."""

    endpoint: SipEndpoint
    edge: Address
    domain: str
    caller: str
    destination: str
    answers: list[Response] = field(default_factory=list)

    def invite(self) -> Request:
        request = Request(
            "INVITE",
            f"sip:+{self.destination}@{self.domain}",
            [
                ("From", f"<sip:+{self.caller}@{self.domain}>;tag={secrets.token_hex(4)}"),
                ("To", f"<sip:+{self.destination}@{self.domain}>"),
                ("Call-ID", secrets.token_hex(12)),
                ("CSeq", "1 INVITE"),
                ("Contact", f"<{self.endpoint.contact_uri('pbx')}>"),
                ("Content-Type", "application/sdp"),
            ],
            sdp(4000),
        )
        return request

    async def send(self, request: Request) -> Response:
        return await self.endpoint.request(request, self.edge).final

    async def call(self, password: str = PASSWORD) -> tuple[Request, Response]:
        """INVITE, the 407 round with `password`, and the final answer (ACKed if 2xx)."""
        invite = self.invite()
        final = await self.send(invite)
        if final.status == 407:
            retry = with_credentials(invite, final, USERNAME, password)
            assert retry is not None
            invite = retry
            final = await self.send(invite)
        if 200 <= final.status < 300:
            self.endpoint.send_ack(Dialog.as_uac(invite, final).create_ack(), self.edge)
        return invite, final

    async def hang_up(self, invite: Request, answer: Response) -> Response:
        dialog = Dialog.as_uac(invite, answer)
        return await self.send(dialog.create_request("BYE"))


@dataclass
class LiveEdge:
    edge: SipEdge
    store: Store
    pbx: Pbx
    carrier: Carrier


@asynccontextmanager
async def live_edge(data_dir: Path, **settings: object) -> AsyncIterator[LiveEdge]:
    """A started edge with one digest trunk, one carrier for the destination, a PBX."""
    with open_store("sqlite", data_dir, sip_domain=SIP_DOMAIN) as store:
        created = accounts_svc.create_account(store, "live")
        auth_id = created["auth_id"]
        account_id = accounts_svc.account_id_of(store, auth_id)
        accounts_svc.set_limits(store, auth_id, cps=1000)
        n = next(_numbers)
        caller, destination = f"1212555{n:04d}", f"1415555{n:04d}"
        numbers_svc.add_number(store, "+" + caller, auth_id)
        credential = create_credential(store, account_id, USERNAME, PASSWORD, "pbx")
        trunk_id = create_trunk(
            store,
            account_id,
            {"trunk_direction": "outbound", "credential_uuid": credential},
        )
        carrier = Carrier()
        await carrier.endpoint.listen("udp", "127.0.0.1", 0)
        carrier_port = carrier.endpoint.local_address("udp").port
        carriers_svc.add_carrier(
            store, name="live", address=f"127.0.0.1:{carrier_port}", prefix=destination[:4]
        )
        values: dict[str, object] = {
            "data_dir": str(data_dir),
            "sip_domain": SIP_DOMAIN,
            "sip": "127.0.0.1:0",
            "media_address": "127.0.0.1",
            **settings,
        }
        config = Settings(**values)  # type: ignore[arg-type]
        edge = await _started_edge(config, store)
        pbx_endpoint = SipEndpoint()
        await pbx_endpoint.listen("udp", "127.0.0.1", 0)
        host, port = edge.address()
        pbx = Pbx(
            pbx_endpoint,
            Address("udp", host, port),
            f"{trunk_id}.{SIP_DOMAIN}",
            caller,
            destination,
        )
        try:
            yield LiveEdge(edge, store, pbx, carrier)
        finally:
            await edge.stop()
            await pbx_endpoint.close()
            await carrier.endpoint.close()


async def _started_edge(settings: Settings, store: Store) -> SipEdge:
    """A started edge. Its TCP listener takes the port the kernel gave its UDP one,
    which another process may hold already: then start again on another."""
    for attempt in range(5):
        # A long cache life: a loaded test machine must not make a load miss the cache.
        edge = SipEdge(settings, store, config=EdgeConfig(store, settings, ttl=60.0))
        try:
            await edge.start()
        except OSError:
            await edge.stop()
            if attempt == 4:
                raise
            continue
        return edge
    raise AssertionError("unreachable")


async def settle(seconds: float = 0.05) -> None:
    """Let the loop carry out what the last packets started."""
    await asyncio.sleep(seconds)


def count_outbound_calls(monkeypatch: pytest.MonkeyPatch) -> list[OutboundCall]:
    """The `OutboundCall`s the edge creates from now on (the test's patch)."""
    created: list[OutboundCall] = []
    original = OutboundCall.__init__

    def counting(self: OutboundCall, *args: object) -> None:
        created.append(self)
        original(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(outbound.OutboundCall, "__init__", counting)
    return created
