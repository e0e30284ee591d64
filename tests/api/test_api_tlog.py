"""`GET /v1/audit/tlog/...`: C2SP tlog-tiles over mTLS, checked by tests/audit/tlog_ref.py."""

from __future__ import annotations

import gzip

import httpx

from taxaddr.api.runtime import engine_for
from taxaddr.audit.log import bulk_append
from taxaddr.db import write_transaction
from tests.api.apikit import Identity, RunningServer, World, tree_size
from tests.audit import tlog_ref
from tests.audit.conftest import make_leaf

PREFIX = "/v1/audit/tlog/"


def _grow_to(world: World, size: int) -> None:
    have = tree_size(world)
    with write_transaction(engine_for(world.settings)) as session:
        bulk_append(session, [make_leaf(i) for i in range(have, size)])


def test_tiles_and_checkpoint_verify_with_a_second_implementation(
    server: RunningServer, world: World, overseer: Identity
) -> None:
    _grow_to(world, 520)
    with server.client(overseer) as client:

        def fetch(path: str) -> bytes:
            answer = client.get(PREFIX + path, headers={"Accept-Encoding": "identity"})
            assert answer.status_code == 200, (path, answer.text)
            assert answer.headers["content-type"] == "application/octet-stream"
            assert "immutable" in answer.headers["cache-control"]
            return answer.content

        note_answer = client.get(PREFIX + "checkpoint")
        assert note_answer.headers["content-type"] == "text/plain; charset=utf-8"
        assert "immutable" not in note_answer.headers["cache-control"]
        note = note_answer.text
        vkey = client.get("/v1/keys").json()["audit_vkey"]
        assert tlog_ref.verify_log_signature(note, vkey)
        _, size, root = tlog_ref.checkpoint_claims(note)
        assert size >= 520
        entries = tlog_ref.check_tiles(fetch, size)
        assert tlog_ref.root_from_tiles(fetch, size) == root
        assert b'"outcome"' in entries[0]

        # entry bundles are gzip-compressed when the client accepts it
        zipped = client.get(PREFIX + "tile/entries/000", headers={"Accept-Encoding": "gzip"})
        assert zipped.headers["content-encoding"] == "gzip"
        assert zipped.content == fetch("tile/entries/000")  # httpx decodes it
        raw = httpx.Client(verify=overseer.ssl_context())
        with raw.stream(
            "GET",
            server.base_url + PREFIX + "tile/entries/000",
            headers={"Accept-Encoding": "gzip"},
        ) as stream:
            body = b"".join(stream.iter_raw())
        raw.close()
        assert gzip.decompress(body) == fetch("tile/entries/000")
        plain = client.get(PREFIX + "tile/entries/000", headers={"Accept-Encoding": "gzip;q=0"})
        assert "content-encoding" not in plain.headers
        assert "accept-encoding" in plain.headers["vary"].lower()


def test_tiles_not_yet_there_malformed_or_for_other_roles_are_refused(
    server: RunningServer, world: World, overseer: Identity, agent: Identity
) -> None:
    size = tree_size(world)
    with server.client(overseer) as client:
        future = client.get(PREFIX + f"tile/0/{size // 256 + 1:03d}")
        assert future.status_code == 404
        assert future.json()["error"]["code"] == "not_found"
        for bad in ("tile/0/1", "tile/0/x000/001", "tile/64/000", "tile/0/000.p/256"):
            answer = client.get(PREFIX + bad)
            assert answer.status_code == 422, bad
            assert answer.json()["error"]["code"] == "request_invalid"
    with server.client(agent) as client:
        for path in ("checkpoint", "tile/0/000", "tile/entries/000"):
            assert client.get(PREFIX + path).status_code == 403
