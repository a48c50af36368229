"""Outbound calls through an in-process edge over loopback (tests/edge/live_edge.py):
what the edge keeps after a call ends, what it creates for a digest challenge, and the
brute-force lockout's thresholds taken from the settings."""

from __future__ import annotations

import asyncio
import gc
import weakref
from pathlib import Path

import pytest

from edge.live_edge import count_outbound_calls, live_edge, settle
from opentrunk.config import load_settings
from opentrunk.edge.outbound import OutboundCall
from opentrunk.edge.server import SipEdge


def test_an_ended_call_is_freed_at_once(tmp_path: Path) -> None:
    """With the cyclic collector off, nothing may keep an ended call: not the carrier
    INVITE's client transaction, which waits 64*T1 in Accepted after the answer."""

    async def go() -> None:
        async with live_edge(tmp_path) as live:
            gc.collect()
            gc.disable()
            try:
                invite, answer = await live.pbx.call()
                assert answer.status == 200
                found = [o for o in gc.get_objects() if isinstance(o, OutboundCall)]
                assert len(found) == 1
                call, call_uuid = weakref.ref(found[0]), found[0].call_uuid
                del found
                bye = await live.pbx.hang_up(invite, answer)
                assert bye.status == 200
                await settle(0.3)  # the media release, then the record's close
                assert live.carrier.byes == 1
                assert not live.edge.recorder.is_open(call_uuid)  # the call did end
                assert len(live.edge.endpoint.layer) > 0  # transactions still waiting
                assert call() is None
            finally:
                gc.enable()

    asyncio.run(go())


def test_a_challenge_for_a_cached_trunk_creates_no_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    created = count_outbound_calls(monkeypatch)

    async def go() -> None:
        async with live_edge(tmp_path) as live:
            # Cold cache: the whole path, one call object for the challenged INVITE and
            # one for the INVITE with credentials.
            invite, answer = await live.pbx.call()
            assert answer.status == 200
            assert len(created) == 2
            assert (await live.pbx.hang_up(invite, answer)).status == 200
            # Warm cache: the 407 is sent without a call object; the call goes on.
            challenge = await live.pbx.send(live.pbx.invite())
            assert challenge.status == 407
            assert challenge.headers.get("Proxy-Authenticate")
            assert len(created) == 2
            invite, answer = await live.pbx.call()
            assert answer.status == 200
            assert len(created) == 3
            assert (await live.pbx.hang_up(invite, answer)).status == 200
            await settle()

    asyncio.run(go())


async def _fail_then_invite(tmp_path: Path, failures: int, **settings: object) -> int:
    """`failures` calls with a wrong password, then the status of a plain INVITE."""
    async with live_edge(tmp_path, **settings) as live:
        for _ in range(failures):
            _, refused = await live.pbx.call(password="Wrong!pw12")
            assert refused.status == 403
        return (await live.pbx.send(live.pbx.invite())).status


def test_lockout_thresholds_come_from_the_settings(tmp_path: Path) -> None:
    # Two failures lock the source out: its next INVITE is refused before any challenge.
    assert asyncio.run(_fail_then_invite(tmp_path / "a", 2, lockout_failures=2)) == 403
    # The default (5) is not reached by two failures: the next INVITE is challenged.
    assert asyncio.run(_fail_then_invite(tmp_path / "b", 2)) == 407
    # 0 turns the lockout off.
    assert asyncio.run(_fail_then_invite(tmp_path / "c", 6, lockout_failures=0)) == 407


def test_lockout_settings_from_the_environment(tmp_path: Path) -> None:
    settings = load_settings(
        env={
            "OPENTRUNK_DATA_DIR": str(tmp_path),
            "OPENTRUNK_LOCKOUT_FAILURES": "3",
            "OPENTRUNK_LOCKOUT_WINDOW": "30",
            "OPENTRUNK_LOCKOUT_DURATION": "900",
        }
    )
    assert (settings.lockout_failures, settings.lockout_window) == (3, 30.0)
    from dbutil import open_store

    with open_store("sqlite", tmp_path) as store:
        lockout = SipEdge(settings, store).lockout
    assert (lockout.max_failures, lockout.window, lockout.duration) == (3, 30.0, 900.0)


def test_ended_calls_leave_no_cyclic_garbage(tmp_path: Path) -> None:
    """With the collector off, calls that ended (media released, the edge's transactions
    expired on a short T1) leave nothing of the edge's for the cyclic collector: its
    young collections stay cheap and rare (edge/gc_policy.py)."""

    async def go() -> None:
        async with live_edge(tmp_path, sip_t1=0.01) as live:
            invite, answer = await live.pbx.call()  # warm the caches
            await live.pbx.hang_up(invite, answer)
            await settle(0.3)
            gc.collect()
            gc.disable()
            gc.set_debug(gc.DEBUG_SAVEALL)
            try:
                for _ in range(5):
                    invite, answer = await live.pbx.call()
                    assert answer.status == 200
                    assert (await live.pbx.hang_up(invite, answer)).status == 200
                # 64*T1, then T4 (5 s, not scaled by T1) for the BYE's transaction.
                while len(live.edge.endpoint.layer):
                    await settle(0.2)
                gc.collect()  # DEBUG_SAVEALL: what it found unreachable stays in gc.garbage
                cyclic = sorted({type(o).__qualname__ for o in gc.garbage if _of_the_edge(o)})
                assert cyclic == []
            finally:
                gc.set_debug(0)
                gc.garbage.clear()
                gc.enable()

    asyncio.run(go())


def _of_the_edge(obj: object) -> bool:
    module = type(obj).__module__
    return module.startswith("opentrunk.") or module == "socket"
