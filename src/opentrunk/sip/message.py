"""SIP requests and responses: the model, the parser and the serializer (sans-I/O).

Owns `Request`, `Response` (base `Message`), `parse_message`, the stream-framing
helpers `find_message_end` / `strip_keepalives`, and `make_response`
(RFC 3261 8.2.6). Re-exports the header value classes and `SipParseError` so
most callers need only this module::

    from opentrunk.sip.message import (
        Request, Response, parse_message, SipParseError, make_response)

    msg = parse_message(datagram)          # Request | Response, or raises
    msg.call_id, msg.cseq.number, msg.top_via.branch, msg.from_.tag
    reply = make_response(msg, 180, to_tag="a6c85cf")
    transport.send(reply.to_bytes())

Parsing (`parse_message`, one message per datagram or per framed stream chunk):

- leading CRLFs are skipped; the header block ends at the first empty line
  (or at the end of the data when there is none); folding is undone; the
  octets are decoded as UTF-8 with ``surrogateescape``, so any byte survives;
- the body is Content-Length octets (octets past it are ignored); without a
  Content-Length it is the rest of the data; a Content-Length larger than
  what is present, negative, or two different Content-Lengths raise;
- checked before `parse_message` returns: the start line, Content-Length,
  CSeq (parsed), and the syntax of the Request-URI, every Via, From, To,
  Contact and Max-Forwards (compiled expressions matching exactly what the
  object parsers accept). Objects for them are built on first access and
  cached. Everything else (Route, Record-Route, any other header) is only
  parsed on access; accessors raise SipParseError for a malformed value.
- a lone CR or LF inside a header line makes the message invalid (it would
  be an injected header at the next hop); LF-only line ends are tolerated.
- a *request* that fails validation raises SipParseError with the status to
  answer (400, 505 for a version other than SIP/2.0) and, when its start line
  and top Via could be read, `err.partial`: a Request carrying the raw headers
  that `make_response(err.partial, err.status)` can answer. A *response* that
  fails raises too (err.partial is None); the caller drops it.

Structured properties (`vias`, `from_`, `to`, `cseq`, `contacts`, ...) are
derived from `headers` and cached by the identity of the raw values, so after
``msg.headers.set(...)`` they reflect the change. The objects they return are
shared with the cache: treat them as read-only and write changes back through
`headers` (or `push_via` / `pop_via` / `set_top_via`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from opentrunk.sip.errors import SipParseError
from opentrunk.sip.grammar import (
    NAME_ADDR_LIST_RE,
    NAME_ADDR_RE,
    REQUEST_URI_RE,
    VIA_LIST_RE,
    is_token,
    param_lookup,
    split_commas,
)
from opentrunk.sip.headers import (
    CSeq,
    Headers,
    NameAddr,
    Via,
    _check_field,
    canonical_name,
    header_key,
    parse_cseq,
    parse_name_addr,
    parse_name_addrs,
    parse_via,
    parse_vias,
)
from opentrunk.sip.reasons import reason_phrase
from opentrunk.sip.uri import URI, AbsoluteURI, parse_uri

__all__ = [
    "SUPPORTED_URI_SCHEMES",
    "CSeq",
    "Headers",
    "Message",
    "NameAddr",
    "Request",
    "Response",
    "SipParseError",
    "Via",
    "check_uri_scheme",
    "find_message_end",
    "make_response",
    "parse_message",
    "reason_phrase",
    "strip_keepalives",
]

SIP_VERSION = "SIP/2.0"
MAX_HEAD_SIZE = 65536
"""find_message_end raises (513) when no header block end is found within this many octets."""

_T = TypeVar("_T")
_FOLD_RE = re.compile(r"[ \t]*\r?\n[ \t]+")
_CL_RE = re.compile(rb"(?im)^(?:content-length|l)[ \t]*:[ \t]*([^\r\n]*)")
# Single-valued headers that may repeat only with the same value (RFC 4475 multi01).
_SINGLE = ("call-id", "cseq", "from", "to", "max-forwards", "content-type")
_REQUIRED = ("via", "from", "to", "call-id", "cseq")
_REQUIRED_SET = frozenset(_REQUIRED)
_METHODS = frozenset(
    [
        "INVITE",
        "ACK",
        "BYE",
        "CANCEL",
        "OPTIONS",
        "REGISTER",
        "PRACK",
        "UPDATE",
        "INFO",
        "REFER",
        "NOTIFY",
        "SUBSCRIBE",
        "MESSAGE",
        "PUBLISH",
    ]
)


class Message:
    """What requests and responses share: `headers`, `body`, derived properties."""

    __slots__ = ("_cache", "_wire", "body", "headers")

    headers: Headers
    body: bytes
    # The last wire form and what it was built from: (headers, their version, start
    # line, body, octets). A message re-sent unchanged (retransmissions, a re-sent ACK)
    # is serialized once.
    _wire: tuple[Headers, int, str, bytes, bytes] | None

    def __init__(
        self, headers: Headers | Iterable[tuple[str, str]] | None = None, body: bytes = b""
    ) -> None:
        if headers is None:
            headers = Headers()
        elif not isinstance(headers, Headers):
            headers = Headers(headers)
        self.headers = headers
        self.body = body
        self._cache: dict[str, tuple[object, Any]] = {}
        self._wire = None

    # -- derived, cached views of header values -----------------------------

    def _derive(self, key: str, parse: Callable[[list[str]], _T]) -> _T | None:
        """Parse the values of header `key` with `parse`, cached by identity of the values."""
        values = self.headers._idx().get(key)
        if values is None:
            return None
        hit = self._cache.get(key)
        if hit is not None and hit[0] is values:
            cached: _T = hit[1]
            return cached
        result = parse(values)
        self._cache[key] = (values, result)
        return result

    def _required(self, key: str, parse: Callable[[list[str]], _T]) -> _T:
        result = self._derive(key, parse)
        if result is None:
            raise SipParseError(f"missing {canonical_name(key)} header")
        return result

    @property
    def call_id(self) -> str:
        """The Call-ID (raises SipParseError if missing)."""
        value = self.headers.get("call-id")
        if value is None:
            raise SipParseError("missing Call-ID header")
        return value

    @property
    def cseq(self) -> CSeq:
        """The CSeq header, parsed."""
        return self._required("cseq", _first(parse_cseq))

    @property
    def from_(self) -> NameAddr:
        """The From header, parsed."""
        return self._required("from", _first(parse_name_addr))

    @property
    def to(self) -> NameAddr:
        """The To header, parsed."""
        return self._required("to", _first(parse_name_addr))

    @property
    def vias(self) -> list[Via]:
        """Every Via element, top first (a new list; the Via objects are shared)."""
        return list(self._derive("via", parse_vias) or ())

    @property
    def top_via(self) -> Via:
        """The first Via element (raises SipParseError if there is none)."""
        vias = self._derive("via", parse_vias)
        if not vias:
            raise SipParseError("missing Via header")
        return vias[0]

    @property
    def max_forwards(self) -> int | None:
        """Max-Forwards as an int (leading zeros allowed), or None if absent."""
        return self._derive("max-forwards", _first(_parse_max_forwards))

    @property
    def contacts(self) -> list[NameAddr]:
        """Every Contact element (``*`` gives one NameAddr with wildcard=True)."""
        return list(self._derive("contact", parse_name_addrs) or ())

    @property
    def routes(self) -> list[NameAddr]:
        """Every Route element, in order."""
        return list(self._derive("route", parse_name_addrs) or ())

    @property
    def record_routes(self) -> list[NameAddr]:
        """Every Record-Route element, in order."""
        return list(self._derive("record-route", parse_name_addrs) or ())

    @property
    def content_type(self) -> str | None:
        """The media type of the body, lower-cased, without parameters (e.g. 'application/sdp')."""
        value = self.headers.get("content-type")
        if value is None:
            return None
        return value.split(";", 1)[0].strip().lower()

    @property
    def expires(self) -> int | None:
        """The Expires header as an int, or None if absent or not a number."""
        value = self.headers.get("expires")
        return int(value) if value is not None and value.isdigit() else None

    def compact(self) -> None:
        """Drop the parsed views and the header index; both are rebuilt from the header
        fields on next access. For a message kept only to be re-sent or matched (a
        transaction waiting out its timers): it then holds a few objects instead of
        dozens, which keeps the garbage collector's full passes short under load. The
        cached wire form goes too (rebuilt if the message is ever sent again)."""
        self._cache.clear()
        self._wire = None
        self.headers.compact()

    # -- editing helpers ----------------------------------------------------

    def push_via(self, via: Via | str) -> None:
        """Add `via` as the new top Via."""
        below = self._cached_vias()
        self.headers.add("Via", str(via), first=True)
        if isinstance(via, Via) and below is not None:
            self._prime_vias([via.copy(), *below])

    def _cached_vias(self) -> list[Via] | None:
        """The parsed Via elements if they are cached and current (no parsing)."""
        values = self.headers._idx().get("via")
        hit = self._cache.get("via")
        if values is None:
            return []
        if hit is not None and hit[0] is values:
            vias: list[Via] = hit[1]
            return vias
        return None

    def _prime_vias(self, vias: list[Via]) -> None:
        # The Via elements just written are known: cache them instead of parsing the
        # values back (the transport stamps every request; the endpoint adds our Via).
        values = self.headers._idx().get("via")
        if values is not None:
            self._cache["via"] = (values, vias)

    def pop_via(self) -> Via | None:
        """Remove the top Via element and return it parsed (None if there was none)."""
        raw = self.headers.pop_first("via")
        return None if raw is None else parse_via(raw)

    def set_top_via(self, via: Via) -> None:
        """Replace the top Via element (e.g. after adding received/rport)."""
        vias = self._cached_vias()
        self.headers.pop_first("via")
        self.headers.add("Via", str(via), first=True)
        if vias:
            self._prime_vias([via.copy(), *vias[1:]])

    # -- wire form ----------------------------------------------------------

    def start_line(self) -> str:
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        """The message on the wire; Content-Length is always written, from len(body).

        It takes the place of the first Content-Length field (or goes last).
        """
        body = self.body
        start = self.start_line()
        headers = self.headers
        wire = self._wire
        if (
            wire is not None
            and wire[0] is headers
            and wire[1] == headers.version
            and wire[2] == start
            and wire[3] is body
        ):
            return wire[4]
        if "\r" in start or "\n" in start:
            raise ValueError("start line contains CR or LF")
        lines = [start]
        cl_done = False
        for key, name, value in headers._fields:
            if key == "content-length":
                if not cl_done:
                    lines.append(f"{name}: {len(body)}")
                    cl_done = True
                continue
            lines.append(f"{name}: {value}")
        if not cl_done:
            lines.append(f"Content-Length: {len(body)}")
        lines.append("")
        lines.append("")
        data = "\r\n".join(lines).encode("utf-8", "surrogateescape") + body
        self._wire = (headers, headers.version, start, body, data)
        return data

    def __bytes__(self) -> bytes:
        return self.to_bytes()


class Request(Message):
    """A SIP request: `method`, `uri` (parsed), `version`, `headers`, `body`.

    ``Request("INVITE", "sip:bob@example.com", headers=[("Via", ...), ...], body=sdp)``

    A parsed request keeps the Request-URI text and builds the URI object on
    first access of `uri`; assigning `uri` (object or text) replaces it.
    """

    __slots__ = ("_uri", "_uri_text", "method", "version")

    _uri: URI | None
    _uri_text: str

    def __init__(
        self,
        method: str,
        uri: URI | str,
        headers: Headers | Iterable[tuple[str, str]] | None = None,
        body: bytes = b"",
        version: str = SIP_VERSION,
    ) -> None:
        super().__init__(headers, body)
        self.method = method
        self.uri = uri
        self.version = version

    @property
    def uri(self) -> URI:
        """The Request-URI (SipURI, TelURI or AbsoluteURI)."""
        uri = self._uri
        if uri is None:
            uri = self._uri = parse_uri(self._uri_text)
        return uri

    @uri.setter
    def uri(self, value: URI | str) -> None:
        if isinstance(value, str):
            self._uri = parse_uri(value)
        else:
            self._uri = value

    def start_line(self) -> str:
        uri = self._uri
        return f"{self.method} {self._uri_text if uri is None else uri} {self.version}"

    def copy(self) -> Request:
        """A copy with its own headers (URI object shared unless you replace it)."""
        return Request(self.method, self.uri, self.headers.copy(), self.body, self.version)

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri}>"


class Response(Message):
    """A SIP response: `status`, `reason`, `version`, `headers`, `body`."""

    __slots__ = ("reason", "status", "version")

    def __init__(
        self,
        status: int,
        reason: str | None = None,
        headers: Headers | Iterable[tuple[str, str]] | None = None,
        body: bytes = b"",
        version: str = SIP_VERSION,
    ) -> None:
        super().__init__(headers, body)
        self.status = status
        self.reason = reason_phrase(status) if reason is None else reason
        self.version = version

    def start_line(self) -> str:
        return f"{self.version} {self.status} {self.reason}"

    def copy(self) -> Response:
        """A copy with its own headers."""
        return Response(self.status, self.reason, self.headers.copy(), self.body, self.version)

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason}>"


def _first(parse: Callable[[str], _T]) -> Callable[[list[str]], _T]:
    return lambda values: parse(values[0])


def _parse_max_forwards(text: str) -> int:
    if not text.isdigit() or not text.isascii():
        raise SipParseError("bad Max-Forwards")
    return int(text)


# --- parsing -----------------------------------------------------------------


def strip_keepalives(buffer: bytes) -> int:
    """How many leading CR/LF octets (keep-alives, RFC 5626 / RFC 3261 7.5) to discard."""
    return len(buffer) - len(buffer.lstrip(b"\r\n"))


def find_message_end(buffer: bytes, max_head: int = MAX_HEAD_SIZE) -> int | None:
    """Frame one message at the start of a stream buffer.

    Returns the total length of the first message (leading CRLFs included,
    so ``parse_message(buffer[:n])`` then ``del buffer[:n]``), or None when
    more octets are needed. Call `strip_keepalives` first if the buffer may
    hold only keep-alive CRLFs. A missing Content-Length counts as 0.

    Raises SipParseError on a negative, non-numeric or conflicting
    Content-Length (framing is lost: close the connection), or with status 513
    when no end of headers shows up within `max_head` octets.
    """
    start = strip_keepalives(buffer)
    end = buffer.find(b"\r\n\r\n", start)
    if end < 0:
        if len(buffer) - start > max_head:
            raise SipParseError("header block too large", 513)
        return None
    head = buffer[start : end + 2]
    values = {v.strip() for v in _CL_RE.findall(_unfold_bytes(head))}
    if not values:
        length = 0
    elif len(values) > 1:
        raise SipParseError("conflicting Content-Length headers")
    else:
        length = _content_length(values.pop().decode("latin-1"))
    total = end + 4 + length
    return total if len(buffer) >= total else None


def _unfold_bytes(head: bytes) -> bytes:
    if b"\n " in head or b"\n\t" in head:
        return re.sub(rb"[ \t]*\r?\n[ \t]+", b" ", head)
    return head


def _content_length(text: str) -> int:
    if text.isdigit() and text.isascii():
        return int(text)
    if text[:1] == "-":
        raise SipParseError("negative Content-Length")
    raise SipParseError("bad Content-Length")


def parse_message(data: bytes) -> Request | Response:
    """Parse one SIP message from a datagram (or a framed stream chunk).

    Raises SipParseError; see the module docstring for what is checked and for
    `partial`.
    """
    if data[:1] in (b"\r", b"\n"):
        data = data.lstrip(b"\r\n")
    end = data.find(b"\r\n\r\n")
    if end >= 0:
        head = data[:end].decode("utf-8", "surrogateescape")
        body_start = end + 4
    elif (end := data.find(b"\n\n")) >= 0:
        # Tolerated: LF-only line ends.
        head = data[:end].decode("utf-8", "surrogateescape")
        body_start = end + 2
    else:
        # Tolerated: a datagram whose header block just stops (RFC 4475 baddn's archive form).
        head = data.rstrip(b"\r\n").decode("utf-8", "surrogateescape")
        body_start = len(data)
    if "\n " in head or "\n\t" in head:
        head = _FOLD_RE.sub(" ", head)
    lines = head.split("\r\n")
    breaks = len(lines) - 1
    if breaks == 0 and "\n" in head:
        lines = head.split("\n")  # Tolerated: LF-only line ends.
        breaks = 0
    first = lines[0]
    if not first:
        raise SipParseError("empty message")
    # A lone CR or LF inside a line would become a line break for the next hop
    # (header injection): such a message is invalid.
    bad_line: str | None = None
    if head.count("\r") != breaks or head.count("\n") != len(lines) - 1:
        bad_line = "bare CR or LF in the header block"

    # Header fields: (key, name as written, value) plus an index key -> values.
    fields: list[tuple[str, str, str]] = []
    index: dict[str, list[str]] = {}
    known = _KEYS.get
    add_field = fields.append
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        key = known(name)
        if key is None or not colon:
            name = name.rstrip(" \t")
            if not colon or not is_token(name):
                bad_line = bad_line or "bad header line"
                continue
            key = header_key(name)
        # strip() without arguments is the fast C path; it also drops other
        # whitespace (VT, FF, FS..US, Unicode spaces) at the ends of a value,
        # none of which the grammar allows there.
        value = value.strip()
        add_field((key, name, value))
        if key in index:
            index[key].append(value)
        else:
            index[key] = [value]
    headers = Headers._from_parsed(fields, index)

    if first.startswith("SIP/"):
        return _finish_response(first, headers, index, data, body_start, bad_line)
    return _finish_request(first, headers, index, data, body_start, bad_line)


def _body(data: bytes, body_start: int, index: dict[str, list[str]]) -> bytes:
    cls = index.get("content-length")
    if cls is None:
        return data[body_start:]
    if len(cls) > 1 and any(v != cls[0] for v in cls):
        raise SipParseError("conflicting Content-Length headers")
    length = _content_length(cls[0])
    if body_start + length > len(data):
        raise SipParseError("Content-Length larger than the message")
    return data[body_start : body_start + length]


def _finish_response(
    first: str,
    headers: Headers,
    index: dict[str, list[str]],
    data: bytes,
    body_start: int,
    bad_line: str | None,
) -> Response:
    parts = first.split(" ", 2)
    if len(parts) < 2:
        raise SipParseError("bad status line")
    version = parts[0]
    if version != SIP_VERSION and version.upper() != SIP_VERSION:
        raise SipParseError("unsupported SIP version", 505)
    code = parts[1]
    if len(code) != 3 or not code.isdigit() or not code.isascii() or code[0] in "0789":
        raise SipParseError("bad status code")
    if bad_line:
        raise SipParseError(bad_line)
    body = _body(data, body_start, index)
    resp = Response.__new__(Response)
    resp.headers = headers
    resp.body = body
    resp._cache = {}
    resp._wire = None
    resp.status = int(code)
    resp.reason = parts[2] if len(parts) > 2 else ""
    resp.version = SIP_VERSION
    _validate(resp, index, None)
    return resp


def _finish_request(
    first: str,
    headers: Headers,
    index: dict[str, list[str]],
    data: bytes,
    body_start: int,
    bad_line: str | None,
) -> Request:
    parts = first.split(" ")
    if len(parts) != 3:
        # Tolerated: several SP between the elements and trailing SP (RFC 4475
        # lwsstart, trws). A URI containing a space still gives too many parts.
        parts = first.split()
        if len(parts) != 3:
            raise SipParseError("bad request line", 400, _partial(parts, headers, index, data))
    method, uri_text, version = parts
    req = Request.__new__(Request)
    req.headers = headers
    req.body = b""
    req._cache = {}
    req._wire = None
    req.method = method
    req.version = SIP_VERSION
    req._uri = None
    req._uri_text = uri_text
    try:
        if version != SIP_VERSION and version.upper() != SIP_VERSION:
            raise SipParseError("unsupported SIP version", 505)
        if method not in _METHODS and not is_token(method):
            raise SipParseError("bad method")
        if REQUEST_URI_RE.fullmatch(uri_text) is None:
            parse_uri(uri_text)  # raises with the precise reason
            raise SipParseError("Request-URI must not carry headers")
        if bad_line:
            raise SipParseError(bad_line)
        req.body = _body(data, body_start, index)
        _validate(req, index, method)
    except SipParseError as err:
        if err.partial is None:
            err.partial = _partial(parts, headers, index, data)
        raise
    return req


class _Accepted:
    """Whether `expression` accepts a whole header value, remembering the values it
    accepted recently: a call's From, To and Contact recur in most of its messages.
    Two generations of at most `size` values (the older dropped when the newer fills),
    values of at most `_REMEMBER_MAX` characters (a peer sending huge unique values
    must not make the memo big)."""

    __slots__ = ("current", "expression", "previous", "size")

    def __init__(self, expression: re.Pattern[str], size: int = 4096) -> None:
        self.expression = expression
        self.size = size
        self.current: set[str] = set()
        self.previous: set[str] = set()

    def __call__(self, value: str) -> bool:
        if value in self.current:
            return True
        if value not in self.previous and self.expression.fullmatch(value) is None:
            return False
        if len(value) <= _REMEMBER_MAX:
            if len(self.current) >= self.size:
                self.previous = self.current
                self.current = set()
            self.current.add(value)
        return True


_REMEMBER_MAX = 512


_VALID_VIA = _Accepted(VIA_LIST_RE)
_VALID_NAME_ADDR = _Accepted(NAME_ADDR_RE)
_VALID_CONTACT = _Accepted(NAME_ADDR_LIST_RE, 2048)


def _validate(msg: Message, index: dict[str, list[str]], method: str | None) -> None:
    """Checks shared by requests (`method` given) and responses (`method` None).

    The headers an element must check before answering are syntax-checked
    here with compiled expressions; their objects are built on first access.
    """
    if not index.keys() >= _REQUIRED_SET:
        for key in _REQUIRED:
            if key not in index:
                raise SipParseError(f"missing {canonical_name(key)} header")
    if len(msg.headers._fields) != len(index):  # some header repeats: look closer
        for key in _SINGLE:
            values = index.get(key)
            if values is not None and len(values) > 1 and any(v != values[0] for v in values):
                raise SipParseError(f"conflicting {canonical_name(key)} headers")
    cseq_values = index["cseq"]
    num, _, cseq_method = cseq_values[0].partition(" ")
    if (
        (cseq_method == method or (method is None and cseq_method in _METHODS))
        and len(num) < 10
        and num.isdigit()
        and num.isascii()
    ):
        cseq = CSeq(int(num), cseq_method)  # the common shape, checked cheaply
    else:
        cseq = parse_cseq(cseq_values[0])
        if method is not None and cseq.method != method:
            raise SipParseError("CSeq method does not match the request method")
    msg._cache["cseq"] = (cseq_values, cseq)
    for value in index["via"]:
        if not _VALID_VIA(value):
            raise SipParseError("bad Via header")
    if not _VALID_NAME_ADDR(index["from"][0]):
        raise SipParseError("bad From header")
    if not _VALID_NAME_ADDR(index["to"][0]):
        raise SipParseError("bad To header")
    contacts = index.get("contact")
    if contacts is not None:
        for value in contacts:
            if not _VALID_CONTACT(value):
                raise SipParseError("bad Contact header")
    mf = index.get("max-forwards")
    if mf is not None and not (mf[0].isdigit() and mf[0].isascii()):
        raise SipParseError("bad Max-Forwards header")


def _partial(
    parts: list[str], headers: Headers, index: dict[str, list[str]], data: bytes
) -> Request | None:
    """A best-effort request to answer an invalid one from, or None if it cannot be answered."""
    vias = index.get("via")
    if not parts or not vias:
        return None
    try:
        top = split_commas(vias[0])[0]
    except SipParseError:
        top = vias[0].split(",", 1)[0]
    try:
        parse_via(top.split(";", 1)[0])
    except SipParseError:
        return None
    method = parts[0]
    uri_text = parts[1] if len(parts) > 1 else ""
    try:
        uri: URI = parse_uri(uri_text)
    except SipParseError:
        scheme, _, rest = uri_text.partition(":")
        uri = AbsoluteURI(scheme or "invalid", rest)
    req = Request.__new__(Request)
    req.headers = headers
    req.body = b""
    req._cache = {}
    req._wire = None
    req.method = method
    req._uri = uri
    req._uri_text = uri_text
    req.version = SIP_VERSION
    return req


# Exact header-name spellings -> key, for the hot loop (no strip/lower needed).
_KEYS: dict[str, str] = {}
for _name in (
    "Via",
    "From",
    "To",
    "Call-ID",
    "CSeq",
    "Max-Forwards",
    "Contact",
    "Content-Type",
    "Content-Length",
    "Route",
    "Record-Route",
    "Allow",
    "Supported",
    "User-Agent",
    "Server",
    "Expires",
    "Authorization",
    "Proxy-Authorization",
    "WWW-Authenticate",
    "Proxy-Authenticate",
    "Require",
    "Accept",
    "Subject",
    "Date",
    "Call-Id",
    "Cseq",
    "Content-length",
    "Content-type",
    "Max-forwards",
    "Record-route",
    "User-agent",
    "P-Asserted-Identity",
    "Session-Expires",
    "Min-SE",
    "Allow-Events",
    "Event",
    "Refer-To",
    "Referred-By",
    "RSeq",
    "RAck",
    "Reason",
    "Privacy",
    "Timestamp",
    "Organization",
    "Diversion",
    "Remote-Party-ID",
    "Content-Disposition",
    "Warning",
    "Retry-After",
    "Unsupported",
    "Proxy-Require",
    "Accept-Language",
    "Accept-Encoding",
    "Content-Encoding",
    "Replaces",
):
    _KEYS[_name] = header_key(_name)
for _compact in "abcdefijklmnorstuvxy":
    _KEYS[_compact] = header_key(_compact)
    _KEYS[_compact.upper()] = header_key(_compact)


# --- element checks ------------------------------------------------------------

SUPPORTED_URI_SCHEMES = frozenset({"sip", "sips", "tel"})


def check_uri_scheme(request: Request, allowed: frozenset[str] = SUPPORTED_URI_SCHEMES) -> None:
    """Raise SipParseError(416, partial=request) if the Request-URI scheme is not `allowed`.

    The parser accepts any URI scheme (RFC 4475 unkscm, novelsc are valid
    messages); an element that cannot route a scheme answers 416 and never
    falls back to routing on To.
    """
    if request.uri.scheme.lower() not in allowed:
        raise SipParseError("unsupported URI scheme", 416, request)


# --- building responses ------------------------------------------------------


def make_response(
    request: Request,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
) -> Response:
    """A response to `request` per RFC 3261 8.2.6.

    Copies every Via (in order), From, To, Call-ID and CSeq, plus Timestamp
    for a 100 (8.2.6.1). `to_tag` is added to To when To has no tag yet (never
    on a 100). `headers` are appended after those. Works on the `partial` of a
    SipParseError too: headers are copied raw, missing ones are left out, and a
    value holding a lone CR or LF is never copied (it would inject a header).
    """
    # Built as trusted fields: the names are ours, the copied values are checked for
    # CR/LF here, and only the caller's `headers` go through the usual field checks.
    fields: list[tuple[str, str, str]] = []
    index = request.headers._idx()
    for key, name in _COPIED:
        values = index.get(key)
        if not values:
            continue
        if key == "via":
            fields.extend((key, name, value) for value in values if _single_line(value))
            continue
        value = values[0]
        if key == "to" and to_tag is not None and status != 100 and not _has_tag(value):
            value = f"{value};tag={to_tag}"
        if _single_line(value):
            fields.append((key, name, value))
    if status == 100:
        ts = index.get("timestamp")
        if ts and _single_line(ts[0]):
            fields.append(("timestamp", "Timestamp", ts[0]))
    for name, value in headers:
        _check_field(name, value)
        fields.append((header_key(name), name, value))
    response = Response(status, reason, Headers._from_parsed(fields, None), body)
    return response


_COPIED = (
    ("via", "Via"),
    ("from", "From"),
    ("to", "To"),
    ("call-id", "Call-ID"),
    ("cseq", "CSeq"),
)


def _single_line(value: str) -> bool:
    return "\r" not in value and "\n" not in value


_TAG_RE = re.compile(r";[ \t]*tag[ \t]*=", re.IGNORECASE)


def _has_tag(to_value: str) -> bool:
    try:
        return param_lookup(parse_name_addr(to_value).params, "tag") is not None
    except SipParseError:
        return _TAG_RE.search(to_value) is not None
