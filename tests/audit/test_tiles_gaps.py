"""export-tiles never writes a short tile: a log missing stored hashes or leaves is
refused with one line, and no checkpoint points at the mirror."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from taxaddr.audit import tiles
from taxaddr.audit.log import bulk_append
from taxaddr.cli import run
from taxaddr.db import make_engine, write_transaction
from taxaddr.errors import NotFound
from taxaddr.migrate import upgrade
from tests.audit import tlog_ref
from tests.audit.conftest import make_leaf


@pytest.mark.parametrize(
    "damage",
    [
        "DELETE FROM audit_nodes WHERE level = 0 AND node_index = 300",
        "DELETE FROM audit_nodes WHERE level = 8 AND node_index = 0",
    ],
)
def test_a_log_with_missing_hashes_is_not_exported(
    env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: str
) -> None:
    url = env["TAXADDR_DATABASE_URL"]
    upgrade(url)
    engine = make_engine(url)
    with write_transaction(engine) as session:
        bulk_append(session, [make_leaf(i) for i in range(400)])
    with engine.begin() as conn:
        conn.execute(text(damage))
    engine.dispose()
    mirror = tmp_path / "mirror"
    assert run(["audit", "export-tiles", "--out", str(mirror)]) != 0
    err = capsys.readouterr().err
    assert "missing stored subtree hashes" in err
    assert err.count("\n") == 1
    assert not (mirror / "checkpoint").exists()


def test_tiles_read_the_same_on_sqlite_and_postgresql(engine: Engine) -> None:
    """The tile reads run compiled statements on the driver cursor of either database."""
    with write_transaction(engine) as session:
        bulk_append(session, [make_leaf(i) for i in range(300)])
    with Session(engine) as session:
        hashes = tlog_ref.split_hashes(tiles.hash_tile(session, 0, 0, 256))
        entries = tlog_ref.split_bundle(tiles.entry_bundle(session, 0, 256))
        partial = tlog_ref.split_bundle(tiles.entry_bundle(session, 1, 44))
        with pytest.raises(NotFound):
            tiles.entry_bundle(session, 1, 45)
    assert [tlog_ref.h_leaf(e) for e in entries] == hashes
    assert len(partial) == 44
    assert b'"index":256' in partial[0]
