"""Throw-away network namespaces with only loopback up, for tests that must not leak.

Tests that feed messages naming foreign addresses (RFC 4475's 192.0.2.x, example.com) to a
live server run the server and the sender inside such a namespace: even a bug that makes the
server answer an address written in the message cannot put a packet on a real network,
because the namespace has no interface but `lo`.

Use the `netns` pytest fixture (registered by the conftest files that need it) or the
`network_namespace()` context manager, and `run_in_netns()` / `popen_in_netns()` to start
processes inside. Without root or iproute2 the helpers skip with a reason, except when
CI=true, where a missing facility is a failure.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

IP = shutil.which("ip") or "/usr/sbin/ip"


def unavailable_reason() -> str | None:
    """Why a namespace cannot be made here, or None when it can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if not os.path.exists(IP):
        return "network namespaces need iproute2 (`ip`)"
    return None


def require_netns() -> None:
    """Skip the calling test when namespaces are unavailable; fail instead under CI=true."""
    reason = unavailable_reason()
    if reason is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI requires network namespaces: {reason}")
    pytest.skip(reason)


@contextlib.contextmanager
def network_namespace(prefix: str = "ottest") -> Iterator[str]:
    """Create a namespace with only `lo` up; yield its name; delete it afterwards."""
    require_netns()
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    subprocess.run([IP, "netns", "add", name], check=True, timeout=10)
    try:
        subprocess.run(
            [IP, "netns", "exec", name, IP, "link", "set", "lo", "up"], check=True, timeout=10
        )
        yield name
    finally:
        subprocess.run([IP, "netns", "del", name], check=False, timeout=10)


def netns_command(name: str, argv: Sequence[str]) -> list[str]:
    """The argv that runs `argv` inside namespace `name`."""
    return [IP, "netns", "exec", name, *argv]


def run_in_netns(
    name: str, argv: Sequence[str], *, timeout: float = 30, **kwargs: Any
) -> subprocess.CompletedProcess[bytes]:
    """Run a command inside the namespace and wait for it (bounded by `timeout`)."""
    return subprocess.run(netns_command(name, argv), timeout=timeout, check=False, **kwargs)


def popen_in_netns(name: str, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    """Start a command inside the namespace; the caller must stop it (see `stop_process`)."""
    return subprocess.Popen(netns_command(name, argv), **kwargs)


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 5) -> None:
    """Terminate a process we started, then kill it if it does not exit in time."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)


def interfaces(name: str) -> list[str]:
    """Names of the links visible inside the namespace (for asserting isolation)."""
    out = run_in_netns(name, [IP, "-o", "link", "show"], capture_output=True).stdout.decode()
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line]


@pytest.fixture
def netns() -> Iterator[str]:
    """A fresh loopback-only namespace for one test."""
    with network_namespace() as name:
        yield name
