"""Validation and normalization of imported and requested values.

Errors name the field and the rule, never the value.
"""

from __future__ import annotations

import re

from taxaddr.errors import ImportRowError

_TIN_RE = re.compile(r"^(\d{3})-?(\d{2})-?(\d{4})$")


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
