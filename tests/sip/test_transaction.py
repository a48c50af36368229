"""Transaction layer (RFC 3261 section 17, RFC 6026) driven by a fake clock."""

from __future__ import annotations

import pytest

from opentrunk.sip.clock import FakeClock
from opentrunk.sip.message import Request, Response, make_response, parse_message
from opentrunk.sip.timers import TimerConfig
from opentrunk.sip.transaction import (
    MAGIC_COOKIE,
    Action,
    Address,
    ClientTransaction,
    RequestReceived,
    ResponseReceived,
    SendMessage,
    ServerTransaction,
    State,
    TransactionLayer,
    TransactionStateError,
    TransactionTerminated,
    TransactionTimeout,
    TransportFailed,
    new_branch,
    response_destination,
)

PEER = Address("udp", "127.0.0.1", 5070)
PEER_TCP = Address("tcp", "127.0.0.1", 40000)


def request(
    method: str = "INVITE",
    *,
    branch: str | None = "z9hG4bK776asdhds",
    via: str = "SIP/2.0/UDP 127.0.0.1:5070",
    rport: bool = False,
    cseq: int = 314159,
    to_tag: str | None = None,
    uri: str = "sip:bob@127.0.0.1",
    routes: tuple[str, ...] = (),
) -> Request:
    params = (f";branch={branch}" if branch else "") + (";rport" if rport else "")
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: {via}{params}",
        "Max-Forwards: 70",
        "To: Bob <sip:bob@127.0.0.1>" + (f";tag={to_tag}" if to_tag else ""),
        "From: Alice <sip:alice@127.0.0.1>;tag=1928301774",
        "Call-ID: a84b4c76e66710@127.0.0.1",
        f"CSeq: {cseq} {method}",
        "Contact: <sip:alice@127.0.0.1:5070>",
        *(f"Route: {r}" for r in routes),
        "Content-Length: 0",
        "",
        "",
    ]
    msg = parse_message("\r\n".join(lines).encode())
    assert isinstance(msg, Request)
    return msg


def response_to(req: Request, status: int, to_tag: str | None = "totag1") -> Response:
    """A response as the peer would send it: built, serialized, parsed back."""
    msg = parse_message(make_response(req, status, to_tag=to_tag).to_bytes())
    assert isinstance(msg, Response)
    return msg


def sends(actions: list[Action]) -> list[SendMessage]:
    return [a for a in actions if isinstance(a, SendMessage)]


def of_type(actions: list[Action], kind: type) -> list[Action]:
    return [a for a in actions if isinstance(a, kind)]


def run_until(layer: TransactionLayer, clock: FakeClock, end: float) -> list[tuple[float, Action]]:
    """Tick at every deadline up to `end`; returns (time, action) pairs."""
    fired: list[tuple[float, Action]] = []
    for _ in range(10_000):
        deadline = layer.next_deadline()
        if deadline is None or deadline > end:
            break
        clock.set(max(deadline, clock.now()))
        fired += [(clock.now(), a) for a in layer.tick(clock.now())]
    clock.set(max(end, clock.now()))
    return fired


def test_new_branch_has_cookie_and_randomness() -> None:
    branches = {new_branch() for _ in range(1000)}
    assert len(branches) == 1000
    assert all(b.startswith(MAGIC_COOKIE) and len(b) >= 7 + 16 for b in branches)


# --- INVITE client transaction ------------------------------------------------------------


