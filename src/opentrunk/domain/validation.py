"""Rules for what the API (and the operator CLI) accept: credentials, IP ACL entries,
origination URIs, trunk shapes, account limits. Free of HTTP and SQL; both the API and the
SIP edge rely on the same answers.
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

USERNAME_RE = re.compile(r"[A-Za-z0-9]{5,20}")
PASSWORD_SPECIALS = "~!@#$%^&*()_+"
PASSWORD_RE = re.compile(r"[A-Za-z0-9~!@#$%^&*()_+]{5,20}")
# A DNS name: labels of letters, digits and hyphens, not starting or ending with a hyphen.
_LABEL = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)"
HOSTNAME_RE = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")
_SIP_USER_RE = re.compile(r"[A-Za-z0-9\-_.!~*'()&=+$,;?/%]+")
TRANSPORTS = ("udp", "tcp", "tls")


class InvalidParameter(ValueError):
    """A parameter is present but not acceptable (HTTP 400)."""


class MissingParameter(ValueError):
    """A required parameter is absent (HTTP 422)."""


def check_credential_username(username: str) -> str:
    if not USERNAME_RE.fullmatch(username):
        raise InvalidParameter("username must be 5 to 20 characters, letters and digits only")
    return username


def check_credential_password(password: str) -> str:
    if not PASSWORD_RE.fullmatch(password) or not any(c in PASSWORD_SPECIALS for c in password):
        raise InvalidParameter(
            "password must be 5 to 20 characters from letters, digits and "
            f"{PASSWORD_SPECIALS}, with at least one of {PASSWORD_SPECIALS}"
        )
    return password


def check_acl_entry(entry: str) -> str:
    """An IPv4/IPv6 address or CIDR range, returned as sent. The whole world is refused."""
    if not isinstance(entry, str) or not entry or entry != entry.strip():
        raise InvalidParameter(f"ip_addresses: {entry!r} is not an IP address or CIDR range")
    try:
        network = ipaddress.ip_network(entry, strict=False)
    except ValueError:
        raise InvalidParameter(
            f"ip_addresses: {entry!r} is not an IP address or CIDR range"
        ) from None
    if network.prefixlen == 0:
        raise InvalidParameter(f"ip_addresses: {entry!r} would open the trunk to every address")
    return entry


def check_acl_entries(entries: Iterable[str]) -> list[str]:
    result = [check_acl_entry(e) for e in entries]
    if not result:
        raise InvalidParameter("ip_addresses must contain at least one address or CIDR range")
    if len(result) > 100:
        raise InvalidParameter("ip_addresses may hold at most 100 entries")
    return result


@dataclass(frozen=True)
class HostPort:
    host: str
    port: int | None


def parse_host_port(text: str) -> HostPort:
    """`HOST`, `HOST:PORT`, `[V6]`, `[V6]:PORT` with HOST an IP address or a DNS name."""
    host, port_text = text, None
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise InvalidParameter(f"{text!r} is not a host[:port]")
        host, rest = text[1:end], text[end + 1 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise InvalidParameter(f"{text!r} is not a host[:port]") from None
        if rest:
            if not rest.startswith(":"):
                raise InvalidParameter(f"{text!r} is not a host[:port]")
            port_text = rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    if port_text is not None and (not port_text.isdigit() or not 1 <= int(port_text) <= 65535):
        raise InvalidParameter(f"{text!r}: the port must be 1 to 65535")
    if not text.startswith("["):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            if not HOSTNAME_RE.fullmatch(host) or host.replace(".", "").isdigit():
                raise InvalidParameter(f"{text!r} is not a host[:port]") from None
    return HostPort(host, int(port_text) if port_text is not None else None)


def check_origination_uri(uri: str) -> str:
    """Accept `host`, `host:port`, `sip:user@host[:port]`, each with an optional
    `;transport=udp|tcp|tls`. Returned as sent."""
    text = uri
    if not text or text != text.strip() or len(text) > 255:
        raise InvalidParameter(f"uri {uri!r} is not a SIP URI, host or host:port")
    if ";" in text:
        text, param = text.split(";", 1)
        name, _, value = param.partition("=")
        if name.lower() != "transport" or value.lower() not in TRANSPORTS:
            raise InvalidParameter(
                f"uri {uri!r}: the only parameter allowed is transport=udp|tcp|tls"
            )
    if text.lower().startswith("sip:"):
        user, at, hostport = text[4:].rpartition("@")
        if not at or not user or not _SIP_USER_RE.fullmatch(user):
            raise InvalidParameter(f"uri {uri!r} is not a SIP URI of the form sip:user@host")
        text = hostport
    try:
        parse_host_port(text)
    except InvalidParameter:
        raise InvalidParameter(f"uri {uri!r} is not a SIP URI, host or host:port") from None
    return uri


def check_uuid(value: str, field: str) -> str:
    try:
        return str(uuid.UUID(value))
    except (ValueError, AttributeError, TypeError):
        raise InvalidParameter(f"{field} {value!r} is not a valid UUID") from None


@dataclass
class TrunkShape:
    """The fields that decide whether a trunk is valid, after create or update."""

    trunk_direction: str
    ipacl_uuid: str | None
    credential_uuid: str | None
    primary_uri_uuid: str | None
    fallback_uri_uuid: str | None


def check_trunk_shape(shape: TrunkShape) -> None:
    """An outbound trunk needs a way to authenticate the PBX; an inbound one a place to
    deliver calls. Settings of the other direction are kept but unused (switching a
    trunk's direction back and forth must not lose them)."""
    if shape.trunk_direction == "outbound":
        if not shape.ipacl_uuid and not shape.credential_uuid:
            raise MissingParameter(
                "an outbound trunk needs ipacl_uuid or credential_uuid (or both)"
            )
    elif shape.trunk_direction == "inbound":
        if not shape.primary_uri_uuid:
            raise MissingParameter("an inbound trunk needs primary_uri_uuid")
        if shape.fallback_uri_uuid and shape.fallback_uri_uuid == shape.primary_uri_uuid:
            raise InvalidParameter("fallback_uri_uuid must differ from primary_uri_uuid")
    else:
        raise InvalidParameter("trunk_direction must be inbound or outbound")


def parse_countries(text: str) -> list[str] | None:
    """`all` -> None (every country); `US,GB` -> ["US", "GB"]."""
    if text.strip().lower() == "all":
        return None
    codes = [c.strip().upper() for c in text.split(",") if c.strip()]
    if not codes or any(not re.fullmatch(r"[A-Z]{2}", c) for c in codes):
        raise InvalidParameter("countries must be 'all' or ISO 3166 alpha-2 codes like US,GB")
    return sorted(set(codes))


def check_prefixes(prefixes: Iterable[str]) -> list[str]:
    result = []
    for p in prefixes:
        p = p.strip().lstrip("+")
        if not p.isdigit() or len(p) > 15:
            raise InvalidParameter(f"barred prefix {p!r} must be 1 to 15 digits")
        result.append(p)
    return sorted(set(result))
