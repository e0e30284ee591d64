"""The synthetic generator: deterministic, valid, unique, clearly fake; the shipped sample."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from taxaddr.cli import run
from taxaddr.crypto.keystore import FileKeyStore
from taxaddr.errors import UsageError
from taxaddr.store.importer import import_file, validate_record
from taxaddr.store.lookup import lookup_address
from taxaddr.store.sample import DEMO_RECORDS, generate, write_sample

REPO = Path(__file__).resolve().parents[2]


def test_generator_is_deterministic_valid_unique_and_fake() -> None:
    first = list(generate(3000, seed=5))
    assert first == list(generate(3000, seed=5))
    assert first != list(generate(3000, seed=6))
    assert first[: len(DEMO_RECORDS)] == list(DEMO_RECORDS)
    keys = set()
    for i, rec in enumerate(first):
        row = validate_record(i + 2, dict(zip(rec.__dataclass_fields__, rec.as_row(), strict=True)))
        assert row.name.endswith("TESTPERSON")
        assert row.tin[0] == "9"  # ITIN range only
        keys.add((row.tin, row.tax_period))
    assert len(keys) == len(first)
    assert len(list(generate(3, demo=False))) == 3
    with pytest.raises(UsageError):
        list(generate(-1))


def test_cli_dev_sample_writes_csv_and_jsonl(
    env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["dev", "sample", "--count", "12", "--out", str(tmp_path / "s.jsonl")]) == 0
    lines = (tmp_path / "s.jsonl").read_text().splitlines()
    assert len(lines) == 12
    assert json.loads(lines[0])["tin"] == "987-65-4321"
    assert (
        run(["dev", "sample", "--count", "12", "--seed", "1", "--out", str(tmp_path / "s.csv")])
        == 0
    )
    assert "wrote 12 synthetic records" in capsys.readouterr().out
    assert run(["dev", "sample", "--count", "1", "--out", str(tmp_path / "s.xml")]) == 1


def test_shipped_sample_imports_and_demo_records_answer(
    engine: Engine, keystore: FileKeyStore
) -> None:
    report = import_file(engine, keystore, REPO / "tests" / "data" / "sample.csv")
    assert report.ok
    assert report.imported == 200
    with Session(engine) as s:
        jane = lookup_address(
            s, keystore, tin="987-65-4321", name="Jane Q Testperson", tax_periods=["2024"]
        )
        assert (jane.street, jane.city, jane.state, jane.zip, jane.as_of) == (
            "200 Sample Ave",
            "Baltimore",
            "MD",
            "21201-1234",
            "2025-03-01",
        )
        john = lookup_address(
            s, keystore, tin="987654322", name="JOHN TESTPERSON", tax_periods=["2024"]
        )
        assert john.street == "300 Placeholder Rd"


def test_sample_jsonl_roundtrip(
    tmp_path: Path, sqlite_engine: Engine, keystore: FileKeyStore
) -> None:
    path = tmp_path / "x.ndjson"
    assert write_sample(path, 50, seed=3) == 50
    assert import_file(sqlite_engine, keystore, path).imported == 50