def test_invite_client_timer_a_doubles_and_timer_b_times_out() -> None:
    layer, clock = TransactionLayer(), FakeClock()
    req = request(branch=None, via="SIP/2.0/UDP 127.0.0.1:5060")
    txn, actions = layer.send_request(req, PEER, clock.now())
    assert req.top_via.branch is not None and req.top_via.branch.startswith(MAGIC_COOKIE)
    assert sends(actions)[0].message is req and sends(actions)[0].dest == PEER
    assert txn.state is State.CALLING
    fired = run_until(layer, clock, 40.0)
    retransmits = [t for t, a in fired if isinstance(a, SendMessage)]
    assert retransmits == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    timeouts = [(t, a) for t, a in fired if isinstance(a, TransactionTimeout)]
    assert [(t, a.timer) for t, a in timeouts] == [(32.0, "B")]  # type: ignore[attr-defined]
    assert isinstance(fired[-1][1], TransactionTerminated)
    assert txn.terminated and len(layer) == 0
    assert layer.next_deadline() is None


def test_invite_client_over_tcp_does_not_retransmit() -> None:
    layer, clock = TransactionLayer(), FakeClock()
    layer.send_request(request(via="SIP/2.0/TCP 127.0.0.1:5060"), PEER_TCP, 0.0)
    fired = run_until(layer, clock, 40.0)
    assert not [a for _, a in fired if isinstance(a, SendMessage)]
    assert [t for t, a in fired if isinstance(a, TransactionTimeout)] == [32.0]


def test_invite_client_provisional_stops_retransmission_and_b() -> None:
    layer, clock = TransactionLayer(), FakeClock()
    req = request()
    txn, _ = layer.send_request(req, PEER, 0.0)
    clock.set(0.7)
    layer.tick(clock.now())
    got = layer.receive(response_to(req, 180), PEER, clock.now())
    assert [type(a) for a in got] == [ResponseReceived]
    assert txn.state is State.PROCEEDING
    fired = run_until(layer, clock, 100.0)
    assert fired == []  # no more retransmissions, no timer B: the TU decides (timer C)
    assert len(layer) == 1


def test_invite_client_non_2xx_generates_ack_and_absorbs_retransmissions() -> None:
    layer, clock = TransactionLayer(), FakeClock()
    req = request(routes=("<sip:proxy.test;lr>",))
    txn, _ = layer.send_request(req, PEER, 0.0)
    layer.receive(response_to(req, 100), PEER, 0.1)
    final = response_to(req, 486, to_tag="busytag")
    got = layer.receive(final, PEER, 1.0)
    assert isinstance(got[0], ResponseReceived) and got[0].response is final
    ack = sends(got)[0].message
    assert isinstance(ack, Request) and ack.method == "ACK"
    assert sends(got)[0].dest == PEER
    assert str(ack.uri) == str(req.uri)
    assert ack.top_via.branch == req.top_via.branch and len(ack.vias) == 1
    assert ack.cseq.number == req.cseq.number and ack.cseq.method == "ACK"
    assert ack.to.tag == "busytag"
    assert ack.from_.tag == req.from_.tag and ack.call_id == req.call_id
    assert ack.headers.get_all("Route") == ["<sip:proxy.test;lr>"]
    assert txn.state is State.COMPLETED and txn.ack is ack
    again = layer.receive(response_to(req, 486, to_tag="busytag"), PEER, 2.0)
    assert [type(a) for a in again] == [SendMessage] and again[0].message is ack  # type: ignore[union-attr]
    fired = run_until(layer, clock, 40.0)
    assert [(t, type(a)) for t, a in fired] == [(33.0, TransactionTerminated)]  # timer D: 32 s


def test_invite_client_non_2xx_over_tcp_terminates_at_once() -> None:
    layer = TransactionLayer()
    req = request(via="SIP/2.0/TCP 127.0.0.1:5060")
    txn, _ = layer.send_request(req, PEER_TCP, 0.0)
    got = layer.receive(response_to(req, 503), PEER_TCP, 1.0)
    assert [type(a) for a in got] == [ResponseReceived, SendMessage, TransactionTerminated]
    assert txn.terminated and len(layer) == 0


