"""The edge of every request (pure ASGI, cheap): request id, body limit, access log, last resort.

* a server request id for every request (``X-Request-ID``), and the :class:`Trace`
  that handlers fill in with requester, outcome and code;
* the body limit (64 KiB by default), checked from ``Content-Length`` and while
  streaming, before anything parses it: 413 ``request_too_large``;
* one JSON access-log line per request with safe fields only;
* any unexpected exception becomes a 500 envelope; only its type is logged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from taxaddr import metrics
from taxaddr.api.deps import TRACE_KEY
from taxaddr.api.handlers import envelope_bytes
from taxaddr.api.logs import log_event
from taxaddr.api.trace import Trace
from taxaddr.audit.leaf import new_server_id

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

DISCLOSURE_PATH = "/v1/disclosures"


class EdgeMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Canonical UUIDs that cannot look like a TIN: a refusal's leaf may carry it.
        trace = Trace(request_id=new_server_id())
        scope[TRACE_KEY] = trace
        started = time.perf_counter()
        state = {"status": 0}
        rid_header = (b"x-request-id", trace.request_id.encode())

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = int(message["status"])
                message["headers"] = [*message.get("headers", []), rid_header]
            await send(message)

        try:
            body = await self._read_body(scope, receive)
            if body is None:
                await self._too_large(scope, trace, send_wrapper)
            else:
                await self.app(scope, _replay(body, receive), send_wrapper)
        except Exception as exc:  # noqa: BLE001  (last line of defence: envelope, type name only)
            log_event(
                logging.ERROR,
                event="unhandled_error",
                request_id=trace.request_id,
                error_type=type(exc).__name__,
            )
            if state["status"] == 0:
                trace.code = "internal_error"
                await _send_envelope(
                    send_wrapper,
                    500,
                    "internal_error",
                    "internal error",
                    trace.client_request_id or trace.request_id,
                )
        finally:
            route = scope.get("route")
            log_event(
                logging.INFO,
                event="request",
                request_id=trace.request_id,
                requester_id=trace.requester_id,
                agency=trace.agency,
                role=trace.role,
                method=scope.get("method"),
                route=getattr(route, "path", None) or "unmatched",
                status=state["status"],
                outcome=trace.outcome,
                code=trace.code,
                leaf_index=trace.leaf_index,
                duration_ms=round((time.perf_counter() - started) * 1000, 3),
            )

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes | None:
        """The whole request body, or None when it exceeds the limit."""
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    if int(value) > self.max_body:
                        return None
                except ValueError:
                    return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    async def _too_large(self, scope: Scope, trace: Trace, send: Send) -> None:
        trace.code = "request_too_large"
        if scope.get("path") == DISCLOSURE_PATH:
            trace.outcome = "invalid"  # no leaf: never counted as denied
            metrics.DISCLOSURE_REQUESTS.labels(
                agency="unknown", outcome="invalid", reason="request_too_large"
            ).inc()
        await _send_envelope(
            send,
            413,
            "request_too_large",
            f"request body larger than {self.max_body} bytes",
            trace.request_id,
            close=True,
        )


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


async def _send_envelope(
    send: Send, status: int, code: str, message: str, request_id: str, *, close: bool = False
) -> None:
    body = envelope_bytes(code, message, request_id)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
