"""One worker process of ``taxaddr serve`` (started by :mod:`taxaddr.api.workers`).

It serves on the listening socket it inherited (its descriptor number is in
``TAXADDR_WORKER_FD``), with the same settings, application and TLS context as a
single-process server, and reports to its supervisor over the heartbeat pipe in
``TAXADDR_WORKER_HEARTBEAT_FD``. Before anything else it arms the parent-death
signal, so that it cannot outlive a supervisor that dies while it starts.
"""

from __future__ import annotations

import os
import socket
import sys

from taxaddr.api.workers import (
    HEARTBEAT_FD_ENV,
    SUPERVISOR_PID_ENV,
    WORKER_FD_ENV,
    die_with_parent,
)
from taxaddr.errors import TaxaddrError


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value else None


def main() -> int:
    try:
        parent = _env_int(SUPERVISOR_PID_ENV)
        heartbeat = _env_int(HEARTBEAT_FD_ENV)
    except ValueError:
        parent = heartbeat = None
    if not die_with_parent(parent):
        print("taxaddr serve worker: supervisor exited before the worker started", file=sys.stderr)
        return 1
    try:
        sock = socket.socket(fileno=int(os.environ[WORKER_FD_ENV]))
    except (KeyError, ValueError, OSError):
        print(f"taxaddr serve worker: usage_error: no socket in {WORKER_FD_ENV}", file=sys.stderr)
        return 2
    try:
        if heartbeat is not None:
            os.set_blocking(heartbeat, False)  # a full pipe must never block the event loop
    except OSError:
        print(f"taxaddr serve worker: usage_error: no pipe in {HEARTBEAT_FD_ENV}", file=sys.stderr)
        return 2
    # The application's imports take about a second: only after the signal is armed.
    from taxaddr.api.logs import configure_logging  # noqa: PLC0415
    from taxaddr.api.runtime import keystore_for  # noqa: PLC0415
    from taxaddr.api.server import run_app  # noqa: PLC0415
    from taxaddr.config import get_settings  # noqa: PLC0415

    try:
        settings = get_settings()
        configure_logging(settings.log_level)
        run_app(settings, keystore_for(settings), sockets=[sock], heartbeat_fd=heartbeat)
    except TaxaddrError as exc:
        print(f"taxaddr serve worker: {exc.code}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
