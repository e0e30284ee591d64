"""The schema only changes through migrations: models and migrations never drift."""

from __future__ import annotations

from alembic import command

from taxaddr.migrate import alembic_config


def test_no_drift_between_models_and_migrations(db_url: str) -> None:
    # db_url is already upgraded to head; `alembic check` fails on any difference.
    command.check(alembic_config(db_url))
