"""trusted issuers and case references

Revision ID: 0002_cases
Revises: 0001_store
"""

from alembic import op
import sqlalchemy as sa

revision = "0002_cases"
down_revision = "0001_store"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
