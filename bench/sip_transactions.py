"""Transaction layer under load: 10,000 simultaneous INVITE transactions, fake clock.

Prints, for the server side (INVITE in, 100 Trying by timer, 180, 200, Timer L) and the
client side (INVITE out, one Timer A retransmission, 180, 486 with the generated ACK,
Timer D):
  * memory per live transaction (tracemalloc; what the layer holds beyond the messages,
    which exist anyway),
  * throughput in complete transactions per second (best of N runs, one core).

Run: .venv/bin/python bench/sip_transactions.py [--count 10000] [--runs 3]
"""

from __future__ import annotations

import argparse
import gc
import time
import tracemalloc
from collections.abc import Callable

from opentrunk.sip.message import Request, Response, make_response, parse_message
from opentrunk.sip.transaction import Address, ServerTransaction, TransactionLayer

PEER = Address("udp", "127.0.0.1", 5070)

INVITE = (
    "INVITE sip:+15551230000@127.0.0.1 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK{n:08d}x;rport\r\n"
    "Max-Forwards: 70\r\n"
    "To: <sip:+15551230000@127.0.0.1>\r\n"
    "From: <sip:+15559870000@127.0.0.1>;tag={n}\r\n"
    "Call-ID: {n}@bench\r\n"
    "CSeq: 1 INVITE\r\n"
    "Contact: <sip:caller@127.0.0.1:5070>\r\n"
    "Content-Length: 0\r\n\r\n"
)


def invites(count: int) -> list[Request]:
    out = []
    for n in range(count):
        msg = parse_message(INVITE.format(n=n).encode())
        assert isinstance(msg, Request)
        out.append(msg)
    return out


def _live_bytes(
    start: Callable[[TransactionLayer, Request], object], requests: list[Request]
) -> float:
    """Bytes still allocated (tracemalloc) per transaction once all are live.

    The returned actions are dropped as a driver would after carrying them out.
    """
    layer = TransactionLayer()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for request in requests:
        start(layer, request)
    gc.collect()
    live = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return live / len(layer)


def server_run(count: int, *, measure_memory: bool) -> tuple[float, float]:
    """(seconds for the whole life of `count` transactions, bytes per live transaction).

    The TU's 180 and 200 are built before the clock starts: building messages is the
    message layer's cost (bench/sip_parse.py); the 100 Trying is built by the layer.
    """
    requests = invites(count)
    per_txn = 0.0
    if measure_memory:
        per_txn = _live_bytes(lambda layer, r: layer.receive(r, PEER, 0.0), requests)
        requests = invites(count)
    answers = [
        (make_response(r, 180, to_tag="b"), make_response(r, 200, to_tag="b")) for r in requests
    ]
    gc.collect()
    layer = TransactionLayer()
    t0 = time.perf_counter()
    txns: list[ServerTransaction] = []
    for req in requests:
        actions = layer.receive(req, PEER, 0.0)
        txn = actions[0].transaction  # type: ignore[union-attr]
        assert isinstance(txn, ServerTransaction)
        txns.append(txn)
    assert len(layer) == count
    trying = layer.tick(0.2)  # 100 Trying for all
    assert len(trying) == count
    for txn, (r180, r200) in zip(txns, answers, strict=True):
        layer.send_response(txn, r180, 1.0)
        layer.send_response(txn, r200, 2.0)
    ended = layer.tick(2.0 + 32.0)
    assert len(ended) == count and len(layer) == 0
    return time.perf_counter() - t0, per_txn


def client_run(count: int, *, measure_memory: bool) -> tuple[float, float]:
    """Same for client transactions; peer responses are parsed before the clock starts."""
    requests = invites(count)
    per_txn = 0.0
    if measure_memory:
        per_txn = _live_bytes(lambda layer, r: layer.send_request(r, PEER, 0.0), requests)
        requests = invites(count)
    ringing = [parse_message(make_response(r, 180, to_tag="c").to_bytes()) for r in requests]
    busy = [parse_message(make_response(r, 486, to_tag="c").to_bytes()) for r in requests]
    for msg in (*ringing, *busy):  # parse the lazily parsed headers ahead, as a driver would
        assert isinstance(msg, Response)
        _ = msg.top_via, msg.cseq
    gc.collect()
    layer = TransactionLayer()
    t0 = time.perf_counter()
    for req in requests:
        layer.send_request(req, PEER, 0.0)
    assert len(layer.tick(0.5)) == count  # one Timer A retransmission each
    for r180, r486 in zip(ringing, busy, strict=True):
        assert isinstance(r180, Response) and isinstance(r486, Response)
        layer.receive(r180, PEER, 0.6)
        layer.receive(r486, PEER, 1.0)  # -> ACK
    ended = layer.tick(1.0 + 32.0)
    assert len(ended) == count and len(layer) == 0
    return time.perf_counter() - t0, per_txn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    for name, run in (("server INVITE", server_run), ("client INVITE", client_run)):
        _, per_txn = run(args.count, measure_memory=True)
        best = min(run(args.count, measure_memory=False)[0] for _ in range(args.runs))
        print(
            f"{name}: {args.count} simultaneous transactions, "
            f"{per_txn:,.0f} bytes per live transaction (tracemalloc), "
            f"{args.count / best:,.0f} complete transactions/s (best of {args.runs})"
        )


if __name__ == "__main__":
    main()
