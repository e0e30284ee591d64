"""KEK rotation: every record stays readable, the old KEK can be deleted, resumable."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from taxaddr.audit.admin import cli_actor
from taxaddr.cli import run
from taxaddr.crypto.keystore import FileKeyStore
from taxaddr.db.schema import address_records as t
from taxaddr.errors import IntegrityError, KeyMaterialError
from taxaddr.store.importer import import_file
from taxaddr.store.lookup import lookup_address
from taxaddr.store.rotation import rotate_kek
from taxaddr.store.sample import generate
from tests.store.store_helpers import SEED_ROWS, write_csv


def _all_readable(engine: Engine, keystore: FileKeyStore, rows: list[dict[str, str]]) -> None:
    with Session(engine) as s:
        for row in rows:
            got = lookup_address(
                s, keystore, tin=row["tin"], name=row["name"], tax_periods=[row["tax_period"]]
            )
            assert got.street == row["street"]


def _versions(engine: Engine) -> set[int]:
    with engine.connect() as conn:
        return set(conn.execute(select(t.c.kek_version)).scalars())


def _sample_rows(n: int) -> list[dict[str, str]]:
    return [dict(zip(r.__dataclass_fields__, r.as_row(), strict=True)) for r in generate(n)]


def test_rotation_rewraps_everything_and_old_kek_can_be_deleted(
    engine: Engine, keystore: FileKeyStore, keys_dir: Path, tmp_path: Path
) -> None:
    rows = _sample_rows(57)
    assert import_file(engine, keystore, write_csv(tmp_path / "a.csv", rows)).ok
    report = rotate_kek(engine, keystore, batch_size=10, actor=cli_actor())
    assert (report.new_version, report.rewrapped, report.retired) == (2, 57, [1])
    assert _versions(engine) == {2}
    assert not (keys_dir / "kek" / "v1.key").exists()
    (keys_dir / "kek" / "v1.key.retired").unlink()  # the old KEK is no longer needed
    fresh = FileKeyStore(keys_dir)
    _all_readable(engine, fresh, rows[:20] + rows[-5:])
    # New imports use the new KEK, and a second rotation works the same way.
    assert import_file(engine, fresh, write_csv(tmp_path / "b.csv", SEED_ROWS)).ok
    assert rotate_kek(engine, fresh, actor=cli_actor()).retired == [2]
    _all_readable(engine, FileKeyStore(keys_dir), SEED_ROWS[1:3])


class FailingKeyStore(FileKeyStore):
    """Fails a wrap after ``budget`` successful ones (a crash in the middle of a run)."""

    def __init__(self, root: Path, budget: int) -> None:
        super().__init__(root)
        self.budget = budget

    def wrap_with(self, version: int, data_key: bytes) -> bytes:
        if self.budget == 0:
            raise KeyMaterialError("simulated HSM outage")
        self.budget -= 1
        return super().wrap_with(version, data_key)


def test_interrupted_rotation_keeps_records_readable_and_next_run_completes(
    engine: Engine, keystore: FileKeyStore, keys_dir: Path, tmp_path: Path
) -> None:
    rows = _sample_rows(40)
    assert import_file(engine, keystore, write_csv(tmp_path / "a.csv", rows)).ok
    with pytest.raises(KeyMaterialError):
        rotate_kek(engine, FailingKeyStore(keys_dir, budget=25), batch_size=10, actor=cli_actor())
    assert _versions(engine) == {1, 2}  # two whole batches moved, the rest untouched
    assert (keys_dir / "kek" / "v1.key").exists()  # not retired while in use
    _all_readable(engine, FileKeyStore(keys_dir), rows)
    report = rotate_kek(engine, FileKeyStore(keys_dir), batch_size=10, actor=cli_actor())
    assert report.new_version == 3
    assert report.rewrapped == 40
    assert sorted(report.retired) == [1, 2]
    assert _versions(engine) == {3}
    _all_readable(engine, FileKeyStore(keys_dir), rows)


def test_rotation_refuses_a_tampered_key_and_retires_nothing(
    engine: Engine, keystore: FileKeyStore, keys_dir: Path, tmp_path: Path
) -> None:
    assert import_file(engine, keystore, write_csv(tmp_path / "a.csv", SEED_ROWS)).ok
    with engine.begin() as conn:
        rid, wrapped = conn.execute(select(t.c.id, t.c.wrapped_key).limit(1)).one()
        conn.execute(t.update().where(t.c.id == rid).values(wrapped_key=bytes(wrapped)[::-1]))
    with pytest.raises(IntegrityError):
        rotate_kek(engine, keystore, actor=cli_actor())
    assert (keys_dir / "kek" / "v1.key").exists()


def test_cli_rotate_kek(
    env: dict[str, str],
    tmp_path: Path,
    keys_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run(["db", "upgrade"]) == 0
    assert run(["import", str(write_csv(tmp_path / "a.csv", SEED_ROWS))]) == 0
    capsys.readouterr()
    assert run(["keys", "rotate-kek", "--batch-size", "2"]) == 0
    out = capsys.readouterr().out
    assert "KEK v2 is current; re-wrapped 5 data keys; retired: v1" in out
    assert sorted(p.name for p in (keys_dir / "kek").iterdir()) == ["v1.key.retired", "v2.key"]


def test_rotation_rewraps_accounting_records_before_retiring_the_old_kek(
    engine: Engine, keystore: FileKeyStore, keys_dir: Path
) -> None:
    from taxaddr.audit.accounting import read_accounting, record_accounting
    from taxaddr.audit.leaf import LeafInput
    from taxaddr.audit.log import append_leaf
    from taxaddr.db import write_transaction

    leaf_input = LeafInput(
        request_id="9b2f3c1e-0000-4000-8000-000000000001",
        requester_id="agent-1",
        agency="ICE-HSI",
        role="requester",
        case_jti=None,
        case_number_hash=None,
        statute=None,
        outcome="denied",
        reason_codes=("role_forbidden",),
        subject_ref=None,
        policy_version="test",
    )
    with write_transaction(engine) as session:
        leaf = append_leaf(session, leaf_input)
        record_accounting(session, keystore, leaf.index, {"why": "accounting survives rotation"})
    report = rotate_kek(engine, keystore, actor=cli_actor())
    assert report.accounting_rewrapped == 1
    assert report.retired == [1]
    (keys_dir / "kek" / "v1.key.retired").unlink()
    with write_transaction(engine) as session:
        detail = read_accounting(session, FileKeyStore(keys_dir), leaf.index)
    assert detail == {"why": "accounting survives rotation"}
