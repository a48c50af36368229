"""Which methods the live edge accepts outside a dialog (CALLS.md "Standards"): OPTIONS
is answered 200 with Allow (keep-alive), over UDP and TCP; REGISTER, MESSAGE, INFO,
SUBSCRIBE, NOTIFY, PUBLISH and PRACK outside a dialog get 405 with an Allow header that
lists what the edge does accept (and not the refused method). A real socket speaks to a
real `opentrunk serve`; the answers are parsed with the project's SIP parser."""

from __future__ import annotations

import itertools
import socket
import time

import pytest

from e2e.harness import SIP_DOMAIN, EdgeProcess
from opentrunk.sip.message import Response, parse_message

pytestmark = pytest.mark.sipp  # needs the live edge of the sipp suite

_branches = itertools.count(1)
# What CALLS.md accepts; REFER may be listed once transfers exist.
REQUIRED = {"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "UPDATE"}
ACCEPTED = REQUIRED | {"REFER"}


def request(method: str, local: tuple[str, int], transport: str = "UDP") -> bytes:
    n = next(_branches)
    host, port = local
    extra = "Event: presence\r\n" if method in ("SUBSCRIBE", "PUBLISH", "NOTIFY") else ""
    if method == "PRACK":
        extra = "RAck: 1 1 INVITE\r\n"
    return (
        f"{method} sip:+14155550100@123456.{SIP_DOMAIN} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} {host}:{port};branch=z9hG4bK-methods-{n};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:probe@{host}>;tag=probe{n}\r\n"
        f"To: <sip:+14155550100@123456.{SIP_DOMAIN}>\r\n"
        f"Call-ID: methods-{n}-{time.monotonic_ns()}@{host}\r\n"
        f"CSeq: 1 {method}\r\n"
        f"Contact: <sip:probe@{host}:{port}>\r\n"
        f"{extra}"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def final_over_udp(edge: EdgeProcess, method: str) -> Response:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(3.0)
        sock.sendto(request(method, sock.getsockname()), ("127.0.0.1", edge.sip_port))
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            message = parse_message(sock.recv(65536))
            assert isinstance(message, Response)
            if message.status >= 200:
                return message
    raise AssertionError(f"no final answer to {method}")


def final_over_tcp(edge: EdgeProcess, method: str) -> Response:
    with socket.create_connection(("127.0.0.1", edge.sip_port), timeout=3.0) as sock:
        sock.sendall(request(method, sock.getsockname(), "TCP"))
        data = b""
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            head, sep, rest = data.partition(b"\r\n\r\n")
            if sep:
                message = parse_message(head + sep)
                assert isinstance(message, Response)
                if message.status >= 200:
                    return message
                data = rest
                continue
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    raise AssertionError(f"no final answer to {method} over TCP")


def allowed(response: Response) -> set[str]:
    """The methods of the Allow header, checked against what CALLS.md accepts."""
    value = response.headers.get("Allow") or ""
    methods = {m.strip().upper() for m in value.split(",") if m.strip()}
    assert REQUIRED <= methods <= ACCEPTED, value
    return methods


@pytest.mark.parametrize("send", [final_over_udp, final_over_tcp], ids=["udp", "tcp"])
def test_options_is_answered_200_with_allow(edge: EdgeProcess, send: object) -> None:
    response = send(edge, "OPTIONS")  # type: ignore[operator]
    assert response.status == 200
    assert "INFO" not in allowed(response)
    assert response.cseq.method == "OPTIONS"


@pytest.mark.parametrize(
    "method", ["REGISTER", "MESSAGE", "INFO", "SUBSCRIBE", "NOTIFY", "PUBLISH", "PRACK"]
)
def test_other_methods_outside_a_dialog_get_405_with_allow(edge: EdgeProcess, method: str) -> None:
    response = final_over_udp(edge, method)
    assert response.status == 405, response.status
    assert response.cseq.method == method
    assert method not in allowed(response)
    assert edge.alive()


def test_405_over_tcp_too(edge: EdgeProcess) -> None:
    response = final_over_tcp(edge, "REGISTER")
    assert response.status == 405
    assert "REGISTER" not in allowed(response)
