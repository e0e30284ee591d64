"""Import address records from CSV or JSONL: validate, normalize, seal, write in batches.

Streaming and constant memory: the file is read line by line and at most one
batch of rows is held at a time. A batch is ``batch_size`` consecutive records
of the file (good and bad alike). Every batch is validated as a whole before
anything of it is written, and written in one transaction, so an interrupted
import leaves only whole batches behind and a re-run completes it.

Idempotent per (TIN, tax period): a row for an existing record replaces it only
when its ``as_of`` is newer; the same file imported twice changes nothing.

Two stages overlap: this thread reads, validates and blind-indexes batch N+1 while
one writer thread seals and writes batch N (assigning ids, sealing and the write
transaction belong together: a record's id is bound into its ciphertexts). At most
:data:`BATCHES_IN_FLIGHT` validated batches wait for the writer, so memory stays
bounded whatever the file's size; batches commit in file order, and the first
failed batch stops the import (the batches before it stay committed, none after it
is written). The database's own work (PostgreSQL's server process, SQLite's
library calls, which release the GIL) runs beside the parsing.
"""

from __future__ import annotations

import csv
import json
import queue
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from operator import itemgetter
from pathlib import Path
from typing import Any, NamedTuple

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from taxaddr.crypto.keystore import KeyStore
from taxaddr.db import BulkWrites
from taxaddr.db.repositories.addresses import Upserts
from taxaddr.errors import DatabaseUnavailable, ImportRowError, UsageError
from taxaddr.store.normalize import (
    MAX_CITY,
    MAX_NAME,
    MAX_STREET,
    USPS_STATES,
    normalize_as_of,
    normalize_city,
    normalize_name,
    normalize_state,
    normalize_street,
    normalize_tax_period,
    normalize_tin,
    normalize_zip,
)
from taxaddr.store.records import (
    AddressFields,
    BatchSealer,
    BlindIndexer,
    SealInput,
    address_bytes,
)

COLUMNS: tuple[str, ...] = (
    "tin",
    "name",
    "street",
    "city",
    "state",
    "zip",
    "tax_period",
    "as_of",
)
DEFAULT_BATCH_SIZE = 1000
MAX_BATCH_SIZE = 10_000
BATCHES_IN_FLIGHT = 2
SEAL_CHUNK = 250  # records sealed at a time in the writer thread (see seal_chunks)
_TIN_FAST = re.compile(r"^(\d{3})-?(\d{2})-?(\d{4})$", re.ASCII)
_ITIN_GROUPS = frozenset(
    f"{g:02d}" for g in (*range(50, 66), *range(70, 89), *range(90, 93), *range(94, 100))
)
_ASCII_NAME_FAST = re.compile(r"^[A-Z '.-]*[A-Z][A-Z '.-]*$", re.ASCII)
FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


@dataclass(frozen=True, slots=True)
class RowProblem:
    """A refused row: its physical line, the column and the rule (never the value)."""

    line: int
    field: str
    problem: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.field}: {self.problem}"


class ImportRow(NamedTuple):
    line: int
    tin: str
    name: str
    address: AddressFields
    tax_period: str
    as_of: date


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


# A record's values in COLUMNS order (None where a JSON key is missing), or its problem.
RawRecord = tuple[int, "Sequence[object] | ImportRowError"]
ProblemSink = Callable[[RowProblem], None]
ProgressSink = Callable[[int, int], None]


