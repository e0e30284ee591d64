"""Per-requester token buckets: ``rate`` requests per minute, bursts up to ``rate``.

Three implementations behind :class:`Limiter`: :class:`RateLimiter` keeps its buckets in
the process, :class:`SharedRateLimiter` keeps them in a memory-mapped file so that every
worker process of one server draws from the same buckets, and :class:`DatabaseRateLimiter`
keeps them in PostgreSQL so that every replica of a deployment does. All use the same
arithmetic (:func:`_spend`, or the same formula in SQL), so a requester sees the same
limit whichever one is configured.
"""

from __future__ import annotations

import fcntl
import hashlib
import math
import mmap
import os
import stat
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Protocol

from sqlalchemy import Engine

from taxaddr.db.repositories.ratelimit import take_token
from taxaddr.errors import RateLimited

_REFUSAL = "too many disclosure requests; retry later"


class Limiter(Protocol):
    """What the API needs from a rate limiter; setting ``per_minute`` to 0 disables it."""

    per_minute: int

    def take(self, key: str) -> None:
        """Consume one token for ``key`` or raise :class:`RateLimited`."""


def _refill(
    tokens: float, last: float, now: float, capacity: float, refill_per_second: float
) -> float:
    """Tokens in a bucket at ``now`` that held ``tokens`` at ``last``, capped at ``capacity``.

    A clock that reads earlier than ``last`` (a table written before a reboot reset
    CLOCK_MONOTONIC) refills nothing rather than draining the bucket.
    """
    return min(capacity, tokens + max(0.0, now - last) * refill_per_second)


def _spend(
    tokens: float, last: float, now: float, capacity: float, refill_per_second: float
) -> tuple[float, float]:
    """Refill a bucket to ``now`` and spend one token from it.

    Returns the tokens left and the seconds until a token is available: ``0.0`` when
    the token was granted, positive when the request must be refused.
    """
    tokens = _refill(tokens, last, now, capacity, refill_per_second)
    if tokens >= 1.0:
        return tokens - 1.0, 0.0
    return tokens, (1.0 - tokens) / refill_per_second


class RateLimiter:
    """Thread-safe token buckets keyed by requester id. ``per_minute == 0`` disables."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.capacity = float(per_minute)
        self.refill_per_second = per_minute / 60.0
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> None:
        """Consume one token for ``key`` or raise :class:`RateLimited` with Retry-After."""
        if self.per_minute <= 0:
            return
        with self._lock:
            # read under the lock so the stored update times never go backwards
            now = self._clock()
            tokens, last = self._buckets.get(key, (self.capacity, now))
            tokens, wait = _spend(tokens, last, now, self.capacity, self.refill_per_second)
            self._buckets[key] = (tokens, now)
        if wait > 0.0:
            raise RateLimited(math.ceil(wait), _REFUSAL)


# File layout (little-endian): a 16-byte header, then ``slots`` 32-byte records.
_HEADER = struct.Struct("<8sQ")  # magic (format version in the last byte), slot count
_RECORD = struct.Struct("<16sdd")  # blake2b-128 of the key, tokens, last update time
_MAGIC = b"TXRLTB\x00\x01"
_DIGEST_SIZE = 16
_EMPTY = bytes(_DIGEST_SIZE)


def _digest(key: str) -> bytes:
    """The key's record name in the file: a digest, never the key itself."""
    digest = hashlib.blake2b(
        key.encode("utf-8", "surrogatepass"), digest_size=_DIGEST_SIZE, person=b"taxaddr-ratelim"
    ).digest()
    # all zeros means "empty slot"; a key that hashes there (p = 2**-128) moves next door
    return digest if digest != _EMPTY else _EMPTY[:-1] + b"\x01"


