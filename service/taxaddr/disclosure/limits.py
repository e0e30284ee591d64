"""Personal limits (§ 6103(i)(2)(A), "personally and directly engaged"): the policy
input's ``requester_usage`` and the bookkeeping behind it.

The service counts, the policy decides (``requester_caseload_exceeded``,
``requester_volume_exceeded`` against the data document's limits). Both counts leave
out this request's own case and subject, so the number "with this request counted" is
always ``n + 1``:

- ``open_cases``: distinct case references in force (nbf <= now < exp), not revoked,
  naming the requester, that the service has seen under an allowed request (a
  disclosure or a no-match: a refused request does not make a case "seen", so refused
  attempts cannot push a requester over a limit), other than this request's case;
- ``subjects_24h``: distinct subjects (keyed pseudonyms) whose address was disclosed
  to the requester in the 24 hours before now, other than this request's subject.

Both are recorded in the decision's write transaction, with its leaf.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from taxaddr.cases.verify import VerifiedCase
from taxaddr.db.repositories import limits

DAY_SECONDS = 24 * 60 * 60


@dataclass(frozen=True)
class RequesterUsage:
    """The counts of one request (without it) and whether its case is recorded."""

    open_cases: int
    subjects_24h: int
    case_recorded: bool

    def policy_input(self) -> dict[str, Any]:
        """The policy input's ``requester_usage``."""
        return {"open_cases": self.open_cases, "subjects_24h": self.subjects_24h}


def requester_usage(
    session: Session, requester_id: str, vc: VerifiedCase, subject_ref: str, now: datetime
) -> RequesterUsage:
    """The requester's usage for one request (one statement)."""
    moment = int(now.timestamp())
    cases, subjects, recorded = limits.usage(
        session,
        requester_id,
        now=moment,
        since=moment - DAY_SECONDS,
        jti=vc.jti,
        subject_ref=subject_ref,
    )
    return RequesterUsage(cases, subjects, recorded)


def record_case_seen(session: Session, vc: VerifiedCase, usage: RequesterUsage | None) -> None:
    """An allowed request under ``vc``: the case counts for every requester it names
    (written once: nothing to do when the read phase found it recorded)."""
    if usage is not None and usage.case_recorded:
        return
    limits.record_case(session, vc.jti, vc.requesters, nbf=vc.nbf, exp=vc.exp)


def record_disclosed(
    session: Session, requester_id: str, subject_ref: str, leaf_index: int, now: datetime
) -> None:
    """A disclosure to ``requester_id``: its subject counts for 24 hours."""
    limits.record_subject(
        session, requester_id, subject_ref, leaf_index=leaf_index, at=int(now.timestamp())
    )
