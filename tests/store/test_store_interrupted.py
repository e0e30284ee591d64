"""An import killed mid-file (SIGKILL) leaves only whole batches; a re-run completes it.

On SQLite each batch is its own transaction; on PostgreSQL consecutive batches share one
(``PG_TRANSACTION_ROWS``): the five whole batches fed are one transaction there."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import func, select

from taxaddr.db import make_engine
from taxaddr.db.schema import address_records
from taxaddr.migrate import upgrade
from taxaddr.store.importer import PG_TRANSACTION_ROWS
from taxaddr.store.sample import write_sample

BATCH = 1000
CLI = [sys.executable, "-c", "from taxaddr.cli import main; main()"]


def _count(url: str) -> int:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(address_records)).scalar_one())
    finally:
        engine.dispose()


def test_killed_import_leaves_whole_batches_and_rerun_completes(
    tmp_path: Path, keys_dir: Path, db_url: str
) -> None:
    url = db_url
    upgrade(url)
    full = tmp_path / "full.csv"
    total = write_sample(full, 7 * BATCH, seed=7)
    lines = full.read_text().splitlines(keepends=True)
    # The importer reads a FIFO we feed: we know exactly where it is when we kill it.
    fifo = tmp_path / "feed.csv"
    os.mkfifo(fifo)
    env = dict(
        os.environ,
        TAXADDR_ENV="test",
        TAXADDR_KEYS_DIR=str(keys_dir),
        TAXADDR_DATABASE_URL=url,
    )
    proc = subprocess.Popen(
        [*CLI, "import", str(fifo), "--batch-size", str(BATCH)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        whole = 5 * BATCH
        assert whole == PG_TRANSACTION_ROWS  # PostgreSQL: exactly one transaction
        with fifo.open("w") as feed:
            feed.writelines(lines[: 1 + whole + BATCH // 2])  # header, 5 batches, half a batch
            feed.flush()
            deadline = time.monotonic() + 120
            while _count(url) < whole:
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "importer made no progress"
                time.sleep(0.05)
            assert proc.poll() is None  # still running, in the middle of the file
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert _count(url) == whole  # whole batches only: the half batch is not there
    rerun = subprocess.run(
        [*CLI, "import", str(full)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert rerun.returncode == 0, rerun.stderr
    assert f"imported {total} of {total} rows" in rerun.stdout
    assert _count(url) == total  # re-run completes it, with no duplicates
