"""RFC 6962 hashing and proofs: published known answers and property tests."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taxaddr.audit import merkle

# The CT reference inputs and answers (certificate-transparency-go
# merkle/log_verifier_test.go; trillian and transparency-dev/merkle carry the same).
LEAVES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
# (leaf index, tree size, audit path)
INCLUSION = [
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (0, 1, []),
]
# (first, second, proof)
CONSISTENCY = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]
HASHES = [merkle.leaf_hash(x) for x in LEAVES]


def _root(n: int) -> bytes:
    return bytes.fromhex(ROOTS[n - 1])


def test_empty_tree_hash() -> None:
    assert merkle.EMPTY_ROOT.hex() == EMPTY
    assert merkle.root([]).hex() == EMPTY
    assert merkle.CompactRange().root().hex() == EMPTY


def test_leaf_and_node_prefixes() -> None:
    assert merkle.leaf_hash(b"").hex() == (
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    )
    assert merkle.leaf_hash(b"\x00").hex() == (
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"
    )
    left, right = bytes(range(32)), bytes(range(32, 64))
    assert merkle.node_hash(left, right).hex() == (
        "1a378704c17da31e2d05b6d121c2bb2c7d76f6ee6fa8f983e596c2d034963c57"
    )


@pytest.mark.parametrize("n", range(1, 9))
def test_published_roots(n: int) -> None:
    assert merkle.root(HASHES[:n]).hex() == ROOTS[n - 1]
    compact = merkle.CompactRange()
    for h in HASHES[:n]:
        compact.push_subtree(0, h)
    assert compact.root().hex() == ROOTS[n - 1]


@pytest.mark.parametrize(("index", "size", "path"), INCLUSION)
def test_published_inclusion_proofs(index: int, size: int, path: list[str]) -> None:
    proof = merkle.inclusion_proof(HASHES, index, size)
    assert [h.hex() for h in proof] == path
    assert merkle.verify_inclusion(index, size, HASHES[index], proof, _root(size))
    assert merkle.root_from_inclusion(index, size, HASHES[index], proof) == _root(size)
    # the verifier's own negative checks, as in the CT test suite
    assert not merkle.verify_inclusion(index + 1, size, HASHES[index], proof, _root(size))
    assert not merkle.verify_inclusion(index, size * 2, HASHES[index], proof, _root(size))
    assert not merkle.verify_inclusion(index, size, merkle.EMPTY_ROOT, proof, _root(size))
    assert not merkle.verify_inclusion(index, size, HASHES[index], proof, merkle.EMPTY_ROOT)
    assert not merkle.verify_inclusion(
        index, size, HASHES[index], [*proof, _root(size)], _root(size)
    )
    if proof:
        assert not merkle.verify_inclusion(index, size, HASHES[index], proof[:-1], _root(size))
        assert not merkle.verify_inclusion(index, size, HASHES[index], [b"", *proof], _root(size))


@pytest.mark.parametrize(("first", "second", "path"), CONSISTENCY)
def test_published_consistency_proofs(first: int, second: int, path: list[str]) -> None:
    proof = merkle.consistency_proof(HASHES, first, second)
    assert [h.hex() for h in proof] == path
    assert merkle.verify_consistency(first, second, _root(first), _root(second), proof)
    if proof:
        assert not merkle.verify_consistency(first, second, _root(second), _root(first), proof)
        assert not merkle.verify_consistency(first + 1, second, _root(first), _root(second), proof)
        assert not merkle.verify_consistency(first, second, _root(first), _root(second), [])
        assert not merkle.verify_consistency(
            first, second, _root(first), _root(second), [*proof, _root(first)]
        )
        assert not merkle.verify_consistency(first, second, _root(first), _root(second), proof[:-1])


def test_trivial_and_invalid_consistency() -> None:
    r1 = _root(1)
    assert merkle.verify_consistency(0, 0, merkle.EMPTY_ROOT, merkle.EMPTY_ROOT, [])
    assert merkle.verify_consistency(0, 5, merkle.EMPTY_ROOT, _root(5), [])
    assert not merkle.verify_consistency(0, 5, merkle.EMPTY_ROOT, _root(5), [r1])
    assert not merkle.verify_consistency(1, 1, r1, _root(2), [])  # same size, other root
    assert not merkle.verify_consistency(1, 1, r1, r1, [r1])  # same size, non-empty proof
    assert not merkle.verify_consistency(2, 1, r1, r1, [])  # time travel
    assert not merkle.verify_consistency(1, 2, r1, _root(2), [])  # missing proof
    assert merkle.consistency_proof(HASHES, 0, 8) == []
    assert merkle.consistency_proof(HASHES, 8, 8) == []


def test_malformed_inputs_fail_without_raising() -> None:
    root8 = _root(8)
    assert merkle.root_from_inclusion(0, 0, HASHES[0], []) is None
    assert merkle.root_from_inclusion(2, 1, HASHES[0], []) is None
    assert merkle.root_from_inclusion(0, 8, b"short", []) is None
    assert not merkle.verify_inclusion(0, 8, HASHES[0], [b"x" * 31, root8, root8], root8)
    assert not merkle.verify_consistency(3, 8, b"short", root8, [root8])
    assert not merkle.verify_consistency(3, 8, root8, root8, [b"x"])
    with pytest.raises(ValueError, match="index"):
        merkle.inclusion_proof(HASHES, 8, 8)
    with pytest.raises(ValueError, match="first"):
        merkle.consistency_proof(HASHES, 5, 3)
    with pytest.raises(ValueError, match="begin"):
        merkle.perfect_subtrees(3, 3)
    with pytest.raises(ValueError, match="set bit"):
        merkle.CompactRange(3, [HASHES[0]])
    with pytest.raises(ValueError, match="aligned"):
        merkle.CompactRange(1, [HASHES[0]]).push_subtree(1, HASHES[1])


def _leaves(n: int) -> list[bytes]:
    return [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(n)]


def _stored_nodes(hashes: list[bytes]) -> dict[merkle.NodeId, bytes]:
    """What the log stores: every completed perfect subtree, built incrementally."""
    compact = merkle.CompactRange()
    nodes: dict[merkle.NodeId, bytes] = {}
    for i, h in enumerate(hashes):
        nodes[(0, i)] = h
        for level, index, node in compact.push_subtree(0, h):
            nodes[(level, index)] = node
    assert compact.root() == merkle.root(hashes)
    return nodes


@settings(max_examples=150, deadline=None)
@given(data=st.data(), n=st.integers(min_value=1, max_value=300))
def test_every_inclusion_proof_verifies_and_any_altered_hash_fails(
    data: st.DataObject, n: int
) -> None:
    hashes = _leaves(n)
    nodes = _stored_nodes(hashes)
    size = data.draw(st.integers(min_value=1, max_value=n), label="size")
    index = data.draw(st.integers(min_value=0, max_value=size - 1), label="index")
    root = merkle.root(hashes[:size])
    proof = merkle.inclusion_proof(hashes, index, size)
    stored = merkle.proof_from_nodes(
        merkle.inclusion_ranges(index, size), lambda ids: {i: nodes[i] for i in ids}
    )
    assert stored == proof
    assert merkle.verify_inclusion(index, size, hashes[index], proof, root)
    if proof:
        k = data.draw(st.integers(min_value=0, max_value=len(proof) - 1), label="which")
        bit = data.draw(st.integers(min_value=0, max_value=255), label="bit")
        altered = list(proof)
        altered[k] = bytes([altered[k][0] ^ (1 + bit % 255)]) + altered[k][1:]
        assert not merkle.verify_inclusion(index, size, hashes[index], altered, root)
    if n > 1:  # leaves are distinct, so another leaf never verifies at this index
        assert not merkle.verify_inclusion(index, size, hashes[(index + 1) % n], proof, root)


@settings(max_examples=150, deadline=None)
@given(data=st.data(), n=st.integers(min_value=1, max_value=300))
def test_every_consistency_proof_verifies_and_any_altered_hash_fails(
    data: st.DataObject, n: int
) -> None:
    hashes = _leaves(n)
    nodes = _stored_nodes(hashes)
    second = data.draw(st.integers(min_value=1, max_value=n), label="second")
    first = data.draw(st.integers(min_value=1, max_value=second), label="first")
    r1, r2 = merkle.root(hashes[:first]), merkle.root(hashes[:second])
    proof = merkle.consistency_proof(hashes, first, second)
    stored = merkle.proof_from_nodes(
        merkle.consistency_ranges(first, second), lambda ids: {i: nodes[i] for i in ids}
    )
    assert stored == proof
    assert merkle.verify_consistency(first, second, r1, r2, proof)
    if proof:
        k = data.draw(st.integers(min_value=0, max_value=len(proof) - 1), label="which")
        altered = list(proof)
        altered[k] = bytes([altered[k][0] ^ 0x80]) + altered[k][1:]
        assert not merkle.verify_consistency(first, second, r1, r2, altered)
    if first < second:
        assert not merkle.verify_consistency(first, second, r2, r1, proof)


def test_perfect_subtrees_cover_range_exactly() -> None:
    for begin in range(0, 40):
        for end in range(begin + 1, 80):
            covered = []
            for level, index in merkle.perfect_subtrees(begin, end):
                covered.extend(range(index << level, (index + 1) << level))
            assert covered == list(range(begin, end))
