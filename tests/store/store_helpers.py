"""Helpers shared by the store tests (synthetic seeded rows, file writers)."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from taxaddr.store.importer import COLUMNS

HEADER = ",".join(COLUMNS)

# Seeded records (synthetic). Streets/names are distinctive so a leak is visible.
SEED_ROWS: list[dict[str, str]] = [
    {
        "tin": "123-45-6789",
        "name": "Jane Q Doe-Testperson",
        "street": "1234 Leakcheck Boulevard",
        "city": "Springfield",
        "state": "IL",
        "zip": "62701",
        "tax_period": "2023",
        "as_of": "2024-03-01",
    },
    {
        "tin": "123-45-6789",
        "name": "Jane Q Doe-Testperson",
        "street": "77 Newer Residence Way",
        "city": "Chicago",
        "state": "IL",
        "zip": "60601-1234",
        "tax_period": "2024",
        "as_of": "2025-03-01",
    },
    {
        "tin": "234-56-7890",
        "name": "John O'Testperson",
        "street": "9 Uniquestreet Court",
        "city": "Austin",
        "state": "TX",
        "zip": "73301",
        "tax_period": "2024",
        "as_of": "2025-02-01",
    },
    {
        "tin": "912-70-3456",
        "name": "Alex Ambiguous",
        "street": "5 Firstname Lane",
        "city": "Denver",
        "state": "CO",
        "zip": "80202",
        "tax_period": "2023",
        "as_of": "2024-01-05",
    },
    {
        "tin": "912-70-3456",
        "name": "Alex B Ambiguous",
        "street": "6 Secondname Lane",
        "city": "Denver",
        "state": "CO",
        "zip": "80202",
        "tax_period": "2024",
        "as_of": "2025-01-05",
    },
]


def write_csv(path: Path, rows: Iterable[dict[str, Any]], header: str = HEADER) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        fh.write(header + "\n")
        writer = csv.writer(fh, lineterminator="\n")
        for row in rows:
            writer.writerow([row.get(c, "") for c in COLUMNS])
    return path


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> Path:
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    return path
