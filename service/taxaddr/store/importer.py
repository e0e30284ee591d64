"""Import address records from CSV or JSONL: validate, normalize, seal, write in batches.

Streaming and constant memory: the file is read line by line and at most a few
batches of rows are held at a time. A batch is ``batch_size`` consecutive records
of the file (good and bad alike). Every batch is validated as a whole before
anything of it is written, and written in one transaction, on PostgreSQL together
with the batches around it up to :data:`PG_TRANSACTION_ROWS` rows (whole batches
only), so an interrupted import leaves only whole batches behind and a re-run
completes it.

Idempotent per (TIN, tax period): a row for an existing record replaces it only
when its ``as_of`` is newer; the same file imported twice changes nothing.

Two stages overlap. Reading and validation (:mod:`taxaddr.store.reader`) run, for a
file of at least :data:`READER_PROCESS_MIN_BYTES`, in a separate reader process that
holds no key and uses the other core; a smaller file is read in this thread. This
thread stages each validated batch (blind indexes, key material: no database read
decides them), then seals and writes it (assigning ids, sealing and the write
transaction belong together: a record's id is bound into its ciphertexts).

Writing happens in this one thread on purpose: a writer thread beside the reading
thread measured slower than one thread doing both (200,000 rows: 34,400 vs 36,500
rows/s), since every SQLite call hands the GIL back and forth between them. The
reader process blocks on its pipe while this thread writes, so memory stays bounded
whatever the file's size; transactions commit in file order, and the first failed one
stops the import (those before it stay committed, none after it is written).
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, NamedTuple

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from taxaddr.crypto.keystore import KeyStore
from taxaddr.db import BulkWrites
from taxaddr.db.repositories.addresses import Upserts
from taxaddr.errors import DatabaseUnavailable, UsageError
from taxaddr.store.reader import (
    COLUMNS,
    MAX_BATCH_SIZE,
    ImportRow,
    ReadBatch,
    RowProblem,
    detect_format,
    read_batches,
    reader_process,
    validate_record,
    validate_values,
)
from taxaddr.store.records import (
    BatchSealer,
    BlindIndexer,
    RecordKey,
    SealInput,
    address_bytes,
)

__all__ = [  # what callers took from here before the reader moved out
    "COLUMNS",
    "ImportRow",
    "RowProblem",
    "detect_format",
    "validate_record",
    "validate_values",
]

DEFAULT_BATCH_SIZE = 1000
# On PostgreSQL consecutive batches share one write transaction until it holds at
# least this many rows (a transaction always holds whole batches). Per transaction,
# PostgreSQL pays a lock, a stored-key look-up, a COPY start and end and a commit, the
# importer a round trip for each: 1M rows, 51k -> 56-58k rows/s (A/B, docs/performance.md;
# the reader's pipe holds about this much, see reader.READER_PIPE_BYTES). SQLite keeps
# one transaction per batch: 5,000-row transactions were no faster there (36.7k vs
# 38.6k rows/s) and took 55 MB more (peak 311 MB with the reader, over the 300 MB bound).
PG_TRANSACTION_ROWS = 5000
SEAL_CHUNK = 250  # records sealed at a time (see seal_chunks)
# Files at least this large are read by a separate reader process (the other core);
# smaller ones in this process, where starting a process would cost more than it saves.
READER_PROCESS_MIN_BYTES = 4 << 20

ProblemSink = Callable[[RowProblem], None]
ProgressSink = Callable[[int, int], None]


@dataclass
class ImportReport:
    rows: int = 0  # records read (good and bad)
    imported: int = 0  # accepted rows (inserted, updated or already current)
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    refused: int = 0
    batches: int = 0
    stopped_at: int | None = None  # --strict: the line that stopped the import
    problems: list[RowProblem] = field(default_factory=list, repr=False)

    @property
    def ok(self) -> bool:
        return self.refused == 0 and self.stopped_at is None


# -- writing ------------------------------------------------------------------------------


def _as_date(value: Any) -> date:
    # Driver SQL skips SQLAlchemy's result processing: SQLite hands back ISO text.
    return date.fromisoformat(value) if isinstance(value, str) else value


class Staged(NamedTuple):
    """One record of a staged batch: what its write needs that no database read decides."""

    blind_index: bytes
    row: ImportRow
    name: bytes  # the name as sealed (UTF-8)
    address: bytes  # address_bytes(...) as sealed
    key: RecordKey  # its own fresh data key (wrapped), cipher and nonces


@dataclass
class StagedBatch:
    """A validated batch made ready for its write transaction (:meth:`BatchWriter.stage`)."""

    first_line: int
    rows: int  # the batch's accepted rows (several may name one record)
    batches: int  # the read batches these rows came from (whole batches only)
    kek_version: int
    records: list[Staged]  # one per (TIN, tax period), the newest as_of; by blind index


def _blind_index_of(staged: Staged) -> bytes:
    return staged.blind_index


class BatchWriter:
    """Stages, then seals and writes, one validated batch in one transaction.

    :meth:`stage` does, before the transaction, everything no database read decides:
    the newest row per (TIN, tax period), blind indexes, the sort, the sealed
    plaintexts and each record's fresh key material (random bytes, key wrap, cipher
    set-up). :meth:`write` reads the stored records, assigns ids, encrypts (the
    associated data binds the record id) and writes.

    Sealing stays in this process: a pool of seal processes (spawned, fed chunks
    of a batch) measured slower on the 2-core machine (26,500 vs 32,700 rows/s for
    200,000 rows into PostgreSQL): the cores are already shared by the parser, the
    writer and the database server.
    """

    def __init__(self, engine: Engine, keystore: KeyStore) -> None:
        self.engine = engine
        self.keystore = keystore
        self.blind_index = BlindIndexer(keystore.blind_index_key())
        keystore.current_kek_version()  # fail before reading the file if there is no KEK
        self._statements: Upserts | None = None
        self._writes: BulkWrites | None = None
        self._sealer: tuple[int, BatchSealer] | None = None
        # rows per write transaction, in whole batches (1: a transaction per batch)
        self.transaction_rows = PG_TRANSACTION_ROWS if engine.dialect.name == "postgresql" else 1

    def close(self) -> None:
        """The import ended: return the connection held between batches."""
        writes, self._writes = self._writes, None
        if writes is not None:
            writes.close()

    def sealer(self, version: int) -> BatchSealer:
        held = self._sealer
        if held is None or held[0] != version:
            held = self._sealer = (version, BatchSealer(self.keystore, version))
        return held[1]

    def data_keys(self, count: int, version: int) -> list[RecordKey]:
        """Fresh key material for ``count`` records; the benchmark's baseline overrides."""
        return self.sealer(version).keys(count)

    def encode_many(
        self, items: list[SealInput], keys: list[RecordKey], version: int
    ) -> list[tuple[bytes, bytes, bytes]]:
        """(wrapped_key, name_ct, address_ct) per item, each under its own key of
        ``keys`` (:class:`BatchSealer`); the benchmark's baseline overrides."""
        return self.sealer(version).seal(items, keys)

    def seal_chunks(
        self, items: list[SealInput], keys: list[RecordKey], version: int
    ) -> Iterator[list[Any]]:
        """:meth:`encode_many` of consecutive chunks of ``items``, in order: the
        database stores a chunk's rows (COPY streams them) while the next is sealed."""
        for at in range(0, len(items), SEAL_CHUNK):
            end = at + SEAL_CHUNK
            yield self.encode_many(items[at:end], keys[at:end], version)

    def index(self, normalized_tin: str) -> bytes:
        return self.blind_index(normalized_tin)

    def stage(self, rows: list[ImportRow], batches: int = 1) -> StagedBatch:
        # Several rows for one (tin, tax_period) in a batch: the newest as_of wins,
        # ties keep the first (so batch and cross-batch behaviour agree).
        newest: dict[tuple[str, str], ImportRow] = {}
        for row in rows:
            key = (row.tin, row.tax_period)
            seen = newest.get(key)
            if seen is None or row.as_of > seen.as_of:
                newest[key] = row
        version = self.keystore.current_kek_version()
        keys = self.data_keys(len(newest), version)
        index = self.index
        records = [
            Staged(
                index(r.tin),
                r,
                r.name.encode(),
                address_bytes(r.street, r.city, r.state, r.zip),
                key,
            )
            for r, key in zip(newest.values(), keys, strict=True)
        ]
        # Sorted by blind index: the B-tree is then walked in order, not at random.
        records.sort(key=_blind_index_of)
        return StagedBatch(rows[0].line, len(rows), batches, version, records)

    def write(self, batch: StagedBatch, report: ImportReport) -> None:
        writes = self._writes
        if writes is None:
            writes = self._writes = BulkWrites(self.engine, caller_locks=True)
        try:
            with writes.transaction() as conn:
                inserted, updated = self._write(conn, batch)
        except SQLAlchemyError as exc:
            # Only the type: driver messages can echo bound parameters.
            raise DatabaseUnavailable(
                f"database error during import ({type(exc).__name__})"
            ) from None
        report.inserted += inserted
        report.updated += updated
        report.unchanged += batch.rows - inserted - updated
        report.imported += batch.rows
        report.batches += batch.batches

    def _write(self, conn: Connection, batch: StagedBatch) -> tuple[int, int]:
        stmts = self._statements
        if stmts is None:
            stmts = self._statements = Upserts(conn)
        keys = list({staged.blind_index for staged in batch.records})
        stored, next_id = stmts.prepare(conn, keys)
        existing = {
            (bytes(bi), period): (rid, _as_date(as_of)) for rid, bi, period, as_of in stored
        }
        version = batch.kek_version
        now = stmts.time(datetime.now(UTC))
        # One pass decides each row's id and what to seal; a second builds the rows.
        items: list[SealInput] = []
        record_keys: list[RecordKey] = []
        bound: list[tuple[Any, bool]] = []
        date_of = stmts.date
        for bi, row, name, address, key in batch.records:
            found = existing.get((bi, row.tax_period)) if existing else None
            if found is not None and row.as_of <= found[1]:
                continue  # already current: idempotent re-import (its key is dropped)
            if found is None:
                rid = next_id
                next_id += 1
            else:
                rid = int(found[0])
            as_of, iso = date_of(row.as_of)
            items.append((rid, bi, row.tax_period, iso, name, address))
            record_keys.append(key)
            bound.append((as_of, found is None))
        new_rows = sum(1 for _, new in bound if new)
        updates: list[tuple[Any, ...]] = []

        def inserts() -> Iterator[tuple[Any, ...]]:
            # Sealed chunk by chunk: the new rows stream into the insert (COPY) as they
            # are sealed; the updates are collected for after it.
            at = 0
            for sealed in self.seal_chunks(items, record_keys, version):
                end = at + len(sealed)
                for (rid, bi, period, _, _, _), (as_of, new), (wrapped, name_ct, ct) in zip(
                    items[at:end], bound[at:end], sealed, strict=True
                ):
                    if new:
                        yield (rid, bi, period, as_of, version, wrapped, name_ct, ct, now, now)
                    else:
                        updates.append((as_of, version, wrapped, name_ct, ct, now, rid))
                at = end
            if at != len(items):
                raise RuntimeError("the sealer returned fewer records than it was given")

        if new_rows:
            stmts.insert(conn, inserts())
        else:
            for _ in inserts():  # only updates: seal them
                pass
        if updates:
            stmts.update(conn, updates)
        return new_rows, len(updates)


