"""Header fields: the ordered multimap and the structured values a SIP stack reads.

Owns:
- `Headers`: header fields in wire order, names case-insensitive, compact forms
  mapped to canonical names, comma-separated lists split on demand;
- `Via`, `NameAddr` (From/To/Contact/Route/Record-Route...), `CSeq`, with
  `parse_via`, `parse_name_addr`, `parse_cseq` and their wire form (`str()`);
- `canonical_name(name)`, the table of compact and canonical spellings.

Values are kept raw (folding replaced by one SP, surrounding LWS stripped);
structure is parsed only when asked for.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from opentrunk.sip.errors import SipParseError
from opentrunk.sip.grammar import (
    Params,
    format_params,
    is_token,
    needs_quoting,
    param_lookup,
    parse_params,
    quote,
    scan_quoted,
    split_commas,
    unquote,
)
from opentrunk.sip.uri import URI, parse_uri

__all__ = [
    "CSEQ_MAX",
    "LIST_HEADERS",
    "CSeq",
    "Headers",
    "NameAddr",
    "Via",
    "canonical_name",
    "header_key",
    "parse_cseq",
    "parse_name_addr",
    "parse_name_addrs",
    "parse_via",
    "parse_vias",
]

CSEQ_MAX = 2**31 - 1

# Canonical spelling of well-known headers, keyed by their lower-case name.
_CANONICAL = {
    name.lower(): name
    for name in (
        "Accept",
        "Accept-Contact",
        "Accept-Encoding",
        "Accept-Language",
        "Alert-Info",
        "Allow",
        "Allow-Events",
        "Authentication-Info",
        "Authorization",
        "Call-ID",
        "Call-Info",
        "Contact",
        "Content-Disposition",
        "Content-Encoding",
        "Content-Language",
        "Content-Length",
        "Content-Type",
        "CSeq",
        "Date",
        "Diversion",
        "Error-Info",
        "Event",
        "Expires",
        "From",
        "History-Info",
        "Identity",
        "Identity-Info",
        "In-Reply-To",
        "Max-Forwards",
        "MIME-Version",
        "Min-Expires",
        "Min-SE",
        "Organization",
        "P-Asserted-Identity",
        "P-Preferred-Identity",
        "Path",
        "Priority",
        "Privacy",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "Proxy-Require",
        "RAck",
        "Reason",
        "Record-Route",
        "Refer-To",
        "Referred-By",
        "Reject-Contact",
        "Remote-Party-ID",
        "Replaces",
        "Reply-To",
        "Request-Disposition",
        "Require",
        "Retry-After",
        "Route",
        "RSeq",
        "Server",
        "Service-Route",
        "Session-Expires",
        "SIP-ETag",
        "SIP-If-Match",
        "Subject",
        "Subscription-State",
        "Supported",
        "Timestamp",
        "To",
        "Unsupported",
        "User-Agent",
        "Via",
        "Warning",
        "WWW-Authenticate",
    )
}

# Compact forms (RFC 3261 7.3.3 and later RFCs) -> lower-case canonical name.
_COMPACT = {
    "a": "accept-contact",
    "b": "referred-by",
    "c": "content-type",
    "d": "request-disposition",
    "e": "content-encoding",
    "f": "from",
    "i": "call-id",
    "j": "reject-contact",
    "k": "supported",
    "l": "content-length",
    "m": "contact",
    "n": "identity-info",
    "o": "event",
    "r": "refer-to",
    "s": "subject",
    "t": "to",
    "u": "allow-events",
    "v": "via",
    "x": "session-expires",
    "y": "identity",
}

# Headers whose value is a comma-separated list (RFC 3261 7.3.1): get_all splits them.
LIST_HEADERS = frozenset(
    {
        "accept",
        "accept-contact",
        "accept-encoding",
        "accept-language",
        "alert-info",
        "allow",
        "allow-events",
        "call-info",
        "contact",
        "content-encoding",
        "content-language",
        "diversion",
        "error-info",
        "history-info",
        "in-reply-to",
        "p-asserted-identity",
        "p-preferred-identity",
        "path",
        "proxy-require",
        "reason",
        "record-route",
        "reject-contact",
        "require",
        "route",
        "service-route",
        "supported",
        "unsupported",
        "via",
        "warning",
    }
)

# Exact spellings seen on the wire -> key; filled lazily so the hot path is one dict hit.
_KEY_CACHE: dict[str, str] = {}
_KEY_CACHE_MAX = 4096


def header_key(name: str) -> str:
    """The lookup key of a header name: lower-case canonical name (compact forms expanded)."""
    key = _KEY_CACHE.get(name)
    if key is not None:
        return key
    low = name.lower()
    key = _COMPACT.get(low, low)
    if len(_KEY_CACHE) < _KEY_CACHE_MAX:
        _KEY_CACHE[name] = key
    return key


def canonical_name(name: str) -> str:
    """The canonical spelling of a header name (``v`` -> ``Via``, ``call-id`` -> ``Call-ID``)."""
    key = header_key(name)
    return _CANONICAL.get(key, name)


# Header names already checked to be tokens: a handful of spellings cover all traffic.
_TOKEN_NAMES: set[str] = set()


def _check_field(name: str, value: str) -> None:
    # A CR or LF in a value we were handed would end the line on the wire and
    # let the caller inject header fields; a bad name would break the framing.
    if "\r" in value or "\n" in value:
        raise ValueError(f"header {name!r}: value contains CR or LF")
    if name not in _TOKEN_NAMES:
        if not is_token(name):
            raise ValueError(f"not a header name: {name!r}")
        if len(_TOKEN_NAMES) < _KEY_CACHE_MAX and len(name) <= 64:
            _TOKEN_NAMES.add(name)


class Headers:
    """Header fields in wire order; a case-insensitive multimap.

    Names are matched case-insensitively and compact forms are the same header
    as their long forms (``h.get("i")`` == ``h.get("Call-ID")``). Each field
    keeps the name as written, so an unchanged message serializes as it came.
    Values are single-line strings (folding already replaced by a space);
    `set`/`add`/the constructor raise ValueError for a value with CR or LF or a
    name that is not a token.
    """

    __slots__ = ("_fields", "_index", "version")

    def __init__(self, fields: Iterable[tuple[str, str]] | None = None) -> None:
        # Each field is (key, name as written, value). A tuple once compacted (`compact`).
        self._fields: list[tuple[str, str, str]] | tuple[tuple[str, str, str], ...] = []
        self._index: dict[str, list[str]] | None = None
        # Bumped by every change, so a message can tell its cached wire form is current.
        self.version = 0
        if fields is not None:
            added = self._editable()
            for name, value in fields:
                _check_field(name, value)
                added.append((header_key(name), name, value))

    @classmethod
    def _from_parsed(
        cls, fields: list[tuple[str, str, str]], index: dict[str, list[str]] | None
    ) -> Headers:
        """Headers from fields already checked (parsed, or copied from such headers)."""
        h = cls.__new__(cls)
        h._fields = fields
        h._index = index
        h.version = 0
        return h

    def _idx(self) -> dict[str, list[str]]:
        index = self._index
        if index is None:
            index = {}
            for key, _, value in self._fields:
                lst = index.get(key)
                if lst is None:
                    index[key] = [value]
                else:
                    lst.append(value)
            self._index = index
        return index

    def _editable(self) -> list[tuple[str, str, str]]:
        """The fields as a list to change in place (a compacted tuple becomes one again)."""
        fields = self._fields
        if isinstance(fields, tuple):
            fields = self._fields = list(fields)
        return fields

    def compact(self) -> None:
        """Drop the lookup index (one list per header name; the next lookup rebuilds it)
        and freeze the fields into a tuple: a tuple of strings is soon no longer tracked by
        the garbage collector, a list always is (and thousands of messages wait out their
        transactions' timers)."""
        self._index = None
        if isinstance(self._fields, list):
            self._fields = tuple(self._fields)

    # -- reading -----------------------------------------------------------

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of header `name`, or `default`."""
        lst = self._idx().get(header_key(name))
        return lst[0] if lst else default

    def get_raw(self, name: str) -> list[str]:
        """Every field value of header `name` as written (one entry per header line)."""
        return list(self._idx().get(header_key(name), ()))

    def get_all(self, name: str) -> list[str]:
        """Every value of header `name`; list headers (Via, Contact, Route...) split on commas.

        Raises SipParseError for a malformed list (empty element, open quote).
        """
        key = header_key(name)
        lst = self._idx().get(key)
        if not lst:
            return []
        if key not in LIST_HEADERS:
            return list(lst)
        out: list[str] = []
        for value in lst:
            out.extend(split_commas(value))
        return out

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and header_key(name) in self._idx()

    def __len__(self) -> int:
        return len(self._fields)

    def __iter__(self) -> Iterator[str]:
        return (f[1] for f in self._fields)

    def items(self) -> list[tuple[str, str]]:
        """(name as written, value) for every field, in wire order."""
        return [(f[1], f[2]) for f in self._fields]

    def keys(self) -> list[str]:
        """The distinct header keys (lower-case canonical names), in first-seen order."""
        return list(self._idx())

    # -- changing ----------------------------------------------------------

    def set(self, name: str, value: str | Iterable[str]) -> None:
        """Replace every `name` field with `value` (or one field per item of an iterable).

        The new field(s) take the place of the first old one (or go last).
        """
        key = header_key(name)
        values = [value] if isinstance(value, str) else list(value)
        for v in values:
            _check_field(name, v)
        spelled = _CANONICAL.get(key, name)
        new_fields: list[tuple[str, str, str]] = []
        placed = False
        for f in self._fields:
            if f[0] == key:
                if not placed:
                    new_fields.extend((key, spelled, v) for v in values)
                    placed = True
            else:
                new_fields.append(f)
        if not placed:
            new_fields.extend((key, spelled, v) for v in values)
        self._fields = new_fields
        self._index = None
        self.version += 1

    def add(self, name: str, value: str, first: bool = False) -> None:
        """Add a `name` field: last, or with ``first=True`` before the existing ones
        (at the top of the header block if there are none, as for a new Via)."""
        _check_field(name, value)
        key = header_key(name)
        field = (key, _CANONICAL.get(key, name), value)
        fields = self._editable()
        if first:
            for i, f in enumerate(fields):
                if f[0] == key:
                    fields.insert(i, field)
                    break
            else:
                fields.insert(0, field)
        else:
            fields.append(field)
        index = self._index
        if index is not None:
            # Kept up to date with a new list for this name only: a message caches the
            # views it parsed by the identity of their value lists, so the views of the
            # other headers stay valid.
            values = index.get(key)
            if values is None:
                index[key] = [value]
            else:
                index[key] = [value, *values] if first else [*values, value]
        self.version += 1

    def remove(self, name: str) -> None:
        """Remove every `name` field (no error if there is none)."""
        key = header_key(name)
        self._fields = [f for f in self._fields if f[0] != key]
        self._index = None
        self.version += 1

    def pop_first(self, name: str) -> str | None:
        """Remove and return the first *element* of header `name` (e.g. the top Via).

        For list headers the first comma-separated element is removed from its
        field; the field goes when it has no elements left.
        """
        key = header_key(name)
        fields = self._editable()
        for i, f in enumerate(fields):
            if f[0] != key:
                continue
            self.version += 1
            rest: str | None = None  # what stays of the field
            if key in LIST_HEADERS:
                elements = split_commas(f[2])
                popped = elements[0]
                if len(elements) > 1:
                    rest = ", ".join(elements[1:])
            else:
                popped = f[2]
            if rest is None:
                del fields[i]
            else:
                fields[i] = (key, f[1], rest)
            index = self._index
            if index is not None:
                # A new list for this name only (see `add`).
                values = index[key][1:]
                if rest is not None:
                    values.insert(0, rest)
                if values:
                    index[key] = values
                else:
                    del index[key]
            return popped
        return None

    def copy(self) -> Headers:
        """An independent copy."""
        h = Headers.__new__(Headers)
        h._fields = list(self._fields)
        h._index = None
        h.version = 0
        return h

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return [(f[0], f[2]) for f in self._fields] == [(f[0], f[2]) for f in other._fields]

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Headers({self.items()!r})"


# --- Via ---------------------------------------------------------------------

_VIA_RE = re.compile(
    r"([A-Za-z0-9\-.!%*_+`'~]+)[ \t]*/[ \t]*([A-Za-z0-9\-.!%*_+`'~]+)[ \t]*/[ \t]*"
    r"([A-Za-z0-9\-.!%*_+`'~]+)[ \t]+"
    r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-.]+)(?:[ \t]*:[ \t]*([0-9]{1,5}))?[ \t]*"
)


class Via:
    """One Via header element: ``SIP/2.0/<transport> host[:port];params``."""

    __slots__ = ("host", "params", "port", "protocol", "transport")

    def __init__(
        self,
        transport: str,
        host: str,
        port: int | None = None,
        params: Params | None = None,
        protocol: str = "SIP/2.0",
    ) -> None:
        self.transport = transport
        self.host = host
        self.port = port
        self.params: Params = params if params is not None else {}
        self.protocol = protocol

    @property
    def branch(self) -> str | None:
        """The branch parameter, or None."""
        return param_lookup(self.params, "branch")

    @property
    def rfc3261_branch(self) -> bool:
        """True if the branch has the RFC 3261 magic cookie *and* something after it.

        False means RFC 2543 transaction matching applies (RFC 4475 badbranch, inv2543).
        """
        branch = self.branch
        return branch is not None and len(branch) > 7 and branch.startswith("z9hG4bK")

    @property
    def received(self) -> str | None:
        """The received parameter, or None."""
        return param_lookup(self.params, "received")

    @property
    def rport(self) -> int | None:
        """The rport value when filled in; None when absent or a bare ``;rport`` flag."""
        value = param_lookup(self.params, "rport")
        return int(value) if value and value.isdigit() else None

    @property
    def wants_rport(self) -> bool:
        """True if the client asked for rport (RFC 3581), with or without a value."""
        return any(k.lower() == "rport" for k in self.params)

    @property
    def maddr(self) -> str | None:
        """The maddr parameter, or None."""
        return param_lookup(self.params, "maddr")

    @property
    def sent_by(self) -> tuple[str, int | None]:
        """(host, port) as the client wrote them."""
        return self.host, self.port

    def copy(self) -> Via:
        """A copy with its own params dict."""
        return Via(self.transport, self.host, self.port, dict(self.params), self.protocol)

    def __str__(self) -> str:
        port = "" if self.port is None else f":{self.port}"
        return f"{self.protocol}/{self.transport} {self.host}{port}{format_params(self.params)}"

    def __repr__(self) -> str:
        return f"Via({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Via):
            return NotImplemented
        return (
            self.protocol.upper() == other.protocol.upper()
            and self.transport.upper() == other.transport.upper()
            and self.host.lower() == other.host.lower()
            and self.port == other.port
            and _lower_params(self.params) == _lower_params(other.params)
        )

    __hash__ = None  # type: ignore[assignment]


def _lower_params(params: Params) -> dict[str, str | None]:
    return {k.lower(): v for k, v in params.items()}


def parse_via(text: str) -> Via:
    """Parse one Via element (not a comma list). Raises SipParseError."""
    text = text.strip(" \t")
    m = _VIA_RE.match(text)
    if m is None:
        raise SipParseError("bad Via header")
    name, version, transport, host, port = m.groups()
    port_num = None if port is None else int(port)
    if port_num is not None and port_num > 65535:
        raise SipParseError("bad Via port")
    rest = text[m.end() :]
    params = parse_params(rest) if rest else {}
    protocol = "SIP/2.0" if name == "SIP" and version == "2.0" else f"{name}/{version}"
    return Via(transport, host, port_num, params, protocol)


def parse_vias(values: Iterable[str]) -> list[Via]:
    """Parse every element of the given Via field values."""
    out: list[Via] = []
    for value in values:
        if "," in value:
            out.extend(parse_via(v) for v in split_commas(value))
        else:
            out.append(parse_via(value))
    return out


# --- name-addr (From, To, Contact, Route, Record-Route, ...) -----------------


class NameAddr:
    """``[display] <uri>;params`` as in From, To, Contact, Route, Record-Route.

    `display` is the display name's text (quotes and quoted-pairs resolved),
    or None. `params` are the header parameters (tag, expires, q, ...), values
    as written. A Contact of ``*`` parses to `NameAddr` with `wildcard` True.
    """

    __slots__ = ("display", "params", "uri", "wildcard")

    def __init__(
        self,
        uri: URI | None,
        display: str | None = None,
        params: Params | None = None,
        *,
        wildcard: bool = False,
    ) -> None:
        self.uri = uri
        self.display = display
        self.params: Params = params if params is not None else {}
        self.wildcard = wildcard

    @property
    def tag(self) -> str | None:
        """The tag parameter, or None."""
        return param_lookup(self.params, "tag")

    @tag.setter
    def tag(self, value: str | None) -> None:
        for k in [k for k in self.params if k.lower() == "tag"]:
            del self.params[k]
        if value is not None:
            self.params["tag"] = value

    @property
    def expires(self) -> int | None:
        """The expires parameter as an int, or None."""
        value = param_lookup(self.params, "expires")
        return int(value) if value and value.isdigit() else None

    def copy(self) -> NameAddr:
        """A deep copy (URI and params included)."""
        uri = None if self.uri is None else self.uri.copy()
        return NameAddr(uri, self.display, dict(self.params), wildcard=self.wildcard)

    def __str__(self) -> str:
        if self.wildcard:
            return "*"
        out = []
        if self.display is not None:
            d = self.display
            out.append(quote(d) if not d or needs_quoting(d) else d)
            out.append(" ")
        out.append(f"<{self.uri}>")
        out.append(format_params(self.params))
        return "".join(out)

    def __repr__(self) -> str:
        return f"NameAddr({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NameAddr):
            return NotImplemented
        return (
            self.wildcard == other.wildcard
            and self.display == other.display
            and self.uri == other.uri
            and _lower_params(self.params) == _lower_params(other.params)
        )

    __hash__ = None  # type: ignore[assignment]


def parse_name_addr(text: str) -> NameAddr:
    """Parse one name-addr or addr-spec with header params. Raises SipParseError.

    Without <>, everything after the first ';' is header parameters (RFC 3261
    20.10), and '?', ',' in the URI are not allowed.
    """
    s = text.strip(" \t")
    display: str | None = None
    if s[:1] == '"':
        end = scan_quoted(s, 0)
        display = unquote(s[:end])
        rest = s[end:].lstrip(" \t")
        if rest[:1] != "<":
            raise SipParseError("display name without <URI>")
        return _bracketed(rest, display)
    lt = s.find("<")
    if lt >= 0:
        if lt > 0:
            display = " ".join(s[:lt].split())
            if not all(is_token(t) for t in display.split(" ")):
                raise SipParseError("bad display name")
        return _bracketed(s[lt:], display)
    if s == "*":
        return NameAddr(None, wildcard=True)
    semi = s.find(";")
    if semi >= 0:
        utext = s[:semi].rstrip(" \t")
        params = parse_params(s[semi:])
    else:
        utext, params = s, {}
    if "?" in utext or "," in utext:
        raise SipParseError("URI with headers or comma must be in <>")
    if not utext:
        raise SipParseError("missing URI")
    return NameAddr(parse_uri(utext), None, params)


def _bracketed(s: str, display: str | None) -> NameAddr:
    gt = s.find(">")
    if gt < 0:
        raise SipParseError("unterminated <URI>")
    utext = s[1:gt]
    if utext[:1] in (" ", "\t") or utext[-1:] in (" ", "\t"):
        raise SipParseError("whitespace inside <URI>")
    rest = s[gt + 1 :]
    params = parse_params(rest) if rest else {}
    return NameAddr(parse_uri(utext), display, params)


def parse_name_addrs(values: Iterable[str]) -> list[NameAddr]:
    """Parse every element of the given comma-list field values (Contact, Route...)."""
    out: list[NameAddr] = []
    for value in values:
        if "," in value:
            out.extend(parse_name_addr(v) for v in split_commas(value))
        else:
            out.append(parse_name_addr(value))
    return out


# --- CSeq --------------------------------------------------------------------


class CSeq:
    """The CSeq header: sequence number and method."""

    __slots__ = ("method", "number")

    def __init__(self, number: int, method: str) -> None:
        self.number = number
        self.method = method

    def __str__(self) -> str:
        return f"{self.number} {self.method}"

    def __repr__(self) -> str:
        return f"CSeq({self.number}, {self.method!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CSeq):
            return NotImplemented
        return self.number == other.number and self.method == other.method

    def __hash__(self) -> int:
        return hash((self.number, self.method))


def parse_cseq(text: str) -> CSeq:
    """Parse ``number method`` (LWS allowed, leading zeros allowed, number <= 2**31-1)."""
    parts = text.split()
    if len(parts) != 2:
        raise SipParseError("bad CSeq")
    num, method = parts
    if not num.isdigit() or not num.isascii() or not is_token(method):
        raise SipParseError("bad CSeq")
    stripped = num.lstrip("0")
    if len(stripped) > 10:
        raise SipParseError("CSeq number out of range")
    number = int(num)
    if number > CSEQ_MAX:
        raise SipParseError("CSeq number out of range")
    return CSeq(number, method)
