"""encrypted address store

Revision ID: 0001_store
Revises: None
"""

from alembic import op
import sqlalchemy as sa

revision = "0001_store"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
