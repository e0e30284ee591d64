"""C2SP tlog-tiles: the log as static, cacheable resources an oversight body can mirror.

* ``tile/<L>/<N>[.p/<W>]``: hash ``i`` (0 <= i < W, W = 256 for a full tile) is the
  Merkle Tree Hash of leaves ``[(N*256+i) * 256**L, (N*256+i+1) * 256**L)`` — exactly
  the stored perfect-subtree hash at tree level ``8L``, node ``N*256+i``;
* ``tile/entries/<N>[.p/<W>]``: the entries (each leaf's canonical JSON, what its leaf
  hash covers), each prefixed by its length as a big-endian uint16;
* ``<N>`` in zero-padded 3-digit path elements, all but the last prefixed ``x``
  (1234067 -> ``x001/x234/067``); ``<L>`` and ``<W>`` decimal without leading zeros.

A resource exists once the tree has grown over it and never changes afterwards; an
empty tile does not exist. :func:`export_tiles` writes the same files for a static
mirror: every full tile and bundle, and the partial ones of the current size.
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from taxaddr.audit.log import read_head
from taxaddr.audit.service import latest_checkpoint
from taxaddr.audit.witnessing import cosigned_note
from taxaddr.config import Settings
from taxaddr.crypto.keystore import KeyStore
from taxaddr.db import write_transaction
from taxaddr.db.repositories import audit as audit_repo
from taxaddr.errors import IntegrityError, NotFound, RequestInvalid

WIDTH = 256
HEIGHT = 8  # tree levels per tile level
MAX_LEVEL = 63
MAX_ENTRY_BYTES = 0xFFFF
_ELEMENT = re.compile(r"[0-9]{3}")
_SMALL = re.compile(r"[1-9][0-9]{0,2}|0")


def encode_index(index: int) -> str:
    """``N`` as zero-padded 3-digit path elements, all but the last prefixed ``x``."""
    if index < 0:
        raise ValueError("a tile index is not negative")
    groups = []
    while True:
        groups.append(f"{index % 1000:03d}")
        index //= 1000
        if index == 0:
            break
    groups.reverse()
    return "/".join([*("x" + g for g in groups[:-1]), groups[-1]])


def tile_path(level: int | str, index: int, width: int = WIDTH) -> str:
    """``tile/<L>/<N>[.p/<W>]`` (``level`` ``"entries"`` for entry bundles)."""
    suffix = "" if width == WIDTH else f".p/{width}"
    return f"tile/{level}/{encode_index(index)}{suffix}"


def parse_index(rest: str) -> tuple[int, int]:
    """``<N>[.p/<W>]`` -> (N, W); anything not exactly as the spec writes it is 422."""
    parts = rest.split("/")
    width = WIDTH
    if len(parts) >= 2 and parts[-2].endswith(".p"):
        if not _SMALL.fullmatch(parts[-1]) or not 1 <= int(parts[-1]) < WIDTH:
            raise RequestInvalid("a partial tile's width is 1..255 without leading zeros")
        width = int(parts[-1])
        parts = [*parts[:-2], parts[-2][:-2]]
    if not parts or any(not p.startswith("x") or not _ELEMENT.fullmatch(p[1:]) for p in parts[:-1]):
        raise RequestInvalid("a tile index is x-prefixed 3-digit path elements")
    if not _ELEMENT.fullmatch(parts[-1]):
        raise RequestInvalid("a tile index ends with a 3-digit path element")
    digits = "".join(p.removeprefix("x") for p in parts)
    index = int(digits)
    if encode_index(index) != "/".join(parts):  # no superfluous leading x000 elements
        raise RequestInvalid("a tile index has no superfluous leading elements")
    return index, width


def parse_level(text: str) -> int:
    if not _SMALL.fullmatch(text) or int(text) > MAX_LEVEL:
        raise RequestInvalid("a tile level is 0..63 without leading zeros")
    return int(text)


def _require(tree_size: int, level: int, index: int, width: int) -> None:
    """404 unless the tree has grown over the tile (it then never changes)."""
    span = WIDTH**level
    if (index * WIDTH + width) * span > tree_size:
        raise NotFound(f"the log has {tree_size} leaves; that tile does not exist (yet)")


def hash_tile(session: Session, level: int, index: int, width: int) -> bytes:
    """The tile's bytes: ``width`` stored subtree hashes of tree level ``8 * level``."""
    _require(read_head(session).tree_size, level, index, width)
    start = index * WIDTH
    hashes = audit_repo.node_range(session, HEIGHT * level, start, start + width)
    if len(hashes) != width:
        raise IntegrityError("the audit log is missing stored subtree hashes")
    return b"".join(hashes)


def entry_bundle(session: Session, index: int, width: int) -> bytes:
    """The bundle's bytes: ``width`` entries, each as uint16 length || canonical JSON."""
    _require(read_head(session).tree_size, 0, index, width)
    start = index * WIDTH
    entries = audit_repo.leaf_json_range(session, start, start + width)
    if len(entries) != width:
        raise IntegrityError("the audit log is missing leaves")
    return _bundle(entries)


def _bundle(entries: Iterable[bytes]) -> bytes:
    out = bytearray()
    for data in entries:
        if len(data) > MAX_ENTRY_BYTES:
            raise IntegrityError("an audit leaf is too long for an entry bundle")
        out += struct.pack(">H", len(data)) + data
    return bytes(out)


# -- static export -------------------------------------------------------------------------


@dataclass(frozen=True)
class Export:
    tree_size: int
    tiles: int
    bundles: int


def export_tiles(engine: Engine, keystore: KeyStore, settings: Settings, out: Path) -> Export:
    """``taxaddr audit export-tiles``: the checkpoint, tiles and bundles of the latest
    checkpoint's tree under ``out`` (files written atomically; full ones never change)."""
    with write_transaction(engine) as session:
        note = cosigned_note(session, latest_checkpoint(session, keystore, settings))
    size = int(note.split("\n")[1])
    tiles = bundles = 0
    with Session(engine) as session:
        level = 0
        while count := size // WIDTH**level:  # hashes at this tile level
            for index in range((count + WIDTH - 1) // WIDTH):
                width = min(WIDTH, count - index * WIDTH)
                hashes = audit_repo.node_range(
                    session, HEIGHT * level, index * WIDTH, index * WIDTH + width
                )
                if len(hashes) != width:
                    raise IntegrityError("the audit log is missing stored subtree hashes")
                _write(out / tile_path(level, index, width), b"".join(hashes))
                tiles += 1
            level += 1
        position = 0
        while position < size:
            width = min(WIDTH, size - position)
            rows = audit_repo.leaf_range(session, position, position + width, width)
            if len(rows) != width:
                raise IntegrityError("the audit log is missing leaves")
            _write(
                out / tile_path("entries", position // WIDTH, width),
                _bundle(bytes(d) for _i, d in rows),
            )
            bundles += 1
            position += width
    _write(out / "checkpoint", note.encode(), replace=True)
    return Export(size, tiles, bundles)


def _write(path: Path, data: bytes, *, replace: bool = False) -> None:
    if path.exists() and not replace:
        if path.read_bytes() != data:
            raise IntegrityError(f"{path} exists with other content: the log changed history")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
