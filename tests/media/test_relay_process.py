"""The relay in its own process (`RelayProcess` + `relay_worker`): the same relay
behind a control channel. Real child process, real sockets on loopback."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
import uvloop

from opentrunk.config import load_settings
from opentrunk.media import create_media_backend
from opentrunk.media.backend import MediaError, MediaSdpError, MediaTimeout, PortsExhausted
from opentrunk.media.relay import RelayConfig
from opentrunk.media.relay_process import RelayProcess

from .peers import HOST, RtpPeer, sdp_port, voice
from .test_ports import bound_ports

LOW, HIGH = 42600, 42609  # five pairs


async def settle(condition: Callable[[], object], limit: float = 5.0) -> None:
    deadline = time.monotonic() + limit
    while not condition() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)


def test_media_both_ways_figures_and_ports_freed() -> None:
    async def main() -> None:
        relay = RelayProcess(RelayConfig(bind_address=HOST, port_min=LOW, port_max=HIGH))
        await relay.start()
        assert relay.pid is not None and relay.pid != os.getpid()
        a, b = await RtpPeer().open(), await RtpPeer().open()
        try:
            to_b = await relay.offer("p1", "a", a.sdp())
            to_a = await relay.answer("p1", "b", b.sdp())
            a_dest, b_dest = (HOST, sdp_port(to_a)), (HOST, sdp_port(to_b))
            sent = [voice(i, i * 160, 1) for i in range(30) if i != 10]  # seq 10 lost
            for packet in sent:
                a.send_to(packet, a_dest)
                await asyncio.sleep(0.001)
            b.send_to(voice(0, 0, 2), b_dest)
            await settle(lambda: len(b.received.rtp) == len(sent) and a.received.rtp)
            assert [d for _, d, _ in b.received.rtp] == sent
            assert [d for _, d, _ in a.received.rtp] == [voice(0, 0, 2)]
            assert bound_ports(LOW, HIGH) != []  # the child holds the call's ports
            live = await relay.stats("p1")
            assert live is not None and live.call_id == "p1"
            quality = await relay.delete("p1")
            assert quality is not None
            by_leg = {s.leg: s for s in quality.streams}
            assert (by_leg["a"].packets, by_leg["a"].expected, by_leg["a"].lost) == (29, 30, 1)
            assert by_leg["b"].packets == 1
            assert await relay.delete("p1") is None
            assert bound_ports(LOW, HIGH) == []
        finally:
            a.close()
            b.close()
            await relay.close()

    uvloop.run(main())


def test_errors_keep_their_kind_across_the_channel() -> None:
    async def main() -> None:
        relay = RelayProcess(RelayConfig(bind_address=HOST, port_min=LOW, port_max=LOW + 3))
        await relay.start()
        peer = await RtpPeer().open()
        try:
            with pytest.raises(MediaError, match="does not know"):
                await relay.answer("nobody", "b", peer.sdp())
            with pytest.raises(MediaSdpError):
                await relay.offer("bad", "a", b"v=0\r\nm=audio x RTP/AVP 0\r\n")
            await relay.offer("one", "a", peer.sdp())  # both pairs of the range
            with pytest.raises(PortsExhausted):
                await relay.offer("two", "a", peer.sdp())
        finally:
            peer.close()
            await relay.close()
        assert bound_ports(LOW, LOW + 3) == []  # close() freed what "one" held

    uvloop.run(main())


def test_rtp_timeout_is_reported_from_the_child() -> None:
    async def main() -> None:
        relay = RelayProcess(
            RelayConfig(
                bind_address=HOST,
                port_min=LOW,
                port_max=HIGH,
                rtp_timeout=0.2,
                timeout_check_interval=0.05,
            )
        )
        events: list[MediaTimeout] = []
        relay.set_timeout_handler(events.append)
        await relay.start()
        a, b = await RtpPeer().open(), await RtpPeer().open()
        try:
            await relay.offer("quiet", "a", a.sdp())
            await relay.answer("quiet", "b", b.sdp())
            await settle(lambda: bool(events))
            assert [(e.call_id, e.silent_for >= 0.2) for e in events] == [("quiet", True)]
        finally:
            a.close()
            b.close()
            await relay.close()

    uvloop.run(main())


def test_a_dead_relay_process_fails_calls_with_media_error() -> None:
    async def main() -> None:
        relay = RelayProcess(RelayConfig(bind_address=HOST, port_min=LOW, port_max=HIGH))
        await relay.start()
        peer = await RtpPeer().open()
        try:
            assert relay.pid is not None
            os.kill(relay.pid, signal.SIGKILL)
            with pytest.raises(MediaError):
                for _ in range(100):  # until the parent has seen the channel close
                    await relay.offer("after-death", "a", peer.sdp())
                    await asyncio.sleep(0.01)
            await relay.start()  # a new child serves again
            body = await relay.offer("again", "a", peer.sdp())
            assert LOW <= sdp_port(body) <= HIGH
        finally:
            peer.close()
            await relay.close()
        assert bound_ports(LOW, HIGH) == []

    uvloop.run(main())


def test_selected_by_configuration() -> None:
    settings = load_settings(
        env={"OPENTRUNK_MEDIA_BACKEND": "relay-process", "OPENTRUNK_MEDIA_PORTS": "30000-30100"}
    )
    backend = create_media_backend(settings)
    assert isinstance(backend, RelayProcess)
    assert (backend.config.port_min, backend.config.port_max) == (30000, 30100)


def test_the_embedded_relay_runs_in_its_own_process_by_default() -> None:
    assert isinstance(create_media_backend(load_settings(env={})), RelayProcess)


def test_realtime_priority_setting_reaches_the_relay_process() -> None:
    settings = load_settings(env={"OPENTRUNK_MEDIA_REALTIME_PRIORITY": "5"})
    backend = create_media_backend(settings)
    assert isinstance(backend, RelayProcess)
    assert backend.config.realtime_priority == 5
    with pytest.raises(ValueError, match="media_realtime_priority"):
        create_media_backend(load_settings(env={"OPENTRUNK_MEDIA_REALTIME_PRIORITY": "100"}))

    async def main() -> None:
        relay = RelayProcess(
            RelayConfig(bind_address=HOST, port_min=LOW, port_max=HIGH, realtime_priority=5)
        )
        await relay.start()
        try:
            assert relay.pid is not None
            policy = os.sched_getscheduler(relay.pid)
            if policy != os.SCHED_FIFO and os.geteuid() != 0:
                pytest.skip("not permitted to raise scheduling priority (needs CAP_SYS_NICE)")
            assert policy == os.SCHED_FIFO
            assert os.sched_getparam(relay.pid).sched_priority == 5
        finally:
            await relay.close()

    uvloop.run(main())


def test_normal_scheduling_unless_asked() -> None:
    async def main() -> None:
        relay = RelayProcess(RelayConfig(bind_address=HOST, port_min=LOW, port_max=HIGH))
        await relay.start()
        try:
            assert relay.pid is not None
            assert os.sched_getscheduler(relay.pid) == os.SCHED_OTHER
        finally:
            await relay.close()

    uvloop.run(main())


@asynccontextmanager
async def relay_and_peer() -> AsyncIterator[tuple[RelayProcess, RtpPeer]]:
    """A started relay process and an RTP peer; on the way out both are closed, and the
    relay's process must be gone and none of its ports left bound."""
    relay = RelayProcess(RelayConfig(bind_address=HOST, port_min=LOW, port_max=HIGH))
    await relay.start()
    peer = await RtpPeer().open()
    try:
        yield relay, peer
    finally:
        peer.close()
        await relay.close()
    assert relay.pid is None
    assert bound_ports(LOW, HIGH) == []


def test_a_relay_process_that_dies_is_replaced() -> None:
    async def main() -> None:
        async with relay_and_peer() as (relay, peer):
            first = relay.pid
            assert first is not None
            os.kill(first, signal.SIGKILL)
            await settle(lambda: relay.pid not in (None, first))
            await settle(lambda: relay._channel is not None)
            body = await relay.offer("after-restart", "a", peer.sdp())  # no start() here
            assert LOW <= sdp_port(body) <= HIGH

    uvloop.run(main())


def test_a_group_sigterm_leaves_the_relay_to_its_parent() -> None:
    """`serve` stopped by a SIGTERM to its process group: the relay keeps serving until
    the parent closes the channel (before, it died first and was taken for a crash)."""

    async def main() -> None:
        async with relay_and_peer() as (relay, peer):
            pid = relay.pid
            assert pid is not None
            os.kill(pid, signal.SIGTERM)
            await asyncio.sleep(0.3)
            assert relay.pid == pid
            body = await relay.offer("after-sigterm", "a", peer.sdp())
            assert LOW <= sdp_port(body) <= HIGH

    uvloop.run(main())
