"""audit log and accounting

Revision ID: 0003_audit
Revises: 0002_cases
"""

from alembic import op
import sqlalchemy as sa

revision = "0003_audit"
down_revision = "0002_cases"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
