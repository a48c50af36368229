"""Bencode, the encoding of rtpengine's ng control protocol.

Written here rather than taken from PyPI: the format is four rules, the
packages for it are unmaintained or untyped, and the ng client needs only
dicts, lists, byte strings and integers. Strings decode to `str` (UTF-8 with
surrogate escapes) because every ng field the client reads is text.
"""

from __future__ import annotations

__all__ = ["BencodeError", "Value", "decode", "encode"]

Value = int | str | bytes | list["Value"] | dict[str, "Value"]


class BencodeError(ValueError):
    pass


def encode(value: Value) -> bytes:
    out: list[bytes] = []
    _encode(value, out)
    return b"".join(out)


def _encode(value: Value, out: list[bytes]) -> None:
    if isinstance(value, bool):
        raise BencodeError("bencode has no booleans")
    if isinstance(value, int):
        out.append(b"i%de" % value)
    elif isinstance(value, str):
        raw = value.encode("utf-8", "surrogateescape")
        out.append(b"%d:%s" % (len(raw), raw))
    elif isinstance(value, bytes):
        out.append(b"%d:%s" % (len(value), value))
    elif isinstance(value, list):
        out.append(b"l")
        for item in value:
            _encode(item, out)
        out.append(b"e")
    elif isinstance(value, dict):
        out.append(b"d")
        for key in sorted(value):
            _encode(key, out)
            _encode(value[key], out)
        out.append(b"e")
    else:
        raise BencodeError(f"cannot bencode {type(value).__name__}")


def decode(data: bytes) -> Value:
    value, end = _decode(data, 0, 0)
    if end != len(data):
        raise BencodeError("trailing data")
    return value


def _decode(data: bytes, at: int, depth: int) -> tuple[Value, int]:
    if depth > 64:
        raise BencodeError("nested too deep")
    if at >= len(data):
        raise BencodeError("truncated")
    lead = data[at : at + 1]
    if lead == b"i":
        end = data.find(b"e", at)
        if end < 0:
            raise BencodeError("truncated integer")
        try:
            return int(data[at + 1 : end]), end + 1
        except ValueError as exc:
            raise BencodeError("bad integer") from exc
    if lead == b"l":
        items: list[Value] = []
        at += 1
        while data[at : at + 1] != b"e":
            item, at = _decode(data, at, depth + 1)
            items.append(item)
        return items, at + 1
    if lead == b"d":
        result: dict[str, Value] = {}
        at += 1
        while data[at : at + 1] != b"e":
            key, at = _decode(data, at, depth + 1)
            if not isinstance(key, str):
                raise BencodeError("dictionary key is not a string")
            result[key], at = _decode(data, at, depth + 1)
        return result, at + 1
    if lead.isdigit():
        colon = data.find(b":", at)
        if colon < 0 or not data[at:colon].isdigit():
            raise BencodeError("bad string length")
        start = colon + 1
        end = start + int(data[at:colon])
        if end > len(data):
            raise BencodeError("truncated string")
        return data[start:end].decode("utf-8", "surrogateescape"), end
    raise BencodeError(f"unexpected byte {lead!r}")
