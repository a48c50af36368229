"""Low-level RFC 3261 (section 25) lexical helpers shared by the SIP parsers.

Owns: the token test, quoted-string scanning and (un)quoting, splitting of
comma-separated header values and of ';'-separated generic parameters (with the
LWS tolerance section 25 allows around separators), and %-unescaping.
Everything here works on `str` that was decoded from the wire with UTF-8 and
``surrogateescape`` so that arbitrary octets survive a round trip.
"""

from __future__ import annotations

import re

from opentrunk.sip.errors import SipParseError

__all__ = [
    "NAME_ADDR_LIST_RE",
    "NAME_ADDR_RE",
    "REQUEST_URI_RE",
    "VIA_LIST_RE",
    "Params",
    "format_params",
    "is_token",
    "needs_quoting",
    "param_lookup",
    "parse_params",
    "quote",
    "scan_quoted",
    "split_commas",
    "split_outside_quotes",
    "unescape",
    "unquote",
]

Params = dict[str, str | None]
"""Generic parameters as written: name -> raw value (quotes kept) or None for a flag."""

_TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
# A parameter value: token, quoted string, or an IPv6 reference (received/maddr).
_PARAM_VALUE_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~:]+|\[[0-9A-Fa-f:.]+\]")
# A quoted string, written as an unrolled loop so long values stay linear.
_QUOTED_RE = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_ESCAPE_RE = re.compile(r"%([0-9A-Fa-f]{2})")
_LWS = " \t"


def is_token(text: str) -> bool:
    """True if `text` is a non-empty RFC 3261 token."""
    return _TOKEN_RE.fullmatch(text) is not None


def scan_quoted(text: str, start: int) -> int:
    """Index just past the quoted string opening at text[start] == '"'.

    Raises SipParseError (400) when the closing quote is missing.
    """
    m = _QUOTED_RE.match(text, start)
    if m is None:
        raise SipParseError("unbalanced quotes")
    return m.end()


def unquote(text: str) -> str:
    """The content of a quoted string (with its quotes) with quoted-pairs resolved."""
    inner = text[1:-1]
    if "\\" not in inner:
        return inner
    out: list[str] = []
    i = 0
    n = len(inner)
    while i < n:
        c = inner[i]
        if c == "\\" and i + 1 < n:
            out.append(inner[i + 1])
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def needs_quoting(text: str) -> bool:
    """True if `text` is not a sequence of tokens separated by single spaces."""
    return not all(_TOKEN_RE.fullmatch(part) for part in text.split(" "))


def quote(text: str) -> str:
    """`text` as a quoted string; '"', '\\' and control octets become quoted-pairs."""
    out = ['"']
    for c in text:
        if c in '"\\' or (c < " " and c != "\t") or c == "\x7f":
            out.append("\\")
        out.append(c)
    out.append('"')
    return "".join(out)


def unescape(text: str) -> str:
    """Resolve %HH escapes (for comparison); invalid escapes are left as written."""
    if "%" not in text:
        return text
    raw = _ESCAPE_RE.sub(lambda m: chr(int(m.group(1), 16)), text)
    # Escapes stand for octets: re-read runs of them as UTF-8 where that works.
    try:
        return raw.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return raw


def split_outside_quotes(text: str, sep: str) -> list[str]:
    """Split on `sep` where it is not inside a quoted string or <...>."""
    if '"' not in text and "<" not in text:
        return text.split(sep)
    parts: list[str] = []
    depth = 0
    begin = 0
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c == '"':
            i = scan_quoted(text, i)
            continue
        if c == "<":
            depth += 1
        elif c == ">":
            depth = max(0, depth - 1)
        elif c == sep and depth == 0:
            parts.append(text[begin:i])
            begin = i + 1
        i += 1
    parts.append(text[begin:])
    return parts


def split_commas(value: str) -> list[str]:
    """Elements of a comma-separated header value, stripped; quotes and <> respected.

    Raises SipParseError for an empty element (such as ``a,,b``) or unbalanced
    quotes.
    """
    if "," not in value:
        return [value.strip()]
    elements = [p.strip() for p in split_outside_quotes(value, ",")]
    if any(not e for e in elements):
        raise SipParseError("empty element in comma-separated header")
    return elements


def parse_params(text: str) -> Params:
    """Parse ``;name[=value]`` pairs from `text` (which starts at the first ';').

    LWS is allowed around ';' and '='. Values are kept as written (quotes
    included). Raises SipParseError on an empty parameter (``;;``), a bad name
    or a bad value.
    """
    if _PARAMS_RE.fullmatch(text) is None:
        if not text.strip(" \t"):
            return {}
        raise SipParseError("bad parameters")
    return {name: value or None for name, value in _PARAM_RE.findall(text)}


