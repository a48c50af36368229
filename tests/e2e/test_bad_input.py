"""Bad input to a live edge (RFC 4475 messages, truncated, random, oversized, a flood of
INVITEs) while a call is up: run inside a loopback-only network namespace, because the
RFC 4475 messages name foreign addresses. The work is done by bad_input_driver.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from e2e.harness import sipp_binary
from netns import network_namespace, run_in_netns

pytestmark = [pytest.mark.sipp, pytest.mark.netns]


def test_bad_input_never_crashes_the_edge_nor_the_call_in_progress() -> None:
    sipp_binary()
    driver = Path(__file__).with_name("bad_input_driver.py")
    with network_namespace("otedge") as name:
        result = run_in_netns(name, [sys.executable, str(driver)], timeout=150, capture_output=True)
    output = result.stdout.decode(errors="replace") + result.stderr.decode(errors="replace")
    assert result.returncode == 0, output[-8000:]
    assert "parse errors" in output
