"""TLS to a peer named by its configured host name (issue 6 leftovers, RFC 5922), through
a live edge, inside a loopback-only network namespace because the names are example
domains. The work is done by test_secure_names_driver.py (an edge in that process, its
locator on the test's DNS server; TLS peers with a lab CA's certificates):

- inbound, a `secure` trunk: a primary URI naming a host the PBX's certificate does not
  carry fails the handshake and the call is answered through the fallback URI, whose
  name it does carry; each handshake's SNI is the URI's name; the carrier's BYE
  reaches the PBX on the connection verified for that name. That wrong name alone
  ends the call at once as an unreachable PBX does (503);
- outbound, carriers configured by name over TLS: the same check, failing over from a
  carrier whose name is not on its certificate to one whose name is.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from netns import network_namespace, run_in_netns

pytestmark = [pytest.mark.netns]


def run_driver(*scenarios: str) -> dict[str, dict[str, Any]]:
    """Run the driver's scenarios in a fresh namespace; their results by name."""
    driver = Path(__file__).with_name("test_secure_names_driver.py")
    with network_namespace("otnames") as name:
        result = run_in_netns(
            name, [sys.executable, str(driver), *scenarios], timeout=120, capture_output=True
        )
    output = result.stdout.decode(errors="replace") + result.stderr.decode(errors="replace")
    assert result.returncode == 0, output[-8000:]
    lines = [json.loads(line) for line in result.stdout.decode().splitlines() if line[:1] == "{"]
    return {line["scenario"]: line for line in lines}


def test_tls_to_a_pbx_is_verified_against_the_uri_name() -> None:
    results = run_driver("fallback_to_the_right_name", "wrong_name_alone_fails")
    fallback = results["fallback_to_the_right_name"]
    assert fallback["status"] == 200
    assert fallback["sni"] == ["wrong.example.test", "pbx.example.test"]
    alone = results["wrong_name_alone_fails"]
    assert alone["status"] == 503 and alone["sni"] == ["wrong.example.test"]


def test_tls_to_a_carrier_is_verified_against_its_name() -> None:
    results = run_driver("carrier_by_name")
    carrier = results["carrier_by_name"]
    assert carrier["status"] == 200
    assert carrier["sni"] == ["wrong.example.test", "sbc.carrier.example.test"]
