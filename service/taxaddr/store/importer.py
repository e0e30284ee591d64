"""Import address records from CSV or JSONL: validate, normalize, seal, write in batches.

Streaming and constant memory: the file is read line by line and at most a few
batches of rows are held at a time. A batch is ``batch_size`` consecutive records
of the file (good and bad alike). Every batch is validated as a whole before
anything of it is written, and written in one transaction, so an interrupted
import leaves only whole batches behind and a re-run completes it.

Idempotent per (TIN, tax period): a row for an existing record replaces it only
when its ``as_of`` is newer; the same file imported twice changes nothing.

Three stages overlap:

1. reading and validation (:mod:`taxaddr.store.reader`): for a file of at least
   :data:`READER_PROCESS_MIN_BYTES`, a separate reader process, which holds no key
   and runs on the other core; for a smaller one, this thread;
2. this thread hands each validated batch to
3. one writer thread, which blind-indexes, seals and writes it (assigning ids,
   sealing and the write transaction belong together: a record's id is bound into
   its ciphertexts).

At most :data:`BATCHES_IN_FLIGHT` validated batches wait for the writer (and the
reader process blocks on its pipe behind them), so memory stays bounded whatever
the file's size; batches commit in file order, and the first failed batch stops
the import (the batches before it stay committed, none after it is written).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

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
from taxaddr.store.records import BatchSealer, BlindIndexer, SealInput, address_bytes

__all__ = [  # what callers took from here before the reader moved out
    "COLUMNS",
    "ImportRow",
    "RowProblem",
    "detect_format",
    "validate_record",
    "validate_values",
]

DEFAULT_BATCH_SIZE = 1000
BATCHES_IN_FLIGHT = 2
SEAL_CHUNK = 250  # records sealed at a time in the writer thread (see seal_chunks)
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


def _first(pair: tuple[bytes, ImportRow]) -> bytes:
    return pair[0]


class BatchWriter:
    """Seals and writes one validated batch in one transaction.

    Sealing stays in the writer thread: a pool of seal processes (spawned, fed chunks
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

    def close(self) -> None:
        """The import ended: return the connection held between batches."""
        writes, self._writes = self._writes, None
        if writes is not None:
            writes.close()

    def encode_many(self, items: list[SealInput], version: int) -> list[tuple[bytes, bytes, bytes]]:
        """(wrapped_key, name_ct, address_ct) per item; the benchmark's baseline overrides.

        Each record gets its own fresh data key and nonces (:class:`BatchSealer`).
        """
        return BatchSealer(self.keystore, version).seal(items)

    def seal_chunks(self, items: list[SealInput], version: int) -> Iterator[list[Any]]:
        """:meth:`encode_many` of consecutive chunks of ``items``, in order: the
        database stores a chunk's rows (COPY streams them) while the next is sealed."""
        for at in range(0, len(items), SEAL_CHUNK):
            yield self.encode_many(items[at : at + SEAL_CHUNK], version)

    def index(self, normalized_tin: str) -> bytes:
        return self.blind_index(normalized_tin)

    def write(self, rows: list[ImportRow], report: ImportReport) -> None:
        # Several rows for one (tin, tax_period) in a batch: the newest as_of wins,
        # ties keep the first (so batch and cross-batch behaviour agree).
        newest: dict[tuple[str, str], ImportRow] = {}
        for row in rows:
            key = (row.tin, row.tax_period)
            seen = newest.get(key)
            if seen is None or row.as_of > seen.as_of:
                newest[key] = row
        # Sorted by blind index: the B-tree is then walked in order, not at random.
        index = self.index
        indexed = sorted([(index(r.tin), r) for r in newest.values()], key=_first)
        writes = self._writes
        if writes is None:
            writes = self._writes = BulkWrites(self.engine, caller_locks=True)
        try:
            with writes.transaction() as conn:
                inserted, updated = self._write(conn, indexed)
        except SQLAlchemyError as exc:
            # Only the type: driver messages can echo bound parameters.
            raise DatabaseUnavailable(
                f"database error during import ({type(exc).__name__})"
            ) from None
        report.inserted += inserted
        report.updated += updated
        report.unchanged += len(rows) - inserted - updated
        report.imported += len(rows)
        report.batches += 1

    def _write(self, conn: Connection, indexed: list[tuple[bytes, ImportRow]]) -> tuple[int, int]:
        stmts = self._statements
        if stmts is None:
            stmts = self._statements = Upserts(conn)
        keys = list({bi for bi, _ in indexed})
        stored, next_id = stmts.prepare(conn, keys)
        existing = {
            (bytes(bi), period): (rid, _as_date(as_of)) for rid, bi, period, as_of in stored
        }
        version = self.keystore.current_kek_version()
        now = stmts.time(datetime.now(UTC))
        # One pass decides each row's id and what to seal; a second builds the rows.
        items: list[SealInput] = []
        bound: list[tuple[Any, bool]] = []
        date_of = stmts.date
        for bi, row in indexed:
            found = existing.get((bi, row.tax_period)) if existing else None
            if found is not None and row.as_of <= found[1]:
                continue  # already current: idempotent re-import
            if found is None:
                rid = next_id
                next_id += 1
            else:
                rid = int(found[0])
            as_of, iso = date_of(row.as_of)
            items.append(
                (
                    rid,
                    bi,
                    row.tax_period,
                    iso,
                    row.name.encode(),
                    address_bytes(row.street, row.city, row.state, row.zip),
                )
            )
            bound.append((as_of, found is None))
        new_rows = sum(1 for _, new in bound if new)
        updates: list[tuple[Any, ...]] = []

        def inserts() -> Iterator[tuple[Any, ...]]:
            # Sealed chunk by chunk: the new rows stream into the insert (COPY) as they
            # are sealed; the updates are collected for after it.
            at = 0
            for sealed in self.seal_chunks(items, version):
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
) -> ImportReport:
    """Import ``path`` (CSV or JSONL by extension) into ``address_records``.

    ``on_problem`` is called for each refused row as it is found; ``on_progress``
    with (bytes read, records read) after each batch. ``writer`` lets the benchmark
    substitute an unencrypted writer for its baseline. ``reader`` is ``"process"``
    (a separate reader process), ``"thread"`` (this thread) or ``"auto"`` (a process
    for files of at least :data:`READER_PROCESS_MIN_BYTES`).
    """
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise UsageError(f"--batch-size must be between 1 and {MAX_BATCH_SIZE}")
    if reader not in ("auto", "process", "thread"):
        raise ValueError(f"unknown reader {reader!r}")
    fmt = detect_format(path)
    batch_writer = writer or BatchWriter(engine, keystore)
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
            else _in_process(read_batches(fh, fmt, batch_size, strict=strict))
        )
        with batches as source, _Pipeline(batch_writer, report) as pipeline:
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
                    pipeline.submit(batch.rows)
                if on_progress is not None:
                    on_progress(batch.bytes_read, report.rows)
            pipeline.finish()
    return report