def test_invite_client_2xx_accepted_state_rfc6026() -> None:
    layer, clock = TransactionLayer(), FakeClock()
    req = request()
    txn, _ = layer.send_request(req, PEER, 0.0)
    ok = layer.receive(response_to(req, 200, to_tag="fork1"), PEER, 1.0)
    assert [type(a) for a in ok] == [ResponseReceived]  # no ACK: that is the TU's
    assert txn.state is State.ACCEPTED
    # A second 2xx (retransmission or another fork) also goes up, still without ACK.
    fork = layer.receive(response_to(req, 200, to_tag="fork2"), PEER, 2.0)
    assert [type(a) for a in fork] == [ResponseReceived]
    assert fork[0].transaction is txn  # type: ignore[union-attr]
    # A late non-2xx in Accepted is dropped.
    assert layer.receive(response_to(req, 500), PEER, 3.0) == []
    fired = run_until(layer, clock, 40.0)
    assert [(t, type(a)) for t, a in fired] == [(33.0, TransactionTerminated)]  # timer M
    stray = layer.receive(response_to(req, 200, to_tag="fork1"), PEER, 41.0)
    assert len(stray) == 1 and isinstance(stray[0], ResponseReceived)
    assert stray[0].transaction is None


# --- non-INVITE client transaction --------------------------------------------------------


def test_non_invite_client_timer_e_caps_at_t2_and_f_times_out() -> None:
    layer, clock = TransactionLayer(), FakeClock()
    txn, _ = layer.send_request(request("OPTIONS"), PEER, 0.0)
    fired = run_until(layer, clock, 40.0)
    retransmits = [t for t, a in fired if isinstance(a, SendMessage)]
    assert retransmits == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert [(t, a.timer) for t, a in fired if isinstance(a, TransactionTimeout)] == [(32.0, "F")]
    assert txn.terminated


def test_non_invite_client_proceeding_retransmits_every_t2() -> None:
    layer, clock = TransactionLayer(), FakeClock()
    req = request("REGISTER")
    txn, _ = layer.send_request(req, PEER, 0.0)
    run_until(layer, clock, 0.6)  # one retransmission at 0.5, next due at 1.5
    layer.receive(response_to(req, 100), PEER, clock.now())
    assert txn.state is State.PROCEEDING
    fired = run_until(layer, clock, 12.0)
    assert [t for t, a in fired if isinstance(a, SendMessage)] == [1.5, 5.5, 9.5]


def test_non_invite_client_final_then_timer_k() -> None:
    layer, clock = TransactionLayer(), FakeClock()
    req = request("OPTIONS")
    txn, _ = layer.send_request(req, PEER, 0.0)
    got = layer.receive(response_to(req, 200), PEER, 0.2)
    assert [type(a) for a in got] == [ResponseReceived]
    assert txn.state is State.COMPLETED
    assert layer.receive(response_to(req, 200), PEER, 0.3) == []  # absorbed
    fired = run_until(layer, clock, 10.0)
    assert [(t, type(a)) for t, a in fired] == [(5.2, TransactionTerminated)]  # K = T4
    tcp_layer = TransactionLayer()
    req2 = request("OPTIONS", via="SIP/2.0/TCP 127.0.0.1:5060")
    tcp_layer.send_request(req2, PEER_TCP, 0.0)
    got = tcp_layer.receive(response_to(req2, 404), PEER_TCP, 0.2)
    assert [type(a) for a in got] == [ResponseReceived, TransactionTerminated]


def test_client_matching_uses_branch_and_cseq_method() -> None:
    layer = TransactionLayer()
    req = request("INVITE")
    layer.send_request(req, PEER, 0.0)
    other = request("INVITE", branch="z9hG4bKother")
    stray = layer.receive(response_to(other, 180), PEER, 0.1)
    assert isinstance(stray[0], ResponseReceived) and stray[0].transaction is None
    # Same branch, CSeq method CANCEL: not the INVITE's transaction.
    cancel_resp = response_to(request("CANCEL"), 200)
    got = layer.receive(cancel_resp, PEER, 0.2)
    assert isinstance(got[0], ResponseReceived) and got[0].transaction is None


