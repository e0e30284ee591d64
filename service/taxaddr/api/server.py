"""The mTLS server: uvicorn with a TLS context we build and a protocol that bounds the edge.

uvicorn (0.55) can require and verify client certificates at the handshake, but
it does not put the peer certificate into the ASGI scope. Its HTTP protocol
objects are created per connection and receive ``connection_made(transport)``
after the TLS handshake has completed, so :class:`ClientCertHttpToolsProtocol`
extends uvicorn's httptools protocol class: on ``connection_made`` it reads the
verified peer certificate (DER) from the transport's ``ssl_object`` and wraps the
protocol's ASGI app so that every request on that connection carries it as
``scope["extensions"]["tls"]["client_cert_chain"]`` (the ASGI TLS extension's
shape: a list of PEM strings, leaf first) plus ``client_cert_der`` for speed.

The same protocol class bounds what a client can make the server hold before the
application sees a request (:class:`EdgeLimits`): request line and headers larger
than ``TAXADDR_MAX_HEADER_BYTES`` or with more than ``TAXADDR_MAX_HEADERS`` fields
are answered 431 ``request_header_too_large`` and the connection closed, before
any body is read; a connection must complete each request's headers within
``TAXADDR_HEADER_TIMEOUT_SECONDS`` (the first request's counted from the accept,
TLS handshake included); one client certificate may hold at most
``TAXADDR_MAX_CONNECTIONS_PER_CLIENT`` open connections per worker process. uvicorn
has none of these for httptools (its only header limit, ``h11_max_incomplete_event_size``,
is h11's), and llhttp itself has no size limit: httptools concatenates a header
value that arrives in pieces, so a 64 MiB header cost a worker ~550 MB and its CPU.

The server runs uvloop's event loop and TLS transport with the httptools (llhttp)
parser: in the same benchmark run, ``/healthz`` costs 0.22-0.26 ms of server CPU
per request against 0.54-0.57 ms with asyncio's loop and h11.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, cast

import httptools
import uvicorn
import uvloop
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from taxaddr import metrics
from taxaddr.api.app import create_app
from taxaddr.api.handlers import envelope_bytes
from taxaddr.api.logs import configure_logging, log_event
from taxaddr.api.readiness import startup_checks
from taxaddr.api.runtime import keystore_for
from taxaddr.api.workers import PortLock, Supervisor, listen_socket
from taxaddr.audit.leaf import new_server_id
from taxaddr.config import Settings, worker_count
from taxaddr.crypto.keystore import KeyStore
from taxaddr.errors import KeyMaterialError, RateLimited, RequestHeaderTooLarge

Scope = dict[str, Any]
ASGIApp = Callable[..., Any]

# TLS 1.2 suites: forward secret AEAD only (TLS 1.3 suites are fixed by OpenSSL).
_TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL:!MD5:!DSS"


def build_ssl_context(keystore: KeyStore) -> ssl.SSLContext:
    """Server context: TLS 1.2+ (1.3 preferred), client certificate required and verified."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.maximum_version = ssl.TLSVersion.MAXIMUM_SUPPORTED
    ctx.set_ciphers(_TLS12_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.options |= getattr(ssl, "OP_NO_RENEGOTIATION", 0)
    try:
        ctx.load_cert_chain(
            str(keystore.files.server_cert_path), str(keystore.files.server_key_path)
        )
        ctx.load_verify_locations(cafile=str(keystore.files.client_ca_path))
    except (OSError, ssl.SSLError) as exc:
        raise KeyMaterialError("server TLS certificate, key or client CA unusable") from exc
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


class _TLSScopeApp:
    """Per-connection ASGI wrapper adding the verified client certificate to the scope."""

    __slots__ = ("app", "der", "tls")

    def __init__(self, app: ASGIApp, der: bytes | None) -> None:
        self.app = app
        self.der = der
        chain = [ssl.DER_cert_to_PEM_cert(der)] if der else []
        self.tls = {"server_cert": None, "client_cert_chain": chain, "client_cert_der": der}

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            extensions = scope.setdefault("extensions", {})
            extensions["tls"] = self.tls
        await self.app(scope, receive, send)


def peer_cert_der(transport: asyncio.BaseTransport) -> bytes | None:
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    return cast("bytes | None", der)


DISCLOSURE_PATH = b"/v1/disclosures"
# After an answer at the edge, how long a client has to read it before the connection
# is cut (see ClientCertHttpToolsProtocol._cut_after_linger).
EDGE_LINGER_SECONDS = 1.0


@dataclass(frozen=True)
class EdgeLimits:
    """What one connection may make a worker hold before the application sees a request."""

    max_header_bytes: int = 16 * 1024  # request line + header fields
    max_headers: int = 100
    header_timeout: float = 60.0
    max_connections_per_client: int = 64

    @classmethod
    def from_settings(cls, settings: Settings) -> EdgeLimits:
        return cls(
            max_header_bytes=settings.max_header_bytes,
            max_headers=settings.max_headers,
            header_timeout=settings.header_timeout_seconds,
            max_connections_per_client=settings.max_connections_per_client,
        )


class _HeaderLimitExceeded(Exception):
    """Raised from a parser callback to stop httptools; the protocol answers 431."""


class ClientCertHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools (C parser) protocol with the peer certificate in the scope
    and the edge limits of :class:`EdgeLimits`.

    :func:`edge_protocol` makes one subclass per server, with that server's limits
    and its own count of open connections per client certificate.
    """

    limits: ClassVar[EdgeLimits] = EdgeLimits()
    open_per_client: ClassVar[dict[bytes, int]] = {}

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: Any,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        # The protocol is made when the connection is accepted; connection_made follows
        # the TLS handshake. The first request's header deadline counts from here.
        self._accepted = self.loop.time()
        self._header_timer: asyncio.TimerHandle | None = None
        self._linger_timer: asyncio.TimerHandle | None = None
        # Armed while a request line and headers are awaited (from the accept, from the
        # first byte of a later request); cancelled when they are complete.
        self._head_received = 0  # bytes received while armed (an upper bound of the head)
        self._head_parsed = 0  # request line + header bytes as parsed
        self._head_fields = 0
        self._client: bytes | None = None  # the certificate counted in open_per_client
        self._refusal: tuple[int, str, str] | None = None  # (status, code, message)
        self._deferred: tuple[int, str, str] | None = None  # after the response in progress
        self._answered = False

    # -- connection ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        der = peer_cert_der(transport)
        self.app = _TLSScopeApp(self.config.loaded_app, der)
        super().connection_made(transport)
        limits = self.limits
        self._arm_header_timer(limits.header_timeout - (self.loop.time() - self._accepted))
        client = der or b""
        held = self.open_per_client.get(client, 0)
        if held >= limits.max_connections_per_client:
            # Answered on its first request (a response before any request is not
            # something clients read); the header timeout bounds one that sends none.
            self._refusal = (
                429,
                RateLimited.code,
                "too many open connections for this client certificate",
            )
            return
        self.open_per_client[client] = held + 1
        self._client = client

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._header_timer, self._linger_timer):
            if timer is not None:
                timer.cancel()
        self._header_timer = self._linger_timer = None
        client, self._client = self._client, None
        if client is not None:
            held = self.open_per_client.get(client, 1) - 1
            if held > 0:
                self.open_per_client[client] = held
            else:
                self.open_per_client.pop(client, None)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._answered:
            return  # answered at the edge and closing: nothing more is parsed
        self._unset_keepalive_if_required()
        if self._header_timer is None and (self.cycle is None or self.cycle.response_complete):
            self._arm_header_timer(self.limits.header_timeout)  # a next request begins
        if self._header_timer is not None:
            self._head_received += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._unsupported_upgrade_warning()  # no WebSocket routes
        except httptools.HttpParserError:
            if self._refusal is not None:
                self._answer_at_edge(*self._refusal)
                return
            self.logger.warning("Invalid HTTP request received.")
            self.send_400_response("Invalid HTTP request received.")
            return
        if self._header_timer is not None and self._head_received > self.limits.max_header_bytes:
            # headers still incomplete past the limit: answer now, read no more
            self._answer_at_edge(*self._header_refusal())

    # -- parser callbacks -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_parsed = self._head_fields = 0
        if self._header_timer is None:  # a pipelined request: its own deadline
            self._arm_header_timer(self.limits.header_timeout)

    def on_url(self, url: bytes) -> None:
        self._head_parsed += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_parsed += len(name) + len(value) + 4
        self._head_fields += 1
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        limits = self.limits
        if self._head_parsed > limits.max_header_bytes or self._head_fields > limits.max_headers:
            self._refusal = self._header_refusal()
        if self._refusal is not None:
            raise _HeaderLimitExceeded  # httptools stops; data_received answers
        self._head_received = 0
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        deferred, self._deferred = self._deferred, None
        if deferred is not None:  # a refused pipelined request waited for this response
            self._unset_keepalive_if_required()
            if not self.transport.is_closing():
                self._write_answer(*deferred)
            self._cut_after_linger()

    # -- answers at the edge --------------------------------------------------------------

    def _header_refusal(self) -> tuple[int, str, str]:
        limits = self.limits
        return (
            RequestHeaderTooLarge.status,
            RequestHeaderTooLarge.code,
            f"request line and headers exceed {limits.max_header_bytes} bytes "
            f"or {limits.max_headers} fields",
        )

    def _arm_header_timer(self, seconds: float) -> None:
        self._header_timer = self.loop.call_later(max(0.0, seconds), self._header_deadline)

    def _header_deadline(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            log_event(logging.INFO, event="connection_closed", code="header_timeout")
            self.transport.abort()  # nothing to deliver, nothing more to read

    def _answer_at_edge(self, status: int, code: str, message: str) -> None:
        """Answer with the contract's envelope without calling the application (no
        leaf, no body read), then close the connection. Behind a response still being
        written (pipelining), the answer waits for it."""
        self._answered = True
        if self.cycle is not None and not self.cycle.response_complete:
            self._deferred = (status, code, message)
            self.transport.pause_reading()
            return
        self._write_answer(status, code, message)
        self._cut_after_linger()

    def _write_answer(self, status: int, code: str, message: str) -> None:
        """The envelope, its metric and its access-log line (written first, so that the
        line exists once the client has the answer)."""
        request_id = new_server_id()  # the middleware's kind of id (never TIN-shaped)
        url: bytes = getattr(self, "url", b"")  # set once a request line began
        disclosure = url.split(b"?", 1)[0] == DISCLOSURE_PATH
        outcome = None
        if disclosure and status == RequestHeaderTooLarge.status:
            outcome = "invalid"
            metrics.DISCLOSURE_REQUESTS.labels(agency="unknown", outcome=outcome, reason=code).inc()
        log_event(
            logging.INFO,
            event="request",
            request_id=request_id,
            route=DISCLOSURE_PATH.decode() if disclosure else "unmatched",
            status=status,
            outcome=outcome,
            code=code,
        )
        body = envelope_bytes(code, message, request_id)
        head = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        if status == RateLimited.status:
            head.append(b"retry-after: 1\r\n")
        head += [
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"x-request-id: " + request_id.encode() + b"\r\n",
            b"connection: close\r\n\r\n",
            body,
        ]
        self.transport.write(b"".join(head))

    def _cut_after_linger(self) -> None:
        """Read nothing more, and cut the connection after :data:`EDGE_LINGER_SECONDS`,
        time for the client to read the answer.

        Not a graceful close: in TLS shutdown, uvloop reads and decrypts (to discard)
        whatever the client still sends, for up to its 30 s shutdown timeout; a
        flooding client sends ~1.7 GB/s over loopback. Paused, the kernel's buffers
        fill and the client's sends block until the cut.
        """
        self.transport.pause_reading()
        if self._linger_timer is None:
            self._linger_timer = self.loop.call_later(EDGE_LINGER_SECONDS, self.transport.abort)


def edge_protocol(limits: EdgeLimits) -> type[ClientCertHttpToolsProtocol]:
    """A protocol class for one server: its limits and its own connection counts."""
    return type(
        "EdgeHttpToolsProtocol",
        (ClientCertHttpToolsProtocol,),
        {"limits": limits, "open_per_client": {}},
    )


class EdgeLoop(uvloop.Loop):
    """uvloop's event loop with a TLS handshake timeout of our choosing (uvicorn passes
    none to ``create_server``; uvloop's default is 60 s)."""

    tls_handshake_timeout: float = 60.0

    async def create_server(self, *args: Any, **kwargs: Any) -> asyncio.Server:
        if kwargs.get("ssl") is not None:
            kwargs.setdefault("ssl_handshake_timeout", self.tls_handshake_timeout)
        return cast("asyncio.Server", await super().create_server(*args, **kwargs))


