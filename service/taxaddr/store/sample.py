"""Synthetic, clearly fake address records for demos, tests and benchmarks.

Every generated person's surname is ``TESTPERSON``. TINs come from the ITIN
range (area 9xx, groups 70-88), which the importer accepts, and the fixed demo
records use 987-65-432x, the block the SSA reserved for advertising. Output is
deterministic for a given seed and streams (constant memory, unique TINs
without remembering them).
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import TextIO

from taxaddr.errors import UsageError
from taxaddr.store.reader import COLUMNS, detect_format

FIRST_NAMES = (
    "ALEX", "AVERY", "BLAKE", "CASEY", "DAKOTA", "DREW", "ELLIS", "FINLEY", "GRAY",
    "HARPER", "JAMIE", "JORDAN", "KENDALL", "LOGAN", "MORGAN", "PARKER", "QUINN",
    "REESE", "RILEY", "ROWAN", "SAGE", "SKYLER", "TAYLOR", "VAL",
)  # fmt: skip
SURNAME = "TESTPERSON"
STREET_NAMES = (
    "EXAMPLE", "SAMPLE", "FICTION", "PLACEHOLDER", "DEMO", "MOCK", "TEST", "SYNTHETIC",
)  # fmt: skip
STREET_SUFFIXES = ("ST", "AVE", "RD", "LN", "CT", "BLVD", "WAY", "PL")
# Real city/state/ZIP triples: an address without a person is not PII.
PLACES = (
    ("WASHINGTON", "DC", "20001"),
    ("BALTIMORE", "MD", "21201"),
    ("RICHMOND", "VA", "23219"),
    ("PHILADELPHIA", "PA", "19103"),
    ("CHICAGO", "IL", "60601"),
    ("HOUSTON", "TX", "77002"),
    ("PHOENIX", "AZ", "85004"),
    ("DENVER", "CO", "80202"),
    ("SEATTLE", "WA", "98101"),
    ("MIAMI", "FL", "33130"),
    ("SAN JUAN", "PR", "00901"),
    ("HONOLULU", "HI", "96813"),
)

# ITIN space used for generated people: area 900-999, group 70-88, serial 0001-9999.
_AREAS, _GROUPS, _SERIALS = 100, 19, 9999
_SPACE = _AREAS * _GROUPS * _SERIALS


@dataclass(frozen=True)
class SampleRecord:
    tin: str
    name: str
    street: str
    city: str
    state: str
    zip: str
    tax_period: str
    as_of: str

    def as_row(self) -> list[str]:
        return [getattr(self, c) for c in COLUMNS]


# Known records for the README and API examples (documented in docs/store.md).
DEMO_RECORDS: tuple[SampleRecord, ...] = (
    SampleRecord(
        "987-65-4321", "Jane Q Testperson", "100 Example St NW", "Washington", "DC", "20001",
        "2023", "2024-02-15",
    ),
    SampleRecord(
        "987-65-4321", "Jane Q Testperson", "200 Sample Ave", "Baltimore", "MD", "21201-1234",
        "2024", "2025-03-01",
    ),
    SampleRecord(
        "987-65-4322", "John Testperson", "300 Placeholder Rd", "Richmond", "VA", "23219",
        "2024", "2025-04-10",
    ),
    # Two different names on one TIN: asking for both periods is no_unique_match.
    SampleRecord(
        "987-65-4323", "Alex Testperson", "400 Mock Ln", "Chicago", "IL", "60601",
        "2023", "2024-01-20",
    ),
    SampleRecord(
        "987-65-4323", "Alex B Testperson", "401 Mock Ln", "Chicago", "IL", "60601",
        "2024", "2025-01-20",
    ),
)  # fmt: skip


def _tin(index: int, multiplier: int, offset: int) -> str:
    """The ``index``-th TIN of a seeded permutation of the ITIN space (unique per index)."""
    n = (index * multiplier + offset) % _SPACE
    n, serial = divmod(n, _SERIALS)
    area, group = divmod(n, _GROUPS)
    return f"{900 + area:03d}-{70 + group:02d}-{serial + 1:04d}"


def generate(count: int, *, seed: int = 0, demo: bool = True) -> Iterator[SampleRecord]:
    """``count`` records (the demo records first when ``demo``), about 1.5 per person."""
    if count < 0:
        raise UsageError("--count must not be negative")
    if count > _SPACE:
        raise UsageError(f"--count must be at most {_SPACE}")
    rng = random.Random(seed)
    multiplier = rng.randrange(1, _SPACE)
    while _gcd(multiplier, _SPACE) != 1:
        multiplier += 1
    offset = rng.randrange(_SPACE)
    emitted = 0
    if demo:
        for record in DEMO_RECORDS[:count]:
            yield record
            emitted += 1
    person = 0
    while emitted < count:
        tin = _tin(person, multiplier, offset)
        person += 1
        first = rng.choice(FIRST_NAMES)
        middle = rng.choice(("", "", "A ", "J ", "M "))
        name = f"{first} {middle}{SURNAME}" if rng.random() < 0.9 else f"{first.title()} {SURNAME}"
        periods = min(rng.choice((1, 1, 2, 3)), count - emitted)
        year = rng.randrange(2019, 2025 - periods + 1)
        for k in range(periods):
            city, state, zip_code = rng.choice(PLACES)
            street = f"{rng.randrange(1, 9999)} {rng.choice(STREET_NAMES)}"
            as_of = date(year + k + 1, 1, 1) + timedelta(days=rng.randrange(300))
            yield SampleRecord(
                tin if rng.random() < 0.7 else tin.replace("-", ""),
                name,
                f"{street} {rng.choice(STREET_SUFFIXES)}",
                city,
                state,
                zip_code,
                str(year + k),
                as_of.isoformat(),
            )
            emitted += 1


def _gcd(a: int, b: int) -> int:
    while b:
        a, b = b, a % b
    return a


def write_sample(path: Path, count: int, *, seed: int = 0, demo: bool = True) -> int:
    """Write ``count`` records to ``path`` (.csv or .jsonl); returns the number written."""
    fmt = detect_format(path)
    try:
        fh = path.open("w", encoding="utf-8", newline="")
    except OSError as exc:
        raise UsageError(f"cannot write the sample file ({exc.strerror or 'error'})") from None
    with fh:
        return _write(fh, fmt, generate(count, seed=seed, demo=demo))


def _write(fh: TextIO, fmt: str, records: Iterator[SampleRecord]) -> int:
    written = 0
    if fmt == "csv":
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(COLUMNS)
        for record in records:
            writer.writerow(record.as_row())
            written += 1
    else:
        for record in records:
            fh.write(json.dumps(dict(zip(COLUMNS, record.as_row(), strict=True))) + "\n")
            written += 1
    return written
