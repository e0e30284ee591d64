"""Case usage: first sighting, quota reservation (also under concurrency), listing."""

from __future__ import annotations

import dataclasses
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from taxaddr.cases.usage import list_cases, record_case, reserve_disclosure, usage
from taxaddr.cases.verify import VerifiedCase
from taxaddr.db import make_engine, write_transaction
from taxaddr.db.schema import CaseReference
from taxaddr.errors import CaseReferenceMalformed, DatabaseUnavailable
from tests.cases.casekit import NOW


def make_case(jti: str = "jti-1", *, number: str = "1:26-cr-00123", quota: int = 5) -> VerifiedCase:
    return VerifiedCase(
        iss="test-court",
        kid="k1",
        jti=jti,
        token_sha256="ab" * 32,
        number=number,
        court="D.D.C.",
        proceeding="criminal",
        statutes=("8 U.S.C. 1326",),
        agency="ICE-HSI",
        requesters=("hsi-agent-0042",),
        tax_periods=("2024",),
        max_disclosures=quota,
        iat=0,
        nbf=0,
        exp=10,
        subjects=("123456789",),
    )


def test_record_case_once_and_never_the_token_or_subjects(engine: Engine) -> None:
    vc = make_case()
    with write_transaction(engine) as s:
        assert usage(s, vc.jti) == 0
        record_case(s, vc, now=NOW)
        record_case(s, vc)  # a second sighting changes nothing
    with Session(engine) as s:
        row = s.scalars(select(CaseReference)).one()
        assert (row.jti, row.iss, row.number, row.max_disclosures) == ("jti-1", "test-court",
                                                                        vc.number, 5)  # fmt: skip
        assert row.disclosures_used == 0
        assert row.token_sha256 == vc.token_sha256
        stored = " ".join(str(getattr(row, c.key)) for c in CaseReference.__table__.columns)
        assert "123456789" not in stored
        assert usage(s, vc.jti) == 0


@pytest.mark.parametrize(
    "change",
    [{"iss": "other"}, {"number": "2:26-cr-1"}, {"agency": "CBP"}, {"max_disclosures": 50},
     {"court": "S.D.N.Y."}],
)  # fmt: skip
def test_reused_jti_with_other_facts_is_refused(engine: Engine, change: dict[str, object]) -> None:
    vc = make_case()
    with write_transaction(engine) as s:
        record_case(s, vc)
    other = dataclasses.replace(vc, **change)  # type: ignore[arg-type]
    with pytest.raises(CaseReferenceMalformed), write_transaction(engine) as s:
        record_case(s, other)
    with pytest.raises(CaseReferenceMalformed), write_transaction(engine) as s:
        reserve_disclosure(s, other)
    # a re-signed token with the same facts (other hash) is the same case
    with write_transaction(engine) as s:
        assert reserve_disclosure(s, dataclasses.replace(vc, token_sha256="cd" * 32))


def test_reserve_until_quota_then_false(engine: Engine) -> None:
    vc = make_case(quota=3)
    results = []
    for _ in range(5):
        with write_transaction(engine) as s:
            results.append(reserve_disclosure(s, vc))
    assert results == [True, True, True, False, False]
    with Session(engine) as s:
        assert usage(s, vc.jti) == 3


def test_reservation_rolls_back_with_its_transaction(engine: Engine) -> None:
    vc = make_case(quota=1)

    def reserve_then_fail() -> None:
        with write_transaction(engine) as s:
            assert reserve_disclosure(s, vc)
            raise RuntimeError("audit append failed")

    with pytest.raises(RuntimeError):
        reserve_then_fail()
    with write_transaction(engine) as s:
        assert reserve_disclosure(s, vc)


def test_concurrent_reservations_never_exceed_quota(engine: Engine) -> None:
    vc = make_case(quota=5)
    start = threading.Barrier(20)

    def attempt(_: int) -> bool:
        start.wait()
        with write_transaction(engine) as s:
            return reserve_disclosure(s, vc)

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(attempt, range(20)))
    assert results.count(True) == 5
    with Session(engine) as s:
        assert usage(s, vc.jti) == 5


def test_list_cases(engine: Engine) -> None:
    with write_transaction(engine) as s:
        record_case(s, make_case("jti-b", number="2:26-cr-00002", quota=2))
        record_case(s, make_case("jti-a", number="1:26-cr-00001", quota=1))
        assert reserve_disclosure(s, make_case("jti-b", number="2:26-cr-00002", quota=2))
    with Session(engine) as s:
        rows = list_cases(s)
    assert [(r.number, r.jti, r.disclosures_used, r.max_disclosures) for r in rows] == [
        ("1:26-cr-00001", "jti-a", 0, 1),
        ("2:26-cr-00002", "jti-b", 1, 2),
    ]
    assert rows[0].court == "D.D.C."


def test_driver_errors_surface_as_sqlalchemy_errors(tmp_path: Path) -> None:
    """The plain-SQL hot path raises SQLAlchemy's errors (the API maps them to 503)."""
    bare = make_engine(f"sqlite:///{tmp_path / 'unmigrated.db'}")
    try:
        with Session(bare) as s, pytest.raises(DBAPIError):
            usage(s, "jti-1")
        with pytest.raises(DatabaseUnavailable), write_transaction(bare) as s:
            reserve_disclosure(s, make_case())
    finally:
        bare.dispose()
