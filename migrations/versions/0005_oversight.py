"""oversight and reports

Revision ID: 0005_oversight
Revises: 0004_api
"""

from alembic import op
import sqlalchemy as sa

revision = "0005_oversight"
down_revision = "0004_api"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
