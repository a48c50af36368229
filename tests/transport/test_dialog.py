"""Dialog state (RFC 3261 section 12): creation on both sides, routing, CSeq, states."""

from __future__ import annotations

import pytest

from opentrunk.sip.dialog import (
    Dialog,
    DialogError,
    DialogId,
    DialogState,
    dialog_response,
    new_tag,
)
from opentrunk.sip.message import Request, Response, make_response, parse_message
from opentrunk.sip.uri import SipURI

INVITE = (
    b"INVITE sip:bob@127.0.0.1:5080 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-inv1\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bK-prx1\r\n"
    b"Record-Route: <sip:p1.test;lr>\r\n"
    b"Record-Route: <sip:p2.test;lr>\r\n"
    b"Max-Forwards: 70\r\n"
    b'From: "Alice" <sip:alice@127.0.0.1>;tag=a-tag\r\n'
    b"To: <sip:bob@127.0.0.1>\r\n"
    b"Call-ID: call-1@test\r\n"
    b"CSeq: 314 INVITE\r\n"
    b"Contact: <sip:alice@127.0.0.1:5070>\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def invite() -> Request:
    msg = parse_message(INVITE)
    assert isinstance(msg, Request)
    return msg


def uas_dialog() -> Dialog:
    return Dialog.as_uas(invite(), "b-tag", local_seq=1000)


def response_with(status: int, *, contact: str = "<sip:bob@127.0.0.1:5080>") -> Response:
    response = dialog_response(invite(), status, to_tag="b-tag", contact=contact)
    return response


def test_uas_dialog_from_request() -> None:
    dialog = uas_dialog()
    assert dialog.id == DialogId("call-1@test", "b-tag", "a-tag")
    assert dialog.state is DialogState.EARLY
    assert dialog.remote_seq == 314
    assert str(dialog.remote_target) == "sip:alice@127.0.0.1:5070"
    # UAS keeps Record-Route order.
    assert [str(r.uri) for r in dialog.route_set] == ["sip:p1.test;lr", "sip:p2.test;lr"]
    assert not dialog.is_uac


def test_uac_dialog_from_response_reverses_record_route() -> None:
    response = response_with(200)
    dialog = Dialog.as_uac(invite(), response)
    assert dialog.id == DialogId("call-1@test", "a-tag", "b-tag")
    assert dialog.state is DialogState.CONFIRMED
    assert dialog.local_seq == 314 and dialog.remote_seq is None
    assert [str(r.uri) for r in dialog.route_set] == ["sip:p2.test;lr", "sip:p1.test;lr"]
    assert str(dialog.remote_target) == "sip:bob@127.0.0.1:5080"
    assert Dialog.id_of_response(response) == dialog.id


def test_early_dialog_from_180_then_confirmed_by_200() -> None:
    request = invite()
    dialog = Dialog.as_uac(request, response_with(180))
    assert dialog.state is DialogState.EARLY
    final = response_with(200, contact="<sip:bob@127.0.0.9:5999>")
    dialog.on_response(request, final)
    assert dialog.state is DialogState.CONFIRMED
    assert str(dialog.remote_target) == "sip:bob@127.0.0.9:5999"


def test_early_dialog_terminated_by_error() -> None:
    request = invite()
    dialog = Dialog.as_uac(request, response_with(183))
    dialog.on_response(request, make_response(request, 486, to_tag="b-tag"))
    assert dialog.state is DialogState.TERMINATED


def test_response_without_to_tag_creates_no_dialog() -> None:
    request = invite()
    with pytest.raises(DialogError):
        Dialog.as_uac(request, make_response(request, 180))
    with pytest.raises(DialogError):
        Dialog.as_uac(request, make_response(request, 100, to_tag="x"))


def test_dialog_response_copies_record_route_and_contact() -> None:
    response = response_with(200)
    assert response.to.tag == "b-tag"
    assert response.headers.get_all("Record-Route") == ["<sip:p1.test;lr>", "<sip:p2.test;lr>"]
    assert str(response.contacts[0].uri) == "sip:bob@127.0.0.1:5080"
    error = dialog_response(invite(), 486, to_tag="b-tag", contact="sip:x@127.0.0.1")
    assert "Record-Route" not in error.headers and "Contact" not in error.headers


def test_in_dialog_bye_from_uac_loose_routing() -> None:
    dialog = Dialog.as_uac(invite(), response_with(200))
    bye = dialog.create_request("BYE")
    assert bye.method == "BYE"
    assert str(bye.uri) == "sip:bob@127.0.0.1:5080"
    assert bye.cseq.number == 315 and bye.cseq.method == "BYE"
    assert bye.from_.tag == "a-tag" and bye.to.tag == "b-tag"
    assert bye.call_id == "call-1@test"
    assert [str(r.uri) for r in bye.routes] == ["sip:p2.test;lr", "sip:p1.test;lr"]
    assert "Via" not in bye.headers
    assert str(dialog.next_hop()) == "sip:p2.test;lr"
    # With a Via added (the transport's job) it serializes and re-parses.
    bye.push_via("SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-bye1")
    again = parse_message(bye.to_bytes())
    assert isinstance(again, Request) and again.cseq.number == 315
    assert again.routes[0].uri == bye.routes[0].uri


def test_ack_for_2xx_reuses_invite_cseq() -> None:
    dialog = Dialog.as_uac(invite(), response_with(200))
    ack = dialog.create_ack()
    assert ack.cseq.number == 314 and ack.cseq.method == "ACK"
    assert dialog.local_seq == 314
    reinvite = dialog.create_request("INVITE", body=b"v=0\r\n")
    assert reinvite.cseq.number == 315
    assert dialog.create_ack().cseq.number == 315


def test_strict_route_first() -> None:
    request = invite()
    request.headers.set("Record-Route", ["<sip:strict.test>", "<sip:p1.test;lr>"])
    dialog = Dialog.as_uas(request, "b-tag", local_seq=7, early=False)
    bye = dialog.create_request("BYE")
    assert str(bye.uri) == "sip:strict.test"
    assert [str(r.uri) for r in bye.routes] == ["sip:p1.test;lr", "sip:alice@127.0.0.1:5070"]
    assert bye.cseq.number == 8
    # UAS side: From is our (To) URI with our tag.
    assert bye.from_.tag == "b-tag" and str(bye.from_.uri) == "sip:bob@127.0.0.1"
    assert bye.to.tag == "a-tag"


def test_remote_cseq_order_and_target_refresh() -> None:
    dialog = uas_dialog()
    dialog.confirm()
    stale = invite()
    assert dialog.on_request(stale) is False  # same CSeq as the INVITE
    reinvite = invite()
    reinvite.headers.set("CSeq", "315 INVITE")
    reinvite.headers.set("Contact", "<sip:alice@127.0.0.1:6000>")
    assert dialog.on_request(reinvite) is True
    assert dialog.remote_seq == 315
    assert dialog.remote_target == SipURI(host="127.0.0.1", user="alice", port=6000)
    ack = invite()
    ack.method = "ACK"
    ack.headers.set("CSeq", "315 ACK")
    assert dialog.on_request(ack) is True
    bye = invite()
    bye.method = "BYE"
    bye.headers.set("CSeq", "316 BYE")
    bye.headers.remove("Contact")
    assert dialog.on_request(bye) is True
    assert dialog.state is DialogState.TERMINATED
    with pytest.raises(DialogError):
        dialog.create_request("BYE")


def test_481_terminates() -> None:
    request = invite()
    dialog = Dialog.as_uac(request, response_with(200))
    bye = dialog.create_request("INFO")
    dialog.on_response(bye, make_response(bye, 481))
    assert dialog.state is DialogState.TERMINATED


def test_id_of_request_matches_uas_dialog() -> None:
    dialog = Dialog.as_uac(invite(), response_with(200))
    bye = dialog.create_request("BYE")
    uas = uas_dialog()
    assert Dialog.id_of_request(bye) == uas.id


def test_ack_and_cancel_need_explicit_cseq() -> None:
    dialog = uas_dialog()
    with pytest.raises(DialogError):
        dialog.create_request("CANCEL")


def test_new_tags_are_unique() -> None:
    assert len({new_tag() for _ in range(1000)}) == 1000
