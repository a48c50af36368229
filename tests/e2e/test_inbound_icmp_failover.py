"""Inbound failover on ICMP port unreachable (issue 5): the trunk's primary origination
URI is a UDP port nothing listens on, its fallback a sipp UAS.

The edge here waits 60 s for a silent primary, and the carrier's sipp gives up (and
fails the test) after 20 s: the call can only complete if the kernel's ICMP error,
read from the UDP socket's error queue, failed the INVITE to the primary at once
(RFC 3261 18.4, 8.1.3.1) and the edge moved on to the fallback.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e import inbound_scenarios as inbound
from e2e import scenarios
from e2e.harness import Api, EdgeProcess, free_port, sipp_binary
from e2e.inbound_harness import (
    answered_by,
    carrier,
    inbound_api,
    ok,
    pbx,
    record_of,
    run_all,
    setup_inbound,
)

pytestmark = pytest.mark.sipp

__all__ = ["inbound_api", "inbound_edge"]  # fixtures used by name


@pytest.fixture(scope="module")
def inbound_edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeProcess]:
    """An edge that gives a silent origination URI a full minute (so that only a
    transport error can fail over within the carrier's 20 s)."""
    sipp_binary()
    patient = {
        "OPENTRUNK_ORIGINATION_PROVISIONAL_TIMEOUT": "60",
        "OPENTRUNK_ORIGINATION_TIMEOUT": "60",
    }
    with EdgeProcess(tmp_path_factory.mktemp("icmp-edge"), env=patient) as process:
        yield process


def test_primary_udp_port_closed_fails_over_to_fallback(
    inbound_edge: EdgeProcess, inbound_api: Api, workdir: Path
) -> None:
    closed = free_port()  # nothing listens on it: the INVITE gets ICMP port unreachable
    fallback = pbx(workdir, scenarios.carrier_answer(), "fallback")
    setup = setup_inbound(inbound_api, f"127.0.0.1:{closed}", f"127.0.0.1:{fallback.port}")
    carrier_run, (fallback_run,) = run_all(
        carrier(inbound_edge, workdir, inbound.carrier_call("+14155550100"), setup.number),
        fallback,
    )
    ok(inbound_edge, carrier_run, fallback_run)
    record = record_of(setup, "3000", "carrier")
    assert answered_by(setup, record) == f"127.0.0.1:{fallback.port}"
    assert "INVITE sip:" in fallback_run.messages


def test_primary_udp_port_closed_without_fallback(
    inbound_edge: EdgeProcess, inbound_api: Api, workdir: Path
) -> None:
    """Alone, the unreachable URI ends the call at once as the local 503 maps (5360, as
    for a refused TCP connection), not as a PBX timeout (4170) a minute later."""
    closed = free_port()
    setup = setup_inbound(inbound_api, f"127.0.0.1:{closed}")
    carrier_run, _ = run_all(
        carrier(inbound_edge, workdir, inbound.carrier_refused("+14155550100", 503), setup.number)
    )
    ok(inbound_edge, carrier_run)
    record = record_of(setup, "5360", "customer")
    assert record["answer_time"] is None
