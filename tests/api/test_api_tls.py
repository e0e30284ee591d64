"""The TLS edge over real sockets: handshake refusals and the cert-to-identity glue."""

from __future__ import annotations

import datetime as dt
import socket
import ssl

import httpx
import pytest

from taxaddr.api.runtime import engine_for
from taxaddr.api.server import build_ssl_context
from taxaddr.audit.admin import cli_actor
from taxaddr.crypto import pki
from taxaddr.disclosure.requesters import revoke
from tests.api.apikit import Identity, RunningServer, World


def _handshake_and_request(server: RunningServer, ctx: ssl.SSLContext) -> bytes:
    """Open a raw TLS connection, send one request and return what comes back."""
    host, port = "127.0.0.1", int(server.base_url.rsplit(":", 1)[1])
    with (
        socket.create_connection((host, port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        return tls.recv(4096)


def _refused(server: RunningServer, ctx: ssl.SSLContext) -> bool:
    """True when no HTTP answer comes back. With TLS 1.3 the client's handshake
    finishes before the server checks its certificate, so the refusal shows up as
    an alert (SSLError) or a closed connection on the first read."""
    try:
        answer = _handshake_and_request(server, ctx)
    except (ssl.SSLError, ConnectionError):
        return True
    return not answer.startswith(b"HTTP/")


def _ctx(world: World, ident: Identity | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(world.keystore.files.server_ca_path))
    if ident is not None:
        ctx.load_cert_chain(str(ident.cert), str(ident.key))
    return ctx


def test_valid_cert_gets_an_answer(server: RunningServer, world: World, agent: Identity) -> None:
    answer = _handshake_and_request(server, _ctx(world, agent))
    assert answer.startswith(b"HTTP/1.1 200")


def test_no_client_certificate_is_refused_at_the_handshake(
    server: RunningServer, world: World
) -> None:
    assert _refused(server, _ctx(world, None))


def test_certificate_from_another_ca_is_refused(server: RunningServer, world: World) -> None:
    other_ca = pki.make_ca("some other CA")
    ident = world.identity("stranger", ca=other_ca, register=False)
    assert _refused(server, _ctx(world, ident))


def test_expired_certificate_is_refused(server: RunningServer, world: World) -> None:
    expired = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    ident = world.identity("expired-agent", not_after=expired)  # registered, but expired
    assert _refused(server, _ctx(world, ident))


def test_server_context_refuses_old_protocols_and_requires_certs(world: World) -> None:
    ctx = build_ssl_context(world.keystore)
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.verify_mode == ssl.CERT_REQUIRED


def test_tls_1_3_is_negotiated(server: RunningServer, world: World, agent: Identity) -> None:
    host, port = "127.0.0.1", int(server.base_url.rsplit(":", 1)[1])
    ctx = _ctx(world, agent)
    with (
        socket.create_connection((host, port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        assert tls.version() == "TLSv1.3"


def test_unregistered_certificate_is_requester_unknown(server: RunningServer, world: World) -> None:
    ident = world.identity("unregistered", register=False)
    with server.client(ident) as client:
        r = client.get("/openapi.json")
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "requester_unknown"
    # liveness needs only a certificate that passed the handshake
    with server.client(ident) as client:
        assert client.get("/healthz").status_code == 200


def test_revocation_takes_effect_on_the_next_request(server: RunningServer, world: World) -> None:
    ident = world.identity("to-be-revoked")
    with server.client(ident) as client:  # one keep-alive connection throughout
        assert client.get("/openapi.json").status_code == 200
        assert revoke(engine_for(world.settings), "to-be-revoked", actor=cli_actor()) is True
        r = client.get("/openapi.json")
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "requester_revoked"


def test_openapi_needs_a_registered_identity(server: RunningServer, agent: Identity) -> None:
    with server.client(agent) as client:
        schema = client.get("/openapi.json").json()
    assert "/v1/disclosures" in schema["paths"]
    body = schema["paths"]["/v1/disclosures"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"]["properties"]["subject"]


def test_plain_http_gets_nothing(server: RunningServer) -> None:
    with httpx.Client(timeout=10) as client, pytest.raises(httpx.HTTPError):
        client.get(server.base_url.replace("https://", "http://") + "/healthz")


@pytest.mark.parametrize(
    ("who", "path", "status"),
    [
        ("agent-1", "/v1/audit/checkpoint", 403),
        ("agent-1", "/v1/audit/entries?start=0&end=10", 403),
        ("agent-1", "/metrics", 403),
        ("prometheus", "/v1/audit/checkpoint", 403),
        ("prometheus", "/metrics", 200),
        ("root-admin", "/v1/audit/checkpoint", 403),
        ("overseer", "/v1/audit/checkpoint", 200),
        ("overseer", "/v1/audit/proof/consistency?first=0&second=0", 200),
        ("overseer", "/metrics", 200),
    ],
)
def test_role_separation(
    server: RunningServer, world: World, who: str, path: str, status: int
) -> None:
    with server.client(world.identities[who]) as client:
        r = client.get(path)
    assert r.status_code == status, r.text
    if status == 403:
        assert r.json()["error"]["code"] == "role_forbidden"
