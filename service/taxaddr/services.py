"""The composition root: every implementation chosen once, from the typed settings.

``Services`` holds what a process works with — the database (SQLite or
PostgreSQL, :func:`taxaddr.db.open_database`), the key store (files or PKCS#11,
:func:`taxaddr.crypto.keystore.open_keystore`) and the policy engine (embedded
or OPA, :func:`taxaddr.policy.get_policy_engine`) — built once per process from
``Settings``. Every CLI command opens one with :func:`opened_services` and passes
on what a domain function needs (an engine, a key store, the settings); the API
server builds one per process (:mod:`taxaddr.api.runtime`). No domain package
opens a database or a key store of its own.

Building it is cheap and touches nothing: the engine connects on first use, the
file key store reads a key when it is asked for it, the PKCS#11 store logs in on
first use.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy import Engine

from taxaddr.config import Settings, get_settings
from taxaddr.crypto.keystore import KeyStore, open_keystore
from taxaddr.db import Database, open_database
from taxaddr.policy import PolicyEngine, get_policy_engine


@dataclass
class Services:
    """The database, key store and policy engine of one process, chosen from settings."""

    settings: Settings
    database: Database
    keystore: KeyStore
    _policy: PolicyEngine | None = field(default=None, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> Services:
        return cls(
            settings=settings,
            database=open_database(settings),
            keystore=open_keystore(settings.keys_dir, settings.keystore, settings),
        )

    @property
    def engine(self) -> Engine:
        return self.database.engine

    def policy(self) -> PolicyEngine:
        """The settings' policy engine, built on first use (a broken one is not kept)."""
        if self._policy is None:
            self._policy = get_policy_engine(self.settings)
        return self._policy

    def close(self) -> None:
        """Release the database's connections."""
        self.database.dispose()


@contextmanager
def opened_services(settings: Settings | None = None) -> Iterator[Services]:
    """Services for one CLI command (default: the environment's settings), closed after."""
    services = Services.from_settings(settings or get_settings())
    try:
        yield services
    finally:
        services.close()
