"""C2SP tlog-tiles: paths, tiles, entry bundles and the static export, checked by a
second implementation written here from the spec (RFC 6962 MTH over the bundles'
entries), not by the service's merkle module."""

from __future__ import annotations

import base64
import hashlib
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from taxaddr.audit import tiles
from taxaddr.audit.log import bulk_append
from taxaddr.config import Settings
from taxaddr.crypto.keystore import FileKeyStore
from taxaddr.db import make_engine, write_transaction
from taxaddr.errors import IntegrityError, NotFound, RequestInvalid
from taxaddr.migrate import upgrade
from tests.audit.conftest import ORIGIN, make_leaf

SIZE = 65_536 + 2 * 256 + 17  # one full level-1 tile, partial tiles at levels 0, 1 and 2


# -- an independent implementation of the spec --------------------------------------------


def _mth(hashes: list[bytes]) -> bytes:
    """RFC 6962 Merkle Tree Hash over leaf hashes (largest power of two < n to the left)."""
    if len(hashes) == 1:
        return hashes[0]
    k = 1
    while k * 2 < len(hashes):
        k *= 2
    return hashlib.sha256(b"\x01" + _mth(hashes[:k]) + _mth(hashes[k:])).digest()


def _entries(bundle: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos < len(bundle):
        (length,) = struct.unpack(">H", bundle[pos : pos + 2])
        out.append(bundle[pos + 2 : pos + 2 + length])
        pos += 2 + length
    assert pos == len(bundle)
    return out


def _hashes(tile: bytes) -> list[bytes]:
    assert len(tile) % 32 == 0
    return [tile[i : i + 32] for i in range(0, len(tile), 32)]


def _index_path(n: int) -> str:
    digits = f"{n:d}"
    digits = digits.zfill((len(digits) + 2) // 3 * 3)
    groups = [digits[i : i + 3] for i in range(0, len(digits), 3)]
    return "/".join([*("x" + g for g in groups[:-1]), groups[-1]])


# -- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Engine, Settings, Path]]:
    from taxaddr.crypto.keystore import init_dev_keys

    root = tmp_path_factory.mktemp("tiles")
    url = f"sqlite:///{root / 'tiles.db'}"
    upgrade(url)
    init_dev_keys(root / "keys")
    settings = Settings(env="test", database_url=url, keys_dir=root / "keys", audit_origin=ORIGIN)
    engine = make_engine(url)
    for start in range(0, SIZE, 8192):
        with write_transaction(engine) as session:
            bulk_append(session, [make_leaf(i) for i in range(start, min(SIZE, start + 8192))])
    yield engine, settings, root
    engine.dispose()


def test_index_paths_as_the_spec_writes_them() -> None:
    assert tiles.encode_index(1234067) == "x001/x234/067"
    assert tiles.encode_index(5) == "005"
    assert tiles.encode_index(1000) == "x001/000"
    for n in (0, 7, 999, 1000, 256_000, 10**12 + 7):
        assert tiles.encode_index(n) == _index_path(n)
        assert tiles.parse_index(_index_path(n)) == (n, 256)
    assert tiles.parse_index("x001/x234/067.p/112") == (1234067, 112)
    assert tiles.tile_path(1, 3, 17) == "tile/1/003.p/17"
    assert tiles.tile_path("entries", 1000) == "tile/entries/x001/000"


@pytest.mark.parametrize(
    "rest",
    [
        "67",
        "0067",
        "x1/067",
        "x001/67",
        "067/x001",
        "x000/067",
        "067.p/0",
        "067.p/256",
        "067.p/01",
        "067.p/",
        "067.p",
        "",
        "x001",
        "abc",
        "067.q/5",
    ],
)
def test_malformed_indices_are_refused(rest: str) -> None:
    with pytest.raises(RequestInvalid):
        tiles.parse_index(rest)


@pytest.mark.parametrize("level", ["", "01", "64", "-1", "x", "1.0"])
def test_malformed_levels_are_refused(level: str) -> None:
    with pytest.raises(RequestInvalid):
        tiles.parse_level(level)


def test_tiles_and_bundles_agree_with_an_independent_merkle_tree(
    big_log: tuple[Engine, Settings, Path],
) -> None:
    engine, _settings, _root = big_log
    with Session(engine) as session:
        entries = []
        for n in range(SIZE // 256):
            entries += _entries(tiles.entry_bundle(session, n, 256))
        entries += _entries(tiles.entry_bundle(session, SIZE // 256, SIZE % 256))
        assert len(entries) == SIZE
        leaf_hashes = [hashlib.sha256(b"\x00" + e).digest() for e in entries]
        # level 0: leaf hashes; level 1: MTH of each full level-0 tile; level 2: of level 1
        level0 = []
        for n in range(SIZE // 256):
            level0 += _hashes(tiles.hash_tile(session, 0, n, 256))
        level0 += _hashes(tiles.hash_tile(session, 0, SIZE // 256, SIZE % 256))
        assert level0 == leaf_hashes
        level1 = _hashes(tiles.hash_tile(session, 1, 0, 256))
        level1 += _hashes(tiles.hash_tile(session, 1, 1, 2))
        assert level1 == [_mth(leaf_hashes[i * 256 : (i + 1) * 256]) for i in range(258)]
        level2 = _hashes(tiles.hash_tile(session, 2, 0, 1))
        assert level2 == [_mth(leaf_hashes[:65_536])]
        # a partial tile narrower than what exists is a prefix; wider than the tree: 404
        assert tiles.hash_tile(session, 0, 0, 5) == tiles.hash_tile(session, 0, 0, 256)[:160]
        with pytest.raises(NotFound):
            tiles.hash_tile(session, 0, SIZE // 256, SIZE % 256 + 1)
        with pytest.raises(NotFound):
            tiles.hash_tile(session, 2, 0, 256)
        with pytest.raises(NotFound):
            tiles.entry_bundle(session, SIZE // 256 + 1, 1)


def test_export_is_a_consistent_static_mirror(
    big_log: tuple[Engine, Settings, Path], tmp_path: Path
) -> None:
    engine, settings, root = big_log
    keystore = FileKeyStore(root / "keys")
    out = tmp_path / "mirror"
    first = tiles.export_tiles(engine, keystore, settings, out)
    assert first.tree_size == SIZE
    note = (out / "checkpoint").read_text()
    size, root_b64 = note.split("\n")[1:3]
    assert int(size) == SIZE
    # an independent client: the root from the mirror's bundles and tiles alone
    entries = []
    for n in range(SIZE // 256):
        entries += _entries((out / "tile/entries" / _index_path(n)).read_bytes())
    last = out / f"tile/entries/{_index_path(SIZE // 256)}.p/{SIZE % 256}"
    entries += _entries(last.read_bytes())
    leaf_hashes = [hashlib.sha256(b"\x00" + e).digest() for e in entries]
    assert base64.b64decode(root_b64) == _mth(leaf_hashes)
    assert (out / "tile/1/000").stat().st_size == 8192
    assert (out / "tile/1/001.p/2").stat().st_size == 64
    assert (out / "tile/2/000.p/1").read_bytes() == _mth(leaf_hashes[:65_536])

    # the log grows; a second export at the new size keeps every full file identical
    with write_transaction(engine) as session:
        bulk_append(session, [make_leaf(i) for i in range(SIZE, SIZE + 300)])
    second = tiles.export_tiles(engine, keystore, settings, out)
    assert second.tree_size == SIZE + 300
    assert (out / f"tile/0/{_index_path((SIZE + 300) // 256)}.p/{(SIZE + 300) % 256}").exists()
    # a mirror whose copy of history differs from the log's is refused, not overwritten
    tampered = out / "tile/0/000"
    tampered.write_bytes(b"\x00" * 8192)
    with pytest.raises(IntegrityError, match="other content"):
        tiles.export_tiles(engine, keystore, settings, out)
