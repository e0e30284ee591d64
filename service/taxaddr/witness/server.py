"""``taxaddr witness serve``: the witness over HTTP (stdlib server, one thread a
connection, at most :data:`MAX_CONNECTIONS` at once: the next one is closed at once).

``POST /add-checkpoint`` only (tlog-witness); anything else is 404/405. TLS with an
optional client-certificate requirement when given a certificate; plain HTTP only on
a loopback address.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import ssl
import sys
import threading
import time
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from taxaddr.audit.checkpoint import Verifier
from taxaddr.audit.cosignature import CosignerKey
from taxaddr.errors import UsageError
from taxaddr.witness.protocol import MAX_BODY_BYTES, Answer, add_checkpoint
from taxaddr.witness.state import WitnessState

PATH = "/add-checkpoint"
# Connections served at once. A log sends one checkpoint per interval; each connection
# holds a thread for up to the handler's 30 s timeout, so without a bound a client
# opening connections and staying silent would grow the witness's threads without end.
MAX_CONNECTIONS = 64


class BoundedServer(ThreadingHTTPServer):
    """One thread a connection, at most ``max_connections`` of them; a connection over
    the bound is closed unanswered (the log retries at its next interval)."""

    def __init__(self, address: tuple[str, int], handler: type, max_connections: int) -> None:
        super().__init__(address, handler)
        self._slots = threading.BoundedSemaphore(max_connections)
        self.refused = 0

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.refused += 1
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class Witness:
    """What the handler needs: the key, the logs it witnesses, its state."""

    def __init__(
        self, key: CosignerKey, logs: Mapping[str, list[Verifier]], state: WitnessState
    ) -> None:
        self.key, self.logs, self.state = key, logs, state

    def handle(self, body: bytes) -> Answer:
        return add_checkpoint(body, self.logs, self.state, self.key, int(time.time()))


def make_server(
    witness: Witness, host: str, port: int, *, max_connections: int = MAX_CONNECTIONS
) -> BoundedServer:
    class Handler(BaseHTTPRequestHandler):
        server_version = "taxaddr-witness"
        sys_version = ""
        protocol_version = "HTTP/1.1"
        timeout = 30

        def do_POST(self) -> None:
            # An answer given before the body was read closes the connection: on a
            # kept-alive connection the unread body would be parsed as the next request.
            if self.path != PATH:
                self._refuse(Answer(404, b"not found\n"))
                return
            try:
                length = int(self.headers.get("Content-Length", ""))
            except ValueError:
                self._refuse(Answer(411, b"Content-Length required\n"))
                return
            if not 0 <= length <= MAX_BODY_BYTES:
                self._refuse(Answer(400, b"request body too large\n"))
                return
            try:
                body = self.rfile.read(length)
            except OSError:  # the client stalled past the timeout or went away
                self.close_connection = True
                return
            if len(body) != length:
                self.close_connection = True
                return
            self._send(witness.handle(body))

        def _refuse(self, answer: Answer) -> None:
            self.close_connection = True
            self._send(answer)

        def handle(self) -> None:
            # The TLS handshake runs here, in this connection's thread and under its
            # timeout, not in the accept loop: a client that connects and stays silent
            # must not stop the witness from answering everyone else.
            if isinstance(self.connection, ssl.SSLSocket):
                try:
                    self.connection.do_handshake()
                except (ssl.SSLError, OSError):
                    return
            super().handle()

        def do_GET(self) -> None:
            self._send(Answer(404 if self.path != PATH else 405, b"POST /add-checkpoint only\n"))

        def _send(self, answer: Answer) -> None:
            self.send_response(answer.status)
            self.send_header("Content-Type", answer.content_type)
            self.send_header("Content-Length", str(len(answer.body)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(answer.body)

        def log_message(self, format: str, *args: object) -> None:
            event = {"event": "witness_request", "line": format % args}
            sys.stderr.write(json.dumps(event) + "\n")

    return BoundedServer((host, port), Handler, max_connections)


def _is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or a name such as ``localhost``) is loopback only."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except (socket.gaierror, UnicodeError):
        raise UsageError(f"cannot resolve --host {host}") from None
    return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)


def make_tls_server(
    witness: Witness,
    host: str,
    port: int,
    *,
    cert: Path,
    key: Path | None = None,
    client_ca: Path | None = None,
    max_connections: int = MAX_CONNECTIONS,
) -> BoundedServer:
    """The witness over TLS (client certificates required when ``client_ca`` is given);
    each connection's handshake happens in its own thread (:meth:`Handler.handle`)."""
    server = make_server(witness, host, port, max_connections=max_connections)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert), str(key) if key else None)
    if client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(str(client_ca))
    server.socket = context.wrap_socket(
        server.socket, server_side=True, do_handshake_on_connect=False
    )
    return server


def serve(
    witness: Witness,
    host: str,
    port: int,
    *,
    cert: Path | None = None,
    key: Path | None = None,
    client_ca: Path | None = None,
) -> None:
    """Serve until interrupted."""
    if cert is None and not _is_loopback(host):
        raise UsageError("plain HTTP only on a loopback address: give --tls-cert and --tls-key")
    if cert is None:
        server = make_server(witness, host, port)
    else:
        server = make_tls_server(witness, host, port, cert=cert, key=key, client_ca=client_ca)
    try:
        server.serve_forever()
    finally:
        server.server_close()
        witness.state.close()