def test_send_request_rejects_ack_and_rfc2543_branch_and_duplicates() -> None:
    layer = TransactionLayer()
    with pytest.raises(ValueError):
        layer.send_request(request("ACK"), PEER, 0.0)
    with pytest.raises(ValueError):
        layer.send_request(request(branch="oldstyle1"), PEER, 0.0)
    layer.send_request(request(), PEER, 0.0)
    with pytest.raises(ValueError):
        layer.send_request(request(), PEER, 0.0)


# --- CANCEL (client side) -----------------------------------------------------------------


def test_cancel_waits_for_a_provisional_then_goes_out() -> None:
    layer = TransactionLayer()
    req = request(routes=("<sip:p1.test;lr>",))
    txn, _ = layer.send_request(req, PEER, 0.0)
    cancel_txn, actions = layer.cancel(txn, 0.1)
    assert cancel_txn is None and actions == [] and txn.cancel_pending
    got = layer.receive(response_to(req, 180), PEER, 0.3)
    assert isinstance(got[0], ResponseReceived)
    cancel = sends(got)[0].message
    assert isinstance(cancel, Request) and cancel.method == "CANCEL"
    assert cancel.top_via.branch == req.top_via.branch
    assert cancel.cseq.number == req.cseq.number and cancel.cseq.method == "CANCEL"
    assert str(cancel.uri) == str(req.uri) and cancel.to.tag is None
    assert cancel.headers.get_all("Route") == ["<sip:p1.test;lr>"]
    assert txn.cancel_transaction is not None and not txn.cancel_pending
    assert txn.cancel_transaction.method == "CANCEL"
    # The 200 to CANCEL goes to the CANCEL transaction, the 487 to the INVITE one.
    ok = layer.receive(response_to(cancel, 200), PEER, 0.4)
    assert ok[0].transaction is txn.cancel_transaction  # type: ignore[union-attr]
    terminated = layer.receive(response_to(req, 487), PEER, 0.5)
    assert terminated[0].transaction is txn  # type: ignore[union-attr]
    assert sends(terminated)[0].message.method == "ACK"  # type: ignore[union-attr]
    # Nothing left to cancel.
    assert layer.cancel(txn, 0.6) == (txn.cancel_transaction, [])


def test_cancel_in_proceeding_is_immediate_and_after_final_is_noop() -> None:
    layer = TransactionLayer()
    req = request()
    txn, _ = layer.send_request(req, PEER, 0.0)
    layer.receive(response_to(req, 183), PEER, 0.1)
    cancel_txn, actions = layer.cancel(txn, 0.2)
    assert isinstance(cancel_txn, ClientTransaction)
    assert sends(actions)[0].message.method == "CANCEL"  # type: ignore[union-attr]
    req2 = request(branch="z9hG4bKsecond")
    txn2, _ = layer.send_request(req2, PEER, 0.0)
    layer.receive(response_to(req2, 200), PEER, 0.1)
    assert layer.cancel(txn2, 0.2) == (None, [])
    with pytest.raises(ValueError):
        layer.cancel(layer.send_request(request("OPTIONS"), PEER, 0.0)[0], 0.0)


# --- INVITE server transaction ------------------------------------------------------------


def test_invite_server_sends_100_after_200ms_and_absorbs_retransmissions() -> None:
    layer = TransactionLayer()
    inv = request()
    got = layer.receive(inv, PEER, 0.0)
    assert len(got) == 1 and isinstance(got[0], RequestReceived)
    txn = got[0].transaction
    assert isinstance(txn, ServerTransaction) and txn.state is State.PROCEEDING
    assert layer.next_deadline() == pytest.approx(0.2)
    trying = layer.tick(0.2)
    assert len(trying) == 1 and isinstance(trying[0], SendMessage)
    assert isinstance(trying[0].message, Response) and trying[0].message.status == 100
    assert trying[0].message.to.tag is None
    # Retransmitted INVITE: the last provisional again, and nothing for the TU.
    again = layer.receive(request(), PEER, 0.5)
    assert [type(a) for a in again] == [SendMessage]
    assert again[0].message.status == 100  # type: ignore[union-attr]
    ringing = make_response(txn.request, 180, to_tag="srv1")
    assert sends(layer.send_response(txn, ringing, 1.0))[0].message is ringing
    again = layer.receive(request(), PEER, 1.5)
    assert [a.message for a in sends(again)] == [ringing]


