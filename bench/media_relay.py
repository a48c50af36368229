"""Relay throughput and added latency: the embedded relay, then rtpengine, same load.

The relay runs as it does with OPENTRUNK_MEDIA_BACKEND=relay-process: `RelayProcess`
starts the relay worker, and this script only drives it over the control channel.
The worker (or rtpengine, its own process) is pinned to CPU 0; the load generator
(bench/media_rtpgen.c, compiled here on first use) is one C process pinned to CPU 1.
Each call has two legs; every leg's peer sends one 172-byte G.711 packet per 20 ms at
its own random phase (spread evenly, as real calls are, not in bursts per time slot),
so N calls offer 100 * N packets/s to the relay, which forwards each one.

Latency is measured between sockets, not between processes: each packet carries the
time (CLOCK_REALTIME) read just before its sendto, and its arrival time is the
kernel's (SO_TIMESTAMPNS, CLOCK_REALTIME), stamped as the datagram enters the
receive path (on loopback, inside the sender's sendto), so the receiver's scheduling
is in no sample. The direct run (the same load from the generator to itself, no
relay) measures that kernel path alone: a few microseconds, its tail the generator
being stopped between its clock read and its sendto. "Added" is each relay-run
percentile minus the direct run's median: per packet, the relay's wake-up, its queue,
its work and its own sendto (the relay's packet crosses the kernel path twice, the
direct one once). Not the difference of two runs' percentiles, which mixes two
distributions.

Loss is counted from what arrives; `rx-drops` are datagrams the kernel dropped at
the relay's (or rtpengine's) own sockets (/proc/net/udp, by the process's socket
inodes), `gen-drops` those dropped at the generator's receiving sockets (not the
relay's loss). `wakeups/pkt` is the relay's voluntary context switches per packet
(how often it ran out of work and slept); `steal` is, per CPU, the time the
hypervisor ran something else during the run (/proc/stat): on a VM a stall no
setting inside it prevents, in the relay and rtpengine alike.

`--quantum-us 1000` releases the packets per millisecond slot, as the old Python
sender did (40 at once at 40,000 pps), to compare arrival patterns. `--churn N` sets
up and tears down N calls/s (no media on them, each held 10 s) during the load: the
control work a relay does beside forwarding. `--per-second` prints, per second of
send time, packets, packets over 1 ms and the worst latency (where the tail is).

`--priority fifo` runs the relay, rtpengine and the generator under SCHED_FIFO
(root only): on a machine shared with other work it measures what the relay adds
rather than how long the scheduler kept it off its core; `--priority none` shows
the latter. rtpengine runs with `--num-threads` 1 by default: one worker thread on
its one core, like the relay's one event loop.

Prints: offered and forwarded packets/s, loss, latency min/p50/p99/p99.9/p99.99/max
and the count over 1 ms, added p50/p99/p99.9, drops, relay CPU over the load's
duration and its capacity per core, wake-ups per packet, the generator's send lag
behind its schedule (pacing quality, not in any latency) and its CPU, steal; the
load average before and after.

    .venv/bin/python bench/media_relay.py --calls 400 --seconds 20 --priority fifo
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import uvloop

from cbuild import built
from opentrunk.media.relay import RelayConfig
from opentrunk.media.relay_process import RelayProcess
from opentrunk.media.rtpengine import RtpengineBackend

HOST = "127.0.0.1"
SOCKETS = 8  # generator sockets; calls are spread over them
FIFO = [False]
NICE = [0]
FIFO_PRIORITY = 10
QUANTUM_US = [0.0]
VERBOSE = [False]
CHURN = [0.0]  # calls/s set up and torn down during the load
CHURN_HOLD_S = 10.0
GENERATOR = Path(__file__).resolve().parent / "media_rtpgen.c"
RELAY_PORTS = (46000, 49999)
RTPENGINE_PORTS = (50000, 53999)
Plan = list[tuple[int, tuple[str, int]]]  # per stream: generator socket, destination


@dataclass
class Result:
    """One run's figures, as the generator printed them (latencies in microseconds)."""

    seconds: float
    figures: dict[str, float] = field(default_factory=dict)
    relay_cpu: float | None = None  # share of one core
    rx_drops: int | None = None
    wakeups: int | None = None  # the relay's voluntary context switches during the run
    steal: tuple[float, ...] = ()  # per CPU, seconds the hypervisor ran something else
    per_second: list[str] = field(default_factory=list)  # "count/over 1 ms/max us"

    def __getitem__(self, key: str) -> float:
        return self.figures.get(key, float("nan"))


