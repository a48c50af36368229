"""Transactions waiting out their timers drop their messages' parsed views after
`COMPACT_AFTER` seconds (`Message.compact`), without changing what goes on the wire or
what matches."""

from __future__ import annotations

from opentrunk.sip.message import Request, make_response, parse_message
from opentrunk.sip.transaction import (
    COMPACT_AFTER,
    Address,
    RequestReceived,
    SendMessage,
    ServerTransaction,
    State,
    TransactionLayer,
)

PEER = Address("udp", "127.0.0.1", 5070)

BYE = (
    "BYE sip:bob@127.0.0.1 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKcompact1\r\n"
    "Max-Forwards: 70\r\n"
    "To: Bob <sip:bob@127.0.0.1>;tag=b1\r\n"
    "From: Alice <sip:alice@127.0.0.1>;tag=a1\r\n"
    "Call-ID: compact@127.0.0.1\r\n"
    "CSeq: 2 BYE\r\n"
    "Content-Length: 0\r\n\r\n"
)


def bye() -> Request:
    msg = parse_message(BYE.encode())
    assert isinstance(msg, Request)
    return msg


def test_compact_drops_views_and_keeps_the_message() -> None:
    msg = bye()
    before = (msg.to_bytes(), msg.top_via.branch, msg.from_.tag, msg.to.tag, msg.cseq.number)
    assert msg._cache  # the views above were cached
    msg.compact()
    assert msg._cache == {} and msg.headers._index is None
    after = (msg.to_bytes(), msg.top_via.branch, msg.from_.tag, msg.to.tag, msg.cseq.number)
    assert after == before


def test_completed_server_transaction_is_compacted_and_still_answers() -> None:
    layer = TransactionLayer()
    got = layer.receive(bye(), PEER, 0.0)
    assert isinstance(got[0], RequestReceived)
    txn = got[0].transaction
    assert isinstance(txn, ServerTransaction)
    ok = make_response(txn.request, 200)
    wire = ok.to_bytes()
    layer.send_response(txn, ok, 0.1)
    assert txn.state is State.COMPLETED
    assert txn.request.to.tag == "b1" and txn.request._cache  # views in use

    # Before COMPACT_AFTER nothing is dropped; after it, the next input compacts.
    layer.receive(bye(), PEER, 0.1 + COMPACT_AFTER / 2)
    assert txn.request._cache
    resent = layer.receive(bye(), PEER, 0.2 + COMPACT_AFTER)
    assert txn.request._cache == {} and ok._cache == {}
    assert txn.request.headers._index is None and ok.headers._index is None
    # The retransmitted BYE still matched and got the same 200, octet for octet.
    assert len(resent) == 1 and isinstance(resent[0], SendMessage)
    assert resent[0].message is ok and resent[0].message.to_bytes() == wire
    assert resent[0].dest == PEER
    # The views come back on demand.
    assert txn.request.to.tag == "b1" and txn.branch == "z9hG4bKcompact1"


def test_tick_compacts_too() -> None:
    layer = TransactionLayer()
    txn = layer.receive(bye(), PEER, 0.0)[0].transaction  # type: ignore[union-attr]
    assert isinstance(txn, ServerTransaction)
    layer.send_response(txn, make_response(txn.request, 200), 0.0)
    txn.request.top_via  # noqa: B018 - fill the view cache
    assert txn.request._cache
    assert layer.tick(COMPACT_AFTER + 0.1) == []
    assert txn.request._cache == {}