def detect_format(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise UsageError("unknown file type: use a .csv or .jsonl (.ndjson) file")
    return fmt


# -- reading ------------------------------------------------------------------------------


class _LineSource:
    """Decoded lines of a binary file; remembers byte offset and lines that were not UTF-8."""

    def __init__(self, fh: Any) -> None:
        self._fh = fh
        self.bytes_read = 0
        self.line_no = 0
        self.bad_lines: set[int] = set()

    def __iter__(self) -> Iterator[str]:
        for raw in self._fh:
            self.line_no += 1
            self.bytes_read += len(raw)
            data = raw[3:] if self.line_no == 1 and raw.startswith(b"\xef\xbb\xbf") else raw
            try:
                yield data.decode("utf-8")
            except UnicodeDecodeError:
                self.bad_lines.add(self.line_no)
                yield data.decode("utf-8", errors="replace")


_NOT_UTF8 = ImportRowError("row", "is not valid UTF-8")


def _csv_records(source: _LineSource) -> Iterator[RawRecord]:
    reader = csv.reader(iter(source), strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise UsageError("the CSV file is empty (it needs a header line)") from None
    except csv.Error:
        raise UsageError("line 1: the CSV header cannot be parsed") from None
    names = [h.strip().lower() for h in header]
    if len(set(names)) != len(names):
        raise UsageError("line 1: the CSV header repeats a column")
    missing = [c for c in COLUMNS if c not in names]
    if missing:
        raise UsageError(f"line 1: the CSV header misses column(s): {', '.join(missing)}")
    index = [names.index(c) for c in COLUMNS]
    width = len(names)
    in_order = index == list(range(width))
    pick = itemgetter(*index)
    last = reader.line_num
    while True:
        start = last + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error:
            last = reader.line_num
            yield start, ImportRowError("row", "is not well-formed CSV")
            continue
        last = reader.line_num
        if not row:  # a blank line is not a record
            continue
        if source.bad_lines:
            if any(n in source.bad_lines for n in range(start, last + 1)):
                source.bad_lines.clear()
                yield start, _NOT_UTF8
                continue
            source.bad_lines.clear()
        if len(row) != width:
            yield start, ImportRowError("row", f"has {len(row)} fields, the header has {width}")
            continue
        yield start, row if in_order else pick(row)


def _jsonl_records(source: _LineSource) -> Iterator[RawRecord]:
    for line in source:
        n = source.line_no
        if not line.strip():
            continue
        if n in source.bad_lines:
            source.bad_lines.discard(n)
            yield n, _NOT_UTF8
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            yield n, ImportRowError("row", "is not valid JSON")
            continue
        if not isinstance(obj, dict):
            yield n, ImportRowError("row", "is not a JSON object")
            continue
        yield n, [obj.get(c) for c in COLUMNS]


def validate_record(line: int, record: Mapping[str, object]) -> ImportRow:
    """Validate and normalize one record; raises :class:`ImportRowError` naming the column."""
    return validate_values(line, [record.get(c) for c in COLUMNS])


def validate_values(line: int, values: Sequence[object]) -> ImportRow:
    """Validate and normalize one record given in COLUMNS order.

    A fast path accepts the common, already tidy row with a few cheap checks that
    are each at least as strict as the full normalizer; anything else goes
    through the normalizers, which give the precise reason (tests check that both
    paths agree).
    """
    fast = _fast_path(line, values)
    return fast if fast is not None else _validate_slow(line, values)


_AS_OF_CACHE: dict[str, date] = {}


def _fast_path(line: int, values: Sequence[object]) -> ImportRow | None:
    tin, name, street, city, state, zip_code, tax_period, as_of = values
    if not (
        type(tin) is str
        and type(name) is str
        and type(street) is str
        and type(city) is str
        and type(state) is str
        and type(zip_code) is str
        and type(tax_period) is str
        and type(as_of) is str
    ):
        return None
    m = _TIN_FAST.match(tin)
    if m is None:
        return None
    area, group, serial = m.groups()
    if area in ("000", "666") or group == "00" or serial == "0000":
        return None  # refused: the normalizer gives the reason
    if area[0] == "9" and group not in _ITIN_GROUPS:
        return None
    name = " ".join(name.split()).upper()
    street = " ".join(street.split())
    city = " ".join(city.split())
    if not (
        name.isascii()
        and street.isascii()
        and city.isascii()
        and len(name) <= MAX_NAME
        and _ASCII_NAME_FAST.match(name)
        and 0 < len(street) <= MAX_STREET
        and 0 < len(city) <= MAX_CITY
        and street.isprintable()
        and city.isprintable()
        and state in USPS_STATES
        and len(zip_code) == 5
        and zip_code.isascii()
        and zip_code.isdigit()
        and len(tax_period) == 4
        and tax_period.isascii()
        and tax_period.isdigit()
        and tax_period >= "1900"
    ):
        return None
    day = _AS_OF_CACHE.get(as_of)
    if day is None:
        try:
            day = normalize_as_of(as_of)
        except ImportRowError:
            return None
        if len(_AS_OF_CACHE) > 100_000:
            _AS_OF_CACHE.clear()
        _AS_OF_CACHE[as_of] = day
    return ImportRow(
        line,
        area + group + serial,
        name,
        AddressFields(street, city, state, zip_code),
        tax_period,
        day,
    )


def _validate_slow(line: int, values: Sequence[object]) -> ImportRow:
    for column, value in zip(COLUMNS, values, strict=True):
        if value is None:
            raise ImportRowError(column, "is missing")
    tin, name, street, city, state, zip_code, tax_period, as_of = values
    return ImportRow(
        line,
        normalize_tin(tin),  # type: ignore[arg-type]  # non-strings are refused inside
        normalize_name(name),  # type: ignore[arg-type]
        AddressFields(
            normalize_street(street),  # type: ignore[arg-type]
            normalize_city(city),  # type: ignore[arg-type]
            normalize_state(state),  # type: ignore[arg-type]
            normalize_zip(zip_code),  # type: ignore[arg-type]
        ),
        normalize_tax_period(tax_period),  # type: ignore[arg-type]
        normalize_as_of(as_of),  # type: ignore[arg-type]
    )


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
            writes = self._writes = BulkWrites(self.engine)
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
            address = row.address
            items.append(
                (
                    rid,
                    bi,
                    row.tax_period,
                    iso,
                    row.name.encode(),
                    address_bytes(address.street, address.city, address.state, address.zip),
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
) -> ImportReport:
    """Import ``path`` (CSV or JSONL by extension) into ``address_records``.

    ``on_problem`` is called for each refused row as it is found; ``on_progress``
    with (bytes read, records read) after each batch. ``writer`` lets the benchmark
    substitute an unencrypted writer for its baseline.
    """
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise UsageError(f"--batch-size must be between 1 and {MAX_BATCH_SIZE}")
    fmt = detect_format(path)
    batch_writer = writer or BatchWriter(engine, keystore)
    report = ImportReport()
    try:
        fh = path.open("rb")
    except OSError as exc:
        raise UsageError(f"cannot open the import file ({exc.strerror or 'unreadable'})") from None
    with fh, _Pipeline(batch_writer, report) as pipeline:
        source = _LineSource(fh)
        records = _csv_records(source) if fmt == "csv" else _jsonl_records(source)
        batch: list[ImportRow] = []
        in_batch = 0
        for line, record in records:
            report.rows += 1
            in_batch += 1
            try:
                if isinstance(record, ImportRowError):
                    raise record
                batch.append(validate_values(line, record))
            except ImportRowError as err:
                problem = RowProblem(line, err.field, err.problem)
                report.refused += 1
                if len(report.problems) < 1000:
                    report.problems.append(problem)
                if on_problem is not None:
                    on_problem(problem)
                if strict:
                    report.stopped_at = line
                    pipeline.finish()  # the batches before this one; not this one
                    return report
            if in_batch >= batch_size:
                if batch:
                    pipeline.submit(batch)
                batch, in_batch = [], 0
                if on_progress is not None:
                    on_progress(source.bytes_read, report.rows)
        if batch:
            pipeline.submit(batch)
        pipeline.finish()
        if on_progress is not None:
            on_progress(source.bytes_read, report.rows)
    return report


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
