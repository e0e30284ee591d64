"""Normalizers: each rule, and properties (hypothesis) over arbitrary input."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from taxaddr.errors import ImportRowError
from taxaddr.store import normalize as n


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("123-45-6789", "123456789"),
        ("123456789", "123456789"),
        (" 912-70-1234 ", "912701234"),  # ITIN group 70
        ("987-65-4321", "987654321"),  # ITIN group 65
    ],
)
def test_tin_accepted(value: str, expected: str) -> None:
    assert n.normalize_tin(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "000-12-3456",
        "666-12-3456",
        "123-00-4567",
        "123-45-0000",
        "912-49-1234",  # 9xx outside ITIN groups
        "912-66-1234",
        "912-89-1234",
        "912-93-1234",
        "12-345-6789",
        "1234567890",
        "12345678",
        "١٢٣٤٥٦٧٨٩",  # Arabic-Indic digits are not ASCII digits
        "",
    ],
)
def test_tin_refused(value: str) -> None:
    with pytest.raises(ImportRowError) as err:
        n.normalize_tin(value)
    assert err.value.field == "tin"
    assert value.strip() == "" or value not in str(err.value)


def test_name_rules() -> None:
    assert n.normalize_name("  jane   q.\to'doe-smith ") == "JANE Q. O'DOE-SMITH"
    assert n.normalize_name("José Núñez") == "JOSÉ NÚÑEZ"
    for bad in ("", "   ", "J4NE", "Jane_Doe", "Jane; DROP", "--", "x" * 201):
        with pytest.raises(ImportRowError) as err:
            n.normalize_name(bad)
        assert err.value.field == "name"


def test_state_zip_period_date_rules() -> None:
    assert n.normalize_state(" dc ") == "DC"
    for code in ("PR", "GU", "VI", "AS", "MP", "AA", "AE", "AP"):
        assert n.normalize_state(code) == code
    for bad in ("XX", "D.C.", "", "Washington"):
        with pytest.raises(ImportRowError):
            n.normalize_state(bad)
    assert n.normalize_zip("123456789") == "12345-6789"
    assert n.normalize_zip("12345-6789") == "12345-6789"
    assert n.normalize_zip("02134") == "02134"
    for bad in ("1234", "123456", "12345-678", "abcde", "12345 6789"):
        with pytest.raises(ImportRowError):
            n.normalize_zip(bad)
    assert n.normalize_tax_period("2024") == "2024"
    assert n.normalize_tax_period(2024) == "2024"
    for bad in ("24", "20240", "1899", "year", True):
        with pytest.raises(ImportRowError):
            n.normalize_tax_period(bad)  # type: ignore[arg-type]
    assert n.normalize_as_of("2024-02-29") == date(2024, 2, 29)
    for bad in ("2023-02-29", "20240101", "2024-1-1", "2024-W01-1", "yesterday"):
        with pytest.raises(ImportRowError):
            n.normalize_as_of(bad)


def test_street_city_rules() -> None:
    assert n.normalize_street("  1  Main   St ") == "1 Main St"
    assert n.normalize_city("San  Juan") == "San Juan"
    for bad in ("", "   ", "a\x00b", "y" * 201):
        with pytest.raises(ImportRowError):
            n.normalize_street(bad)
    with pytest.raises(ImportRowError):
        n.normalize_city(123)  # type: ignore[arg-type]


def _idempotent_or_refused(fn: object, value: object) -> None:
    assert callable(fn)
    try:
        once = fn(value)
    except ImportRowError:
        pass
    else:
        assert fn(once) == once
    # Refusals never echo the value: a marker that no rule text contains must not
    # come back (the bare value can coincide with a rule word, e.g. "code").
    if isinstance(value, str):
        message = ""
        try:
            fn("Zq9" + value)
        except ImportRowError as err:
            message = str(err)
        assert "zq9" not in message.lower()


@given(st.text())
def test_name_normalization_is_idempotent(value: str) -> None:
    _idempotent_or_refused(n.normalize_name, value)


@given(st.text(alphabet="0123456789- ", max_size=14))
def test_tin_output_is_nine_ascii_digits(value: str) -> None:
    try:
        out = n.normalize_tin(value)
    except ImportRowError:
        return
    assert len(out) == 9
    assert out.isascii()
    assert out.isdigit()
    assert n.normalize_tin(out) == out
    assert out[:3] not in ("000", "666")


@given(st.text())
def test_other_normalizers_idempotent(value: str) -> None:
    for fn in (n.normalize_street, n.normalize_city, n.normalize_state, n.normalize_zip):
        _idempotent_or_refused(fn, value)
    _idempotent_or_refused(n.normalize_tax_period, value)


@given(st.dates())
def test_as_of_roundtrip(value: date) -> None:
    text = value.isoformat()
    if len(text) == 10:
        assert n.normalize_as_of(text) == value


@given(
    st.lists(st.sampled_from(["A", "b", "É", " ", "-", "'", ".", "\t"]), min_size=1, max_size=30)
)
def test_equal_names_after_normalization_only_differ_in_case_and_spacing(parts: list[str]) -> None:
    raw = "".join(parts)
    try:
        out = n.normalize_name(raw)
    except ImportRowError:
        return
    assert out == out.upper()
    assert "  " not in out
    assert out == out.strip()


_TIN_LIKE = st.from_regex(r"\A9?[0-9]{3}-?[0-9]{2}-?[0-9]{4}\Z")
_FIELD = st.one_of(st.text(max_size=12), st.sampled_from(["DC", "PR", "AE", "12345", "2024"]))


@given(
    st.tuples(
        st.one_of(_TIN_LIKE, st.text(max_size=12)),
        st.one_of(st.from_regex(r"\A[A-Za-z .'\t-]{0,20}\Z"), st.text(max_size=10)),
        _FIELD,
        _FIELD,
        st.one_of(st.sampled_from(sorted(n.USPS_STATES)), st.text(max_size=3)),
        st.one_of(st.from_regex(r"\A[0-9]{5}(-?[0-9]{4})?\Z"), st.text(max_size=6)),
        st.one_of(st.from_regex(r"\A[0-9]{4}\Z"), st.integers(0, 3000), st.text(max_size=5)),
        st.one_of(st.dates().map(date.isoformat), st.text(max_size=10)),
    )
)
def test_importer_fast_path_agrees_with_the_normalizers(values: tuple[object, ...]) -> None:
    from taxaddr.store.reader import _validate_slow, validate_values

    try:
        slow = _validate_slow(7, values)
    except ImportRowError:
        with pytest.raises(ImportRowError):
            validate_values(7, values)
        return
    assert validate_values(7, values) == slow
