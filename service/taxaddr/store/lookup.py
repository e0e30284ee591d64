"""The one lookup the API uses: TIN + name + tax periods -> one current address.

Refusals are uniform: an unknown TIN, a name that does not match and several
distinct names all raise the same :class:`NoUniqueMatch` with the same message,
after comparable work. Every call runs the same indexed query and then unwraps
and decrypts exactly one name per requested tax period (a fixed dummy record
stands in for periods without a record) and exactly one address (the dummy's
when nothing is disclosed). Integrity failures are never turned into a
"no match": a tampered record or a missing KEK fails closed with its own error.
"""

from __future__ import annotations

import hmac
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy.orm import Session

from taxaddr.crypto.keystore import KeyStore
from taxaddr.db.repositories import addresses
from taxaddr.errors import ImportRowError, KeyMaterialError, NoUniqueMatch
from taxaddr.store.normalize import normalize_name, normalize_tax_period, normalize_tin
from taxaddr.store.records import (
    AddressFields,
    BlindIndexer,
    OpenedRecord,
    StoredRow,
    seal_record,
)

MAX_TAX_PERIODS = 50


@dataclass(frozen=True)
class DisclosedAddress:
    street: str
    city: str
    state: str
    zip: str
    as_of: str  # ISO date


def _stored_row(values: Sequence[Any]) -> StoredRow:
    rid, bi, period, as_of, version, wrapped, name_ct, address_ct = values
    if isinstance(as_of, str):  # SQLite hands back the ISO text SQLAlchemy stored
        as_of = date.fromisoformat(as_of)
    return StoredRow(
        int(rid),
        bytes(bi),
        str(period),
        as_of,
        int(version),
        bytes(wrapped),
        bytes(name_ct),
        bytes(address_ct),
    )


# A TIN that can never be imported (area 000): stands in for a malformed request TIN
# so that the query and the HMAC still run.
_UNUSABLE_TIN = "000000000"
_UNUSABLE_PERIOD = "0000"


class _Dummies:
    """Per key store: the blind indexer and a sealed dummy record for uniform work."""

    def __init__(self, keystore: KeyStore) -> None:
        self.indexer = BlindIndexer(keystore.blind_index_key())
        self.row = _make_dummy(keystore)


_cache: WeakKeyDictionary[KeyStore, _Dummies] = WeakKeyDictionary()
_cache_lock = threading.Lock()


def _dummies(keystore: KeyStore, *, refresh: bool = False) -> _Dummies:
    with _cache_lock:
        found = None if refresh else _cache.get(keystore)
        if found is None:
            found = _cache[keystore] = _Dummies(keystore)
        return found


def _make_dummy(keystore: KeyStore) -> StoredRow:
    version = keystore.current_kek_version()
    record_id, bi, period, as_of = 0, os.urandom(32), _UNUSABLE_PERIOD, date(1970, 1, 1)
    sealed = seal_record(
        keystore,
        version,
        record_id=record_id,
        blind_index=bi,
        tax_period=period,
        as_of=as_of,
        name="DUMMY TESTPERSON",
        address=AddressFields("0 NOWHERE", "NOWHERE", "DC", "00000"),
    )
    return StoredRow(
        record_id, bi, period, as_of, version, sealed.wrapped_key, sealed.name_ct, sealed.address_ct
    )


def _open_dummy(keystore: KeyStore) -> tuple[OpenedRecord, StoredRow]:
    dummies = _dummies(keystore)
    try:
        return OpenedRecord(keystore, dummies.row), dummies.row
    except KeyMaterialError:
        # The dummy's KEK was retired by a rotation since it was made: make a new one.
        row = _dummies(keystore, refresh=True).row
        return OpenedRecord(keystore, row), row


def lookup_address(
    session: Session,
    keystore: KeyStore,
    *,
    tin: str,
    name: str,
    tax_periods: Sequence[str],
) -> DisclosedAddress:
    """The current address of the one taxpayer with this TIN and name in these periods.

    Raises :class:`NoUniqueMatch` when no record is selected, the name does not
    match, or the selected records carry more than one distinct name.
    """
    usable = True
    try:
        want_tin = normalize_tin(tin)
        want_name = normalize_name(name)
        periods = sorted({normalize_tax_period(p) for p in tax_periods})
    except ImportRowError:
        usable, want_tin, want_name, periods = False, _UNUSABLE_TIN, "", [_UNUSABLE_PERIOD]
    if not periods or len(periods) > MAX_TAX_PERIODS:
        usable, periods = False, [_UNUSABLE_PERIOD]

    indexer = _dummies(keystore).indexer
    rows = [_stored_row(r) for r in addresses.lookup(session, indexer(want_tin), periods)]

    # One name decryption per requested period, real or dummy.
    names: set[str] = set()
    opened: list[tuple[OpenedRecord, StoredRow]] = []
    for row in rows:
        record = OpenedRecord(keystore, row)
        names.add(record.name(row.name_ct))
        opened.append((record, row))
    for _ in range(len(periods) - len(rows)):
        dummy, dummy_row = _open_dummy(keystore)
        dummy.name(dummy_row.name_ct)

    found_name = next(iter(names)) if len(names) == 1 else ""
    name_ok = hmac.compare_digest(found_name.encode(), want_name.encode())
    match = usable and bool(opened) and len(names) == 1 and name_ok

    # Exactly one more unwrap and one address decryption on every path.
    record, row = _open_dummy(keystore)
    if match:
        record, row = max(opened, key=lambda pair: pair[1].as_of)
    address = record.address(row.address_ct)
    if not match:
        raise NoUniqueMatch()
    return DisclosedAddress(
        street=address.street,
        city=address.city,
        state=address.state,
        zip=address.zip,
        as_of=row.as_of.isoformat(),
    )


def stored_names(session: Session, keystore: KeyStore, tin: str) -> set[str]:
    """The normalized names of every stored record of ``tin`` (normalized), any tax
    period; empty when the TIN was never imported (taxpayer accounting only)."""
    indexer = _dummies(keystore).indexer
    names: set[str] = set()
    for values in addresses.rows_of(session, indexer(tin)):
        row = _stored_row(values)
        names.add(OpenedRecord(keystore, row).name(row.name_ct))
    return names
