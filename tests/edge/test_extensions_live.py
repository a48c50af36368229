"""Option tags at a live edge (tests/edge/live_edge.py, real sockets on loopback): a
request requiring an extension the edge does not do gets 420 Bad Extension with
Unsupported (RFC 3261 8.2.2.3), before any trunk lookup or call; and the Supported
header of a carrier's INVITE reaches the PBX limited to what the edge does end to end
(no 100rel: the PBX would wait for a PRACK that never comes, RFC 3262 section 3)."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import pytest

from edge.live_edge import count_outbound_calls, live_edge, sdp
from opentrunk.edge.inbound import pbx_invite
from opentrunk.edge.origination import OriginationTarget
from opentrunk.sip.dialog import Dialog
from opentrunk.sip.extensions import option_tags
from opentrunk.sip.message import Request
from opentrunk.sip.transaction import Address


def test_an_invite_requiring_100rel_gets_420_and_makes_no_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    created = count_outbound_calls(monkeypatch)

    async def go() -> None:
        async with live_edge(tmp_path) as live:
            invite = live.pbx.invite()
            invite.headers.add("Require", "100rel")
            invite.headers.add("Supported", "100rel, timer")
            answer = await live.pbx.send(invite)
            assert answer.status == 420
            assert option_tags(answer.headers.get_all("Unsupported")) == ["100rel"]
            assert created == [] and live.carrier.byes == 0
            # Requiring what the edge does (session timers) is no obstacle: the call
            # goes on to the digest challenge like any other.
            timer = live.pbx.invite()
            timer.headers.add("Require", "timer")
            timer.headers.add("Session-Expires", "1800")
            assert (await live.pbx.send(timer)).status == 407

    asyncio.run(go())


def test_options_with_unknown_require_lists_them_and_ignores_proxy_require(
    tmp_path: Path,
) -> None:
    """The tags of RFC 4475 3.3.5 (bext01): a user agent lists its Require ones only."""

    async def go() -> None:
        async with live_edge(tmp_path) as live:
            pbx = live.pbx

            def options(*extra: tuple[str, str]) -> Request:
                return Request(
                    "OPTIONS",
                    f"sip:{pbx.domain}",
                    [
                        ("From", f"<sip:pbx@{pbx.domain}>;tag={secrets.token_hex(4)}"),
                        ("To", f"<sip:{pbx.domain}>"),
                        ("Call-ID", secrets.token_hex(8)),
                        ("CSeq", "8 OPTIONS"),
                        ("Proxy-Require", "noProxiesSupportThis, norDoAnyProxiesSupportThis"),
                        *extra,
                    ],
                )

            required = ("Require", "nothingSupportsThis, nothingSupportsThisEither")
            answer = await pbx.send(options(required))
            assert answer.status == 420
            assert option_tags(answer.headers.get_all("Unsupported")) == [
                "nothingSupportsThis",
                "nothingSupportsThisEither",
            ]
            assert (await pbx.send(options())).status == 200

    asyncio.run(go())


def test_the_pbx_leg_carries_only_end_to_end_extensions(tmp_path: Path) -> None:
    async def go() -> None:
        async with live_edge(tmp_path) as live:
            carrier_invite = Request(
                "INVITE",
                "sip:+14155550100@127.0.0.1",
                [
                    ("Via", "SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bK-in"),
                    ("From", "<sip:+12125550100@127.0.0.1>;tag=c1"),
                    ("To", "<sip:+14155550100@127.0.0.1>"),
                    ("Call-ID", "in-1"),
                    ("CSeq", "1 INVITE"),
                    ("Supported", "100rel, timer, replaces"),
                    ("Session-Expires", "1800"),
                    ("Min-SE", "90"),
                ],
            )
            leg = pbx_invite(
                live.edge,
                "uuid-1",
                carrier_invite,
                "+14155550100",
                "+12125550100",
                OriginationTarget("127.0.0.1", 5098),
                Address("udp", "127.0.0.1", 5098),
                offer=b"",
            )
            assert leg.headers.get_all("Supported") == ["timer"]
            assert leg.headers.get_all("Session-Expires") == ["1800"]
            assert leg.headers.get_all("Min-SE") == ["90"]

    asyncio.run(go())


def test_a_relayed_reinvite_carries_only_end_to_end_extensions(tmp_path: Path) -> None:
    async def go() -> None:
        async with live_edge(tmp_path) as live:
            invite, answer = await live.pbx.call()
            assert answer.status == 200
            dialog = Dialog.as_uac(invite, answer)
            reinvite = dialog.create_request(
                "INVITE",
                body=sdp(4010),
                headers=(
                    ("Content-Type", "application/sdp"),
                    ("Supported", "100rel, timer, replaces"),
                    ("Session-Expires", "1800;refresher=uac"),
                    ("Min-SE", "90"),
                ),
            )
            final = await live.pbx.send(reinvite)
            assert final.status == 200
            live.pbx.endpoint.send_ack(dialog.create_ack(), live.pbx.edge)
            relayed = live.carrier.invites[-1]
            assert relayed.to.tag  # the carrier leg's re-INVITE, not its first INVITE
            assert relayed.headers.get_all("Supported") == ["timer"]
            assert relayed.headers.get_all("Session-Expires") == ["1800;refresher=uac"]
            assert relayed.headers.get_all("Min-SE") == ["90"]

    asyncio.run(go())
