"""``taxaddr serve`` with several worker processes (default: one per CPU core).

One Python process runs Python code on one core at a time, so the API runs as a
small supervisor and ``TAXADDR_WORKERS`` worker processes. The supervisor binds
one listening socket per worker on the same address (``SO_REUSEPORT``) and starts
each worker as a fresh interpreter (``python -m taxaddr.api.worker``) that inherits
its socket; the kernel spreads new TLS connections evenly over the sockets by
their addresses. (With one shared socket, the worker that wakes first accepts a
whole burst of connections, and keep-alive clients then stay on it.) What must
hold across workers is shared through the database or a per-run state directory,
never through process memory:

* quota, replay guard and audit log: the database (one write transaction each;
  on SQLite, writers of all workers queue on :class:`taxaddr.db.WriterQueue`);
* the per-requester rate limit: :class:`taxaddr.disclosure.ratelimit.SharedRateLimiter`,
  a file-backed table in the state directory;
* metrics: prometheus_client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR`` in
  the state directory), merged into one view on every ``/metrics`` scrape.

One service per port: the supervisor (and a single-process server) first binds
:class:`PortLock` for its port, so a second ``taxaddr serve`` on the same port
exits with one line instead of adding listeners beside the first (``SO_REUSEPORT``
would let it, splitting rate limits, metrics and configuration).

No orphans, no stalled worker: each worker asks the kernel to kill it when the
supervisor dies (:func:`die_with_parent`), and reports from its event loop every
0.5 s over a pipe (:class:`taxaddr.api.server.TaxaddrServer`). A worker silent for
``TAXADDR_WORKER_HEARTBEAT_TIMEOUT_SECONDS`` (stopped, or its loop blocked) is
killed and replaced on the same socket while the others keep serving; more than
:data:`MAX_REPLACEMENTS` replacements within :data:`REPLACEMENT_WINDOW_SECONDS`
stop the service (status 1).

Stopping (SIGINT or SIGTERM) is passed on to the workers as SIGTERM (uvicorn's
graceful shutdown); the state directory is removed when they have exited. A worker
that exits on its own stops the others and the supervisor exits non-zero: the
service fails closed and a process manager restarts it whole.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType

from taxaddr.api.logs import log_event
from taxaddr.errors import ConfigError

WORKER_FD_ENV = "TAXADDR_WORKER_FD"
HEARTBEAT_FD_ENV = "TAXADDR_WORKER_HEARTBEAT_FD"
SUPERVISOR_PID_ENV = "TAXADDR_WORKER_SUPERVISOR_PID"
STATE_DIR_ENV = "TAXADDR_WORKER_STATE_DIR"
RATE_LIMIT_FILE = "ratelimit.bin"
STOP_GRACE_SECONDS = 30.0
# A new worker's first heartbeat comes once its app is built and it serves (~1-3 s;
# much longer only on a starved machine).
START_TIMEOUT_SECONDS = 120.0
MAX_REPLACEMENTS = 3
REPLACEMENT_WINDOW_SECONDS = 300.0
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def state_dir() -> Path | None:
    """The per-run state directory when this process is one of several workers."""
    value = os.environ.get(STATE_DIR_ENV)
    return Path(value) if value else None


def listen_socket(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """Bind and listen before any worker starts; one per worker on the same address
    (``SO_REUSEPORT``), inheritable by the workers."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(address)
            sock.listen(backlog)
        except OSError:
            sock.close()
            raise
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


class PortLock:
    """Held by the one ``taxaddr serve`` of a TCP port on this host.

    A Unix socket bound in Linux's abstract namespace under a name made from the
    port: binding is atomic and exclusive, needs no file or directory (nothing
    another user could pre-create or a crash could leave stale), and the kernel
    releases it when its holder exits, however it exits. Abstract names live in the
    network namespace, exactly where the port does. The socket is not inherited by
    the workers, which die with the supervisor anyway.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self._sock: socket.socket | None = None

    def __enter__(self) -> PortLock:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(f"\0taxaddr-serve:{self.port}")
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(
                    f"port {self.port} is already served by another taxaddr serve"
                ) from None
            raise ConfigError(f"cannot lock port {self.port}: {exc.strerror or exc}") from None
        self._sock = sock
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def die_with_parent(parent_pid: int | None) -> bool:
    """Have the kernel SIGKILL this process when its parent dies (Linux ``prctl``
    ``PR_SET_PDEATHSIG``); False when the parent ``parent_pid`` is already gone.

    The kernel signal fires however the supervisor dies (``kill -9``, the OOM
    killer, a crash), and even when this process is stopped or its event loop is
    blocked, which a watch of a pipe from the event loop would not see. SIGKILL, not
    SIGTERM: an orderly stop goes through the supervisor, which passes SIGTERM on and
    waits for a graceful drain; this signal only comes when that cannot happen, and
    the worker must then be gone within seconds, not after its connections drained.
    What a worker committed is durable and an uncommitted transaction rolls back,
    so no answer is left without its leaf. The parent is checked after arming,
    since it may have died before (the signal would then never come). Elsewhere
    than Linux, only the heartbeat pipe's EPIPE stops an orphan.
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
    return parent_pid is None or os.getppid() == parent_pid


@dataclass(eq=False)
class _Slot:
    """One worker position: its listening socket, and the process serving it now."""

    sock: socket.socket
    proc: subprocess.Popen[bytes] | None = None
    heartbeat: int = -1  # read end of the worker's heartbeat pipe
    last_beat: float = 0.0
    serving: bool = False  # a first heartbeat came: the app is built and serves


