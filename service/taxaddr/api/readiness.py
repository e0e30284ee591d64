"""Honest readiness (``GET /readyz``) and the checks ``taxaddr serve`` makes before it listens.

Ready means a disclosure could be made now, so each dependency is exercised the way
a disclosure uses it, not merely reached:

1. database: the tables are readable and a write goes through (a rolled-back update
   of the audit head, in the writers' queue: a read-only database is not ready);
2. keys: every key loads, a receipt can be signed, and no secret key file is open to
   group or others (refused with ``TAXADDR_ENV=prod``, a warning otherwise);
3. policy: the engine decides a probe input (and denies it);
4. audit: the log head is readable and the checkpoint key loads.

The start-up checks (:func:`startup_checks`) refuse to serve on a database that is
missing, not migrated, corrupt or truncated (SQLite ``PRAGMA quick_check``) or not
writable, on key material that does not load or (in prod) is exposed, and on an
embedded policy that does not compile. Each refusal is one :class:`TaxaddrError`,
which the CLI prints as one line. Messages of these errors may name files: the CLI
shows them to the operator, the HTTP handlers never do (5xx bodies carry fixed text).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError

from taxaddr.api.logs import configure_logging, log_event
from taxaddr.api.runtime import keystore_for
from taxaddr.audit.log import read_head
from taxaddr.config import Settings
from taxaddr.crypto.keystore import exposed_key_files
from taxaddr.db import WriterQueue, open_database, sqlite_file
from taxaddr.db.probes import (
    integrity_problems,
    is_migrated,
    missing_file,
    read_probes,
    write_probe,
)
from taxaddr.disclosure.core import DisclosureService
from taxaddr.errors import (
    AuditUnavailable,
    DatabaseUnavailable,
    KeyMaterialError,
    PolicyUnavailable,
    TaxaddrError,
)
from taxaddr.policy import get_policy_engine

KEY_PERMISSIONS_WARNING = "key_files_exposed"


# -- readiness ----------------------------------------------------------------------------


def readiness(svc: DisclosureService) -> dict[str, Any]:
    """Check every dependency in order; raise the first failing one's 503 error."""
    tree_size = _database_ready(svc)
    warnings = _keys_ready(svc)
    _policy_ready(svc)
    _audit_ready(svc)
    return {
        "status": "ready",
        "checks": {"database": "ok", "keys": "ok", "policy": "ok", "audit": "ok"},
        "audit_tree_size": tree_size,
        "warnings": warnings,
    }


def _database_ready(svc: DisclosureService) -> int:
    try:
        with svc.read_session() as session:
            read_probes(session)
    except TaxaddrError:
        raise
    except SQLAlchemyError as exc:  # a missing table, a corrupt file, a dead server
        raise DatabaseUnavailable("database not usable (migrated? intact?)") from exc
    try:
        with svc.read_session() as session:
            size = read_head(session).tree_size
    except TaxaddrError:
        raise
    except SQLAlchemyError as exc:
        raise AuditUnavailable("audit log tables not usable") from exc
    with svc.writers.turn():
        write_probe(svc.engine)
    return size


def _keys_ready(svc: DisclosureService) -> list[str]:
    try:
        svc.keystore.check()
        svc.signer.sign({"readiness": True})
    except KeyMaterialError:
        raise
    except Exception as exc:
        raise KeyMaterialError("key material not usable") from exc
    return key_permission_warnings(svc.settings, svc.keystore.root)


def key_permission_warnings(settings: Settings, keys_dir: Path) -> list[str]:
    """``[]``, or the warning for secret key files open to group or others; in prod
    such files are :class:`KeyMaterialError` instead."""
    exposed = exposed_key_files(keys_dir)
    if not exposed:
        return []
    if settings.env == "prod":
        raise KeyMaterialError(
            f"secret key files readable or writable by group or others in {keys_dir}: "
            f"{', '.join(exposed)} (chmod 600 files, 700 directories)"
        )
    return [KEY_PERMISSIONS_WARNING]