def test_invite_server_no_100_when_tu_answers_quickly_and_immediate_option() -> None:
    layer = TransactionLayer()
    txn = layer.receive(request(), PEER, 0.0)[0].transaction  # type: ignore[union-attr]
    assert isinstance(txn, ServerTransaction)
    layer.send_response(txn, make_response(txn.request, 180, to_tag="x"), 0.1)
    assert layer.tick(0.3) == []
    eager = TransactionLayer(TimerConfig(trying_delay=0.0))
    got = eager.receive(request(), PEER, 0.0)
    assert [type(a) for a in got] == [RequestReceived, SendMessage]
    assert got[1].message.status == 100  # type: ignore[union-attr]
    # An INVITE retransmitted before the TU or the timer answered gets a 100 at once.
    lazy = TransactionLayer()
    lazy.receive(request(), PEER, 0.0)
    assert sends(lazy.receive(request(), PEER, 0.1))[0].message.status == 100  # type: ignore[union-attr]
    assert lazy.tick(0.3) == []


def test_invite_server_non_2xx_timer_g_until_ack_then_timer_i() -> None:
    layer, clock = TransactionLayer(), FakeClock()
    txn = layer.receive(request(), PEER, 0.0)[0].transaction  # type: ignore[union-attr]
    assert isinstance(txn, ServerTransaction)
    busy = make_response(txn.request, 486, to_tag="srv")
    layer.send_response(txn, busy, 0.0)
    assert txn.state is State.COMPLETED
    fired = run_until(layer, clock, 4.0)
    assert [t for t, a in fired if isinstance(a, SendMessage)] == [0.5, 1.5, 3.5]
    assert sends(layer.receive(request(), PEER, 4.0))[0].message is busy  # INVITE again
    ack = request("ACK", to_tag="srv")
    assert layer.receive(ack, PEER, 4.1) == []  # absorbed, not for the TU
    assert txn.state is State.CONFIRMED
    assert layer.receive(request("ACK", to_tag="srv"), PEER, 4.2) == []
    fired = run_until(layer, clock, 20.0)
    assert [(round(t, 3), type(a)) for t, a in fired] == [(9.1, TransactionTerminated)]  # T4


def test_invite_server_timer_h_without_ack() -> None:
    layer, clock = TransactionLayer(), FakeClock()
    txn = layer.receive(request(), PEER, 0.0)[0].transaction  # type: ignore[union-attr]
    assert isinstance(txn, ServerTransaction)
    layer.send_response(txn, make_response(txn.request, 603, to_tag="srv"), 0.0)
    fired = run_until(layer, clock, 40.0)
    assert [t for t, a in fired if isinstance(a, SendMessage)] == [
        0.5,
        1.5,
        3.5,
        7.5,
        11.5,
        15.5,
        19.5,
        23.5,
        27.5,
        31.5,
    ]
    assert [(t, a.timer) for t, a in fired if isinstance(a, TransactionTimeout)] == [(32.0, "H")]
    assert txn.terminated


