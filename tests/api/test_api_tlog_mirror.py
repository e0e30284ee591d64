"""``/v1/audit/tlog`` over mTLS, read as a mirror client would, by a second independent
implementation (tests/audit/c2spref.py, written from tlog-tiles / signed-note without
looking at tests/audit/tlog_ref.py): the root recomputed from tiles only, every entry
hashed into its level-0 tile, gzip bundles, and the oversight role required."""

from __future__ import annotations

from taxaddr.api.runtime import engine_for
from taxaddr.audit.log import bulk_append
from taxaddr.db import write_transaction
from tests.api.apikit import Identity, RunningServer, leaves
from tests.audit import c2spref
from tests.audit.conftest import make_leaf


def test_tiles_checkpoint_and_bundles_over_the_api(
    server: RunningServer, overseer: Identity, agent: Identity
) -> None:
    world = server.world
    with write_transaction(engine_for(world.settings)) as session:
        bulk_append(session, [make_leaf(i) for i in range(260)])
    with server.client(overseer) as client:
        vkey = c2spref.parse_vkey(client.get("/v1/keys").json()["audit_vkey"])
        r = client.get("/v1/audit/tlog/checkpoint")
        assert r.status_code == 200
        assert r.headers["content-type"] == "text/plain; charset=utf-8"
        assert r.headers["cache-control"] == "max-age=5, must-revalidate"
        assert c2spref.verify_note(r.text, vkey)
        _, size, root = c2spref.checkpoint_claims(r.text)
        fetched: dict[str, bytes] = {}
        entries: list[bytes] = []
        for n in range(-(-size // 256)):
            width = min(256, size - n * 256)
            path = c2spref.tile_path("0", n, width)
            t = client.get(f"/v1/audit/tlog/{path}")
            assert t.status_code == 200
            assert t.headers["content-type"] == "application/octet-stream"
            assert t.headers["cache-control"] == "private, max-age=31536000, immutable"
            fetched[path] = t.content
            e = client.get(
                "/v1/audit/tlog/" + c2spref.tile_path("entries", n, width),
                headers={"Accept-Encoding": "gzip"},
            )
            assert e.status_code == 200  # httpx undoes the Content-Encoding
            entries += c2spref.parse_bundle(e.content)
        for level in range(1, 8):
            count = size // 256**level
            if count:
                path = c2spref.tile_path(str(level), 0, count)
                fetched[path] = client.get(f"/v1/audit/tlog/{path}").content
        assert c2spref.root_from_tiles(size, fetched) == root
        assert [c2spref.sha(b"\x00" + e) for e in entries] == [
            fetched[c2spref.tile_path("0", i // 256, min(256, size - i // 256 * 256))][
                (i % 256) * 32 : (i % 256) * 32 + 32
            ]
            for i in range(size)
        ]
        raw = client.get(
            "/v1/audit/tlog/" + c2spref.tile_path("entries", 0, 256),
            headers={"Accept-Encoding": "gzip"},
        )
        assert raw.headers.get("content-encoding") == "gzip"
        for bad in ("tile/0/0", "tile/00/000", "tile/0/000.p/0", "tile/0/x000/000"):
            assert client.get(f"/v1/audit/tlog/{bad}").status_code == 422, bad  # not a tile path
        beyond = f"tile/0/{size // 256 + 1:03d}"
        assert client.get(f"/v1/audit/tlog/{beyond}").status_code == 404  # not grown to it yet
    assert leaves(world, 0, 1)  # the JSON entries endpoint still agrees on leaf 0
    with server.client(agent) as client:
        assert client.get("/v1/audit/tlog/checkpoint").status_code == 403
        assert client.get("/v1/audit/tlog/tile/0/000").status_code == 403