def _policy_ready(svc: DisclosureService) -> None:
    try:
        svc.policy_engine().check()
    except PolicyUnavailable:
        raise
    except Exception as exc:
        raise PolicyUnavailable("policy engine not usable") from exc


def _audit_ready(svc: DisclosureService) -> None:
    try:
        svc.keystore.audit_signing_key()
    except Exception as exc:
        raise AuditUnavailable("audit signing key not usable") from exc


# -- start-up -----------------------------------------------------------------------------


def startup_checks(settings: Settings) -> None:
    """Refuse to serve (one :class:`TaxaddrError`) on a broken database, key store or
    policy; warn in the JSON log about what dev and test tolerate."""
    configure_logging(settings.log_level)
    check_database(settings)
    check_keys(settings)
    check_policy(settings)


def check_database(settings: Settings) -> None:
    """The database exists, is migrated, intact (SQLite: ``PRAGMA quick_check``) and
    takes a (rolled-back) write."""
    engine = _startup_engine(settings)
    try:
        path = sqlite_file(engine)
        with engine.connect() as connection:
            problems = integrity_problems(connection)
            if problems:
                raise DatabaseUnavailable(
                    f"database file is corrupt: {path} (quick_check: {problems[0]})"
                )
            if not is_migrated(connection):
                raise DatabaseUnavailable("database is not migrated (run: taxaddr db upgrade)")
            read_probes(connection)
            connection.rollback()
        queue = WriterQueue(engine)
        try:
            with queue.turn():
                write_probe(engine)
        finally:
            queue.close()
    except DBAPIError as exc:
        where = f": {path}" if path else ""
        raise DatabaseUnavailable(database_problem(exc) + where) from exc
    finally:
        engine.dispose()


def _startup_engine(settings: Settings) -> Engine:
    engine = open_database(settings, pool_size=1, max_overflow=0).engine
    path = missing_file(engine)
    if path is not None:
        # connecting would create an empty database file
        engine.dispose()
        raise DatabaseUnavailable(f"database file missing: {path} (run: taxaddr db upgrade)")
    return engine


def _is_corruption(exc: DBAPIError) -> bool:
    """SQLite's class for a damaged file (``sqlite3.DatabaseError`` itself, not one of
    its subclasses such as ``OperationalError``)."""
    orig = exc.orig
    return type(orig).__name__ == "DatabaseError" and type(orig).__module__ == "sqlite3"


def database_problem(exc: DBAPIError) -> str:
    """What is wrong with the database, in words that never quote a value: the driver
    exception's class and a fixed reading of it (driver messages can echo parameters)."""
    kind = type(exc.orig).__name__
    if _is_corruption(exc):
        return f"the database file is corrupt, truncated or not a database ({kind})"
    if isinstance(exc, OperationalError):
        return f"the database cannot be reached, opened or written ({kind})"
    return f"the database failed ({kind})"


def check_keys(settings: Settings) -> None:
    """Every key the service needs loads; exposed secret key files are refused in prod
    and a JSON warning elsewhere."""
    keystore = keystore_for(settings)
    keystore.check()
    if key_permission_warnings(settings, keystore.root):
        log_event(
            logging.WARNING,
            event=KEY_PERMISSIONS_WARNING,
            files=exposed_key_files(keystore.root),
        )


def check_policy(settings: Settings) -> None:
    """The embedded policy compiles and decides (it denies a probe input). An OPA
    server's policy is OPA's to compile; one unreachable now is a warning (``/readyz``
    reports it until it answers)."""
    try:
        get_policy_engine(settings).check()
    except PolicyUnavailable as exc:
        if settings.policy_engine == "embedded":
            raise PolicyUnavailable(
                f"policy in {settings.policy_dir} does not compile or decide: {exc.message}"
            ) from None
        log_event(logging.WARNING, event="policy_unavailable", code=exc.code)
