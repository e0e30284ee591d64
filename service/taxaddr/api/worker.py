"""One worker process of ``taxaddr serve`` (started by :mod:`taxaddr.api.workers`).

It serves on the listening socket it inherited (its descriptor number is in
``TAXADDR_WORKER_FD``), with the same settings, application and TLS context as a
single-process server.
"""

from __future__ import annotations

import os
import socket
import sys

from taxaddr.api.logs import configure_logging
from taxaddr.api.runtime import keystore_for
from taxaddr.api.server import run_app
from taxaddr.api.workers import WORKER_FD_ENV
from taxaddr.config import get_settings
from taxaddr.errors import TaxaddrError


def main() -> int:
    try:
        sock = socket.socket(fileno=int(os.environ[WORKER_FD_ENV]))
    except (KeyError, ValueError, OSError):
        print(f"taxaddr serve worker: usage_error: no socket in {WORKER_FD_ENV}", file=sys.stderr)
        return 2
    try:
        settings = get_settings()
        configure_logging(settings.log_level)
        run_app(settings, keystore_for(settings), sockets=[sock])
    except TaxaddrError as exc:
        print(f"taxaddr serve worker: {exc.code}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
