"""Reading an import file: parse, validate and normalize records, in batches.

This module holds no key and touches no database: it turns the bytes of an
untrusted CSV or JSONL file into validated :class:`ImportRow` batches and the
:class:`RowProblem` of every refused row (never a value). The importer
(:mod:`taxaddr.store.importer`) consumes the batches, either

* read here, in the importer's own process (:func:`read_batches`), or
* read by a separate reader process (:func:`reader_process`, ``python -m
  taxaddr.store.reader``), which streams each batch to the importer as one JSON
  line on a pipe. The reader then runs on the other core while the importer seals
  and writes; the pipe bounds what is in flight (the reader blocks when the
  importer falls behind), and the reader stops by itself when the importer goes.

Both give the same batches for the same file (a test checks it).
"""

from __future__ import annotations

import csv
import fcntl
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import date
from operator import itemgetter
from pathlib import Path
from typing import IO, NamedTuple, cast

from taxaddr.errors import ImportRowError, UsageError
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
MAX_BATCH_SIZE = 10_000
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
    """One validated, normalized record (its values in COLUMNS order after the line)."""

    line: int
    tin: str
    name: str
    street: str
    city: str
    state: str
    zip: str
    tax_period: str
    as_of: date


# A record's values in COLUMNS order (None where a JSON key is missing), or its problem.
RawRecord = tuple[int, "Sequence[object] | ImportRowError"]


def detect_format(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise UsageError("unknown file type: use a .csv or .jsonl (.ndjson) file")
    return fmt


# -- reading ------------------------------------------------------------------------------


class _LineSource:
    """Decoded lines of a binary file; remembers byte offset and lines that were not UTF-8."""

    def __init__(self, fh: IO[bytes]) -> None:
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
        line, area + group + serial, name, street, city, state, zip_code, tax_period, day
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
        normalize_street(street),  # type: ignore[arg-type]
        normalize_city(city),  # type: ignore[arg-type]
        normalize_state(state),  # type: ignore[arg-type]
        normalize_zip(zip_code),  # type: ignore[arg-type]
        normalize_tax_period(tax_period),  # type: ignore[arg-type]
        normalize_as_of(as_of),  # type: ignore[arg-type]
    )


# -- batches --------------------------------------------------------------------------------


@dataclass
class ReadBatch:
    """``records`` consecutive records of the file (good and bad alike): the valid ones
    as ``rows``, the refused ones as ``problems``; ``bytes_read`` so far. With
    ``stopped_at`` (``--strict``), the record at that line was refused and reading
    stopped there: the batch's rows are not to be written."""

    rows: list[ImportRow] = field(default_factory=list)
    problems: list[RowProblem] = field(default_factory=list)
    records: int = 0
    bytes_read: int = 0
    stopped_at: int | None = None


def read_batches(fh: IO[bytes], fmt: str, batch_size: int, *, strict: bool) -> Iterator[ReadBatch]:
    """The file's records in batches of ``batch_size`` (the last may be smaller).

    Raises :class:`UsageError` for a file that cannot be read as ``fmt`` at all (a
    CSV header that is missing or lacks columns).
    """
    source = _LineSource(fh)
    records = _csv_records(source) if fmt == "csv" else _jsonl_records(source)
    batch = ReadBatch()
    for line, record in records:
        batch.records += 1
        try:
            if isinstance(record, ImportRowError):
                raise record
            batch.rows.append(validate_values(line, record))
        except ImportRowError as err:
            batch.problems.append(RowProblem(line, err.field, err.problem))
            if strict:
                batch.stopped_at = line
                batch.bytes_read = source.bytes_read
                yield batch
                return
        if batch.records >= batch_size:
            batch.bytes_read = source.bytes_read
            yield batch
            batch = ReadBatch()
    if batch.records:
        batch.bytes_read = source.bytes_read
        yield batch


# -- the reader process ---------------------------------------------------------------------

# One JSON object per line, per batch (JSON escapes every control character, so a
# value never breaks the framing). Rows travel as arrays in ImportRow's order with
# as_of as ISO text; an "error" line carries a UsageError's message.
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _line(message: dict[str, object]) -> bytes:
    return (_encode(message) + "\n").encode("utf-8")