def generator_path() -> Path:
    """The compiled generator (built on first use, bench/cbuild.py)."""
    return built(GENERATOR, "rtpgen")


def pin(cpu: int, pid: int = 0) -> None:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > cpu:
        os.sched_setaffinity(pid, {cpu})


def favour(pid: int) -> None:
    """The scheduling the run asked for, applied to one process."""
    if FIFO[0]:
        os.sched_setscheduler(pid, os.SCHED_FIFO, os.sched_param(FIFO_PRIORITY))


def make_sockets() -> list[socket.socket]:
    out = []
    for _ in range(SOCKETS):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
        sock.bind((HOST, 0))
        out.append(sock)
    return out


def run_load(socks: list[socket.socket], plan: Plan, seconds: float) -> Result:
    """Run the C generator on CPU 1 over `socks` (inherited); parse its report."""
    cpu = 1 if (os.cpu_count() or 1) > 1 else 0
    fds = [s.fileno() for s in socks]
    # taskset/chrt rather than a preexec_fn: this runs in an executor thread, where a
    # preexec_fn can deadlock the forked child (the subprocess documentation's warning).
    command = ["taskset", "-c", str(cpu)]
    if FIFO[0]:
        command += ["chrt", "-f", str(FIFO_PRIORITY)]
    lines = "".join(f"{sock} {host} {port}\n" for sock, (host, port) in plan)
    done = subprocess.run(
        [*command, str(generator_path()), str(seconds), str(QUANTUM_US[0]), *map(str, fds)],
        input=lines,
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=False,
        pass_fds=fds,
    )
    if done.returncode != 0:
        raise RuntimeError(f"RTP generator exited {done.returncode}: {done.stderr}")
    result = Result(seconds)
    for line in done.stdout.splitlines():
        key, value = line.split()
        if key.startswith("second_"):
            result.per_second.append(value)
        else:
            result.figures[key] = float(value)
    return result