def test_invite_server_over_tcp_no_g_and_immediate_end_on_ack() -> None:
    layer, clock = TransactionLayer(), FakeClock()
    inv = request(via="SIP/2.0/TCP 127.0.0.1:5060")
    txn = layer.receive(inv, PEER_TCP, 0.0)[0].transaction  # type: ignore[union-attr]
    assert isinstance(txn, ServerTransaction)
    layer.send_response(txn, make_response(txn.request, 404, to_tag="t"), 0.0)
    assert [a for _, a in run_until(layer, clock, 5.0) if isinstance(a, SendMessage)] == []
    ack = request("ACK", via="SIP/2.0/TCP 127.0.0.1:5060", to_tag="t")
    assert [type(a) for a in layer.receive(ack, PEER_TCP, 5.0)] == [TransactionTerminated]


def test_invite_server_2xx_accepted_state_rfc6026() -> None:
    layer, clock = TransactionLayer(), FakeClock()
    txn = layer.receive(request(), PEER, 0.0)[0].transaction  # type: ignore[union-attr]
    assert isinstance(txn, ServerTransaction)
    ok = make_response(txn.request, 200, to_tag="srv")
    layer.send_response(txn, ok, 0.1)
    assert txn.state is State.ACCEPTED
    # Retransmitted INVITE: absorbed; the 2xx retransmission is the TU's job.
    assert layer.receive(request(), PEER, 0.6) == []
    assert sends(layer.send_response(txn, ok, 0.6))[0].message is ok
    # ACK for the 2xx (its own branch) goes to the TU without a transaction...
    ack = request("ACK", branch="z9hG4bKack2xx", to_tag="srv")
    got = layer.receive(ack, PEER, 0.7)
    assert isinstance(got[0], RequestReceived) and got[0].transaction is None
    # ...and one that does match the transaction is passed up with it.
    matching = layer.receive(request("ACK", to_tag="srv"), PEER, 0.8)
    assert isinstance(matching[0], RequestReceived) and matching[0].transaction is txn
    with pytest.raises(TransactionStateError):
        layer.send_response(txn, make_response(txn.request, 500, to_tag="srv"), 0.9)
    fired = run_until(layer, clock, 40.0)
    assert [(round(t, 3), type(a)) for t, a in fired] == [(32.1, TransactionTerminated)]  # L
    # After Timer L an INVITE with that branch is a new request again.
    assert isinstance(layer.receive(request(), PEER, 41.0)[0], RequestReceived)


# --- non-INVITE server transaction --------------------------------------------------------


def test_non_invite_server_states_and_timer_j() -> None:
    layer, clock = TransactionLayer(), FakeClock()
    got = layer.receive(request("BYE", to_tag="x"), PEER, 0.0)
    txn = got[0].transaction  # type: ignore[union-attr]
    assert isinstance(txn, ServerTransaction) and txn.state is State.TRYING
    assert layer.receive(request("BYE", to_tag="x"), PEER, 0.1) == []  # Trying: absorbed
    prov = make_response(txn.request, 100)
    layer.send_response(txn, prov, 0.2)
    assert txn.state is State.PROCEEDING
    assert sends(layer.receive(request("BYE", to_tag="x"), PEER, 0.3))[0].message is prov
    ok = make_response(txn.request, 200)
    layer.send_response(txn, ok, 0.4)
    assert txn.state is State.COMPLETED
    assert sends(layer.receive(request("BYE", to_tag="x"), PEER, 0.5))[0].message is ok
    with pytest.raises(TransactionStateError):
        layer.send_response(txn, ok, 0.6)
    fired = run_until(layer, clock, 40.0)
    assert [(round(t, 3), type(a)) for t, a in fired] == [(32.4, TransactionTerminated)]  # J


def test_non_invite_server_over_tcp_terminates_on_final() -> None:
    layer = TransactionLayer()
    txn = layer.receive(request("OPTIONS", via="SIP/2.0/TCP h.test:5060"), PEER_TCP, 0.0)[0]
    st = txn.transaction  # type: ignore[union-attr]
    assert isinstance(st, ServerTransaction)
    got = layer.send_response(st, make_response(st.request, 200), 0.1)
    assert [type(a) for a in got] == [SendMessage, TransactionTerminated]
    assert got[0].dest == PEER_TCP  # type: ignore[union-attr]


