"""Audit leaves: canonical JSON, time format, and no TIN ever in a leaf."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from taxaddr.audit.leaf import (
    LEAF_FIELDS,
    LeafRefused,
    build_leaf,
    canonical,
    case_number_hash,
    format_time,
    index_marker,
    parse_time,
)
from taxaddr.errors import AuditUnavailable
from tests.audit.conftest import make_leaf


def test_leaf_has_exactly_the_contract_fields_in_canonical_order() -> None:
    obj = build_leaf(7, make_leaf(7))
    assert set(obj) == set(LEAF_FIELDS)
    data = canonical(obj)
    # RFC 8785: keys sorted, no whitespace, integers as integers, no floats
    assert data == json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    assert data.startswith(b'{"agency":')
    assert index_marker(7) in data
    assert index_marker(17) not in data


def test_time_is_rfc3339_utc_with_microseconds() -> None:
    moment = datetime(2026, 11, 25, 11, 0, 0, 123456, tzinfo=timezone(timedelta(hours=-5)))
    assert format_time(moment) == "2026-11-25T16:00:00.123456Z"
    assert format_time(datetime(2026, 1, 2, tzinfo=UTC)) == "2026-01-02T00:00:00.000000Z"
    assert parse_time("2026-11-25T16:00:00.123456Z") == moment
    with pytest.raises(LeafRefused, match="time zone"):
        format_time(datetime(2026, 1, 2))


def test_default_time_is_now() -> None:
    before = datetime.now(UTC)
    obj = build_leaf(0, dataclasses.replace(make_leaf(0), time=None))
    assert before - timedelta(seconds=1) <= parse_time(obj["time"]) <= datetime.now(UTC)


def test_case_number_hash_is_sha256_hex() -> None:
    assert case_number_hash("1:26-cr-00123") == hashlib.sha256(b"1:26-cr-00123").hexdigest()


@pytest.mark.parametrize(
    "field",
    ["request_id", "requester_id", "agency", "role", "case_jti", "statute", "policy_version"],
)
@pytest.mark.parametrize("tin", ["123456789", "123-45-6789", "x 123 45 6789 y"])
def test_tin_like_value_in_any_text_field_is_refused(field: str, tin: str) -> None:
    leaf = dataclasses.replace(make_leaf(1), **{field: tin})
    with pytest.raises(LeafRefused, match=f"{field} looks like a TIN") as info:
        build_leaf(1, leaf)
    assert "6789" not in str(info.value)
    assert isinstance(info.value, AuditUnavailable)


def test_numbers_that_are_not_tins_pass() -> None:
    build_leaf(1, make_leaf(1, statute="18 U.S.C. 1028", requester_id="agent-1234567890"))
    # a UUID's last group may hold nine digits by chance
    build_leaf(1, make_leaf(1, request_id="8f1c1f9e-3a0b-4a59-9c1d-123456789012"))


def test_policy_version_digest_with_nine_digit_run_passes() -> None:
    # A real policy hash of this shape once refused every leaf (503 for all requests).
    digest = "sha256:e9166a1a432ce1ccaef196057363c1cd" + "0" * 32
    build_leaf(1, make_leaf(1, policy_version=digest))


def test_digest_exemption_is_only_for_the_policy_version() -> None:
    hexish = "123456789" + "a" * 40
    with pytest.raises(LeafRefused, match="request_id looks like a TIN"):
        build_leaf(1, make_leaf(1, request_id=hexish))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"subject_ref": "123-45-6789"}, "subject_ref"),
        ({"subject_ref": "A" * 64}, "subject_ref"),
        ({"case_number_hash": "1:26-cr-00123"}, "case_number_hash"),
        ({"outcome": "maybe"}, "outcome"),
        ({"reason_codes": ("Not A Code",)}, "reason_codes"),
        ({"agency": "x" * 300}, "agency"),
        ({"agency": "ICE\nHSI"}, "control"),
        ({"role": None}, "role"),
    ],
)
def test_malformed_fields_are_refused(override: dict[str, object], message: str) -> None:
    with pytest.raises(LeafRefused, match=message):
        build_leaf(1, make_leaf(1, **override))


def test_nullable_fields_become_json_null() -> None:
    leaf = make_leaf(2, case_jti=None, case_number_hash=None, subject_ref=None, statute=None)
    obj = build_leaf(2, leaf)
    data = canonical(obj)
    assert b'"case_jti":null' in data
    assert index_marker(2) in data


def test_negative_index_refused() -> None:
    with pytest.raises(LeafRefused, match="index"):
        build_leaf(-1, make_leaf(1))


_JSON_TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=30) | st.sampled_from(
    ["\u2028", "\u007f", "é", "\U0001f600", 'a"b\\c', "</script>", ""]
)


@settings(max_examples=400, deadline=None)
@given(
    st.dictionaries(
        keys=st.sampled_from(sorted(LEAF_FIELDS)) | st.text(max_size=6),
        values=st.none()
        | st.integers(min_value=0, max_value=2**53 - 1)
        | _JSON_TEXT
        | st.lists(_JSON_TEXT, max_size=4),
        max_size=14,
    )
)
def test_fast_canonical_encoding_equals_rfc8785(obj: dict[str, object]) -> None:
    assert canonical(obj) == rfc8785.dumps(obj)


def test_real_leaf_takes_the_fast_path_and_equals_rfc8785() -> None:
    obj = build_leaf(7, make_leaf(7, agency="ICE-HSI é"))
    assert canonical(obj) == rfc8785.dumps(obj)
