"""A second, independent implementation of the C2SP formats, written from the specs.

tlog-tiles, tlog-checkpoint / signed-note (Ed25519, type 0x01), tlog-cosignature
(cosignature/v1, type 0x04) and RFC 6962 hashing. It imports nothing from taxaddr:
the tests check what the service produces with this code, not with the service's own.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

DASH = "\u2014"


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def mth(leaves: list[bytes]) -> bytes:
    """RFC 6962 §2.1 MTH over leaf *hashes*, recursively as the RFC writes it."""
    n = len(leaves)
    if n == 0:
        return sha(b"")
    if n == 1:
        return leaves[0]
    k = 1
    while k * 2 < n:
        k *= 2
    return sha(b"\x01" + mth(leaves[:k]) + mth(leaves[k:]))


def tile_path(level: str, n: int, width: int) -> str:
    s = str(n)
    while len(s) % 3:
        s = "0" + s
    groups = [s[i : i + 3] for i in range(0, len(s), 3)]
    p = "/".join(["x" + g for g in groups[:-1]] + [groups[-1]])
    return f"tile/{level}/{p}" + ("" if width == 256 else f".p/{width}")


def expected_tiles(leaf_hashes: list[bytes], entries: list[bytes]) -> dict[str, bytes]:
    """Every resource of the tree per tlog-tiles: MTH(D[(n*256+i)*256**l : ...])."""
    size = len(leaf_hashes)
    out: dict[str, bytes] = {}
    level = 0
    while size // 256**level:
        count = size // 256**level
        span = 256**level
        for n in range(-(-count // 256)):
            hashes = [
                mth(leaf_hashes[i * span : (i + 1) * span])
                for i in range(n * 256, min(count, n * 256 + 256))
            ]
            out[tile_path(str(level), n, len(hashes))] = b"".join(hashes)
        level += 1
    for n in range(-(-size // 256)):
        chunk = entries[n * 256 : n * 256 + 256]
        out[tile_path("entries", n, len(chunk))] = b"".join(
            struct.pack(">H", len(e)) + e for e in chunk
        )
    return out


def parse_bundle(data: bytes) -> list[bytes]:
    out = []
    i = 0
    while i < len(data):
        (length,) = struct.unpack(">H", data[i : i + 2])
        out.append(data[i + 2 : i + 2 + length])
        i += 2 + length
    assert i == len(data), "trailing bytes in entry bundle"
    return out


def root_from_tiles(size: int, fetch: dict[str, bytes]) -> bytes:
    """The tree root from tiles only (as a mirror client computes it)."""

    # hashes at each tile level, from the full tiles and the partial one
    def level_hashes(level: int) -> list[bytes]:
        count = size // 256**level
        hs: list[bytes] = []
        for n in range(-(-count // 256)):
            width = min(256, count - n * 256)
            data = fetch[tile_path(str(level), n, width)]
            assert len(data) == 32 * width
            hs += [data[i : i + 32] for i in range(0, len(data), 32)]
        return hs

    # decompose [0, size) into perfect subtrees; each one's hash from the highest tile
    # level whose span fits, folding the level's hashes within it
    subtrees: list[bytes] = []
    start = 0
    while start < size:
        h = 1
        while start % (h * 2) == 0 and start + h * 2 <= size:
            h *= 2
        level = 0
        while 256 ** (level + 1) <= h:
            level += 1
        span = 256**level
        hs = level_hashes(level)[start // span : (start + h) // span]
        subtrees.append(mth(hs))
        start += h
    acc = subtrees[-1]
    for s in reversed(subtrees[:-1]):
        acc = sha(b"\x01" + s + acc)
    return acc


@dataclass(frozen=True)
class VKey:
    name: str
    key_id: bytes
    alg: int
    key: Ed25519PublicKey


def parse_vkey(vkey: str) -> VKey:
    name, hexid, b64 = vkey.strip().split("+", 2)
    blob = base64.b64decode(b64)
    alg, raw = blob[0], blob[1:]
    assert alg in (0x01, 0x04)
    assert len(raw) == 32
    key_id = sha(name.encode() + b"\n" + bytes([alg]) + raw)[:4]
    assert key_id.hex() == hexid, "vkey id mismatch"
    return VKey(name, key_id, alg, Ed25519PublicKey.from_public_bytes(raw))


def split_note(note: str) -> tuple[str, list[tuple[str, bytes]]]:
    body, sigs = note.split("\n\n", 1) if not note.startswith("\n") else ("", note)
    lines = sigs.rstrip("\n").split("\n")
    out = []
    for line in lines:
        dash, name, b64 = line.split(" ")
        assert dash == DASH
        out.append((name, base64.b64decode(b64)))
    return body + "\n", out


def verify_note(note: str, vkey: VKey) -> bool:
    """A signed-note Ed25519 (0x01) signature or a cosignature/v1 (0x04) by ``vkey``."""
    body, sigs = split_note(note)
    for name, blob in sigs:
        if name != vkey.name or blob[:4] != vkey.key_id:
            continue
        try:
            if vkey.alg == 0x01:
                vkey.key.verify(blob[4:], body.encode())
            else:
                (ts,) = struct.unpack(">Q", blob[4:12])
                msg = f"cosignature/v1\ntime {ts}\n".encode() + body.encode()
                vkey.key.verify(blob[12:], msg)
            return True
        except InvalidSignature:
            return False
    return False


def checkpoint_claims(note: str) -> tuple[str, int, bytes]:
    body, _ = split_note(note)
    origin, size, root = body.split("\n")[:3]
    return origin, int(size), base64.b64decode(root)
