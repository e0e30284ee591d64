"""The witness's memory: per log origin, the size and root of the latest checkpoint it
cosigned. One JSON file, replaced atomically (temp file, fsync, rename, fsync of the
directory) before any cosignature leaves; an exclusive lock file keeps two witness
processes from sharing it."""

from __future__ import annotations

import base64
import binascii
import fcntl
import json
import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from taxaddr.errors import IntegrityError, UsageError


@dataclass(frozen=True)
class LogState:
    size: int
    root_hash: bytes


class WitnessState:
    """Latest cosigned (size, root) per origin; :meth:`transaction` makes check-and-update
    atomic (the race tlog-witness describes cannot roll a log back)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._lockfile = path.with_name(path.name + ".lock")
        self._fd = os.open(self._lockfile, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            raise UsageError(f"another witness process holds {path}") from None
        self._logs = self._load()

    def close(self) -> None:
        """Release the state file's lock (idempotent)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _load(self) -> dict[str, LogState]:
        try:
            raw = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise IntegrityError(f"witness state {self.path} is unreadable") from exc
        try:
            return {
                origin: LogState(int(v["size"]), base64.b64decode(v["root_hash"], validate=True))
                for origin, v in raw["logs"].items()
            }
        except (KeyError, TypeError, ValueError, binascii.Error) as exc:
            raise IntegrityError(f"witness state {self.path} is malformed") from exc

    def get(self, origin: str) -> LogState | None:
        with self._lock:
            return self._logs.get(origin)

    @contextmanager
    def transaction(self) -> Iterator[dict[str, LogState]]:
        """The state, held exclusively; changes are persisted when the block ends."""
        with self._lock:
            logs = dict(self._logs)
            yield logs
            if logs != self._logs:
                self._write(logs)
                self._logs = logs

    def _write(self, logs: dict[str, LogState]) -> None:
        document = {
            "logs": {
                origin: {"size": s.size, "root_hash": base64.b64encode(s.root_hash).decode()}
                for origin, s in sorted(logs.items())
            }
        }
        directory = self.path.parent
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{self.path.name}.")
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(document, fh, sort_keys=True)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