def udp_drops(pid: int) -> int:
    """Datagrams the kernel dropped at the UDP sockets process `pid` holds (/proc/net/udp
    drops, matched by socket inode: other programs' sockets may share the port range)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    total = 0
    with open("/proc/net/udp") as fh:
        next(fh)
        for line in fh:
            fields = line.split()
            if fields[9] in inodes:
                total += int(fields[-1])
    return total


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


async def setup_calls(
    backend: RelayProcess | RtpengineBackend, socks: list[socket.socket], calls: int
) -> Plan:
    plan: Plan = []
    for n in range(calls):
        a_sock, b_sock = (2 * n) % SOCKETS, (2 * n + 1) % SOCKETS
        a_port = socks[a_sock].getsockname()[1]
        b_port = socks[b_sock].getsockname()[1]
        to_b = await backend.offer(f"bench-{n}", "a", sdp(a_port))
        to_a = await backend.answer(f"bench-{n}", "b", sdp(b_port))
        plan.append((a_sock, (HOST, sdp_port(to_a))))
        plan.append((b_sock, (HOST, sdp_port(to_b))))
    return plan


def report(name: str, calls: int, result: Result, direct: Result | None) -> None:
    sent, received = result["sent"], result["received"]
    seconds = result.seconds
    loss = 100.0 * (sent - received) / sent if sent else 0.0
    keys = ("min_us", "p50_us", "p99_us", "p999_us", "p9999_us", "max_us")
    us = "/".join(f"{result[k]:.0f}" for k in keys)
    line = (
        f"{name:9s} calls={calls} offered={sent / seconds:,.0f} pps "
        f"forwarded={received / seconds:,.0f} pps loss={loss:.3f}% "
        f"latency min/p50/p99/p99.9/p99.99/max={us} us over-1ms={result['over_1ms']:.0f}"
    )
    if direct is not None:
        # The direct path (sendto to socket) is in every relayed packet once more:
        # the relay's own sendto to the receiver. Its median is that path's cost.
        base = direct["p50_us"]
        added = "/".join(f"{result[k] - base:.0f}" for k in ("p50_us", "p99_us", "p999_us"))
        line += f" added p50/p99/p99.9={added} us"
    if result.rx_drops is not None:
        line += f" rx-drops={result.rx_drops}"
    line += f" gen-drops={result['rx_overflow']:.0f}"
    cpu = result.relay_cpu
    if cpu is not None:
        # Forwarded packets per CPU-second the relay used: its capacity on one whole core,
        # a figure that holds even when other work on the machine takes part of the core.
        capacity = received / seconds / cpu if cpu > 0 else 0.0
        line += f" relay-cpu={100 * cpu:.0f}% capacity={capacity:,.0f} pps/core"
    if result.wakeups is not None and received:
        # Voluntary context switches: how often the relay slept for want of packets.
        line += f" wakeups/pkt={result.wakeups / received:.2f}"
    line += (
        f" gen: late p99/max={result['late_p99_us']:.0f}/{result['late_max_us']:.0f} us"
        f" cpu={100 * result['cpu_s'] / seconds:.0f}%"
        f" steal={'/'.join(f'{x:.2f}' for x in result.steal)} s"
    )
    print(line, flush=True)
    if VERBOSE[0]:
        print(f"  per second (packets/over 1 ms/max us): {' '.join(result.per_second)}")


def bench_direct(calls: int, seconds: float) -> Result:
    socks = make_sockets()
    plan = [(i % SOCKETS, socks[(i + 1) % SOCKETS].getsockname()) for i in range(2 * calls)]
    try:
        steal0 = _steal_seconds()
        result = run_load(socks, plan, seconds)
        result.steal = tuple(b - a for a, b in zip(steal0, _steal_seconds(), strict=True))
        return result
    finally:
        for s in socks:
            s.close()


async def _measure(
    backend: RelayProcess | RtpengineBackend,
    pid: int,
    calls: int,
    seconds: float,
) -> Result:
    socks = make_sockets()
    try:
        plan = await setup_calls(backend, socks, calls)
        loop = asyncio.get_running_loop()
        cpu0 = _proc_cpu_seconds(pid)
        drops0, steal0, wakeups0 = udp_drops(pid), _steal_seconds(), _voluntary_switches(pid)
        # The load runs in the generator, the relay in its own process; this loop only
        # sets up and tears down the churn calls, if asked to.
        load = loop.run_in_executor(None, run_load, socks, plan, seconds)
        churning = asyncio.create_task(churn(backend, socks[0].getsockname()[1]))
        try:
            result = await load
        finally:
            await _cancel_until_done([churning])
        # Over the load's duration, not the wall time around it (the generator's start and
        # its final drain second), which would understate the share while loaded.
        result.relay_cpu = (_proc_cpu_seconds(pid) - cpu0) / seconds
        result.rx_drops = udp_drops(pid) - drops0
        result.wakeups = _voluntary_switches(pid) - wakeups0
        result.steal = tuple(b - a for a, b in zip(steal0, _steal_seconds(), strict=True))
        return result
    finally:
        for s in socks:
            s.close()


async def churn(backend: RelayProcess | RtpengineBackend, port: int) -> None:
    """CHURN[0] calls/s set up (offer, answer) and torn down CHURN_HOLD_S later, beside
    the media load: the control work a relay does while it forwards (no media on them)."""
    rate = CHURN[0]
    if rate <= 0:
        return
    live: list[str] = []
    hold = max(1, int(rate * CHURN_HOLD_S))
    start = time.monotonic()
    for k in itertools.count():
        await asyncio.sleep(max(0.0, start + k / rate - time.monotonic()))
        call_id = f"churn-{k}"
        await backend.offer(call_id, "a", sdp(port))
        await backend.answer(call_id, "b", sdp(port))
        live.append(call_id)
        if len(live) > hold:
            await backend.delete(live.pop(0))


def bench_relay(calls: int, seconds: float) -> Result:
    async def main() -> Result:
        relay = RelayProcess(
            RelayConfig(bind_address=HOST, port_min=RELAY_PORTS[0], port_max=RELAY_PORTS[1])
        )
        await relay.start()
        try:
            pid = relay.pid
            assert pid is not None
            pin(0, pid)
            os.setpriority(os.PRIO_PROCESS, pid, NICE[0])
            favour(pid)
            return await _measure(relay, pid, calls, seconds)
        finally:
            await relay.close()

    return uvloop.run(main())


def _steal_seconds() -> tuple[float, ...]:
    """Per CPU, time the hypervisor kept the CPU (/proc/stat `steal`): on a VM, stalls
    no process on the guest can see or prevent, in the relay and the generator alike."""
    tick = os.sysconf("SC_CLK_TCK")
    out = []
    with open("/proc/stat") as fh:
        for line in fh:
            fields = line.split()
            if fields[0].startswith("cpu") and fields[0] != "cpu":
                out.append(int(fields[8]) / tick)
    return tuple(out)


def _voluntary_switches(pid: int) -> int:
    """Over all the process's threads (rtpengine has several, the relay one)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/status") as fh:
            for line in fh:
                if line.startswith("voluntary_ctxt_switches:"):
                    total += int(line.split()[1])
    return total


