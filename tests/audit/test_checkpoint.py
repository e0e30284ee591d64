"""C2SP signed-note checkpoints: format, key hash, and each verification step."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from taxaddr.audit.checkpoint import (
    Checkpoint,
    CheckpointError,
    Verifier,
    open_checkpoint,
    parse_body,
    parse_vkey,
    sign_checkpoint,
)

ORIGIN = "example.com/log"
ROOT = hashlib.sha256(b"root").digest()


def _raw(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def verifier(key: Ed25519PrivateKey) -> Verifier:
    return Verifier.from_public_key(ORIGIN, key.public_key())


def test_note_layout_follows_c2sp(key: Ed25519PrivateKey) -> None:
    note = sign_checkpoint(Checkpoint(ORIGIN, 42, ROOT), key, ORIGIN)
    body, sig_block = note.split("\n\n")
    assert body + "\n" == f"{ORIGIN}\n42\n{base64.b64encode(ROOT).decode()}\n"
    dash, name, blob_b64 = sig_block.removesuffix("\n").split(" ")
    assert dash == "\u2014"
    assert name == ORIGIN
    blob = base64.b64decode(blob_b64)
    # key hash = SHA-256(name || "\n" || 0x01 || public key)[:4]
    expected_hash = hashlib.sha256(ORIGIN.encode() + b"\n\x01" + _raw(key)).digest()[:4]
    assert blob[:4] == expected_hash
    key.public_key().verify(blob[4:], (body + "\n").encode())


def test_open_returns_claims(key: Ed25519PrivateKey, verifier: Verifier) -> None:
    note = sign_checkpoint(Checkpoint(ORIGIN, 42, ROOT), key, ORIGIN)
    assert open_checkpoint(note, verifier, ORIGIN) == Checkpoint(ORIGIN, 42, ROOT)


def test_vkey_round_trip(verifier: Verifier, key: Ed25519PrivateKey) -> None:
    text = verifier.vkey()
    name, hash_hex, b64 = text.split("+", 2)
    assert name == ORIGIN
    assert base64.b64decode(b64) == b"\x01" + _raw(key)
    assert parse_vkey(text) == verifier
    with pytest.raises(CheckpointError, match="hash does not match"):
        parse_vkey(f"{name}+00000000+{b64}")
    with pytest.raises(CheckpointError, match="name"):
        parse_vkey(f"other name+{hash_hex}+{b64}")
    wrong_alg = base64.b64encode(bytes([2]) + _raw(key)).decode()
    with pytest.raises(CheckpointError, match="Ed25519"):
        parse_vkey(f"{name}+{hash_hex}+{wrong_alg}")
    with pytest.raises(CheckpointError):
        parse_vkey("just-a-name")


def test_step1_malformed_notes(key: Ed25519PrivateKey, verifier: Verifier) -> None:
    note = sign_checkpoint(Checkpoint(ORIGIN, 1, ROOT), key, ORIGIN)
    for bad, reason in (
        (note.removesuffix("\n"), "newline"),
        (note.replace("\n\n", "\n"), "signature block"),
        (note.replace("\u2014", "-"), "malformed signature line"),
        (note[:-5] + "!!!!\n", "base64"),
        (note.replace(ORIGIN + "\n", ORIGIN + "\x07\n", 1), "control"),
    ):
        with pytest.raises(CheckpointError, match=reason):
            open_checkpoint(bad, verifier, ORIGIN)


def test_step2_signature_by_another_key_is_refused(verifier: Verifier) -> None:
    other = Ed25519PrivateKey.generate()
    note = sign_checkpoint(Checkpoint(ORIGIN, 1, ROOT), other, ORIGIN)
    with pytest.raises(CheckpointError, match="no signature by the expected key"):
        open_checkpoint(note, verifier, ORIGIN)


def test_step3_edited_body_or_signature_is_refused(
    key: Ed25519PrivateKey, verifier: Verifier
) -> None:
    note = sign_checkpoint(Checkpoint(ORIGIN, 5, ROOT), key, ORIGIN)
    with pytest.raises(CheckpointError, match="signature is invalid"):
        open_checkpoint(note.replace("\n5\n", "\n6\n"), verifier, ORIGIN)
    body, sig = note.split("\n\n")
    dash, name, blob_b64 = sig.strip().split(" ")
    blob = bytearray(base64.b64decode(blob_b64))
    blob[-1] ^= 1
    edited = f"{body}\n\n{dash} {name} {base64.b64encode(bytes(blob)).decode()}\n"
    with pytest.raises(CheckpointError, match="signature is invalid"):
        open_checkpoint(edited, verifier, ORIGIN)


def test_step4_claims_checked_after_signature(key: Ed25519PrivateKey, verifier: Verifier) -> None:
    note = sign_checkpoint(Checkpoint(ORIGIN, 5, ROOT), key, ORIGIN)
    with pytest.raises(CheckpointError, match="origin"):
        open_checkpoint(note, verifier, "another.example/log")


def test_unknown_extra_signatures_are_ignored(key: Ed25519PrivateKey, verifier: Verifier) -> None:
    note = sign_checkpoint(Checkpoint(ORIGIN, 5, ROOT), key, ORIGIN)
    witness = sign_checkpoint(Checkpoint(ORIGIN, 5, ROOT), Ed25519PrivateKey.generate(), "w")
    cosigned = note + witness.split("\n\n")[1]
    assert open_checkpoint(cosigned, verifier, ORIGIN).tree_size == 5


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("o\n01\nAAAA\n", "decimal"),
        ("o\n-1\nAAAA\n", "decimal"),
        ("o\n1\n", "origin, size and root"),
        ("o\n1\nnot base64!\n", "base64"),
        ("o\n1\nAAAA\n", "32 bytes"),
        ("o\n1\n\nx\n", "origin, size and root"),
    ],
)
def test_body_parser_refuses(body: str, reason: str) -> None:
    with pytest.raises(CheckpointError, match=reason):
        parse_body(body)


def test_body_extensions_round_trip() -> None:
    cp = Checkpoint(ORIGIN, 3, ROOT, ("ext line",))
    assert parse_body(cp.body()) == cp


def test_bad_key_names_refused(key: Ed25519PrivateKey) -> None:
    with pytest.raises(CheckpointError, match="key name"):
        sign_checkpoint(Checkpoint(ORIGIN, 1, ROOT), key, "has space")
