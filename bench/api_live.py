"""A live opentrunk API server in a child process, driven only through its command-line
contract: `opentrunk serve --http HOST:PORT`, `opentrunk accounts create --name N
[--parent AUTH_ID] --json` and `opentrunk numbers add NUMBER --account AUTH_ID`, with
OPENTRUNK_DATA_DIR / OPENTRUNK_DATABASE_URL choosing the store.

The API benchmarks (bench/api_*.py) and the outside-in tests (tests/client, tests/fuzz_api)
share it, so that what they measure and what they test is the program an operator runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
_VENV_BIN = ROOT / ".venv" / "bin"
START_TIMEOUT_S = 40.0


def opentrunk_command() -> list[str]:
    """The `opentrunk` entry point of this checkout's virtualenv (or the one on PATH)."""
    exe = _VENV_BIN / "opentrunk"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("opentrunk")
    if found:
        return [found]
    return [sys.executable, "-m", "opentrunk.cli.main"]


def free_port() -> int:
    """A port free for both TCP and UDP on 127.0.0.1 (the SIP edge binds both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port on 127.0.0.1")


@dataclass(frozen=True)
class Account:
    auth_id: str
    auth_token: str

    @property
    def basic(self) -> tuple[str, str]:
        return (self.auth_id, self.auth_token)


@dataclass
class LiveServer:
    """One `opentrunk serve` child process with its own data directory."""

    data_dir: Path
    database_url: str = ""
    extra_env: dict[str, str] = field(default_factory=dict)
    serve_args: tuple[str, ...] = ()  # more `opentrunk serve` flags (e.g. --no-edge)
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def store_url(self) -> str:
        """The database this server uses (its SQLite file when none was given)."""
        return self.database_url or f"sqlite:///{self.data_dir / 'opentrunk.db'}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "serve.log"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["OPENTRUNK_DATA_DIR"] = str(self.data_dir)
        if self.database_url:
            env["OPENTRUNK_DATABASE_URL"] = self.database_url
        else:
            env.pop("OPENTRUNK_DATABASE_URL", None)
        # The per-account token bucket is operator configuration; tests and benchmarks
        # measure the API itself, not the limiter.
        env.setdefault("OPENTRUNK_API_RATE_LIMIT", "1000000")
        env.setdefault("OPENTRUNK_API_RATE_BURST", "1000000")
        env.setdefault("OPENTRUNK_LOG_LEVEL", "warning")
        env.update(self.extra_env)
        return env

    def cli(self, *args: str, timeout: float = 60.0) -> str:
        """Run an `opentrunk` subcommand against this server's store; return its stdout."""
        done = subprocess.run(
            [*opentrunk_command(), *args],
            env=self.env(),
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"opentrunk {' '.join(args)} exited {done.returncode}: "
                f"{done.stderr.decode(errors='replace')[-2000:]}"
            )
        return done.stdout.decode()

    def create_account(self, name: str | None = None, parent: Account | None = None) -> Account:
        """A main account, or with `parent` a subaccount of it (`accounts create --parent`)."""
        args = ["accounts", "create", "--name", name or f"acct-{uuid.uuid4().hex[:8]}", "--json"]
        if parent is not None:
            args += ["--parent", parent.auth_id]
        out = self.cli(*args)
        data = json.loads(out)
        return Account(auth_id=data["auth_id"], auth_token=data["auth_token"])

    def add_number(self, number: str, account: Account) -> None:
        self.cli("numbers", "add", number, "--account", account.auth_id)

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        env = self.env()
        # The edge binds SIP too; keep it off 5060 so parallel runs never collide.
        env.setdefault("OPENTRUNK_SIP", f"127.0.0.1:{free_port()}")
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [
                *opentrunk_command(),
                "serve",
                "--http",
                f"127.0.0.1:{self.port}",
                *self.serve_args,
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"opentrunk serve exited {self.process.returncode}: {self.tail_log()}"
                )
            try:
                if httpx.get(self.base_url + "/openapi.json", timeout=1.0).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"opentrunk serve not ready in {START_TIMEOUT_S}s: {self.tail_log()}")

    def cpu_seconds(self) -> float:
        """User + system CPU time the server process has used so far (Linux /proc)."""
        assert self.process is not None
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def tail_log(self, size: int = 3000) -> str:
        try:
            return self.log_path.read_bytes()[-size:].decode(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


@contextlib.contextmanager
def live_server(
    database_url: str = "",
    data_dir: Path | None = None,
    serve_args: tuple[str, ...] = (),
    **extra_env: str,
) -> Iterator[LiveServer]:
    """Start a server on a fresh data directory (removed afterwards unless one was given)."""
    own_dir = data_dir is None
    path = Path(tempfile.mkdtemp(prefix="opentrunk-live-")) if data_dir is None else data_dir
    server = LiveServer(
        data_dir=path,
        database_url=database_url,
        extra_env=dict(extra_env),
        serve_args=serve_args,
    )
    try:
        server.start()
        yield server
    finally:
        server.stop()
        if own_dir:
            shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def fresh_pg_database(admin_url: str) -> Iterator[str]:
    """Create a throw-away PostgreSQL database; yield its SQLAlchemy psycopg URL; drop it.

    `admin_url` is any URL of the server (`postgresql[+driver]://user@host:port/db`).
    """
    import psycopg

    plain = admin_url.replace("+asyncpg", "").replace("+psycopg", "")
    base, _, _ = plain.rpartition("/")
    name = f"opentrunk_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{base.replace('postgresql://', 'postgresql+psycopg://')}/{name}"
    finally:
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def server_on(
    database_url: str = "", serve_args: tuple[str, ...] = (), **extra_env: str
) -> Iterator[LiveServer]:
    """A live server on a fresh SQLite data dir, or, given a PostgreSQL URL, on a fresh
    throw-away database of that PostgreSQL server."""
    if not database_url:
        with live_server("", None, serve_args, **extra_env) as srv:
            yield srv
        return
    with (
        fresh_pg_database(database_url) as url,
        live_server(url, None, serve_args, **extra_env) as srv,
    ):
        yield srv
