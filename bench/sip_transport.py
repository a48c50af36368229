"""OPTIONS transactions per second between two SipEndpoints over loopback (UDP and TCP).

One process, one event loop (uvloop unless --default-loop): a client endpoint keeps
`--concurrency` OPTIONS transactions in flight to a server endpoint that answers 200.
Prints completed transactions/s and the p50/p99 transaction time. Best of --runs.

    .venv/bin/python bench/sip_transport.py --count 5000 --concurrency 50
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from opentrunk.sip.dialog import new_tag
from opentrunk.sip.message import Request
from opentrunk.transport.endpoint import IncomingRequest, SipEndpoint


def answer(incoming: IncomingRequest) -> None:
    incoming.respond(200)


async def one_run(transport: str, count: int, concurrency: int) -> tuple[float, list[float], int]:
    server, client = SipEndpoint(answer), SipEndpoint()
    await server.listen(transport, "127.0.0.1", 0)
    await client.listen(transport, "127.0.0.1", 0)
    dest = server.local_address(transport)
    target = server.contact_uri("bench", transport)
    latencies: list[float] = []
    remaining = count

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            request = Request(
                "OPTIONS",
                target,
                [
                    ("From", f"<sip:bench@127.0.0.1>;tag={new_tag()}"),
                    ("To", f"<{target}>"),
                    ("Call-ID", new_tag()),
                    ("CSeq", "1 OPTIONS"),
                ],
            )
            started = time.perf_counter()
            response = await client.send_request(request, dest)
            assert response.status == 200, response.status
            latencies.append(time.perf_counter() - started)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - began
    retransmitted = server.stats.received - count
    await client.close()
    await server.close()
    return count / elapsed, latencies, retransmitted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--default-loop", action="store_true")
    args = parser.parse_args()
    if not args.default_loop:
        import uvloop

        uvloop.install()
    loop_name = "asyncio" if args.default_loop else "uvloop"
    for transport in ("udp", "tcp"):
        best: tuple[float, list[float], int] | None = None
        for _ in range(args.runs):
            result = asyncio.run(one_run(transport, args.count, args.concurrency))
            if best is None or result[0] > best[0]:
                best = result
        assert best is not None
        rate, latencies, retransmitted = best
        quantiles = statistics.quantiles(latencies, n=100)
        print(
            f"{transport.upper()} {loop_name}: {rate:,.0f} OPTIONS transactions/s "
            f"(client+server in one process), p50 {quantiles[49] * 1000:.2f} ms, "
            f"p99 {quantiles[98] * 1000:.2f} ms, concurrency {args.concurrency}, "
            f"{retransmitted} requests retransmitted"
        )


if __name__ == "__main__":
    main()
