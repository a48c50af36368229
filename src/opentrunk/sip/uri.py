"""SIP, SIPS, tel and other URIs (RFC 3261 section 19.1, RFC 3966).

Owns: `parse_uri(text) -> SipURI | TelURI | AbsoluteURI`, the three URI
classes, their wire form (`str(uri)`) and their comparison rules.

- Components are stored *as written* (escapes kept) so that `str()` gives back
  an equivalent text; comparisons (`==`, `uri_equal`) unescape first and follow
  RFC 3261 19.1.4: userinfo case-sensitive, host and everything else
  case-insensitive, an absent port differs from an explicit 5060, the params
  user/ttl/method/maddr/transport must match when either side has them, other
  params only when both sides have them, headers must all match.
- `SipURI.params` is an ordered dict name -> raw value (None for a flag);
  `SipURI.headers` an ordered dict of the ``?h=v&...`` part.
- IPv6 references keep their brackets in `host` (``[2001:db8::1]``).
- Unknown schemes parse into `AbsoluteURI` (scheme + opaque text); deciding to
  answer 416 for them is the caller's business.
"""

from __future__ import annotations

import re

from opentrunk.sip.errors import SipParseError
from opentrunk.sip.grammar import Params, format_params, unescape

__all__ = ["URI", "AbsoluteURI", "SipURI", "TelURI", "parse_uri", "uri_equal"]

_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")
# Characters that never appear unescaped in a SIP URI (so never in ours).
_BAD_URI_CHARS = re.compile(r"[\s<>\"{}|\\^`]")
_PORT_MAX = 65535
# 19.1.4: these params must match if present in either URI.
_STRICT_PARAMS = ("user", "ttl", "method", "maddr", "transport")


class SipURI:
    """A ``sip:`` or ``sips:`` URI.

    Construct directly (``SipURI(host="example.com", user="alice", port=5060,
    params={"transport": "tcp"})``) or with `parse_uri`. Fields are mutable
    and stored as written (user/password may contain %-escapes).
    """

    __slots__ = ("headers", "host", "params", "password", "port", "scheme", "user")

    def __init__(
        self,
        host: str,
        user: str | None = None,
        port: int | None = None,
        params: Params | None = None,
        headers: dict[str, str] | None = None,
        *,
        scheme: str = "sip",
        password: str | None = None,
    ) -> None:
        self.scheme = scheme
        self.user = user
        self.password = password
        self.host = host
        self.port = port
        self.params: Params = params if params is not None else {}
        self.headers: dict[str, str] = headers if headers is not None else {}

    # -- convenience -------------------------------------------------------

    @property
    def secure(self) -> bool:
        """True for a ``sips:`` URI."""
        return self.scheme.lower() == "sips"

    @property
    def transport(self) -> str | None:
        """The transport parameter, lower-cased, if present."""
        for k, v in self.params.items():
            if k.lower() == "transport":
                return v.lower() if v else None
        return None

    @property
    def lr(self) -> bool:
        """True if the loose-routing flag ``;lr`` is present."""
        return any(k.lower() == "lr" for k in self.params)

    @property
    def maddr(self) -> str | None:
        """The maddr parameter, if present."""
        for k, v in self.params.items():
            if k.lower() == "maddr":
                return v
        return None

    @property
    def host_bare(self) -> str:
        """The host without IPv6 brackets (what a resolver or socket wants)."""
        h = self.host
        return h[1:-1] if h[:1] == "[" else h

    def copy(self) -> SipURI:
        """A copy with its own params and headers dicts."""
        return SipURI(
            self.host,
            self.user,
            self.port,
            dict(self.params),
            dict(self.headers),
            scheme=self.scheme,
            password=self.password,
        )

    def __str__(self) -> str:
        parts = [self.scheme, ":"]
        if self.user is not None:
            parts.append(self.user)
            if self.password is not None:
                parts.append(":")
                parts.append(self.password)
            parts.append("@")
        parts.append(self.host)
        if self.port is not None:
            parts.append(f":{self.port}")
        if self.params:
            parts.append(format_params(self.params))
        if self.headers:
            parts.append("?" + "&".join(f"{k}={v}" for k, v in self.headers.items()))
        return "".join(parts)

    def __repr__(self) -> str:
        return f"SipURI({str(self)!r})"

    def _key(self) -> tuple[str, str | None, str | None, str, int | None]:
        return (
            self.scheme.lower(),
            None if self.user is None else unescape(self.user),
            None if self.password is None else unescape(self.password),
            unescape(self.host).lower(),
            self.port,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SipURI):
            return NotImplemented
        if self._key() != other._key():
            return False
        mine = _normalized(self.params)
        theirs = _normalized(other.params)
        for name in _STRICT_PARAMS:
            if mine.get(name, _ABSENT) != theirs.get(name, _ABSENT):
                return False
        for name, value in mine.items():
            if name in theirs and theirs[name] != value:
                return False
        return _normalized_headers(self.headers) == _normalized_headers(other.headers)

    def __hash__(self) -> int:
        return hash(self._key())


