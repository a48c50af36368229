"""`parse_auth_header` reads well-formed lists with a compiled expression and falls back
to the character-level reader: both must agree on every input, results and errors."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from opentrunk.sip.digest import DigestParseError, _parse_auth_header_by_char, parse_auth_header


def _outcome(reader, text):  # type: ignore[no-untyped-def]
    try:
        return reader(text)
    except DigestParseError as exc:
        return ("error", str(exc))


# Inputs built from the characters that matter to the grammar, so that odd placements of
# quotes, escapes, separators and '=' come up often.
_PIECES = st.sampled_from(
    ["Digest", " ", "\t", ",", "=", '"', "\\", "a", "B", "nonce", "uri", "sip:x@y", ";", ":", "é"]
)


@settings(max_examples=3000, deadline=None)
@given(st.lists(_PIECES, max_size=24).map("".join))
def test_fast_reader_agrees_with_character_reader(text: str) -> None:
    assert _outcome(parse_auth_header, text) == _outcome(_parse_auth_header_by_char, text.strip())


def test_typical_answer_is_read() -> None:
    scheme, params = parse_auth_header(
        'Digest username="bob", realm="zt.test", nonce="abc\\"d", uri="sip:+1415@t.zt.test",'
        ' response="0123", algorithm=MD5, qop=auth, nc=00000001, cnonce="x, y"'
    )
    assert scheme == "Digest"
    assert params == {
        "username": "bob",
        "realm": "zt.test",
        "nonce": 'abc"d',
        "uri": "sip:+1415@t.zt.test",
        "response": "0123",
        "algorithm": "MD5",
        "qop": "auth",
        "nc": "00000001",
        "cnonce": "x, y",
    }


def test_errors_are_the_character_readers() -> None:
    for text in ('Digest a="x', "Digest a", "Digest a=b c=d", "Digest a=1, a=2", "=x"):
        assert _outcome(parse_auth_header, text) == _outcome(_parse_auth_header_by_char, text)
        assert _outcome(parse_auth_header, text)[0] == "error"
