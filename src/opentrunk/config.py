"""Runtime settings: defaults, then an optional TOML file, then OPENTRUNK_* environment
variables, then command-line flags (applied by the CLI through `Settings.with_overrides`)."""

from __future__ import annotations

import os
import secrets
import socket
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

ENV_PREFIX = "OPENTRUNK_"
# The width of call_records.node (migration 0004).
NODE_ID_MAX = 64


def split_host_port(value: str, default_port: int) -> tuple[str, int]:
    """Split `HOST:PORT`, `[V6]:PORT`, `HOST` or `[V6]` into a host and a port."""
    value = value.strip()
    if value.startswith("["):
        end = value.index("]")
        host = value[1:end]
        rest = value[end + 1 :]
        return host, int(rest[1:]) if rest.startswith(":") else default_port
    if value.count(":") == 1:
        host, port = value.split(":")
        return host, int(port)
    return value, default_port


@dataclass(frozen=True)
class Settings:
    # Where state lives. SQLite under ./data is the embedded default.
    data_dir: str = "./data"
    database_url: str = ""
    # HTTP API.
    http: str = "127.0.0.1:8080"
    admin_token: str = ""
    api_rate_limit: float = 20.0  # requests per second per account (token bucket refill)
    api_rate_burst: int = 100
    # SIP.
    sip_domain: str = "zt.localhost"
    sip: str = "0.0.0.0:5060"
    sip_tls: str = ""
    advertised_address: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    # This edge node's name in the call records it opens (docs/edge.md "Several edge
    # nodes"): crash recovery at start closes only the open records of its own node.
    # Empty: the id kept in data_dir (`node_id_of`).
    node_id: str = ""
    # RFC 3261 T1 (seconds, the RTT estimate) for the edge's SIP timers; 64*T1 is timer
    # H, how long the edge re-sends its 200 before a PBX that never ACKs is hung up
    # (5340), and timers B/F. Tests shorten it; production keeps the RFC's 0.5.
    sip_t1: float = 0.5
    # Outbound calls: seconds a carrier may stay without ringing (18x) before the edge
    # fails over, and seconds it may ring without answering.
    carrier_timeout: float = 5.0
    ring_timeout: float = 120.0
    # Inbound calls (edge/inbound.py): seconds an origination URI may stay silent (no
    # provisional response) and may go without ringing or answering, before the edge
    # fails over to the fallback URI.
    origination_provisional_timeout: float = 2.0
    origination_timeout: float = 5.0
    # OPTIONS answered per second per source address (keep-alives; more get no answer).
    options_rate: float = 10.0
    # Brute-force lockout (edge/lockout.py): `lockout_failures` failed authentications
    # from one source address within `lockout_window` seconds refuse its INVITEs (403)
    # for `lockout_duration` seconds. 0 failures turns the lockout off (e.g. many PBXes
    # behind one NAT address that must not lock each other out).
    lockout_failures: int = 5
    lockout_window: float = 60.0
    lockout_duration: float = 300.0
    # Overload control (edge/overload.py): new calls get 503 (4330) while the event loop
    # runs more than this many seconds behind, tick after tick. 0 turns it off.
    overload_lag: float = 0.25
    # Key that encrypts secrets at rest (Fernet, urlsafe base64). Empty: a key file is
    # generated under data_dir on first start with mode 0600.
    secret_key: str = ""
    redis_url: str = ""
    log_level: str = "info"
    # Media (opentrunk.media): "relay-process" (the embedded relay in a child process of
    # its own, so the edge's work never delays a packet), "relay" (the same relay inside
    # the serve process) or "rtpengine" (its ng port below).
    media_backend: str = "relay-process"
    # SCHED_FIFO priority (1-99) for the relay process; 0: normal scheduling.
    media_realtime_priority: int = 0
    media_ports: str = "10000-20000"
    media_address: str = ""  # relay bind address; empty: the SIP listen host
    rtp_timeout: float = 60.0
    rtpengine_ng: str = "127.0.0.1:2223"

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{Path(self.data_dir).resolve() / 'opentrunk.db'}"

    @property
    def http_host_port(self) -> tuple[str, int]:
        return split_host_port(self.http, 8080)

    @property
    def sip_host_port(self) -> tuple[str, int]:
        return split_host_port(self.sip, 5060)

    def with_overrides(self, **values: Any) -> Settings:
        """Return a copy with the given non-None values applied (command-line flags)."""
        return replace(self, **{k: v for k, v in values.items() if v is not None})


NODE_ID_FILE = "node-id"


def node_id_of(settings: Settings) -> str:
    """This edge node's id: `node_id` when set, else the one kept in `data_dir/node-id`,
    written on the node's first start as `HOSTNAME-RANDOM`. Kept rather than derived
    (from the host name and SIP port, say) so that it stays the same across restarts
    even when the port or the container's host name changes; the random part keeps
    two nodes that share a host name apart. Nodes sharing one data directory must set
    `node_id`."""
    node = settings.node_id.strip()
    if not node:
        node = _kept_node_id(Path(settings.data_dir) / NODE_ID_FILE)
    if not node or len(node) > NODE_ID_MAX or not node.isprintable() or " " in node:
        raise ValueError(
            f"node id must be at most {NODE_ID_MAX} printable characters without spaces"
        )
    return node


def _kept_node_id(path: Path) -> str:
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    host = socket.gethostname().split(".")[0][: NODE_ID_MAX - 7] or "edge"
    node = f"{host}-{secrets.token_hex(3)}"
    # Written aside, then linked into place: the file appears whole, and of two
    # processes starting at once the second finds the first's id (link refuses to
    # replace an existing file).
    draft = path.with_name(f".{NODE_ID_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
    draft.write_text(node + "\n")
    try:
        os.link(draft, path)
    except FileExistsError:
        return path.read_text().strip()
    finally:
        draft.unlink()
    return node


def _coerce(raw: str, kind: Any) -> Any:
    if kind in (int, "int"):
        return int(raw)
    if kind in (float, "float"):
        return float(raw)
    if kind in (bool, "bool"):
        return raw.strip().lower() in {"1", "true", "yes", "on"}
    return raw


def load_settings(env: dict[str, str] | None = None, config_file: str | None = None) -> Settings:
    """Build settings from an optional TOML file and the environment."""
    env = dict(os.environ) if env is None else env
    values: dict[str, Any] = {}
    path = config_file or env.get(ENV_PREFIX + "CONFIG")
    if path:
        with open(path, "rb") as fh:
            values.update(tomllib.load(fh))
    known = {f.name: f.type for f in fields(Settings)}
    unknown = set(values) - set(known)
    if unknown:
        raise ValueError(f"unknown settings in {path}: {', '.join(sorted(unknown))}")
    for name, kind in known.items():
        raw = env.get(ENV_PREFIX + name.upper())
        if raw is not None:
            values[name] = _coerce(raw, kind)
    return Settings(**values)
