"""The verifier's hot path: stored leaves to perfect-subtree hashes, on both cores.

``audit verify`` recomputes the tree from every stored leaf. The work per leaf (read
its bytes, check its ``index`` field, SHA-256 it, and one interior node hash per leaf
on average) is independent across aligned chunks of leaves, so it splits:

* :func:`scan_chunk` turns one chunk of leaf bytes into the perfect-subtree hashes of
  its segments (a chunk is cut at every checkpoint size inside it), or reports that a
  leaf's ``index`` field is not its position. It is pure; the verifier pushes its
  result into a compact range and compares roots at the cuts, in index order, so the
  first failure and its ``leaf N`` naming are the same however the work was split.
* :class:`ChunkScanner` hands out the chunks of ``[0, limit)`` in index order. For a
  large log on a file or server database it starts one helper process
  (``python -m taxaddr.audit.scan_worker``, a fresh interpreter: nothing of the calling
  process is forked; it imports only the DBAPI module, no SQLAlchemy, and runs the
  chunk statement compiled in :mod:`taxaddr.db.statements`) that scans chunks from the
  END downwards, on its own connection, and streams each chunk's result back; this
  process scans from the front and stops where it meets the helper's lowest finished
  chunk. Committed leaves below
  the head never change, so both connections read the same bytes. If the helper
  cannot start or dies, this process scans the rest itself.

Wire format of the helper (stdout, binary): per chunk, ``struct "<qqBI"`` (chunk
start, chunk end, 1 if every index field was right, number of subtrees) followed by
that many ``(level: u8, hash: 32 bytes)``.
"""

from __future__ import annotations

import hashlib
import json
import os
import select
import struct
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from taxaddr.audit import merkle
from taxaddr.audit.leaf import INDEX_MARKER

CHUNK = 1 << 14
"""Leaves per chunk (a power of two, so chunks are aligned perfect subtrees)."""
PARALLEL_MIN_CHUNKS = 8
"""Below this many chunks one process is faster than starting a helper."""

_HEADER = struct.Struct("<qqBI")
_NODE = struct.Struct("<B32s")


@dataclass(frozen=True)
class ChunkResult:
    start: int
    end: int
    indices_ok: bool
    subtrees: tuple[tuple[int, bytes], ...]  # (level, hash), left to right


def scan_chunk(datas: Sequence[bytes], start: int, cuts: Sequence[int]) -> ChunkResult:
    """Perfect-subtree hashes of leaves ``[start, start + len(datas))``, cut at ``cuts``.

    ``start`` must be aligned to the chunk size; ``cuts`` are the checkpoint sizes
    (any; those inside the chunk are used). If some leaf's ``index`` field is not its
    position, ``indices_ok`` is False and no subtree is computed.
    """
    end = start + len(datas)
    if not datas:
        return ChunkResult(start, end, True, ())
    marker = INDEX_MARKER
    if [i for i, d in enumerate(datas, start) if d.find(marker % i) < 0]:
        return ChunkResult(start, end, False, ())
    # RFC 6962 leaf hashes: SHA-256(0x00 || leaf), from a copy of the prefix's state
    # (cheaper than concatenating each leaf behind the prefix byte).
    prefix = hashlib.sha256(merkle.LEAF_PREFIX)
    hashes = []
    for d in datas:
        h = prefix.copy()
        h.update(d)
        hashes.append(h.digest())
    subtrees: list[tuple[int, bytes]] = []
    segment_start = start
    for cut in sorted({*(c for c in cuts if start < c < end), end}):
        for level, node_index in merkle.perfect_subtrees(segment_start, cut):
            lo = (node_index << level) - start
            subtrees.append((level, merkle.perfect_root(hashes[lo : lo + (1 << level)])))
        segment_start = cut
    return ChunkResult(start, end, True, tuple(subtrees))


def encode(result: ChunkResult) -> bytes:
    head = _HEADER.pack(result.start, result.end, int(result.indices_ok), len(result.subtrees))
    return head + b"".join(_NODE.pack(level, h) for level, h in result.subtrees)


