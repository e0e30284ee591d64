"""Fixtures for the audit log tests: settings, leaves and a populated log."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from taxaddr.audit.leaf import LeafInput, case_number_hash
from taxaddr.audit.log import append_leaf
from taxaddr.config import Settings
from taxaddr.db import write_transaction

ORIGIN = "taxaddr.test/audit"
BASE_TIME = datetime(2026, 11, 25, 16, 0, 0, 123456, tzinfo=UTC)


def make_leaf(i: int, **overrides: object) -> LeafInput:
    """A leaf like the API appends; varies agency, outcome and reasons with ``i``."""
    outcome = ("disclosed", "denied", "no_match", "denied")[i % 4]
    reasons: tuple[str, ...] = ()
    if outcome == "denied":
        reasons = (
            ("statute_not_criminal", "reason_insufficient") if i % 8 == 1 else ("case_expired",)
        )
    elif outcome == "no_match":
        reasons = ("no_unique_match",)
    values: dict[str, object] = {
        "request_id": str(uuid.UUID(int=i + 1)),
        "requester_id": f"agent-{i % 3}",
        "agency": ("ICE-HSI", "FBI", "DEA")[i % 3],
        "role": "requester",
        "case_jti": f"jti-{i % 5}",
        "case_number_hash": case_number_hash(f"1:26-cr-{i % 5:05d}"),
        "statute": "8 U.S.C. 1326",
        "outcome": outcome,
        "reason_codes": reasons,
        "subject_ref": f"{i:064x}",
        "policy_version": "test-1",
        "time": BASE_TIME + timedelta(hours=i),
    }
    values.update(overrides)
    return LeafInput(**values)  # type: ignore[arg-type]


@pytest.fixture
def settings(db_url: str, keys_dir: Path) -> Settings:
    return Settings(env="test", database_url=db_url, keys_dir=keys_dir, audit_origin=ORIGIN)


@pytest.fixture
def sqlite_settings(sqlite_url: str, keys_dir: Path) -> Settings:
    from taxaddr.migrate import upgrade

    upgrade(sqlite_url)
    return Settings(env="test", database_url=sqlite_url, keys_dir=keys_dir, audit_origin=ORIGIN)


@pytest.fixture
def append_n() -> Callable[..., None]:
    def _append(engine: Engine, n: int, start: int = 0) -> None:
        for i in range(start, start + n):
            with write_transaction(engine) as session:
                append_leaf(session, make_leaf(i))

    return _append