def _proc_cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _stop_every_task() -> None:
    """Cancel the other tasks until they are done, however often that takes.

    Not backend.close(): it deletes the calls one by one and the daemon is terminated
    anyway. And the backend's watchdog (a query per call per second) can swallow a
    cancellation (Python 3.11's asyncio.wait_for can hide one that races the reply,
    CPython gh-86296), so a single cancel, as close() and the runner's shutdown do,
    hung three runs here.
    """
    current = asyncio.current_task()
    await _cancel_until_done([t for t in asyncio.all_tasks() if t is not current])


async def _cancel_until_done(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel again every half second: see `_stop_every_task` for why once is not enough."""
    while pending := [t for t in tasks if not t.done()]:
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=0.5)


def bench_rtpengine(calls: int, seconds: float, threads: int) -> Result | None:
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
        f"--port-min={RTPENGINE_PORTS[0]}",
        f"--port-max={RTPENGINE_PORTS[1]}",
        "--log-level=3",
        "--delete-delay=0",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=workdir)
    try:

        async def main() -> Result:
            backend = RtpengineBackend(HOST, ng_port)
            for attempt in range(100):
                try:
                    await backend.start()
                    break
                except Exception:
                    if attempt == 99 or proc.poll() is not None:
                        raise
                    await asyncio.sleep(0.1)
            try:
                return await _measure(backend, proc.pid, calls, seconds)
            finally:
                await _stop_every_task()

        return uvloop.run(main())
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", default="400", help="comma-separated call counts")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--skip-rtpengine", action="store_true")
    parser.add_argument("--skip-direct", action="store_true")
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
    parser.add_argument(
        "--quantum-us",
        type=float,
        default=0.0,
        help="release packets on a grid of this many us (0: each when due; 1000: the old "
        "sender's per-millisecond bursts)",
    )
    parser.add_argument("--per-second", action="store_true", help="print each second's tail")
    parser.add_argument(
        "--churn",
        type=float,
        default=0.0,
        help="calls/s set up and torn down (after 10 s) during the load: control work",
    )
    args = parser.parse_args()
    CHURN[0] = args.churn
    VERBOSE[0] = args.per_second
    QUANTUM_US[0] = args.quantum_us
    NICE[0] = args.nice
    FIFO[0] = args.priority == "fifo"
    generator_path()  # compile before anything is timed
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"# {os.cpu_count()} CPUs, load average {load}, python {sys.version.split()[0]}, "
        f"priority {args.priority}, nice {args.nice}, {args.seconds:g} s per run, "
        f"pacing {f'{args.quantum_us:g} us grid' if args.quantum_us else 'each packet when due'}, "
        f"churn {args.churn:g} calls/s"
    )
    for calls in (int(c) for c in args.calls.split(",")):
        direct = None
        if not args.skip_direct:
            direct = bench_direct(calls, args.seconds)
            report("direct", calls, direct, None)
        report("relay", calls, bench_relay(calls, args.seconds), direct)
        if not args.skip_rtpengine:
            engine = bench_rtpengine(calls, args.seconds, args.rtpengine_threads)
            if engine is not None:
                report("rtpengine", calls, engine, direct)
    print(f"# load average after: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
