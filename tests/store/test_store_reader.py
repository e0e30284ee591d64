"""The reader process: the same batches, problems and records as reading in-process;
its failures are one-line errors; it never outlives the import."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from taxaddr.crypto.keystore import FileKeyStore
from taxaddr.errors import DatabaseUnavailable, UsageError
from taxaddr.store import importer
from taxaddr.store.importer import ImportReport, RowProblem, import_file
from taxaddr.store.reader import read_batches, reader_process
from taxaddr.store.sample import write_sample
from tests.store.store_helpers import SEED_ROWS, write_csv, write_jsonl
from tests.store.test_store_pipeline import GatedWriter, _children

# Good rows with refused ones between them: every kind of problem the reader reports.
MIXED = [
    *SEED_ROWS,
    {**SEED_ROWS[0], "tin": "000-12-3456"},
    {**SEED_ROWS[1], "zip": "9876"},
    {**SEED_ROWS[2], "as_of": "2026-01-01", "street": "9 Newer Road"},  # newer: an update
    {**SEED_ROWS[3], "name": "Émile Zoë Testperson"},  # the normalizers' slow path
]


def _mixed_csv(path: Path) -> Path:
    write_csv(path, MIXED)
    with path.open("ab") as fh:
        fh.write(b"\n")  # a blank line is not a record
        fh.write(b"123-45-6789,Bad \xff Utf,1 Main St,Town,IL,62701,2024,2025-01-01\n")
        fh.write(b'123-45-6789,"unterminated,1 Main St\n')
    return path


def _stored(engine: Engine) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT id, blind_index, tax_period, as_of FROM address_records ORDER BY id")
        )
        return [tuple(r) for r in rows]


def _import(
    engine: Engine, keystore: FileKeyStore, path: Path, reader: str, **kw: object
) -> tuple[ImportReport, list[RowProblem], list[tuple[int, int]]]:
    problems: list[RowProblem] = []
    progress: list[tuple[int, int]] = []
    report = import_file(
        engine,
        keystore,
        path,
        batch_size=3,
        on_problem=problems.append,
        on_progress=lambda b, r: progress.append((b, r)),
        reader=reader,
        **kw,  # type: ignore[arg-type]
    )
    return report, problems, progress


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_reader_process_gives_the_same_batches_as_reading_in_process(
    fmt: str, tmp_path: Path
) -> None:
    path = tmp_path / f"mixed.{fmt}"
    _mixed_csv(path) if fmt == "csv" else write_jsonl(path, MIXED)
    with path.open("rb") as fh:
        here = list(read_batches(fh, fmt, 3, strict=False))
    with reader_process(path, fmt, 3, strict=False) as batches:
        there = list(batches)
    assert there == here
    assert sum(b.records for b in here) >= len(MIXED)
    assert any(b.problems for b in here)
    assert any(b.rows for b in here)


@pytest.mark.parametrize("strict", [False, True])
def test_import_with_the_reader_process_equals_import_in_process(
    strict: bool, sqlite_url: str, keystore: FileKeyStore, tmp_path: Path
) -> None:
    from taxaddr.db import make_engine
    from taxaddr.migrate import upgrade

    path = _mixed_csv(tmp_path / "mixed.csv")
    results = []
    for reader in ("thread", "process"):
        url = sqlite_url.replace(".db", f"-{reader}.db")
        upgrade(url)
        engine = make_engine(url)
        try:
            report, problems, progress = _import(engine, keystore, path, reader, strict=strict)
            results.append((report, problems, progress, len(_stored(engine))))
        finally:
            engine.dispose()
    assert results[0] == results[1]
    report = results[0][0]
    assert report.refused > 0
    if strict:
        assert report.stopped_at is not None
    else:
        assert report.inserted + report.updated + report.unchanged == report.imported


def test_reader_process_refuses_a_bad_header_with_the_same_message(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("tin,name\n123-45-6789,X\n")
    with path.open("rb") as fh, pytest.raises(UsageError) as here:
        list(read_batches(fh, "csv", 10, strict=False))
    with (
        reader_process(path, "csv", 10, strict=False) as batches,
        pytest.raises(UsageError) as there,
    ):
        list(batches)
    assert str(there.value) == str(here.value)
    assert "misses column" in str(there.value)


def test_reader_process_that_cannot_read_the_file_is_a_usage_error(tmp_path: Path) -> None:
    directory = tmp_path / "not-a-file.csv"
    directory.mkdir()
    with (
        reader_process(directory, "csv", 10, strict=False) as batches,
        pytest.raises(UsageError, match="cannot read the import file"),
    ):
        list(batches)


def test_reader_process_that_dies_stops_the_import_with_one_line(
    engine: Engine, keystore: FileKeyStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_csv(tmp_path / "rows.csv", SEED_ROWS)
    monkeypatch.setattr(sys, "executable", "/bin/false")  # exits 1, writes nothing
    with pytest.raises(UsageError) as err:
        import_file(engine, keystore, path, reader="process")
    assert "reader stopped unexpectedly (exit status 1)" in str(err.value)
    assert "\n" not in str(err.value)
    assert _stored(engine) == []


def test_reader_process_is_gone_when_the_writer_fails(
    engine: Engine, keystore: FileKeyStore, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "rows.csv", SEED_ROWS * 40)  # many batches of 3
    before = _children()
    writer = GatedWriter(engine, keystore, fail_at=2)
    writer.gate.set()
    with pytest.raises(DatabaseUnavailable):
        import_file(
            engine,
            keystore,
            path,
            batch_size=3,
            transaction_rows=1,
            writer=writer,
            reader="process",
        )
    assert _children() <= before  # stopped and reaped: nothing left behind
    assert len(_stored(engine)) == 3  # the first batch only


def test_large_files_use_the_reader_process(
    engine: Engine, keystore: FileKeyStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_csv(tmp_path / "rows.csv", SEED_ROWS)
    used: list[Path] = []
    real = importer.reader_process

    def spy(p: Path, *args: object, **kw: object) -> object:
        used.append(p)
        return real(p, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(importer, "reader_process", spy)
    assert import_file(engine, keystore, path).ok
    assert used == []  # small: read in-process
    monkeypatch.setattr(importer, "READER_PROCESS_MIN_BYTES", path.stat().st_size)
    assert import_file(engine, keystore, path).unchanged == len(SEED_ROWS)
    assert used == [path]


def test_import_refuses_an_unknown_reader(
    engine: Engine, keystore: FileKeyStore, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="unknown reader"):
        import_file(engine, keystore, write_csv(tmp_path / "r.csv", SEED_ROWS), reader="fork")


def test_the_collector_is_paused_during_the_import_and_back_afterwards(
    engine: Engine, keystore: FileKeyStore, tmp_path: Path
) -> None:
    import gc

    seen: list[bool] = []

    class Watching(GatedWriter):
        def write(self, batch: importer.StagedBatch, report: ImportReport) -> None:
            seen.append(gc.isenabled())
            super().write(batch, report)

    path = write_csv(tmp_path / "rows.csv", SEED_ROWS)
    writer = Watching(engine, keystore, fail_at=2)
    writer.gate.set()
    assert gc.isenabled()
    with pytest.raises(DatabaseUnavailable):
        import_file(engine, keystore, path, batch_size=3, transaction_rows=3, writer=writer)
    assert seen == [False, False]  # paused while writing
    assert gc.isenabled()  # and back, although the import failed
    gc.disable()
    try:
        assert import_file(engine, keystore, path).ok
        assert not gc.isenabled()  # a caller's own choice is left alone
    finally:
        gc.enable()


def test_consecutive_batches_share_a_transaction_of_whole_batches(
    engine: Engine, keystore: FileKeyStore, tmp_path: Path
) -> None:
    staged: list[tuple[int, int, int]] = []  # (first line, rows, batches) per transaction

    class Recording(GatedWriter):
        def write(self, batch: importer.StagedBatch, report: ImportReport) -> None:
            staged.append((batch.first_line, batch.rows, batch.batches))
            super().write(batch, report)

    path = tmp_path / "rows.csv"
    write_sample(path, 95, seed=8, demo=False)
    writer = Recording(engine, keystore)
    writer.gate.set()
    report = import_file(engine, keystore, path, batch_size=10, transaction_rows=25, writer=writer)
    assert report.ok
    # batches of 10 rows until a transaction holds at least 25; the rest at the end
    assert staged == [(2, 30, 3), (32, 30, 3), (62, 30, 3), (92, 5, 1)]
    assert (report.batches, report.inserted) == (10, 95)
    assert len(_stored(engine)) == 95


def test_import_refuses_transactions_of_no_rows(
    engine: Engine, keystore: FileKeyStore, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="transaction_rows"):
        import_file(engine, keystore, write_csv(tmp_path / "r.csv", SEED_ROWS), transaction_rows=0)


def test_the_reader_pipe_is_widened_when_the_system_allows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import errno
    import fcntl
    import os

    from taxaddr.store import reader

    r, w = os.pipe()
    try:
        default = fcntl.fcntl(r, fcntl.F_GETPIPE_SZ)
        reader._widen_pipe(r)
        assert fcntl.fcntl(r, fcntl.F_GETPIPE_SZ) == reader.READER_PIPE_BYTES > default
    finally:
        os.close(r)
        os.close(w)

    def refused(*_args: object) -> int:  # an unprivileged user over the system's limit
        raise PermissionError(errno.EPERM, "Operation not permitted")

    r, w = os.pipe()
    try:
        monkeypatch.setattr(fcntl, "fcntl", refused)
        reader._widen_pipe(r)  # best effort: the default size stays, no error
        monkeypatch.undo()
        assert fcntl.fcntl(r, fcntl.F_GETPIPE_SZ) == default
    finally:
        os.close(r)
        os.close(w)