def test_non_invite_server_dropped_when_tu_never_answers() -> None:
    layer, clock = TransactionLayer(), FakeClock()
    layer.receive(request("OPTIONS"), PEER, 0.0)
    fired = run_until(layer, clock, 40.0)
    assert [(t, type(a)) for t, a in fired] == [(32.0, TransactionTerminated)]
    assert len(layer) == 0


# --- matching -----------------------------------------------------------------------------


def test_server_matching_includes_sent_by_and_method() -> None:
    layer = TransactionLayer()
    layer.receive(request(), PEER, 0.0)
    # Same branch from another sent-by: a different transaction, a new request.
    other = layer.receive(request(via="SIP/2.0/UDP 127.0.0.2:5070"), PEER, 0.1)
    assert isinstance(other[0], RequestReceived) and other[0].transaction is not None
    # Same branch, CANCEL: its own transaction, linked to the INVITE one.
    inv_txn = layer.find_cancelled(request("CANCEL"))
    assert inv_txn is not None and inv_txn.method == "INVITE"
    got = layer.receive(request("CANCEL"), PEER, 0.2)
    assert isinstance(got[0], RequestReceived)
    assert got[0].cancels is inv_txn
    assert got[0].transaction is not None and got[0].transaction.method == "CANCEL"
    assert len(layer) == 3
    lone = layer.receive(request("CANCEL", branch="z9hG4bKnothing"), PEER, 0.3)
    assert isinstance(lone[0], RequestReceived) and lone[0].cancels is None


def test_rfc2543_matching_without_magic_cookie() -> None:
    layer = TransactionLayer()
    old = dict(branch=None, via="SIP/2.0/UDP 127.0.0.1:5070")
    got = layer.receive(request(**old), PEER, 0.0)  # type: ignore[arg-type]
    txn = got[0].transaction  # type: ignore[union-attr]
    assert isinstance(txn, ServerTransaction)
    assert txn.key[0] == "rfc2543"
    # Retransmission recognised: no second RequestReceived.
    assert not of_type(layer.receive(request(**old), PEER, 0.1), RequestReceived)  # type: ignore[arg-type]
    # A different CSeq is a new request.
    assert of_type(layer.receive(request(cseq=2, **old), PEER, 0.1), RequestReceived)  # type: ignore[arg-type]
    layer.send_response(txn, make_response(txn.request, 480, to_tag="z"), 0.2)
    ack = request("ACK", to_tag="z", **old)  # type: ignore[arg-type]
    assert layer.receive(ack, PEER, 0.3) == []
    assert txn.state is State.CONFIRMED
    cancel = request("CANCEL", branch="1234", via="SIP/2.0/UDP 127.0.0.1:5070")
    assert layer.find_cancelled(cancel) is None  # different top Via (branch=1234)
    assert layer.find_cancelled(request("CANCEL", **old)) is txn  # type: ignore[arg-type]


def test_responses_go_to_the_real_source() -> None:
    layer = TransactionLayer()
    nat = Address("udp", "127.0.0.9", 61000)
    got = layer.receive(request(rport=True, via="SIP/2.0/UDP 10.0.0.1:5060"), nat, 0.0)
    txn = got[0].transaction  # type: ignore[union-attr]
    assert isinstance(txn, ServerTransaction)
    assert txn.response_dest == nat  # rport asked for: source IP and port, not the Via's
    resp = make_response(txn.request, 200)
    assert layer.send_response(txn, resp, 0.1)[0].dest == nat  # type: ignore[union-attr]
    # Without rport: the source address, but the sent-by port (RFC 3261 18.2.2).
    got = layer.receive(
        request("OPTIONS", branch="z9hG4bKnorport", via="SIP/2.0/UDP 10.0.0.1:5080"), nat, 0.0
    )
    txn2 = got[0].transaction  # type: ignore[union-attr]
    assert isinstance(txn2, ServerTransaction)
    assert txn2.response_dest == Address("udp", "127.0.0.9", 5080)
    got = layer.receive(
        request("OPTIONS", branch="z9hG4bKnoport", via="SIP/2.0/UDP 127.0.0.9"), nat, 0.0
    )
    txn3 = got[0].transaction  # type: ignore[union-attr]
    assert isinstance(txn3, ServerTransaction)
    assert txn3.response_dest == Address("udp", "127.0.0.9", 5060)
    # A stream: the same connection, whatever the Via says.
    stream = Address("tls", "127.0.0.9", 40001)
    tls_via = request(via="SIP/2.0/TLS 10.0.0.1:5061").top_via
    assert response_destination(tls_via, stream) == stream