class SharedRateLimiter:
    """Token buckets shared by every process that opens the same ``path``.

    Same buckets and answers as :class:`RateLimiter` (capacity ``per_minute`` tokens,
    refilled at ``per_minute / 60`` per second; ``per_minute == 0`` disables, also when
    set later), but the buckets live in a memory-mapped file of ``slots`` fixed records,
    found by open addressing (linear probing from the key digest modulo ``slots``).
    The file holds blake2b digests of the keys, never the keys, and is created (or
    tightened to) 0600; all processes must use the same ``slots``. Each take holds a
    ``threading.Lock`` (threads of this process) and ``flock(LOCK_EX)`` on the file
    (other processes) for one probe and one record write.

    A bucket that has refilled to capacity is the same as no bucket, so when no slot
    holds the key and none is empty, a full bucket's slot is reused. When every slot
    holds a bucket that is still refilling, the request is refused with
    :class:`RateLimited` (retry after 1 s): the limiter fails closed rather than let a
    requester through unmetered. Size ``slots`` well above the number of requesters
    active within one minute; a take on a table without empty slots scans all of it.

    A file that is not empty and is not a table of this format and size is refused
    (``ValueError``) without being written to, as is a symlink (``OSError``), a file
    that is not regular, or one owned by another user. CLOCK_MONOTONIC
    (``time.monotonic`` on Linux) is system-wide, so update times written by one
    process are comparable in another.
    """

    def __init__(
        self,
        per_minute: int,
        path: Path,
        *,
        slots: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if slots < 1:
            raise ValueError("a shared rate-limit table needs at least one slot")
        self.per_minute = per_minute
        self.capacity = float(per_minute)
        self.refill_per_second = per_minute / 60.0
        self.path = path
        self._slots = slots
        self._size = _HEADER.size + slots * _RECORD.size
        self._clock = clock
        self._lock = threading.Lock()
        self._closed = False
        self._fd, self._map = self._open()
        self._pid = os.getpid()

    def _open(self) -> tuple[int, mmap.mmap]:
        """Open (or create) the table file and map it; close the file if that fails."""
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
        fd = os.open(self.path, flags, 0o600)
        try:
            return fd, self._map_table(fd)
        except BaseException:
            os.close(fd)
            raise

    def _map_table(self, fd: int) -> mmap.mmap:
        """Check the file and its header, extend it to the table's size, and map it."""
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
            raise ValueError(
                f"rate-limit table {self.path} must be a regular file owned by this user"
            )
        if info.st_mode & 0o077:
            os.fchmod(fd, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            fresh = self._check_header(os.pread(fd, _HEADER.size, 0))
            if os.fstat(fd).st_size < self._size:
                os.ftruncate(fd, self._size)  # new bytes read as zeros: empty slots
            table = mmap.mmap(fd, self._size)
            if fresh:
                _HEADER.pack_into(table, 0, _MAGIC, self._slots)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
        return table

    def _check_header(self, header: bytes) -> bool:
        """Whether the table is new (all-zero header); refuse one of another format or size."""
        header = header.ljust(_HEADER.size, b"\x00")
        if header == bytes(_HEADER.size):
            return True
        magic, slots = _HEADER.unpack(header)
        if magic != _MAGIC:
            raise ValueError(f"{self.path} is not a rate-limit table")
        if slots != self._slots:
            raise ValueError(
                f"rate-limit table {self.path} has {slots} slots, this process expects "
                f"{self._slots}; every worker must use the same size"
            )
        return False

    def take(self, key: str) -> None:
        """Consume one token for ``key`` or raise :class:`RateLimited` with Retry-After."""
        if self.per_minute <= 0:
            return
        digest = _digest(key)
        with self._lock:
            if self._closed:
                raise ValueError("rate limiter is closed")
            if self._pid != os.getpid():
                self._reopen_after_fork()
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                # read under the lock so the stored update times never go backwards
                wait = self._take_locked(digest, self._clock())
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        if wait > 0.0:
            raise RateLimited(math.ceil(wait), _REFUSAL)

    def _take_locked(self, digest: bytes, now: float) -> float:
        """Spend one token from ``digest``'s record; return the wait (0.0 when granted)."""
        offset = self._find(digest, now)
        if offset is None:
            raise RateLimited(1, "rate-limit table full; retry later")
        stored, tokens, last = _RECORD.unpack_from(self._map, offset)
        if stored != digest:  # an empty slot or a refilled one: a full bucket
            tokens, last = self.capacity, now
        tokens, wait = _spend(tokens, last, now, self.capacity, self.refill_per_second)
        _RECORD.pack_into(self._map, offset, digest, tokens, now)
        return wait

    def _find(self, digest: bytes, now: float) -> int | None:
        """Offset of the key's record, else of an empty or refilled slot, else ``None``."""
        start = int.from_bytes(digest[:8], "little") % self._slots
        reusable: int | None = None
        for step in range(self._slots):
            offset = _HEADER.size + ((start + step) % self._slots) * _RECORD.size
            stored = self._map[offset : offset + _DIGEST_SIZE]
            if stored in (digest, _EMPTY):
                # slots are never emptied, so the key cannot sit beyond an empty slot
                return offset
            if reusable is None:
                _, tokens, last = _RECORD.unpack_from(self._map, offset)
                level = _refill(tokens, last, now, self.capacity, self.refill_per_second)
                if level >= self.capacity:
                    reusable = offset
        return reusable

    def _reopen_after_fork(self) -> None:
        """Give a forked child its own open file: ``flock`` does not exclude a shared one."""
        fd, table = self._open()
        self._map.close()
        os.close(self._fd)
        self._fd, self._map = fd, table
        self._pid = os.getpid()

    def close(self) -> None:
        """Release the memory map and the file descriptor; later takes raise."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._map.close()
            os.close(self._fd)

    def __enter__(self) -> SharedRateLimiter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class DatabaseRateLimiter:
    """Token buckets in PostgreSQL (``rate_limit_buckets``), shared by every replica.

    Same capacity and refill as :class:`RateLimiter`. Each take is one atomic upsert
    (refill to the database's clock, spend, answer) on the key's row, in its own
    transaction: concurrent takes from any replica serialize on the row, so a
    deployment of N replicas allows the configured rate, not N times it. The row holds
    a blake2b digest of the key, never the key. A database error propagates (the
    request fails closed with 503 ``database_unavailable``).
    """

    def __init__(self, per_minute: int, engine: Engine) -> None:
        self.per_minute = per_minute
        self.capacity = float(per_minute)
        self.refill_per_second = per_minute / 60.0
        self._engine = engine

    def take(self, key: str) -> None:
        """Consume one token for ``key`` or raise :class:`RateLimited` with Retry-After."""
        if self.per_minute <= 0:
            return
        granted, tokens = take_token(
            self._engine, _digest(key), self.capacity, self.refill_per_second
        )
        if not granted:
            raise RateLimited(math.ceil((1.0 - tokens) / self.refill_per_second), _REFUSAL)