class Supervisor:
    """Starts the workers, passes stop signals on, replaces a worker that stopped
    answering its heartbeat, and fails closed if one dies."""

    def __init__(
        self, host: str, port: int, workers: int, *, heartbeat_timeout: float = 10.0
    ) -> None:
        self.host, self.port, self.workers = host, port, workers
        self.heartbeat_timeout = heartbeat_timeout
        self.slots: list[_Slot] = []
        self.replacements: list[float] = []
        self.stopping = False
        self._env: dict[str, str] = {}

    @property
    def procs(self) -> list[subprocess.Popen[bytes]]:
        return [slot.proc for slot in self.slots if slot.proc is not None]

    def command(self) -> Sequence[str]:
        return [sys.executable, "-m", "taxaddr.api.worker"]

    def run(self) -> int:
        """Serve until stopped; returns the exit status (0 after a requested stop)."""
        # Bind every socket before starting a worker: a busy port fails the whole start.
        socks: list[socket.socket] = []
        try:
            for _ in range(self.workers):
                socks.append(listen_socket(self.host, self.port))
        except ConfigError:
            for sock in socks:
                sock.close()
            raise
        self.slots = [_Slot(sock) for sock in socks]
        state = Path(tempfile.mkdtemp(prefix="taxaddr-serve-"))
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            metrics_dir = state / "metrics"
            metrics_dir.mkdir()
            self._env = {
                **os.environ,
                STATE_DIR_ENV: str(state),
                "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
                SUPERVISOR_PID_ENV: str(os.getpid()),
            }
            for slot in self.slots:
                self._start(slot)
            log_event(
                logging.INFO,
                event="serve",
                workers=self.workers,
                address=f"{self.host}:{self.port}",
                pids=[p.pid for p in self.procs],
                state_dir=str(state),
            )
            return self._watch()
        finally:
            self._stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            for slot in self.slots:
                slot.sock.close()
                if slot.heartbeat >= 0:
                    os.close(slot.heartbeat)
                    slot.heartbeat = -1
            shutil.rmtree(state, ignore_errors=True)

    def _start(self, slot: _Slot) -> None:
        """A new worker process on the slot's socket, with a new heartbeat pipe."""
        beat_read, beat_write = os.pipe()  # not inheritable: pass_fds hands on the write end
        os.set_blocking(beat_read, False)
        fd = slot.sock.fileno()
        try:
            # our own interpreter and module, no shell
            slot.proc = subprocess.Popen(  # noqa: S603
                self.command(),
                env={**self._env, WORKER_FD_ENV: str(fd), HEARTBEAT_FD_ENV: str(beat_write)},
                pass_fds=(fd, beat_write),
            )
        except OSError:
            os.close(beat_read)
            raise
        finally:
            os.close(beat_write)
        if slot.heartbeat >= 0:
            os.close(slot.heartbeat)
        slot.heartbeat, slot.last_beat, slot.serving = beat_read, time.monotonic(), False

    def _on_signal(self, _signum: int, _frame: FrameType | None) -> None:
        self.stopping = True
        self._signal_all(signal.SIGTERM)

    def _signal_all(self, sig: int) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    proc.send_signal(sig)
                    if sig == signal.SIGTERM:
                        proc.send_signal(signal.SIGCONT)  # a stopped worker must see it too
                except ProcessLookupError:
                    continue

    def _watch(self) -> int:
        with selectors.DefaultSelector() as selector:
            while not self.stopping:
                self._read_heartbeats(selector)
                now = time.monotonic()
                for slot in self.slots:
                    proc = slot.proc
                    if proc is None:
                        continue
                    if proc.poll() is not None:
                        log_event(
                            logging.ERROR,
                            event="worker_exited",
                            pids=[proc.pid],
                            returncode=proc.returncode,
                        )
                        return 1
                    limit = self.heartbeat_timeout if slot.serving else START_TIMEOUT_SECONDS
                    if now - slot.last_beat > limit and not self._replace(slot, proc, now):
                        return 1
        return 0

    def _read_heartbeats(self, selector: selectors.BaseSelector) -> None:
        """Wait up to 0.1 s for heartbeats; note the time of each worker's latest."""
        for slot in self.slots:
            selector.register(slot.heartbeat, selectors.EVENT_READ, slot)
        try:
            ready = selector.select(timeout=0.1)
        finally:
            for slot in self.slots:
                selector.unregister(slot.heartbeat)
        now = time.monotonic()
        for key, _ in ready:
            slot = key.data
            try:
                beats = os.read(slot.heartbeat, 4096)
            except BlockingIOError:
                continue
            if beats:  # EOF (b""): the worker exited; the watch loop sees it
                slot.last_beat, slot.serving = now, True

    def _replace(self, slot: _Slot, proc: subprocess.Popen[bytes], now: float) -> bool:
        """Kill the slot's unresponsive worker ``proc`` and start another on its socket;
        False when too many were replaced lately (the service then stops)."""
        log_event(logging.ERROR, event="worker_unresponsive", pids=[proc.pid])
        proc.kill()  # SIGKILL ends a stopped process too; its flock is released
        proc.wait()
        self.replacements = [
            t for t in self.replacements if now - t < REPLACEMENT_WINDOW_SECONDS
        ] + [now]
        if len(self.replacements) > MAX_REPLACEMENTS:
            log_event(logging.ERROR, event="workers_unstable", pids=[proc.pid])
            return False
        self._start(slot)
        log_event(
            logging.ERROR, event="worker_replaced", pids=[p.pid for p in (proc, slot.proc) if p]
        )
        return True

    def _stop_all(self) -> None:
        self._signal_all(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
