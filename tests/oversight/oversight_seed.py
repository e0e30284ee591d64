"""Seeding helpers for oversight tests: audit leaves and case references, appended directly."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, insert

from taxaddr.audit.leaf import LeafInput, case_number_hash
from taxaddr.audit.log import bulk_append
from taxaddr.crypto.envelope import subject_ref
from taxaddr.db import write_transaction
from taxaddr.db.schema import CaseReference

# Synthetic people (no real person): they must never show up in oversight output.
TINS = ("123-45-6789", "900-70-1234", "234-56-7890")
NAMES = ("JANE Q DOE", "JOHN ROE", "MARY MAJOR")
STREETS = ("1600 Sample Street NW", "42 Example Avenue", "7 Synthetic Road")

CASE_A = ("1:26-cr-00123", "D.D.C.", "jti-case-a", 5)
CASE_B = ("2:26-cr-00456", "S.D.N.Y.", "jti-case-b", 2)
# disclosures_used as the disclosure path would have left it after EVENTS
USED = {"jti-case-a": 4, "jti-case-b": 1}


@dataclass(frozen=True)
class Event:
    time: datetime
    agency: str
    statute: str | None
    outcome: str
    reasons: tuple[str, ...]
    case: tuple[str, str, str, int] | None
    subject: int | None  # index into TINS


def day(d: int, hour: int = 12) -> datetime:
    return datetime(2026, 11, d, hour, 0, 0, tzinfo=UTC)


# The scripted events most tests use; expected counts are spelled out in the tests.
EVENTS: tuple[Event, ...] = (
    Event(day(2), "ICE-HSI", "8 U.S.C. 1326", "disclosed", (), CASE_A, 0),
    Event(day(2), "ICE-HSI", "8 U.S.C. 1326", "disclosed", (), CASE_A, 1),
    Event(
        day(2, 13),
        "ICE-HSI",
        "8 U.S.C. 1227",
        "denied",
        ("statute_not_criminal", "statute_not_on_case"),
        CASE_A,
        0,
    ),
    Event(day(3), "ICE-HSI", "8 U.S.C. 1326", "disclosed", (), CASE_A, 0),
    Event(day(3), "FBI", "18 U.S.C. 1028", "no_match", ("no_unique_match",), CASE_B, 2),
    Event(day(3), "FBI", "18 U.S.C. 1028", "disclosed", (), CASE_B, 2),
    Event(day(4), "FBI", None, "denied", ("case_signature_invalid",), None, None),
    Event(day(4), "FBI", "18 U.S.C. 1028", "denied", ("reason_insufficient",), CASE_B, 1),
    # outside the usual 2026-11-02..2026-11-04 period
    Event(day(1, 23), "ICE-HSI", "8 U.S.C. 1326", "disclosed", (), CASE_A, 2),
    Event(day(5, 0), "ICE-HSI", "8 U.S.C. 1326", "denied", ("case_quota_exhausted",), CASE_A, 1),
)


def leaf_input(event: Event, pseudonym_key: bytes) -> LeafInput:
    case = event.case
    return LeafInput(
        request_id=str(uuid.uuid4()),
        requester_id="hsi-agent-0042" if event.agency == "ICE-HSI" else "fbi-agent-7",
        agency=event.agency,
        role="requester",
        case_jti=case[2] if case else None,
        case_number_hash=case_number_hash(case[0]) if case else None,
        statute=event.statute,
        outcome=event.outcome,
        reason_codes=event.reasons,
        subject_ref=(
            subject_ref(pseudonym_key, TINS[event.subject].replace("-", ""))
            if event.subject is not None
            else None
        ),
        policy_version="test-1",
        time=event.time,
    )


def record_cases(engine: Engine, cases: Sequence[tuple[str, str, str, int]]) -> None:
    with write_transaction(engine) as session:
        session.execute(
            insert(CaseReference),
            [
                {
                    "jti": jti,
                    "iss": "dev-court",
                    "token_sha256": "0" * 64,
                    "number": number,
                    "court": court,
                    "agency": "ICE-HSI" if number == CASE_A[0] else "FBI",
                    "max_disclosures": quota,
                    "disclosures_used": USED.get(jti, 0),
                    "first_seen_at": day(1, 0),
                }
                for number, court, jti, quota in cases
            ],
        )


def seed(engine: Engine, pseudonym_key: bytes, events: Sequence[Event] = EVENTS) -> None:
    record_cases(engine, [CASE_A, CASE_B])
    with write_transaction(engine) as session:
        bulk_append(session, [leaf_input(e, pseudonym_key) for e in events])
