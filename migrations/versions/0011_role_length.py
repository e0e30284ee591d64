"""requesters.role holds 'disclosure_officer' (18 characters): VARCHAR(16) -> VARCHAR(32)

Revision ID: 0011_role_length
Revises: 0010_accounting
"""

from alembic import op
import sqlalchemy as sa

revision = "0011_role_length"
down_revision = "0010_accounting"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("requesters") as batch:
        batch.alter_column(
            "role",
            existing_type=sa.String(length=16),
            type_=sa.String(length=32),
            existing_nullable=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("requesters") as batch:
        batch.alter_column(
            "role",
            existing_type=sa.String(length=32),
            type_=sa.String(length=16),
            existing_nullable=False,
        )