def import_file(
    engine: Engine,
    keystore: KeyStore,
    path: Path,
    *,
    strict: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_problem: ProblemSink | None = None,
    on_progress: ProgressSink | None = None,
    writer: BatchWriter | None = None,
    reader: str = "auto",
    transaction_rows: int | None = None,
) -> ImportReport:
    """Import ``path`` (CSV or JSONL by extension) into ``address_records``.

    ``on_problem`` is called for each refused row as it is found; ``on_progress``
    with (bytes read, records read) after each batch. ``writer`` lets the benchmark
    substitute an unencrypted writer for its baseline. ``reader`` is ``"process"``
    (a separate reader process), ``"thread"`` (this thread) or ``"auto"`` (a process
    for files of at least :data:`READER_PROCESS_MIN_BYTES`). Consecutive batches are
    written together until a transaction holds ``transaction_rows`` rows (whole
    batches; ``1``: one transaction per batch; default: the writer's choice for its
    database, :data:`PG_TRANSACTION_ROWS` or ``1``); ``on_progress`` counts batches read.
    """
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise UsageError(f"--batch-size must be between 1 and {MAX_BATCH_SIZE}")
    if transaction_rows is not None and transaction_rows < 1:
        raise ValueError("transaction_rows must be at least 1")
    if reader not in ("auto", "process", "thread"):
        raise ValueError(f"unknown reader {reader!r}")
    fmt = detect_format(path)
    batch_writer = writer or BatchWriter(engine, keystore)
    group_rows = transaction_rows or batch_writer.transaction_rows
    report = ImportReport()
    try:
        fh = path.open("rb")
    except OSError as exc:
        raise UsageError(f"cannot open the import file ({exc.strerror or 'unreadable'})") from None
    with fh:
        separate = reader == "process" or (
            reader == "auto" and path.stat().st_size >= READER_PROCESS_MIN_BYTES
        )
        batches: AbstractContextManager[Iterator[ReadBatch]] = (
            reader_process(path, fmt, batch_size, strict=strict)
            if separate
            else nullcontext(read_batches(fh, fmt, batch_size, strict=strict))
        )
        with batches as source, _collector_paused():
            # Rows of whole batches read but not yet written, and how many batches.
            pending: list[ImportRow] = []
            pending_batches = 0
            try:
                for batch in source:
                    report.rows += batch.records
                    for problem in batch.problems:
                        report.refused += 1
                        if len(report.problems) < 1000:
                            report.problems.append(problem)
                        if on_problem is not None:
                            on_problem(problem)
                    if batch.stopped_at is not None:
                        report.stopped_at = batch.stopped_at
                        break  # --strict: the batches before this one; not this one
                    if batch.rows:
                        pending += batch.rows
                        pending_batches += 1
                    if len(pending) >= group_rows:
                        batch_writer.write(batch_writer.stage(pending, pending_batches), report)
                        pending, pending_batches = [], 0
                    if on_progress is not None:
                        on_progress(batch.bytes_read, report.rows)
                if pending:  # the last transaction; or, --strict, the batches before the stop
                    batch_writer.write(batch_writer.stage(pending, pending_batches), report)
            finally:
                batch_writer.close()
    return report


@contextmanager
def _collector_paused() -> Iterator[None]:
    """The cyclic garbage collector paused for the import (this process).

    A batch allocates tens of thousands of short-lived, acyclic objects (rows, tuples,
    bytes) that reference counting frees; meanwhile the collector's passes over the
    process's long-lived objects cost ~9 % of a 1M-row import's CPU (measured). Cycles
    that form during the import are collected when it ends.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
