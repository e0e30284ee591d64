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
* the per-requester rate limit: :class:`taxaddr.api.ratelimit.SharedRateLimiter`,
  a file-backed table in the state directory;
* metrics: prometheus_client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR`` in
  the state directory), merged into one view on every ``/metrics`` scrape.

Stopping (SIGINT or SIGTERM) is passed on to the workers as SIGTERM (uvicorn's
graceful shutdown); the state directory is removed when they have exited. A worker
that exits on its own stops the others and the supervisor exits non-zero: the
service fails closed and a process manager restarts it whole.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from taxaddr.api.logs import log_event
from taxaddr.errors import ConfigError

WORKER_FD_ENV = "TAXADDR_WORKER_FD"
STATE_DIR_ENV = "TAXADDR_WORKER_STATE_DIR"
RATE_LIMIT_FILE = "ratelimit.bin"
STOP_GRACE_SECONDS = 30.0


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


class Supervisor:
    """Starts the workers, passes stop signals on, and fails closed if one dies."""

    def __init__(self, host: str, port: int, workers: int) -> None:
        self.host, self.port, self.workers = host, port, workers
        self.procs: list[subprocess.Popen[bytes]] = []
        self.stopping = False

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
        state = Path(tempfile.mkdtemp(prefix="taxaddr-serve-"))
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            metrics_dir = state / "metrics"
            metrics_dir.mkdir()
            env = {
                **os.environ,
                STATE_DIR_ENV: str(state),
                "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
            }
            for sock in socks:
                fd = sock.fileno()
                self.procs.append(
                    # our own interpreter and module, no shell
                    subprocess.Popen(  # noqa: S603
                        self.command(), env={**env, WORKER_FD_ENV: str(fd)}, pass_fds=(fd,)
                    )
                )
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
            for sock in socks:
                sock.close()
            shutil.rmtree(state, ignore_errors=True)

    def _on_signal(self, _signum: int, _frame: FrameType | None) -> None:
        self.stopping = True
        self._signal_all(signal.SIGTERM)

    def _signal_all(self, sig: int) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    proc.send_signal(sig)
                except ProcessLookupError:
                    continue

    def _watch(self) -> int:
        while not self.stopping:
            for proc in self.procs:
                if proc.poll() is not None:
                    log_event(
                        logging.ERROR,
                        event="worker_exited",
                        pids=[proc.pid],
                        returncode=proc.returncode,
                    )
                    return 1
            time.sleep(0.1)
        return 0

    def _stop_all(self) -> None:
        self._signal_all(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
