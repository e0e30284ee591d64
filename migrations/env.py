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
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
