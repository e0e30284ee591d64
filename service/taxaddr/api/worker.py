"""One worker process of ``taxaddr serve`` (started by :mod:`taxaddr.api.workers`).

It serves on the listening socket it inherited (its descriptor number is in
``TAXADDR_WORKER_FD``), with the same settings, application and TLS context as a
single-process server.
"""

from __future__ import annotations

import os
import socket
import sys

import uvicorn

from taxaddr.api.app import create_app
from taxaddr.api.logs import configure_logging
from taxaddr.api.runtime import keystore_for
from taxaddr.api.server import freeze_startup_heap, make_config, release_service
from taxaddr.api.workers import WORKER_FD_ENV
from taxaddr.config import get_settings
from taxaddr.errors import TaxaddrError


def main() -> int:
    try:
        fd = int(os.environ[WORKER_FD_ENV])
        sock = socket.socket(fileno=fd)
        settings = get_settings()
        configure_logging(settings.log_level)
        keystore = keystore_for(settings)
        app = create_app(settings)
        config = make_config(settings, app, keystore)
    except TaxaddrError as exc:
        print(f"taxaddr serve worker: {exc.code}: {exc}", file=sys.stderr)
        return 2
    except (KeyError, ValueError, OSError):
        print(f"taxaddr serve worker: usage_error: no socket in {WORKER_FD_ENV}", file=sys.stderr)
        return 2
    config.load()
    freeze_startup_heap()
    uvicorn.Server(config).run(sockets=[sock])
    release_service(app)
    return 0


if __name__ == "__main__":
    sys.exit(main())