def decode_all(buffer: bytearray) -> list[ChunkResult]:
    """Every complete record at the front of ``buffer`` (consumed from it)."""
    out: list[ChunkResult] = []
    while len(buffer) >= _HEADER.size:
        start, end, ok, count = _HEADER.unpack_from(buffer)
        size = _HEADER.size + count * _NODE.size
        if len(buffer) < size:
            break
        nodes = tuple(
            _NODE.unpack_from(buffer, _HEADER.size + k * _NODE.size) for k in range(count)
        )
        out.append(ChunkResult(start, end, bool(ok), nodes))
        del buffer[:size]
    return out


ReadChunk = Callable[[int, int], list[bytes]]
"""``read(start, count)``: the bytes of up to ``count`` stored leaves from ``start``."""


class ChunkScanner:
    """Chunk results of ``[0, limit)`` in index order (see the module docstring)."""

    def __init__(
        self,
        read: ReadChunk,
        limit: int,
        cuts: Sequence[int],
        *,
        worker: dict[str, Any] | None,
        chunk: int = CHUNK,
        parallel_min_chunks: int = PARALLEL_MIN_CHUNKS,
    ) -> None:
        self._read = read
        self._limit = limit
        self._cuts = tuple(sorted(set(cuts)))
        self._chunk = chunk
        self._starts = list(range(0, limit, chunk))
        self._worker: subprocess.Popen[bytes] | None = None
        if worker is not None and len(self._starts) >= parallel_min_chunks:
            self._worker = _start_worker(worker, limit, chunk, self._cuts)
        self._from_worker: dict[int, ChunkResult] = {}
        self._buffer = bytearray()

    def __iter__(self) -> Iterator[ChunkResult]:
        """Each chunk's result in index order; ends early after a short (truncated) read."""
        try:
            for start in self._starts:
                result = self._take_from_worker(start)
                if result is None:
                    result = self._scan(start)
                if result.end == result.start:
                    return
                yield result
                if result.end - result.start < self._chunk:
                    return
        finally:
            self.close()

    def _scan(self, start: int) -> ChunkResult:
        datas = self._read(start, min(self._chunk, self._limit - start))
        return scan_chunk(datas, start, self._cuts)

    def _take_from_worker(self, start: int) -> ChunkResult | None:
        if self._worker is not None:
            self._poll(block=False)
            if start not in self._from_worker and start >= self._in_progress():
                self._poll(block=True, until=start)
        result = self._from_worker.pop(start, None)
        if result is not None:
            # The helper reports chunks in descending order: having this one means it
            # has sent every chunk above it. The front and the helper met.
            self._stop_worker()
        return result

    def _in_progress(self) -> int:
        """The chunk the helper is scanning now: the one below its lowest finished."""
        if not self._from_worker:
            return self._starts[-1]
        return min(self._from_worker) - self._chunk

    def _poll(self, *, block: bool, until: int = -1) -> None:
        """Read what the helper sent; with ``block``, until chunk ``until`` or its end."""
        worker = self._worker
        if worker is None or worker.stdout is None:
            return
        fd = worker.stdout.fileno()
        while True:
            ready, _, _ = select.select([fd], [], [], None if block else 0)
            if not ready:
                return
            data = os.read(fd, 1 << 16)
            if not data:  # the helper ended (finished, or failed): the front does the rest
                self._stop_worker()
                return
            self._buffer += data
            for result in decode_all(self._buffer):
                self._from_worker[result.start] = result
            if block and until in self._from_worker:
                return

    def _stop_worker(self) -> None:
        worker, self._worker = self._worker, None
        if worker is None:
            return
        if worker.poll() is None:
            worker.kill()
        worker.wait()
        if worker.stdout is not None:
            worker.stdout.close()

    def close(self) -> None:
        self._stop_worker()

    def __enter__(self) -> ChunkScanner:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _start_worker(
    reader: dict[str, Any], limit: int, chunk: int, cuts: Sequence[int]
) -> subprocess.Popen[bytes] | None:
    request = json.dumps({**reader, "limit": limit, "chunk": chunk, "cuts": list(cuts)})
    try:
        worker = subprocess.Popen(
            [sys.executable, "-m", "taxaddr.audit.scan_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
    except OSError:
        return None
    stdin = worker.stdin
    if stdin is None:  # pragma: no cover - stdin=PIPE always gives one
        worker.kill()
        return None
    # The connect arguments (a password, maybe) go over the pipe, never on a command line.
    try:
        stdin.write(request.encode("utf-8"))
        stdin.close()
    except OSError:  # it died at once: the front does the work
        worker.kill()
        worker.wait()
        return None
    return worker