class TelURI:
    """A ``tel:`` URI (RFC 3966): the number as written plus parameters."""

    __slots__ = ("number", "params")

    def __init__(self, number: str, params: Params | None = None) -> None:
        self.number = number
        self.params: Params = params if params is not None else {}

    scheme = "tel"

    def copy(self) -> TelURI:
        """A copy with its own params dict."""
        return TelURI(self.number, dict(self.params))

    @property
    def digits(self) -> str:
        """The number without visual separators (``-``, ``.``, ``(``, ``)``)."""
        return re.sub(r"[\-.()]", "", unescape(self.number))

    def __str__(self) -> str:
        return f"tel:{self.number}{format_params(self.params)}"

    def __repr__(self) -> str:
        return f"TelURI({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TelURI):
            return NotImplemented
        return self.digits.lower() == other.digits.lower() and _normalized(
            self.params
        ) == _normalized(other.params)

    def __hash__(self) -> int:
        return hash(self.digits.lower())


class AbsoluteURI:
    """A URI of any other scheme (``http:``, ``urn:``, ``isbn:``...), kept opaque."""

    __slots__ = ("opaque", "scheme")

    def __init__(self, scheme: str, opaque: str) -> None:
        self.scheme = scheme
        self.opaque = opaque

    def copy(self) -> AbsoluteURI:
        """A copy (the fields are plain strings)."""
        return AbsoluteURI(self.scheme, self.opaque)

    def __str__(self) -> str:
        return f"{self.scheme}:{self.opaque}"

    def __repr__(self) -> str:
        return f"AbsoluteURI({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AbsoluteURI):
            return NotImplemented
        return self.scheme.lower() == other.scheme.lower() and unescape(self.opaque) == unescape(
            other.opaque
        )

    def __hash__(self) -> int:
        return hash((self.scheme.lower(), unescape(self.opaque)))


URI = SipURI | TelURI | AbsoluteURI

_ABSENT = object()


def _normalized(params: Params) -> dict[str, object]:
    return {
        unescape(k).lower(): (None if v is None else unescape(v).lower()) for k, v in params.items()
    }


def _normalized_headers(headers: dict[str, str]) -> dict[str, str]:
    return {unescape(k).lower(): unescape(v) for k, v in headers.items()}


def uri_equal(a: URI, b: URI) -> bool:
    """RFC 3261 19.1.4 equality (same as ``a == b``; False across URI kinds)."""
    return type(a) is type(b) and a == b


def parse_uri(text: str) -> URI:
    """Parse a URI from its text (no surrounding <> or whitespace allowed).

    Returns `SipURI` for sip/sips, `TelURI` for tel, `AbsoluteURI` otherwise.
    Raises SipParseError (400) if `text` is not a URI.
    """
    scheme, colon, rest = text.partition(":")
    if not colon or not _SCHEME_RE.fullmatch(scheme):
        raise SipParseError("bad URI scheme")
    low = scheme.lower()
    if low == "sip" or low == "sips":
        return _parse_sip(scheme, rest)
    if _BAD_URI_CHARS.search(rest) or not rest:
        raise SipParseError("bad character in URI")
    if low == "tel":
        number, semi, ptext = rest.partition(";")
        if not number:
            raise SipParseError("empty tel number")
        return TelURI(number, _uri_params(ptext) if semi else {})
    return AbsoluteURI(scheme, rest)


_NOT = r"\s<>\"{}|\\^`"  # never unescaped in a URI
_SIP_PARTS = re.compile(
    rf"(?:([^{_NOT}@]*)@)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-.]+)(?::([0-9]{{1,5}}))?"
    rf"((?:;[^{_NOT};?]*)*)(?:\?([^{_NOT}]*))?"
)


def _parse_sip(scheme: str, rest: str) -> SipURI:
    m = _SIP_PARTS.fullmatch(rest)
    if m is None:
        raise SipParseError("bad SIP URI")
    userinfo, host, port_text, ptext, htext = m.groups()
    user: str | None = None
    password: str | None = None
    if userinfo is not None:
        if not userinfo:
            raise SipParseError("empty user part in SIP URI")
        user, colon, pw = userinfo.partition(":")
        if colon:
            password = pw
    port: int | None = None
    if port_text is not None:
        port = int(port_text)
        if port > _PORT_MAX:
            raise SipParseError("bad port")
    params = _uri_params(ptext[1:]) if ptext else {}
    headers: dict[str, str] = {}
    if htext is not None:
        for item in htext.split("&"):
            hname, eq, hvalue = item.partition("=")
            if not hname or not eq:
                raise SipParseError("bad header in SIP URI")
            headers[hname] = hvalue
    return SipURI(host, user, port, params, headers, scheme=scheme, password=password)


def _uri_params(text: str) -> Params:
    params: Params = {}
    for piece in text.split(";"):
        name, eq, value = piece.partition("=")
        if not name:
            raise SipParseError("empty URI parameter")
        params[name] = value if eq else None
    return params
