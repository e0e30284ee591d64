"""JSON structured logs: one object per line, a fixed set of safe fields.

Only identifiers and codes are logged: request id, requester id, agency, route,
status, outcome, code, duration. Never a TIN, name, address, case token or an
exception message (driver messages can echo parameters); exceptions are logged
by type name only.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
import warnings
from types import TracebackType
from typing import Any, TextIO

LOGGER = logging.getLogger("taxaddr.api")

SAFE_FIELDS = (
    "event",
    "request_id",
    "requester_id",
    "agency",
    "role",
    "method",
    "route",
    "status",
    "outcome",
    "code",
    "duration_ms",
    "leaf_index",
    "error_type",
    "host",
    "port",
    "workers",
    "address",
    "pids",
    "returncode",
    "state_dir",
    "files",
    "thread",
    "category",
)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,  # which server worker process wrote the line
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            for key in SAFE_FIELDS:
                if key in fields and fields[key] is not None:
                    entry[key] = fields[key]
        else:
            entry["message"] = record.getMessage()
        return json.dumps(entry, separators=(",", ":"))


def configure_logging(level: str = "INFO") -> None:
    """Send taxaddr and uvicorn logs to stderr as JSON lines, and with them what Python
    would otherwise print there as raw text: exceptions nobody catches (in any thread,
    or in a finalizer, e.g. a policy engine dropped on another thread) and warnings.
    Those are logged by type and place only: their messages may quote values."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    for name in ("taxaddr", "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False
    # Any other library's records (asyncio, SQLAlchemy, ...) reach the root logger, whose
    # last-resort handler would write them as plain text: give it the JSON handler too.
    root = logging.getLogger()
    root.handlers[:] = [h for h in root.handlers if not isinstance(h.formatter, JsonFormatter)]
    root.addHandler(handler)
    warnings.showwarning = _log_warning
    sys.excepthook = _log_uncaught
    sys.unraisablehook = _log_unraisable
    threading.excepthook = _log_thread_exception


def _log_uncaught(
    exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None
) -> None:
    del exc, tb
    log_event(logging.CRITICAL, event="uncaught_exception", error_type=exc_type.__name__)


def _log_unraisable(unraisable: Any) -> None:
    exc_type = getattr(unraisable, "exc_type", None)
    log_event(
        logging.ERROR,
        event="unraisable_exception",
        error_type=getattr(exc_type, "__name__", "unknown"),
    )


def _log_thread_exception(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return  # a thread's normal way out, as in threading's own hook
    thread = args.thread.name if args.thread is not None else None
    log_event(
        logging.ERROR,
        event="thread_exception",
        error_type=args.exc_type.__name__,
        thread=thread,
    )


def _log_warning(  # noqa: PLR0917 - warnings.showwarning's own signature
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    del message, filename, lineno, file, line
    log_event(logging.WARNING, event="python_warning", category=category.__name__)


def log_event(level: int, **fields: Any) -> None:
    if LOGGER.isEnabledFor(level):
        LOGGER.log(level, fields.get("event", "event"), extra={"fields": fields})
