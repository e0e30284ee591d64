"""Validation and normalization of imported and requested values.

Errors name the field and the rule, never the value. Every normalizer is
idempotent: feeding its output back in returns the same output.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date

from taxaddr.errors import ImportRowError

# re.ASCII: "\d" must not accept other scripts' digits (they would slip into the index).
_TIN_RE = re.compile(r"^(\d{3})-?(\d{2})-?(\d{4})$", re.ASCII)
_ZIP_RE = re.compile(r"^(\d{5})(?:-?(\d{4}))?$", re.ASCII)
_YEAR_RE = re.compile(r"^\d{4}$", re.ASCII)
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$", re.ASCII)
_NAME_PUNCTUATION = frozenset(" -'.")
_ASCII_NAME_RE = re.compile(r"^[A-Z '.-]*[A-Z][A-Z '.-]*$", re.ASCII)

MAX_NAME = 200
MAX_STREET = 200
MAX_CITY = 100
MIN_TAX_PERIOD = 1900

# USPS codes: 50 states, DC, the territories and freely associated states,
# and the armed forces "states" (Americas, Europe, Pacific).
_USPS = """
    AL AK AZ AR CA CO CT DE FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT
    NE NV NH NJ NM NY NC ND OH OK OR PA RI SC SD TN TX UT VT VA WA WV WI WY
    DC AS GU MP PR VI UM FM MH PW AA AE AP
"""
USPS_STATES: frozenset[str] = frozenset(_USPS.split())


def _itin_group_ok(group: int) -> bool:
    return 50 <= group <= 65 or 70 <= group <= 88 or 90 <= group <= 92 or 94 <= group <= 99


def normalize_tin(value: str) -> str:
    """An SSN or ITIN as 9 digits. Dashes allowed only in the 3-2-4 places."""
    m = _TIN_RE.match(value.strip()) if isinstance(value, str) else None
    if not m:
        raise ImportRowError("tin", "must be 9 digits (dashes allowed as 123-45-6789)")
    area, group, serial = m.group(1), m.group(2), m.group(3)
    if area in ("000", "666"):
        raise ImportRowError("tin", "area number 000 and 666 are never issued")
    if group == "00":
        raise ImportRowError("tin", "group number 00 is never issued")
    if serial == "0000":
        raise ImportRowError("tin", "serial number 0000 is never issued")
    if area.startswith("9") and not _itin_group_ok(int(group)):
        raise ImportRowError(
            "tin", "area 9xx is only valid as an ITIN (group 50-65, 70-88, 90-92, 94-99)"
        )
    return area + group + serial


def _collapse(value: str) -> str:
    """NFC, whitespace trimmed and every run of whitespace made one space."""
    if not value.isascii():
        value = unicodedata.normalize("NFC", value)
    return " ".join(value.split())


def _require_str(field: str, value: object) -> str:
    if not isinstance(value, str):
        raise ImportRowError(field, "must be a string")
    return value


def normalize_name(value: str) -> str:
    """Letters, spaces, ``-``, ``'`` and ``.``; upper case, trimmed, whitespace collapsed.

    Two names match only when their normalized forms are equal (nothing looser).
    """
    text = _require_str("name", value)
    name = _collapse(text).upper()
    if name.isascii():
        if len(name) <= MAX_NAME and _ASCII_NAME_RE.match(name):
            return name  # the common case; the checks below give the precise reason
    else:
        name = unicodedata.normalize("NFC", name)
    if not name:
        raise ImportRowError("name", "must not be empty")
    if len(name) > MAX_NAME:
        raise ImportRowError("name", f"longer than {MAX_NAME} characters")
    if not all(ch.isalpha() or ch in _NAME_PUNCTUATION for ch in name):
        raise ImportRowError("name", "may hold only letters, spaces, '-', apostrophes and '.'")
    if not any(ch.isalpha() for ch in name):
        raise ImportRowError("name", "must contain a letter")
    return name


def _normalize_line(field: str, value: object, max_len: int) -> str:
    text = _collapse(_require_str(field, value))
    if not text:
        raise ImportRowError(field, "must not be empty")
    if len(text) > max_len:
        raise ImportRowError(field, f"longer than {max_len} characters")
    if not text.isprintable():
        raise ImportRowError(field, "contains control or unprintable characters")
    return text


def normalize_street(value: str) -> str:
    """Non-empty, printable, whitespace collapsed (case kept as given)."""
    return _normalize_line("street", value, MAX_STREET)


def normalize_city(value: str) -> str:
    """Non-empty, printable, whitespace collapsed (case kept as given)."""
    return _normalize_line("city", value, MAX_CITY)


def normalize_state(value: str) -> str:
    """A USPS code (states, DC, territories, AA/AE/AP), upper case."""
    code = _require_str("state", value).strip().upper()
    if code not in USPS_STATES:
        raise ImportRowError("state", "not a USPS state or territory code")
    return code


def normalize_zip(value: str) -> str:
    """ZIP or ZIP+4: ``12345`` or ``12345-6789`` (``123456789`` is accepted too)."""
    m = _ZIP_RE.match(_require_str("zip", value).strip())
    if not m:
        raise ImportRowError("zip", "must be 5 or 9 digits (12345 or 12345-6789)")
    return m.group(1) if m.group(2) is None else f"{m.group(1)}-{m.group(2)}"


def normalize_tax_period(value: str | int) -> str:
    """A tax year ``YYYY`` (1900 or later). JSON may give it as an integer."""
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    text = _require_str("tax_period", text).strip()
    if not _YEAR_RE.match(text) or int(text) < MIN_TAX_PERIOD:
        raise ImportRowError("tax_period", "must be a year YYYY (1900 or later)")
    return text


def normalize_as_of(value: str) -> date:
    """An ISO calendar date ``YYYY-MM-DD``."""
    text = _require_str("as_of", value).strip()
    if not _DATE_RE.match(text):
        raise ImportRowError("as_of", "must be an ISO date YYYY-MM-DD")
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ImportRowError("as_of", "is not a valid calendar date") from None
