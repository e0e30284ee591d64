"""lookup_address: selection by tax period, exact names, newest as_of, uniform refusals."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from taxaddr.crypto.keystore import FileKeyStore
from taxaddr.errors import NoUniqueMatch
from taxaddr.store import lookup as lookup_mod
from taxaddr.store import records
from taxaddr.store.importer import ImportReport
from taxaddr.store.lookup import DisclosedAddress, lookup_address

JANE_TIN, JANE = "123-45-6789", "Jane Q Doe-Testperson"
ALEX_TIN = "912-70-3456"


def test_newest_as_of_among_selected_periods_wins(
    session: Session, keystore: FileKeyStore, seeded: ImportReport
) -> None:
    both = lookup_address(session, keystore, tin=JANE_TIN, name=JANE, tax_periods=["2023", "2024"])
    assert both == DisclosedAddress(
        street="77 Newer Residence Way",
        city="Chicago",
        state="IL",
        zip="60601-1234",
        as_of="2025-03-01",
    )
    old = lookup_address(
        session, keystore, tin="123456789", name="  jane q  DOE-testperson", tax_periods=["2023"]
    )
    assert (old.street, old.as_of) == ("1234 Leakcheck Boulevard", "2024-03-01")


def test_several_names_is_no_unique_match_but_one_period_matches(
    session: Session, keystore: FileKeyStore, seeded: ImportReport
) -> None:
    with pytest.raises(NoUniqueMatch):
        lookup_address(
            session, keystore, tin=ALEX_TIN, name="Alex Ambiguous", tax_periods=["2023", "2024"]
        )
    got = lookup_address(
        session, keystore, tin=ALEX_TIN, name="Alex B Ambiguous", tax_periods=["2024"]
    )
    assert got.street == "6 Secondname Lane"


@pytest.mark.parametrize(
    "case",
    [
        ("123-45-6789", "Jane Doe-Testperson", ["2024"]),  # looser name: no
        ("123-45-6789", JANE, ["2022"]),  # no record in the period
        ("123-45-6789", JANE, []),
        ("not a tin", JANE, ["2024"]),
        ("123-45-6789", "J4NE", ["2024"]),
        ("123-45-6789", JANE, ["20x4"]),
    ],
)
def test_other_refusals(
    session: Session,
    keystore: FileKeyStore,
    seeded: ImportReport,
    case: tuple[str, str, list[str]],
) -> None:
    tin, name, periods = case
    with pytest.raises(NoUniqueMatch):
        lookup_address(session, keystore, tin=tin, name=name, tax_periods=periods)


class CountingKeyStore(FileKeyStore):
    """Counts unwraps, the expensive step, so the work on each path can be compared."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.unwraps = 0

    def unwrap(self, kek_version: int, wrapped: bytes) -> bytes:
        self.unwraps += 1
        return super().unwrap(kek_version, wrapped)


def test_unknown_tin_name_mismatch_and_several_names_are_indistinguishable(
    engine: Engine, keys_dir: Path, seeded: ImportReport, monkeypatch: pytest.MonkeyPatch
) -> None:
    keystore = CountingKeyStore(keys_dir)
    decrypts: Counter[str] = Counter()
    real_open = records.open_field

    def counting_open(cipher: object, blob: bytes, associated: bytes) -> bytes:
        decrypts[associated.rsplit(b"/", 1)[-1].decode()] += 1
        return real_open(cipher, blob, associated)  # type: ignore[arg-type]

    monkeypatch.setattr(records, "open_field", counting_open)
    cases = {
        "unknown tin": ("234-56-7891", "Alex Ambiguous"),
        "name mismatch": (ALEX_TIN, "Alex C Ambiguous"),
        "several names": (ALEX_TIN, "Alex Ambiguous"),
    }
    seen: dict[str, tuple[str, str, int, int, dict[str, int]]] = {}
    with Session(engine) as session:
        lookup_mod._dummies(keystore)  # the dummy is made once, outside the compared work
        for label, (tin, name) in cases.items():
            before, decrypts_before = keystore.unwraps, Counter(decrypts)
            with pytest.raises(NoUniqueMatch) as err:
                lookup_address(session, keystore, tin=tin, name=name, tax_periods=["2023", "2024"])
            work = dict(decrypts - decrypts_before)
            seen[label] = (
                type(err.value).__name__,
                str(err.value),
                err.value.status,
                keystore.unwraps - before,
                work,
            )
    assert len(set(map(repr, seen.values()))) == 1, seen
    _, message, status, unwraps, work = seen["unknown tin"]
    assert (message, status) == ("no unique record matches the request", 404)
    # Two requested periods: two data keys unwrapped, two names and one address decrypted.
    assert unwraps == 3
    assert work == {"name": 2, "address": 1}
    # A disclosure does the same amount of work.
    with Session(engine) as session:
        before, decrypts_before = keystore.unwraps, Counter(decrypts)
        lookup_address(
            session, keystore, tin=ALEX_TIN, name="Alex B Ambiguous", tax_periods=["2024", "2025"]
        )
        assert keystore.unwraps - before == 3
        assert dict(decrypts - decrypts_before) == {"name": 2, "address": 1}


def test_database_failure_is_database_unavailable_not_no_match(
    sqlite_engine: Engine, keystore: FileKeyStore
) -> None:
    from sqlalchemy import text

    from taxaddr.errors import DatabaseUnavailable

    with sqlite_engine.begin() as conn:
        conn.execute(text("DROP TABLE address_records"))
    with Session(sqlite_engine) as s, pytest.raises(DatabaseUnavailable, match="OperationalError"):
        lookup_address(s, keystore, tin=JANE_TIN, name=JANE, tax_periods=["2024"])
