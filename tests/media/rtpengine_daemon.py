"""Start a private rtpengine (userspace forwarding, loopback only) for a test or benchmark."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

RTPENGINE = shutil.which("rtpengine")


def require_rtpengine() -> str:
    if RTPENGINE is None:
        if os.environ.get("CI") == "true":
            pytest.fail("rtpengine missing under CI (apt-get install -y rtpengine-daemon)")
        pytest.skip("rtpengine not installed (Debian package rtpengine-daemon)")
    return RTPENGINE


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ping(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.2)
        sock.sendto(b"p0 d7:command4:pinge", ("127.0.0.1", port))
        try:
            return b"pong" in sock.recv(1000)
        except OSError:
            return False


@contextmanager
def rtpengine_daemon(
    binary: str, port_min: int, port_max: int, extra: tuple[str, ...] = ()
) -> Iterator[int]:
    """Run rtpengine in the foreground; yields its ng port; stops it on exit."""
    ng_port = free_udp_port()
    workdir = tempfile.mkdtemp(prefix="rtpengine-")
    log_path = os.path.join(workdir, "rtpengine.log")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                binary,
                # Not /etc/rtpengine/rtpengine.conf: its fixed CLI and HTTP ports would
                # collide with any other daemon on the machine (another run, a benchmark).
                "--config-file=none",
                "--foreground",
                "--log-stderr",
                "--table=-1",  # no kernel module: userspace forwarding
                "--interface=127.0.0.1",
                f"--listen-ng=127.0.0.1:{ng_port}",
                f"--port-min={port_min}",
                f"--port-max={port_max}",
                "--delete-delay=0",
                "--log-level=4",
                f"--pidfile={os.path.join(workdir, 'pid')}",
                *extra,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
        )
    try:
        deadline = time.monotonic() + 10
        while not _ping(ng_port):
            if proc.poll() is not None or time.monotonic() > deadline:
                with open(log_path, errors="replace") as fh:
                    raise RuntimeError(f"rtpengine did not start:\n{fh.read()[-2000:]}")
            time.sleep(0.1)
        yield ng_port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        shutil.rmtree(workdir, ignore_errors=True)
