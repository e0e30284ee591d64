"""Property: no single-byte change to a valid case reference survives verification."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session

from taxaddr.cases.verify import verify_case_reference
from taxaddr.config import Settings
from taxaddr.errors import CaseError
from tests.cases.casekit import NOW, TokenMaker


@hypothesis_settings(
    max_examples=400,
    deadline=None,
    # the fixtures are read-only for this test, so sharing them across examples is sound
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_any_single_byte_mutation_is_rejected(
    data: st.DataObject, tokens: TokenMaker, session: Session, settings: Settings
) -> None:
    token = tokens.make()
    verify_case_reference(token, session=session, settings=settings, now=NOW)
    raw = bytearray(token.encode("ascii"))
    at = data.draw(st.integers(0, len(raw) - 1), label="position")
    new = data.draw(st.integers(0, 255).filter(lambda b: b != raw[at]), label="byte")
    raw[at] = new
    mutated = raw.decode("latin-1")
    with pytest.raises(CaseError):
        verify_case_reference(mutated, session=session, settings=settings, now=NOW)


@hypothesis_settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(cut=st.integers(1, 200))
def test_truncation_is_rejected(
    cut: int, tokens: TokenMaker, session: Session, settings: Settings
) -> None:
    token = tokens.make()
    with pytest.raises(CaseError):
        verify_case_reference(token[:-cut], session=session, settings=settings, now=NOW)
