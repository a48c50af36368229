"""Running sipp as a bounded child process from an asyncio test."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import dataclass
from pathlib import Path


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    """A port that is free on 127.0.0.1 for both UDP and TCP right now."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, kind) as first:
            first.bind(("127.0.0.1", 0))
            port = int(first.getsockname()[1])
            other = socket.SOCK_STREAM if kind == socket.SOCK_DGRAM else socket.SOCK_DGRAM
            with socket.socket(socket.AF_INET, other) as second:
                try:
                    second.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port")


@dataclass
class SippResult:
    returncode: int
    output: str
    errors: str


class Sipp:
    """One sipp process: started with bounds (-m, -timeout), always killed at the end."""

    def __init__(self, binary: str, args: list[str], workdir: Path) -> None:
        self.binary = binary
        self.args = args
        self.workdir = workdir
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            self.binary,
            *self.args,
            "-nostdin",
            "-trace_err",
            "-error_file",
            str(self.workdir / "sipp_errors.log"),
            cwd=self.workdir,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )

    async def wait(self, timeout: float) -> SippResult:
        assert self.process is not None
        try:
            out, _ = await asyncio.wait_for(self.process.communicate(), timeout)
        finally:
            await self.kill()
        errors_path = self.workdir / "sipp_errors.log"
        errors = errors_path.read_text(errors="replace") if errors_path.exists() else ""
        assert self.process.returncode is not None
        return SippResult(self.process.returncode, out.decode(errors="replace")[-3000:], errors)

    async def kill(self) -> None:
        process = self.process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(process.wait(), 5)


def _bound(port: int, proto: str) -> bool:
    # /proc/net/{tcp,udp}: local address is "HEXIP:HEXPORT"; TCP listeners have state 0A.
    try:
        lines = Path(f"/proc/net/{proto}").read_text().splitlines()[1:]
    except OSError:
        return True  # cannot tell: let the caller's retries cope
    for line in lines:
        fields = line.split()
        local, state = fields[1], fields[3]
        if int(local.rsplit(":", 1)[1], 16) == port and (proto == "udp" or state == "0A"):
            return True
    return False


async def wait_listening(port: int, proto: str = "udp", timeout: float = 5.0) -> None:
    """Wait until a socket is bound (UDP) or listening (TCP) on `port` (without touching it)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not _bound(port, proto):
        if loop.time() > deadline:
            raise TimeoutError(f"nothing {proto} on port {port}")
        await asyncio.sleep(0.02)
