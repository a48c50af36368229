"""SDP rewriting for an anchored call, sans-I/O.

`read_peer_media` takes from one leg's SDP what the relay needs about each m=
line (where to send, what it sends, its SDES key). `anchor_sdp` rewrites that
SDP for the other leg: every address becomes the relay's, every port the
relay's port for that leg, and what the other side must not see or cannot use
through the relay is removed (ICE candidates and credentials, DTLS
fingerprints, rtcp-mux, BUNDLE groups, the first side's SDES keys). SRTP
towards a leg is expressed as RTP/SAVP with the relay's own a=crypto line.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from opentrunk.media.backend import MediaSdpError
from opentrunk.sip.errors import SipParseError
from opentrunk.sip.sdp import Crypto, Media, SessionDescription, parse_sdp

__all__ = ["SRTP_SUITE", "PeerMedia", "anchor_sdp", "parse", "read_peer_media"]

SRTP_SUITE = "AES_CM_128_HMAC_SHA1_80"
# Not for the other side's eyes, or meaningless once media goes through the relay.
_STRIP_MEDIA = frozenset(
    {
        "candidate",
        "end-of-candidates",
        "remote-candidates",
        "ice-ufrag",
        "ice-pwd",
        "ice-options",
        "ice-lite",
        "ice-mismatch",
        "rtcp",
        "rtcp-mux",
        "fingerprint",
        "setup",
        "crypto",
        "mid",
    }
)
_STRIP_SESSION = _STRIP_MEDIA | {"group", "msid-semantic"}
_NOT_MEDIA_CLOCK = frozenset({"telephone-event", "cn", "red", "ulpfec"})
_SRTP_PROTOS = frozenset({"RTP/SAVP", "RTP/SAVPF"})


@dataclass(frozen=True)
class PeerMedia:
    """One m= line as its sender described it."""

    media: str
    host: str | None  # None: on hold (0.0.0.0) or rejected (port 0)
    rtp_port: int
    rtcp_port: int
    direction: str
    codec: str | None
    clock_rate: int
    media_payload_types: frozenset[int]
    sdes_tag: int | None
    sdes_key: bytes | None  # 30 bytes master key || salt; secret

    @property
    def sends(self) -> bool:
        """Whether this side says it will send media on this line."""
        return self.host is not None and self.direction in ("sendrecv", "sendonly")

    def __repr__(self) -> str:
        return f"PeerMedia({self.media} {self.host}:{self.rtp_port} {self.direction})"


def parse(body: bytes) -> SessionDescription:
    try:
        return parse_sdp(body)
    except SipParseError as exc:
        raise MediaSdpError(str(exc)) from exc


def _sdes(media: Media) -> tuple[int, bytes] | None:
    for crypto in media.crypto:
        key = _usable_key(crypto)
        if key is not None:
            return crypto.tag, key
    return None


def _usable_key(crypto: Crypto) -> bytes | None:
    if crypto.suite != SRTP_SUITE or crypto.session_params:
        return None
    params = crypto.key_params.split(";")
    if len(params) != 1 or not params[0].startswith("inline:"):
        return None
    parts = params[0][len("inline:") :].split("|")
    if len(parts) > 2 or (len(parts) == 2 and ":" in parts[1]):
        return None  # an MKI, which the relay does not do
    try:
        key = base64.b64decode(parts[0], validate=True)
    except ValueError:
        return None
    return key if len(key) == 30 else None


def read_peer_media(sdp: SessionDescription, *, want_srtp: bool) -> list[PeerMedia | None]:
    """Per m= line what the relay needs, None for a rejected line (port 0).

    With `want_srtp`, a line that is not RTP/SAVP(F) or has no usable
    AES_CM_128_HMAC_SHA1_80 inline key raises MediaSdpError.
    """
    out: list[PeerMedia | None] = []
    for m in sdp.media:
        if m.port == 0:
            out.append(None)
            continue
        conn = sdp.media_connection(m)
        if conn is None:
            raise MediaSdpError("media line without a connection address")
        host = None if conn.is_hold else conn.host
        rtcp_port = m.port + 1
        rtcp = m.get_attribute("rtcp")
        if rtcp:
            first = rtcp.split()[0]
            if first.isdigit():
                rtcp_port = int(first)
        maps = m.rtpmaps
        media_pts = frozenset(
            pt
            for pt in m.payload_types
            if pt not in maps or maps[pt].encoding.lower() not in _NOT_MEDIA_CLOCK
        )
        codec: str | None = None
        clock = 8000
        for pt in m.payload_types:
            if pt in media_pts and pt in maps:
                codec = maps[pt].encoding
                clock = maps[pt].clock_rate or 8000
                break
        sdes = _sdes(m) if want_srtp else None
        if want_srtp and sdes is None:
            raise MediaSdpError("no usable SDES key (AES_CM_128_HMAC_SHA1_80 inline)")
        if want_srtp and m.proto.upper() not in _SRTP_PROTOS:
            # A key on an RTP/AVP line is not an SRTP answer (RFC 4568 5.1): the peer
            # would send plain RTP.
            raise MediaSdpError(f"{m.proto} on a leg that must speak SRTP")
        out.append(
            PeerMedia(
                media=m.media,
                host=host,
                rtp_port=m.port,
                rtcp_port=rtcp_port,
                direction=sdp.media_direction(m),
                codec=codec,
                clock_rate=clock,
                media_payload_types=media_pts,
                sdes_tag=sdes[0] if sdes else None,
                sdes_key=sdes[1] if sdes else None,
            )
        )
    return out


def _proto(proto: str, srtp: bool) -> str:
    if srtp:
        return {"RTP/AVP": "RTP/SAVP", "RTP/AVPF": "RTP/SAVPF"}.get(proto, proto)
    return {"RTP/SAVP": "RTP/AVP", "RTP/SAVPF": "RTP/AVPF"}.get(proto, proto)


def anchor_sdp(
    sdp: SessionDescription,
    *,
    address: str,
    ports: list[int | None],
    sdes: list[tuple[int, bytes] | None],
) -> bytes:
    """Rewrite `sdp` (in place) for the receiving leg and return the body.

    `ports[i]` is the relay's RTP port for m= line i on the receiving leg
    (RTCP one above), None to leave a rejected line at port 0; `sdes[i]` the
    (tag, key) the relay will encrypt with towards that leg, None for plain RTP.
    """
    sdp.rewrite_address(address)
    sdp.attributes = [(k, v) for k, v in sdp.attributes if k not in _STRIP_SESSION]
    for i, m in enumerate(sdp.media):
        port = ports[i] if i < len(ports) else None
        if port is None or m.port == 0:
            m.port = 0
            continue
        m.port = port
        m.port_count = None
        m.attributes = [(k, v) for k, v in m.attributes if k not in _STRIP_MEDIA]
        m.attributes.append(("rtcp", str(port + 1)))
        key = sdes[i] if i < len(sdes) else None
        m.proto = _proto(m.proto, key is not None)
        if key is not None:
            tag, secret = key
            inline = base64.b64encode(secret).decode("ascii")
            m.attributes.append(("crypto", f"{tag} {SRTP_SUITE} inline:{inline}"))
    return sdp.to_bytes()