def _batch_line(batch: ReadBatch) -> bytes:
    return _line(
        {
            "rows": [[*row[:-1], row.as_of.isoformat()] for row in batch.rows],
            "problems": [[p.line, p.field, p.problem] for p in batch.problems],
            "records": batch.records,
            "bytes": batch.bytes_read,
            "stopped_at": batch.stopped_at,
        }
    )


def _batch_of_line(line: bytes, days: dict[str, date]) -> ReadBatch:
    message = json.loads(line)
    if "error" in message:
        raise UsageError(str(message["error"]))
    rows = []
    for line_no, tin, name, street, city, state, zip_code, period, as_of in message["rows"]:
        day = days.get(as_of)
        if day is None:
            day = days[as_of] = date.fromisoformat(as_of)
        rows.append(ImportRow(line_no, tin, name, street, city, state, zip_code, period, day))
    return ReadBatch(
        rows,
        [RowProblem(*p) for p in message["problems"]],
        message["records"],
        message["bytes"],
        message["stopped_at"],
    )


# The reader runs this far ahead of the importer: a 1,000-row batch is ~150 KB as a
# JSON line, so a 1 MiB pipe (Linux's default limit for unprivileged processes) holds
# several, about one write transaction's worth (importer.PG_TRANSACTION_ROWS). With the
# default 64 KiB pipe the reader blocked inside each batch's write and the importer
# then waited for the next batches to be parsed (300,000 rows into PostgreSQL in
# 5,000-row transactions: 41-43k rows/s; with the wide pipe 52k).
READER_PIPE_BYTES = 1 << 20


def _widen_pipe(fd: int) -> None:
    """Best effort: a system with a lower pipe limit keeps its default size."""
    set_size = getattr(fcntl, "F_SETPIPE_SZ", None)  # Linux only
    if set_size is None:
        return
    with suppress(OSError):
        fcntl.fcntl(fd, set_size, READER_PIPE_BYTES)


@contextmanager
def reader_process(
    path: Path, fmt: str, batch_size: int, *, strict: bool
) -> Iterator[Iterator[ReadBatch]]:
    """:func:`read_batches` of ``path``, run by a separate reader process.

    Leaving the block stops the reader if it is still running (an import that failed
    or stopped early); nothing is left behind. The reader's stderr is discarded: it
    reports its failures as messages, never as tracebacks.
    """
    package_root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    argv = [sys.executable, "-m", "taxaddr.store.reader", "--format", fmt]
    argv += ["--batch-size", str(batch_size), *(["--strict"] if strict else []), str(path)]
    proc = subprocess.Popen(  # noqa: S603 - our own module, no shell
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env
    )
    stdout = cast(IO[bytes], proc.stdout)  # stdout=PIPE: always a pipe
    _widen_pipe(stdout.fileno())

    def batches() -> Iterator[ReadBatch]:
        days: dict[str, date] = {}
        ended = False
        for line in stdout:
            batch = _batch_of_line(line, days)
            ended = batch.stopped_at is not None
            yield batch
        if proc.wait() != 0 and not ended:
            raise UsageError(
                f"the import file reader stopped unexpectedly (exit status {proc.returncode})"
            )

    try:
        yield batches()
    finally:
        if proc.poll() is None:
            proc.kill()
        stdout.close()
        proc.wait()


def main(argv: Sequence[str] | None = None) -> int:
    """The reader process: ``python -m taxaddr.store.reader --format csv|jsonl
    --batch-size N [--strict] FILE``; batches to stdout, one JSON line each."""
    import argparse  # noqa: PLC0415 - only the reader process parses arguments

    parser = argparse.ArgumentParser(prog="python -m taxaddr.store.reader")
    parser.add_argument("--format", choices=sorted(set(FORMATS.values())), required=True)
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--strict", action="store_true")
    parser.add_argument("file", type=Path)
    args = parser.parse_args(argv)
    out = sys.stdout.buffer
    try:
        with args.file.open("rb") as fh:
            for batch in read_batches(fh, args.format, args.batch_size, strict=args.strict):
                out.write(_batch_line(batch))
                out.flush()
    except UsageError as exc:
        out.write(_line({"error": str(exc)}))
        return 2
    except OSError as exc:  # the file went away, or the importer did (a broken pipe)
        with suppress(OSError):
            message = f"cannot read the import file ({exc.strerror or 'unreadable'})"
            out.write(_line({"error": message}))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
