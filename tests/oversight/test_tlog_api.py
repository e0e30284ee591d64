"""The tlog-tiles read API over mTLS: what an oversight body's mirror fetches."""

from __future__ import annotations

import hashlib
import struct

import httpx

from tests.oversight.oversight_e2e import RunningServer, Script, World


def _get(server: RunningServer, world: World, who: str, path: str) -> httpx.Response:
    with server.client(world.identities[who]) as client:
        return client.get(path)


def test_checkpoint_tiles_and_bundles_for_oversight(
    server: RunningServer, world: World, script: Script
) -> None:
    checkpoint = _get(server, world, "overseer", "/v1/audit/tlog/checkpoint")
    assert checkpoint.status_code == 200
    assert checkpoint.headers["content-type"] == "text/plain; charset=utf-8"
    assert "max-age=5" in checkpoint.headers["cache-control"]
    size = int(checkpoint.text.split("\n")[1])
    assert size >= script.leaves
    width = size % 256
    tile = _get(server, world, "overseer", f"/v1/audit/tlog/tile/0/000.p/{width}")
    bundle = _get(server, world, "overseer", f"/v1/audit/tlog/tile/entries/000.p/{width}")
    for answer in (tile, bundle):
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"] == "application/octet-stream"
        assert "immutable" in answer.headers["cache-control"]
    # each entry of the bundle hashes to its hash in the level-0 tile (RFC 6962 leaf hash)
    entries, pos = [], 0
    while pos < len(bundle.content):
        (length,) = struct.unpack(">H", bundle.content[pos : pos + 2])
        entries.append(bundle.content[pos + 2 : pos + 2 + length])
        pos += 2 + length
    assert len(entries) == width
    hashes = [tile.content[i : i + 32] for i in range(0, len(tile.content), 32)]
    assert hashes == [hashlib.sha256(b"\x00" + e).digest() for e in entries]


def test_tlog_refusals(server: RunningServer, world: World, script: Script) -> None:
    assert _get(server, world, "agent-1", "/v1/audit/tlog/checkpoint").status_code == 403
    missing = _get(server, world, "overseer", "/v1/audit/tlog/tile/0/x001/000")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    for bad in (
        "/v1/audit/tlog/tile/00/000",
        "/v1/audit/tlog/tile/0/0",
        "/v1/audit/tlog/tile/0/000.p/0",
    ):
        answer = _get(server, world, "overseer", bad)
        assert answer.status_code == 422, bad
        assert answer.json()["error"]["code"] == "request_invalid"
