"""SDP session descriptions (RFC 4566), as carried in SIP offers and answers.

Owns `parse_sdp(body) -> SessionDescription`, its serializer
(`SessionDescription.to_bytes()`), the structured lines a B2BUA and a media
relay need (origin, connection at session and media level, media lines,
rtpmap, fmtp, direction, ``a=crypto`` of RFC 4568) and the rewrite helpers
(`SessionDescription.rewrite_address`, `Media.port`).

Every line the parser does not model (i=, u=, e=, p=, b=, t=, r=, z=, k=,
unknown attributes, unknown line types) is kept, in order, and written back.
Lines are written in the order RFC 4566 section 5 prescribes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from opentrunk.sip.errors import SipParseError

__all__ = [
    "DIRECTIONS",
    "PCMA",
    "PCMU",
    "Connection",
    "Crypto",
    "Media",
    "Origin",
    "RtpMap",
    "SessionDescription",
    "parse_sdp",
]

PCMU = 0
"""Static payload type of G.711 mu-law (RFC 3551)."""
PCMA = 8
"""Static payload type of G.711 A-law (RFC 3551)."""
DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")

# RFC 3551 static payload types the edge meets (name, clock rate).
_STATIC_PT = {
    0: ("PCMU", 8000),
    3: ("GSM", 8000),
    8: ("PCMA", 8000),
    9: ("G722", 8000),
    18: ("G729", 8000),
}
_SESSION_ORDER = {t: i for i, t in enumerate("vosiuepcbtrzk")}
_MEDIA_ORDER = {"i": 0, "c": 1, "b": 2, "k": 3}


def _bad(what: str) -> SipParseError:
    return SipParseError(f"bad SDP: {what}", 400)


@dataclass
class Origin:
    """``o=<username> <sess-id> <sess-version> <nettype> <addrtype> <unicast-address>``."""

    username: str
    session_id: str
    session_version: int
    nettype: str = "IN"
    addrtype: str = "IP4"
    address: str = "0.0.0.0"

    def __str__(self) -> str:
        return (
            f"{self.username} {self.session_id} {self.session_version} "
            f"{self.nettype} {self.addrtype} {self.address}"
        )


@dataclass
class Connection:
    """``c=<nettype> <addrtype> <connection-address>`` (address may carry /ttl/count)."""

    nettype: str = "IN"
    addrtype: str = "IP4"
    address: str = "0.0.0.0"

    @property
    def host(self) -> str:
        """The address without any /ttl or /count suffix."""
        return self.address.split("/", 1)[0]

    @property
    def is_hold(self) -> bool:
        """True for the RFC 2543 hold address 0.0.0.0."""
        return self.host == "0.0.0.0"

    def __str__(self) -> str:
        return f"{self.nettype} {self.addrtype} {self.address}"


@dataclass
class RtpMap:
    """``a=rtpmap:<pt> <encoding>/<clock rate>[/<channels>]``.

    `clock_rate` is None when the line leaves it out (RFC 4475 messages do).
    """

    payload_type: int
    encoding: str
    clock_rate: int | None
    channels: int | None = None

    def __str__(self) -> str:
        rate = "" if self.clock_rate is None else f"/{self.clock_rate}"
        tail = "" if self.channels is None else f"/{self.channels}"
        return f"{self.payload_type} {self.encoding}{rate}{tail}"


@dataclass
class Crypto:
    """``a=crypto:<tag> <crypto-suite> <key-params> [<session-params>...]`` (RFC 4568).

    `key_params` is kept as written (``inline:<key||lifetime|MKI>``); it is a
    secret: never log it.
    """

    tag: int
    suite: str
    key_params: str
    session_params: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return " ".join([str(self.tag), self.suite, self.key_params, *self.session_params])

    def __repr__(self) -> str:
        return f"Crypto(tag={self.tag}, suite={self.suite!r}, key_params='<hidden>')"

    @property
    def inline_key(self) -> str | None:
        """The base64 key||salt of the first ``inline:`` key param, or None."""
        first = self.key_params.split(";", 1)[0]
        if not first.startswith("inline:"):
            return None
        return first[len("inline:") :].split("|", 1)[0]


@dataclass
class Media:
    """One media description: its m= line and the lines under it.

    `attributes` holds every a= line in order as (name, value-or-None);
    `lines` the other lines (i=, c= is separate, b=, k=, unknown) as (type, value).
    """

    media: str
    port: int
    proto: str
    formats: list[str]
    port_count: int | None = None
    connection: Connection | None = None
    attributes: list[tuple[str, str | None]] = field(default_factory=list)
    lines: list[tuple[str, str]] = field(default_factory=list)

    # -- attributes ---------------------------------------------------------

    def get_attribute(self, name: str) -> str | None:
        """Value of the first a=`name` attribute ('' for a flag), or None if absent."""
        for key, value in self.attributes:
            if key == name:
                return "" if value is None else value
        return None

    def get_attributes(self, name: str) -> list[str]:
        """Values of every a=`name` attribute."""
        return ["" if v is None else v for k, v in self.attributes if k == name]

    def remove_attribute(self, name: str) -> None:
        """Drop every a=`name` line."""
        self.attributes = [(k, v) for k, v in self.attributes if k != name]

    @property
    def rtpmaps(self) -> dict[int, RtpMap]:
        """rtpmap per payload type; static types without an a=rtpmap get their RFC 3551 entry."""
        out: dict[int, RtpMap] = {}
        for value in self.get_attributes("rtpmap"):
            rtpmap = _parse_rtpmap(value)
            out[rtpmap.payload_type] = rtpmap
        for fmt in self.formats:
            if fmt.isdigit() and int(fmt) not in out and int(fmt) in _STATIC_PT:
                name, rate = _STATIC_PT[int(fmt)]
                out[int(fmt)] = RtpMap(int(fmt), name, rate)
        return out

    @property
    def fmtp(self) -> dict[str, str]:
        """a=fmtp parameters per format: ``{"101": "0-16"}``."""
        out: dict[str, str] = {}
        for value in self.get_attributes("fmtp"):
            fmt, _, params = value.partition(" ")
            out[fmt] = params.strip()
        return out

    @property
    def payload_types(self) -> list[int]:
        """The numeric formats of the m= line, in preference order."""
        return [int(f) for f in self.formats if f.isdigit()]

    @property
    def codec_names(self) -> list[str]:
        """Encoding names in m= line order (``["PCMU", "PCMA", "telephone-event"]``)."""
        maps = self.rtpmaps
        return [maps[pt].encoding for pt in self.payload_types if pt in maps]

    @property
    def telephone_event(self) -> int | None:
        """The payload type of RFC 4733 telephone-event, or None."""
        for pt, rtpmap in self.rtpmaps.items():
            if rtpmap.encoding.lower() == "telephone-event":
                return pt
        return None

    @property
    def crypto(self) -> list[Crypto]:
        """The a=crypto lines (RFC 4568)."""
        return [_parse_crypto(v) for v in self.get_attributes("crypto")]

    @property
    def direction(self) -> str | None:
        """The media-level direction attribute, or None if the media line has none."""
        for key, _ in self.attributes:
            if key in DIRECTIONS:
                return key
        return None

    @direction.setter
    def direction(self, value: str | None) -> None:
        if value is not None and value not in DIRECTIONS:
            raise ValueError(f"not an SDP direction: {value}")
        kept = [(k, v) for k, v in self.attributes if k not in DIRECTIONS]
        if value is not None:
            kept.append((value, None))
        self.attributes = kept

    def keep_formats(self, formats: list[str]) -> None:
        """Restrict the m= line to `formats` (in the order given) and drop their orphan
        rtpmap/fmtp lines."""
        keep = [f for f in formats if f in self.formats]
        self.formats = keep
        wanted = set(keep)
        self.attributes = [
            (k, v)
            for k, v in self.attributes
            if k not in ("rtpmap", "fmtp") or (v or "").split(" ", 1)[0] in wanted
        ]

    def _lines(self) -> list[str]:
        count = "" if self.port_count is None else f"/{self.port_count}"
        out = [f"m={self.media} {self.port}{count} {self.proto} {' '.join(self.formats)}".rstrip()]
        others = sorted(self.lines, key=lambda kv: _MEDIA_ORDER.get(kv[0], 9))
        out.extend(f"{k}={v}" for k, v in others if _MEDIA_ORDER.get(k, 9) < 1)
        if self.connection is not None:
            out.append(f"c={self.connection}")
        out.extend(f"{k}={v}" for k, v in others if _MEDIA_ORDER.get(k, 9) >= 1)
        out.extend(f"a={k}" if v is None else f"a={k}:{v}" for k, v in self.attributes)
        return out


@dataclass
class SessionDescription:
    """A whole SDP body: session-level lines and the media descriptions."""

    origin: Origin
    session_name: str = "-"
    connection: Connection | None = None
    media: list[Media] = field(default_factory=list)
    attributes: list[tuple[str, str | None]] = field(default_factory=list)
    lines: list[tuple[str, str]] = field(default_factory=list)
    version: int = 0

    @property
    def direction(self) -> str:
        """Session-level direction attribute, defaulting to sendrecv."""
        for key, _ in self.attributes:
            if key in DIRECTIONS:
                return key
        return "sendrecv"

    def media_direction(self, media: Media) -> str:
        """Effective direction of `media`: its own attribute, else the session's."""
        return media.direction or self.direction

    def media_connection(self, media: Media) -> Connection | None:
        """Effective connection of `media`: its own c=, else the session's."""
        return media.connection or self.connection

    def rewrite_address(self, address: str, *, origin: bool = True) -> None:
        """Point every connection line (session and media) at `address`, e.g. the relay's.

        The address type (IP4/IP6) follows the address. With `origin`, the o=
        address changes too. A session without any c= line gets one.
        """
        addrtype = "IP6" if ":" in address else "IP4"
        if self.connection is None and not all(m.connection for m in self.media):
            self.connection = Connection("IN", addrtype, address)
        if self.connection is not None:
            self.connection = Connection(self.connection.nettype, addrtype, address)
        for m in self.media:
            if m.connection is not None:
                m.connection = Connection(m.connection.nettype, addrtype, address)
        if origin:
            self.origin.addrtype = addrtype
            self.origin.address = address

    def __str__(self) -> str:
        out = [f"v={self.version}", f"o={self.origin}", f"s={self.session_name}"]
        others = sorted(self.lines, key=lambda kv: _SESSION_ORDER.get(kv[0], 13))
        out.extend(f"{k}={v}" for k, v in others if _SESSION_ORDER.get(k, 13) < 7)
        if self.connection is not None:
            out.append(f"c={self.connection}")
        out.extend(f"{k}={v}" for k, v in others if _SESSION_ORDER.get(k, 13) >= 7)
        out.extend(f"a={k}" if v is None else f"a={k}:{v}" for k, v in self.attributes)
        for m in self.media:
            out.extend(m._lines())
        return "\r\n".join(out) + "\r\n"

    def to_bytes(self) -> bytes:
        """The body, CRLF line ends, UTF-8."""
        return str(self).encode("utf-8", "surrogateescape")