HEARTBEAT_TICKS = 5  # uvicorn ticks every 0.1 s: one heartbeat every 0.5 s


class TaxaddrServer(uvicorn.Server):
    """uvicorn's server on an :class:`EdgeLoop`; as a worker, it reports to its
    supervisor from the event loop (``heartbeat_fd``, a pipe) every 0.5 s.

    A heartbeat proves the event loop is turning, not merely that the process
    exists: a worker that is stopped or blocked stops sending them, and the
    supervisor replaces it. A broken pipe means the supervisor is gone: the worker
    stops at once (the parent-death signal, :func:`taxaddr.api.workers.die_with_parent`,
    normally comes first).
    """

    def __init__(self, config: uvicorn.Config, heartbeat_fd: int | None = None) -> None:
        super().__init__(config)
        self.heartbeat_fd = heartbeat_fd

    def run(self, sockets: list[socket.socket] | None = None) -> None:
        with asyncio.Runner(loop_factory=self._new_loop) as runner:
            runner.run(self.serve(sockets=sockets))

    def _new_loop(self) -> asyncio.AbstractEventLoop:
        loop = EdgeLoop()
        limits = getattr(self.config.http, "limits", EdgeLimits())  # make_config's class
        loop.tls_handshake_timeout = limits.header_timeout
        return cast("asyncio.AbstractEventLoop", loop)

    async def on_tick(self, counter: int) -> bool:
        if self.heartbeat_fd is not None and counter % HEARTBEAT_TICKS == 0:
            try:
                os.write(self.heartbeat_fd, b".")
            except BlockingIOError:
                pass  # the supervisor is behind on reading; it has plenty
            except OSError:
                log_event(logging.ERROR, event="supervisor_gone")
                self.should_exit = self.force_exit = True
        return await super().on_tick(counter)


