"""Envelope encryption at rest: AAD binding, tampering, wrong/missing KEK, no plaintext."""

from __future__ import annotations

import os
import sqlite3
from datetime import date
from pathlib import Path
from urllib.parse import urlparse

import pytest
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from taxaddr.cli import run
from taxaddr.crypto.keystore import FileKeyStore
from taxaddr.db.schema import address_records as t
from taxaddr.errors import IntegrityError, KeyMaterialError
from taxaddr.store.importer import ImportReport
from taxaddr.store.lookup import lookup_address
from taxaddr.store.normalize import normalize_tin
from taxaddr.store.records import BlindIndexer
from tests.pg import PgCluster
from tests.store.store_helpers import SEED_ROWS

JANE, JOHN = SEED_ROWS[1], SEED_ROWS[2]


def _lookup(engine: Engine, keystore: FileKeyStore, row: dict[str, str]) -> str:
    with Session(engine) as s:
        got = lookup_address(
            s, keystore, tin=row["tin"], name=row["name"], tax_periods=[row["tax_period"]]
        )
    return got.street


def _id_of(engine: Engine, keystore: FileKeyStore, row: dict[str, str]) -> int:
    bi = BlindIndexer(keystore.blind_index_key())(normalize_tin(row["tin"]))
    with engine.connect() as conn:
        return int(
            conn.execute(
                select(t.c.id).where(t.c.blind_index == bi, t.c.tax_period == row["tax_period"])
            ).scalar_one()
        )


def test_seeded_records_are_readable(
    engine: Engine, keystore: FileKeyStore, seeded: ImportReport
) -> None:
    assert _lookup(engine, keystore, JANE) == JANE["street"]
    assert _lookup(engine, keystore, JOHN) == JOHN["street"]


@pytest.mark.parametrize(
    "columns", [("address_ct",), ("name_ct",), ("wrapped_key", "name_ct", "address_ct")]
)
def test_swapped_ciphertexts_between_records_fail(
    engine: Engine, keystore: FileKeyStore, seeded: ImportReport, columns: tuple[str, ...]
) -> None:
    jane_id, john_id = _id_of(engine, keystore, JANE), _id_of(engine, keystore, JOHN)
    with engine.begin() as conn:
        cols = [t.c[c] for c in columns]
        a = conn.execute(select(*cols).where(t.c.id == jane_id)).one()
        b = conn.execute(select(*cols).where(t.c.id == john_id)).one()
        conn.execute(update(t).where(t.c.id == jane_id).values(dict(zip(columns, b, strict=True))))
        conn.execute(update(t).where(t.c.id == john_id).values(dict(zip(columns, a, strict=True))))
    for row in (JANE, JOHN):
        with pytest.raises(IntegrityError):
            _lookup(engine, keystore, row)


def test_edited_plain_as_of_fails(
    engine: Engine, keystore: FileKeyStore, seeded: ImportReport
) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(t)
            .where(t.c.id == _id_of(engine, keystore, SEED_ROWS[0]))
            .values(as_of=date(2024, 3, 2))
        )
    with pytest.raises(IntegrityError):
        _lookup(engine, keystore, SEED_ROWS[0])


def test_tampered_wrapped_key_fails(
    engine: Engine, keystore: FileKeyStore, seeded: ImportReport
) -> None:
    rid = _id_of(engine, keystore, JOHN)
    with engine.begin() as conn:
        wrapped = bytearray(conn.execute(select(t.c.wrapped_key).where(t.c.id == rid)).scalar_one())
        wrapped[5] ^= 0x01
        conn.execute(update(t).where(t.c.id == rid).values(wrapped_key=bytes(wrapped)))
    with pytest.raises(IntegrityError, match="wrapped data key failed to unwrap"):
        _lookup(engine, keystore, JOHN)


def test_wrong_kek_fails_closed(engine: Engine, keys_dir: Path, seeded: ImportReport) -> None:
    kek = keys_dir / "kek" / "v1.key"
    kek.chmod(0o600)
    kek.write_bytes(os.urandom(32))
    with pytest.raises(IntegrityError):
        _lookup(engine, FileKeyStore(keys_dir), JANE)


def test_missing_kek_fails_closed(engine: Engine, keys_dir: Path, seeded: ImportReport) -> None:
    (keys_dir / "kek" / "v1.key").unlink()
    (keys_dir / "kek" / "v2.key").write_bytes(os.urandom(32))  # another KEK is present
    with pytest.raises(KeyMaterialError, match="KEK version 1 missing"):
        _lookup(engine, FileKeyStore(keys_dir), JANE)


def test_missing_kek_is_one_cli_line(
    env: dict[str, str], tmp_path: Path, keys_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.store.store_helpers import write_csv

    assert run(["db", "upgrade"]) == 0
    assert run(["import", str(write_csv(tmp_path / "a.csv", SEED_ROWS))]) == 0
    (keys_dir / "kek" / "v1.key").unlink()
    (keys_dir / "kek" / "v2.key").write_bytes(os.urandom(32))
    capsys.readouterr()
    assert run(["keys", "rotate-kek"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("taxaddr: keys_unavailable: KEK version 1 missing")


def _secrets() -> list[bytes]:
    found: list[bytes] = []
    for row in SEED_ROWS:
        found += [row["tin"].encode(), row["tin"].replace("-", "").encode()]
        found += [row["name"].encode(), row["name"].upper().encode(), row["street"].encode()]
        found += [row["street"].upper().encode()]
    return found


def test_sqlite_file_holds_no_plaintext(
    sqlite_engine: Engine, keystore: FileKeyStore, tmp_path: Path, sqlite_url: str
) -> None:
    from taxaddr.store.importer import import_file
    from tests.store.store_helpers import write_csv

    assert import_file(sqlite_engine, keystore, write_csv(tmp_path / "s.csv", SEED_ROWS)).ok
    path = Path(sqlite_url.removeprefix("sqlite:///"))
    # Both the WAL and the main file: read them before and after a checkpoint.
    blobs = [p.read_bytes() for p in path.parent.glob(path.name + "*")]
    sqlite_engine.dispose()
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    blobs.append(path.read_bytes())
    assert sum(len(b) for b in blobs) > 0
    for blob in blobs:
        for secret in _secrets():
            assert secret not in blob
    # The check is able to see plaintext: the table name is in the file.
    assert b"address_records" in blobs[-1]


@pytest.mark.postgres
def test_postgres_dump_holds_no_plaintext(
    pg_cluster: PgCluster, pg_url: str, keystore: FileKeyStore, tmp_path: Path
) -> None:
    from taxaddr.db import make_engine
    from taxaddr.migrate import upgrade
    from taxaddr.store.importer import import_file
    from tests.store.store_helpers import write_csv

    upgrade(pg_url)
    engine = make_engine(pg_url)
    assert import_file(engine, keystore, write_csv(tmp_path / "s.csv", SEED_ROWS)).ok
    engine.dispose()
    dump = pg_cluster.dump(urlparse(pg_url).path.lstrip("/"))
    assert b"COPY public.address_records" in dump
    for secret in _secrets():
        assert secret not in dump
