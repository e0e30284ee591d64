"""requesters, replay guard and case usage

Revision ID: 0004_api
Revises: 0003_audit
"""

from alembic import op
import sqlalchemy as sa

revision = "0004_api"
down_revision = "0003_audit"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
