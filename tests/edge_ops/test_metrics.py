"""EdgeMetrics: counters move with calls, the CPS gauge follows the clock, and the
`/metrics` route serves valid Prometheus text including the endpoint's and the
recorder's figures."""

from __future__ import annotations

import re
from dataclasses import dataclass

from fastapi.testclient import TestClient

from opentrunk.api.app import create_app
from opentrunk.config import Settings
from opentrunk.domain.hangup_codes import Side, bye_from, refusal
from opentrunk.edge.metrics import EdgeMetrics, escape_label, render_current, set_current
from opentrunk.edge.records import CallRecorder
from opentrunk.store.store import Store
from opentrunk.transport.base import TransportStats

_SAMPLE = re.compile(
    r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?P<labels>[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*"'
    r'(,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*")*)\})? (?P<value>[-+]?[0-9.eE+-]+|NaN|[+-]Inf)$'
)


def parse_exposition(text: str) -> dict[str, float]:
    """Check the text format strictly enough to catch mistakes; return sample -> value."""
    assert text.endswith("\n")
    samples: dict[str, float] = {}
    typed: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge")
            assert name not in typed, f"{name} typed twice"
            typed.add(name)
            continue
        match = _SAMPLE.match(line)
        assert match, f"bad sample line: {line!r}"
        assert match["name"] in typed, f"{match['name']} has no TYPE line"
        key = match["name"] + ("{" + match["labels"] + "}" if match["labels"] else "")
        samples[key] = float(match["value"])
    return samples


@dataclass
class FakeClock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


class EndpointStub:
    """Stands in for SipEndpoint.stats (the real type, real counters)."""

    def __init__(self) -> None:
        self.stats = TransportStats(received=10, sent=9, parse_errors=3, oversized=1)


def test_calls_and_outcomes() -> None:
    clock = FakeClock()
    metrics = EdgeMetrics(clock=clock)
    for _ in range(3):
        metrics.call_started()
    metrics.call_ended(bye_from(Side.CUSTOMER))
    metrics.call_ended(refusal(5180))
    metrics.request_received("INVITE")
    metrics.request_received("INVITE")
    metrics.request_received("BYE")
    metrics.response_sent(407)
    metrics.auth_failed()
    samples = parse_exposition(metrics.render())
    assert samples["opentrunk_calls_started_total"] == 3
    assert samples["opentrunk_active_calls"] == 1
    assert samples['opentrunk_calls_total{code="3010",name="normal_hangup",source="customer"}'] == 1
    assert (
        samples['opentrunk_calls_total{code="5180",name="cps_limit_reached",source="zentrunk"}']
        == 1
    )
    assert samples['opentrunk_sip_requests_total{method="INVITE"}'] == 2
    assert samples['opentrunk_sip_responses_total{code="407"}'] == 1
    assert samples["opentrunk_auth_failures_total"] == 1


def test_calls_per_second_is_the_last_complete_second() -> None:
    clock = FakeClock(1000.2)
    metrics = EdgeMetrics(clock=clock)
    for _ in range(7):
        metrics.call_started()
    assert metrics.calls_per_second() == 0  # second 1000 not complete yet
    clock.now = 1001.1
    metrics.call_started()
    assert metrics.calls_per_second() == 7
    clock.now = 1002.5
    assert metrics.calls_per_second() == 1
    clock.now = 1010.0  # quiet for several seconds
    assert metrics.calls_per_second() == 0


def test_bound_endpoint_recorder_and_transactions(store: Store) -> None:
    metrics = EdgeMetrics()
    metrics.bind(endpoint=EndpointStub(), recorder=CallRecorder(store), transactions=lambda: 42)
    samples = parse_exposition(metrics.render())
    assert samples["opentrunk_sip_transport_parse_errors_total"] == 3
    assert samples["opentrunk_sip_transport_received_total"] == 10
    assert samples["opentrunk_sip_transport_oversized_total"] == 1
    assert samples["opentrunk_sip_transactions_active"] == 42
    assert samples["opentrunk_call_records_pending"] == 0
    assert samples["opentrunk_call_records_written_total"] == 0


def test_label_escaping() -> None:
    assert escape_label('a"b\\c\nd') == 'a\\"b\\\\c\\nd'
    metrics = EdgeMetrics()
    metrics.request_received('WEIRD"\n')
    parse_exposition(metrics.render())


def test_metrics_route(store: Store) -> None:
    client = TestClient(
        create_app(Settings(sip_domain=store.sip_domain), store), client=("127.0.0.1", 40000)
    )
    set_current(None)
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert parse_exposition(response.text) == {"opentrunk_edge_up": 0}
    metrics = EdgeMetrics()
    metrics.call_started()
    set_current(metrics)
    try:
        samples = parse_exposition(client.get("/metrics").text)
    finally:
        set_current(None)
    assert samples["opentrunk_edge_up"] == 1
    assert samples["opentrunk_active_calls"] == 1
    assert "/metrics" not in client.get("/openapi.json").json()["paths"]
    assert render_current(metrics).startswith("# HELP opentrunk_edge_up")


def test_metrics_served_to_loopback_only_without_an_admin_token(store: Store) -> None:
    app = create_app(Settings(sip_domain=store.sip_domain), store)
    for host in ("127.0.0.1", "::1", "::ffff:127.0.0.1"):
        assert TestClient(app, client=(host, 40000)).get("/metrics").status_code == 200, host
    for host in ("192.0.2.7", "2001:db8::7", "::ffff:192.0.2.7", "testclient"):
        response = TestClient(app, client=(host, 40000)).get("/metrics")
        assert response.status_code == 403, host
        assert "OPENTRUNK_ADMIN_TOKEN" in response.json()["error"]


def test_metrics_need_the_admin_token_when_one_is_set(store: Store) -> None:
    token = "metrics-operator-token-0123456789"
    app = create_app(Settings(sip_domain=store.sip_domain, admin_token=token), store)
    # With a token, even loopback must send it: a local proxy would otherwise expose it.
    local = TestClient(app, client=("127.0.0.1", 40000))
    assert local.get("/metrics").status_code == 401
    assert local.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    remote = TestClient(app, client=("192.0.2.7", 40000))
    answered = remote.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert answered.status_code == 200
    assert "opentrunk_edge_up" in answered.text
