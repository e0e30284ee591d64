"""rate_limit_buckets: the deployment-wide per-requester token buckets (PostgreSQL)

Revision ID: 0007_rate_limit
Revises: 0006_trust_changes
"""

from alembic import op
import sqlalchemy as sa

revision = "0007_rate_limit"
down_revision = "0006_trust_changes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rate_limit_buckets",
        sa.Column("key", sa.LargeBinary(16), nullable=False),
        sa.Column("tokens", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("granted", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_rate_limit_buckets")),
    )


def downgrade() -> None:
    op.drop_table("rate_limit_buckets")
