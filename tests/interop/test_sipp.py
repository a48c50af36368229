"""Interoperability with real sipp: calls placed and answered over UDP and TCP, with
retransmissions forced by dropped packets, and a digest exchange.

Our side is the tiny UA in sip_ua.py, built only on opentrunk.sip + opentrunk.transport.
Every sipp run is bounded (-m 1 and -timeout) and killed in teardown.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sip_ua import TinyUAC, TinyUAS
from sipp_runner import Sipp, free_port, wait_listening

from opentrunk.sip.message import Message, Request, Response
from opentrunk.sip.transaction import Address
from opentrunk.transport.endpoint import SipEndpoint

pytestmark = [pytest.mark.sipp, pytest.mark.timeout(90)]

HERE = Path(__file__).parent
SIPP_TRANSPORT = {"udp": "u1", "tcp": "t1"}


def run(coro: object, timeout: float = 60) -> object:
    return asyncio.run(asyncio.wait_for(coro, timeout))  # type: ignore[arg-type]


class DropFirst:
    """Drops the first message of each listed kind (method name or status code)."""

    def __init__(self, *kinds: str | int) -> None:
        self.pending = set(kinds)
        self.dropped: list[str | int] = []

    def __call__(self, message: Message, dest: Address) -> bool:
        kind: str | int
        if isinstance(message, Request):
            kind = message.method
        else:
            assert isinstance(message, Response)
            kind = message.status
            if message.cseq.method != "INVITE" and kind == 200:
                kind = f"200/{message.cseq.method}"
        if kind in self.pending:
            self.pending.discard(kind)
            self.dropped.append(kind)
            return True
        return False


async def sipp_uac_against_our_uas(
    sipp: str,
    tmp_path: Path,
    transport: str,
    *,
    scenario: list[str],
    uas_kwargs: dict[str, object],
    drop_out: DropFirst | None = None,
    drop_in: DropFirst | None = None,
) -> tuple[TinyUAS, SipEndpoint, str]:
    endpoint = SipEndpoint()
    try:
        await endpoint.listen(transport, "127.0.0.1", 0)
        uas = TinyUAS(endpoint, transport, **uas_kwargs)  # type: ignore[arg-type]
        endpoint.drop_outgoing = drop_out
        endpoint.drop_incoming = drop_in
        port = endpoint.local_address(transport).port
        process = Sipp(
            sipp,
            [
                *scenario,
                f"127.0.0.1:{port}",
                "-i",
                "127.0.0.1",
                "-p",
                str(free_port()),
                "-t",
                SIPP_TRANSPORT[transport],
                "-s",
                "service",
                "-m",
                "1",
                "-timeout",
                "40s",
                "-timeout_error",
                "-d",
                "100",
            ],
            tmp_path,
        )
        await process.start()
        result = await process.wait(timeout=50)
        assert result.returncode == 0, (
            f"sipp failed ({result.returncode}):\n{result.output}\n{result.errors}"
        )
        # sipp exits after its 200 for BYE; the UAS counted the call when it sent that.
        return uas, endpoint, result.output
    finally:
        await endpoint.close()


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_sipp_uac_calls_our_uas(sipp: str, tmp_path: Path, transport: str) -> None:
    async def main() -> None:
        drop_out = DropFirst(200) if transport == "udp" else None
        drop_in = DropFirst("INVITE") if transport == "udp" else None
        uas, _endpoint, _ = await sipp_uac_against_our_uas(
            sipp,
            tmp_path,
            transport,
            scenario=["-sn", "uac"],
            uas_kwargs={},
            drop_out=drop_out,
            drop_in=drop_in,
        )
        assert uas.completed == 1
        assert uas.events.count("INVITE") == 1  # the retransmitted INVITE was absorbed
        assert "ACK" in uas.events and "BYE" in uas.events
        if transport == "udp":
            # Our 200 was lost once and re-sent by the 2xx timer; sipp's first INVITE
            # was lost once and re-sent by sipp's timer A.
            assert drop_out is not None and drop_out.dropped == [200]
            assert drop_in is not None and drop_in.dropped == ["INVITE"]

    run(main())


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_our_uac_calls_sipp_uas(sipp: str, tmp_path: Path, transport: str) -> None:
    async def main() -> None:
        sipp_port = free_port()
        process = Sipp(
            sipp,
            [
                "-sn",
                "uas",
                "-i",
                "127.0.0.1",
                "-p",
                str(sipp_port),
                "-t",
                SIPP_TRANSPORT[transport],
                "-m",
                "1",
                "-timeout",
                "40s",
                "-timeout_error",
            ],
            tmp_path,
        )
        endpoint = SipEndpoint()
        try:
            await process.start()
            await wait_listening(sipp_port, "udp" if transport == "udp" else "tcp")
            await endpoint.listen(transport, "127.0.0.1", 0)
            drops = DropFirst("INVITE", "BYE") if transport == "udp" else None
            endpoint.drop_outgoing = drops
            uac = TinyUAC(endpoint, transport)
            result = await uac.call(Address(transport, "127.0.0.1", sipp_port))
            assert result.answered, result.statuses
            assert 180 in result.statuses and result.statuses[-1] == 200
            assert result.bye_status == 200
            if drops is not None:
                # Timer A re-sent the INVITE and timer E the BYE.
                assert drops.dropped == ["INVITE", "BYE"]
            outcome = await process.wait(timeout=30)
            assert outcome.returncode == 0, f"sipp failed:\n{outcome.output}\n{outcome.errors}"
        finally:
            await process.kill()
            await endpoint.close()

    run(main())


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_sipp_digest_against_our_challenge(sipp: str, tmp_path: Path, transport: str) -> None:
    async def main() -> None:
        uas, _endpoint, _ = await sipp_uac_against_our_uas(
            sipp,
            tmp_path,
            transport,
            scenario=["-sf", str(HERE / "scenario_digest_uac.xml")],
            uas_kwargs={"realm": "opentrunk.test", "users": {"alice": "wonderland"}},
        )
        assert uas.completed == 1
        assert "challenged:407" in uas.events
        assert "auth:ok" in uas.events
        # The ACK of the 407 matched the INVITE server transaction and was absorbed
        # there; only the ACK of the 200 reached the UAS.
        assert uas.events.count("ACK") == 1
        assert uas.events.count("INVITE") == 2

    run(main())


def test_sipp_digest_wrong_password_is_refused(sipp: str, tmp_path: Path) -> None:
    async def main() -> None:
        endpoint = SipEndpoint()
        try:
            await endpoint.listen("udp", "127.0.0.1", 0)
            uas = TinyUAS(endpoint, "udp", realm="opentrunk.test", users={"alice": "other"})
            process = Sipp(
                sipp,
                [
                    "-sf",
                    str(HERE / "scenario_digest_uac.xml"),
                    f"127.0.0.1:{endpoint.local_address().port}",
                    "-i",
                    "127.0.0.1",
                    "-p",
                    str(free_port()),
                    "-s",
                    "service",
                    "-m",
                    "1",
                    "-timeout",
                    "10s",
                    "-recv_timeout",
                    "3s",
                ],
                tmp_path,
            )
            await process.start()
            result = await process.wait(timeout=30)
            assert result.returncode != 0  # the call must fail
            assert uas.completed == 0
            assert "auth:wrong response" in uas.events
        finally:
            await endpoint.close()

    run(main())
