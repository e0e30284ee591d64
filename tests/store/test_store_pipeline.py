"""The importer's two stages: bounded batches in flight, file order, first failure stops."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import psutil
import pytest
from sqlalchemy import Engine, event, text
from sqlalchemy.orm import Session

from taxaddr.crypto.keystore import FileKeyStore
from taxaddr.errors import DatabaseUnavailable
from taxaddr.store.importer import (
    SEAL_CHUNK,
    BatchWriter,
    ImportReport,
    StagedBatch,
    import_file,
)
from taxaddr.store.lookup import lookup_address
from taxaddr.store.reader import READER_PIPE_BYTES
from taxaddr.store.sample import generate, write_sample


class GatedWriter(BatchWriter):
    """Holds the first batch until released; fails at batch ``fail_at`` (1-based)."""

    def __init__(self, engine: Engine, keystore: FileKeyStore, fail_at: int | None = None) -> None:
        super().__init__(engine, keystore)
        self.gate = threading.Event()
        self.fail_at = fail_at
        self.written: list[int] = []  # first line of each batch, in write order

    def write(self, batch: StagedBatch, report: ImportReport) -> None:
        if not self.written:
            assert self.gate.wait(20)
        if self.fail_at is not None and len(self.written) + 1 == self.fail_at:
            raise DatabaseUnavailable("database error during import (OperationalError)")
        super().write(batch, report)
        self.written.append(batch.first_line)


def _count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM address_records")).scalar_one())


@pytest.mark.parametrize("reader", ["thread", "process"])
def test_reading_waits_while_a_batch_is_written(
    reader: str, engine: Engine, keystore: FileKeyStore, tmp_path: Path
) -> None:
    """Bounded memory: while the writer holds batch 1, reading stops (in-process: at
    that batch; the reader process: blocked on its pipe, long before the file's end)."""
    data = tmp_path / "rows.csv"
    write_sample(data, 20_000, seed=3, demo=False)
    # the reader's JSON lines are larger than the CSV: far more than its pipe holds
    assert data.stat().st_size > 1.5 * READER_PIPE_BYTES
    writer = GatedWriter(engine, keystore)
    progress: list[int] = []
    done: list[ImportReport] = []
    children_before = _children()

    def run() -> None:
        done.append(
            import_file(
                engine,
                keystore,
                data,
                batch_size=200,
                transaction_rows=1,  # one transaction per batch: the gate holds batch 1
                writer=writer,
                reader=reader,
                on_progress=lambda _b, rows: progress.append(rows),
            )
        )

    importing = threading.Thread(target=run)
    importing.start()
    importing.join(timeout=1.5)
    assert importing.is_alive()  # blocked: the writer holds batch 1
    assert progress == []  # nothing past batch 1 was taken from the reader
    if reader == "process":
        (child,) = _children() - children_before
        assert psutil.Process(child).status() != psutil.STATUS_ZOMBIE  # still reading
    writer.gate.set()
    importing.join(timeout=120)
    assert not importing.is_alive()
    assert done[0].inserted == 20_000
    assert done[0].batches == 100
    assert writer.written == sorted(writer.written)  # file order
    assert _count(engine) == 20_000


def _children() -> set[int]:
    return {p.pid for p in psutil.Process(os.getpid()).children(recursive=True)}


def test_first_failed_batch_stops_the_import_and_a_rerun_completes_it(
    engine: Engine, keystore: FileKeyStore, tmp_path: Path
) -> None:
    data = tmp_path / "rows.csv"
    write_sample(data, 100, seed=4, demo=False)
    writer = GatedWriter(engine, keystore, fail_at=4)
    writer.gate.set()
    with pytest.raises(DatabaseUnavailable):
        import_file(engine, keystore, data, batch_size=10, transaction_rows=1, writer=writer)
    assert _count(engine) == 30  # batches 1-3 committed, none after the failed one
    again = import_file(engine, keystore, data, batch_size=10)
    assert again.ok
    assert (again.inserted, again.unchanged) == (70, 30)
    assert _count(engine) == 100


def test_batches_larger_than_a_seal_chunk_share_one_connection_and_open(
    engine: Engine, keystore: FileKeyStore, tmp_path: Path
) -> None:
    """Batches of several seal chunks stream into the insert; every record opens; one
    connection serves every batch and is returned at the end (re-import: unchanged)."""
    rows = 2 * SEAL_CHUNK + 37
    data = tmp_path / "rows.csv"
    write_sample(data, rows, seed=5, demo=False)
    checkouts: list[int] = []

    def count_checkout(*_args: object) -> None:
        checkouts.append(1)

    event.listen(engine.pool, "checkout", count_checkout)
    try:
        report = import_file(engine, keystore, data, batch_size=2 * SEAL_CHUNK)
    finally:
        event.remove(engine.pool, "checkout", count_checkout)
    assert report.ok
    assert (report.inserted, report.batches) == (rows, 2)
    assert len(checkouts) == 1  # one connection for both batches
    assert engine.pool.checkedout() == 0  # and returned
    assert _count(engine) == rows
    with Session(engine) as s:
        for rec in list(generate(rows, seed=5, demo=False))[:: SEAL_CHUNK // 5]:
            got = lookup_address(
                s, keystore, tin=rec.tin, name=rec.name, tax_periods=[rec.tax_period]
            )
            assert got.street
    again = import_file(engine, keystore, data, batch_size=2 * SEAL_CHUNK)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, rows)
