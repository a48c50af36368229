"""StreamFramer: Content-Length framing of SIP messages on a byte stream."""

from __future__ import annotations

import pytest

from opentrunk.transport.framing import FramingError, StreamFramer, content_length_of


def message(body: bytes = b"", *, cl_header: str = "Content-Length", n: int = 1) -> bytes:
    head = (
        f"OPTIONS sip:a@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/TCP 127.0.0.1:5070;branch=z9hG4bK-{n}\r\n"
        f"Call-ID: c{n}\r\nCSeq: {n} OPTIONS\r\n"
        f"{cl_header}: {len(body)}\r\n\r\n"
    ).encode()
    return head + body


def test_one_message_with_body() -> None:
    data = message(b"hello world")
    assert StreamFramer().feed(data) == [data]


def test_partial_message_byte_by_byte() -> None:
    data = message(b"v=0\r\n")
    framer = StreamFramer()
    out: list[bytes] = []
    for i in range(len(data)):
        out += framer.feed(data[i : i + 1])
        if i < len(data) - 1:
            assert out == []
    assert out == [data]
    assert framer.buffered == 0


def test_pipelined_messages_in_one_chunk() -> None:
    msgs = [message(b"x" * i, n=i) for i in range(5)]
    assert StreamFramer().feed(b"".join(msgs)) == msgs


def test_pipelined_split_across_chunks_at_every_offset() -> None:
    msgs = [message(b"abc", n=1), message(b"", n=2), message(b"defgh", n=3)]
    stream = b"".join(msgs)
    for cut in range(1, len(stream)):
        framer = StreamFramer()
        assert framer.feed(stream[:cut]) + framer.feed(stream[cut:]) == msgs


def test_compact_content_length() -> None:
    data = message(b"12345", cl_header="l")
    assert StreamFramer().feed(data) == [data]


def test_missing_content_length_means_empty_body() -> None:
    data = b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: x\r\n\r\n"
    assert StreamFramer().feed(data + data) == [data, data]


def test_keepalive_crlf_ignored_and_pings_counted() -> None:
    framer = StreamFramer()
    data = message(b"")
    assert framer.feed(b"\r\n\r\n" + data + b"\r\n\r\n") == [data]
    assert framer.pings == 2
    assert framer.feed(b"\r\n") == []
    assert framer.buffered == 0


def test_negative_content_length_loses_framing() -> None:
    data = message(b"").replace(b"Content-Length: 0", b"Content-Length: -999")
    with pytest.raises(FramingError) as info:
        StreamFramer().feed(data)
    assert info.value.head is not None and info.value.head.startswith(b"OPTIONS")
    assert not info.value.oversized


def test_non_numeric_content_length() -> None:
    data = message(b"").replace(b"Content-Length: 0", b"Content-Length: 12abc")
    with pytest.raises(FramingError):
        StreamFramer().feed(data)


def test_conflicting_content_lengths() -> None:
    head = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 13\r\nl: 5\r\n\r\n"
    with pytest.raises(FramingError, match="conflicting"):
        StreamFramer().feed(head + b"x" * 13)


def test_repeated_equal_content_lengths_are_fine() -> None:
    head = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 3\r\nl: 3\r\n\r\n"
    assert content_length_of(head.rstrip(b"\r\n")) == 3
    assert StreamFramer().feed(head + b"abc") == [head + b"abc"]


def test_folded_content_length() -> None:
    head = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length:\r\n  4\r\n\r\n"
    assert StreamFramer().feed(head + b"abcd") == [head + b"abcd"]


def test_declared_body_over_cap() -> None:
    framer = StreamFramer(max_message_size=1000)
    with pytest.raises(FramingError) as info:
        framer.feed(message(b"x" * 2000))
    assert info.value.oversized and info.value.head is not None
    assert framer.buffered == 0


def test_endless_header_block_is_capped() -> None:
    framer = StreamFramer(max_message_size=4096)
    framer.feed(b"OPTIONS sip:a@b SIP/2.0\r\n")
    with pytest.raises(FramingError) as info:
        for _ in range(1000):
            framer.feed(b"X-Junk: " + b"a" * 100 + b"\r\n")
    assert info.value.oversized and info.value.head is None
    assert framer.buffered == 0


def test_buffer_stays_bounded_with_slow_body() -> None:
    framer = StreamFramer(max_message_size=2048)
    data = message(b"z" * 1500)
    for i in range(0, len(data), 7):
        framer.feed(data[i : i + 7])
        assert framer.buffered <= 2048
