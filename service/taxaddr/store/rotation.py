"""KEK rotation: re-wrap every record's data key under a new KEK version.

Ciphertexts are not touched (the KEK version is not part of their associated
data). Work is done in batches, each its own transaction; every new wrap is
checked by unwrapping it again before it is written, and a row is only
updated if it still holds the wrapped key that was read. A run that stops
half-way leaves every record readable (each row is on its old or on the new
KEK, both still present); the next run re-wraps whatever is still on an old
version. The audit log's encrypted accounting records are sealed under the
same KEKs, so they are re-wrapped in the same run, and an old KEK is retired
only once no address record and no accounting record uses it.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from taxaddr.audit import admin
from taxaddr.audit.accounting import accounting_kek_versions, rewrap_accounting
from taxaddr.crypto.keystore import KeyStore
from taxaddr.db import bulk_write_connection, write_transaction
from taxaddr.db.repositories import addresses
from taxaddr.errors import DatabaseUnavailable, IntegrityError, UsageError

DEFAULT_BATCH_SIZE = 1000


@dataclass
class RotationReport:
    new_version: int
    rewrapped: int = 0
    accounting_rewrapped: int = 0
    retired: list[int] = field(default_factory=list)
    still_in_use: list[int] = field(default_factory=list)


def rotate_kek(
    engine: Engine,
    keystore: KeyStore,
    *,
    actor: admin.Actor,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_progress: Callable[[int], None] | None = None,
) -> RotationReport:
    """Make a new KEK current, re-wrap every data key under it, retire unused old KEKs.

    The new KEK is a trust change: its ``kek_rotated`` leaf is appended right after the
    key store made it, before anything is wrapped under it. If that append fails the
    new KEK is retired again (nothing uses it yet) and the rotation stops.
    """
    if not 1 <= batch_size <= 100_000:
        raise UsageError("--batch-size must be between 1 and 100000")
    keystore.current_kek_version()  # refuse early when there is no KEK at all
    target = keystore.new_kek_version()
    try:
        with write_transaction(engine) as session:
            admin.record_change(session, actor, admin.KEK_ROTATED, admin.kek_target(target))
    except Exception:
        keystore.retire_kek(target)
        raise
    report = RotationReport(new_version=target)
    after = -1
    try:
        while True:
            with bulk_write_connection(engine) as conn:
                batch = addresses.keys_not_under(conn, target, after=after, limit=batch_size)
                if not batch:
                    break
                params = []
                for record_id, old_version, wrapped in batch:
                    data_key = keystore.unwrap(old_version, bytes(wrapped))
                    rewrapped = keystore.wrap_with(target, data_key)
                    if not hmac.compare_digest(keystore.unwrap(target, rewrapped), data_key):
                        raise IntegrityError("a re-wrapped data key did not unwrap to itself")
                    params.append(
                        {
                            "b_id": record_id,
                            "b_old": old_version,
                            "b_wrapped": wrapped,
                            "kek_version": target,
                            "wrapped_key": rewrapped,
                        }
                    )
                addresses.set_keys(conn, params)
                after = batch[-1][0]
            report.rewrapped += len(batch)
            if on_progress is not None:
                on_progress(report.rewrapped)
        with write_transaction(engine) as session:
            report.accounting_rewrapped = rewrap_accounting(session, keystore)
        with write_transaction(engine) as session:
            in_use = addresses.kek_versions(session)
            in_use |= accounting_kek_versions(session)
    except SQLAlchemyError as exc:
        raise DatabaseUnavailable(
            f"database error during KEK rotation ({type(exc).__name__})"
        ) from None
    for version in keystore.kek_versions():
        if version == target:
            continue
        if version in in_use:
            report.still_in_use.append(version)
        else:
            keystore.retire_kek(version)
            report.retired.append(version)
    return report
