"""A local HTTP server that speaks OPA's REST Data API (see conftest.py)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import regorus

from taxaddr.policy.sources import PolicySources


class FakeOpa(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, sources: PolicySources) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.sources = sources
        self.mode = "normal"
        self.delay = 0.0
        self.requests: list[dict[str, Any]] = []
        self._local = threading.local()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def engine(self) -> Any:
        engine = getattr(self._local, "engine", None)
        if engine is None:
            engine = regorus.Engine()
            for path, text in self.sources.modules:
                engine.add_policy(path, text)
            engine.add_data_json(self.sources.data_text)
            self._local.engine = engine
        return engine


class _Handler(BaseHTTPRequestHandler):
    server: FakeOpa

    def log_message(self, format: str, *args: Any) -> None:
        del format, args

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, doc: object) -> None:
        self._send(status, json.dumps(doc).encode())

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path == "/health":
            if self.server.mode == "unhealthy":
                self._json(500, {"error": "not all bundles activated"})
            else:
                self._json(200, {})
            return
        self._json(404, {"code": "resource_not_found", "message": "not found"})

    def do_POST(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        server = self.server
        server.requests.append({"path": parts.path, "query": parse_qs(parts.query)})
        if server.delay:
            time.sleep(server.delay)
        if not parts.path.startswith("/v1/data/"):
            self._json(404, {"code": "resource_not_found", "message": "not found"})
            return
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            self._json(400, {"code": "invalid_parameter", "message": "body must be JSON"})
            return
        if not isinstance(body, dict):
            self._json(400, {"code": "invalid_parameter", "message": "body must be an object"})
            return
        mode = server.mode
        if mode == "error500":
            self._json(500, {"code": "internal_error", "message": "boom"})
            return
        if mode == "not_json":
            self._send(200, b"<html>proxy error</html>", "text/html")
            return
        ref = "data." + parts.path.removeprefix("/v1/data/").strip("/").replace("/", ".")
        engine = server.engine()
        engine.set_input_json(json.dumps(body.get("input")))
        result = engine.eval_rule(ref)
        answer: dict[str, Any] = {}
        if mode == "undefined":
            result = None
        elif mode == "no_allow":
            result = {"reasons": []}
        elif mode == "allow_not_bool":
            result = {"allow": "true", "reasons": []}
        elif mode == "reasons_not_strings":
            result = {"allow": False, "reasons": [1]}
        elif mode == "allow_with_reasons":
            result = {"allow": True, "reasons": ["role_forbidden"]}
        elif mode == "not_object":
            answer = ["result"]  # type: ignore[assignment]
        if result is not None and isinstance(answer, dict):
            answer["result"] = result
        if "provenance" in parse_qs(parts.query) and isinstance(answer, dict):
            answer["provenance"] = {
                "version": "0.61.0",
                "bundles": {"taxaddr": {"revision": server.sources.version}},
            }
        if mode == "trickle":
            # Every byte arrives within the read timeout, the whole answer does not.
            body = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            step = max(1, len(body) // 8)
            for i in range(0, len(body), step):
                self.wfile.write(body[i : i + step])
                self.wfile.flush()
                time.sleep(0.05)
            return
        self._json(200, answer)