def _parse_rtpmap(value: str) -> RtpMap:
    pt, _, rest = value.partition(" ")
    parts = rest.strip().split("/")
    if not pt.isdigit() or not parts[0] or not all(p.isdigit() for p in parts[1:3]):
        raise _bad("rtpmap")
    rate = int(parts[1]) if len(parts) > 1 else None
    channels = int(parts[2]) if len(parts) > 2 else None
    return RtpMap(int(pt), parts[0], rate, channels)


def _parse_crypto(value: str) -> Crypto:
    parts = value.split()
    if len(parts) < 3 or not parts[0].isdigit():
        raise _bad("crypto attribute")
    return Crypto(int(parts[0]), parts[1], parts[2], parts[3:])


def _parse_connection(value: str) -> Connection:
    parts = value.split()
    if len(parts) != 3:
        raise _bad("connection line")
    return Connection(*parts)


def _parse_attribute(value: str) -> tuple[str, str | None]:
    name, colon, rest = value.partition(":")
    if not name:
        raise _bad("attribute")
    return (name, rest if colon else None)


def parse_sdp(body: bytes | str) -> SessionDescription:
    """Parse an SDP body (CRLF or LF line ends). Raises SipParseError on malformed SDP."""
    text = body.decode("utf-8", "surrogateescape") if isinstance(body, bytes) else body
    raw_lines = text.replace("\r\n", "\n").split("\n")
    lines = [ln for ln in raw_lines if ln]
    if not lines or not lines[0].startswith("v="):
        raise _bad("must start with v=")
    version_text = lines[0][2:].strip()
    if not version_text.isdigit():
        raise _bad("version")
    origin: Origin | None = None
    session_name = "-"
    connection: Connection | None = None
    attributes: list[tuple[str, str | None]] = []
    others: list[tuple[str, str]] = []
    media: list[Media] = []
    current: Media | None = None
    for line in lines[1:]:
        if len(line) < 2 or line[1] != "=":
            raise _bad("line is not <type>=<value>")
        kind, value = line[0], line[2:]
        if kind == "m":
            current = _parse_media(value)
            media.append(current)
        elif current is not None:
            if kind == "c":
                current.connection = _parse_connection(value)
            elif kind == "a":
                current.attributes.append(_parse_attribute(value))
            else:
                current.lines.append((kind, value))
        elif kind == "o":
            parts = value.split()
            if len(parts) != 6 or not parts[2].isdigit():
                raise _bad("origin line")
            origin = Origin(parts[0], parts[1], int(parts[2]), parts[3], parts[4], parts[5])
        elif kind == "s":
            session_name = value
        elif kind == "c":
            connection = _parse_connection(value)
        elif kind == "a":
            attributes.append(_parse_attribute(value))
        else:
            others.append((kind, value))
    if origin is None:
        raise _bad("missing origin line")
    return SessionDescription(
        origin=origin,
        session_name=session_name,
        connection=connection,
        media=media,
        attributes=attributes,
        lines=others,
        version=int(version_text),
    )


def _parse_media(value: str) -> Media:
    parts = value.split()
    if len(parts) < 3:
        raise _bad("media line")
    port_text, _, count_text = parts[1].partition("/")
    if not port_text.isdigit() or int(port_text) > 65535:
        raise _bad("media port")
    if count_text and not count_text.isdigit():
        raise _bad("media port count")
    return Media(
        media=parts[0],
        port=int(port_text),
        proto=parts[2],
        formats=parts[3:],
        port_count=int(count_text) if count_text else None,
    )
