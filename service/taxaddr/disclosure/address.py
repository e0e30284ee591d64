"""A stated address must be an address (§ 6103(i)(2)(B)(i); CONTRACT "A stated address
must be an address").

The court found about 42,695 disclosures made on requests that did not really state
the taxpayer's address. Here a last known address is complete only when:

1. every part (street, city, state, ZIP) is present and is not a placeholder
   (``UNKNOWN``, ``N/A``, ``NONE``, ``FAILED TO PROVIDE``, ``TBD``, ``-``, ``SAME``,
   ``HOMELESS``, ... in any case, spacing and punctuation);
2. the street has a house number, or is a PO box, a rural or highway-contract route,
   a military (PSC/CMR/Unit) box, or "general delivery";
3. the city holds a letter; the state is a USPS state or territory code;
4. the ZIP (5 digits, optionally +4) is one the USPS lists, and its 3-digit prefix
   belongs to the stated state — from the ``zipcodes`` package's copy of the USPS
   ZIP data, not a hand-typed table.

Only the yes/no fact reaches the policy (``request.address_complete``); which rule
failed is never logged, since it would describe the address.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from typing import Any

import zipcodes

# Compared with everything but letters and digits removed ("N/A" -> "NA", "-" -> "").
PLACEHOLDERS = frozenset(
    """
    UNKNOWN UNK UNKN NA NONE NULL NIL VOID FAILEDTOPROVIDE NOTPROVIDED NOTGIVEN NONEGIVEN
    NOTAVAILABLE UNAVAILABLE NOTAPPLICABLE NOTKNOWN TBD TBA TBC PENDING SAME SAMEASABOVE
    SEEABOVE HOMELESS TRANSIENT NOADDRESS NOFIXEDADDRESS NFA NOFIXEDABODE REFUSED DECLINED
    ADDRESS STREET CITY STATE ZIP ZIPCODE ANY ANYTOWN NOWHERE MISSING
    BLANK EMPTY TEST SAMPLE DUMMY PLACEHOLDER REDACTED WITHHELD CONFIDENTIAL VARIOUS
    """.split()  # noqa: SIM905 - a word list reads best as words
)
_HOUSE_NUMBER = re.compile(r"^\d+[A-Z]?(?:[-/]\d+[A-Z]?)?(?: 1/2)? [A-Z0-9]")
_PO_BOX = re.compile(r"^(?:P ?O ?B(?:OX)? ?|POST OFFICE BOX |BOX |PO DRAWER |DRAWER )#? ?\d+")
_ROUTE = re.compile(
    r"^(?:R ?R|RURAL ROUTE|RURAL RTE|RT|ROUTE|H ?C|HCR|HIGHWAY CONTRACT(?: ROUTE)?) ?#? ?\d+"
)
_MILITARY = re.compile(r"^(?:PSC|CMR|UNIT) \d+")
_GENERAL_DELIVERY = re.compile(r"^GENERAL DELIVERY$")
_ZIP = re.compile(r"^(\d{5})(?:-\d{4})?$")


def _normal(text: str) -> str:
    """Upper case, compatibility-normalized, dots dropped, runs of space made one."""
    text = unicodedata.normalize("NFKC", text).upper().replace(".", "")
    return " ".join(text.replace(",", " ").split())


def is_placeholder(text: str) -> bool:
    """True for a part that says nothing: empty, punctuation only, or a stock filler."""
    core = re.sub(r"[^A-Z0-9]", "", _normal(text))
    return not core or core in PLACEHOLDERS or (len(set(core)) == 1 and len(core) > 1)


def street_is_deliverable(street: str) -> bool:
    """A house number, or a PO box / route / military box / general delivery form."""
    text = _normal(street)
    return any(
        pattern.match(text)
        for pattern in (_HOUSE_NUMBER, _PO_BOX, _ROUTE, _MILITARY, _GENERAL_DELIVERY)
    )


def _records() -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = zipcodes.list_all()  # type: ignore[no-untyped-call]
    return records


@functools.cache
def _states_by_prefix() -> dict[str, frozenset[str]]:
    """ZIP prefix (3 digits) -> the USPS states/territories its ZIP codes lie in."""
    table: dict[str, set[str]] = {}
    for record in _records():
        code, state = record.get("zip_code"), record.get("state")
        if isinstance(code, str) and isinstance(state, str) and len(code) == 5:
            table.setdefault(code[:3], set()).add(state)
    return {prefix: frozenset(states) for prefix, states in table.items()}


@functools.cache
def _known_zips() -> frozenset[str]:
    return frozenset(r["zip_code"] for r in _records() if isinstance(r.get("zip_code"), str))


def zip_matches_state(zip_code: str, state: str) -> bool:
    """The ZIP is listed and its 3-digit prefix belongs to the stated state."""
    match = _ZIP.match(_normal(zip_code))
    if match is None:
        return False
    five = match.group(1)
    code = _normal(state)
    return five in _known_zips() and code in _states_by_prefix().get(five[:3], frozenset())


def address_is_complete(street: str, city: str, state: str, zip_code: str) -> bool:
    """The contract's rule for ``request.address_complete`` (module docstring)."""
    parts = (street, city, state, zip_code)
    if any(is_placeholder(part) for part in parts):
        return False
    if not street_is_deliverable(street):
        return False
    if not any(ch.isalpha() for ch in city):
        return False
    return zip_matches_state(zip_code, state)


def warm() -> None:
    """Load the ZIP tables (about a quarter second) before the first request needs them."""
    _states_by_prefix()
    _known_zips()
