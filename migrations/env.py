"""Alembic environment: the target metadata is every taxaddr model."""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import pool

import taxaddr.db.schema
from taxaddr.db import Base, make_engine

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    return os.environ.get("TAXADDR_ALEMBIC_URL") or config.get_main_option("sqlalchemy.url") or ""


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = make_engine(_url(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # SQLite rebuilds a table to change it (copy, drop, rename); dropping a
            # table that others refer to fails while foreign keys are enforced, and the
            # pragma only changes outside a transaction. SQLite's documented procedure:
            # enforcement off, rebuild, check every foreign key before commit. Each
            # migration is its own transaction on SQLite, so a migration that rebuilds a
            # table runs the check itself (see 0013): a violation rolls it back.
            connection.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=sqlite,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
