"""Tables of taxaddr.store (on the shared :class:`taxaddr.db.Base`).

``address_records`` holds one row per (TIN, tax period). Nothing in it is a
plaintext TIN, name, street, city or ZIP:

* ``blind_index`` is HMAC-SHA-256 of the normalized TIN under the blind-index key;
* ``name_ct`` and ``address_ct`` are AES-256-GCM ciphertexts under the record's
  own data key, whose associated data binds the record id, blind index, tax
  period, ``as_of`` and field name (so no column can be swapped or edited
  without decryption failing);
* ``wrapped_key`` is that data key wrapped by KEK version ``kek_version``.

``tax_period`` and ``as_of`` stay plain: neither identifies anyone on its own,
and the importer needs ``as_of`` to keep the newest address without decrypting.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import cast

from sqlalchemy import (
    BigInteger,
    Date,
    DateTime,
    Integer,
    LargeBinary,
    String,
    Table,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from taxaddr.db import Base

ADDRESS_TABLE = "address_records"


class AddressRecord(Base):
    __tablename__ = ADDRESS_TABLE
    __table_args__ = (UniqueConstraint("blind_index", "tax_period"),)

    # Assigned by the importer (max + 1 under its write lock) so the id is known
    # before sealing; an INTEGER key is SQLite's rowid, so inserts append.
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=False
    )
    blind_index: Mapped[bytes] = mapped_column(LargeBinary(32), nullable=False)
    tax_period: Mapped[str] = mapped_column(String(4), nullable=False)
    as_of: Mapped[date] = mapped_column(Date, nullable=False)
    kek_version: Mapped[int] = mapped_column(Integer, nullable=False)
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary(64), nullable=False)
    name_ct: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    address_ct: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


address_records: Table = cast(Table, AddressRecord.__table__)

__all__ = ["ADDRESS_TABLE", "AddressRecord", "address_records"]
