"""Relay throughput and added latency: the embedded relay, then rtpengine, same load.

The relay runs as it does with OPENTRUNK_MEDIA_BACKEND=relay-process: `RelayProcess`
starts the relay worker, and this script only drives it over the control channel.
The worker (or rtpengine, its own process) is pinned to CPU 0; the load generator
is two other processes (sender, receiver) pinned to CPU 1, so it never shares the
relay's core. Each call has two legs; every leg's peer sends one 172-byte G.711
packet per 20 ms, so N calls offer 100 * N packets/s to the relay, which forwards
each one. Each packet carries its send time (CLOCK_MONOTONIC, shared by all
processes); the receiver computes one-way latency. "Added" latency is
through-relay minus a direct run of the same load from the generator to itself
(same packets, no relay), percentile by percentile.

`--priority fifo` runs the relay, rtpengine and the generator under SCHED_FIFO
(root only): on a machine shared with other work it measures what the relay adds
rather than how long the scheduler kept it off its core; `--priority none` shows
the latter. rtpengine runs with `--num-threads` 1 by default: one worker thread on
its one core, like the relay's one event loop.

Prints: offered and forwarded packets/s, loss, p50/p99/p99.9/max latency (direct,
through the relay, added), relay CPU use and its capacity per core.

    .venv/bin/python bench/media_relay.py --calls 400 --seconds 30 --priority fifo
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from multiprocessing.connection import Connection

import uvloop

from opentrunk.media.relay import RelayConfig
from opentrunk.media.relay_process import RelayProcess
from opentrunk.media.rtpengine import RtpengineBackend

HOST = "127.0.0.1"
PAYLOAD = 160
SOCKETS = 8  # generator sockets; calls are spread over them
STAMP = struct.Struct("!Q")
NICE = [0]
FIFO = [False]
FIFO_PRIORITY = 10
Latency = tuple[int, int, int, int]  # p50, p99, p99.9, max (ns)
Result = tuple[int, int, Latency]  # sent, received, latency


def favour(pid: int) -> None:
    """The scheduling the run asked for, applied to one process (0: this one)."""
    if FIFO[0]:
        os.sched_setscheduler(pid, os.SCHED_FIFO, os.sched_param(FIFO_PRIORITY))


def pin(cpu: int, pid: int = 0) -> None:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > cpu:
        os.sched_setaffinity(pid, {cpu})


def generator_process(cpu: int) -> None:
    os.nice(-os.nice(0))  # normal priority unless the run favours everything it measures
    pin(cpu)
    favour(0)


def make_sockets() -> list[socket.socket]:
    out = []
    for _ in range(SOCKETS):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
        sock.bind((HOST, 0))
        out.append(sock)
    return out


def sender(socks: list[socket.socket], conn: Connection, cpu: int) -> None:
    """Wait for (destinations, seconds); send one packet per destination per 20 ms."""
    generator_process(cpu)
    dests, seconds = conn.recv()
    header = struct.Struct("!BBHII")
    buf = bytearray(12 + PAYLOAD)  # reused: the generator must not be the bottleneck
    stamp_into = STAMP.pack_into
    n = len(dests)
    per_ms = n / 20.0
    seqs = [0] * n
    sent = 0
    start = time.monotonic()
    end = start + seconds
    due = 0.0
    i = 0
    while True:
        now = time.monotonic()
        if now >= end:
            break
        due += per_ms
        burst = int(due)
        due -= burst
        for _ in range(burst):
            sock_index, dest = dests[i]
            seq = seqs[i]
            seqs[i] = (seq + 1) & 0xFFFF
            header.pack_into(buf, 0, 0x80, 0, seq, seq * 160, i)
            stamp_into(buf, 12, time.monotonic_ns())
            socks[sock_index].sendto(buf, dest)
            sent += 1
            i = (i + 1) % n
        # Pace to 1 ms slots.
        sleep_for = start + (sent / max(per_ms, 1e-9)) / 1000.0 - time.monotonic()
        if sleep_for > 0:
            time.sleep(sleep_for)
    conn.send(sent)


def receiver(socks: list[socket.socket], conn: Connection, cpu: int) -> None:
    """Receive until told the sender finished plus a drain time; report latencies."""
    import selectors

    generator_process(cpu)
    seconds = conn.recv()
    sel = selectors.DefaultSelector()
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    latencies: list[int] = []
    received = 0
    end = time.monotonic() + seconds + 1.0
    while time.monotonic() < end:
        for key, _ in sel.select(0.05):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            while True:
                try:
                    data = sock.recv(2048)
                except BlockingIOError:
                    break
                now = time.monotonic_ns()
                received += 1
                if len(data) >= 20:
                    latencies.append(now - STAMP.unpack_from(data, 12)[0])
    latencies.sort()
    n = len(latencies)
    percentiles = (
        (latencies[n // 2], latencies[int(n * 0.99)], latencies[int(n * 0.999)], latencies[-1])
        if n
        else (0, 0, 0, 0)
    )
    conn.send((received, percentiles))


def sdp(port: int) -> bytes:
    return (
        f"v=0\r\no=gen 1 1 IN IP4 {HOST}\r\ns=-\r\nc=IN IP4 {HOST}\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
    ).encode()


def sdp_port(body: bytes) -> int:
    for line in body.decode().split("\r\n"):
        if line.startswith("m=audio "):
            return int(line.split()[1])
    raise ValueError("no audio line")


def run_load(
    socks: list[socket.socket], dests: list[tuple[int, tuple[str, int]]], seconds: float
) -> Result:
    """Start the generator processes on CPU 1; returns (sent, received, latency)."""
    ctx = mp.get_context("fork")
    s_parent, s_child = ctx.Pipe()
    r_parent, r_child = ctx.Pipe()
    cpu = 1 if (os.cpu_count() or 1) > 1 else 0
    procs = [
        ctx.Process(target=sender, args=(socks, s_child, cpu)),
        ctx.Process(target=receiver, args=(socks, r_child, cpu)),
    ]
    for p in procs:
        p.start()
    r_parent.send(seconds)
    s_parent.send((dests, seconds))
    sent = s_parent.recv()
    received, latency = r_parent.recv()
    for p in procs:
        p.join(10)
    return sent, received, latency


async def setup_calls(
    backend: RelayProcess | RtpengineBackend, socks: list[socket.socket], calls: int
) -> list[tuple[int, tuple[str, int]]]:
    dests: list[tuple[int, tuple[str, int]]] = []
    for n in range(calls):
        a_sock, b_sock = (2 * n) % SOCKETS, (2 * n + 1) % SOCKETS
        a_port = socks[a_sock].getsockname()[1]
        b_port = socks[b_sock].getsockname()[1]
        to_b = await backend.offer(f"bench-{n}", "a", sdp(a_port))
        to_a = await backend.answer(f"bench-{n}", "b", sdp(b_port))
        dests.append((a_sock, (HOST, sdp_port(to_a))))
        dests.append((b_sock, (HOST, sdp_port(to_b))))
    return dests


def report(
    name: str,
    calls: int,
    seconds: float,
    result: Result,
    direct: Result | None,
    cpu: float | None,
) -> None:
    sent, received, latency = result
    loss = 100.0 * (sent - received) / sent if sent else 0.0
    ms = "/".join(f"{x / 1e6:.3f}" for x in latency)
    line = (
        f"{name:10s} calls={calls} offered={sent / seconds:,.0f} pps "
        f"forwarded={received / seconds:,.0f} pps loss={loss:.3f}% "
        f"latency p50/p99/p99.9/max={ms} ms"
    )
    if direct is not None:
        pairs = zip(latency[:3], direct[2][:3], strict=True)
        added = "/".join(f"{(x - d) / 1e6:.3f}" for x, d in pairs)
        line += f" added p50/p99/p99.9={added} ms"
    if cpu is not None:
        # Forwarded packets per CPU-second the relay used: its capacity on one whole core,
        # a figure that holds even when other work on the machine takes part of the core.
        capacity = received / seconds / cpu if cpu > 0 else 0.0
        line += f" relay-cpu={100 * cpu:.0f}% capacity={capacity:,.0f} pps/core"
    print(line, flush=True)


def bench_direct(calls: int, seconds: float) -> Result:
    socks = make_sockets()
    dests = [(i % SOCKETS, socks[(i + 1) % SOCKETS].getsockname()) for i in range(2 * calls)]
    result = run_load(socks, dests, seconds)
    for s in socks:
        s.close()
    return result


def bench_relay(calls: int, seconds: float) -> tuple[Result, float]:
    socks = make_sockets()

    async def main() -> tuple[Result, float]:
        relay = RelayProcess(RelayConfig(bind_address=HOST, port_min=46000, port_max=49999))
        await relay.start()
        pid = relay.pid
        assert pid is not None
        pin(0, pid)
        os.setpriority(os.PRIO_PROCESS, pid, NICE[0])
        favour(pid)
        dests = await setup_calls(relay, socks, calls)
        loop = asyncio.get_running_loop()
        cpu0, wall0 = _proc_cpu_seconds(pid), time.monotonic()
        # The load runs in other processes, the relay in its own; this loop only waits.
        result = await loop.run_in_executor(None, run_load, socks, dests, seconds)
        cpu = (_proc_cpu_seconds(pid) - cpu0) / (time.monotonic() - wall0)
        await relay.close()
        return result, cpu

    try:
        return uvloop.run(main())
    finally:
        for s in socks:
            s.close()


def _proc_cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_rtpengine(calls: int, seconds: float, threads: int) -> tuple[Result, float] | None:
    binary = shutil.which("rtpengine")
    if binary is None:
        print("rtpengine    not installed (apt-get install -y rtpengine-daemon): skipped")
        return None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((HOST, 0))
        ng_port = probe.getsockname()[1]
    workdir = tempfile.mkdtemp(prefix="rtpengine-bench-")
    cmd = [
        "nice",
        "-n",
        str(NICE[0]),
        "taskset",
        "-c",
        "0",
        *(["chrt", "-f", str(FIFO_PRIORITY)] if FIFO[0] else []),
        binary,
        # Not /etc/rtpengine/rtpengine.conf: its fixed ng/CLI/HTTP ports collide with any
        # other rtpengine on the machine, and its settings are not this benchmark's.
        "--config-file=none",
        f"--num-threads={threads}",
        "--foreground",
        "--log-stderr",
        "--table=-1",
        f"--interface={HOST}",
        f"--listen-ng={HOST}:{ng_port}",
        "--port-min=50000",
        "--port-max=53999",
        "--log-level=3",
        "--delete-delay=0",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=workdir)
    socks = make_sockets()
    try:

        async def main() -> tuple[Result, float]:
            backend = RtpengineBackend(HOST, ng_port)
            for attempt in range(100):
                try:
                    await backend.start()
                    break
                except Exception:
                    if attempt == 99 or proc.poll() is not None:
                        raise
                    await asyncio.sleep(0.1)
            dests = await setup_calls(backend, socks, calls)
            cpu0, wall0 = _proc_cpu_seconds(proc.pid), time.monotonic()
            loop = asyncio.get_running_loop()
            result = await loop.run_in_executor(None, run_load, socks, dests, seconds)
            cpu = (_proc_cpu_seconds(proc.pid) - cpu0) / (time.monotonic() - wall0)
            await backend.close()
            return result, cpu

        return uvloop.run(main())
    finally:
        proc.terminate()
        proc.wait(10)
        for s in socks:
            s.close()
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", default="400", help="comma-separated call counts")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--skip-rtpengine", action="store_true")
    parser.add_argument("--rtpengine-threads", type=int, default=1)
    parser.add_argument(
        "--priority",
        choices=("none", "fifo"),
        default="none",
        help="fifo: SCHED_FIFO for the relay, rtpengine and the generator (root)",
    )
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="niceness of the relay and rtpengine (negative: favour them on a shared machine)",
    )
    args = parser.parse_args()
    NICE[0] = args.nice
    FIFO[0] = args.priority == "fifo"
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"# {os.cpu_count()} CPUs, load average {load}, python {sys.version.split()[0]}, "
        f"priority {args.priority}, nice {args.nice}, {args.seconds:g} s per run"
    )
    for calls in (int(c) for c in args.calls.split(",")):
        direct = bench_direct(calls, args.seconds)
        report("direct", calls, args.seconds, direct, None, None)
        relay, cpu = bench_relay(calls, args.seconds)
        report("relay", calls, args.seconds, relay, direct, cpu)
        if not args.skip_rtpengine:
            engine = bench_rtpengine(calls, args.seconds, args.rtpengine_threads)
            if engine is not None:
                report("rtpengine", calls, args.seconds, engine[0], direct, engine[1])
    print(f"# load average after: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
