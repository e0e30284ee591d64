"""The importer: rules with line numbers, batches, idempotency, newest as_of, CLI output."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from taxaddr.cli import run
from taxaddr.crypto.keystore import FileKeyStore
from taxaddr.db.schema import address_records
from taxaddr.errors import KeyMaterialError, UsageError
from taxaddr.store.importer import RowProblem, import_file
from taxaddr.store.lookup import lookup_address
from tests.store.store_helpers import SEED_ROWS, write_csv, write_jsonl


def _count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(address_records)).scalar_one())


def _good(i: int, **over: str) -> dict[str, str]:
    row = {
        "tin": f"{100 + i // 9000:03d}-{10 + (i // 100) % 90:02d}-{1000 + i % 9000:04d}",
        "name": f"Person {chr(65 + i % 26)} Testperson",
        "street": f"{i} Example St",
        "city": "Springfield",
        "state": "IL",
        "zip": "62701",
        "tax_period": "2024",
        "as_of": "2025-01-01",
    }
    row.update(over)
    return row


# (column, bad value, expected fragment of the problem)
BAD_CASES = [
    ("tin", "000-12-3456", "tin: area number"),
    ("tin", "666-12-3456", "tin: area number"),
    ("tin", "123-00-4567", "tin: group number 00"),
    ("tin", "123-45-0000", "tin: serial number 0000"),
    ("tin", "912-40-1234", "tin: area 9xx"),
    ("tin", "12-34", "tin: must be 9 digits"),
    ("name", "R2D2", "name: may hold only"),
    ("name", "", "name: must not be empty"),
    ("street", "   ", "street: must not be empty"),
    ("city", "", "city: must not be empty"),
    ("state", "ZZ", "state: not a USPS"),
    ("zip", "9876", "zip: must be 5 or 9 digits"),
    ("tax_period", "24", "tax_period: must be a year"),
    ("as_of", "2024-13-01", "as_of: is not a valid calendar date"),
    ("as_of", "01/02/2024", "as_of: must be an ISO date"),
]


@pytest.mark.parametrize("case", BAD_CASES, ids=[f"{c[0]}-{c[1]!r}" for c in BAD_CASES])
def test_each_rule_is_reported_with_its_csv_line_and_without_value(
    case: tuple[str, str, str],
    tmp_path: Path,
    sqlite_engine: Engine,
    keystore: FileKeyStore,
) -> None:
    column, value, fragment = case
    engine = sqlite_engine
    rows = [_good(0), _good(1), _good(2, **{column: value}), _good(3)]
    problems: list[RowProblem] = []
    report = import_file(
        engine, keystore, write_csv(tmp_path / "in.csv", rows), on_problem=problems.append
    )
    assert len(problems) == 1
    assert str(problems[0]).startswith(f"line 4: {fragment}")  # header is line 1
    assert value.strip() == "" or value not in str(problems[0])
    assert report.refused == 1
    assert report.imported == 3
    assert _count(engine) == 3


def test_jsonl_lines_and_shape_problems(
    tmp_path: Path, sqlite_engine: Engine, keystore: FileKeyStore
) -> None:
    engine = sqlite_engine
    path = tmp_path / "in.jsonl"
    missing_zip = {k: v for k, v in _good(3).items() if k != "zip"}
    write_jsonl(path, [_good(0), missing_zip, _good(4, tin=123456789)])  # type: ignore[arg-type]
    with path.open("a", encoding="utf-8") as fh:
        fh.write("\n")  # blank line 4: skipped, still counted
        fh.write("{not json\n")  # line 5
        fh.write("[1, 2]\n")  # line 6
    with path.open("ab") as fh:
        fh.write(b'{"tin": "\xff"}\n')  # line 7: not UTF-8
    problems: list[str] = []
    report = import_file(engine, keystore, path, on_problem=lambda p: problems.append(str(p)))
    assert problems == [
        "line 2: zip: is missing",
        "line 3: tin: must be 9 digits (dashes allowed as 123-45-6789)",
        "line 5: row: is not valid JSON",
        "line 6: row: is not a JSON object",
        "line 7: row: is not valid UTF-8",
    ]
    assert report.imported == 1


def test_csv_shape_problems_and_multiline_records(
    tmp_path: Path, sqlite_engine: Engine, keystore: FileKeyStore
) -> None:
    engine = sqlite_engine
    path = write_csv(tmp_path / "in.csv", [_good(0)])
    with path.open("a", encoding="utf-8") as fh:
        fh.write("1,2,3\n")  # line 3: wrong width
        fh.write('111-22-3333,"Multi\nL1ne",1 St,City,IL,62701,2024,2025-01-01\n')  # lines 4-5
        fh.write("\n")  # line 6 blank
        fh.write("111-22-3334,Ok Name,1 St,City,IL,62701,2024,2025-01-01\n")  # line 7
    with path.open("ab") as fh:
        fh.write(b"111-22-3335,Bad \xff Name,1 St,City,IL,62701,2024,2025-01-01\n")  # line 8
    problems: list[str] = []
    report = import_file(engine, keystore, path, on_problem=lambda p: problems.append(str(p)))
    assert problems == [
        "line 3: row: has 3 fields, the header has 8",
        "line 4: name: may hold only letters, spaces, '-', apostrophes and '.'",
        "line 8: row: is not valid UTF-8",
    ]
    assert report.imported == 2


def test_header_and_file_type_problems(
    tmp_path: Path, sqlite_engine: Engine, keystore: FileKeyStore
) -> None:
    engine = sqlite_engine
    bad_header = write_csv(tmp_path / "h.csv", [], header="tin,name,street")
    with pytest.raises(UsageError, match="misses column"):
        import_file(engine, keystore, bad_header)
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(UsageError, match="empty"):
        import_file(engine, keystore, tmp_path / "empty.csv")
    (tmp_path / "x.txt").write_text("")
    with pytest.raises(UsageError, match="unknown file type"):
        import_file(engine, keystore, tmp_path / "x.txt")
    with pytest.raises(UsageError, match="cannot open"):
        import_file(engine, keystore, tmp_path / "missing.csv")
    with pytest.raises(UsageError, match="batch-size"):
        import_file(engine, keystore, bad_header, batch_size=0)


def test_strict_stops_and_its_batch_is_not_written(
    tmp_path: Path, engine: Engine, keystore: FileKeyStore
) -> None:
    rows = [_good(i) for i in range(25)]
    rows[13]["zip"] = "bad"  # record 14 -> line 15, in the second batch of 10
    problems: list[str] = []
    report = import_file(
        engine,
        keystore,
        write_csv(tmp_path / "in.csv", rows),
        strict=True,
        batch_size=10,
        on_problem=lambda p: problems.append(str(p)),
    )
    assert problems == ["line 15: zip: must be 5 or 9 digits (12345 or 12345-6789)"]
    assert report.stopped_at == 15
    assert _count(engine) == 10  # batch 1 only; none of batch 2's good rows


def test_default_mode_skips_bad_rows_and_writes_the_rest_of_each_batch(
    tmp_path: Path, engine: Engine, keystore: FileKeyStore
) -> None:
    rows = [_good(i) for i in range(25)]
    rows[13]["state"] = "QQ"
    rows[20]["tin"] = "666-11-2222"
    report = import_file(engine, keystore, write_csv(tmp_path / "in.csv", rows), batch_size=10)
    assert report.refused == 2
    assert report.batches == 3
    assert _count(engine) == 23
    assert not report.ok


def test_idempotent_and_newest_as_of_wins(
    tmp_path: Path, engine: Engine, keystore: FileKeyStore
) -> None:
    first = write_csv(tmp_path / "a.csv", SEED_ROWS)
    assert import_file(engine, keystore, first).inserted == len(SEED_ROWS)
    again = import_file(engine, keystore, first)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, len(SEED_ROWS))
    assert _count(engine) == len(SEED_ROWS)
    john = SEED_ROWS[2]
    older = dict(john, street="1 Older Place", as_of="2020-01-01")
    newer = dict(john, street="2 Newer Place", as_of="2026-01-01")
    # In one batch the newest wins too; an older row never replaces a newer one.
    report = import_file(engine, keystore, write_csv(tmp_path / "b.csv", [newer, older]))
    assert (report.updated, report.unchanged) == (1, 1)
    report = import_file(engine, keystore, write_csv(tmp_path / "c.csv", [older]))
    assert report.unchanged == 1
    assert _count(engine) == len(SEED_ROWS)
    with Session(engine) as s:
        got = lookup_address(s, keystore, tin=john["tin"], name=john["name"], tax_periods=["2024"])
    assert (got.street, got.as_of) == ("2 Newer Place", "2026-01-01")


def test_import_fails_closed_without_kek(
    tmp_path: Path, engine: Engine, keystore: FileKeyStore, keys_dir: Path
) -> None:
    (keys_dir / "kek" / "v1.key").unlink()
    with pytest.raises(KeyMaterialError, match="no KEK"):
        import_file(engine, keystore, write_csv(tmp_path / "a.csv", SEED_ROWS))
    assert _count(engine) == 0


def test_cli_import_reports_lines_count_and_exit_status(
    env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["db", "upgrade"]) == 0
    rows = [*SEED_ROWS, dict(SEED_ROWS[0], tin="666-12-3456"), dict(SEED_ROWS[2], zip="99")]
    path = write_csv(tmp_path / "in.csv", rows)
    capsys.readouterr()
    assert run(["import", str(path)]) == 1
    out, err = capsys.readouterr()
    assert err.splitlines() == [
        "line 7: tin: area number 000 and 666 are never issued",
        "line 8: zip: must be 5 or 9 digits (12345 or 12345-6789)",
        "2 rows refused",
    ]
    assert "imported 5 of 7 rows" in out
    for row in SEED_ROWS:
        for value in (row["tin"], row["tin"].replace("-", ""), row["name"], row["street"]):
            assert value not in err
            assert value not in out
    good = write_csv(tmp_path / "good.csv", SEED_ROWS)
    assert run(["import", str(good)]) == 0
    assert run(["import", str(path), "--strict", "--batch-size", "2"]) == 1
    assert "stopped at line 7 (--strict)" in capsys.readouterr().err


def test_cli_import_missing_kek_is_one_line(
    env: dict[str, str], tmp_path: Path, keys_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["db", "upgrade"]) == 0
    (keys_dir / "kek" / "v1.key").unlink()
    capsys.readouterr()
    assert run(["import", str(write_csv(tmp_path / "a.csv", SEED_ROWS))]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("taxaddr: keys_unavailable: no KEK found")
