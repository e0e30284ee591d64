"""A second, independent implementation of the C2SP formats, written from the specs.

It imports nothing from taxaddr (only hashlib, base64 and ``cryptography``'s
Ed25519): tiles (c2sp.org/tlog-tiles), signed notes and vkeys (c2sp.org/signed-note),
checkpoints (c2sp.org/tlog-checkpoint) and cosignature/v1 (c2sp.org/tlog-cosignature).
The tests check what the service serves and exports against it.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

Fetch = Callable[[str], bytes]


def h_leaf(entry: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + entry).digest()


def h_node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def mth(hashes: list[bytes]) -> bytes:
    """RFC 6962 MTH over already-hashed leaves, by the recursive definition."""
    if not hashes:
        return hashlib.sha256(b"").digest()
    if len(hashes) == 1:
        return hashes[0]
    k = 1
    while k * 2 < len(hashes):
        k *= 2
    return h_node(mth(hashes[:k]), mth(hashes[k:]))


def n_path(n: int) -> str:
    """tlog-tiles: zero-padded 3-digit elements, all but the last prefixed with x."""
    digits = str(n)
    digits = "0" * (-len(digits) % 3) + digits
    groups = [digits[i : i + 3] for i in range(0, len(digits), 3)]
    return "/".join(["x" + g for g in groups[:-1]] + [groups[-1]])


def tile_path(level: int | str, n: int, width: int) -> str:
    suffix = "" if width == 256 else f".p/{width}"
    return f"tile/{level}/{n_path(n)}{suffix}"


def tile_width(size: int, level: int, n: int) -> int:
    """The width of tile n at level `level` in a tree of `size` (0: absent)."""
    count = size // 256**level
    return max(0, min(256, count - n * 256))


def split_hashes(data: bytes) -> list[bytes]:
    assert len(data) % 32 == 0
    return [data[i : i + 32] for i in range(0, len(data), 32)]


def split_bundle(data: bytes) -> list[bytes]:
    out = []
    i = 0
    while i < len(data):
        length = int.from_bytes(data[i : i + 2], "big")
        out.append(data[i + 2 : i + 2 + length])
        i += 2 + length
    assert i == len(data), "entry bundle has trailing bytes"
    return out


def check_tiles(fetch: Fetch, size: int) -> list[bytes]:
    """Check every tile of a tree of `size`: each entry hashes to its level-0 hash, and each
    full tile's MTH is the hash one level up. Returns the entries."""
    entries: list[bytes] = []
    level = 0
    while size // 256**level:
        n = 0
        while (w := tile_width(size, level, n)) > 0:
            hashes = split_hashes(fetch(tile_path(level, n, w)))
            assert len(hashes) == w
            if level == 0:
                bundle = split_bundle(fetch(tile_path("entries", n, w)))
                assert [h_leaf(e) for e in bundle] == hashes
                entries += bundle
            if w == 256 and size // 256 ** (level + 1) > n:
                above_w = tile_width(size, level + 1, n // 256)
                above = split_hashes(fetch(tile_path(level + 1, n // 256, above_w)))
                assert above[n % 256] == mth(hashes), f"tile {level}/{n} does not hash up"
            n += 1
        level += 1
    assert len(entries) == size
    return entries


def root_from_tiles(fetch: Fetch, size: int) -> bytes:
    """MTH(D[0:size]) from the tiles a client of a checkpoint of `size` may fetch."""
    subtrees: list[bytes] = []
    start = 0
    while start < size:
        k = (size - start).bit_length() - 1  # the largest perfect subtree that fits
        subtrees.append(_subtree(fetch, size, k, start >> k))
        start += 1 << k
    acc = subtrees[-1]
    for h in reversed(subtrees[:-1]):
        acc = h_node(h, acc)
    return acc


def _subtree(fetch: Fetch, size: int, k: int, index: int) -> bytes:
    """Hash of the perfect subtree of height k at `index`, from the tile at level k // 8."""
    level, below = divmod(k, 8)
    first = index << below  # index of its first hash at height 8 * level
    n = first // 256
    hashes = split_hashes(fetch(tile_path(level, n, tile_width(size, level, n))))
    offset = first % 256
    return mth(hashes[offset : offset + (1 << below)])


# -- signed notes (c2sp.org/signed-note) ------------------------------------------------


def parse_vkey(vkey: str) -> tuple[str, bytes, int, bytes]:
    """(name, key id, type byte, public key) of a `name+hex(id)+base64(type||key)` vkey."""
    name, key_id, blob_b64 = vkey.strip().split("+", 2)
    blob = base64.b64decode(blob_b64)
    ident = hashlib.sha256(name.encode() + b"\n" + blob).digest()[:4]
    assert ident.hex() == key_id, "vkey id does not match"
    return name, ident, blob[0], blob[1:]


def signatures(note: str) -> tuple[bytes, list[tuple[str, bytes]]]:
    """(signed text, [(key name, base64-decoded signature blob)]) of a note."""
    text, _, sigs = note.rpartition("\n\n")
    out = []
    for line in sigs.splitlines():
        dash, name, b64 = line.split(" ")
        assert dash == "\u2014"
        out.append((name, base64.b64decode(b64)))
    return (text + "\n").encode(), out


def verify_log_signature(note: str, vkey: str) -> bool:
    name, ident, kind, key = parse_vkey(vkey)
    assert kind == 0x01
    text, sigs = signatures(note)
    for sig_name, blob in sigs:
        if sig_name == name and blob[:4] == ident:
            try:
                Ed25519PublicKey.from_public_bytes(key).verify(blob[4:], text)
                return True
            except InvalidSignature:
                return False
    return False


def verify_cosignature(note: str, vkey: str) -> int | None:
    """The timestamp of a valid cosignature/v1 by `vkey` on `note`, else None."""
    name, ident, kind, key = parse_vkey(vkey)
    assert kind == 0x04
    text, sigs = signatures(note)
    for sig_name, blob in sigs:
        if sig_name == name and blob[:4] == ident and len(blob) == 4 + 8 + 64:
            timestamp = int.from_bytes(blob[4:12], "big")
            message = b"cosignature/v1\ntime " + str(timestamp).encode() + b"\n" + text
            try:
                Ed25519PublicKey.from_public_bytes(key).verify(blob[12:], message)
                return timestamp
            except InvalidSignature:
                return None
    return None


def checkpoint_claims(note: str) -> tuple[str, int, bytes]:
    origin, size, root = note.split("\n")[:3]
    return origin, int(size), base64.b64decode(root)
