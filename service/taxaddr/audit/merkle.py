"""RFC 6962 Merkle tree hashing, proofs and their verification (pure functions).

Hashing (RFC 6962 §2.1): ``leaf_hash = SHA-256(0x00 || entry)``,
``node_hash = SHA-256(0x01 || left || right)``; the hash of the empty tree is
``SHA-256("")``.

Two families of functions live here:

* Reference constructions over a list of leaf hashes (:func:`root`,
  :func:`inclusion_proof`, :func:`consistency_proof`) that follow the recursive
  definitions of RFC 6962 §2.1.1 and §2.1.2 literally. They are what a third
  party can use to recompute anything the log serves.
* Verification (:func:`root_from_inclusion`, :func:`verify_inclusion`,
  :func:`verify_consistency`) following the RFC 9162 §2.1.3.2 and §2.1.4.2
  algorithms (as in transparency-dev/merkle and sigstore-python). They return
  ``False`` on any malformed input instead of raising: a verifier must not crash
  on hostile proofs.

And the arithmetic the database-backed log uses to answer proofs in O(log n)
lookups: a proof is a list of hashes of leaf *ranges*
(:func:`inclusion_ranges`, :func:`consistency_ranges`); every such range splits
into aligned perfect subtrees (:func:`perfect_subtrees`) whose hashes the log
stores once, when they complete.

This module imports nothing from taxaddr: copy it to verify the log elsewhere.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence

HASH_SIZE = 32
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()

_sha256 = hashlib.sha256

Range = tuple[int, int]
"""A half-open range ``[begin, end)`` of leaf indices."""

NodeId = tuple[int, int]
"""``(level, index)``: the perfect subtree over ``[index << level, (index + 1) << level)``."""


# -- hashing ----------------------------------------------------------------------------


def leaf_hash(entry: bytes) -> bytes:
    """RFC 6962 leaf hash of one log entry."""
    return _sha256(LEAF_PREFIX + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 6962 interior node hash."""
    return _sha256(NODE_PREFIX + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH(D[n]) over leaf hashes (RFC 6962 §2.1), computed bottom-up."""
    if not leaf_hashes:
        return EMPTY_ROOT
    return _fold(_subtree_hashes(leaf_hashes))


def _subtree_hashes(leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """Hashes of the greedy perfect subtrees of ``leaf_hashes``, left to right."""
    out: list[bytes] = []
    start = 0
    n = len(leaf_hashes)
    while start < n:
        size = 1 << ((n - start).bit_length() - 1)
        out.append(perfect_root(leaf_hashes[start : start + size]))
        start += size
    return out


def perfect_root(leaf_hashes: Sequence[bytes]) -> bytes:
    """Root of a perfect subtree (its length is a power of two), level by level."""
    level = list(leaf_hashes)
    if len(level) & (len(level) - 1) or not level:
        raise ValueError("a perfect subtree has a power-of-two number of leaves")
    while len(level) > 1:
        # zip of one iterator with itself: (l0, l1), (l2, l3), ... (even: checked above)
        pairs = iter(level)
        level = [_sha256(NODE_PREFIX + a + b).digest() for a, b in zip(pairs, pairs, strict=False)]
    return level[0]


def _fold(subtrees: Sequence[bytes]) -> bytes:
    """Hash a range from its perfect subtrees (strictly decreasing sizes), right to left."""
    acc = subtrees[-1]
    for h in reversed(subtrees[:-1]):
        acc = _sha256(NODE_PREFIX + h + acc).digest()
    return acc


# -- reference proofs over a list of leaf hashes (RFC 6962 §2.1.1, §2.1.2) -------------


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int, tree_size: int) -> list[bytes]:
    """PATH(index, D[tree_size]): the audit path of leaf ``index``."""
    if not 0 <= index < tree_size <= len(leaf_hashes):
        raise ValueError("need 0 <= index < tree_size <= number of leaves")
    hashes = leaf_hashes[:tree_size]
    return [root(hashes[a:b]) for a, b in inclusion_ranges(index, tree_size)]


def consistency_proof(leaf_hashes: Sequence[bytes], first: int, second: int) -> list[bytes]:
    """PROOF(first, D[second]): the consistency proof between two tree sizes."""
    if not 0 <= first <= second <= len(leaf_hashes):
        raise ValueError("need 0 <= first <= second <= number of leaves")
    hashes = leaf_hashes[:second]
    return [root(hashes[a:b]) for a, b in consistency_ranges(first, second)]


def inclusion_ranges(index: int, tree_size: int) -> list[Range]:
    """The leaf ranges whose hashes form PATH(index, D[tree_size]), in proof order."""
    if not 0 <= index < tree_size:
        raise ValueError("need 0 <= index < tree_size")
    out: list[Range] = []
    begin, end = 0, tree_size
    while end - begin > 1:
        k = _split(end - begin)
        if index < begin + k:
            out.append((begin + k, end))
            end = begin + k
        else:
            out.append((begin, begin + k))
            begin += k
    out.reverse()  # the recursion emits the path top-down; the proof is bottom-up
    return out


def consistency_ranges(first: int, second: int) -> list[Range]:
    """The leaf ranges whose hashes form PROOF(first, D[second]), in proof order."""
    if not 0 <= first <= second:
        raise ValueError("need 0 <= first <= second")
    if first in (0, second):
        return []
    out: list[Range] = []
    begin, end, m, complete = 0, second, first, True
    while True:
        n = end - begin
        if m == n:
            if not complete:
                out.append((begin, end))
            break
        k = _split(n)
        if m <= k:
            out.append((begin + k, end))
            end = begin + k
        else:
            out.append((begin, begin + k))
            begin += k
            m -= k
            complete = False
    out.reverse()
    return out


# -- ranges as perfect subtrees (what the log stores) ------------------------------------


def perfect_subtrees(begin: int, end: int) -> list[NodeId]:
    """Split ``[begin, end)`` greedily into aligned perfect subtrees, left to right."""
    if not 0 <= begin < end:
        raise ValueError("need 0 <= begin < end")
    out: list[NodeId] = []
    while begin < end:
        level = (begin & -begin).bit_length() - 1 if begin else 62
        while begin + (1 << level) > end:
            level -= 1
        out.append((level, begin >> level))
        begin += 1 << level
    return out


def range_hash(begin: int, end: int, nodes: Mapping[NodeId, bytes]) -> bytes:
    """MTH of ``[begin, end)`` from stored perfect-subtree hashes.

    Valid for the ranges of :func:`inclusion_ranges` and :func:`consistency_ranges`
    (``begin`` aligned to a power of two at least ``end - begin``), whose RFC 6962
    split points are exactly the greedy subtree boundaries.
    """
    return _fold([nodes[node] for node in perfect_subtrees(begin, end)])


def proof_nodes(ranges: Sequence[Range]) -> set[NodeId]:
    """Every stored subtree needed to hash ``ranges``."""
    return {node for a, b in ranges for node in perfect_subtrees(a, b)}


def proof_from_nodes(
    ranges: Sequence[Range], lookup: Callable[[set[NodeId]], Mapping[NodeId, bytes]]
) -> list[bytes]:
    """Hash each range with one batched ``lookup`` of the subtrees it needs."""
    if not ranges:
        return []
    nodes = lookup(proof_nodes(ranges))
    return [range_hash(a, b, nodes) for a, b in ranges]


# -- verification (RFC 9162 §2.1.3.2 and §2.1.4.2) ---------------------------------------


def _hashes_ok(*hashes: bytes) -> bool:
    return all(isinstance(h, bytes) and len(h) == HASH_SIZE for h in hashes)


def root_from_inclusion(
    index: int, tree_size: int, leaf: bytes, proof: Sequence[bytes]
) -> bytes | None:
    """The root that ``proof`` implies for ``leaf`` (a leaf hash), or None if malformed."""
    if not (0 <= index < tree_size) or not _hashes_ok(leaf, *proof):
        return None
    fn, sn, r = index, tree_size - 1, leaf
    for p in proof:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not (fn & 1 or fn == 0):
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


def verify_inclusion(
    index: int, tree_size: int, leaf: bytes, proof: Sequence[bytes], expected_root: bytes
) -> bool:
    """True iff ``proof`` shows leaf hash ``leaf`` at ``index`` under ``expected_root``."""
    computed = root_from_inclusion(index, tree_size, leaf, proof)
    return computed is not None and _hashes_ok(expected_root) and computed == expected_root


def verify_consistency(
    first: int,
    second: int,
    first_root: bytes,
    second_root: bytes,
    proof: Sequence[bytes],
) -> bool:
    """True iff ``proof`` shows the tree of size ``second`` extends the one of size ``first``."""
    if not (0 <= first <= second) or not _hashes_ok(*proof):
        return False
    if first == second:
        return not proof and _hashes_ok(first_root, second_root) and first_root == second_root
    if first == 0:
        return not proof  # every tree extends the empty tree
    if not proof or not _hashes_ok(first_root, second_root):
        return False
    path = list(proof)
    if first & (first - 1) == 0:  # first is a power of two: its root is a node of the proof
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not (fn & 1 or fn == 0):
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == first_root and sr == second_root


# -- incremental building (compact range) ------------------------------------------------


class CompactRange:
    """The right edge of a growing tree: one perfect-subtree hash per set bit of its size.

    ``push_subtree`` appends an aligned perfect subtree (a single leaf is level 0);
    ``root`` folds the edge. Memory is O(log n) whatever the size.
    """

    __slots__ = ("size", "stack")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if len(hashes) != size.bit_count():
            raise ValueError("a compact range holds one hash per set bit of its size")
        self.size = size
        levels = [b for b in range(size.bit_length() - 1, -1, -1) if size >> b & 1]
        self.stack: list[tuple[int, bytes]] = list(zip(levels, hashes, strict=True))

    def push_subtree(self, level: int, h: bytes) -> list[tuple[int, int, bytes]]:
        """Append a perfect subtree; returns the (level, index, hash) nodes it completed."""
        if self.size & ((1 << level) - 1):
            raise ValueError("subtree is not aligned to the current size")
        index = self.size >> level
        self.size += 1 << level
        completed: list[tuple[int, int, bytes]] = []
        stack = self.stack
        while index & 1:
            _, left = stack.pop()
            h = _sha256(NODE_PREFIX + left + h).digest()
            level += 1
            index >>= 1
            completed.append((level, index, h))
        stack.append((level, h))
        return completed

    def hashes(self) -> list[bytes]:
        return [h for _, h in self.stack]

    def root(self) -> bytes:
        if not self.stack:
            return EMPTY_ROOT
        return _fold(self.hashes())