def param_lookup(params: Params, name: str) -> str | None:
    """A parameter's raw value by case-insensitive name (None if absent or a flag)."""
    value = params.get(name)
    if value is not None or name in params:
        return value
    lname = name.lower()
    for key, val in params.items():
        if key.lower() == lname:
            return val
    return None


def format_params(params: Params) -> str:
    """The wire form ``;a=b;c`` of `params`."""
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


# --- whole-value syntax checks ------------------------------------------------
# The parser validates the headers a server must check before answering with
# these compiled expressions (one C-level match each) and builds the objects
# only when asked for. Each expression accepts exactly what the matching
# parse_* function in headers.py / uri.py accepts, so a value that passed here
# does not fail later (ports over 65535 excepted, they fail on access).

_TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
_QUOTED = r'"[^"\\]*(?:\\.[^"\\]*)*"'
_LWSP = r"[ \t]*"
_HOST = r"(?:[A-Za-z0-9\-.]+|\[[0-9A-Fa-f:.]+\])"
_PVALUE = r"(?:[A-Za-z0-9\-.!%*_+`'~:]+|" + _QUOTED + r"|\[[0-9A-Fa-f:.]+\])"
_GPARAMS = rf"(?:{_LWSP};{_LWSP}{_TOKEN}(?:{_LWSP}={_LWSP}{_PVALUE})?)*"
_NOT_URI = r"\s<>\"{}|\\^`"
_SIP_SCHEME = r"[Ss][Ii][Pp][Ss]?:"
_SIP_URI_BASE = (
    rf"{_SIP_SCHEME}(?:[^{_NOT_URI}@]+@)?{_HOST}(?::[0-9]{{1,5}})?"
    rf"(?:;[^{_NOT_URI};?=]+(?:=[^{_NOT_URI};?]*)?)*"
)
_SIP_URI_HEADERS = rf"(?:\?[^{_NOT_URI}&=]+=[^{_NOT_URI}&]*(?:&[^{_NOT_URI}&=]+=[^{_NOT_URI}&]*)*)?"
_TEL_URI = rf"[Tt][Ee][Ll]:[^{_NOT_URI};]+(?:;[^{_NOT_URI};=]+(?:=[^{_NOT_URI};]*)?)*"
_OTHER_URI = rf"(?![Ss][Ii][Pp][Ss]?:|[Tt][Ee][Ll]:)[A-Za-z][A-Za-z0-9+\-.]*:[^{_NOT_URI}]+"
_URI = rf"(?:{_SIP_URI_BASE}{_SIP_URI_HEADERS}|{_TEL_URI}|{_OTHER_URI})"
# Without <>: no ';' (params belong to the header), no '?' and no ','.
_BARE_URI = (
    rf"(?:{_SIP_SCHEME}(?:[^{_NOT_URI}@;,?]+@)?{_HOST}(?::[0-9]{{1,5}})?"
    rf"|(?![Ss][Ii][Pp][Ss]?:)[A-Za-z][A-Za-z0-9+\-.]*:[^{_NOT_URI};,?]+)"
)
_NAME_ADDR = (
    rf"{_LWSP}(?:(?:{_QUOTED}{_LWSP}|{_TOKEN}(?:[ \t]+{_TOKEN})*{_LWSP})?<{_URI}>|{_BARE_URI})"
    rf"{_GPARAMS}{_LWSP}"
)
_VIA = (
    rf"{_LWSP}{_TOKEN}{_LWSP}/{_LWSP}{_TOKEN}{_LWSP}/{_LWSP}{_TOKEN}[ \t]+{_HOST}"
    rf"(?:{_LWSP}:{_LWSP}[0-9]{{1,5}})?{_GPARAMS}{_LWSP}"
)

REQUEST_URI_RE = re.compile(rf"{_SIP_URI_BASE}|{_TEL_URI}|{_OTHER_URI}")
"""A Request-URI: any URI, but a SIP URI without a ?headers part (RFC 4475 escruri)."""
NAME_ADDR_RE = re.compile(_NAME_ADDR)
"""One From/To value (name-addr or addr-spec, header params)."""
NAME_ADDR_LIST_RE = re.compile(rf"{_NAME_ADDR}(?:,{_NAME_ADDR})*|{_LWSP}\*{_LWSP}")
"""A Contact/Route/Record-Route field value (a comma list, or ``*``)."""
VIA_LIST_RE = re.compile(rf"{_VIA}(?:,{_VIA})*")
"""A Via field value (comma list of via-parms)."""

_PARAMS_RE = re.compile(rf"{_GPARAMS}{_LWSP}")
_PARAM_RE = re.compile(rf"{_LWSP};{_LWSP}({_TOKEN})(?:{_LWSP}={_LWSP}({_PVALUE}))?")