# --- transport errors, malformed input, deadlines -----------------------------------------


def test_transport_error_for_a_transaction_and_for_an_address() -> None:
    layer = TransactionLayer()
    txn, _ = layer.send_request(request(), PEER, 0.0)
    got = layer.transport_error(txn, 0.1)
    assert [type(a) for a in got] == [TransportFailed, TransactionTerminated]
    assert txn.terminated and layer.transport_error(txn, 0.2) == []
    a, _ = layer.send_request(request("OPTIONS", branch="z9hG4bKa"), PEER, 0.0)
    b, _ = layer.send_request(request("OPTIONS", branch="z9hG4bKb"), PEER_TCP, 0.0)
    srv = layer.receive(request("BYE", branch="z9hG4bKc", to_tag="t"), PEER, 0.0)[0]
    got = layer.transport_error(PEER, 0.3)
    failed = {id(x.transaction) for x in got if isinstance(x, TransportFailed)}
    assert failed == {id(a), id(srv.transaction)}  # type: ignore[union-attr]
    assert not b.terminated and len(layer) == 1


def test_malformed_key_headers_are_dropped() -> None:
    layer = TransactionLayer()
    bare = Request("OPTIONS", "sip:x@127.0.0.1", [("Call-ID", "x"), ("CSeq", "1 OPTIONS")])
    assert layer.receive(bare, PEER, 0.0) == []
    assert layer.receive(Response(200, headers=[("CSeq", "1 OPTIONS")]), PEER, 0.0) == []
    assert len(layer) == 0


def test_next_deadline_tracks_the_earliest_live_timer() -> None:
    layer = TransactionLayer()
    assert layer.next_deadline() is None
    req = request("OPTIONS")
    layer.send_request(req, PEER, 10.0)
    assert layer.next_deadline() == 10.5  # timer E
    layer.receive(response_to(req, 200), PEER, 10.1)
    assert layer.next_deadline() == pytest.approx(15.1)  # E and F gone, K = T4
    assert layer.tick(15.0) == []
    assert len(layer.tick(15.1)) == 1
    assert layer.next_deadline() is None


def test_custom_t1_scales_every_timer() -> None:
    layer, clock = TransactionLayer(TimerConfig(t1=0.1, t2=0.4)), FakeClock()
    layer.send_request(request("OPTIONS"), PEER, 0.0)
    fired = run_until(layer, clock, 10.0)
    assert [round(t, 3) for t, a in fired if isinstance(a, SendMessage)] == [
        0.1,
        0.3,
        0.7,
        1.1,
        1.5,
        1.9,
        2.3,
        2.7,
        3.1,
        3.5,
        3.9,
        4.3,
        4.7,
        5.1,
        5.5,
        5.9,
        6.3,
    ]
    assert [round(t, 3) for t, a in fired if isinstance(a, TransactionTimeout)] == [6.4]


def test_fake_clock_only_moves_forward() -> None:
    clock = FakeClock(5.0)
    assert clock.advance(1.5) == 6.5 and clock.now() == 6.5
    with pytest.raises(ValueError):
        clock.advance(-1)
    with pytest.raises(ValueError):
        clock.set(6.0)
