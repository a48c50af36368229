"""CPU per relay media session: what the SIP edge pays to anchor one call's media.

For each of N calls, in one uvloop process: `offer` from leg a (opens the stream:
two port pairs, four sockets), `answer` from leg b, `delete` (closes them and
reads the figures). Prints CPU microseconds per call for the whole sequence and,
separately, for the sockets alone (bind, register with the loop, unregister,
close: no SDP work), so the share of the port handling is visible beside the SDP
rewriting. Then the same calls through `RelayProcess` (backend "relay-process"):
the CPU the calling process spends per call (the control messages) and the CPU
the relay process spends.

    .venv/bin/python bench/media_session.py --calls 20000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

import uvloop

from opentrunk.media.port_pool import PortPool
from opentrunk.media.relay import RelayConfig, RtpRelay
from opentrunk.media.relay_process import RelayProcess

HOST = "127.0.0.1"
# Away from the ranges the test suites bind (22000-26600, 41000-42609), which may be
# running beside a benchmark on a shared machine.


def sdp(port: int) -> bytes:
    return (
        f"v=0\r\no=gen 1 1 IN IP4 {HOST}\r\ns=-\r\nc=IN IP4 {HOST}\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\n"
    ).encode()


async def full_sessions(relay: RtpRelay | RelayProcess, calls: int, live: int) -> float:
    """CPU seconds for `calls` offer+answer+delete, `live` calls up at any time."""
    offer, answer = sdp(30000), sdp(30002)
    pending: list[str] = []
    cpu0 = time.process_time()
    for n in range(calls):
        call_id = f"bench-{n}"
        await relay.offer(call_id, "a", offer)
        await relay.answer(call_id, "b", answer)
        pending.append(call_id)
        if len(pending) > live:
            await relay.delete(pending.pop(0))
    for call_id in pending:
        await relay.delete(call_id)
    return time.process_time() - cpu0


def _ignore() -> None:
    pass


async def socket_sessions(calls: int) -> float:
    """CPU seconds for what the relay does with a call's sockets alone (no SDP work):
    two port pairs bound and read by the loop, then unregistered, closed, released."""
    pool = PortPool(HOST, 12000, 19999)
    loop = asyncio.get_running_loop()
    cpu0 = time.process_time()
    for _ in range(calls):
        pairs = [pool.allocate(), pool.allocate()]
        for pair in pairs:
            loop.add_reader(pair.rtp_sock, _ignore)
            loop.add_reader(pair.rtcp_sock, _ignore)
        for pair in pairs:
            for sock in (pair.rtp_sock, pair.rtcp_sock):
                loop.remove_reader(sock)
                sock.close()
            pool.release(pair.port)
    return time.process_time() - cpu0


async def main(calls: int, live: int) -> None:
    relay = RtpRelay(RelayConfig(bind_address=HOST, port_min=12000, port_max=19999))
    await relay.start()
    await full_sessions(relay, min(calls, 2000), live)  # warm-up
    full = await full_sessions(relay, calls, live)
    await relay.close()
    sockets = await socket_sessions(calls)
    print(
        f"offer+answer+delete: {1e6 * full / calls:.1f} us CPU per call "
        f"({calls} calls, {live} up at a time)",
        flush=True,
    )
    print(
        f"sockets only (4 per call, open+close): {1e6 * sockets / calls:.1f} us CPU per call",
        flush=True,
    )
    process = RelayProcess(RelayConfig(bind_address=HOST, port_min=12000, port_max=19999))
    await process.start()
    assert process.pid is not None
    await full_sessions(process, min(calls, 2000), live)
    child0 = _child_cpu(process.pid)
    parent = await full_sessions(process, calls, live)
    child = _child_cpu(process.pid) - child0
    await process.close()
    print(
        f"relay-process: {1e6 * parent / calls:.1f} us CPU per call in the caller, "
        f"{1e6 * child / calls:.1f} us in the relay process",
        flush=True,
    )


def _child_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--live", type=int, default=200, help="calls up at any time")
    args = parser.parse_args()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"# {os.cpu_count()} CPUs, load average {load}, python {sys.version.split()[0]}")
    uvloop.run(main(args.calls, args.live))
    print(f"# load average after: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
