"""The mTLS server: uvicorn with a TLS context we build and a protocol that exposes the peer cert.

uvicorn (0.54) can require and verify client certificates at the handshake, but
it does not put the peer certificate into the ASGI scope. Its HTTP protocol
objects are created per connection and receive ``connection_made(transport)``
after the TLS handshake has completed, so :class:`ClientCertHttpToolsProtocol`
(and its h11 twin) extends uvicorn's protocol class: on ``connection_made`` it
reads the verified peer certificate (DER) from the transport's ``ssl_object`` and
wraps the protocol's ASGI app so that every request on that connection carries it
as ``scope["extensions"]["tls"]["client_cert_chain"]`` (the ASGI TLS extension's
shape: a list of PEM strings, leaf first) plus ``client_cert_der`` for speed.

The server runs uvloop's event loop and TLS transport with the httptools (llhttp)
parser: in the same benchmark run, ``/healthz`` costs 0.22-0.26 ms of server CPU
per request against 0.54-0.57 ms with asyncio's loop and h11. The h11 protocol
class stays usable (``make_config(..., http=ClientCertH11Protocol, loop="asyncio")``).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
import ssl
import threading
from collections.abc import Callable
from typing import Any, cast

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from taxaddr.api.app import create_app
from taxaddr.api.logs import configure_logging
from taxaddr.api.runtime import keystore_for
from taxaddr.api.workers import Supervisor
from taxaddr.config import Settings, worker_count
from taxaddr.crypto.keystore import FileKeyStore
from taxaddr.errors import KeyMaterialError

Scope = dict[str, Any]
ASGIApp = Callable[..., Any]

# TLS 1.2 suites: forward secret AEAD only (TLS 1.3 suites are fixed by OpenSSL).
_TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL:!MD5:!DSS"


def build_ssl_context(keystore: FileKeyStore) -> ssl.SSLContext:
    """Server context: TLS 1.2+ (1.3 preferred), client certificate required and verified."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.maximum_version = ssl.TLSVersion.MAXIMUM_SUPPORTED
    ctx.set_ciphers(_TLS12_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.options |= getattr(ssl, "OP_NO_RENEGOTIATION", 0)
    try:
        ctx.load_cert_chain(str(keystore.server_cert_path), str(keystore.server_key_path))
        ctx.load_verify_locations(cafile=str(keystore.client_ca_path))
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


class _ClientCertMixin:
    """Hands the verified peer certificate of the connection to every request on it.

    asyncio (or uvloop) calls ``connection_made`` once the TLS handshake, with the
    client certificate verified by OpenSSL, has completed.
    """

    config: uvicorn.Config
    app: ASGIApp

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.app = _TLSScopeApp(self.config.loaded_app, peer_cert_der(transport))
        super().connection_made(transport)  # type: ignore[misc]


class ClientCertH11Protocol(_ClientCertMixin, H11Protocol):
    """uvicorn's pure-Python h11 protocol with the peer certificate in the scope."""


class ClientCertHttpToolsProtocol(_ClientCertMixin, HttpToolsProtocol):
    """uvicorn's httptools (C parser) protocol with the peer certificate in the scope."""


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
    settings: Settings, app: ASGIApp, keystore: FileKeyStore, **overrides: Any
) -> uvicorn.Config:
    """uvicorn settings for the service (TLS always on; our own access log)."""
    ctx = build_ssl_context(keystore)
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "http": ClientCertHttpToolsProtocol,
        "loop": "uvloop",
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
        self.server = uvicorn.Server(config)
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
    if workers > 1:
        build_ssl_context(keystore)  # refuse unusable key material before any worker starts
        status = Supervisor(settings.host, settings.port, workers).run()
        if status:
            raise SystemExit(status)
        return
    run_app(settings, keystore)


def run_app(
    settings: Settings, keystore: FileKeyStore, sockets: list[socket.socket] | None = None
) -> None:
    """Build the app and serve it until stopped, on ``sockets`` (a worker's inherited
    socket) or on the settings' address; then release what its service holds."""
    app = create_app(settings)
    config = make_config(settings, app, keystore)
    config.load()
    freeze_startup_heap()
    uvicorn.Server(config).run(sockets=sockets)
    release_service(app)
