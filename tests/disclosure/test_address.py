"""A stated address must be an address: placeholders, streets without a house number or
box/route form, ZIPs of another state (real USPS ZIP/state pairs, synthetic streets)."""

from __future__ import annotations

import pytest

from taxaddr.disclosure.address import (
    address_is_complete,
    is_placeholder,
    street_is_deliverable,
    zip_matches_state,
)

COMPLETE = [
    ("1401 Quill Street NW", "Washington", "DC", "20001"),
    ("12 Example Ave", "New York", "NY", "10001"),
    ("7 Synthetic Rd Apt 4B", "Chicago", "IL", "60601"),
    ("221B Sample Lane", "Boston", "MA", "02108"),
    ("1600-1602 Test Blvd", "Los Angeles", "CA", "90012"),
    ("45 1/2 Placeholder Ct", "Austin", "TX", "78701"),
    ("PO Box 1234", "Denver", "CO", "80202"),
    ("P.O. Box 77", "Seattle", "WA", "98101"),
    ("Post Office Box 9", "Miami", "FL", "33101"),
    ("RR 2 Box 15", "Ames", "IA", "50010"),
    ("Rural Route 5", "Billings", "MT", "59101"),
    ("HC 64 Box 300", "Fairbanks", "AK", "99701"),
    ("General Delivery", "Portland", "OR", "97201"),
    ("PSC 1234 Box 5678", "APO", "AE", "09021"),
    ("9 Testing Way", "San Juan", "PR", "00901"),
    ("300 Mock St", "Honolulu", "HI", "96813"),
    ("18 Trial Pl", "Phoenix", "AZ", "85004-1234"),
    ("5 Example Sq", "Atlanta", "GA", "30303"),
    ("100 example st nw", "washington", "dc", "20001"),  # any case
    ("  77   Spacing   Ave ", " Detroit ", "MI", "48226"),  # any spacing
]

INCOMPLETE = [
    ("UNKNOWN", "Washington", "DC", "20001"),
    ("unknown", "Washington", "DC", "20001"),
    ("N/A", "Washington", "DC", "20001"),
    ("n / a", "Washington", "DC", "20001"),
    ("NONE", "Washington", "DC", "20001"),
    ("FAILED TO PROVIDE", "Washington", "DC", "20001"),
    ("Failed  to  provide", "Washington", "DC", "20001"),
    ("TBD", "Washington", "DC", "20001"),
    ("-", "Washington", "DC", "20001"),
    ("---", "Washington", "DC", "20001"),
    ("SAME", "Washington", "DC", "20001"),
    ("Same as above", "Washington", "DC", "20001"),
    ("HOMELESS", "Washington", "DC", "20001"),
    ("No fixed address", "Washington", "DC", "20001"),
    ("1401 Quill Street NW", "UNKNOWN", "DC", "20001"),
    ("1401 Quill Street NW", "N/A", "DC", "20001"),
    ("1401 Quill Street NW", "Washington", "N/A", "20001"),
    ("1401 Quill Street NW", "Washington", "DC", "00000"),
    ("1401 Quill Street NW", "Washington", "DC", "99999"),
    ("1401 Quill Street NW", "Washington", "DC", "TBD"),
    ("Quill Street NW", "Washington", "DC", "20001"),  # no house number
    ("Main Street", "Springfield", "IL", "62701"),
    ("Apartment 4", "Chicago", "IL", "60601"),
    ("Box", "Denver", "CO", "80202"),  # box without a number
    ("1 Example St", "New York", "NJ", "10001"),  # NY ZIP, NJ stated
    ("1 Example St", "Washington", "VA", "20001"),  # DC ZIP, VA stated
    ("1 Example St", "Boston", "MA", "10001"),
    ("1 Example St", "Los Angeles", "CA", "98101"),  # a WA ZIP
    ("1 Example St", "Miami", "FL", "3310"),  # four digits
    ("1 Example St", "Miami", "FL", "331011"),
    ("1 Example St", "Miami", "ZZ", "33101"),
    ("1 Example St", "12345", "FL", "33101"),  # a city without a letter
    ("XXXX", "Washington", "DC", "20001"),
    ("", "Washington", "DC", "20001"),
    ("1 Example St", "", "DC", "20001"),
    ("1 Example St", "Washington", "", "20001"),
    ("1 Example St", "Washington", "DC", ""),
    ("?", "Washington", "DC", "20001"),
    ("Refused", "Washington", "DC", "20001"),
    ("1 Example St", "Anytown", "DC", "20001"),
]


@pytest.mark.parametrize(("street", "city", "state", "zip_code"), COMPLETE)
def test_real_looking_addresses_are_complete(
    street: str, city: str, state: str, zip_code: str
) -> None:
    assert address_is_complete(street, city, state, zip_code)


@pytest.mark.parametrize(("street", "city", "state", "zip_code"), INCOMPLETE)
def test_placeholders_and_mismatches_are_incomplete(
    street: str, city: str, state: str, zip_code: str
) -> None:
    assert not address_is_complete(street, city, state, zip_code)


def test_the_table_is_large_enough() -> None:
    assert len(COMPLETE) + len(INCOMPLETE) >= 40


def test_each_rule_on_its_own() -> None:
    assert is_placeholder(" n.a. ")
    assert not is_placeholder("Washington")
    assert street_is_deliverable("12 A St")
    assert not street_is_deliverable("A St 12")
    assert zip_matches_state("20001-1234", "DC")
    assert not zip_matches_state("20001", "MD")
