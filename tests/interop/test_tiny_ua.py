"""The tiny UAC against the tiny UAS (no sipp): the client side of digest and a full call."""

from __future__ import annotations

import asyncio

import pytest
from sip_ua import TinyUAC, TinyUAS

from opentrunk.transport.endpoint import SipEndpoint


def run(coro: object) -> object:
    return asyncio.run(asyncio.wait_for(coro, 30))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("transport", "proxy_auth", "algorithms"),
    [("udp", True, ("SHA-256", "MD5")), ("tcp", False, ("MD5",))],
)
def test_uac_answers_digest_challenge(
    transport: str, proxy_auth: bool, algorithms: tuple[str, ...]
) -> None:
    async def main() -> None:
        server, client = SipEndpoint(), SipEndpoint()
        try:
            await server.listen(transport, "127.0.0.1", 0)
            await client.listen(transport, "127.0.0.1", 0)
            uas = TinyUAS(
                server,
                transport,
                realm="opentrunk.test",
                users={"alice": "wonderland"},
                proxy_auth=proxy_auth,
                algorithms=algorithms,
            )
            uac = TinyUAC(client, transport, username="alice", password="wonderland")
            result = await uac.call(server.local_address(transport), hold=0.05)
            assert result.authenticated and result.answered
            assert (407 if proxy_auth else 401) in result.statuses
            assert result.bye_status == 200
            assert uas.completed == 1 and "auth:ok" in uas.events
        finally:
            await client.close()
            await server.close()

    run(main())


def test_wrong_password_is_not_answered() -> None:
    async def main() -> None:
        server, client = SipEndpoint(), SipEndpoint()
        try:
            await server.listen("udp", "127.0.0.1", 0)
            await client.listen("udp", "127.0.0.1", 0)
            uas = TinyUAS(server, realm="opentrunk.test", users={"alice": "wonderland"})
            uac = TinyUAC(client, username="alice", password="guess")
            result = await uac.call(server.local_address(), hold=0.05)
            assert not result.answered
            assert result.statuses[-1] == 407
            assert uas.completed == 0 and "auth:wrong response" in uas.events
        finally:
            await client.close()
            await server.close()

    run(main())