def freeze_startup_heap() -> None:
    """Keep the start-up objects out of every later garbage collection.

    The application, its libraries and their caches are ~160,000 long-lived
    objects; each full (generation 2) collection walks all of them, which measured
    40-80 ms, and on a worker that decides requests on its event loop that is a
    pause for every request in flight. ``gc.freeze()`` moves them to a permanent
    generation, so collections only walk what requests allocate.
    """
    gc.collect()
    gc.freeze()


def release_service(app: Any) -> None:
    """After the server stopped: release what the app's disclosure service holds."""
    svc = getattr(getattr(app, "state", None), "svc", None)
    close = getattr(svc, "close", None)
    if callable(close):
        close()


def make_config(
    settings: Settings, app: ASGIApp, keystore: KeyStore, **overrides: Any
) -> uvicorn.Config:
    """uvicorn settings for the service (TLS always on; our own access log; the edge
    limits of the settings). Run it with :class:`TaxaddrServer`."""
    ctx = build_ssl_context(keystore)
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "http": edge_protocol(EdgeLimits.from_settings(settings)),
        "loop": "uvloop",  # TaxaddrServer.run: an EdgeLoop, uvloop's loop with our timeouts
        "ssl_context_factory": lambda _config, _default: ctx,
        "access_log": False,
        "log_config": None,
        "server_header": False,
        "proxy_headers": False,
        "timeout_keep_alive": 30,
        "lifespan": "off",
        "ws": "none",
    }
    options.update(overrides)
    return uvicorn.Config(app, **options)


