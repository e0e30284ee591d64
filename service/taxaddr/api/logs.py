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
import time
from typing import Any

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
    """Send taxaddr and uvicorn logs to stderr as JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    for name in ("taxaddr", "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False


def log_event(level: int, **fields: Any) -> None:
    if LOGGER.isEnabledFor(level):
        LOGGER.log(level, fields.get("event", "event"), extra={"fields": fields})
