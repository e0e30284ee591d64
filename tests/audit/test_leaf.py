"""Audit leaves: canonical JSON, time format, and no TIN ever in a leaf."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from taxaddr.audit.leaf import (
    CANONICAL_UUID,
    LEAF_FIELDS,
    OTHER_STATUTE,
    STATUTE_CITATION,
    LeafRefused,
    PersonalData,
    build_leaf,
    canonical,
    case_number_hash,
    display_statute,
    format_time,
    index_marker,
    parse_time,
    screen_chosen,
    server_id_from,
    tin_shaped,
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


# The separator styles of issue 16's attack, and a few more.
TIN_STYLES = [
    "123456789",
    "123-45-6789",
    "x 123 45 6789 y",
    "912.77.3456",
    "912:77:3456",
    "912-773-456",
    "9-1-2-7-7-3-4-5-6",
    "9 1 2 7 7 3 4 5 6",
    "912_77_3456",
    "912/77/3456",
    "id-912--77..3456-x",
    "\uff19\uff11\uff12773456",  # full-width digits
]


@pytest.mark.parametrize(
    "field",
    ["request_id", "requester_id", "agency", "role", "case_jti", "statute", "policy_version"],
)
@pytest.mark.parametrize("tin", TIN_STYLES)
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


@pytest.mark.parametrize(
    "value",
    ["agent-1234567890", "8 U.S.C. 1253(a)(1)", "1:26-cr-00123", "12345678", "2026-11-25"],
)
def test_numbers_that_are_not_nine_digits_are_not_tin_shaped(value: str) -> None:
    assert not tin_shaped(value)


@pytest.mark.parametrize(
    "request_id",
    [
        "8F1C1F9E-3A0B-4A59-9C1D-0A0B0C0D0E0F",  # upper case
        "8f1c1f9e3a0b4a599c1d0a0b0c0d0e0f",  # no dashes
        "{8f1c1f9e-3a0b-4a59-9c1d-0a0b0c0d0e0f}",
        "req-0001",
    ],
)
def test_request_id_must_be_a_canonical_lowercase_uuid(request_id: str) -> None:
    with pytest.raises(LeafRefused, match="request_id is not a canonical lowercase UUID"):
        build_leaf(1, make_leaf(1, request_id=request_id))


@pytest.mark.parametrize(
    "statute", ["ZQXLEAKNAME PERSON 771 ZQXLEAKSTREET", "8 USC 1324", "title 8 section 1324"]
)
def test_statute_must_be_a_citation_or_other(statute: str) -> None:
    with pytest.raises(LeafRefused, match="statute is not a statute citation"):
        build_leaf(1, make_leaf(1, statute=statute))
    assert display_statute(statute) == OTHER_STATUTE
    build_leaf(1, make_leaf(1, statute=OTHER_STATUTE))
    assert display_statute("8 U.S.C. 1253(a)(1)") == "8 U.S.C. 1253(a)(1)"
    assert display_statute(None) is None


def test_every_statute_of_the_policy_data_fits_the_leaf_citation_shape() -> None:
    data = json.loads((Path(__file__).parents[2] / "policies" / "data.json").read_text())
    policy_data = data["taxaddr"]["policy_data"]
    keys = [*policy_data["criminal_statutes"], *policy_data.get("civil_statutes", {})]
    assert "8 U.S.C. 1253(a)(1)" in keys
    assert [k for k in keys if not STATUTE_CITATION.fullmatch(k)] == []


SUBJECT = PersonalData.of(
    tins=["912-77-3456"], names=["ZQXLEAKNAME PERSON"], streets=["771 Zqxleakstreet Ave"]
)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("request_id", "00000000-0000-4000-8000-000912773456"),  # the TIN inside a UUID
        ("case_jti", "ZQXLEAKNAME.PERSON.771.Zqxleakstreet"),
        ("case_jti", "case-zqxleakstreet"),
        ("case_jti", "ZqxleaknamePerson"),  # the whole name without spaces
        ("case_jti", "jti-912-77-3456-x"),
        ("statute", "8 U.S.C. 912773456"),
    ],
)
def test_chosen_fields_holding_the_subjects_data_are_refused(field: str, value: str) -> None:
    leaf = make_leaf(1, personal=SUBJECT, **{field: value})
    with pytest.raises(LeafRefused) as info:
        build_leaf(1, leaf)
    assert field in str(info.value)
    for secret in ("912", "3456", "ZQX", "zqx", "Zqx"):
        assert secret not in str(info.value)


def test_server_values_are_not_checked_against_the_subjects_words() -> None:
    # A client that names its subject after its own agency or requester id must not be
    # able to make its refusals unloggable (a refused leaf is a 503 with no leaf).
    personal = PersonalData.of(names=["ICE HSI AGENT REQUESTER"], streets=["1 OTHER ST"])
    obj = build_leaf(
        1,
        make_leaf(
            1,
            agency="ICE-HSI",
            requester_id="hsi-agent-0042",
            statute=OTHER_STATUTE,
            personal=personal,
        ),
    )
    assert obj["agency"] == "ICE-HSI"


def test_house_numbers_initials_and_street_words_are_not_personal_data() -> None:
    personal = PersonalData.of(names=["J Q DOE"], streets=["1324 North Main Street"])
    assert personal.words == {"DOE", "MAIN"}
    assert not personal.found_in("8 U.S.C. 1324")
    assert not personal.found_in("north-district-2026")
    assert personal.found_in("main-st-raid")


def test_screen_chosen_refuses_tin_shapes_outside_uuids_only() -> None:
    assert screen_chosen("00000000-0000-4000-8000-000123456789", None)
    assert not screen_chosen("jti-123-45-6789", None)
    assert not screen_chosen("00000000-0000-4000-8000-000912773456", SUBJECT)


@settings(max_examples=3000, deadline=None)
@given(st.binary(min_size=16, max_size=16))
def test_server_ids_are_uuid4_that_never_look_like_a_tin(random16: bytes) -> None:
    server_id = server_id_from(random16)
    assert CANONICAL_UUID.fullmatch(server_id)
    assert uuid.UUID(server_id).version == 4
    assert str(uuid.UUID(server_id)) == server_id
    # the guard itself, without the UUID exemption: no nine digits, whatever the separators
    assert not tin_shaped(server_id)
    assert re.search(r"\d{8}", server_id.replace("-", "")) is None
    build_leaf(1, make_leaf(1, request_id=server_id, case_jti=server_id))


def test_the_old_hex_request_id_did_look_like_a_tin() -> None:
    # Why server ids are made as above: uuid4().hex holds nine digits in a row often.
    digests = (hashlib.sha256(b"%d" % i).digest()[:16] for i in range(1000))
    hexes = [uuid.UUID(bytes=d, version=4).hex for d in digests]
    assert sum(tin_shaped(h) for h in hexes) > 20  # about 6 % (issue 16 item 6)
