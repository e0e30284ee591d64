"""Strict base64url (RFC 7515 section 2) of the verifier's byte-level decoder.

The decoder deletes the alphabet and hands the rest to the standard decoder in strict
mode; these pin every refusal the regex-based decoder it replaced made, and that both
entry points (str and bytes) agree.
"""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from taxaddr.cases import jws


@given(st.binary(max_size=200))
def test_round_trip_both_entry_points(data: bytes) -> None:
    encoded = jws.b64url_encode(data)
    assert jws.b64url_decode(encoded) == data
    assert jws.b64url_decode_bytes(encoded.encode("ascii")) == data


@pytest.mark.parametrize(
    ("segment", "why"),
    [
        (b"QQ==", "padding"),
        (b"QQ=", "padding"),
        (b"Q", "impossible length"),
        (b"QUJD+A", "standard alphabet '+'"),
        (b"QUJD/A", "standard alphabet '/'"),
        (b"QU JD", "space"),
        (b"QUJD\n", "newline"),
        (b"QR", "non-canonical: unused bits set (2 chars)"),
        (b"QUF", "non-canonical: unused bits set (3 chars)"),
        (b"\xc3\xa9AA", "non-ASCII"),
    ],
)
def test_refused(segment: bytes, why: str) -> None:
    with pytest.raises(jws.JoseFormatError):
        jws.b64url_decode_bytes(segment)
    text = segment.decode("utf-8")
    with pytest.raises(jws.JoseFormatError):
        jws.b64url_decode(text)


def test_url_alphabet_accepted() -> None:
    data = bytes([0xFB, 0xFF, 0xBF])  # standard '+//' <-> url '-__'
    assert base64.urlsafe_b64encode(data) == b"-_-_"
    assert jws.b64url_decode_bytes(b"-_-_") == data
    assert jws.b64url_decode_bytes(b"") == b""


def test_duplicate_members_and_constants_refused() -> None:
    with pytest.raises(jws.JoseFormatError, match="duplicate"):
        jws.strict_json_object(b'{"a":1,"b":{"c":1,"c":2}}')
    with pytest.raises(jws.JoseFormatError, match="constant"):
        jws.strict_json_object(b'{"a":NaN}')
    with pytest.raises(jws.JoseFormatError, match="object"):
        jws.strict_json_object(b"[1]")
    assert jws.strict_json_object(b'{"a":{"a":1}}') == {"a": {"a": 1}}