class ServerThread:
    """Run the server in a background thread (tests, benchmarks)."""

    def __init__(self, config: uvicorn.Config) -> None:
        self.server = TaxaddrServer(config)
        self.thread = threading.Thread(target=self.server.run, name="taxaddr-server", daemon=True)

    def start(self, timeout: float = 30.0) -> None:
        self.thread.start()
        deadline = timeout
        step = 0.02
        waited = 0.0
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("server thread exited during start-up")
            if waited >= deadline:
                raise RuntimeError("server did not start in time")
            threading.Event().wait(step)
            waited += step

    @property
    def port(self) -> int:
        servers = getattr(self.server, "servers", [])
        for srv in servers:
            for sock in srv.sockets:
                return int(sock.getsockname()[1])
        raise RuntimeError("server has no listening socket")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        release_service(self.server.config.app)


def serve(settings: Settings) -> None:
    """Run the API until interrupted (``taxaddr serve``): one process, or a supervisor
    and ``TAXADDR_WORKERS`` worker processes (:mod:`taxaddr.api.workers`)."""
    configure_logging(settings.log_level)
    if not settings.tls:
        # The API has no plaintext mode: identities come from client certificates.
        logging.getLogger("taxaddr.api").warning("TAXADDR_TLS=false ignored: the API is mTLS only")
    keystore = keystore_for(settings)
    workers = worker_count(settings)
    with PortLock(settings.port):  # one service per port: a second serve stops here
        startup_checks(settings)  # database, keys, policy: one line and exit 1 if broken
        if workers > 1:
            build_ssl_context(keystore)  # refuse unusable key material before any worker starts
            status = Supervisor(
                settings.host,
                settings.port,
                workers,
                heartbeat_timeout=settings.worker_heartbeat_timeout_seconds,
            ).run()
            if status:
                raise SystemExit(status)
            return
        with listen_socket(settings.host, settings.port) as sock:
            run_app(settings, keystore, sockets=[sock])


def run_app(
    settings: Settings,
    keystore: KeyStore,
    sockets: list[socket.socket] | None = None,
    heartbeat_fd: int | None = None,
) -> None:
    """Build the app and serve it until stopped, on ``sockets`` (a worker's inherited
    socket) or on the settings' address; then release what its service holds.
    ``heartbeat_fd``: a worker's pipe to its supervisor (:class:`TaxaddrServer`)."""
    app = create_app(settings)
    # The writers' queue is made with the app; its deadline comes from the settings.
    app.state.svc.writers.deadline = settings.writer_lock_timeout_seconds
    config = make_config(settings, app, keystore)
    config.load()
    freeze_startup_heap()
    TaxaddrServer(config, heartbeat_fd).run(sockets=sockets)
    release_service(app)