@contextmanager
def _in_process(batches: Iterator[ReadBatch]) -> Iterator[Iterator[ReadBatch]]:
    yield batches


_DONE: list[ImportRow] = []  # the end-of-input marker (an identity, never a real batch)


class _Pipeline:
    """One writer thread that seals and writes the batches it is handed, in order.

    :meth:`submit` blocks while :data:`BATCHES_IN_FLIGHT` batches wait (bounded
    memory) and re-raises the writer's error as soon as it is known; :meth:`finish`
    waits for every submitted batch. Leaving the ``with`` block early (a refused
    file, an exception in the reader) stops the writer after its current batch.
    """

    def __init__(self, writer: BatchWriter, report: ImportReport) -> None:
        self._writer = writer
        self._report = report
        self._queue: queue.Queue[list[ImportRow]] = queue.Queue(maxsize=BATCHES_IN_FLIGHT)
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="taxaddr-import-writer")

    def __enter__(self) -> _Pipeline:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        with suppress(queue.Full):
            self._queue.put_nowait(_DONE)
        self._thread.join()
        self._writer.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            batch = self._queue.get()
            if batch is _DONE:
                return
            try:
                self._writer.write(batch, self._report)
            except BaseException as exc:  # noqa: BLE001 - handed to the reader, which re-raises
                self._error = exc
                self._stop.set()
                return

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def submit(self, batch: list[ImportRow]) -> None:
        while True:
            self._raise_if_failed()
            if not self._thread.is_alive():
                raise RuntimeError("the import writer stopped")
            with suppress(queue.Full):
                self._queue.put(batch, timeout=0.2)
                break

    def finish(self) -> None:
        """Wait until every submitted batch is written; re-raise a writer's error."""
        while self._thread.is_alive():
            with suppress(queue.Full):
                self._queue.put(_DONE, timeout=0.2)
                break
            self._raise_if_failed()
        self._thread.join()
        self._raise_if_failed()
